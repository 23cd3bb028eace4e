"""Unpacking a layer without FUSE: containerd writes into a plain directory.

When containerd unpacks a layer it prepares a snapshot under an
``extract-<unique> <chainID>`` key and applies the layer tar to the mounts
it gets back.  If those mounts are a single ``overlay`` mount, containerd's
applier (diff/apply, as for its own overlayfs snapshotter) does not mount
anything: it writes the layer straight into the ``upperdir`` directory,
turning deletions into overlay whiteouts (a 0/0 character device; an
opaque directory gets the ``trusted.overlay.opaque=y`` xattr) and reading
the ``lowerdir`` (the parent, served read-only by FUSE) only to copy the
metadata of parent directories it has to create.  Writing to a plain
directory costs what it costs on disk, not a FUSE round trip per call.

At Commit, ``layer_stream`` turns that upper directory back into an OCI
layer tar (whiteouts as ``.wh.`` entries, opaque directories as
``.wh..wh..opq``, xattrs and nanosecond times in PAX headers, hard links
within the layer as links) and the store imports it onto the parent with
the OCI layer importer (its hostile-input rules apply).  The tar is made
by a child process (``python -m blockstore.snapshotter.staging``: this
module imports only the standard library) so that making it and importing
it run on two cores rather than taking turns on one interpreter lock.
Cost: the layer's bytes are written once to the staging directory, read
once, and written once into the store; one interpreter start per layer.
"""
from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import tarfile

UNPACK_KEY = re.compile(r"(?:^|/)extract-[^/ ]* sha256:[0-9a-f]{64}$")
OPAQUE_XATTR = "trusted.overlay.opaque"


def is_unpack_key(key: str) -> bool:
    """containerd's unpack keys (snapshots.UnpackKeyFormat, "extract-%s %s")."""
    return UNPACK_KEY.search(key) is not None


def _xattrs(path: str) -> dict:
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for k in names:
        if k.startswith("trusted.overlay."):
            continue
        try:
            v = os.getxattr(path, k, follow_symlinks=False)
        except OSError:
            continue
        out["SCHILY.xattr." + k] = v.decode("utf-8", "surrogateescape")
    return out


def _entry(tf: tarfile.TarFile, path: str, arc: str) -> None:
    st = os.lstat(path)
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:           # overlay whiteout
        d, base = os.path.split(arc)
        ti = tarfile.TarInfo(os.path.join(d, ".wh." + base))
        ti.mtime = int(st.st_mtime)
        tf.addfile(ti)
        return
    ti = tf.gettarinfo(path, arc)
    if ti is None:                                          # a socket: not part of a layer
        return
    pax = _xattrs(path)
    pax["mtime"] = f"{st.st_mtime_ns // 10**9}.{st.st_mtime_ns % 10**9:09d}"
    ti.pax_headers = pax
    if ti.isreg():
        with open(path, "rb") as f:
            tf.addfile(ti, f)
    else:
        tf.addfile(ti)
    if stat.S_ISDIR(st.st_mode) and arc != ".":
        _opaque_marker(tf, path, arc, st)


UNTOUCHED_NS = 0        # atime/mtime given to a fresh upper root: "no entry set it"


def prepare_upper(upper: str) -> int:
    """Create the staging upper directory, its times marked as untouched;
    returns the creation time (ns) that ``write_layer`` needs as ``since_ns``."""
    os.makedirs(upper, mode=0o755, exist_ok=True)
    since = os.stat(upper).st_mtime_ns
    os.utime(upper, ns=(UNTOUCHED_NS, UNTOUCHED_NS))
    return since


def _copied_up(st: os.stat_result, lower: str | None, rel: str, since_ns: int) -> bool:
    """Whether a directory of the upper dir was only created by containerd
    to hold this layer's entries (``mkparent``: mode, owner and times copied
    from the lower directory, then its mtime bumped by the new children)
    rather than written by a tar entry.  Such a directory must keep the
    lower one's attributes, times and xattrs, so it gets no tar entry.  The
    sign: its atime is still the lower directory's, to the nanosecond (a tar
    entry's times are set at the end of containerd's apply; creating
    children does not touch the atime), and its mtime is not older than the
    staging directory (``since_ns``): a new child bumped it, while a tar
    entry's mtime is restored at the end of the apply."""
    if lower is None or st.st_mtime_ns < since_ns:
        return False
    try:
        lst = os.lstat(os.path.join(lower, rel))
    except OSError:
        return False
    return (stat.S_ISDIR(lst.st_mode) and st.st_atime_ns == lst.st_atime_ns
            and st.st_uid == lst.st_uid and st.st_gid == lst.st_gid
            and stat.S_IMODE(st.st_mode) == stat.S_IMODE(lst.st_mode))


