"""cffi builder for blockstore.native._blockkern (out-of-line API mode).

Used by setup.py (``cffi_modules``); run directly to build in place:
``python blockstore/native/build.py``. API mode calls release the GIL.
The declarations are read from csrc/blockkern.h.
"""

import os
import re

from cffi import FFI

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_CSRC = os.path.join(_ROOT, "csrc")


def _rel(path: str) -> str:
    """setuptools wants source paths relative to the project root."""
    try:
        return os.path.relpath(path)
    except ValueError:  # other drive (not on Linux, but be safe)
        return path


def _declarations(header: str) -> str:
    """The C declarations of ``header`` as cffi's cdef takes them: its
    preprocessor lines dropped except integer ``#define``s (cdef strips the
    comments itself), so the header is the one list of what the library exports."""
    with open(header) as f:
        lines = f.read().splitlines()
    keep = [ln for ln in lines if not ln.lstrip().startswith("#")
            or re.match(r"\s*#define\s+\w+\s+\d+\s*$", ln)]
    return "\n".join(keep)


def _ipsec_mb() -> bool:
    """Whether Intel's multi-buffer crypto library (Debian libipsec-mb-dev) is
    here to build against: csrc/sha256_mb.c hashes through it when it is."""
    return any(os.path.exists(os.path.join(d, "intel-ipsec-mb.h"))
               for d in ("/usr/include", "/usr/local/include"))


_MB = _ipsec_mb()
ffibuilder = FFI()
ffibuilder.cdef(_declarations(os.path.join(_CSRC, "blockkern.h")))
ffibuilder.set_source(
    "blockstore.native._blockkern",
    '#include "blockkern.h"',
    sources=[_rel(os.path.join(_CSRC, "blockkern.c")), _rel(os.path.join(_CSRC, "bkwriter.c")),
             _rel(os.path.join(_CSRC, "xxh_avx2.c")), _rel(os.path.join(_CSRC, "sha256_mb.c"))],
    include_dirs=[_rel(_CSRC)],
    libraries=["crypto", "xxhash", "pthread"] + (["IPSec_MB"] if _MB else []),
    define_macros=[("BK_HAVE_IPSEC_MB", "1")] if _MB else [],
    extra_compile_args=["-O3", "-Wall"],
)

if __name__ == "__main__":
    os.chdir(_ROOT)
    ffibuilder.compile(verbose=True)
