#!/usr/bin/env bash
# Build pyfuse3 3.5.0 with third_party/pyfuse3/blockstore.patch and install it into
# the venv whose python is $1 (called by `make setup`; see README.md here).
#
# Idempotent by content: the wheel's version is 3.5.0+bs.<KEY>, KEY being a
# hash of the patch and the pins below.  If the venv already has that version,
# nothing is done; if build/pyfuse3/ holds that wheel, it is only installed;
# otherwise the sdist is downloaded (or taken from build/pyfuse3/), checked
# against its pinned sha256, patched, cythonized and compiled in a temporary
# directory (outside any git work tree, so setuptools_scm sees no repository).
set -euo pipefail

PY=${1:?usage: build.sh VENV_PYTHON}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE="$ROOT/build/pyfuse3"

VERSION=3.5.0
SDIST=pyfuse3-$VERSION.tar.gz
SDIST_SHA256=88399a9494b88603230bba300f4ba9ad63fece5ed514ca3633d555a0c6a42b24
# Build tools of the patched build (Cython: the version the sdist's C was made with).
BUILD_REQS=("Cython==3.2.4" "setuptools>=78.1.1,<90" "setuptools_scm>=8,<11" "wheel")

KEY=$( { cat "$HERE/blockstore.patch"; echo "$VERSION $SDIST_SHA256 ${BUILD_REQS[*]}"; } \
       | sha256sum | cut -c1-12)
LOCAL_VERSION="$VERSION+bs.$KEY"

have_version() {
    "$PY" - "$LOCAL_VERSION" <<'PYEOF'
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    ok = version("pyfuse3") == sys.argv[1]
    import pyfuse3
    ok = ok and hasattr(pyfuse3.Operations, "lseek") \
        and hasattr(pyfuse3.Operations, "enable_auto_inval_data") \
        and hasattr(pyfuse3.FileInfo(), "cache_readdir") \
        and hasattr(pyfuse3.Operations, "enable_cache_symlinks") \
        and hasattr(pyfuse3.Operations, "enable_atomic_o_trunc")
except (PackageNotFoundError, ImportError):
    ok = False
sys.exit(0 if ok else 1)
PYEOF
}

if have_version; then
    echo "pyfuse3 $LOCAL_VERSION already installed"
    exit 0
fi

TAG=$("$PY" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
mkdir -p "$CACHE/wheels"
wheel=$(ls "$CACHE/wheels/pyfuse3-$LOCAL_VERSION-$TAG-"*.whl 2>/dev/null | head -n1 || true)

if [ -z "$wheel" ]; then
    # The pinned sdist, verified.
    if ! echo "$SDIST_SHA256  $CACHE/$SDIST" | sha256sum -c --status 2>/dev/null; then
        rm -f "$CACHE/$SDIST"
        # --no-binary for pyfuse3 only: `:all:` would also build the build
        # tools pip needs to read the sdist's metadata from source (~3 min).
        "$PY" -m pip download -q --no-deps --no-binary pyfuse3 -d "$CACHE" "pyfuse3==$VERSION"
        if ! echo "$SDIST_SHA256  $CACHE/$SDIST" | sha256sum -c --status; then
            echo "build.sh: $SDIST does not match its pinned sha256" >&2
            rm -f "$CACHE/$SDIST"
            exit 1
        fi
    fi

    work=$(mktemp -d /tmp/pyfuse3-bs.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    tar -xzf "$CACHE/$SDIST" -C "$work"
    src="$work/pyfuse3-$VERSION"
    patch -d "$src" -p1 --forward --quiet < "$HERE/blockstore.patch"
    # The sdist ships C generated from the unpatched .pyx; without it the build
    # has to run Cython (setuptools does when Cython is importable).
    rm -f "$src/src/pyfuse3/__init__.c"

    "$PY" -m venv "$work/buildenv"
    "$work/buildenv/bin/python" -m pip install -q --disable-pip-version-check "${BUILD_REQS[@]}"
    SETUPTOOLS_SCM_PRETEND_VERSION_FOR_PYFUSE3="$LOCAL_VERSION" \
        "$work/buildenv/bin/python" -m pip wheel -q --disable-pip-version-check \
        --no-build-isolation --no-deps -w "$work/dist" "$src"

    # The C must have been regenerated from the patched sources.
    if ! grep -q fuse_reply_lseek "$src/src/pyfuse3/__init__.c" \
            || ! grep -q cache_readdir "$src/src/pyfuse3/__init__.c"; then
        echo "build.sh: the build did not regenerate pyfuse3's C with Cython" >&2
        exit 1
    fi
    built=$(ls "$work/dist/pyfuse3-"*.whl)
    cp "$built" "$CACHE/wheels/"
    wheel="$CACHE/wheels/$(basename "$built")"
fi

# Replaces any other pyfuse3 (e.g. an unpatched one); brings its dependency trio.
"$PY" -m pip uninstall -q -y pyfuse3 >/dev/null 2>&1 || true
"$PY" -m pip install -q --disable-pip-version-check "$wheel"
if ! have_version; then
    echo "build.sh: pyfuse3 $LOCAL_VERSION is not what the venv imports after installing $wheel" >&2
    exit 1
fi
echo "pyfuse3 $LOCAL_VERSION installed (Operations.lseek, Operations.enable_auto_inval_data, FileInfo.cache_readdir/noflush)"
