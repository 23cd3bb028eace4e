"""Pool consistency check and repair (the pool's half of ``blockstore check``).

``self_check(pool, t)`` verifies the pool's own metadata invariants and
returns one precise sentence per problem:

* the data file holds at least ``total_blocks`` blocks;
* free, pending and shared runs are non-empty and inside the pool;
* free, pending and shared runs are pairwise non-overlapping (every block is
  in exactly one state);
* free runs are coalesced; shared counts are >= 2 and touching runs with
  equal counts are merged; pending and pending_rev mirror each other; no
  pending entry comes from a txn later than ``t``;
* the meta counters equal what the tables hold; the allocation hint is in
  the pool;
* dedup and dedup_rev mirror each other and point at live blocks (and, with
  ``verify_data``, at blocks whose content has that SHA-256);
* pool.trimmed lies within the free map and matches its counter;
* pool.sums entries are well formed (values a positive multiple of the
  store's digest size: 32 for sha256, 16 for xxh3-128), disjoint and inside
  the pool (entries
  of free or pending blocks are stale but harmless: not reported).

``rebuild(pool, t, refs)`` is the repair: ``refs`` is what a full scan of
the trees found referenced.  It rewrites free/shared/pending so that the
block states agree with ``refs`` and returns one sentence per change; it
drops the pool.sums entries that self_check reports (their blocks become
unverifiable, never falsely corrupt).

Costs: both are O(R log R) in the number of runs and dedup entries, plus
(verify_data) reading every indexed block.  ``self_check`` takes any txn;
``rebuild`` the LMDB write txn.
"""
from __future__ import annotations

import bisect
import hashlib

from . import runs
from .absent import ABSENT_BLOCKS
from .dbs import (BLOCK_SIZE, FREE_BLOCKS, HINT, PENDING_BLOCKS, SHARED_BLOCKS, SHARED_EXTRA, TOTAL_BLOCKS,
                  pack_u64, pack_u64x2)
from .. import errors

MAX_DETAIL = 50  # sentences of one kind before they are summarised


