"""Native kernels: batch SHA-256 and XXH3-128, zero-block detection, range copy,
and a background data writer.

The one module that loads the C extension ``blockstore.native._blockkern``
(built by cffi from build.py and csrc/). Falls back to the pure-Python twin
``blockstore.native.pure`` when the extension is missing or the environment
sets ``BLOCKSTORE_PURE=1``; ``IMPLEMENTATION`` says which one is in use.

Native calls release the GIL for their whole duration and do not copy the
input (``ffi.from_buffer``); inputs must be C-contiguous bytes-like objects
that are not resized during the call. Per-call overhead is ~1 us.
"""

from __future__ import annotations

import collections
import os
import types

from . import pure

__all__ = [
    "IMPLEMENTATION", "NATIVE", "NATIVE_ERROR", "BackgroundWriter", "copy_range", "sha256_many",
    "start_writeback", "xxh128_many", "zero_flags",
]

DIGEST_SIZE = 32
XXH128_SIZE = 16

try:
    from ._blockkern import ffi as _ffi, lib as _lib
except ImportError as exc:  # not built (e.g. source checkout without install)
    _ffi = _lib = None
    NATIVE_ERROR: str | None = f"{type(exc).__name__}: {exc}"
else:
    NATIVE_ERROR = None


def _native_sha256_many(data, block_size: int, threads: int = 0) -> bytes:
    """Concatenated SHA-256 digests (32 bytes each) of every block of data.

    The last block may be shorter than block_size and is hashed as is.
    threads: 0 = automatic (parallel only for >= 1 MiB and >= 4 blocks),
    1 = calling thread only, n = at most n threads.
    """
    if block_size <= 0:
        raise ValueError(f"block_size must be positive, got {block_size}")
    src = _ffi.from_buffer("uint8_t[]", data)
    size = len(src)
    out = bytearray(-(-size // block_size) * DIGEST_SIZE)
    rc = _lib.bk_sha256_many(src, size, block_size, _ffi.from_buffer("uint8_t[]", out), threads)
    if rc:
        raise OSError(-rc, os.strerror(-rc))
    return bytes(out)


def _native_xxh128_many(data, block_size: int) -> bytes:
    """Concatenated XXH3-128 digests (16 bytes each, xxHash's canonical big-endian
    form) of every block of data; the last block may be shorter and is hashed as is.
    Calling thread only (> 10 GB/s)."""
    if block_size <= 0:
        raise ValueError(f"block_size must be positive, got {block_size}")
    src = _ffi.from_buffer("uint8_t[]", data)
    size = len(src)
    out = bytearray(-(-size // block_size) * XXH128_SIZE)
    rc = _lib.bk_xxh128_many(src, size, block_size, _ffi.from_buffer("uint8_t[]", out))
    if rc:
        raise OSError(-rc, os.strerror(-rc))
    return bytes(out)


def _native_zero_flags(data, block_size: int) -> bytes:
    """One byte per block of data: 1 if the block is all zero bytes, else 0."""
    if block_size <= 0:
        raise ValueError(f"block_size must be positive, got {block_size}")
    src = _ffi.from_buffer("uint8_t[]", data)
    size = len(src)
    out = bytearray(-(-size // block_size))
    _lib.bk_zero_flags(src, size, block_size, _ffi.from_buffer("uint8_t[]", out))
    return bytes(out)


def _native_copy_range(src_fd: int, src_off: int, dst_fd: int, dst_off: int, length: int) -> int:
    """Copy length bytes between files at the given offsets; return bytes copied.

    Short only when src ends first. File offsets of both fds are unchanged.
    copy_file_range with a pread/pwrite fallback; raises OSError on error.
    """
    n = _lib.bk_copy_range(src_fd, src_off, dst_fd, dst_off, length)
    if n < 0:
        raise OSError(-n, os.strerror(-n))
    return n


def _native_start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing back dirty pages of [offset, offset+length) without waiting
    (a hint before a later fdatasync; no durability promise; errors ignored)."""
    _lib.bk_start_writeback(fd, offset, length)


class _NativeBackgroundWriter:
    """A native thread of its own that pwrites queued buffers to one fd, in order
    (csrc/bkwriter.c), and may first hash them: handing a write over costs one
    short call and no GIL hand-over, since the thread never runs Python; it
    runs as SCHED_IDLE.  Not after fork (the thread is not in the child).

    ``submit(offset, data, digest=None)``, ``digest`` = (algorithm, block_size)
    with algorithm "xxh3-128" or "sha256", returns (ticket, out): the writer
    keeps ``data`` referenced until its job is done (the caller must not change
    it before ``wait(ticket)``, or a later ticket, returned or ``done() >=
    ticket``); ``out`` (a bytearray, None without ``digest``) then holds the
    digests of ``data``'s blocks unless a write failed.  ``wait`` returns
    ``done()``.  ``error``/``take_error``: errno
    of the first failed job since the last take (0 if none).  ``close``
    finishes every queued job and stops the thread."""

    ALGORITHMS = {"xxh3-128": (1, XXH128_SIZE), "sha256": (2, DIGEST_SIZE)}

    def __init__(self, fd: int, signal_bytes: int, hint_bytes: int):
        self._w = _ffi.NULL
        self._keep = collections.deque()    # (ticket, buffers) of queued jobs: alive until done
        self._pid = os.getpid()
        w = _lib.bk_writer_new(fd, signal_bytes, hint_bytes)
        if w == _ffi.NULL:
            e = _ffi.errno
            raise OSError(e, os.strerror(e))
        self._w = w

    def _live(self):
        if self._w == _ffi.NULL or self._pid != os.getpid():
            raise ValueError("the background writer is closed (or its thread is in the parent)")
        return self._w

    def submit(self, offset: int, data, digest=None):
        w = self._live()
        src = _ffi.from_buffer("uint8_t[]", data)
        if digest is None:
            out, dst = None, _ffi.NULL
            code = bs = 0
        else:
            code, size = self.ALGORITHMS[digest[0]]
            bs = digest[1]
            out = bytearray(-(-len(src) // bs) * size)
            dst = _ffi.from_buffer("uint8_t[]", out)
        t = _lib.bk_writer_submit(w, offset, src, len(src), code, bs, dst)
        if t < 0:
            raise OSError(-t, os.strerror(-t))
        self._keep.append((t, (src, dst)))
        return t, out

    def done(self) -> int:
        d = _lib.bk_writer_done(self._live())
        keep = self._keep
        while keep and keep[0][0] <= d:
            keep.popleft()
        return d

    def wait(self, ticket: int) -> int:
        _lib.bk_writer_wait(self._live(), ticket)
        return self.done()

    def error(self) -> int:
        return _lib.bk_writer_error(self._live())

    def take_error(self) -> int:
        return _lib.bk_writer_take_error(self._live())

    def close(self) -> None:
        """In a forked child: forgets the writer (its thread is the parent's) and
        keeps the buffers it may be reading in the parent's copy of memory."""
        w, self._w = self._w, _ffi.NULL
        if w != _ffi.NULL and self._pid == os.getpid():
            _lib.bk_writer_free(w)          # finishes the queue: the buffers are still kept
            self._keep.clear()

    def __del__(self):
        self.close()


# The native functions whatever IMPLEMENTATION is (tests compare them with
# `pure`); None when the extension did not load (reason in NATIVE_ERROR).
NATIVE = (
    types.SimpleNamespace(
        sha256_many=_native_sha256_many,
        xxh128_many=_native_xxh128_many,
        zero_flags=_native_zero_flags,
        copy_range=_native_copy_range,
        start_writeback=_native_start_writeback,
        BackgroundWriter=_NativeBackgroundWriter,
    )
    if _lib is not None
    else None
)

if _lib is not None and os.environ.get("BLOCKSTORE_PURE", "") != "1":
    IMPLEMENTATION = "native"
    sha256_many = _native_sha256_many
    xxh128_many = _native_xxh128_many
    zero_flags = _native_zero_flags
    copy_range = _native_copy_range
    start_writeback = _native_start_writeback
    BackgroundWriter = _NativeBackgroundWriter
else:
    IMPLEMENTATION = pure.IMPLEMENTATION
    sha256_many = pure.sha256_many
    xxh128_many = pure.xxh128_many
    zero_flags = pure.zero_flags
    copy_range = pure.copy_range
    start_writeback = pure.start_writeback
    BackgroundWriter = None      # writes stay on the caller's thread (pool/datafile.py)
