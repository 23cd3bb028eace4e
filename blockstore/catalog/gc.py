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
    if not queued and not pending and not untrimmed:
        return {"nodes_freed": 0, "blocks_released": 0, "pending_blocks": 0,
                "trimmed_blocks": 0}                  # idle: one read
    before = _pool_free(env)
    while _queued(env):
        n = env.transact(lambda w: NodeStore.of(w).gc_step(budget))
        freed += n
        if n < budget:
            break
    # One more write transaction releases what every reader has let go (it does
    # so when it begins) and trims; skipped when there is nothing to do: an idle
    # gc costs no commit.
    trimmed = 0
    if trim:
        trimmed = env.transact(lambda w: w.blocks.trim())
    elif _pool_pending(env):
        env.transact(lambda w: None)
    after = _pool_free(env)
    return {"nodes_freed": freed, "blocks_released": max(0, after - before),
            "pending_blocks": _pool_pending(env), "trimmed_blocks": trimmed}


def _pool_free(env: Env) -> int:
    with env.read() as r:
        return r.blocks.stats().free_blocks


def _pool_pending(env: Env) -> int:
    with env.read() as r:
        return r.blocks.pending_blocks()


def _queued(env: Env) -> int:
    with env.read() as r:
        return NodeStore.of(r).gc_pending()
