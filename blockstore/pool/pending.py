"""Deferred frees: blocks whose last reference died, not yet reusable.

The hazard (docs/ARCHITECTURE.md §5): a block freed in write txn W is still
reachable by every LMDB reader whose snapshot predates W's commit; if the
block were reused, such a reader would get someone else's bytes.  So a block
whose refcount reaches 0 in txn W goes to ``pool.pending`` under key (W,
start), never straight to the free map.  ``release(t, limit)`` moves the
entries of every W <= limit to the free map; the txn layer calls it at the
start of each write txn with limit = the oldest live reader's txn id (a
reader with snapshot id R sees the state after W's commit when W <= R, in
which the block is already unreferenced), or the last committed id when no
reader is alive.  Entries of the current txn (W == t.id()) are never
released by it.

``pool.pending_rev`` mirrors ``pool.pending`` by start block so that dec()
and inc() can tell in O(log N) whether a block is pending (catching double
frees).  Runs freed by the same txn are coalesced in both.
``meta.pending_blocks`` is the sum of n.

Costs: ``add`` and ``overlap`` are O(log N) cursor operations; ``release``
is O(k log N) for k entries released (entries are in txn-id order, so the
scan stops at the first one that must stay).  The caller holds the LMDB
write txn ``t`` (any txn for the queries).
"""
from __future__ import annotations

from typing import Callable, Iterator

from . import runs as run_ops
from .dbs import PENDING_BLOCKS, Meta, PoolDbs, pack_u64, pack_u64x2, unpack_u64, unpack_u64x2
from .. import errors


class Pending:
    def __init__(self, dbs: PoolDbs, meta: Meta):
        self.db = dbs.pending
        self.rev = dbs.pending_rev
        self.meta = meta

    def put(self, t, txnid: int, start: int, n: int) -> None:
        """Record [start, start+n) as freed by txn ``txnid`` (both tables; not the counter)."""
        t.put(pack_u64x2(txnid, start), pack_u64(n), db=self.db)
        t.put(pack_u64(start), pack_u64x2(n, txnid), db=self.rev)

    def _delete(self, t, txnid: int, start: int) -> None:
        t.delete(pack_u64x2(txnid, start), db=self.db)
        t.delete(pack_u64(start), db=self.rev)

    def add(self, t, txnid: int, start: int, n: int) -> None:
        """Record [start, start+n) as freed by txn ``txnid``."""
        if n <= 0:
            return
        end = start + n
        new_start, new_end = start, end
        cur = t.cursor(db=self.rev)
        merge = []
        if run_ops.floor(cur, start):
            s, ln, rest = run_ops.decode(cur.key(), cur.value())
            w = unpack_u64(rest)[0]
            if s + ln > start:
                raise errors.Corruption(
                    f"double free: {run_ops.fmt_run(start, n)} overlaps {run_ops.fmt_run(s, ln)} pending since txn {w}")
            if s + ln == start and w == txnid:
                new_start = s
                merge.append(s)
        if cur.set_range(pack_u64(start)):
            s, ln, rest = run_ops.decode(cur.key(), cur.value())
            w = unpack_u64(rest)[0]
            if s < end:
                raise errors.Corruption(
                    f"double free: {run_ops.fmt_run(start, n)} overlaps {run_ops.fmt_run(s, ln)} pending since txn {w}")
            if s == end and w == txnid:
                new_end = s + ln
                merge.append(s)
        for s in merge:
            self._delete(t, txnid, s)
        self.put(t, txnid, new_start, new_end - new_start)
        self.meta.add(t, PENDING_BLOCKS, n)

    def overlap(self, t, start: int, n: int) -> tuple[int, int, int] | None:
        """The first pending run intersecting [start, start+n) as (start, n, txnid), or None."""
        hit = run_ops.first_overlap(t, self.rev, start, n)
        if hit is None:
            return None
        v = t.get(pack_u64(hit[0]), db=self.rev)
        return hit[0], hit[1], unpack_u64x2(v)[1]

    def release(self, t, limit_txnid: int, free: Callable[[object, int, int, int], None]) -> int:
        """Hand every run freed in txn W <= limit (and W < t.id()) to
        ``free(t, start, n, W)``."""
        bound = min(limit_txnid, t.id() - 1)
        todo = []
        for k, v in t.cursor(db=self.db):
            w, s = unpack_u64x2(k)
            if w > bound:
                break
            todo.append((w, s, unpack_u64(v)[0]))
        released = 0
        for w, s, n in todo:
            self._delete(t, w, s)
            free(t, s, n, w)
            released += n
        self.meta.add(t, PENDING_BLOCKS, -released)
        return released

    def releasable(self, t, limit_txnid: int) -> int:
        """Blocks ``release`` would free with this limit (O(runs counted): entries
        are in txn-id order)."""
        total = 0
        for k, v in t.cursor(db=self.db):
            if unpack_u64x2(k)[0] > limit_txnid:
                break
            total += unpack_u64(v)[0]
        return total

    def freed_by(self, t, txnid: int) -> bool:
        """Whether txn ``txnid`` deferred any free (one cursor seek)."""
        cur = t.cursor(db=self.db)
        return cur.set_range(pack_u64x2(txnid, 0)) and unpack_u64x2(cur.key())[0] == txnid

    def runs(self, t) -> Iterator[tuple[int, int, int]]:
        """(txnid, start, n) in txn-id order."""
        for k, v in t.cursor(db=self.db):
            w, s = unpack_u64x2(k)
            yield w, s, unpack_u64(v)[0]

    def rev_runs(self, t) -> Iterator[tuple[int, int, int]]:
        """(start, n, txnid) in block order, from the mirror."""
        for k, v in t.cursor(db=self.rev):
            s = unpack_u64(k)[0]
            n, w = unpack_u64x2(v)
            yield s, n, w
