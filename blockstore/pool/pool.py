"""Pool: fixed-size data blocks with thin provisioning, dedup and deferred frees.

What the caller must hold:

* every method taking ``t`` gets the raw ``lmdb.Transaction`` of the txn
  layer: a write txn for write/inc/dec/release_pending/rebuild, any txn for
  the introspection methods.  The pool never commits or aborts and keeps no
  metadata in memory across calls, so an aborted txn leaves no trace (except
  data-file growth and written-but-unreferenced blocks, both harmless).
* ``sync()`` must run after the last write of a txn and BEFORE its LMDB
  commit (data durable before the metadata that points at it).
* ``read()`` needs no txn: the caller's LMDB read txn guarantees, through the
  deferred frees of pending.py, that the blocks it reaches are not reused
  while it lives.

Block states: free | pending-free | owned once (implicit) | shared (count).
``write`` returns runs the caller owns one reference to; ``inc``/``dec``
change the references of a run of live blocks; a block reaching 0 goes to
pending under ``t.id()`` and loses its dedup entry in the same txn.

Checksums (sums.py): every block ``write`` stores gets its digest in the
store's checksum algorithm (``checksum``: XXH3-128, or SHA-256 with dedup
and in stores created before the choice existed) in ``pool.sums`` in the same txn; ``verify``/``block_digest`` read them back and
``read(..., verify=t)`` (or the ``verifying(t)`` view the txn layer hands out
when the store was opened with verified reads) raises errors.Corruption
naming the first block whose content does not match.

Costs: ``write`` of B blocks: one zero_flags and one checksum call over
the whole buffer (dedup off and some zero blocks: one per run of non-zero
blocks; native, GIL released; SHA-256 on 2 threads from 1 MiB, XXH3 on the
calling thread), O(B) small Python steps, one ``pool.sums`` put per
allocated run (per 127 SHA-256 / 254 XXH3 digests), with dedup
one LMDB get per non-zero block and two puts per new block, one
``allocate`` and one pwrite(v) per allocated run.  An owned buffer without
zero blocks (dedup off) is only queued: the data file's background writer
hashes and writes it (~2 us per run on the caller instead of ~0.1 ms per
MiB of copying and ~0.09 ms of hashing), and its digests are put at the
next ``flush_pending`` (or when more than 16 MiB wait).  ``read`` is one pread;
with ``verify`` add one checksum call and O(log N + n/CHUNK) LMDB steps.  ``inc``/``dec``:
O(log N + k) cursor operations per run (k = shared runs overlapped).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterator

from blockstore.native import sha256_many, zero_flags

from . import check
from . import runs
from . import lazy
from .absent import Absent
from .allocator import GROW_MIN_BYTES, Allocator
from .datafile import DataFile
from .dbs import (BLOCK_SIZE, DEDUP_HITS, FREE_BLOCKS, PENDING_BLOCKS, SHARED_BLOCKS, SHARED_EXTRA,
                  TOTAL_BLOCKS, TRIM_ON_RELEASE, ZERO_BLOCKS, Meta, PoolDbs)
from .dedup import DIGEST_SIZE, DedupIndex
from .pending import Pending
from .refcounts import Refcounts
from .sums import Sums, default_algorithm
from .trimmed import Trimmed
from .. import errors

HOLE = -1  # run start meaning "zero blocks, not stored"


@dataclass
class PoolStats:
    block_size: int
    total_blocks: int
    free_blocks: int
    pending_blocks: int
    used_blocks: int          # total - free - pending
    shared_blocks: int        # blocks with count >= 2
    shared_extra_refs: int    # sum of (count - 1) over shared blocks
    dedup_entries: int
    dedup_hits: int           # cumulative blocks not written thanks to dedup
    zero_blocks: int          # cumulative zero blocks not stored
    trimmed_blocks: int = 0   # free blocks whose disk space was given back (trim)


class Pool:
    def __init__(self, dbs: PoolDbs, data: DataFile, block_size: int, dedup: bool, *,
                 checksum: str | None = None, grow_min_bytes: int = GROW_MIN_BYTES):
        """``checksum``: the algorithm of pool.sums (sums.ALGORITHMS); None = the
        default of a new store (sums.default_algorithm).  Dedup needs "sha256"."""
        assert 4096 <= block_size <= 1 << 20 and block_size & (block_size - 1) == 0, block_size
        assert data.block_size == block_size, (data.block_size, block_size)
        self.dbs = dbs
        self.data = data
        self.block_size = block_size
        self.dedup = dedup
        self.checksum = default_algorithm(dedup) if checksum is None else checksum
        if dedup and self.checksum != "sha256":
            raise errors.InvalidInput(f"dedup needs sha256 block checksums, not {self.checksum}")
        self.meta = Meta(dbs.meta)
        self.trimmed = Trimmed(dbs, self.meta, data)
        # (freeing txn, start, n) of pending runs this process punched on release:
        # not metadata (a fact about the data file's holes; a pending run is
        # unique by its freeing txn), so a release that follows an aborted one
        # does not punch the same hole again.
        self._holes: set[tuple[int, int, int]] = set()
        self.alloc = Allocator(dbs, self.meta, data, block_size, grow_min_bytes, self.trimmed)
        self.pending = Pending(dbs, self.meta)
        self.refs = Refcounts(dbs, self.meta)
        self.index = DedupIndex(dbs)
        self.sums = Sums(dbs, self.checksum)
        self.digest_size = self.sums.digest_size      # of pool.sums; the dedup index's is DIGEST_SIZE
        self._dirty = False
        self._dirty_lock = threading.Lock()
        # absent blocks (absent.py, lazy.py): who fetches them, what this process filled
        # and has not recorded yet, the read-ahead state, and who records them (txn layer)
        self.absent = Absent(dbs, self.meta)
        self.fetcher: lazy.BlockFetcher | None = None
        self.record_filled = None
        self.fills = lazy.Fills()

    # ================================================================ absent blocks
    def set_fetcher(self, fetcher: "lazy.BlockFetcher | None") -> None:
        """Install who fetches absent blocks (the remote tier does; see lazy.py)."""
        self.fetcher = fetcher

    def lazy_view(self, t, inner=None) -> "lazy.LazyReads":
        """The pool (or ``inner``, a view of it) as txn ``t`` sees it, fetching absent blocks."""
        return lazy.LazyReads(self, self if inner is None else inner, t)

    def reserve_absent(self, t, digests, source: str) -> list[tuple[int, int]]:
        """Runs of new blocks that stay absent until filled (lazy.reserve)."""
        self._check_block_size(t)
        return lazy.reserve(self, t, digests, source)

    def fetch_absent(self, t, missing) -> None:
        lazy.fetch_absent(self, t, missing)

    def commit_filled(self, t, items) -> int:
        return lazy.commit_filled(self, t, items)

    def write_verified(self, t, runs):
        """Verify and write absent blocks outside a write txn (lazy.write_verified)."""
        return lazy.write_verified(self, t, runs)

    def record_written(self, t, written) -> int:
        """Record what write_verified wrote (lazy.record_written)."""
        return lazy.record_written(self, t, written)

    # ================================================================ writes
    def _check_block_size(self, t) -> None:
        bs = self.meta.get(t, BLOCK_SIZE)
        if bs == 0:
            self.meta.set(t, BLOCK_SIZE, self.block_size)
        elif bs != self.block_size:
            raise errors.InvalidInput(
                f"pool has {bs}-byte blocks, opened with {self.block_size}-byte blocks")

    def write(self, t, data, owned: bool = False) -> list[tuple[int, int]]:
        """Store len(data)//block_size blocks; returns runs (start or HOLE, n) covering them.

        The caller owns exactly one reference to every returned block.
        ``owned``: the caller never changes ``data`` again (``bytes`` always
        qualifies), so when no block is zero and dedup is off its blocks are
        hashed and written by the data file's background writer
        (``DataFile.pwrite_later``, native; ``Sums.put_computed``), or without
        it hashed on the pool's hashing thread (``Sums.put_later``).

        Three paths: no zero block and no dedup, with the background writer
        (``_write_behind``) or on this thread (``_write_through``): one run of
        new blocks per extent; otherwise (``_write_mixed``) zero blocks become
        holes and, with dedup, known blocks become references.

        ``data`` may also be a list of bytes-like pieces, each of whole blocks,
        stored one after the other (a vectored write): on the background
        writer's path the pieces are queued as they are (no copy, one queued
        write per piece and run); on the others they are joined first.
        """
        if isinstance(data, list):
            return self._write_pieces(t, data, owned)
        mv = memoryview(data)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
        bs = self.block_size
        if mv.nbytes % bs:
            raise errors.InvalidInput(f"write of {mv.nbytes} bytes is not a multiple of the {bs}-byte block size")
        nb = mv.nbytes // bs
        if nb == 0:
            return []
        self._check_block_size(t)
        flags = zero_flags(mv, bs)
        nzero = flags.count(1)
        if nzero or self.dedup:
            return self._write_mixed(t, mv, flags, nzero)
        extents = self.allocate(t, nb)
        later = owned or isinstance(data, bytes)
        if later and self.data.writes_later:
            self._write_behind(t, mv, extents)
        else:
            self._write_through(t, mv, extents, later)
        return extents

    def _write_pieces(self, t, pieces: list, owned: bool) -> list[tuple[int, int]]:
        """``write`` of a list of pieces (see there); cost per piece: one
        zero_flags call and one queued write per run it spans."""
        bs = self.block_size
        mvs = []
        for p in pieces:
            mv = memoryview(p)
            if mv.ndim != 1 or mv.itemsize != 1:
                mv = mv.cast("B")
            if mv.nbytes % bs:
                raise errors.InvalidInput(f"write of a {mv.nbytes}-byte piece is not a multiple of the {bs}-byte block size")
            mvs.append(mv)
        later = owned or all(isinstance(p, bytes) for p in pieces)
        if (self.dedup or not later or not self.data.writes_later
                or any(zero_flags(mv, bs).count(1) for mv in mvs)):
            return self.write(t, b"".join(mvs), True)     # the general paths, on one copy
        nb = sum(mv.nbytes for mv in mvs) // bs
        if nb == 0:
            return []
        self._check_block_size(t)
        extents = self.allocate(t, nb)
        self._write_behind(t, mvs, extents)
        return extents

    def _write_behind(self, t, mvs, extents) -> None:
        """The data file's background writer hashes and writes each run of new
        blocks; ``mvs``: the blocks' bytes, one or more byte memoryviews
        (one queued write per piece of a run)."""
        bs = self.block_size
        how = (self.checksum, bs)
        if not isinstance(mvs, list):
            mvs = [mvs]
        it = iter(mvs)
        cur, pos = next(it), 0              # the piece being stored, blocks of it done
        for s, k in extents:
            while k:
                left = cur.nbytes // bs - pos
                if left == 0:
                    cur, pos = next(it), 0
                    continue
                m = min(k, left)
                digests = self.data.pwrite_later(s, cur[pos * bs:(pos + m) * bs], digest=how)
                self.sums.put_computed(t, [(s, m)], digests, m * bs)
                s, k, pos = s + m, k - m, pos + m

    def _write_through(self, t, mv, extents, later: bool) -> None:
        """pwrite each run of new blocks on this thread; ``later``: hashed on the
        pool's hashing thread meanwhile, else here first."""
        bs, ds = self.block_size, self.digest_size
        if later:
            self.sums.put_later(t, mv, bs, extents)     # hashed while we pwrite
        else:
            digests = self.sums.hash(mv, bs)
        pos = 0
        for s, k in extents:
            self.data.pwrite(s, mv[pos * bs:(pos + k) * bs])
            if not later:
                self.sums.put_run(t, s, digests[pos * ds:(pos + k) * ds])
            pos += k

    def _write_mixed(self, t, mv, flags, nzero: int) -> list[tuple[int, int]]:
        """Zero blocks become holes, dedup hits references, the rest new blocks."""
        bs = self.block_size
        # targets[i]: block number, HOLE, or -(slot + 2) for the slot-th new block
        if self.dedup:
            targets, new_src, hits, digests = self._dedup_targets(t, mv, flags)
        else:
            (targets, new_src), hits = self._new_targets(flags), {}
            digests = _nonzero_digests(mv, bs, flags, self.sums.hash, self.digest_size)

        # a dedup entry must point at a live block (checked before allocation could reuse it)
        for s, n, _ in _group(sorted((x, 0) for x in hits if x >= 0)):
            self._check_live(t, s, n, "dedup hit on")

        extents = self.allocate(t, len(new_src))  # may raise NoSpace: nothing changed yet
        slot_block = [b for s, k in extents for b in range(s, s + k)]
        if hits:
            self._reference_hits(t, hits, slot_block)
        if self.dedup:
            add = self.index.add
            for j, i in enumerate(new_src):
                add(t, digests[i * DIGEST_SIZE:(i + 1) * DIGEST_SIZE], slot_block[j])
        self._write_gathered(t, mv, digests, new_src, extents)
        self.meta.add(t, ZERO_BLOCKS, nzero)
        self.meta.add(t, DEDUP_HITS, sum(hits.values()))
        return _runs_of(targets, slot_block)

    @staticmethod
    def _new_targets(flags) -> tuple[list[int], list[int]]:
        """Without dedup: HOLE for each zero block, the next new slot for each
        other; and the indexes of the blocks to store."""
        targets = [HOLE] * len(flags)
        new_src: list[int] = []
        for i in range(len(flags)):
            if not flags[i]:
                targets[i] = -(len(new_src) + 2)
                new_src.append(i)
        return targets, new_src

    def _dedup_targets(self, t, mv, flags):
        """With dedup: each non-zero block's target (a block with the same SHA-256
        in the index or earlier in ``mv``, or a new slot); returns (targets,
        indexes of the blocks to store, {target: hits}, SHA-256 digests)."""
        bs = self.block_size
        nb = len(flags)
        targets = [HOLE] * nb
        new_src: list[int] = []
        hits: dict[int, int] = {}
        # with dedup the pool's checksum is SHA-256, so these digests serve pool.sums too
        digests = sha256_many(mv, bs)
        seen: dict[bytes, int] = {}
        lookup = self.index.lookup
        for i in range(nb):
            if flags[i]:
                continue
            d = digests[i * DIGEST_SIZE:(i + 1) * DIGEST_SIZE]
            x = seen.get(d)
            if x is None:
                x = lookup(t, d)
                if x is None:
                    x = seen[d] = -(len(new_src) + 2)
                    new_src.append(i)
                    targets[i] = x
                    continue
                seen[d] = x
            targets[i] = x
            hits[x] = hits.get(x, 0) + 1
        return targets, new_src, hits, digests

    def _reference_hits(self, t, hits: dict[int, int], slot_block: list[int]) -> None:
        """The references of dedup hits, grouped into runs of equal extra count."""
        resolved: dict[int, int] = {}
        for x, k in hits.items():
            b = x if x >= 0 else slot_block[-x - 2]
            resolved[b] = resolved.get(b, 0) + k
        for s, n, k in _group(sorted(resolved.items())):
            self.refs.adjust(t, s, n, k)

    def _write_gathered(self, t, mv, digests, new_src: list[int], extents) -> None:
        """One gather-write (and one pool.sums entry) per allocated run of the
        blocks ``new_src`` (indexes into ``mv``, in order)."""
        bs, ds = self.block_size, self.digest_size
        j = 0
        for s, k in extents:
            bufs = []
            sums = []
            a = new_src[j]
            prev = a
            for i in new_src[j + 1:j + k]:
                if i != prev + 1:
                    bufs.append(mv[a * bs:(prev + 1) * bs])
                    sums.append(digests[a * ds:(prev + 1) * ds])
                    a = i
                prev = i
            bufs.append(mv[a * bs:(prev + 1) * bs])
            sums.append(digests[a * ds:(prev + 1) * ds])
            self.data.pwritev(s, bufs)
            self.sums.put_run(t, s, b"".join(sums))
            j += k

    def allocate(self, t, m: int) -> list[tuple[int, int]]:
        """Runs of ``m`` free blocks (the pool grows when it has too few); the
        caller writes them and owns one reference to each."""
        if m <= 0:
            return []
        self.mark_dirty()   # before growth or data writes: sync() must see them
        return self.alloc.allocate(t, m)

    def mark_dirty(self) -> None:
        """The data file changed (or is about to): the next ``sync`` fdatasyncs it."""
        with self._dirty_lock:
            self._dirty = True

    def _check_live(self, t, start: int, n: int, what: str) -> None:
        if start < 0 or n <= 0:
            raise errors.InvalidInput(f"{what} an invalid run (start {start}, n {n})")
        total = self.meta.get(t, TOTAL_BLOCKS)
        if start + n > total:
            raise errors.Corruption(f"{what} {runs.fmt_run(start, n)} beyond the pool's {total} blocks")
        f = self.alloc.overlap(t, start, n)
        if f is not None:
            raise errors.Corruption(f"{what} {runs.fmt_run(start, n)}, which overlaps free {runs.fmt_run(*f)}")
        p = self.pending.overlap(t, start, n)
        if p is not None:
            raise errors.Corruption(
                f"{what} {runs.fmt_run(start, n)}, which overlaps {runs.fmt_run(p[0], p[1])} pending-free since txn {p[2]}")

    def inc(self, t, start: int, n: int) -> None:
        """+1 on each block of the run (HOLE runs are ignored)."""
        if start == HOLE or n == 0:
            return
        self._check_live(t, start, n, "inc of")
        self.refs.adjust(t, start, n, 1)

    def dec(self, t, start: int, n: int) -> None:
        """-1 on each block of the run; blocks reaching 0 go to pending under t.id()."""
        if start == HOLE or n == 0:
            return
        self._check_live(t, start, n, "dec of")
        txnid = t.id()
        absent = self.absent.count(t)
        for s, k in self.refs.adjust(t, start, n, -1):
            self.index.remove_blocks(t, s, k)
            if absent:
                self.absent.remove(t, s, k)
            self.pending.add(t, txnid, s, k)

    def written(self, runs) -> None:
        """Wait until the blocks of ``runs`` (returned by ``write``) are written:
        the buffer handed over with ``owned`` may then be reused."""
        bs = self.block_size
        for start, n in runs:
            if start != HOLE:
                self.data.settle(start * bs, (start + n) * bs)

    def trim(self, t) -> int:
        """Give the disk space of every free block back to the file system (punch
        holes; see trimmed.py for why this is safe for readers), and cut the data
        file back to the pool's size where a transaction that never committed grew
        it; returns the blocks given back.  Write txn ``t``; run after release_pending."""
        cut = self.data.cut(self.meta.get(t, TOTAL_BLOCKS))
        return cut + self.trimmed.trim(t, self.alloc.runs(t))

    def untrimmed_free_blocks(self, t) -> int:
        """Free blocks still allocated on disk (two counter reads)."""
        return self.meta.get(t, FREE_BLOCKS) - self.trimmed.count(t)

    def trimmed_count(self, t) -> int:
        return self.trimmed.count(t)

    def trimmed_runs(self, t) -> Iterator[tuple[int, int]]:
        return self.trimmed.runs(t)

    def release_pending(self, t, limit_txnid: int) -> int:
        """Free the blocks freed in txns W <= limit_txnid (never the current one).
        Those of the txn marked by ``trim_when_released`` are also punched and
        recorded as trimmed, and the mark is dropped."""
        mark = self.meta.get(t, TRIM_ON_RELEASE)
        holes = self._holes

        def free(t, s, n, w):
            self.alloc.free(t, s, n)
            if w == mark:
                run = (w, s, n)
                if self.trimmed.punch_one(t, s, n, punched=run in holes):
                    # A release in a txn that aborts (Env.trial) leaves the hole
                    # and the pending run: the next release records it unpunched.
                    if len(holes) > 4096:
                        holes.clear()
                    holes.add(run)
        released = self.pending.release(t, limit_txnid, free)
        if mark and mark <= min(limit_txnid, t.id() - 1):
            t.delete(TRIM_ON_RELEASE, db=self.meta.db)
        return released

    def releasable_pending(self, t, limit_txnid: int) -> int:
        """Pending blocks freed in txns W <= limit_txnid: free for every reader,
        waiting only for the next write to release them."""
        return self.pending.releasable(t, limit_txnid)

    def trim_when_released(self, t) -> None:
        """Mark the frees that write txn ``t`` deferred (if any): whichever later
        write txn releases them (txn.py, at its start) also gives their disk space
        back (punch, pool.trimmed), so a removal leaves gc no commit to make (gc
        releases and punches them at once in a write txn it aborts, Env.trial).
        One txn is marked at a time: a newer mark replaces an older one, whose
        runs are then released untrimmed and trimmed by a later gc."""
        if self.pending.freed_by(t, t.id()):
            self.meta.set(t, TRIM_ON_RELEASE, t.id())

    def flush_pending(self, t) -> None:
        """Before committing the write txn ``t``: put the digests still being computed."""
        self.sums.flush(t)

    def sync(self) -> None:
        """fdatasync the data file if anything was written or grown since the last sync."""
        with self._dirty_lock:
            if not self._dirty:
                return
            self._dirty = False
        try:
            self.data.fdatasync()
        except BaseException:
            with self._dirty_lock:
                self._dirty = True
            raise

    # ================================================================ reads
    def read(self, start: int, n: int, verify=None) -> bytes:
        """The bytes of n blocks from start (a HOLE run reads as zeros).

        ``verify=t`` (an LMDB txn) checks every block against its digest in
        pool.sums and raises errors.Corruption naming the first bad block
        (blocks without a digest pass unverified).
        """
        if start == HOLE:
            return bytes(n * self.block_size)
        data = self.data.pread(start, n)
        if verify is not None:
            self._raise_bad(verify, start, n, data)
        return data

    def readinto(self, start: int, offset: int, buf, verify=None, nowait: bool = False) -> None:
        """Fill ``buf`` with the bytes at byte ``offset`` of the run starting at block
        ``start`` (a HOLE run reads as zeros); copies straight into ``buf``.
        ``verify=t``: as in read(); reads the whole blocks that cover ``buf``.
        ``nowait``: page cache only, else BlockingIOError (not with ``verify``)."""
        if start == HOLE:
            memoryview(buf).cast("B")[:] = bytes(memoryview(buf).nbytes)
            return
        if verify is None:
            self.data.preadinto(start * self.block_size + offset, buf, nowait)
            return
        mv = memoryview(buf).cast("B")
        bs = self.block_size
        if offset % bs == 0 and mv.nbytes % bs == 0:
            # Whole blocks: read into buf and verify there (no copy; on Corruption
            # buf holds the damaged bytes, which the caller must not use).
            self.data.preadinto(start * bs + offset, mv)
            self._raise_bad(verify, start + offset // bs, mv.nbytes // bs, mv)
            return
        first, last = offset // bs, (offset + mv.nbytes + bs - 1) // bs
        data = self.read(start + first, last - first, verify)
        mv[:] = memoryview(data)[offset - first * bs:offset - first * bs + mv.nbytes]

    def _raise_bad(self, t, start: int, n: int, data) -> None:
        bad = self.verify(t, start, n, data)
        if bad:
            more = f" (and {len(bad) - 1} more in this read)" if len(bad) > 1 else ""
            raise errors.Corruption(f"block {bad[0]} does not match its {self.checksum} checksum{more}",
                                    path=self.data.path)

    def verifying(self, t) -> "VerifiedReads":
        """A view of this pool whose read/readinto verify against pool.sums in ``t``."""
        return VerifiedReads(self, t)

    # ================================================================ checksums
    def block_digest(self, t, block: int) -> bytes | None:
        """The digest (``checksum``) recorded when ``block`` was last written, or None (none kept)."""
        return self.sums.digests(t, block, 1)[0]

    def digests(self, t, start: int, n: int) -> list[bytes | None]:
        """block_digest of each block of [start, start+n) in one range scan."""
        return self.sums.digests(t, start, n)

    def verify(self, t, start: int, n: int, data) -> list[int]:
        """Blocks of [start, start+n) whose bytes in ``data`` do not match their
        recorded digest (blocks without one are not reported).  One checksum call."""
        got = None
        whole = self.sums.span(t, start, n)
        if whole is not None:               # every block has a digest: one comparison
            got = self.sums.hash(data, self.block_size)
            if got == whole:
                return []
        want = self.sums.digests(t, start, n)
        if not any(want):
            return []
        if got is None:
            got = self.sums.hash(data, self.block_size)
        ds = self.digest_size
        return [start + i for i, d in enumerate(want)
                if d is not None and got[i * ds:(i + 1) * ds] != d]

    # ================================================================ introspection
    def refcount(self, t, block: int) -> int:
        """0 if free, pending or outside the pool, else 1 or the shared count."""
        if block < 0 or block >= self.meta.get(t, TOTAL_BLOCKS):
            return 0
        if self.alloc.overlap(t, block, 1) is not None or self.pending.overlap(t, block, 1) is not None:
            return 0
        c = self.refs.count(t, block)
        return 1 if c is None else c

    def free_runs(self, t) -> Iterator[tuple[int, int]]:
        return self.alloc.runs(t)

    def pending_runs(self, t) -> Iterator[tuple[int, int, int]]:
        return self.pending.runs(t)

    def shared_runs(self, t) -> Iterator[tuple[int, int, int]]:
        return self.refs.runs(t)

    def dedup_entries(self, t) -> Iterator[tuple[bytes, int]]:
        return self.index.entries(t)

    def total_blocks(self, t) -> int:
        return self.meta.get(t, TOTAL_BLOCKS)

    def pending_blocks(self, t) -> int:
        """Blocks freed but not yet reusable (one meta read; see ``stats``)."""
        return self.meta.get(t, PENDING_BLOCKS)

    def stats(self, t) -> PoolStats:
        g = lambda k: self.meta.get(t, k)  # noqa: E731
        total, free, pending = g(TOTAL_BLOCKS), g(FREE_BLOCKS), g(PENDING_BLOCKS)
        return PoolStats(
            block_size=self.block_size, total_blocks=total, free_blocks=free,
            pending_blocks=pending, used_blocks=total - free - pending,
            shared_blocks=g(SHARED_BLOCKS), shared_extra_refs=g(SHARED_EXTRA),
            dedup_entries=self.index.count(t), dedup_hits=g(DEDUP_HITS), zero_blocks=g(ZERO_BLOCKS),
            trimmed_blocks=self.trimmed.count(t))

    def self_check(self, t, *, verify_data: bool = False) -> list[str]:
        """The pool's metadata invariants; one sentence per problem ([] when sound).

        verify_data=True also re-hashes every dedup-indexed block (reads them all).
        """
        return check.self_check(self, t, verify_data=verify_data)

    def rebuild(self, t, refs: list[tuple[int, int, int]]) -> list[str]:
        """Repair from refs = sorted (start, n, count>=1) of every referenced block; returns changes."""
        return check.rebuild(self, t, refs)


class VerifiedReads:
    """The pool as seen by one txn ``t`` whose reads are verified (Pool.verifying).

    read/readinto pass ``verify=t``; every other attribute is the pool's own.
    """

    __slots__ = ("_pool", "_t")

    def __init__(self, pool: Pool, t):
        self._pool = pool
        self._t = t

    def read(self, start: int, n: int, verify=None) -> bytes:
        return self._pool.read(start, n, self._t if verify is None else verify)

    def readinto(self, start: int, offset: int, buf, verify=None, nowait: bool = False) -> None:
        self._pool.readinto(start, offset, buf, self._t if verify is None else verify)

    def __getattr__(self, name):
        return getattr(self._pool, name)


def _nonzero_digests(mv, bs: int, flags, hash_many, ds: int) -> bytes:
    """``hash_many`` digest (``ds`` bytes) of every block of ``mv`` (``ds`` zero bytes
    for zero blocks, which are not hashed): one call per run of non-zero blocks."""
    nb = len(flags)
    if not flags.count(0):
        return bytes(nb * ds)
    if not flags.count(1):
        return hash_many(mv, bs)
    parts = []
    i = 0
    while i < nb:
        j = i
        z = flags[i]
        while j < nb and flags[j] == z:
            j += 1
        parts.append(bytes((j - i) * ds) if z else hash_many(mv[i * bs:j * bs], bs))
        i = j
    return b"".join(parts)


def _runs_of(targets: list[int], slot_block: list[int]) -> list[tuple[int, int]]:
    """The runs (start or HOLE, n) of ``targets`` (block, HOLE, or -(slot + 2)),
    adjacent blocks and holes merged."""
    out: list[list[int]] = []
    for x in targets:
        b = x if x >= HOLE else slot_block[-x - 2]
        if out:
            last = out[-1]
            if (b == HOLE and last[0] == HOLE) or (b != HOLE and last[0] != HOLE and last[0] + last[1] == b):
                last[1] += 1
                continue
        out.append([b, 1])
    return [(s, n) for s, n in out]


def _group(items):
    """(block, k) sorted by block -> runs (start, n, k) of consecutive blocks with equal k."""
    out: list[list[int]] = []
    for b, k in items:
        if out and out[-1][2] == k and out[-1][0] + out[-1][1] == b:
            out[-1][1] += 1
        else:
            out.append([b, 1, k])
    return out
