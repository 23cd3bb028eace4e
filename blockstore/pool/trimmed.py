"""Trimmed blocks: free blocks whose disk space was given back to the file system.

The data file is thin-provisioned by growth (posix_fallocate) but never
shrinks by itself: after trees are removed and gc ran, the freed blocks stay
allocated on disk.  ``trim(t)`` punches a hole (FALLOC_FL_PUNCH_HOLE |
KEEP_SIZE) over every free block not trimmed yet and records it in the run
map ``pool.trimmed``; ``take(t, pieces)``, called by the allocator before it
hands out blocks, reserves the disk space of the trimmed ones again
(fallocate) and forgets them, so a write into a reused block cannot fail
for lack of space any more than a write into a never-trimmed one.

Contract:

* ``pool.trimmed`` is a subset of ``pool.free`` (self_check verifies it;
  ``meta.trimmed_blocks`` is the sum of n).  Only blocks in the free map are
  punched, and a block enters the free map only once no LMDB reader can
  reach it (pending.py): so a punched block is never one an older reader may
  still read.  ``trim`` and ``take`` run in the write txn (the single writer:
  no other writer can allocate a block while it is being punched).
* ``punch_one`` trims one run as it is released from pending (a removal's
  runs, Pool.trim_when_released); gc may punch such runs earlier in a write
  txn it aborts (Env.trial), so the release finds a hole and records it.
* A trim whose txn then aborts leaves punched blocks that the table does not
  list: they read as zeros (they are free) and are reserved by their first
  write instead of by ``take`` (a full disk then shows at that write or the
  commit's fdatasync, as errors.NoSpace).

Costs: ``trim`` is one pass over the free and trimmed maps plus one fallocate
per free run not trimmed yet; ``take`` is O(log N + k) cursor operations and
one fallocate per trimmed piece it takes, nothing (one counter read) when no
block is trimmed.  The caller holds the LMDB write txn ``t``.
"""
from __future__ import annotations

from . import runs as run_ops
from .datafile import DataFile
from .dbs import TRIMMED_BLOCKS, Meta, PoolDbs, pack_u64


class Trimmed:
    def __init__(self, dbs: PoolDbs, meta: Meta, data: DataFile):
        self.db = dbs.trimmed
        self.meta = meta
        self.data = data

    def runs(self, t):
        for s, n, _ in run_ops.iterate(t, self.db):
            yield s, n

    def count(self, t) -> int:
        return self.meta.get(t, TRIMMED_BLOCKS)

    def trim(self, t, free_runs) -> int:
        """Punch every free run not trimmed yet; returns the blocks newly trimmed
        (0 when the file system cannot punch holes)."""
        have = list(self.runs(t))
        todo = run_ops.subtract(run_ops.normalize(free_runs), have)
        done = []
        for s, n in todo:
            if not self.data.punch(s, n):
                break
            done.append((s, n))
        if not done:
            return 0
        self.replace(t, run_ops.normalize(have + done))
        return sum(n for _, n in done)

    def punch_one(self, t, start: int, n: int, punched: bool = False) -> int:
        """Punch the free run [start, start+n) (``punched``: it is a hole already)
        and record it, coalesced with the trimmed runs beside it; returns n, or 0
        when the file system cannot punch holes.  O(log N)."""
        if n <= 0 or not (punched or self.data.punch(start, n)):
            return 0
        end = start + n
        cur = t.cursor(db=self.db)
        lo, hi = start, end
        if run_ops.floor(cur, start):
            s, ln, _ = run_ops.decode(cur.key(), cur.value())
            if s + ln >= start:
                lo = s
                hi = max(hi, s + ln)
                n -= max(0, min(s + ln, end) - start)     # already recorded
                cur.delete()
        while cur.set_range(pack_u64(lo)):
            s, ln, _ = run_ops.decode(cur.key(), cur.value())
            if s > hi:
                break
            n -= max(0, min(s + ln, end) - max(s, start))
            hi = max(hi, s + ln)
            cur.delete()
        t.put(pack_u64(lo), pack_u64(hi - lo), db=self.db)
        self.meta.add(t, TRIMMED_BLOCKS, n)
        return end - start

    def take(self, t, pieces) -> None:
        """Blocks of ``pieces`` ((start, n), about to be allocated) stop being trimmed:
        their disk space is reserved first (errors.NoSpace before any table changes)."""
        if not self.meta.get(t, TRIMMED_BLOCKS):
            return
        hits = []
        for a, k in pieces:
            for s, n, _ in run_ops.overlapping(t, self.db, a, k):
                lo, hi = max(s, a), min(s + n, a + k)
                hits.append((s, n, lo, hi - lo))
        if not hits:
            return
        for _, _, lo, k in hits:
            self.data.reserve(lo, k)
        by_run: dict[int, tuple[int, list]] = {}
        for s, n, lo, k in hits:
            by_run.setdefault(s, (n, []))[1].append((lo, k))
        taken = 0
        for s, (n, cut) in by_run.items():
            t.delete(pack_u64(s), db=self.db)
            for rs, rn in run_ops.subtract([(s, n)], run_ops.normalize(cut)):
                t.put(pack_u64(rs), pack_u64(rn), db=self.db)
            taken += sum(k for _, k in run_ops.normalize(cut))
        self.meta.add(t, TRIMMED_BLOCKS, -taken)

    def replace(self, t, runs) -> None:
        """Make the table exactly ``runs`` (sorted, disjoint); used by trim and repair."""
        t.drop(self.db, delete=False)
        for s, n in runs:
            t.put(pack_u64(s), pack_u64(n), db=self.db)
        self.meta.set(t, TRIMMED_BLOCKS, sum(n for _, n in runs))
