"""A tree's source blob: the bytes a tree was made from, kept beside its files.

An image layer imported from a blob (a compressed layer tar) keeps that
blob, so it can be written out again byte for byte (same digest) without
being regenerated from the files.  The blob lives in the tree's own B-tree
under inode 0, invisible to paths, diffs and layers:

    SOURCE_META (0, 0x12)              -> meta bytes (the caller's description)
    SOURCE_DATA (0, 0x13, u64 block)   -> blockref(start, n)  blob blocks [block, block+n)

The last block is zero-padded (the meta records the length); zero blocks
are holes, as in files.  Blocks are owned like file extents: a snapshot
shares them with its copies and they are freed with the last tree holding
them.  A copy of the tree carries the blob until ``drop`` removes it (the
API drops it from every clone: a container is not the layer it started
from, and must not keep the blob once the image is removed).  Costs: ``write`` as a file write of the
same bytes; ``read`` one range scan plus the pool reads; ``drop`` one
delete per run.
"""
from __future__ import annotations

import struct

from ..btree import values
from ..pool import HOLE
from . import items
from .tree import FileTree

_U64 = struct.Struct(">Q")


def _data_key(block: int) -> bytes:
    return items.key(0, items.SOURCE_DATA, _U64.pack(block))


def meta(fst: FileTree) -> bytes | None:
    v = fst.get_item(items.key(0, items.SOURCE_META))
    return None if v is None else values.payload(v)


def put_meta(fst: FileTree, data: bytes) -> None:
    fst.put_item(items.key(0, items.SOURCE_META), bytes(data))


def write(fst: FileTree, block: int, data) -> None:
    """Store ``data`` at blob block ``block`` (a whole number of blocks, except
    the last piece, which is zero-padded).  Pieces go in order, each once."""
    bs = fst.bs
    if len(data) % bs:
        data = bytes(data) + bytes(bs - len(data) % bs)
    for start, n in fst.blocks.write(data, owned=isinstance(data, bytes)):
        if start != HOLE:
            fst.put_value(_data_key(block), values.blockref(start, n))
        block += n


def read(fst: FileTree, size: int, chunk: int = 1 << 20):
    """Yield the blob's first ``size`` bytes in pieces of about ``chunk`` bytes."""
    bs = fst.bs
    lo, hi = items.prefix_range(0, items.SOURCE_DATA)
    pos = 0
    for k, v in fst.item_range(lo, hi):
        block = _U64.unpack_from(k, 9)[0]
        start, n = values.refs(v)
        while pos < block * bs and pos < size:           # a hole: zero blocks
            m = min(chunk, block * bs - pos, size - pos)
            yield bytes(m)
            pos += m
        step = max(1, chunk // bs)
        for i in range(0, n, step):
            if pos >= size:
                return
            k_ = min(step, n - i)
            b = fst.blocks.read(start + i, k_)
            b = b[:size - pos]
            yield b
            pos += len(b)
    while pos < size:
        m = min(chunk, size - pos)
        yield bytes(m)
        pos += m


def drop(fst: FileTree) -> None:
    """Remove the source blob (its blocks are released with the last tree holding them)."""
    lo, hi = items.prefix_range(0, items.SOURCE_DATA)
    for k in [k for k, _ in fst.item_range(lo, hi)]:
        fst.delete_item(bytes(k))
    if meta(fst) is not None:
        fst.delete_item(items.key(0, items.SOURCE_META))


def detach_copy(fst: FileTree, clone: bool) -> bool:
    """Make a fresh copy of a tree its own: free the inodes that only a handle on
    the source kept alive (unlinked while open), and for a clone forget the
    source blob (a working copy of a layer is not that layer, and would keep
    the blob alive after the image is removed).  Returns whether anything
    changed.  Cost: one or two lookups when there is nothing to drop."""
    orphans = fst.orphans()
    for ino in orphans:
        fst.release_orphan(ino)
    if clone and meta(fst) is not None:
        drop(fst)
        return True
    return bool(orphans)
