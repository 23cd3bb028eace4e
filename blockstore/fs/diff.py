"""What differs between two trees, item by item, and which of it a user can see.

One pass over the engine's tree diff (``btree.diff``: subtrees both trees
share are skipped by node id, so the cost is O(difference x depth)) sorts
the differing items of the file system layout (``items``) into a ``Delta``:
directory entries that appear, disappear or point elsewhere; inodes whose
record, content (EXTENT / INLINE) or xattrs differ.  That raw delta is what
a cache must drop (``api.treewatch``); what a user sees as a change
(``api.diff``, exported diff layers) is narrower, decided by ``visible``:

* attributes: type and mode, owner, link count, size, mtime, device
  number -- not atime or ctime (copies and tar do not carry them), not the
  directory's next index, not the inode generation;
* content: equal when the file blocks map to the same pool blocks, else
  when every block's checksum (``pool.sums``, recorded at write time) is
  equal, else (a block without a recorded checksum, a hole against a
  block, an inline item) by the bytes.  Two trees written separately with equal bytes are equal;
* xattrs: the same names with the same values (values stored in blocks are
  read and compared);
* identity: items are keyed by inode number, which only names the same file
  on both sides where the numbering agrees.  A directory that has other
  inode numbers at one path (the trees were written by different importers,
  or it was replaced by a new one) is compared path by path below it
  (``_Walk``, O(its entries)); elsewhere an inode counts as the same file
  when both sides link it at the same (directory, name).

Checksum equality is taken as content equality.  With the ``sha256``
checksum that is collision-resistant; with ``xxh3-128`` (the default
without dedup) a collision would need content crafted for it.
Cost of ``visible``: per inode in the delta, O(its extents / CHUNK) checksum
lookups; bytes are read only for blocks without a checksum and inline data.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..btree import values
from ..btree.diff import diff as tree_diff
from ..btree.store import NodeStore
from . import items
from .tree import FileTree

COMPARE_CHUNK = 1024                # blocks per checksum lookup / read when comparing


@dataclass
class Delta:
    """Raw differences: every item that is not identical in both trees."""
    entries: list = field(default_factory=list)   # (dir, name, (ino, dtype) | None in a, in b)
    attrs: set[int] = field(default_factory=set)  # INODE record differs, appears or goes
    data: set[int] = field(default_factory=set)   # EXTENT / INLINE items differ
    xattrs: set[int] = field(default_factory=set)  # XATTR items differ

    def inodes(self) -> set[int]:
        return self.attrs | self.data | self.xattrs


def delta(ns_a: NodeStore, root_a: int, root_b: int, ns_b: NodeStore | None = None) -> Delta:
    """Classify every differing item of trees a and b (``ns_b`` as in btree.diff)."""
    out = Delta()
    for k, va, vb in tree_diff(ns_a, root_a, root_b, ns_b):
        ino, typ, rest = items.split(k)
        if ino == 0:
            continue                               # counters, orphan list, source blob
        if typ == items.DIRENT:
            ca = items.parse_dirent(values.payload(va))[:2] if va is not None else None
            cb = items.parse_dirent(values.payload(vb))[:2] if vb is not None else None
            if ca != cb:
                out.entries.append((ino, bytes(rest), ca, cb))
        elif typ == items.INODE:
            out.attrs.add(ino)
        elif typ in (items.EXTENT, items.INLINE):
            out.data.add(ino)
        elif typ == items.XATTR:
            out.xattrs.add(ino)
    return out


def differs(ns: NodeStore, root_a: int, root_b: int) -> bool:
    """Do the trees differ in anything but inode 0 (counters, orphans, source blob)?
    Stops at the first such item."""
    if root_a == root_b:
        return False
    return any(items.split(k)[0] != 0 for k, _, _ in tree_diff(ns, root_a, root_b))


def visible_attrs(node: items.Inode) -> tuple:
    """The attributes whose change a user sees (see the module docstring)."""
    return (node.mode, node.uid, node.gid, node.nlink, node.size, node.mtime, node.rdev)


def _blocks(fst: FileTree, ino: int, lo: int, hi: int) -> list:
    """Per file block of [lo, hi): the pool block, or None for a hole."""
    out = [None] * (hi - lo)
    for fb, s, n in fst.extents_in(ino, lo, hi):
        for b in range(max(fb, lo), min(fb + n, hi)):
            out[b - lo] = s + (b - fb)
    return out


def same_content(fa: FileTree, ia: int, fb: FileTree, ib: int) -> bool:
    """Do inodes ia (in fa) and ib (in fb) hold the same bytes?  Both trees are
    read in one store (one pool, one checksum algorithm)."""
    na, nb = fa.inode(ia), fb.inode(ib)
    if na.size != nb.size:
        return False
    inl_a, inl_b = fa.inline(ia), fb.inline(ib)
    if inl_a is not None or inl_b is not None:
        return fa.read(na, 0, na.size) == fb.read(nb, 0, nb.size)
    bs = fa.bs
    nblocks = -(-na.size // bs)
    for lo in range(0, nblocks, COMPARE_CHUNK):
        hi = min(nblocks, lo + COMPARE_CHUNK)
        xa, xb = _blocks(fa, ia, lo, hi), _blocks(fb, ib, lo, hi)
        if xa == xb:
            continue                              # same pool blocks (or both holes)
        da, db = _digests(fa, xa), _digests(fb, xb)
        for i, (pa, pb) in enumerate(zip(xa, xb)):
            if pa == pb:
                continue
            if pa is not None and pb is not None and da[i] is not None and db[i] is not None:
                if da[i] != db[i]:
                    return False
                continue
            # a hole against a block (zero blocks are not stored, so they differ unless
            # written by a path that keeps them) or no checksum kept: the bytes decide
            off = (lo + i) * bs
            if fa.read(na, off, bs) != fb.read(nb, off, bs):
                return False
    return True


def _digests(fst: FileTree, blocks: list) -> list:
    """Checksum of each pool block in ``blocks`` (None for holes and blocks without
    one), one range lookup per run of consecutive blocks."""
    out = [None] * len(blocks)
    i = 0
    while i < len(blocks):
        if blocks[i] is None:
            i += 1
            continue
        j = i + 1
        while j < len(blocks) and blocks[j] is not None and blocks[j] == blocks[j - 1] + 1:
            j += 1
        out[i:j] = fst.blocks.digests(blocks[i], j - i)
        i = j
    return out


def same_xattrs(fa: FileTree, ia: int, fb: FileTree, ib: int) -> bool:
    names = fa.listxattr(ia)
    if names != fb.listxattr(ib):
        return False
    return all(fa.getxattr(ia, k) == fb.getxattr(ib, k) for k in names)


def same_inode(fa: FileTree, ia: int, fb: FileTree, ib: int, d: Delta | None = None) -> bool:
    """Is inode ia of fa, as a user sees it (not its entries), equal to ib of fb?
    With ``d`` (and ia == ib) only the kinds of items the delta names are compared."""
    known = d is not None and ia == ib
    if not known or ia in d.attrs:
        if visible_attrs(fa.inode(ia)) != visible_attrs(fb.inode(ib)):
            return False
    if (not known or ia in d.data) and not fa.inode(ia).is_dir:
        if not same_content(fa, ia, fb, ib):
            return False
    if not known or ia in d.xattrs:
        if not same_xattrs(fa, ia, fb, ib):
            return False
    return True


DT_DIR = items.dtype_of(0o040000)


class _Walk:
    """Path-by-path comparison of directories that have other inode numbers on the
    two sides (the same path, written by different importers, or a directory
    replaced by a new one).  Inode-keyed items cannot be matched there, so both
    directories are read and their children paired by name.  ``seen_a`` /
    ``seen_b``: the inodes of the directories walked, on each side, whose items
    in the delta are then ignored.  Cost: O(entries below the pair)."""

    def __init__(self, fa: FileTree, fb: FileTree, entries: list, modified: set):
        self.fa, self.fb = fa, fb
        self.entries, self.modified = entries, modified
        self.seen_a: set[int] = set()
        self.seen_b: set[int] = set()

    def _mark(self, f: FileTree, ino: int, seen: set) -> None:
        stack = [ino]
        while stack:
            d = stack.pop()
            seen.add(d)
            stack.extend(c for _, _, c, t in f.readdir(d) if t == DT_DIR)

    def added_tree(self, dir_b: int) -> None:
        """Every entry below a directory only b has, as added entries."""
        stack = [dir_b]
        while stack:
            d = stack.pop()
            self.seen_b.add(d)
            for _, name, c, t in self.fb.readdir(d):
                self.entries.append((None, d, name, None, (c, t)))
                if t == DT_DIR:
                    stack.append(c)

    def pair(self, ia: int, ib: int) -> None:
        fa, fb = self.fa, self.fb
        stack = [(ia, ib)]
        while stack:
            da, db = stack.pop()
            self.seen_a.add(da)
            self.seen_b.add(db)
            if not same_inode(fa, da, fb, db):
                self.modified.add(db)
            ka = {n: (c, t) for _, n, c, t in fa.readdir(da)}
            kb = {n: (c, t) for _, n, c, t in fb.readdir(db)}
            for name in sorted(ka.keys() | kb.keys()):
                ca, cb = ka.get(name), kb.get(name)
                if ca is not None and cb is not None:
                    if ca[1] == cb[1] == DT_DIR:
                        stack.append((ca[0], cb[0]))
                        continue
                    if ca[1] == cb[1] and same_inode(fa, ca[0], fb, cb[0]):
                        continue
                self.entries.append((da, db, name, ca, cb))
                if ca is not None and ca[1] == DT_DIR:
                    self._mark(fa, ca[0], self.seen_a)
                if cb is not None and cb[1] == DT_DIR:
                    self.added_tree(cb[0])


def visible(fa: FileTree, fb: FileTree, d: Delta) -> tuple[list, set[int]]:
    """(entries, inodes) of ``d`` that a user sees change.

    entries: (dir in a, dir in b, name, (ino, dtype) | None in a, in b) -- one
    directory inode for both sides, except below directories that have other
    inode numbers on the two sides (compared path by path, see ``_Walk``; an
    entry only one side has then names None for the other side's directory).
    An entry whose old and new targets are equal non-directories is left out.
    inodes: inodes of b whose attributes, content or xattrs differ from the
    same file in a -- the same inode number with a link (parent, name) on both
    sides, or the same path below a renumbered directory."""
    entries: list = []
    inodes: set[int] = set()
    walk = _Walk(fa, fb, entries, inodes)
    renumbered = [(ca[0], cb[0]) for _, _, ca, cb in d.entries
                  if ca is not None and cb is not None and ca[0] != cb[0]
                  and ca[1] == cb[1] == DT_DIR]
    # outer directories first, so a walk covers the renumbered directories below it
    depth = {ib: (fb.path_of(ib) or b"").count(b"/") for _, ib in renumbered}
    for ia, ib in sorted(renumbered, key=lambda p: depth[p[1]]):
        if ia not in walk.seen_a and ib not in walk.seen_b:
            walk.pair(ia, ib)
    for dir_, name, ca, cb in d.entries:
        if dir_ in walk.seen_a or dir_ in walk.seen_b:
            continue
        if ca is not None and cb is not None and ca[1] == cb[1]:
            if ca[1] == DT_DIR and ca[0] != cb[0]:
                continue                               # walked
            if (ca[1] != DT_DIR and fa.has_inode(ca[0]) and fb.has_inode(cb[0])
                    and same_inode(fa, ca[0], fb, cb[0])):
                continue
        entries.append((dir_, dir_, name, ca, cb))
    for ino in d.inodes():
        if ino in walk.seen_a or ino in walk.seen_b or ino in inodes:
            continue
        if not (fa.has_inode(ino) and fb.has_inode(ino)):
            continue
        if ino != items.ROOT_INO:
            # the same file on both sides: a link (directory, name) both have, outside
            # the renumbered directories (those compare by path); else its entries tell
            common = set(fa.parents(ino)) & set(fb.parents(ino))
            if not any(p not in walk.seen_a and p not in walk.seen_b for p, _ in common):
                continue
        if not same_inode(fa, ino, fb, ino, d):
            inodes.add(ino)
    return entries, inodes
