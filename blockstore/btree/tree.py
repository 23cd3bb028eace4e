"""Copy-on-write B+tree operations.

A tree is named by its root node id (0 = empty tree).  Every mutation takes
the caller's reference to a root and returns a new root carrying that one
reference; nodes shared with other trees are shadowed on the way down
(``NodeStore.writable``), so other trees never see the change.

Keys and values are bytes; values are encoded by ``btree.values`` so the
engine knows which pool blocks they own.  Replacing or deleting a value
releases its blocks.

Costs (n keys, fan-out f, depth d = log_f n):
* lookup: d node reads, independent of how many snapshots share the tree;
* insert/delete: d node reads, at most d shadowed nodes, O(f) per node;
* clone (``share``): one refcount increment;
* iterate: d + k/f node reads for k keys.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Iterator

from ..errors import InvalidInput
from . import values
from .node import MAX_KEY, MAX_VALUE, Node, entry_size, node_limit
from .store import NodeStore



def _child_index(node: Node, key: bytes) -> int:
    i = bisect_right(node.keys, key) - 1
    return i if i > 0 else 0


def lookup(ns: NodeStore, root: int, key: bytes):
    """The value stored under ``key``, or None."""
    if not root:
        return None
    node = ns.get(root)
    while node.level:
        node = ns.get(node.vals[_child_index(node, key)])
    i = bisect_left(node.keys, key)
    if i < len(node.keys) and node.keys[i] == key:
        return node.vals[i]
    return None


def iterate(ns: NodeStore, root: int, lo: bytes = b"", hi: bytes | None = None,
            reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) for lo <= key < hi in key order (or reverse order)."""
    if not root:
        return
    yield from _iter(ns, ns.get(root), lo, hi, reverse)


def _iter(ns, node, lo, hi, reverse):
    keys = node.keys
    if node.level == 0:
        a = bisect_left(keys, lo)
        b = len(keys) if hi is None else bisect_left(keys, hi)
        rng = range(b - 1, a - 1, -1) if reverse else range(a, b)
        for i in rng:
            yield keys[i], node.vals[i]
        return
    a = _child_index(node, lo)
    b = len(keys) if hi is None else max(bisect_left(keys, hi), a + 1)
    rng = range(b - 1, a - 1, -1) if reverse else range(a, b)
    for i in rng:
        yield from _iter(ns, ns.get(node.vals[i]), lo, hi, reverse)


def share(ns: NodeStore, root: int) -> int:
    """Another reference to the same tree: O(1) clone/snapshot."""
    if root:
        ns.inc(root)
    return root


def release(ns: NodeStore, root: int) -> None:
    """Drop a reference to a tree; what it owned alone is freed by gc steps."""
    if root:
        ns.dec(root)


def _check_entry(key: bytes, value: bytes) -> None:
    if len(key) > MAX_KEY:
        raise InvalidInput(f"B-tree key of {len(key)} bytes exceeds {MAX_KEY}")
    if len(value) > MAX_VALUE or not value:
        raise InvalidInput(f"B-tree value of {len(value)} bytes is not within 1..{MAX_VALUE}")


def _release_value(ns: NodeStore, value) -> None:
    r = values.refs(value)
    if r is not None:
        ns.txn.blocks.dec(r[0], r[1])


def insert(ns: NodeStore, root: int, key: bytes, value: bytes, release_old: bool = True) -> int:
    """Set key to value (the tree takes ownership of the value's blocks); returns the new root.

    A value the key had is released (its blocks lose one reference) unless
    ``release_old`` is False: then the caller hands those references on to the
    new value (an extent that grows over its old blocks keeps their counts)."""
    key, value = bytes(key), bytes(value)
    _check_entry(key, value)
    if not root:
        return ns.new(0, [key], [value]).id
    node = ns.writable(root)
    new_root = node.id
    path: list[tuple[Node, int]] = []
    while node.level:
        i = _child_index(node, key)
        if key < node.keys[i]:
            node.keys[i] = key            # lower bound of the leftmost child drops
            node.recount()
        child = ns.writable(node.vals[i])
        node.vals[i] = child.id
        path.append((node, i))
        node = child
    i = bisect_left(node.keys, key)
    if i < len(node.keys) and node.keys[i] == key:
        old = node.vals[i]
        node.vals[i] = value
        node.nbytes += len(value) - len(old)
        if release_old:
            _release_value(ns, old)
    else:
        node.keys.insert(i, key)
        node.vals.insert(i, value)
        node.nbytes += entry_size(0, key, value)
    # Split bottom-up where a node grew past the limit.
    while node.nbytes > node_limit(node.level):
        right = _split(ns, node)
        if not path:
            top = ns.new(node.level + 1, [node.keys[0], right.keys[0]], [node.id, right.id])
            return top.id
        parent, i = path.pop()
        parent.keys.insert(i + 1, right.keys[0])
        parent.vals.insert(i + 1, right.id)
        parent.nbytes += entry_size(1, right.keys[0], right.id)
        node = parent
    return new_root


