"""One data file of fixed-size blocks.

Block b occupies bytes [b * block_size, (b + 1) * block_size).  The file may
be longer than the pool's committed size (growth done by a transaction that
later aborted is harmless: the next one reuses it).

Thread safety: ``pread`` / ``pwrite`` / ``pwritev`` are positional syscalls
and may be called from any number of threads at once; ``grow``, ``punch``,
``reserve`` and ``close`` must not race with each other (the single LMDB
writer serialises them).

Costs: one syscall per call (more only for partial transfers and for more
than IOV_MAX buffers); ``grow`` is one posix_fallocate; ``punch`` (free
blocks' space back to the file system) and ``reserve`` (space for punched
blocks again) one fallocate each.

Writing later (``pwrite_later``): a buffer its caller never changes again
is written by the background writer, a native thread of the file's own
(``native.BackgroundWriter``, csrc/bkwriter.c) that never runs Python, so
the caller only queues it (~2 us) instead of copying it into the page cache
(~0.1 ms per MiB), and no GIL changes hands.  Queued writes run in order
and wake the thread once per ``LATER_GROUP_BYTES``.  Nothing can tell the
difference but timing: a read, an immediate write, ``fdatasync`` or
``close`` first waits for the queued writes that overlap its range (all of
them for the last two); a failed queued write (EIO; ENOSPC cannot happen
in space ``grow`` reserved) is raised by the next ``fdatasync``, so the
commit that would point at its blocks fails, and by a read that waited for
a write while the error was pending.  At most ``LATER_MAX_BYTES`` are
queued; the caller then waits for the oldest.  Without the native
extension, or in a forked child, ``pwrite_later`` is ``pwrite``.  The
writer can also compute the blocks' checksums before writing them
(``digest=``), so that hashing too leaves the caller's thread (the pool's
fast path: ``Pool.write``).  The thread runs as SCHED_IDLE (raised to
normal priority while a thread waits for it): on a machine with few cores
it must not take CPU from the process whose writes these are, which is
usually busy producing the next ones.

Writeback hints: after a write of at least ``WRITEBACK_MIN`` bytes the pages
are handed to the disk at once (sync_file_range WRITE), so that the commit's
fdatasync waits for less (the background writer below gives its own
writes the same hints, from its thread).  Submitting them walks every page of the range
(50-100 us per MiB), work the writer need not wait for: it runs on one
background thread per process (a FUSE daemon's request thread is the
bottleneck of its writes).  The hint promises nothing; ``close`` waits for the
hints still queued, so none reaches a closed (or reused) descriptor.
"""
from __future__ import annotations

import collections
import ctypes
import errno
import os
import threading
from concurrent.futures import Future

from .. import errors
from ..native import BackgroundWriter, start_writeback
from .. import failpoints
from . import background

WRITEBACK_MIN = 1024 * 1024       # smaller writes are left to the kernel
HINT_BYTES = 8 * 1024 * 1024      # contiguous writes gathered into one hint
LATER_GROUP_BYTES = 4 << 20       # queued bytes that wake the background writer
LATER_MAX_BYTES = 32 << 20        # queued at most; then the caller waits for the oldest
try:
    IOV_MAX = max(16, os.sysconf("SC_IOV_MAX"))
except (AttributeError, ValueError, OSError):
    IOV_MAX = 1024

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
try:
    _fallocate = ctypes.CDLL(None, use_errno=True).fallocate
    _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    _fallocate.restype = ctypes.c_int
except (AttributeError, OSError):
    _fallocate = None
