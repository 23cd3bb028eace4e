"""Run maps: LMDB databases of non-overlapping block runs keyed by start.

A run map stores ``start u64 -> n u64 [+ payload]``; ``pool.free``,
``pool.shared`` and ``pool.pending_rev`` are run maps.  This module has the
cursor primitives they share plus pure interval arithmetic on sorted lists
of runs (used by check and repair).

Costs: ``floor`` / ``overlapping`` are O(log N + k) LMDB cursor operations
for k runs returned.  The caller holds the transaction ``t`` (any txn for
reads, the write txn for changes).
"""
from __future__ import annotations

from typing import Iterator

from .dbs import pack_u64, unpack_u64


def floor(cur, start: int) -> bool:
    """Position ``cur`` on the run with the largest start <= ``start``.

    Returns False (cursor position unspecified) when there is none.
    """
    k = pack_u64(start)
    if cur.set_range(k):
        if cur.key() == k:
            return True
        return cur.prev()
    return cur.last()


def decode(key: bytes, value: bytes) -> tuple[int, int, bytes]:
    return unpack_u64(key)[0], unpack_u64(value[:8])[0], value[8:]


def overlapping(t, db, start: int, n: int) -> list[tuple[int, int, bytes]]:
    """Runs of ``db`` that intersect [start, start+n), in order, as (s, len, payload)."""
    end = start + n
    out = []
    cur = t.cursor(db=db)
    if floor(cur, start):
        s, ln, rest = decode(cur.key(), cur.value())
        if s + ln > start:
            out.append((s, ln, rest))
        ok = cur.next()
    else:
        ok = cur.set_range(pack_u64(start))
    while ok:  # every later run starts after ``start``
        s, ln, rest = decode(cur.key(), cur.value())
        if s >= end:
            break
        out.append((s, ln, rest))
        ok = cur.next()
    return out


def first_overlap(t, db, start: int, n: int) -> tuple[int, int] | None:
    """The first run of ``db`` intersecting [start, start+n), or None. O(log N)."""
    end = start + n
    cur = t.cursor(db=db)
    if floor(cur, start):
        s, ln, _ = decode(cur.key(), cur.value())
        if s + ln > start:
            return s, ln
        ok = cur.next()
    else:
        ok = cur.set_range(pack_u64(start))
    if ok:
        s, ln, _ = decode(cur.key(), cur.value())
        if s < end:
            return s, ln
    return None


def iterate(t, db) -> Iterator[tuple[int, int, bytes]]:
    """Every run of ``db`` in order as (start, n, payload). One cursor step each."""
    for k, v in t.cursor(db=db):
        yield decode(k, v)


# ---------------------------------------------------------------- interval math
# Pure functions over sorted, non-overlapping lists of (start, n) runs.

def normalize(runs) -> list[tuple[int, int]]:
    """Sort and coalesce runs (overlaps are merged too)."""
    out: list[list[int]] = []
    for s, n in sorted(r for r in runs if r[1] > 0):
        if out and s <= out[-1][0] + out[-1][1]:
            out[-1][1] = max(out[-1][1], s + n - out[-1][0])
        else:
            out.append([s, n])
    return [(s, n) for s, n in out]


def subtract(runs, cut) -> list[tuple[int, int]]:
    """Parts of ``runs`` not covered by ``cut`` (both sorted, non-overlapping)."""
    out = []
    cut = list(cut)
    j = 0
    for s, n in runs:
        pos, end = s, s + n
        while j < len(cut) and cut[j][0] + cut[j][1] <= pos:
            j += 1
        k = j
        while pos < end and k < len(cut) and cut[k][0] < end:
            cs, ce = cut[k][0], cut[k][0] + cut[k][1]
            if cs > pos:
                out.append((pos, cs - pos))
            pos = max(pos, ce)
            k += 1
        if pos < end:
            out.append((pos, end - pos))
    return out


def complement(runs, total: int) -> list[tuple[int, int]]:
    """Blocks of [0, total) not in ``runs``."""
    return subtract([(0, total)] if total else [], runs)


def fmt_run(start: int, n: int) -> str:
    """Human form of a run for messages: 'block 7' or 'blocks 7..9'."""
    return f"block {start}" if n == 1 else f"blocks {start}..{start + n - 1}"
