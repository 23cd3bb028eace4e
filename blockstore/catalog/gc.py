"""Garbage collection: finish pending tree deletions and return their space.

Removing a tree only drops its root reference; nodes whose count reached
zero wait in the GC queue.  ``collect`` frees them in transactions of at
most ``budget`` nodes, so a crash loses at most one step's work (the queue
is in LMDB) and writers are never blocked for long.  Blocks freed here go
to pending-free and become reusable once no reader older than the free is
alive (``Env`` releases them at the start of a later write transaction).

With ``trim`` the free blocks' disk space goes back to the file system
(holes punched in the data file, pool/trimmed.py): blocks still pending
(an older reader may reach them) are not trimmed until a later gc.

Commits: none when idle; none either when all that is left are the deferred
frees of a tree removal (``catalog.drop`` marks them to be trimmed when
released): they are punched under the writer lock in a write transaction
that is then aborted (``Env.trial``), and the next write of the store
releases them and records the trim.  So ``remove`` + ``gc`` of a small tree
is one durable commit.  Otherwise one commit per ``budget`` nodes freed and
one that releases and trims.

Cost: proportional to the nodes and blocks the removed trees owned alone,
plus (trim) one pass over the free map and one fallocate per free run not
trimmed before.
"""
from __future__ import annotations

from ..btree.store import NodeStore
from ..txn import Env


def collect(env: Env, budget: int = 2000, trim: bool = False) -> dict:
    """``trim``: also give the disk space of the free blocks back to the file
    system (Pool.trim, in the last write transaction, after the pending frees
    every reader has let go were released)."""
    freed = 0
    with env.read() as r:
        queued = NodeStore.of(r).gc_pending()
        pending = r.blocks.pending_blocks()
        untrimmed = 0
        if trim:        # free blocks still on disk, and growth no commit adopted
            untrimmed = max(0, env.pool.data.size_blocks() - r.blocks.total_blocks())
            if env.pool.data.can_punch:
                untrimmed += r.blocks.untrimmed_free_blocks()
        before = r.blocks.stats()
    if not queued and not pending and not untrimmed:
        return {"nodes_freed": 0, "blocks_released": 0, "pending_blocks": 0,
                "trimmed_blocks": 0}                  # idle: one read
    while _queued(env):
        n = env.transact(lambda w: NodeStore.of(w).gc_step(budget))
        freed += n
        if n < budget:
            break
    if trim and not freed and not untrimmed:
        # Only deferred frees are left.  A removal marked its own for trimming
        # when released (Pool.trim_when_released): if releasing them leaves no
        # free block untrimmed, the space is given back now and the next write
        # makes the blocks reusable (it releases them at its start, as every
        # write does): no durable commit of gc's own.
        after = env.trial(lambda w: w.blocks.stats() if not (
            w.blocks.untrimmed_free_blocks() and env.pool.data.can_punch) else None)
        if after is not None:
            return _report(freed, before, after)
    # One more write transaction releases what every reader has let go (it does
    # so when it begins) and trims; skipped when there is nothing to do: an idle
    # gc costs no commit.
    cut = 0
    if trim:
        cut = env.transact(_trim)
    elif _pool_pending(env):
        env.transact(lambda w: None)
    with env.read() as r:
        return _report(freed, before, r.blocks.stats(), cut)


def _report(freed: int, before, after, cut: int = 0) -> dict:
    """gc's result from the pool's counters before and after (``cut``: blocks
    given back beyond what pool.trimmed records, see Pool.trim)."""
    return {"nodes_freed": freed,
            "blocks_released": max(0, after.free_blocks - before.free_blocks),
            "pending_blocks": after.pending_blocks,
            "trimmed_blocks": max(0, after.trimmed_blocks - before.trimmed_blocks) + cut}


def _trim(w) -> int:
    """Pool.trim in write txn w; returns the blocks it gave back beyond what
    pool.trimmed records (the data file's growth it cut off)."""
    blocks = w.blocks
    t0 = blocks.stats().trimmed_blocks
    got = blocks.trim()
    return got - (blocks.stats().trimmed_blocks - t0)


def _pool_pending(env: Env) -> int:
    with env.read() as r:
        return r.blocks.pending_blocks()


def _queued(env: Env) -> int:
    with env.read() as r:
        return NodeStore.of(r).gc_pending()
