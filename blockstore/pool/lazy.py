"""Reads of absent blocks: the fetcher protocol and the pool view that calls it.

The pool knows which blocks are absent (``absent.py``) but not where their
bytes live.  A ``BlockFetcher`` (supplied from above: the remote tier
installs one with ``Pool.set_fetcher``; the pool imports nothing of it)
returns the bytes of blocks named by SHA-256 and source.  ``LazyReads`` is
the pool as one transaction sees it when the store has absent blocks: every
read first makes its blocks present (``Pool.fetch_absent``: fetch with
read-ahead, verify each block's SHA-256, write it into its block), then
reads as usual.  Bytes that fail their hash never reach the data file; a
fetch that fails raises to that reader only (``Unreachable`` or
``Corruption``, both EIO), within the fetcher's ``timeout``.

Recording a filled block (dropping its ``pool.absent`` entry and putting its
checksum) needs a write transaction, which the pool never opens: the txn
layer installs ``Pool.record_filled`` and commits them on its own thread,
so a reader never waits for the writer lock.  Until then the process
remembers the blocks it filled (``Pool.fills``) and does not fetch them
again; another process, or this one after a crash, fetches them once more
(same bytes, verified again): harmless.
"""
from __future__ import annotations

import threading
from typing import Protocol, Sequence

from .. import errors


class BlockFetcher(Protocol):
    """What the pool needs from whoever knows where absent blocks live."""

    timeout: float      # seconds one fetch may take before it raises Unreachable

    def fetch(self, wants: Sequence[tuple[bytes, str]]) -> list[bytes]:
        """The bytes of each (sha256, source), in order (each one block long).
        Raise errors.Unreachable when a source cannot be reached in time and
        errors.NotFound when it does not hold a block.  The pool verifies every
        block against its SHA-256 itself."""
        ...


READ_AHEAD_MIN = 16        # blocks fetched past the second of two small sequential reads (64 KiB)
READ_AHEAD_MAX = 64        # a sequential reader's window doubles up to this (256 KiB)
# A read that does not continue the last one gets no read-ahead: page faults of
# mapped binaries jump around, and the kernel reads ahead for FUSE readers itself.


class Fills:
    """What this process filled of absent blocks and has not recorded yet
    (block -> sha256), and the read-ahead state; one lock guards both."""

    def __init__(self):
        self.lock = threading.Lock()
        self.filled: dict[int, bytes] = {}
        self.ra_end, self.ra_window = -1, 0

    def has(self, block: int, digest: bytes) -> bool:
        """Was ``block`` filled with the bytes of ``digest`` (not recorded yet)?"""
        return self.filled.get(block) == digest

    def forget(self, items) -> None:
        """Drop (block, sha256) pairs still remembered with that digest."""
        with self.lock:
            for b, d in items:
                if self.filled.get(b) == d:
                    del self.filled[b]


