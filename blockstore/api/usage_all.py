"""Usage of many trees in one pass that visits each shared subtree once.

``usage_all`` returns, for every tree named, exactly what ``usage.usage``
returns for it alone (the tests compare them on random stores), but walks
the store's nodes once instead of once per tree:

* A node whose count is 1 and whose ancestors all have count 1 belongs to
  one tree only (the "alone" part: what that tree changed).  It is walked
  for that tree, as ``usage`` does.
* Below the first node with a count above 1 everything is shared, and no
  node there is alone for any tree.  Such a subtree is summarised once:
  its nodes, files and logical bytes, the number of blocks it references
  that have pool count 1 (referenced once in the whole pool, so never twice
  within a tree), and the disjoint (start, n, count) segments of its
  references to blocks with pool count 2 or more.  A shared internal node's
  summary is kept for the rest of the pass and reused by every tree (and
  every shared parent) that reaches it, and so is a shared leaf's.
* Per tree: referenced = its pool-count-1 blocks + the distinct blocks of
  its pool-shared segments (one merge of its alone part's and its
  summaries' segments; a tree that is one shared subtree, like an unchanged
  clone or a snapshot, takes the summary's total as is); exclusive = the
  pool-count-1 blocks of its alone leaves + the pool-shared blocks whose
  every reference comes from its alone leaves (``usage.exclusive_blocks``
  on the segments that overlap them).

Cost: one visit of every node reachable from the trees' alone parts and
of every shared subtree, one ``noderc`` lookup per node, plus per tree a
merge of its pool-shared segments (empty when nothing is shared at the
block level, as after clones that changed nothing).  Memory: one summary
per shared internal node reached and per shared leaf reached from a tree's
alone part (at most ``LEAF_MEMO_MAX`` leaves; beyond that a leaf is
summarised again at each visit), each with a segment list bounded by the
pool's shared-block table; every tree's result is a few integers.
"""
from __future__ import annotations

import bisect
import heapq

from .. import catalog
from ..btree import values
from ..btree.store import NodeStore
from ..catalog import count_runs
from ..fs.usage import file_totals
from .usage import Usage, exclusive_blocks


# Shared leaves whose summaries are kept (internal nodes' always are): bounds
# the memory of the pass at about LEAF_MEMO_MAX x (120 bytes + segments).
LEAF_MEMO_MAX = 200_000


class _Sum:
    """What a shared subtree contributes to every tree that reaches it."""

    __slots__ = ("nodes", "files", "logical", "plain", "segs", "distinct")

    def __init__(self, nodes, files, logical, plain, segs):
        self.nodes, self.files, self.logical, self.plain = nodes, files, logical, plain
        self.segs = segs                                  # disjoint (start, n, refs), sorted
        self.distinct = sum(n for _, n, _ in segs)


