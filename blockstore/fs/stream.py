"""fs items as a stream of (key, payload, blocks) records (api/treestream.py
pushes and pulls snapshots so): which EXTENT items continue each other, and
how an extent's blocks placed in several pool runs become several EXTENTs.
"""
from __future__ import annotations

from . import items


def is_extent(k: bytes) -> bool:
    return len(k) >= 9 and k[8] == items.EXTENT


def continues_extent(prev: bytes, prev_blocks: int, k: bytes) -> bool:
    """Is ``k`` an EXTENT key of the same file starting where the EXTENT ``prev``
    (of ``prev_blocks`` blocks) ends?"""
    return is_extent(prev) and is_extent(k) and prev[:8] == k[:8] and \
        items.extent_fblock(prev) + prev_blocks == items.extent_fblock(k)


def extent_pieces(k: bytes, runs):
    """The EXTENT key of each of ``runs`` ((start, n), in file order) placing the
    blocks of the extent ``k``: (key, start, n), file blocks advancing by n."""
    ino, fb = items.split(k)[0], items.extent_fblock(k)
    for s, n in runs:
        yield items.extent_key(ino, fb), s, n
        fb += n
