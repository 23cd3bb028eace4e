"""Run-length refcounts of shared blocks: ``pool.shared``.

Block states (docs/ARCHITECTURE.md §4, docs/FORMAT.md §6.1): every block below ``total_blocks`` is
exactly one of free (allocator.py), pending-free (pending.py), owned once
(implicit: in no table) or shared with count >= 2, stored here as
start -> (n, count).  Adjacent runs with equal counts are always merged, so
the table stays as small as the sharing pattern allows (a cloned 1 GiB file
whose blocks were all incremented once is a single entry).

``adjust(t, start, n, delta)`` adds delta to every block of a live run (the
caller has checked liveness) and returns the sub-runs whose count reached
0, for the caller to send to pending.  ``meta.shared_blocks`` (sum of n) and
``meta.shared_extra_refs`` (sum of n * (count - 1)) are kept up to date.

Costs: O(log N + k) LMDB cursor operations for k shared runs overlapping the
range.  The caller holds the LMDB write txn ``t`` (any txn for queries).
"""
from __future__ import annotations

from typing import Iterator

from . import runs as run_ops
from .dbs import SHARED_BLOCKS, SHARED_EXTRA, Meta, PoolDbs, pack_u64, pack_u64x2, unpack_u64, unpack_u64x2
from .. import errors


class Refcounts:
    def __init__(self, dbs: PoolDbs, meta: Meta):
        self.db = dbs.shared
        self.meta = meta

    def count(self, t, block: int) -> int | None:
        """The shared count of ``block``, or None when it is in no shared run."""
        cur = t.cursor(db=self.db)
        if run_ops.floor(cur, block):
            s, ln, rest = run_ops.decode(cur.key(), cur.value())
            if s + ln > block:
                return unpack_u64(rest)[0]
        return None

    def runs(self, t) -> Iterator[tuple[int, int, int]]:
        for s, ln, rest in run_ops.iterate(t, self.db):
            yield s, ln, unpack_u64(rest)[0]

    def adjust(self, t, start: int, n: int, delta: int) -> list[tuple[int, int]]:
        """Add ``delta`` to the count of each block of [start, start+n); returns runs now at 0."""
        if n <= 0 or delta == 0:
            return []
        end = start + n
        db = self.db
        old_keys = []
        pieces: list[tuple[int, int, int, int]] = []  # (start, n, old count, new count)
        cur = t.cursor(db=db)
        if start > 0 and run_ops.floor(cur, start - 1):
            s, ln, rest = run_ops.decode(cur.key(), cur.value())
            if s + ln == start:
                c = unpack_u64(rest)[0]
                old_keys.append(s)
                pieces.append((s, ln, c, c))
        pos = start
        for s, ln, rest in run_ops.overlapping(t, db, start, n):
            c = unpack_u64(rest)[0]
            old_keys.append(s)
            if s < start:
                pieces.append((s, start - s, c, c))
            a, b = max(s, start), min(s + ln, end)
            if a > pos:
                pieces.append((pos, a - pos, 1, 1 + delta))
            pieces.append((a, b - a, c, c + delta))
            pos = b
            if s + ln > end:
                pieces.append((end, s + ln - end, c, c))
        if pos < end:
            pieces.append((pos, end - pos, 1, 1 + delta))
        v = t.get(pack_u64(end), db=db)
        if v is not None:
            ln, c = unpack_u64x2(v)
            old_keys.append(end)
            pieces.append((end, ln, c, c))

        d_shared = d_extra = 0
        zero: list[tuple[int, int]] = []
        merged: list[list[int]] = []  # [start, n, count]
        for s, ln, old, new in pieces:
            if new < 0:
                raise errors.Corruption(f"refcount of {run_ops.fmt_run(s, ln)} would drop below 0")
            d_shared += ln * ((new >= 2) - (old >= 2))
            d_extra += ln * (max(new - 1, 0) - max(old - 1, 0))
            if new == 0:
                if zero and zero[-1][0] + zero[-1][1] == s:
                    zero[-1] = (zero[-1][0], zero[-1][1] + ln)
                else:
                    zero.append((s, ln))
            if merged and merged[-1][2] == new and merged[-1][0] + merged[-1][1] == s:
                merged[-1][1] += ln
            else:
                merged.append([s, ln, new])
        for k in old_keys:
            t.delete(pack_u64(k), db=db)
        for s, ln, c in merged:
            if c >= 2:
                t.put(pack_u64(s), pack_u64x2(ln, c), db=db)
        self.meta.add(t, SHARED_BLOCKS, d_shared)
        self.meta.add(t, SHARED_EXTRA, d_extra)
        return zero
