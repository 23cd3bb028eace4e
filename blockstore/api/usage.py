"""Exact space accounting.

For one tree (``usage``):

* logical     -- sum of the sizes of its regular files and symlinks (apparent size);
* referenced  -- bytes of the distinct pool blocks it references;
* exclusive   -- bytes that removing the tree (and running gc) would free: blocks
                 referenced only from nodes that this tree alone reaches;
* shared      -- referenced - exclusive.

A node is this tree's alone when it and every node above it have refcount 1
(the root's one reference being this tree's catalog record); a block is
exclusive when every reference to it (its pool count) comes from such
leaves.  Cost: one walk of this tree's nodes and one pool lookup per run of
blocks; other trees are never scanned.

For the pool (``pool_usage``): sizes from the pool's counters, O(1).
``multi_ref_bytes`` is the bytes of blocks with two or more pool references
(leaf entries that point at them: copies made by ``cp`` or a rewrite of one
of two trees' shared B-tree leaves, dedup hits).  It is NOT the sum of the
trees' ``shared``: trees that share a B-tree node (a snapshot and its
unchanged clone) reference its blocks once, so a fresh clone makes all of
its snapshot's bytes ``shared`` (per tree) and adds nothing to
``multi_ref_bytes``.  ``data_file_bytes`` is the data file's allocated size
on disk (st_blocks x 512): below ``total_bytes`` by what gc trimmed.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from .. import catalog
from ..btree import values
from ..btree.store import NodeStore
from ..catalog import count_runs
from ..fs.usage import file_totals


@dataclass
class Usage:
    logical: int
    referenced: int
    exclusive: int
    shared: int
    files: int
    nodes: int
    exclusive_nodes: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class PoolUsage:
    block_size: int
    total_bytes: int
    used_bytes: int
    free_bytes: int
    pending_bytes: int
    multi_ref_bytes: int
    dedup: bool
    dedup_saved_bytes: int
    zero_saved_bytes: int
    data_file_bytes: int
    metadata_bytes: int
    trees: int

    def as_dict(self) -> dict:
        return asdict(self)


def usage(store, name: str) -> Usage:
    with store.env.read() as r:
        ns = NodeStore.of(r)
        blocks = r.blocks
        rec = catalog.get(r, name)
        excl_runs, other_runs = [], []
        logical = files = nodes = excl_nodes = 0
        stack = [(rec.root, True)] if rec.root else []
        while stack:
            nid, alone = stack.pop()
            alone = alone and ns.rc(nid) == 1
            node = ns.get(nid)
            nodes += 1
            excl_nodes += alone
            if node.level:
                stack.extend((c, alone) for c in node.vals)
                continue
            runs = excl_runs if alone else other_runs
            for v in node.vals:
                ref = values.refs(v)
                if ref is not None:
                    runs.append(ref)
            f, n = file_totals(node.keys, node.vals)
            files += f
            logical += n
        bs = blocks.block_size
        referenced = sum(n for _, n, _ in count_runs(excl_runs + other_runs)) * bs
        exclusive = bs * exclusive_blocks(count_runs(excl_runs), count_runs(other_runs),
                                           sorted(blocks.shared_runs()))
        return Usage(logical, referenced, exclusive, referenced - exclusive, files, nodes,
                     excl_nodes)


def exclusive_blocks(mine, others, shared) -> int:
    """Blocks whose every pool reference comes from this tree's own leaves.

    mine: (start, n, refs from exclusive leaves); others: (start, n, refs from
    leaves shared with other trees); shared: the pool's (start, n, count>=2)
    runs (a live block not in it has count 1).  One sweep over the boundaries.
    """
    points = set()
    for runs in (mine, others, shared):
        for s, n, _ in runs:
            points.update((s, s + n))
    total = 0
    pts = sorted(points)
    im = io = ish = 0
    for a, b in zip(pts, pts[1:]):
        while im < len(mine) and mine[im][0] + mine[im][1] <= a:
            im += 1
        if im >= len(mine):
            break
        if mine[im][0] > a:
            continue
        while io < len(others) and others[io][0] + others[io][1] <= a:
            io += 1
        while ish < len(shared) and shared[ish][0] + shared[ish][1] <= a:
            ish += 1
        if io < len(others) and others[io][0] <= a:
            continue                       # also referenced from a shared leaf
        count = shared[ish][2] if ish < len(shared) and shared[ish][0] <= a else 1
        if count == mine[im][2]:
            total += b - a
    return total


def pool_usage(store) -> PoolUsage:
    """The pool's counters; pending blocks that no live reader can reach any more
    count as free (the next write releases them: gc leaves a removal's blocks so,
    catalog/gc.py), so ``pending`` is what older readers still hold."""
    with store.env.read() as r:
        st = r.blocks.stats()
        trees = catalog.count(r)
        free, pending = st.free_blocks, st.pending_blocks
        if pending:
            oldest = store.env.oldest_reader()      # this read txn is one of them
            gone = r.blocks.releasable_pending(oldest if oldest is not None else r.id())
            free, pending = free + gone, pending - gone
    bs = st.block_size
    data = os.path.join(store.path, "pool.data")
    meta = os.path.join(store.path, "meta", "data.mdb")
    return PoolUsage(
        block_size=bs, total_bytes=st.total_blocks * bs, used_bytes=st.used_blocks * bs,
        free_bytes=free * bs, pending_bytes=pending * bs,
        multi_ref_bytes=st.shared_blocks * bs, dedup=store.env.dedup,
        dedup_saved_bytes=st.dedup_hits * bs, zero_saved_bytes=st.zero_blocks * bs,
        data_file_bytes=os.stat(data).st_blocks * 512 if os.path.exists(data) else 0,
        metadata_bytes=os.stat(meta).st_blocks * 512 if os.path.exists(meta) else 0,
        trees=trees)
