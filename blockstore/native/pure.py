"""Pure-Python twin of the native kernels (csrc/blockkern.c).

Same functions, arguments, results and exceptions as the native module;
tests check that both agree. Used when the C extension is missing or
BLOCKSTORE_PURE=1. hashlib releases the GIL while hashing buffers larger
than 2 KiB; the loops here hold it between blocks.
"""

from __future__ import annotations

import errno
import hashlib
import os

import xxhash

IMPLEMENTATION = "pure"

_BOUNCE_SIZE = 1 << 20
_FALLBACK_ERRNOS = frozenset({errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL})
_zero_cache = b""


def _bytes_view(data) -> memoryview:
    """A flat byte view of any C-contiguous bytes-like object (no copy)."""
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _check_block_size(block_size: int) -> None:
    if block_size <= 0:
        raise ValueError(f"block_size must be positive, got {block_size}")


def sha256_many(data, block_size: int, threads: int = 0) -> bytes:
    """Concatenated SHA-256 digests (32 bytes each) of every block of data.

    The last block may be shorter than block_size and is hashed as is.
    `threads` is accepted for signature parity with the native module and
    ignored.
    """
    _check_block_size(block_size)
    view = _bytes_view(data)
    sha = hashlib.sha256
    return b"".join(
        sha(view[off : off + block_size]).digest()
        for off in range(0, len(view), block_size)
    )


def xxh128_many(data, block_size: int) -> bytes:
    """Concatenated XXH3-128 digests (16 bytes each, canonical big-endian form) of
    every block of data; the last block may be shorter and is hashed as is."""
    _check_block_size(block_size)
    view = _bytes_view(data)
    h = xxhash.xxh3_128_digest
    return b"".join(h(view[off : off + block_size]) for off in range(0, len(view), block_size))


def _zeros(n: int) -> bytes:
    global _zero_cache
    if len(_zero_cache) < n:
        _zero_cache = bytes(n)
    return _zero_cache


def zero_flags(data, block_size: int) -> bytes:
    """One byte per block of data: 1 if the block is all zero bytes, else 0."""
    _check_block_size(block_size)
    view = _bytes_view(data)
    zero = _zeros(min(block_size, len(view)))
    out = bytearray()
    for off in range(0, len(view), block_size):
        block = view[off : off + block_size]
        # memoryview == compares item by item (~0.6 GB/s); a first-byte
        # reject plus a copy and a bytes compare runs at ~12 GB/s.
        out.append(not block[0] and block.tobytes() == zero[: len(block)])
    return bytes(out)


def _copy_bounce(src_fd: int, src_off: int, dst_fd: int, dst_off: int, length: int) -> int:
    done = 0
    while done < length:
        chunk = os.pread(src_fd, min(length - done, _BOUNCE_SIZE), src_off + done)
        if not chunk:
            break
        view = memoryview(chunk)
        put = 0
        while put < len(view):
            written = os.pwrite(dst_fd, view[put:], dst_off + done + put)
            if written == 0:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            put += written
        done += len(chunk)
    return done


def copy_range(src_fd: int, src_off: int, dst_fd: int, dst_off: int, length: int) -> int:
    """Copy length bytes between files at the given offsets; return bytes copied.

    Short only when src ends first. File offsets of both fds are unchanged.
    Uses os.copy_file_range, falling back to pread/pwrite on EXDEV, ENOSYS,
    EOPNOTSUPP or EINVAL. Raises OSError on any other error.
    """
    if src_fd < 0 or dst_fd < 0:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))
    if src_off < 0 or dst_off < 0 or length < 0:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
    done = 0
    while done < length:
        try:
            n = os.copy_file_range(
                src_fd, dst_fd, min(length - done, 1 << 30), src_off + done, dst_off + done
            )
        except OSError as exc:
            if exc.errno not in _FALLBACK_ERRNOS:
                raise
            return done + _copy_bounce(
                src_fd, src_off + done, dst_fd, dst_off + done, length - done
            )
        if n == 0:
            break
        done += n
    return done


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing back dirty pages of [offset, offset+length) without waiting.

    A hint before a later fdatasync, with no durability promise: Python has no
    sync_file_range, so the pure twin does nothing (results are identical;
    only the timing of the later fdatasync differs)."""
    return None
