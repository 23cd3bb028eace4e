"""Difference of two trees, skipping the subtrees they share.

Both trees are walked as a front of unexpanded subtrees and entries in key
order.  When both fronts are the same node id the whole subtree is skipped:
that is what makes diff (and layer export) cost O(difference x depth)
instead of O(tree).  A subtree is only opened when something on the other
side could fall in its key range; the taller side is opened first so equal
subtrees meet at equal levels.
"""
from __future__ import annotations

from typing import Iterator

from .store import NodeStore

# Front items: (kind, lo_key, payload) with kind NODE (payload = node id,
# lo_key = lower bound of its keys) or ENTRY (lo_key = key, payload = value).
NODE, ENTRY = 0, 1


class _Front:
    __slots__ = ("ns", "stack")

    def __init__(self, ns: NodeStore, root: int):
        self.ns = ns
        self.stack = [(NODE, b"", root)] if root else []

    def peek(self):
        return self.stack[-1] if self.stack else None

    def pop(self):
        return self.stack.pop()

    def open(self) -> None:
        """Replace the front node by its children or entries."""
        _, lo, nid = self.stack.pop()
        node = self.ns.get(nid)
        kind = NODE if node.level else ENTRY
        keys, vals = node.keys, node.vals
        for i in range(len(keys) - 1, -1, -1):
            k = keys[i]
            self.stack.append((kind, lo if i == 0 and kind == NODE and k < lo else k, vals[i]))

    def level(self) -> int:
        return self.ns.get(self.stack[-1][2]).level


def _common_prefix(x: list, y: list) -> int:
    """Length of the longest common prefix, by binary search on C-speed slice compares."""
    lo, hi = 0, min(len(x), len(y))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if x[:mid] == y[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _open_both_skipping_common(a: _Front, b: _Front) -> None:
    """Open two different nodes of one level, dropping the children (or entries)
    they have in common at both ends.  An identical subtree or entry holds the
    same keys on both sides, so it contributes nothing wherever it sits."""
    _, lo_a, id_a = a.pop()
    _, lo_b, id_b = b.pop()
    na, nb = a.ns.get(id_a), b.ns.get(id_b)
    pa = list(zip(na.keys, na.vals)) if na.level == 0 else na.vals
    pb = list(zip(nb.keys, nb.vals)) if nb.level == 0 else nb.vals
    head = _common_prefix(pa, pb)
    tail = _common_prefix(pa[head:][::-1], pb[head:][::-1])
    for front, node, lo in ((a, na, lo_a), (b, nb, lo_b)):
        kind = NODE if node.level else ENTRY
        keys, vals = node.keys, node.vals
        for i in range(len(keys) - 1 - tail, head - 1, -1):
            k = keys[i]
            front.stack.append((kind, lo if i == 0 and kind == NODE and k < lo else k, vals[i]))


def diff(ns: NodeStore, root_a: int, root_b: int,
         ns_b: NodeStore | None = None) -> Iterator[tuple[bytes, bytes | None, bytes | None]]:
    """Yield (key, value in a or None, value in b or None) for every key whose value differs.

    ``ns_b``: read tree b through another transaction's store (default ``ns``):
    a root of an older read transaction against the current one.  Sound
    because node ids are never reused and nodes never change, so one id
    names the same subtree in every transaction that can read it."""
    a, b = _Front(ns, root_a), _Front(ns if ns_b is None else ns_b, root_b)
    while True:
        x, y = a.peek(), b.peek()
        if x is None and y is None:
            return
        if y is None:
            if x[0] == NODE:
                a.open()
            else:
                a.pop()
                yield x[1], x[2], None
            continue
        if x is None:
            if y[0] == NODE:
                b.open()
            else:
                b.pop()
                yield y[1], None, y[2]
            continue
        if x[0] == NODE and y[0] == NODE:
            if x[2] == y[2]:
                a.pop()
                b.pop()
                continue
            la, lb = a.level(), b.level()
            if la == lb:
                _open_both_skipping_common(a, b)
                continue
            if la > lb:
                a.open()
            else:
                b.open()
            continue
        if x[0] == NODE:
            # y is an entry: it comes first if it is below everything in x's subtree.
            if y[1] < x[1]:
                b.pop()
                yield y[1], None, y[2]
            else:
                a.open()
            continue
        if y[0] == NODE:
            if x[1] < y[1]:
                a.pop()
                yield x[1], x[2], None
            else:
                b.open()
            continue
        # Two entries.
        if x[1] == y[1]:
            a.pop()
            b.pop()
            if x[2] != y[2]:
                yield x[1], x[2], y[2]
        elif x[1] < y[1]:
            a.pop()
            yield x[1], x[2], None
        else:
            b.pop()
            yield y[1], None, y[2]