def write_layer(upper: str, out, lower: str | None = None, since_ns: int = 0) -> None:
    """Write the OCI layer tar of overlay upper directory ``upper`` (applied
    over ``lower``, the parent's tree, or nothing) to ``out``.  Stats are
    taken before a directory is listed (listing may update its atime)."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        root = os.lstat(upper)
        if root.st_atime_ns != UNTOUCHED_NS:        # the layer has a "./" entry
            _entry(tf, upper, ".")
        for dirpath, dirnames, filenames in os.walk(upper, followlinks=False):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, upper)
                st = os.lstat(path)
                if stat.S_ISDIR(st.st_mode) and _copied_up(st, lower, rel, since_ns):
                    _opaque_marker(tf, path, rel, st)
                    continue
                _entry(tf, path, rel)


def _opaque_marker(tf, path: str, arc: str, st) -> None:
    try:
        opaque = os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        opaque = False
    if opaque:
        wh = tarfile.TarInfo(arc + "/.wh..wh..opq")
        wh.mtime = int(st.st_mtime)
        tf.addfile(wh)


def _has_overlay_xattr(path: str) -> bool:
    """Whether ``path`` carries a ``trusted.overlay.*`` xattr (OSError if unreadable)."""
    return any(k.startswith("trusted.overlay.")
               for k in os.listxattr(path, follow_symlinks=False))


def plain_tree(upper: str) -> bool:
    """Whether the upper directory holds nothing of overlayfs's own: no
    whiteout (a 0/0 character device) and no ``trusted.overlay.*`` xattr
    (opaque, impure, origin...) on any entry.  Applied over nothing (a layer
    without parent), such a directory is the layer's tree as it is, and can
    be imported as a directory.  One pass: a stat only for entries that are
    neither directory, regular file nor symlink, one listxattr per entry."""
    stack = [upper]
    try:
        if _has_overlay_xattr(upper):
            return False
        while stack:
            for e in list(os.scandir(stack.pop())):
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif not (e.is_file(follow_symlinks=False) or e.is_symlink()):
                    st = e.stat(follow_symlinks=False)
                    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                        return False
                if _has_overlay_xattr(e.path):
                    return False
    except OSError:
        return False
    return True


class layer_stream:
    """A binary reader of ``write_layer(upper, lower, since_ns)``, made by a
    child process through a pipe (no temporary file); use as a context
    manager.  A failure of the child is raised at exit (OSError with its
    error text) unless the reader failed first (its error wins)."""

    def __init__(self, upper: str, lower: str | None = None, since_ns: int = 0):
        self.upper = upper
        self._p = subprocess.Popen(
            [sys.executable, "-m", __name__, upper, lower or "", str(since_ns)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            bufsize=1 << 20, close_fds=True)

    def read(self, n: int = -1) -> bytes:
        return self._p.stdout.read(n)

    def readable(self) -> bool:
        return True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._p.stdout.close()             # a reader that gave up: the child gets EPIPE
        err = self._p.stderr.read(1 << 16).decode(errors="replace")
        self._p.stderr.close()
        rc = self._p.wait()
        if rc != 0 and exc[0] is None:
            last = err.strip().splitlines()[-1:] or [f"exit status {rc}"]
            raise OSError(f"making the layer tar of {self.upper}: {last[0]}")


def main(argv: list[str]) -> int:
    """``python -m blockstore.snapshotter.staging UPPER LOWER SINCE_NS``: the
    layer tar on stdout (LOWER may be empty: no parent)."""
    upper, lower, since = argv[0], argv[1] or None, int(argv[2])
    with os.fdopen(sys.stdout.fileno(), "wb", buffering=1 << 20, closefd=False) as out:
        try:
            write_layer(upper, out, lower, since)
        except BrokenPipeError:
            return 1                            # the reader gave up: its error is reported
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
