"""Bottom-up bulk build of a new tree from sorted items.

``build`` turns a stream of (key, value) pairs with strictly increasing keys
into a new tree in O(n): leaves are filled to ``FILL`` of the node limit,
then each level above is built the same way from the first keys of the
level below.  Every node is new (refcount 1, owned by the returned root);
values are taken as they are, so block references in them pass to the tree.
Completed nodes are written to LMDB at once (``NodeStore.persist``), so
memory stays bounded by one open node per level, whatever the tree's size.

``Builder`` is the same build fed one item at a time, able to span several
transactions: ``checkpoint()`` closes the open leaf and returns the root of
a valid tree holding every item so far (a "spine": copies of the open
internal nodes), so a caller can commit that root and go on in a new
transaction (``ns`` is then that transaction's NodeStore).  The caller owns
each checkpoint root and drops it (``NodeStore.dec``) in the transaction of
the next checkpoint (or of the finished root); only the spine is freed then.
Counts stay exact at every commit: the children of the open nodes at a
checkpoint are referenced by that spine alone ("borrowed"), and a node made
later that also references one of them (a closed node, the next spine, the
final root) adds the reference it takes.  A checkpoint leaves one leaf less
than full.

Cost: one node encode and one LMDB put per node; no shadowing, no search;
a checkpoint adds one node per level and one count per child of those.
"""
from __future__ import annotations

from typing import Iterable

from ..errors import InvalidInput
from .node import MAX_KEY, MAX_VALUE, HEADER, entry_size, node_limit
from .store import NodeStore

FILL = 0.9                     # fraction of the level's node limit filled
_LEAF_FILL = FILL * node_limit(0)


class _Level:
    __slots__ = ("keys", "vals", "nbytes")

    def __init__(self, level: int):
        self.keys: list = []
        self.vals: list = []
        self.nbytes = HEADER.size + 2


class Builder:
    """Incremental bulk build; see the module docstring."""

    def __init__(self, ns: NodeStore):
        self.ns = ns
        self.levels: list[_Level] = []
        self.prev: bytes | None = None
        self.borrowed: set[int] = set()     # children owned by the last checkpoint's spine

    def add(self, key: bytes, val) -> None:
        prev = self.prev
        if prev is not None and key <= prev:
            raise InvalidInput(f"bulk build needs strictly increasing keys ({key!r} after {prev!r})")
        nk, nv = len(key), len(val)
        if nk > MAX_KEY or not nv or nv > MAX_VALUE:
            raise InvalidInput(f"bulk build item out of limits (key {nk} B, value {nv} B)")
        self.prev = key
        levels = self.levels
        if levels:                      # the common case inline: room in the open leaf
            lv = levels[0]
            size = 6 + nk + nv          # entry_size(0, ...) + its two offsets
            if not lv.keys or lv.nbytes + size <= _LEAF_FILL:
                lv.keys.append(key)
                lv.vals.append(val)
                lv.nbytes += size
                return
        self._add(0, key, val)

    def add_many(self, items) -> int:
        """``add`` each (key, value) in order; returns the bytes of their keys and
        values (one call per batch of items instead of one per item)."""
        total = 0
        prev = self.prev
        for key, val in items:
            nk, nv = len(key), len(val)
            if prev is not None and key <= prev:
                raise InvalidInput(f"bulk build needs strictly increasing keys ({key!r} after {prev!r})")
            if nk > MAX_KEY or not nv or nv > MAX_VALUE:
                raise InvalidInput(f"bulk build item out of limits (key {nk} B, value {nv} B)")
            prev = self.prev = key
            total += nk + nv
            levels = self.levels
            if levels:                  # as in add: room in the open leaf
                lv = levels[0]
                size = 6 + nk + nv
                if not lv.keys or lv.nbytes + size <= _LEAF_FILL:
                    lv.keys.append(key)
                    lv.vals.append(val)
                    lv.nbytes += size
                    continue
            self._add(0, key, val)
        return total

    def _add(self, level: int, key: bytes, val) -> None:
        levels = self.levels
        if level == len(levels):
            levels.append(_Level(level))
        lv = levels[level]
        size = entry_size(level, key, val) + (2 if level == 0 else 0)
        if lv.keys and lv.nbytes + size > FILL * node_limit(level):
            self._close(level)
            lv = levels[level]
        lv.keys.append(key)
        lv.vals.append(val)
        lv.nbytes += size

    def _take(self, vals) -> None:
        """A new node references vals: add a reference to those the spine holds."""
        if self.borrowed:
            for c in vals:
                if c in self.borrowed:
                    self.ns.inc(c)

    def _close(self, level: int) -> None:
        lv = self.levels[level]
        if level:
            self._take(lv.vals)
            self.borrowed.difference_update(lv.vals)      # no longer in an open node
        node = self.ns.new(level, lv.keys, lv.vals)
        self.ns.persist(node)
        self.levels[level] = _Level(level)
        self._add(level + 1, node.keys[0], node.id)

    def checkpoint(self) -> int:
        """Root of a tree holding every item added so far (0 if none); the build
        goes on afterwards.  The caller owns one reference to the root."""
        levels, ns = self.levels, self.ns
        if not levels:
            return 0
        if levels[0].keys:
            self._close(0)
        child = None                     # (first key, id) of the spine node below
        for level in range(1, len(levels)):
            lv = levels[level]
            keys, vals = list(lv.keys), list(lv.vals)
            self._take(vals)             # the previous spine holds them until dropped
            if child is not None:
                keys.append(child[0])
                vals.append(child[1])
            if not keys:
                continue
            node = ns.new(level, keys, vals)
            ns.persist(node)
            child = (keys[0], node.id)
        self.borrowed = {c for lv in levels[1:] for c in lv.vals}
        return child[1] if child is not None else 0

    def finish(self) -> int:
        """Root of the finished tree (0 if empty); the builder is spent."""
        levels, ns = self.levels, self.ns
        if not levels:
            return 0
        level = 0
        while True:
            lv = levels[level]
            top = level == len(levels) - 1
            if top and len(lv.keys) == 1 and level > 0:
                self._take(lv.vals)
                return lv.vals[0]          # the single child of the would-be root is the root
            if top:
                if level:
                    self._take(lv.vals)
                node = ns.new(level, lv.keys, lv.vals)
                ns.persist(node)
                return node.id
            if lv.keys:
                self._close(level)
            level += 1


def build(ns: NodeStore, items: Iterable[tuple[bytes, bytes]]) -> int:
    """Root of a new tree holding items (keys strictly increasing); 0 if empty."""
    b = Builder(ns)
    for key, val in items:
        b.add(key, val)
    return b.finish()