def _v(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


def _label(kind) -> str:
    if kind == "free":
        return "free"
    if isinstance(kind, tuple):
        return f"pending-free since txn {kind[1]}"
    if kind == 1:
        return "owned once"
    return f"shared with count {kind}"


# ======================================================================= check
def self_check(pool, t, *, verify_data: bool = False) -> list[str]:
    """The pool's invariants, one sentence per problem (see Pool.self_check)."""
    total = pool.meta.get(t, TOTAL_BLOCKS)
    free = list(pool.alloc.runs(t))
    pending = list(pool.pending.runs(t))
    shared = list(pool.refs.runs(t))
    out = _check_size(pool, t, total)
    out += _check_runs(total, free, pending, shared)
    out += _check_pending_mirror(t, pending, list(pool.pending.rev_runs(t)))
    out += _check_counters(pool, t, total, free, pending, shared)
    state = _block_state(pool, t, total, free, pending)
    out += _check_dedup(pool, t, state, verify_data)
    out += _capped([msg for _, _, msg in pool.sums.problems(t, total)], "pool.sums problems")
    out += _check_trimmed(pool, t, free)
    out += _capped(_check_absent(pool, t, state), "absent-block problems")
    return out


def _check_size(pool, t, total: int) -> list[str]:
    """The data file covers the pool; the recorded block size is the pool's."""
    out = []
    have = pool.data.size_blocks()
    if have < total:
        out.append(f"The data file has {have} blocks but the pool manages {total}.")
    bs = pool.meta.get(t, BLOCK_SIZE)
    if bs and bs != pool.block_size:
        out.append(f"pool.meta says {bs}-byte blocks but the pool uses {pool.block_size}-byte blocks.")
    return out


def _check_runs(total: int, free, pending, shared) -> list[str]:
    """Runs are non-empty, inside the pool, disjoint; free runs coalesced; shared
    counts >= 2 and adjacent equal counts merged."""
    out = []
    labelled = ([(s, n, "free") for s, n in free]
                + [(s, n, ("pending", w)) for w, s, n in pending]
                + [(s, n, c) for s, n, c in shared])
    for s, n, kind in labelled:
        if n == 0:
            out.append(f"A {_label(kind)} run at block {s} has length 0.")
        elif s + n > total:
            out.append(f"{runs.fmt_run(s, n).capitalize()} ({_label(kind)}) {_v(n, 'extends', 'extend')} "
                       f"beyond the pool's {total} blocks.")

    # pairwise (and within-table) overlaps: sweep in start order
    labelled.sort(key=lambda r: r[0])
    reach_end, reach = -1, None
    for s, n, kind in labelled:
        if n and s < reach_end:
            out.append(f"{runs.fmt_run(s, n).capitalize()} ({_label(kind)}) {_v(n, 'overlaps', 'overlap')} "
                       f"{runs.fmt_run(*reach[:2])} ({_label(reach[2])}).")
        if s + n > reach_end:
            reach_end, reach = s + n, (s, n, kind)

    for (s1, n1), (s2, n2) in zip(free, free[1:]):
        if s1 + n1 == s2:
            out.append(f"Free runs {runs.fmt_run(s1, n1)} and {runs.fmt_run(s2, n2)} touch but are not coalesced.")
    for s, n, c in shared:
        if c < 2:
            out.append(f"Shared run {runs.fmt_run(s, n)} has count {c}, below 2.")
    for (s1, n1, c1), (s2, n2, c2) in zip(shared, shared[1:]):
        if s1 + n1 == s2 and c1 == c2:
            out.append(f"Shared runs {runs.fmt_run(s1, n1)} and {runs.fmt_run(s2, n2)} touch with equal count {c1} "
                       f"but are not merged.")
    return out


def _check_pending_mirror(t, pending, pending_rev) -> list[str]:
    """pool.pending and pool.pending_rev mirror each other; no run freed in the future."""
    out = []
    fwd = {(s, n, w) for w, s, n in pending}
    rev = {(s, n, w) for s, n, w in pending_rev}
    for s, n, w in sorted(fwd - rev):
        out.append(f"Pending run {runs.fmt_run(s, n)} (txn {w}) has no matching pool.pending_rev entry.")
    for s, n, w in sorted(rev - fwd):
        out.append(f"pool.pending_rev entry {runs.fmt_run(s, n)} (txn {w}) has no matching pool.pending entry.")
    now = t.id()
    for w, s, n in pending:
        if w > now:
            out.append(f"Pending run {runs.fmt_run(s, n)} was freed by txn {w}, later than the current txn {now}.")
    return out


def _check_counters(pool, t, total: int, free, pending, shared) -> list[str]:
    """pool.meta's counters match the tables; the allocation hint is inside the pool."""
    out = []
    for name, actual in _counters(free, pending, shared):
        got = pool.meta.get(t, name)
        if got != actual:
            out.append(f"pool.meta {name.decode()} is {got} but the tables hold {actual}.")
    hint = pool.meta.get(t, HINT)
    if hint > total:
        out.append(f"The allocation hint {hint} is beyond the pool's {total} blocks.")
    return out


def _block_state(pool, t, total: int, free, pending):
    """state(block): why a block is not live ("free", "pending-free", beyond the
    pool), or None for a live block."""
    dead = runs.normalize([(s, n) for s, n in free] + [(s, n) for _, s, n in pending])
    dead_starts = [s for s, _ in dead]

    def state(b: int) -> str | None:
        if b >= total:
            return f"beyond the pool's {total} blocks"
        i = bisect.bisect_right(dead_starts, b) - 1
        if i >= 0 and dead[i][0] + dead[i][1] > b:
            return "free" if pool.alloc.overlap(t, b, 1) else "pending-free"
        return None
    return state


def _check_dedup(pool, t, state, verify_data: bool) -> list[str]:
    """Dedup entries are SHA-256 keys mirrored in dedup_rev and point at live
    blocks (with ``verify_data``, whose bytes still hash to them)."""
    out = []
    for h, b in pool.index.entries(t):
        if len(h) != 32:
            out.append(f"Dedup key {h.hex()} is {len(h)} bytes long, not a SHA-256.")
        if t.get(pack_u64(b), db=pool.index.rev) != h:
            out.append(f"Dedup entry {h.hex()[:16]}... -> block {b} has no matching pool.dedup_rev entry.")
        st = state(b)
        if st:
            out.append(f"Dedup entry {h.hex()[:16]}... points at block {b}, which is {st}.")
        elif verify_data and hashlib.sha256(pool.read(b, 1)).digest() != h:
            out.append(f"Block {b} does not have the content of its dedup entry {h.hex()[:16]}....")
    for b, h in pool.index.rev_entries(t):
        if t.get(h, db=pool.index.db) != pack_u64(b):
            out.append(f"pool.dedup_rev entry block {b} -> {h.hex()[:16]}... has no matching pool.dedup entry.")
    return out


def _check_trimmed(pool, t, free) -> list[str]:
    """Trimmed runs are free; the trimmed counter matches the table."""
    out = []
    trimmed = list(pool.trimmed.runs(t))
    for s, n in runs.subtract(trimmed, runs.normalize(free)):
        out.append(f"{runs.fmt_run(s, n).capitalize()} {_v(n, 'is', 'are')} recorded as trimmed "
                   f"but {_v(n, 'is', 'are')} not free.")
    got = pool.trimmed.count(t)
    if got != sum(n for _, n in trimmed):
        out.append(f"pool.meta trimmed_blocks is {got} but pool.trimmed holds "
                   f"{sum(n for _, n in trimmed)}.")
    return out


def _check_absent(pool, t, state) -> list[str]:
    """Absent blocks (absent.py): each entry names a live block; the counter matches."""
    out = []
    nabsent = 0
    for b, _, _ in pool.absent.entries(t):
        nabsent += 1
        st = state(b)
        if st:
            out.append(f"Absent block {b} (of a lazily pulled snapshot) is {st}.")
    if nabsent != pool.absent.count(t):
        out.append(f"pool.meta absent_blocks is {pool.absent.count(t)} but pool.absent "
                   f"holds {nabsent}.")
    return out


# ====================================================================== repair
def rebuild(pool, t, refs) -> list[str]:
    """Rewrite the pool's tables from ``refs`` (sorted (start, n, count>=1) of
    every referenced block); returns one sentence per change."""
    refs, end = _validated(refs)
    changes: list[str] = []
    total = _cover_referenced(pool, t, end, changes)
    raw_free = list(pool.alloc.runs(t))
    old_free = runs.normalize(raw_free)
    old_pending = list(pool.pending.runs(t))
    old_shared = list(pool.refs.runs(t))
    old_sums = dict(_counters(raw_free, old_pending, old_shared))
    ref_runs = [(s, n) for s, n, _ in refs]
    new_pending = _new_pending(old_pending, ref_runs, total)
    pending_cover = runs.normalize((s, n) for _, s, n in new_pending)
    new_free = runs.complement(runs.normalize(ref_runs + pending_cover), total)
    new_shared = _new_shared(refs)
    changes += _capped(_describe(total, refs, pending_cover, new_pending, old_free, old_pending, old_shared),
                       "block state changes")
    merged_pending = _rewrite_tables(pool, t, total, new_free, new_shared, new_pending, changes)
    _fix_counters(pool, t, total, new_free, merged_pending, new_shared, old_sums, changes)
    is_dead = _dead_test(runs.normalize(new_free + pending_cover), total)
    changes += _capped(_drop_dead_dedup(pool, t, is_dead), "dedup entries dropped")
    changes += _capped(_drop_dead_absent(pool, t, is_dead), "absent entries dropped")
    changes += _capped(_drop_bad_sums(pool, t, total), "pool.sums entries dropped")
    return changes


def _validated(refs) -> tuple[list[tuple[int, int, int]], int]:
    """``refs`` as ints, checked sorted and disjoint; and the end of the last run."""
    refs = [(int(s), int(n), int(c)) for s, n, c in refs]
    prev_end = 0
    for s, n, c in refs:
        if s < 0 or n <= 0 or c < 1:
            raise errors.InvalidInput(f"rebuild: invalid reference run (start {s}, n {n}, count {c})")
        if s < prev_end:
            raise errors.InvalidInput(f"rebuild: reference runs are not sorted and non-overlapping at block {s}")
        prev_end = s + n
    return refs, prev_end


def _cover_referenced(pool, t, end: int, changes: list[str]) -> int:
    """The pool size, raised to ``end`` when referenced blocks lie beyond it
    (and within the data file)."""
    total = pool.meta.get(t, TOTAL_BLOCKS)
    if end > total:
        have = pool.data.size_blocks()
        if end > have:
            raise errors.Corruption(
                f"referenced blocks up to {end - 1} lie beyond the end of the data file ({have} blocks)",
                path=pool.data.path)
        changes.append(f"Pool size raised from {total} to {end} blocks to cover referenced blocks.")
        total = end
        pool.meta.set(t, TOTAL_BLOCKS, total)
    return total


def _new_pending(old_pending, ref_runs, total: int) -> list[tuple[int, int, int]]:
    """Old pending minus referenced blocks, minus duplicates, inside the pool."""
    new_pending: list[tuple[int, int, int]] = []
    covered: list[tuple[int, int]] = []
    for w, s, n in old_pending:
        keep = runs.subtract(runs.subtract([(s, n)], ref_runs), runs.normalize(covered))
        keep = runs.subtract(keep, [(total, 1 << 62)])
        covered.append((s, n))
        new_pending += [(w, ks, kn) for ks, kn in keep]
    return new_pending


def _new_shared(refs) -> list[list[int]]:
    """The shared table the references imply: runs of count >= 2, adjacent equal counts merged."""
    new_shared: list[list[int]] = []
    for s, n, c in refs:
        if c < 2:
            continue
        if new_shared and new_shared[-1][2] == c and new_shared[-1][0] + new_shared[-1][1] == s:
            new_shared[-1][1] += n
        else:
            new_shared.append([s, n, c])
    return new_shared


def _painter(labelled):
    """The label of the run covering a block (None outside every run)."""
    labelled = sorted(labelled)
    starts = [r[0] for r in labelled]

    def at(b):
        i = bisect.bisect_right(starts, b) - 1
        if i >= 0 and labelled[i][0] + labelled[i][1] > b:
            return labelled[i][2]
        return None
    return at


def _describe(total, refs, pending_cover, new_pending, old_free, old_pending, old_shared) -> list[str]:
    """One sentence per segment whose state the rebuild changes."""
    ref_runs = [(s, n) for s, n, _ in refs]
    old_at = [_painter([(s, n, "free") for s, n in old_free]),
              _painter([(s, n, ("pending", w)) for w, s, n in old_pending]),
              _painter([(s, n, c) for s, n, c in old_shared])]
    new_at = [_painter([(s, n, c) for s, n, c in refs]),
              _painter([(s, n, ("pending", w)) for w, s, n in new_pending])]
    bounds = {0, total}
    for s, n in old_free + ref_runs + pending_cover:
        bounds.update((s, s + n))
    for _, s, n in old_pending:
        bounds.update((s, s + n))
    for s, n, _ in old_shared:
        bounds.update((s, s + n))
    bounds = sorted(b for b in bounds if 0 <= b <= total)
    diffs: list[list] = []
    for a, b in zip(bounds, bounds[1:]):
        old = next((x for x in (f(a) for f in old_at) if x is not None), 1)
        new = next((x for x in (f(a) for f in new_at) if x is not None), "free")
        if old == new:
            continue
        if diffs and diffs[-1][0] + diffs[-1][1] == a and diffs[-1][2:] == [old, new]:
            diffs[-1][1] += b - a
        else:
            diffs.append([a, b - a, old, new])
    sentences = []
    for s, n, old, new in diffs:
        what = runs.fmt_run(s, n).capitalize()
        if new == "free" and not (old == "free" or isinstance(old, tuple)):
            sentences.append(f"{what} {_v(n, 'was', 'were')} {_label(old)} but nothing references "
                             f"{_v(n, 'it', 'them')} (leaked): returned to free.")
        elif isinstance(old, tuple) and not isinstance(new, tuple):
            sentences.append(f"{what} {_v(n, 'was', 'were')} {_label(old)} but {_v(n, 'is', 'are')} referenced: "
                             f"taken out of pending, now {_label(new)}.")
        else:
            sentences.append(f"{what} {_v(n, 'was', 'were')} {_label(old)}; the trees make "
                             f"{_v(n, 'it', 'them')} {_label(new)}.")
    return sentences


def _rewrite_tables(pool, t, total, new_free, new_shared, new_pending, changes: list[str]) -> list[list[int]]:
    """Replace the free, shared, pending (and cut the trimmed) tables; returns
    the pending runs as written (adjacent runs of one txn merged)."""
    for db in (pool.dbs.free, pool.dbs.shared, pool.dbs.pending, pool.dbs.pending_rev):
        t.drop(db, delete=False)
    for s, n in new_free:
        t.put(pack_u64(s), pack_u64(n), db=pool.dbs.free)
    for s, n, c in new_shared:
        t.put(pack_u64(s), pack_u64x2(n, c), db=pool.dbs.shared)
    old_trimmed = list(pool.trimmed.runs(t))
    keep = runs.subtract(old_trimmed, runs.complement(new_free, total))
    if keep != old_trimmed or pool.trimmed.count(t) != sum(n for _, n in keep):
        pool.trimmed.replace(t, keep)
        changes.append("pool.trimmed cut down to blocks that are free.")
    merged_pending: list[list[int]] = []
    for w, s, n in sorted(new_pending):
        if merged_pending and merged_pending[-1][0] == w and sum(merged_pending[-1][1:]) == s:
            merged_pending[-1][2] += n
        else:
            merged_pending.append([w, s, n])
    for w, s, n in merged_pending:
        pool.pending.put(t, w, s, n)
    return merged_pending


def _fix_counters(pool, t, total, new_free, merged_pending, new_shared, old_sums, changes: list[str]) -> None:
    """Set the pool.meta counters the new tables imply; reset a hint beyond the pool."""
    meta = pool.meta
    for name, value in _counters(new_free, merged_pending, new_shared):
        old = meta.get(t, name)
        if old != value:
            meta.set(t, name, value)
            if old != old_sums[name]:  # wrong before, not just moved by the rewrite above
                changes.append(f"pool.meta {name.decode()} was {old} while the tables held {old_sums[name]}: "
                               f"set to {value}.")
    if meta.get(t, HINT) > total:
        meta.set(t, HINT, 0)
        changes.append("The allocation hint was beyond the pool: reset to 0.")


def _dead_test(dead, total: int):
    """Is a block free, pending or beyond the pool (``dead``: normalized runs)?"""
    dead_starts = [s for s, _ in dead]

    def is_dead(b):
        if b >= total:
            return True
        i = bisect.bisect_right(dead_starts, b) - 1
        return i >= 0 and dead[i][0] + dead[i][1] > b
    return is_dead


def _drop_dead_dedup(pool, t, is_dead) -> list[str]:
    """Drop dedup entries that point at dead blocks or lack their mirror."""
    dropped = []
    for h, b in list(pool.index.entries(t)):
        if is_dead(b) or t.get(pack_u64(b), db=pool.index.rev) != h:
            pool.index.remove_entry(t, h, b)
            dropped.append(f"Dedup entry {h.hex()[:16]}... -> block {b} dropped (dead block or no mirror).")
    for b, h in list(pool.index.rev_entries(t)):
        if t.get(h, db=pool.index.db) != pack_u64(b):
            t.delete(pack_u64(b), db=pool.index.rev)
            dropped.append(f"pool.dedup_rev entry block {b} dropped (no matching pool.dedup entry).")
    return dropped


def _drop_dead_absent(pool, t, is_dead) -> list[str]:
    """Absent entries of dead blocks go (nothing references them); the counter is recounted."""
    gone = []
    for b, _, _ in list(pool.absent.entries(t)):
        if is_dead(b):
            t.delete(pack_u64(b), db=pool.absent.db)
            gone.append(f"Absent block {b} was not in use: its entry dropped.")
    n = sum(1 for _ in pool.absent.entries(t))
    if pool.absent.count(t) != n:
        pool.meta.set(t, ABSENT_BLOCKS, n)
        gone.append(f"pool.meta absent_blocks set to {n}.")
    return gone


def _drop_bad_sums(pool, t, total: int) -> list[str]:
    """Drop malformed pool.sums entries (and keys that are not a u64 at all)."""
    bad_sums = pool.sums.problems(t, total)
    for key, _, _ in bad_sums:
        if key >= 0:
            pool.sums.drop_key(t, key)
    for k, _ in list(t.cursor(db=pool.dbs.sums)):
        if len(k) != 8:
            t.delete(k, db=pool.dbs.sums)
    return [f"{msg[:-1]}: dropped." for _, _, msg in bad_sums]


def _capped(sentences: list[str], what: str) -> list[str]:
    if len(sentences) <= MAX_DETAIL:
        return sentences
    return sentences[:MAX_DETAIL] + [f"... and {len(sentences) - MAX_DETAIL} more {what}."]


def _counters(free, pending, shared) -> tuple:
    """The pool.meta counters that the free, pending and shared tables imply."""
    return (
        (FREE_BLOCKS, sum(n for _, n in free)),
        (PENDING_BLOCKS, sum(n for _, _, n in pending)),
        (SHARED_BLOCKS, sum(n for _, n, _ in shared)),
        (SHARED_EXTRA, sum(n * (c - 1) for _, n, c in shared)),
    )