def _split(ns: NodeStore, node: Node) -> Node:
    """Move the upper half (by bytes) of a writable node into a new right sibling."""
    half = node.nbytes // 2
    acc, cut, lvl = 0, 1, node.level
    for j, (k, v) in enumerate(zip(node.keys, node.vals)):
        acc += entry_size(lvl, k, v)
        if acc >= half:
            cut = max(1, min(j + 1, len(node.keys) - 1))
            break
    right = ns.new(lvl, node.keys[cut:], node.vals[cut:])
    del node.keys[cut:]
    del node.vals[cut:]
    node.recount()
    return right


def delete(ns: NodeStore, root: int, key: bytes, release: bool = True) -> tuple[int, bytes | None]:
    """Remove key; returns (new root, old value or None).  The old value's blocks are
    released, unless ``release`` is False: then the caller takes over its references."""
    key = bytes(key)
    old = lookup(ns, root, key)
    if old is None:
        return root, None
    old = bytes(old)
    node = ns.writable(root)
    path: list[tuple[Node, int]] = []
    while node.level:
        i = _child_index(node, key)
        child = ns.writable(node.vals[i])
        node.vals[i] = child.id
        path.append((node, i))
        node = child
    i = bisect_left(node.keys, key)
    del node.keys[i]
    del node.vals[i]
    node.recount()
    if release:
        _release_value(ns, old)
    # Rebalance bottom-up: drop empty nodes, merge small ones with a sibling.
    while path:
        parent, i = path.pop()
        if not node.keys:
            ns.discard(node)
            del parent.keys[i]
            del parent.vals[i]
        elif node.nbytes < node_limit(node.level) // 4 and len(parent.keys) > 1:
            _merge_with_sibling(ns, parent, i)
        parent.recount()
        node = parent
    # Collapse a root with one child: the root reference moves to the child.
    # A child we do not own is shadowed first, so its children gain the
    # reference the discarded copy held.
    while node.level and len(node.keys) == 1:
        child = node.vals[0]
        ns.discard(node)
        peek = ns.get(child)
        if not (peek.level and len(peek.keys) == 1):
            return child, old
        node = ns.writable(child)
    if not node.keys:
        ns.discard(node)
        return 0, old
    return node.id, old


def _merge_with_sibling(ns: NodeStore, parent: Node, i: int) -> None:
    """Merge child i with a neighbour when both fit in one node."""
    j = i + 1 if i + 1 < len(parent.keys) else i - 1
    a, b = (i, j) if i < j else (j, i)
    left_id, right_id = parent.vals[a], parent.vals[b]
    left_peek, right_peek = ns.get(left_id), ns.get(right_id)
    if left_peek.nbytes + right_peek.nbytes - 8 > node_limit(left_peek.level):
        return
    left = ns.writable(left_id)
    right = ns.writable(right_id)
    left.keys.extend(right.keys)
    left.vals.extend(right.vals)
    left.recount()
    ns.discard(right)          # its entries (and their references) now live in left
    parent.vals[a] = left.id
    del parent.keys[b]
    del parent.vals[b]


def delete_range(ns: NodeStore, root: int, lo: bytes, hi: bytes | None) -> int:
    """Remove every key in [lo, hi); returns the new root.  O(k log n) for k keys."""
    keys = [bytes(k) for k, _ in iterate(ns, root, lo, hi)]
    for k in keys:
        root, _ = delete(ns, root, k)
    return root


def put_many(ns: NodeStore, root: int, items) -> int:
    """Insert many (key, value) pairs; sorted input keeps the touched path hot."""
    for k, v in items:
        root = insert(ns, root, k, v)
    return root
