"""Allocator: the extent-based free map ``pool.free`` and data-file growth.

Contract:

* ``pool.free`` maps start -> n for every free block, coalesced: no two
  runs touch.  ``meta.free_blocks`` is the sum of n.
* ``allocate(t, m)`` returns runs totalling exactly m blocks, taken
  next-fit from the persistent hint ``meta.alloc_hint`` (wrapping once), so
  sequential writes come out contiguous across calls and transactions.  When
  fewer than m blocks are free the data file grows first, by
  max(16 MiB worth of blocks, total/32, shortfall); on ENOSPC it retries with
  exactly the shortfall, and raises errors.NoSpace (naming the data file)
  when even that fails.  Growth happens before any table is changed, so a
  NoSpace leaves the metadata untouched.  Growth that is never committed is
  harmless: the file may be longer than ``meta.total_blocks`` and a later
  growth adopts the extra space without calling fallocate.  Picked blocks
  that were trimmed (their space punched out of the file, trimmed.py) get
  it reserved again before any table changes (NoSpace when the disk is full).
* ``free(t, start, n)`` inserts a run, coalescing with its neighbours; an
  overlap with a free run raises errors.Corruption (double free).  Only
  ``release_pending`` and ``rebuild`` free blocks: see pending.py for why
  dec() never frees directly.

Costs: ``allocate`` is O(log N + k) cursor operations for k runs visited;
``free`` is O(log N).  The caller holds the LMDB write txn ``t``.
"""
from __future__ import annotations

from . import runs as run_ops
from .datafile import DataFile
from .dbs import FREE_BLOCKS, HINT, TOTAL_BLOCKS, Meta, PoolDbs, pack_u64
from .. import errors

GROW_MIN_BYTES = 16 << 20


class Allocator:
    def __init__(self, dbs: PoolDbs, meta: Meta, data: DataFile, block_size: int,
                 grow_min_bytes: int = GROW_MIN_BYTES, trimmed=None):
        self.db = dbs.free
        self.meta = meta
        self.data = data
        self.trimmed = trimmed      # trimmed.Trimmed: picked blocks get their disk space back
        self.grow_min_blocks = max(1, grow_min_bytes // block_size)

    # ------------------------------------------------------------------ queries
    def runs(self, t):
        for s, n, _ in run_ops.iterate(t, self.db):
            yield s, n

    def overlap(self, t, start: int, n: int) -> tuple[int, int] | None:
        """The first free run intersecting [start, start+n), or None."""
        return run_ops.first_overlap(t, self.db, start, n)

    # ------------------------------------------------------------------ free
    def free(self, t, start: int, n: int) -> None:
        """Return [start, start+n) to the free map, coalesced with its neighbours."""
        if n <= 0:
            return
        end = start + n
        total = self.meta.get(t, TOTAL_BLOCKS)
        if start < 0 or end > total:
            raise errors.Corruption(f"freeing {run_ops.fmt_run(start, n)} outside the pool of {total} blocks")
        cur = t.cursor(db=self.db)
        new_start, new_end = start, end
        if run_ops.floor(cur, start):
            s, ln, _ = run_ops.decode(cur.key(), cur.value())
            if s + ln > start:
                raise errors.Corruption(f"double free: {run_ops.fmt_run(start, n)} overlaps free {run_ops.fmt_run(s, ln)}")
            if s + ln == start:
                new_start = s
                cur.delete()
        if cur.set_range(pack_u64(start)):
            s, ln, _ = run_ops.decode(cur.key(), cur.value())
            if s < end:
                raise errors.Corruption(f"double free: {run_ops.fmt_run(start, n)} overlaps free {run_ops.fmt_run(s, ln)}")
            if s == end:
                new_end = s + ln
                cur.delete()
        t.put(pack_u64(new_start), pack_u64(new_end - new_start), db=self.db)
        self.meta.add(t, FREE_BLOCKS, n)

    # ------------------------------------------------------------------ allocate
    def allocate(self, t, m: int) -> list[tuple[int, int]]:
        """Take m free blocks (growing the file if needed); runs in layout order."""
        if m <= 0:
            return []
        free = self.meta.get(t, FREE_BLOCKS)
        if free < m:
            self._grow(t, m - free)
        hint = self.meta.get(t, HINT)
        picks = self._pick(t, m, hint)
        got = sum(k for _, _, _, k in picks)
        if got != m:
            raise errors.Corruption(
                f"pool.free holds fewer blocks than meta.free_blocks says "
                f"(found {got} of {m} wanted, counter {self.meta.get(t, FREE_BLOCKS)})")
        if self.trimmed is not None:
            self.trimmed.take(t, [(a, k) for _, _, a, k in picks])   # may raise NoSpace
        # Apply: each touched extent loses the picked pieces (an extent may be
        # picked twice: once from the hint, once after wrapping).
        by_extent: dict[int, tuple[int, list[tuple[int, int]]]] = {}
        for s, ln, a, k in picks:
            by_extent.setdefault(s, (ln, []))[1].append((a, k))
        for s, (ln, taken) in by_extent.items():
            t.delete(pack_u64(s), db=self.db)
            for rs, rn in run_ops.subtract([(s, ln)], run_ops.normalize(taken)):
                t.put(pack_u64(rs), pack_u64(rn), db=self.db)
        self.meta.add(t, FREE_BLOCKS, -m)
        last_a, last_k = picks[-1][2], picks[-1][3]
        self.meta.set(t, HINT, last_a + last_k)
        out: list[tuple[int, int]] = []
        for _, _, a, k in picks:
            if out and out[-1][0] + out[-1][1] == a:
                out[-1] = (out[-1][0], out[-1][1] + k)
            else:
                out.append((a, k))
        return out

    def _pick(self, t, m: int, hint: int) -> list[tuple[int, int, int, int]]:
        """Next-fit scan: (extent start, extent len, piece start, piece len)."""
        picks = []
        need = m
        cur = t.cursor(db=self.db)
        if run_ops.floor(cur, hint):
            s, ln, _ = run_ops.decode(cur.key(), cur.value())
            if s + ln > hint:
                k = min(s + ln - hint, need)
                picks.append((s, ln, hint, k))
                need -= k
            ok = cur.next()
        else:
            ok = cur.set_range(pack_u64(hint))
        while need and ok:
            s, ln, _ = run_ops.decode(cur.key(), cur.value())
            k = min(ln, need)
            picks.append((s, ln, s, k))
            need -= k
            ok = cur.next()
        if need:  # wrap around: everything before the hint
            ok = cur.first()
            while need and ok:
                s, ln, _ = run_ops.decode(cur.key(), cur.value())
                if s >= hint:
                    break
                k = min(ln, hint - s, need)
                picks.append((s, ln, s, k))
                need -= k
                ok = cur.next()
        return picks

    # ------------------------------------------------------------------ growth
    def _grow(self, t, shortfall: int) -> None:
        total = self.meta.get(t, TOTAL_BLOCKS)
        have = self.data.size_blocks()
        step = max(self.grow_min_blocks, total // 32, shortfall)
        if have < total + step:
            try:
                self.data.grow(total + step)
            except errors.NoSpace:
                if have < total + shortfall:
                    self.data.grow(total + shortfall)  # NoSpace propagates, file as it was
        new_total = max(total + shortfall, self.data.size_blocks())
        self.meta.set(t, TOTAL_BLOCKS, new_total)
        self.free(t, total, new_total - total)
