"""Bottom-up bulk build of a new tree from sorted items.

``build`` turns a stream of (key, value) pairs with strictly increasing keys
into a new tree in O(n): leaves are filled to ``FILL`` of the node limit,
then each level above is built the same way from the first keys of the
level below.  Every node is new (refcount 1, owned by the returned root);
values are taken as they are, so block references in them pass to the tree.
Completed nodes are written to LMDB at once (``NodeStore.persist``), so
memory stays bounded by one open node per level, whatever the tree's size.

Cost: one node encode and one LMDB put per node; no shadowing, no search.
"""
from __future__ import annotations

from typing import Iterable

from ..errors import InvalidInput
from .node import MAX_KEY, MAX_VALUE, HEADER, entry_size, node_limit
from .store import NodeStore

FILL = 0.9                     # fraction of the level's node limit filled


class _Level:
    __slots__ = ("keys", "vals", "nbytes")

    def __init__(self, level: int):
        self.keys: list = []
        self.vals: list = []
        self.nbytes = HEADER.size + 2


def build(ns: NodeStore, items: Iterable[tuple[bytes, bytes]]) -> int:
    """Root of a new tree holding items (keys strictly increasing); 0 if empty."""
    levels: list[_Level] = []

    def add(level: int, key: bytes, val) -> None:
        if level == len(levels):
            levels.append(_Level(level))
        lv = levels[level]
        size = entry_size(level, key, val) + (2 if level == 0 else 0)
        if lv.keys and lv.nbytes + size > FILL * node_limit(level):
            close(level)
            lv = levels[level]
        lv.keys.append(key)
        lv.vals.append(val)
        lv.nbytes += size

    def close(level: int) -> None:
        lv = levels[level]
        node = ns.new(level, lv.keys, lv.vals)
        ns.persist(node)
        levels[level] = _Level(level)
        add(level + 1, node.keys[0], node.id)

    prev = None
    for key, val in items:
        if prev is not None and key <= prev:
            raise InvalidInput(f"bulk build needs strictly increasing keys ({key!r} after {prev!r})")
        if len(key) > MAX_KEY or not val or len(val) > MAX_VALUE:
            raise InvalidInput(f"bulk build item out of limits (key {len(key)} B, value {len(val)} B)")
        prev = key
        add(0, key, val)
    if not levels:
        return 0
    level = 0
    while True:
        lv = levels[level]
        top = level == len(levels) - 1
        if top and len(lv.keys) == 1 and level > 0:
            return lv.vals[0]          # the single child of the would-be root is the root
        if top:
            node = ns.new(level, lv.keys, lv.vals)
            ns.persist(node)
            return node.id
        if lv.keys:
            close(level)
        level += 1
