"""Leaf values and the pool blocks they reference.

Every leaf value starts with a tag byte, so the engine (shadowing, delete,
check, usage) knows which values own pool blocks without knowing what the
layers above store in them:

    0x00 payload                        -- plain bytes, no blocks
    0x01 u64 start | u32 n | payload    -- owns one reference to blocks [start, start+n)

Shadowing a shared leaf increments the block references of all its values;
freeing a leaf decrements them (dm-persistent-data's value-type inc/dec).
"""
from __future__ import annotations

import struct

PLAIN = 0
BLOCKS = 1
_REF = struct.Struct("<QI")


def plain(payload: bytes) -> bytes:
    return b"\x00" + payload


def blockref(start: int, n: int, payload: bytes = b"") -> bytes:
    return b"\x01" + _REF.pack(start, n) + payload


def refs(value) -> tuple[int, int] | None:
    """The block run a value owns, or None."""
    if value[0] == BLOCKS:
        return _REF.unpack_from(value, 1)
    return None


def runs(vals) -> list[tuple[int, int]]:
    """The block runs of every value in ``vals`` that owns one (a leaf's values).
    One comprehension over the tag bytes: freeing or shadowing a leaf of plain
    values costs no Python call per value."""
    unpack = _REF.unpack_from
    return [unpack(v, 1) for v in vals if v[0] == BLOCKS]


def payload(value) -> bytes:
    return bytes(value[13:]) if value[0] == BLOCKS else bytes(value[1:])
