"""One data file of fixed-size blocks.

Block b occupies bytes [b * block_size, (b + 1) * block_size).  The file may
be longer than the pool's committed size (growth done by a transaction that
later aborted is harmless: the next one reuses it).

Thread safety: ``pread`` / ``pwrite`` / ``pwritev`` are positional syscalls
and may be called from any number of threads at once; ``grow`` and ``close``
must not race with each other (the single LMDB writer serialises growth).

Costs: one syscall per call (more only for partial transfers and for more
than IOV_MAX buffers); ``grow`` is one posix_fallocate.

Writeback hints: after a write of at least ``WRITEBACK_MIN`` bytes the pages
are handed to the disk at once (sync_file_range WRITE), so that the commit's
fdatasync waits for less.  Submitting them walks every page of the range
(~50-100 us per MiB here), work the writer need not wait for: it runs on one
background thread per process (a FUSE daemon's request thread is the
bottleneck of its writes).  The hint promises nothing; ``close`` waits for the
hints still queued, so none reaches a closed (or reused) descriptor.
"""
from __future__ import annotations

import errno
import os
import threading
from concurrent.futures import Future

from .. import errors
from ..native import start_writeback
from ..testing import failpoints
from . import background

WRITEBACK_MIN = 1024 * 1024       # smaller writes are left to the kernel
HINT_BYTES = 8 * 1024 * 1024      # contiguous writes gathered into one hint
try:
    IOV_MAX = max(16, os.sysconf("SC_IOV_MAX"))
except (AttributeError, ValueError, OSError):
    IOV_MAX = 1024


