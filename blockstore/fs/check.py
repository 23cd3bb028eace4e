"""The filesystem's invariants in one tree (docs/ARCHITECTURE.md §4), checked by
one ordered scan of its items:

* every directory entry names an existing inode of the type it records, and
  its DIR_INDEX and INODE_REF mirror it exactly;
* nlink of a non-directory equals the entries naming it (0 only while it is
  on the orphan list); a directory's nlink is 2 + its subdirectories;
* extents lie within the file's size, do not overlap, and an INLINE item is
  only present for a file of at most INLINE_MAX bytes without extents;
* the inode counter is above every inode number in use.

``paths_of_blocks`` names the files that own given pool blocks (for the
problems the catalog's check finds in blocks).  The store-wide check
(catalog, blocks, every tree) is ``api/fscheck.py``.
"""
from __future__ import annotations

import time

from ..btree import tree as bt
from ..btree import values
from . import items
from .items import Inode
from .tree import INLINE_MAX, FileTree


def paths_of_blocks(ns, root: int, blocks) -> dict[int, str]:
    """The path (or ``inode N (unlinked)``) of the file whose extent holds each
    of ``blocks`` in the tree at ``root``.  Cost: one scan of the tree's items."""
    want = set(blocks)
    out: dict[int, str] = {}
    fst = FileTree(ns, root, time.time_ns)
    for k, v in bt.iterate(ns, root):
        ino, typ, _ = items.split(k)
        if typ != items.EXTENT:
            continue
        run = values.refs(v)
        for b in want:
            if run and run[0] <= b < run[0] + run[1] and b not in out:
                path = fst.path_of(ino)
                out[b] = path.decode(errors="replace") if path else f"inode {ino} (unlinked)"
    return out


def check_tree(ns, root: int, add) -> None:
    """Check the filesystem invariants of the tree at ``root``; ``add(message)``
    is called once per problem.  Cost: one ordered scan of the tree, memory
    O(items of the tree's directories and inodes)."""
    inodes: dict[int, Inode] = {}
    dirents: dict[tuple[int, bytes], tuple[int, int, int]] = {}
    indexes: dict[tuple[int, int], tuple[int, int, bytes]] = {}
    refs: set[tuple[int, int, bytes]] = set()
    extents: dict[int, list[tuple[int, int]]] = {}
    inline: dict[int, int] = {}
    orphans: set[int] = set()
    next_ino = None
    for k, v in bt.iterate(ns, root):
        ino, typ, rest = items.split(k)
        p = values.payload(v)
        if ino == 0:
            if typ == items.SUPER:
                next_ino = items.unpack_super(p)[0]
            elif typ == items.ORPHAN:
                orphans.add(items.extent_fblock(k))
            continue
        if typ == items.INODE:
            inodes[ino] = Inode.unpack(ino, p)
        elif typ == items.DIRENT:
            dirents[(ino, rest)] = items.parse_dirent(p)
        elif typ == items.DIR_INDEX:
            indexes[(ino, items.extent_fblock(k))] = items.parse_index(p)
        elif typ == items.INODE_REF:
            parent, name = items.parse_ref(rest)
            refs.add((ino, parent, name))
        elif typ == items.EXTENT:
            s_n = values.refs(v)
            extents.setdefault(ino, []).append((items.extent_fblock(k), s_n[1] if s_n else 0))
        elif typ == items.INLINE:
            inline[ino] = len(p)
    fst = FileTree(ns, root, time.time_ns)

    def where(ino):
        try:
            p = fst.path_of(ino)
            return p.decode(errors="replace") if p else f"inode {ino}"
        except Exception:
            return f"inode {ino}"

    if next_ino is None:
        add("the tree has no inode counter (SUPER item)")
    if items.ROOT_INO not in inodes:
        add("the root directory inode is missing")
    names = {}
    subdirs = {}
    for (parent, name), (child, dtype, idx) in dirents.items():
        if child not in inodes:
            add(f"entry {name!r} in {where(parent)} names missing inode {child}")
            continue
        if items.dtype_of(inodes[child].mode) != dtype:
            add(f"entry {name!r} in {where(parent)} records the wrong type")
        if indexes.get((parent, idx)) != (child, dtype, name):
            add(f"entry {name!r} in {where(parent)} has no matching index item")
        if (child, parent, name) not in refs:
            add(f"entry {name!r} in {where(parent)} has no back-reference")
        names[child] = names.get(child, 0) + 1
        if inodes[child].is_dir:
            subdirs[parent] = subdirs.get(parent, 0) + 1
    for (parent, idx), (child, dtype, name) in indexes.items():
        if dirents.get((parent, name), (None, None, None))[2] != idx:
            add(f"index item {idx} of {where(parent)} has no matching entry")
    for child, parent, name in refs:
        if dirents.get((parent, name), (None,))[0] != child:
            add(f"back-reference of inode {child} to {name!r} has no matching entry")
    for ino, node in inodes.items():
        if next_ino is not None and ino >= next_ino:
            add(f"inode {ino} is not below the inode counter {next_ino}")
        if node.is_dir:
            want = 2 + subdirs.get(ino, 0)
            if node.nlink != want:
                add(f"directory {where(ino)} has nlink {node.nlink}, expected {want}")
        else:
            want = names.get(ino, 0)
            if node.nlink != want:
                add(f"{where(ino)} has nlink {node.nlink}, but {want} entries name it")
            if want == 0 and ino not in orphans:
                add(f"inode {ino} has no name and is not on the orphan list")
        if ino != items.ROOT_INO and names.get(ino, 0) == 0 and ino not in orphans:
            if node.is_dir:
                add(f"directory inode {ino} is unreachable")
        ext = sorted(extents.get(ino, []))
        bs = ns.txn.blocks.block_size
        for (a, n), (b, _) in zip(ext, ext[1:]):
            if a + n > b:
                add(f"{where(ino)} has overlapping extents at file blocks {a} and {b}")
        if ext and (ext[-1][0] + ext[-1][1] - 1) * bs >= max(node.size, 1):
            add(f"{where(ino)} has an extent beyond its size {node.size}")
        if ino in inline and (ext or node.size > INLINE_MAX or inline[ino] < node.size):
            add(f"{where(ino)} has an inline item that does not fit its size or extents")
    for ino in set(extents) | set(inline):
        if ino not in inodes:
            add(f"data items of missing inode {ino}")
