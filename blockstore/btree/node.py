"""B+tree node: in-memory form and on-disk encoding.

A node is immutable once committed: it is stored in LMDB under a node id
that is never reused, so decoded nodes can be cached by id for the life of
the process.  Only nodes created by the current write transaction (dirty
and referenced once) are changed in place; see ``btree.store``.

Encoding (little-endian)::

    u8 kind (1 leaf, 2 internal) | u8 level | u16 count | u32 crc32 of the rest
    u16 offsets[2*count+1]       -- leaf: key/value boundaries; internal: key boundaries (count+1)
    bytes                        -- the concatenated keys (and values)
    u64 children[count]          -- internal nodes only

Leaves are level 0.  An internal node's key i is a lower bound of every key
in child i (key 0 of the leftmost spine is b"").  Decoding costs one
``struct.unpack_from`` and one list comprehension: no per-entry Python loop.
"""
from __future__ import annotations

import struct
import zlib

from ..errors import Corruption

LEAF = 1
INTERNAL = 2

HEADER = struct.Struct("<BBHI")

# A node must fit in one LMDB page (4080 bytes of value on a 4 KiB page).
MAX_NODE_BYTES = 4064
# Internal nodes are kept smaller: freeing or shadowing an internal node
# touches every child's refcount, so a small fan-out keeps the cost of
# deleting a clone that changed a few keys low (Rodeh's lazy refcounts), at
# the price of one more (cached) level on lookups.  Two maximal internal
# entries (MAX_KEY + 10 bytes each) still fit.
MAX_INTERNAL_BYTES = 1088


def node_limit(level: int) -> int:
    """Size limit of a node at this level (0 = leaf)."""
    return MAX_NODE_BYTES if level == 0 else MAX_INTERNAL_BYTES
# Entry limits guarantee that any split leaves two halves within MAX_NODE_BYTES
# and that a node holds at least three entries.
MAX_KEY = 512
MAX_VALUE = 1024


class Node:
    """A decoded node.  ``vals`` holds values (leaf) or child ids (internal)."""

    __slots__ = ("id", "level", "keys", "vals", "nbytes")

    def __init__(self, node_id: int, level: int, keys: list, vals: list):
        self.id = node_id
        self.level = level
        self.keys = keys
        self.vals = vals
        self.nbytes = encoded_size(level, keys, vals)

    @property
    def is_leaf(self) -> bool:
        return self.level == 0

    def copy(self, node_id: int) -> "Node":
        n = Node.__new__(Node)
        n.id, n.level, n.keys, n.vals, n.nbytes = (
            node_id, self.level, list(self.keys), list(self.vals), self.nbytes)
        return n

    def recount(self) -> None:
        self.nbytes = encoded_size(self.level, self.keys, self.vals)

    def __repr__(self) -> str:
        return f"Node(id={self.id}, level={self.level}, n={len(self.keys)}, bytes={self.nbytes})"


def entry_size(level: int, key: bytes, val) -> int:
    """Bytes one entry adds to its node."""
    if level == 0:
        return 4 + len(key) + len(val)
    return 2 + len(key) + 8


def encoded_size(level: int, keys: list, vals: list) -> int:
    n = len(keys)
    if level == 0:
        return HEADER.size + 2 * (2 * n + 1) + sum(map(len, keys)) + sum(map(len, vals))
    return HEADER.size + 2 * (n + 1) + sum(map(len, keys)) + 8 * n


def encode(node: Node) -> bytes:
    keys, vals, n = node.keys, node.vals, len(node.keys)
    if node.level == 0:
        parts = [None] * (2 * n)
        parts[0::2] = keys
        parts[1::2] = vals
    else:
        parts = keys
    offs = [0] * (len(parts) + 1)
    pos = 0
    for i, p in enumerate(parts):
        pos += len(p)
        offs[i + 1] = pos
    body = struct.pack(f"<{len(offs)}H", *offs) + b"".join(parts)
    if node.level:
        body += struct.pack(f"<{n}Q", *vals)
    kind = LEAF if node.level == 0 else INTERNAL
    head = struct.pack("<BBH", kind, node.level, n)
    return head + struct.pack("<I", zlib.crc32(body, zlib.crc32(head))) + body


def decode(node_id: int, raw) -> Node:
    """Decode and verify; a bad checksum or shape raises Corruption naming the node."""
    raw = bytes(raw)
    if len(raw) < HEADER.size:
        raise Corruption(f"B-tree node {node_id} is truncated ({len(raw)} bytes)")
    kind, level, n, crc = HEADER.unpack_from(raw)
    if zlib.crc32(raw[8:], zlib.crc32(raw[:4])) != crc:
        raise Corruption(f"B-tree node {node_id} fails its checksum")
    try:
        if kind == LEAF and level == 0:
            m = 2 * n + 1
            offs = struct.unpack_from(f"<{m}H", raw, 8)
            base = 8 + 2 * m
            parts = [raw[base + offs[i]:base + offs[i + 1]] for i in range(2 * n)]
            keys, vals = parts[0::2], parts[1::2]
        elif kind == INTERNAL and level > 0:
            m = n + 1
            offs = struct.unpack_from(f"<{m}H", raw, 8)
            base = 8 + 2 * m
            keys = [raw[base + offs[i]:base + offs[i + 1]] for i in range(n)]
            vals = list(struct.unpack_from(f"<{n}Q", raw, base + offs[n]))
        else:
            raise Corruption(f"B-tree node {node_id} has bad kind {kind} at level {level}")
    except struct.error as exc:
        raise Corruption(f"B-tree node {node_id} is malformed: {exc}") from None
    node = Node.__new__(Node)
    node.id, node.level, node.keys, node.vals, node.nbytes = node_id, level, keys, vals, len(raw)
    return node
