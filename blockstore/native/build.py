"""cffi builder for blockstore.native._blockkern (out-of-line API mode).

Used by setup.py (``cffi_modules``); run directly to build in place:
``python blockstore/native/build.py``. API mode calls release the GIL.
The declarations below must match csrc/blockkern.h.
"""

import os

from cffi import FFI

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_CSRC = os.path.join(_ROOT, "csrc")


def _rel(path: str) -> str:
    """setuptools wants source paths relative to the project root."""
    try:
        return os.path.relpath(path)
    except ValueError:  # other drive (not on Linux, but be safe)
        return path


ffibuilder = FFI()
ffibuilder.cdef(
    """
    int bk_sha256_many(const uint8_t *buf, size_t len, size_t block_size,
                       uint8_t *out, int nthreads);
    int bk_xxh128_many(const uint8_t *buf, size_t len, size_t block_size,
                       uint8_t *out);
    size_t bk_zero_flags(const uint8_t *buf, size_t len, size_t block_size,
                         uint8_t *flags);
    int64_t bk_copy_range(int src_fd, int64_t src_off, int dst_fd,
                          int64_t dst_off, int64_t len);
    int bk_start_writeback(int fd, int64_t off, int64_t len);

    typedef struct bk_writer bk_writer;
    bk_writer *bk_writer_new(int fd, size_t signal_bytes, int64_t hint_bytes);
    #define BK_HASH_NONE 0
    #define BK_HASH_XXH128 1
    #define BK_HASH_SHA256 2
    int64_t bk_writer_submit(bk_writer *w, int64_t off, const uint8_t *buf, size_t len,
                             int algo, size_t block_size, uint8_t *out);
    int64_t bk_writer_done(bk_writer *w);
    void bk_writer_wait(bk_writer *w, int64_t ticket);
    int bk_writer_error(bk_writer *w);
    int bk_writer_take_error(bk_writer *w);
    void bk_writer_free(bk_writer *w);
    """
)
ffibuilder.set_source(
    "blockstore.native._blockkern",
    '#include "blockkern.h"',
    sources=[_rel(os.path.join(_CSRC, "blockkern.c")), _rel(os.path.join(_CSRC, "bkwriter.c"))],
    include_dirs=[_rel(_CSRC)],
    libraries=["crypto", "xxhash", "pthread"],
    extra_compile_args=["-O3", "-Wall"],
)

if __name__ == "__main__":
    os.chdir(_ROOT)
    ffibuilder.compile(verbose=True)