class _Pass:
    def __init__(self, r):
        self.ns = NodeStore.of(r)
        self.shared = sorted(r.blocks.shared_runs())    # (start, n, count >= 2)
        self.starts = [s for s, _, _ in self.shared]
        self.memo: dict[int, _Sum] = {}
        self.leaves_kept = 0

    def split(self, s: int, n: int, pieces: list) -> int:
        """Append the parts of blocks [s, s+n) that the pool counts 2+ times to
        ``pieces``; return how many of its blocks have count 1."""
        shared, end = self.shared, s + n
        if not shared:
            return n
        i = max(0, bisect.bisect_right(self.starts, s) - 1)
        plain, pos = 0, s
        while i < len(shared) and pos < end:
            a, m, _ = shared[i]
            b = a + m
            if b <= pos:
                i += 1
                continue
            if a >= end:
                break
            if a > pos:
                plain += a - pos
                pos = a
            hi = min(b, end)
            pieces.append((pos, hi - pos))
            pos = hi
            i += 1
        return plain + (end - pos)

    def leaf(self, node, pieces: list) -> tuple[int, int, int]:
        """(files, logical, pool-count-1 blocks) of a leaf; its pool-shared pieces
        are appended to ``pieces``."""
        plain = 0
        for v in node.vals:
            ref = values.refs(v)
            if ref is not None:
                plain += self.split(ref[0], ref[1], pieces)
        files, logical = file_totals(node.keys, node.vals)
        return files, logical, plain

    def summary(self, nid: int, shared_leaf: bool = False) -> _Sum:
        """The summary of the subtree under nid, kept when nid is internal, or a leaf
        the caller knows to be shared (count > 1: other trees' alone parts may
        reach it too) while fewer than ``LEAF_MEMO_MAX`` leaves are kept."""
        got = self.memo.get(nid)
        if got is not None:
            return got
        node = self.ns.get(nid)
        if not node.level:
            pieces: list = []
            files, logical, plain = self.leaf(node, pieces)
            out = _Sum(1, files, logical, plain, count_runs(pieces) if pieces else [])
            if shared_leaf and self.leaves_kept < LEAF_MEMO_MAX:
                self.leaves_kept += 1
                self.memo[nid] = out
            return out
        nodes, files, logical, plain = 1, 0, 0, 0
        segs = []
        for c in node.vals:
            s = self.summary(c)
            nodes += s.nodes
            files += s.files
            logical += s.logical
            plain += s.plain
            if s.segs:
                segs.append(s.segs)
        merged = segs[0] if len(segs) == 1 else _merge(segs) if segs else []
        out = _Sum(nodes, files, logical, plain, merged)
        self.memo[nid] = out
        return out

    def tree(self, root: int, bs: int) -> Usage:
        ns = self.ns
        nodes = excl_nodes = files = logical = 0
        plain_mine = plain_other = 0
        mine: list = []                   # pool-shared pieces of this tree's alone leaves
        sums: list[_Sum] = []
        stack = [root] if root else []
        while stack:
            nid = stack.pop()
            if ns.rc(nid) != 1:
                s = self.summary(nid, True)
                nodes += s.nodes
                files += s.files
                logical += s.logical
                plain_other += s.plain
                if s.segs:
                    sums.append(s)
                continue
            node = ns.get(nid)
            nodes += 1
            excl_nodes += 1
            if node.level:
                stack.extend(node.vals)
                continue
            f, lg, p = self.leaf(node, mine)
            files += f
            logical += lg
            plain_mine += p
        mine_segs = count_runs(mine) if mine else []
        if not mine_segs and len(sums) == 1:
            distinct = sums[0].distinct
        elif not sums:
            distinct = sum(n for _, n, _ in mine_segs)
        else:
            distinct = _union_blocks([mine_segs] + [s.segs for s in sums])
        exclusive = plain_mine
        if mine_segs:
            others = _merge([_overlapping(s.segs, mine_segs) for s in sums])
            exclusive += exclusive_blocks(mine_segs, others,
                                           _overlapping(self.shared, mine_segs))
        referenced = (plain_mine + plain_other + distinct) * bs
        return Usage(logical, referenced, exclusive * bs, referenced - exclusive * bs, files,
                     nodes, excl_nodes)


def _merge(lists: list[list]) -> list:
    """Disjoint (start, n, refs) segments of the union of several such lists, refs added."""
    events: dict[int, int] = {}
    for segs in lists:
        for s, n, c in segs:
            events[s] = events.get(s, 0) + c
            events[s + n] = events.get(s + n, 0) - c
    out, level, prev = [], 0, None
    for pos in sorted(events):
        if level > 0 and prev is not None and pos > prev:
            if out and out[-1][0] + out[-1][1] == prev and out[-1][2] == level:
                a, n, c = out[-1]
                out[-1] = (a, n + pos - prev, c)
            else:
                out.append((prev, pos - prev, level))
        level += events[pos]
        prev = pos
    return out


def _union_blocks(lists: list[list]) -> int:
    """Blocks covered by the union of sorted, internally disjoint segment lists."""
    total, end = 0, None
    for s, n, _ in heapq.merge(*lists):
        e = s + n
        if end is None or s >= end:
            total += n
            end = e
        elif e > end:
            total += e - end
            end = e
    return total


def _overlapping(segs: list, within: list) -> list:
    """The segments of sorted ``segs`` that overlap any of sorted ``within``."""
    if not segs or not within:
        return []
    starts = [s for s, _, _ in segs]
    out, seen = [], set()
    for a, n, _ in within:
        i = max(0, bisect.bisect_right(starts, a) - 1)
        while i < len(segs) and segs[i][0] < a + n:
            if segs[i][0] + segs[i][1] > a and i not in seen:
                seen.add(i)
                out.append(segs[i])
            i += 1
    out.sort()
    return out


def usage_all(store, names=None) -> dict[str, Usage]:
    """{name: Usage} of the trees named (default: every tree), from one read
    transaction; each equals ``usage(store, name)``.  See the module docstring."""
    with store.env.read() as r:
        p = _Pass(r)
        bs = r.blocks.block_size
        if names is None:
            recs = list(catalog.records(r))
        else:
            recs = [catalog.get(r, n) for n in names]
        return {rec.name: p.tree(rec.root, bs) for rec in recs}