_UNSUPPORTED = (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def fallocate(fd: int, mode: int, offset: int, length: int) -> bool:
    """fallocate(2); False when the file system (or libc) does not support ``mode``."""
    if _fallocate is None:
        return False
    if _fallocate(fd, mode, offset, length) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err))


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
        self.can_punch = _fallocate is not None     # False once punch() found no support
        self._nowait_supported = True       # RWF_NOWAIT reads; False after EOPNOTSUPP
        self._last_hint: Future | None = None   # the newest queued writeback hint
        self._hint_range: tuple[int, int] | None = None   # (offset, length) gathered, not sent
        self._hint_lock = threading.Lock()
        self._bg = None                     # BackgroundWriter, made at the first pwrite_later
        self._bg_pid = 0                    # the process it belongs to
        self._later: collections.deque = collections.deque()  # (lo, hi, ticket), oldest first
        self._later_bytes = 0
        self._later_lock = threading.Lock()

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

    def punch(self, start_block: int, nblocks: int) -> bool:
        """Give the blocks' disk space back to the file system (a hole: reads as
        zeros, the file size stays).  Queued writes to the range land first.
        False when the file system cannot punch holes.  The caller guarantees the
        blocks are free and unreachable by any reader (Pool.trim)."""
        off, n = start_block * self.block_size, nblocks * self.block_size
        if self._later:
            self.settle(off, off + n)
        if not fallocate(self.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, n):
            self.can_punch = False
        return self.can_punch

    def cut(self, to_blocks: int) -> int:
        """Shorten the file to ``to_blocks`` blocks when it is longer (growth by a
        transaction that never committed); returns the blocks cut.  Queued writes
        land first.  The caller holds the writer lock and guarantees nothing beyond
        ``to_blocks`` is referenced (Pool.trim: the pool's committed size)."""
        have = self.size_blocks()
        if have <= to_blocks:
            return 0
        self.settle_all()
        with self._grow_lock:
            os.ftruncate(self.fd, to_blocks * self.block_size)
        return have - to_blocks

    def reserve(self, start_block: int, nblocks: int) -> None:
        """Allocate disk space for blocks inside the file again (after ``punch``),
        so writing them cannot fail for lack of space; errors.NoSpace when the
        disk is full.  A no-op where fallocate is not supported."""
        off, n = start_block * self.block_size, nblocks * self.block_size
        try:
            fallocate(self.fd, FALLOC_FL_KEEP_SIZE, off, n)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                err = errors.NoSpace(f"no space to reserve {nblocks} free blocks of the data "
                                     f"file again: {os.strerror(e.errno)}", path=self.path)
                err.disk_full = True        # not the metadata map: Env.transact must not retry
                raise err from e
            raise

    # ------------------------------------------------------------------ I/O
    def pwrite(self, start_block: int, data) -> None:
        """Write ``data`` (whole blocks) at ``start_block``."""
        self.pwritev(start_block, [data])

    def pwritev(self, start_block: int, buffers) -> None:
        """Gather-write ``buffers`` contiguously from ``start_block``."""
        self._write_now(start_block, buffers)

    def _write_now(self, start_block: int, buffers) -> None:
        off = first = start_block * self.block_size
        bufs = [memoryview(b).cast("B") for b in buffers]
        if self._later:
            self.settle(first, first + sum(b.nbytes for b in bufs))  # queued ones land first
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
            raise self._write_error(e.errno) from e
        if off - first >= WRITEBACK_MIN:
            self._writeback_later(first, off - first)
        if failpoints.ACTIVE:
            failpoints.hit("pool.after_pwrite")

    def pwrite_direct(self, start_block: int, data) -> None:
        """``pwrite`` of ``data`` (whole blocks) bypassing the page cache (O_DIRECT)
        when the buffer's address is aligned (an mmap'd buffer is) and the file
        system takes it: no copy into the cache, for bulk data no reader needs
        soon (an eager pull).  Durable, like every write, at the next
        ``fdatasync`` (it flushes the file's metadata and the disk cache, for
        both descriptors).  Otherwise a plain ``pwrite``, one bulk writer at a
        time (concurrent buffered writes to one file contend in the kernel)."""
        off = start_block * self.block_size
        mv = memoryview(data).cast("B")
        fd = self._direct_fd()
        if fd is not None and type(self).pwritev is DataFile.pwritev:   # not a test double
            if self._later:
                self.settle(off, off + mv.nbytes)
            try:
                done = 0
                while done < mv.nbytes:
                    done += os.pwrite(fd, mv[done:], off + done)
                if failpoints.ACTIVE:
                    failpoints.hit("pool.after_pwrite")
                return
            except OSError as e:
                if e.errno != errno.EINVAL:       # EINVAL: unaligned, nothing written
                    raise self._write_error(e.errno) from e
        with self._bulk_lock:
            self.pwrite(start_block, mv)

    _bulk_lock = threading.Lock()
    _direct = None                  # the O_DIRECT descriptor (False: not supported)

    def _direct_fd(self) -> int | None:
        if self._direct is None:
            with self._bulk_lock:
                if self._direct is None:
                    self._open_direct()
        return self._direct if self._direct is not False else None

    def _open_direct(self) -> None:
        flag = getattr(os, "O_DIRECT", 0)
        if not flag:
            self._direct = False
            return
        try:
            # the same open file, by its descriptor: no path to replace meanwhile
            self._direct = os.open(f"/proc/self/fd/{self.fd}", os.O_WRONLY | os.O_CLOEXEC | flag)
        except OSError:
            self._direct = False

    def _write_error(self, err: int) -> OSError:
        if err in (errno.ENOSPC, errno.EDQUOT):
            return errors.NoSpace(f"no space writing the data file: {os.strerror(err)}", path=self.path)
        return OSError(err, f"writing the data file: {os.strerror(err)}", self.path)

    # ------------------------------------------------------------------ writing later
    @property
    def writes_later(self) -> bool:
        """``pwrite_later`` runs in the background here (native writer, this process)."""
        return BackgroundWriter is not None and (self._bg is None or self._bg_pid == os.getpid())

    def pwrite_later(self, start_block: int, data, digest=None) -> "QueuedDigests | None":
        """``pwrite`` of ``data`` (whole blocks, never changed by the caller again)
        from the background writer; see "Writing later" above.  ``digest`` =
        (algorithm, block_size): the writer also hashes the blocks first and the
        returned ``QueuedDigests`` gives them (only where ``writes_later``)."""
        bg = self._writer()
        if bg is None:
            if digest is not None:
                raise ValueError("digests come with background writes only (see writes_later)")
            self._write_now(start_block, [data])
            return None
        off = start_block * self.block_size
        n = memoryview(data).nbytes
        with self._later_lock:
            ticket, out = bg.submit(off, data, digest)      # the writer keeps `data` alive
            self._later.append((off, off + n, ticket))
            self._later_bytes += n
            oldest = self._later[0][2] if self._later_bytes > LATER_MAX_BYTES else 0
        if oldest:
            self._wait_for(oldest)
        if failpoints.ACTIVE:
            failpoints.hit("pool.after_pwrite")
        return None if out is None else QueuedDigests(self, ticket, out)

    def _writer(self):
        if BackgroundWriter is None:
            return None
        if self._bg is None:
            self._bg = BackgroundWriter(self.fd, LATER_GROUP_BYTES, HINT_BYTES)
            self._bg_pid = os.getpid()
        elif self._bg_pid != os.getpid():
            return None                     # a forked child: the thread is the parent's
        return self._bg

    def settle(self, lo: int, hi: int) -> None:
        """Wait for the queued writes that overlap bytes [lo, hi)."""
        last = 0
        with self._later_lock:
            for a, b, ticket in self._later:
                if a < hi and lo < b:
                    last = ticket           # FIFO: the newest one covers the others
        if last:
            self._wait_for(last)
            self._check_writes()

    def _check_writes(self) -> None:
        err = self._bg.error() if self._bg is not None else 0
        if err:
            raise self._write_error(err)

    def settle_all(self) -> None:
        """Wait for every queued write."""
        if self._later and self._bg_pid == os.getpid():
            self._wait_for(self._later[-1][2])

    def _wait_for(self, ticket: int) -> None:
        if self._bg_pid != os.getpid():
            return
        done = self._bg.wait(ticket)
        with self._later_lock:
            while self._later and self._later[0][2] <= done:
                self._later_bytes -= self._later[0][1] - self._later[0][0]
                self._later.popleft()

    def preadinto(self, byte_off: int, buf, nowait: bool = False) -> None:
        """Fill the writable buffer ``buf`` from byte offset ``byte_off`` (one copy,
        no intermediate bytes); a short read raises errors.Corruption.
        ``nowait``: only from the page cache (RWF_NOWAIT): raises BlockingIOError
        (EAGAIN) instead of waiting for the disk -- always, on a file system
        that cannot tell (EOPNOTSUPP, e.g. tmpfs): the caller reads elsewhere."""
        mv = memoryview(buf).cast("B")
        if self._later:
            self.settle(byte_off, byte_off + mv.nbytes)
        flags = 0
        if failpoints.ACTIVE:
            failpoints.hit("pool.before_nowait_pread" if nowait else "pool.before_pread")
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
        if self._later:
            self.settle(off, off + want)
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
        """Make every write so far durable, queued ones included; raises the error
        of a queued write that failed (once)."""
        if self._bg is not None and self._bg_pid == os.getpid():
            self.settle_all()
            err = self._bg.take_error()
            if err:
                raise self._write_error(err)
        with self._hint_lock:
            self._hint_range = None         # the sync writes it anyway
        os.fdatasync(self.fd)

    def close(self) -> None:
        bg, self._bg = self._bg, None
        if bg is not None and self._bg_pid == os.getpid():
            bg.close()                  # finishes the queued writes
            self._later.clear()
            self._later_bytes = 0
        # One thread runs the hints in order: when the newest is done, all are.
        last, self._last_hint = self._last_hint, None
        if last is not None:
            last.exception()            # waits; a failed hint is only a hint
        direct, self._direct = self._direct, False
        if direct:
            os.close(direct)
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class QueuedDigests:
    """The digests a queued write computes (``DataFile.pwrite_later(digest=...)``)."""

    __slots__ = ("_file", "_ticket", "_out")

    def __init__(self, file: DataFile, ticket: int, out: bytearray):
        self._file, self._ticket, self._out = file, ticket, out

    def result(self) -> bytes:
        """Waits for the write; raises its error (then the digests are not valid)."""
        self._file._wait_for(self._ticket)
        self._file._check_writes()
        return bytes(self._out)
