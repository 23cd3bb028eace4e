"""What ``du`` counts in a tree's items: its files and their logical bytes.

A file is a regular file or a symlink (one INODE item each); its logical
bytes are its size.  Cost: one length and byte test per item, one Inode
decode per INODE item.
"""
from __future__ import annotations

from ..btree import values
from .items import INODE, Inode


def file_totals(keys, vals) -> tuple[int, int]:
    """(files, logical bytes) of the items ``keys``/``vals`` (a leaf's, B-tree values)."""
    files = logical = 0
    for k, v in zip(keys, vals):
        if len(k) == 9 and k[8] == INODE:
            ino = Inode.unpack(0, values.payload(v))
            if ino.is_reg or ino.is_lnk:
                logical += ino.size
                files += 1
    return files, logical
