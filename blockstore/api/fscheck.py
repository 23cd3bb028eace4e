"""Store check: the engine's invariants plus the filesystem's, per tree.

Filesystem invariants (docs/ARCHITECTURE.md §4), checked by one ordered scan of each
distinct root (trees sharing a root are checked once):

* every directory entry names an existing inode of the type it records, and
  its DIR_INDEX and INODE_REF mirror it exactly;
* nlink of a non-directory equals the entries naming it (0 only while it is
  on the orphan list); a directory's nlink is 2 + its subdirectories;
* extents lie within the file's size, do not overlap, and an INLINE item is
  only present for a file of at most INLINE_MAX bytes without extents;
* the inode counter is above every inode number in use.

Working clones of imports whose process is gone are reported as findings
(``report.findings``, not problems: the store is sound, they only hold space
and keep their parent from being removed; see staging.py).

Problems name the tree and, where it can be found, the path.
"""
from __future__ import annotations

import time

from .. import catalog
from ..btree import tree as bt
from ..btree import values
from ..btree.store import NodeStore
from ..catalog import CheckReport, check as engine_check
from ..fs import items as I
from ..fs.items import Inode
from ..fs.tree import INLINE_MAX, FileTree
from .staging import LABEL as STAGING_LABEL, leftovers


def check_store(store, repair: bool = False, scrub: bool = False) -> CheckReport:
    report = engine_check(store.env, repair=repair, scrub=scrub)
    with store.env.read() as r:
        ns = NodeStore.of(r)
        seen: dict[int, str] = {}
        for rec in catalog.records(r):
            if rec.root in seen or not rec.root:
                continue
            if rec.labels.get(STAGING_LABEL):
                continue    # an unfinished import: a bulk import commits partial trees
                            # (the engine check above covers its nodes and blocks)
            seen[rec.root] = rec.name
            if not report.ok and any(p.kind == "node-damaged" and p.tree == rec.name
                                     for p in report.problems):
                continue
            try:
                _check_tree(ns, rec, report)
            except Exception as exc:        # a damaged tree must not stop the check
                report.add("fs", f"cannot scan the tree: {exc}", rec.name, repairable=False)
        _name_damaged_files(r, ns, report)
        for name, why, removable in leftovers(r):
            report.note("staging-left", f"working clone of an unfinished import: {why}; "
                        + ("`blockstore gc` removes it" if removable
                           else "remove it with `blockstore rm` once that import is over"),
                        name, repairable=removable)
    return report


def _name_damaged_files(r, ns, report) -> None:
    """Fill in the file path of problems that name a pool block and a tree.
    Cost: one scan of the extents of each such tree."""
    wanted: dict[str, list] = {}
    for p in report.problems:
        if p.block is not None and p.tree is not None and p.path is None:
            wanted.setdefault(p.tree, []).append(p)
    for tree, probs in wanted.items():
        try:
            rec = catalog.get(r, tree)
        except Exception:
            continue
        fst = FileTree(ns, rec.root, time.time_ns)
        for k, v in bt.iterate(ns, rec.root):
            ino, typ, _ = I.split(k)
            if typ != I.EXTENT:
                continue
            run = values.refs(v)
            for p in probs:
                if run and run[0] <= p.block < run[0] + run[1] and p.path is None:
                    path = fst.path_of(ino)
                    p.path = path.decode(errors="replace") if path else f"inode {ino} (unlinked)"


def _check_tree(ns, rec, report) -> None:
    inodes: dict[int, Inode] = {}
    dirents: dict[tuple[int, bytes], tuple[int, int, int]] = {}
    indexes: dict[tuple[int, int], tuple[int, int, bytes]] = {}
    refs: set[tuple[int, int, bytes]] = set()
    extents: dict[int, list[tuple[int, int]]] = {}
    inline: dict[int, int] = {}
    orphans: set[int] = set()
    next_ino = None
    for k, v in bt.iterate(ns, rec.root):
        ino, typ, rest = I.split(k)
        p = values.payload(v)
        if ino == 0:
            if typ == I.SUPER:
                next_ino = I.unpack_super(p)[0]
            elif typ == I.ORPHAN:
                orphans.add(I.extent_fblock(k))
            continue
        if typ == I.INODE:
            inodes[ino] = Inode.unpack(ino, p)
        elif typ == I.DIRENT:
            dirents[(ino, rest)] = I.parse_dirent(p)
        elif typ == I.DIR_INDEX:
            indexes[(ino, I.extent_fblock(k))] = I.parse_index(p)
        elif typ == I.INODE_REF:
            parent, name = I.parse_ref(rest)
            refs.add((ino, parent, name))
        elif typ == I.EXTENT:
            s_n = values.refs(v)
            extents.setdefault(ino, []).append((I.extent_fblock(k), s_n[1] if s_n else 0))
        elif typ == I.INLINE:
            inline[ino] = len(p)
    fst = FileTree(ns, rec.root, time.time_ns)

    def where(ino):
        try:
            p = fst.path_of(ino)
            return p.decode(errors="replace") if p else f"inode {ino}"
        except Exception:
            return f"inode {ino}"

    add = lambda msg: report.add("fs", msg, rec.name, repairable=False)  # noqa: E731
    if next_ino is None:
        add("the tree has no inode counter (SUPER item)")
    if I.ROOT_INO not in inodes:
        add("the root directory inode is missing")
    names = {}
    subdirs = {}
    for (parent, name), (child, dtype, idx) in dirents.items():
        if child not in inodes:
            add(f"entry {name!r} in {where(parent)} names missing inode {child}")
            continue
        if I.dtype_of(inodes[child].mode) != dtype:
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
        if ino != I.ROOT_INO and names.get(ino, 0) == 0 and ino not in orphans:
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