class LazyReads:
    """``inner`` (the pool, or its verifying view) as txn ``t`` sees it, with
    absent blocks fetched before they are read.  Every other attribute is
    the inner view's."""

    __slots__ = ("_inner", "_pool", "_t")

    def __init__(self, pool, inner, t):
        self._pool = pool
        self._inner = inner
        self._t = t

    def _present(self, start: int, n: int, nowait: bool = False) -> None:
        from . import HOLE
        if start == HOLE or n <= 0:
            return
        pool = self._pool
        if not pool.absent.count(self._t):
            return
        missing = [m for m in pool.absent.range(self._t, start, n) if not pool.fills.has(m[0], m[1])]
        if not missing:
            return
        if nowait:
            raise BlockingIOError(11, "blocks of a lazily pulled snapshot are being fetched")
        pool.fetch_absent(self._t, missing)

    def read(self, start: int, n: int, verify=None) -> bytes:
        self._present(start, n)
        return self._inner.read(start, n, verify)

    def readinto(self, start: int, offset: int, buf, verify=None, nowait: bool = False) -> None:
        bs = self._pool.block_size
        nbytes = memoryview(buf).nbytes
        first = offset // bs
        self._present(start + first, (offset + nbytes + bs - 1) // bs - first, nowait)
        self._inner.readinto(start, offset, buf, verify, nowait)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def no_fetcher(block: int) -> errors.Unreachable:
    return errors.Unreachable(
        f"block {block} belongs to a lazily pulled snapshot and is not local, and no remote "
        f"is set up to fetch it (blockstore remote ls; pull --fill completes a snapshot)")


def sha256_of_blocks(data, bs: int) -> list[bytes]:
    from blockstore.native import sha256_many
    d = sha256_many(data, bs)
    return [bytes(d[i:i + 32]) for i in range(0, len(d), 32)]


def reserve(pool, t, digests: Sequence[bytes], source) -> list[tuple[int, int]]:
    """Allocate one block per digest, absent until filled; returns the runs
    (the caller owns one reference to each block, as from ``write``).
    Stale checksums of the blocks' former lives are cut: an absent block
    has none until it is filled."""
    runs = pool.allocate(t, len(digests))
    pos = 0
    for s, k in runs:
        pool.sums.cut(t, s, k)
        pool.absent.add(t, s, digests[pos:pos + k],
                        source if isinstance(source, str) else source[pos:pos + k])
        pos += k
    return runs


def fetch_absent(pool, t, missing: list[tuple[int, bytes, str]]) -> None:
    """Make the absent blocks ``missing`` (and a read-ahead window after them)
    present: fetch, verify, pwrite, remember as filled and hand them to
    ``pool.record_filled``.  The caller's txn keeps the blocks from reuse
    while their bytes are written (ARCHITECTURE.md §5)."""
    fetcher = pool.fetcher
    if fetcher is None:
        raise no_fetcher(missing[0][0])
    last = missing[-1][0]
    fills = pool.fills
    with fills.lock:
        # read ahead for a small read that continues the last one; a large read
        # (a kernel readahead request of a FUSE mount) is its own read-ahead
        seq = fills.ra_end == missing[0][0] and last - missing[0][0] < READ_AHEAD_MIN
        window = min(READ_AHEAD_MAX, max(READ_AHEAD_MIN, fills.ra_window * 2)) if seq else 0
        fills.ra_window = window
    want = list(missing)
    if window:
        seen = {m[0] for m in want}
        for m in pool.absent.following(t, last + 1, window):
            if m[0] not in seen and not fills.has(m[0], m[1]):
                want.append(m)
    datas = fetcher.fetch([(d, src) for _, d, src in want])
    bs = pool.block_size
    if len(datas) != len(want):
        raise errors.Corruption("the remote fetcher returned the wrong number of blocks")
    good = []
    for (b, d, src), data in zip(want, datas):
        if len(data) != bs or sha256_of_blocks(data, bs)[0] != d:
            if any(b == m[0] for m in missing):
                raise errors.Corruption(f"block {b} fetched from remote {src!r} does not match "
                                        f"its SHA-256 {d.hex()[:16]}...; not stored")
            continue                    # a bad read-ahead block: left absent
        good.append((b, d, data))
    pool.mark_dirty()
    for b, d, data in good:
        pool.data.pwrite(b, data)
    with fills.lock:
        for b, d, _ in good:
            fills.filled[b] = d
        fills.ra_end = last + 1 + window if window else last + 1
        if fills.ra_end > want[-1][0] + 1:
            fills.ra_end = want[-1][0] + 1
    if pool.record_filled is not None:
        pool.record_filled([(b, d) for b, d, _ in good])


def commit_filled(pool, t, items: Sequence[tuple[int, bytes]]) -> int:
    """In write txn ``t``: for each (block, sha256) still absent with that
    digest and whose bytes on disk now match it, drop the entry and put the
    block's checksum.  Returns how many were recorded."""
    bs = pool.block_size
    done = 0
    for b, d in items:
        cur = pool.absent.range(t, b, 1)
        if cur and cur[0][1] == d:
            data = pool.data.pread(b, 1)
            if sha256_of_blocks(data, bs)[0] == d:
                pool.absent.remove(t, b, 1)
                pool.sums.put_run(t, b, pool.sums.hash(data, bs))
                done += 1
        pool.fills.forget([(b, d)])
    return done


def write_verified(pool, t, runs: Sequence[tuple[int, Sequence[bytes], object]]
                   ) -> list[tuple[int, list[bytes], bytes]]:
    """Write the bytes of absent blocks without a write txn (an eager pull's
    bulk path; ``record_written`` records them later, in few txns).

    ``t``: a read txn of the caller's thread, begun after the caller learnt
    which blocks are absent; it keeps them from reuse while their bytes are
    written (ARCHITECTURE.md §5), and only blocks it still shows absent with
    the given SHA-256 are written (one removed meanwhile may be reused).
    ``runs``: [(start block, [sha256 per block], buffer of len(digests)
    blocks)].  Every block is verified against its SHA-256 first; any
    mismatch raises Corruption and nothing of the call is written.  Returns
    [(start, digests, checksums)] of what was written, for ``record_written``.

    Threads may call it at once, each with its own read txn: the hashes and
    the writes (``DataFile.pwrite_direct``) release the GIL.  The data file is marked
    dirty after the writes, so the commit that records the blocks syncs them."""
    from blockstore.native import sha256_many
    bs = pool.block_size
    todo = []
    for start, digests, buf in runs:
        mv = memoryview(buf)
        if mv.nbytes != len(digests) * bs:
            raise errors.Corruption(f"the bytes fetched for block {start} have the wrong length")
        got = sha256_many(mv, bs, 1)
        if got != b"".join(digests):
            for i, d in enumerate(digests):
                if got[i * 32:(i + 1) * 32] != d:
                    raise errors.Corruption(f"block {start + i}: the bytes fetched do not match "
                                            f"its SHA-256 {d.hex()[:16]}...; not stored")
        for i, j in pool.absent.matching(t, start, digests):
            todo.append((start + i, list(digests[i:j]), mv[i * bs:j * bs], got[i * 32:j * 32]))
    same = pool.checksum == "sha256"
    out = [(s, ds, sha if same else bytes(pool.sums.hash(buf, bs))) for s, ds, buf, sha in todo]
    # past the page cache when the buffers are aligned (the pull's are mmap'd): the
    # copy into the cache would cost more CPU than fetching and hashing the bytes
    for s, _, buf, _ in todo:
        pool.data.pwrite_direct(s, buf)
    pool.mark_dirty()               # after the writes: a sync that starts later covers them
    return out


def record_written(pool, t, written: Sequence[tuple[int, list[bytes], bytes]]) -> int:
    """In write txn ``t``: record blocks ``write_verified`` wrote: for each block
    still absent with that SHA-256, drop the entry and put its checksum (the
    commit syncs the data file first).  A block no longer absent, or absent
    with another digest (its snapshot was removed meanwhile), is skipped.
    Returns how many were recorded."""
    ds = pool.sums.digest_size
    done = 0
    for start, digests, sums in written:
        for i, j in pool.absent.take_matching(t, start, digests):
            pool.sums.put_run(t, start + i, sums[i * ds:j * ds])
            done += j - i
    return done