class DataFile:
    """One data file of fixed-size blocks. pread/pwrite are thread-safe."""

    def __init__(self, path: str, block_size: int, *, create: bool):
        assert block_size >= 4096 and block_size & (block_size - 1) == 0 and block_size <= 1 << 20, block_size
        self.path = os.fspath(path)
        self.block_size = block_size
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        try:
            self.fd = os.open(self.path, flags, 0o600)
        except FileNotFoundError:
            raise errors.NotFound("data file not found", path=self.path) from None
        self._grow_lock = threading.Lock()
        self._nowait_supported = True       # RWF_NOWAIT reads; False after EOPNOTSUPP
        self._last_hint: Future | None = None   # the newest queued writeback hint
        self._hint_range: tuple[int, int] | None = None   # (offset, length) gathered, not sent
        self._hint_lock = threading.Lock()

    # ------------------------------------------------------------------ size
    def size_blocks(self) -> int:
        """Current file size // block_size."""
        return os.fstat(self.fd).st_size // self.block_size

    def grow(self, to_blocks: int) -> None:
        """Make the file at least ``to_blocks`` blocks long with the space reserved.

        ENOSPC (or EDQUOT / EFBIG) raises errors.NoSpace and leaves the file
        size as it was.
        """
        with self._grow_lock:
            old = os.fstat(self.fd).st_size
            new = to_blocks * self.block_size
            if new <= old:
                return
            try:
                os.posix_fallocate(self.fd, old, new - old)
            except OSError as e:
                try:
                    os.ftruncate(self.fd, old)
                except OSError:
                    pass
                if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                    raise errors.NoSpace(
                        f"no space to grow the data file to {to_blocks} blocks "
                        f"({new} bytes): {os.strerror(e.errno)}", path=self.path) from e
                raise

    # ------------------------------------------------------------------ I/O
    def pwrite(self, start_block: int, data) -> None:
        """Write ``data`` (whole blocks) at ``start_block``."""
        self.pwritev(start_block, [data])

    def pwritev(self, start_block: int, buffers) -> None:
        """Gather-write ``buffers`` contiguously from ``start_block``."""
        off = first = start_block * self.block_size
        bufs = [memoryview(b).cast("B") for b in buffers]
        try:
            while bufs:
                chunk = bufs[:IOV_MAX]
                want = sum(b.nbytes for b in chunk)
                done = os.pwritev(self.fd, chunk, off) if len(chunk) > 1 else os.pwrite(self.fd, chunk[0], off)
                off += done
                if done == want:
                    del bufs[:len(chunk)]
                    continue
                # partial write: drop what was written and go on
                while done:
                    if done >= bufs[0].nbytes:
                        done -= bufs[0].nbytes
                        del bufs[0]
                    else:
                        bufs[0] = bufs[0][done:]
                        done = 0
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise errors.NoSpace(f"no space writing the data file: {os.strerror(e.errno)}",
                                     path=self.path) from e
            raise
        if off - first >= WRITEBACK_MIN:
            self._writeback_later(first, off - first)
        if failpoints.ACTIVE:
            failpoints.hit("pool.after_pwrite")

    def preadinto(self, byte_off: int, buf, nowait: bool = False) -> None:
        """Fill the writable buffer ``buf`` from byte offset ``byte_off`` (one copy,
        no intermediate bytes); a short read raises errors.Corruption.
        ``nowait``: only from the page cache (RWF_NOWAIT): raises BlockingIOError
        (EAGAIN) instead of waiting for the disk -- always, on a file system
        that cannot tell (EOPNOTSUPP, e.g. tmpfs): the caller reads elsewhere."""
        mv = memoryview(buf).cast("B")
        flags = 0
        if failpoints.ACTIVE and not nowait:
            failpoints.hit("pool.before_pread")
        if nowait:
            if not self._nowait_supported:
                raise BlockingIOError(errno.EAGAIN, "RWF_NOWAIT is not supported here")
            flags = os.RWF_NOWAIT
        while mv.nbytes:
            try:
                n = os.preadv(self.fd, [mv], byte_off, flags)
            except OSError as exc:
                if flags and exc.errno == errno.EOPNOTSUPP:
                    self._nowait_supported = False
                    raise BlockingIOError(errno.EAGAIN, "RWF_NOWAIT is not supported here") from None
                raise
            if n <= 0:
                raise errors.Corruption(f"data file truncated at byte {byte_off}", path=self.path)
            mv, byte_off = mv[n:], byte_off + n

    def pread(self, start_block: int, nblocks: int) -> bytes:
        """Read ``nblocks`` blocks; a short read raises errors.Corruption."""
        want = nblocks * self.block_size
        off = start_block * self.block_size
        data = os.pread(self.fd, want, off)
        if len(data) == want:
            return data
        buf = bytearray(data)
        while len(buf) < want:
            more = os.pread(self.fd, want - len(buf), off + len(buf))
            if not more:
                raise errors.Corruption(
                    f"data file truncated: blocks {start_block}..{start_block + nblocks - 1} "
                    f"wanted, file has {self.size_blocks()} blocks", path=self.path)
            buf += more
        return bytes(buf)

    def _writeback_later(self, off: int, length: int) -> None:
        """Let the disk start on [off, off+length) soon, from the background thread.
        Contiguous writes are gathered into one hint of ``HINT_BYTES`` (one thread
        wake-up per hint, not per write); a write elsewhere hands over the range
        gathered so far.  What is still gathered at ``fdatasync`` needs no hint."""
        send = []
        with self._hint_lock:
            p = self._hint_range
            if p is not None and p[0] + p[1] == off:
                p = (p[0], p[1] + length)
            else:
                if p is not None:
                    send.append(p)
                p = (off, length)
            if p[1] >= HINT_BYTES:
                send.append(p)
                p = None
            self._hint_range = p
        for o, n in send:
            self._last_hint = background.executor("writeback").submit(start_writeback, self.fd, o, n)

    def fdatasync(self) -> None:
        with self._hint_lock:
            self._hint_range = None         # the sync writes it anyway
        os.fdatasync(self.fd)

    def close(self) -> None:
        # One thread runs the hints in order: when the newest is done, all are.
        last, self._last_hint = self._last_hint, None
        if last is not None:
            last.exception()            # waits; a failed hint is only a hint
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
