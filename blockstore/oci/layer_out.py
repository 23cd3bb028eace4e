"""Export a tree as a tar: the whole tree, or the OCI layer between two trees.

Reproducible: entries sorted by path (parents first), PAX format, numeric
owners only (no user/group names), no atime/ctime, mtime exact to the ns
(a PAX ``mtime`` record only when it has a fraction), xattrs as
``SCHILY.xattr.*``; hard links: the first path in sorted order carries the
content, the others are type-1 links to it.  The root directory is the
entry ``./``.  Holes are written as zeros (tar has no portable holes).

The layer (``write_diff``) comes from the engine's tree diff, so its cost
is proportional to the difference (subtrees both trees share are skipped
by node id), plus whole subtrees that appear at a new path (a renamed or
new directory must be spelled out in full in a tar layer).  Rules:

* an entry that disappears -> ``DIR/.wh.NAME`` (not below a directory that
  itself disappeared or moved: that one's whiteout covers it);
* a name that now refers to a different directory than before (a new
  inode) -> compared path by path with the old one (``fs.diff``), so only
  what differs is written, as for the same directory (the applier merges a
  directory over a directory); no opaque marker is needed;
* an inode whose attributes, content or xattrs changed as a user sees them
  (``fs.diff.visible``: not ctimes, not block pointers of equal bytes) -> an
  entry for it at every path it has (directories: the header only, which
  merges);
* a hard-linked file in the layer is written at all its paths, so the link
  group survives the applier's replacement of the changed path.

Names that are OCI markers: a tree entry whose name starts with ``.wh.``
cannot be written into a tar (an importer would take it for a whiteout and
delete instead of create); the export is refused, naming the path, before
anything is written (``check_names``: one pass over the names it would
write).

Everything is read in one read transaction (a consistent view; the blocks
it reaches are not reused while the export runs).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import stat as S
import tarfile
import time

from .. import catalog
from ..api.hostout import replace_file
from ..errors import InvalidInput
from ..btree.store import NodeStore
from ..fs import diff as fsdiff
from ..fs import items as I
from ..fs.tree import FsTree

CHUNK = 1 << 20
ENTRY, WHITEOUT = 0, 1
WH = b".wh."
_MAX_DEPTH = 1 << 20              # a parent chain longer than this is a loop


class _HashWriter:
    def __init__(self, out):
        self.out = out
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, b) -> int:
        self.h.update(b)
        self.n += len(b)
        return self.out.write(b)

    def digest(self) -> str:
        return "sha256:" + self.h.hexdigest()


class _Content:
    """A file's bytes as a reader (holes read as zeros)."""

    def __init__(self, fst: FsTree, node):
        self.fst, self.node, self.pos = fst, node, 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.node.size - self.pos
        b = self.fst.read(self.node, self.pos, min(n, CHUNK * 4))
        self.pos += len(b)
        return b


def _ns_str(ns: int) -> str:
    s, frac = divmod(ns, 1_000_000_000)
    return f"{s}.{frac:09d}".rstrip("0")


def _tarinfo(fst: FsTree, node, parts: tuple) -> tarfile.TarInfo:
    name = os.fsdecode(b"/".join(parts)) if parts else "."
    ti = tarfile.TarInfo(name)
    ti.mode = S.S_IMODE(node.mode)
    ti.uid, ti.gid = node.uid, node.gid
    ti.uname = ti.gname = ""
    ti.mtime = node.mtime // 1_000_000_000
    pax = {}
    if node.mtime % 1_000_000_000:
        pax["mtime"] = _ns_str(node.mtime)
    for k in sorted(fst.listxattr(node.ino)):
        pax["SCHILY.xattr." + k.decode("utf-8", "surrogateescape")] = \
            fst.getxattr(node.ino, k).decode("utf-8", "surrogateescape")
    ti.pax_headers = pax
    fmt = S.S_IFMT(node.mode)
    if fmt == S.S_IFDIR:
        ti.type = tarfile.DIRTYPE
    elif fmt == S.S_IFLNK:
        ti.type = tarfile.SYMTYPE
        ti.linkname = os.fsdecode(fst.readlink(node.ino))
    elif fmt == S.S_IFREG:
        ti.type = tarfile.REGTYPE
        ti.size = node.size
    elif fmt in (S.S_IFCHR, S.S_IFBLK):
        ti.type = tarfile.CHRTYPE if fmt == S.S_IFCHR else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(node.rdev), os.minor(node.rdev)
    elif fmt == S.S_IFIFO:
        ti.type = tarfile.FIFOTYPE
    else:
        ti.type = None                         # sockets are not archived (as tar does)
    return ti


class _Writer:
    def __init__(self, fst: FsTree, out):
        self.fst = fst
        self.hw = _HashWriter(out)
        self.tf = tarfile.open(fileobj=self.hw, mode="w|", format=tarfile.PAX_FORMAT)
        self.tf.copybufsize = CHUNK
        self.first: dict[int, str] = {}

    def entry(self, parts: tuple, ino: int) -> None:
        node = self.fst.inode(ino)
        ti = _tarinfo(self.fst, node, parts)
        if ti.type is None:
            return
        if not node.is_dir and node.nlink > 1:
            if ino in self.first:
                ti.type, ti.linkname, ti.size = tarfile.LNKTYPE, self.first[ino], 0
                ti.pax_headers = {}
                self.tf.addfile(ti)
                return
            self.first[ino] = ti.name
        self.tf.addfile(ti, _Content(self.fst, node) if ti.type == tarfile.REGTYPE else None)

    def marker(self, parts: tuple) -> None:
        ti = tarfile.TarInfo(os.fsdecode(b"/".join(parts)))
        ti.type, ti.mode, ti.uname, ti.gname = tarfile.REGTYPE, 0o644, "", ""
        self.tf.addfile(ti)

    def close(self) -> str:
        self.tf.close()
        return self.hw.digest()


def _open_out(out):
    """A context manager giving the binary file to write: ``out`` itself when it
    is a file object, else a temporary file renamed to the path on success
    (a symlink there is replaced, not followed; nothing is left on failure)."""
    if hasattr(out, "write"):
        return contextlib.nullcontext(out)
    return replace_file(out)


def _walk(fst: FsTree, ino: int, parts: tuple, emit) -> None:
    """Every entry below directory ino, sorted by name, parents first (an explicit
    stack of sorted listings: any depth)."""
    stack = [(parts, _sorted_children(fst, ino))]
    while stack:
        base, children = stack[-1]
        if not children:
            stack.pop()
            continue
        name, child, dtype = children.pop()
        p = base + (name,)
        emit(p, child)
        if dtype == S.S_IFDIR >> 12:
            stack.append((p, _sorted_children(fst, child)))


def _sorted_children(fst: FsTree, ino: int) -> list:
    """(name, ino, dtype) of a directory, sorted by name descending (pop() gives the first)."""
    return sorted(((n, c, d) for _, n, c, d in fst.readdir(ino)), reverse=True)


def check_name(tree: str, parts: tuple) -> None:
    """Refuse an entry whose name is an OCI marker (``.wh.`` prefix)."""
    if parts and parts[-1].startswith(WH):
        from .safety import show
        raise InvalidInput(f"cannot export {tree!r} as a tar: {show(b'/' + b'/'.join(parts))} "
                           "has a name starting with '.wh.', which OCI layers reserve for "
                           "whiteouts (an import would delete it); rename it first")


def write_full(store, name: str, out) -> str:
    """The whole tree as a reproducible tar; returns its sha256 digest."""
    with store.env.read() as r:                     # refuse before creating out
        fst = FsTree(NodeStore.of(r), catalog.get(r, name).root, time.time_ns)
        _walk(fst, I.ROOT_INO, (), lambda p, ino: check_name(name, p))
    with _open_out(out) as f, store.env.read() as r:
        fst = FsTree(NodeStore.of(r), catalog.get(r, name).root, time.time_ns)
        w = _Writer(fst, f)
        w.entry((), I.ROOT_INO)
        _walk(fst, I.ROOT_INO, (), w.entry)
        return w.close()


class _Paths:
    """Cached path (tuple of names) of directories in one tree."""

    def __init__(self, fst: FsTree):
        self.fst, self.cache = fst, {I.ROOT_INO: ()}

    def of(self, ino: int):
        """The path of ino (None when it has none), by following first parent
        references up to a cached directory (a loop, not recursion: any depth)."""
        chain = []
        while ino not in self.cache:
            refs = self.fst.parents(ino) if self.fst.has_inode(ino) else []
            if not refs:
                self.cache[ino] = None
                break
            chain.append((ino, refs[0][1]))
            ino = refs[0][0]
            if len(chain) > _MAX_DEPTH:
                raise InvalidInput("directory ancestry is cyclic")
        base = self.cache[ino]
        for child, name in reversed(chain):
            base = None if base is None else base + (name,)
            self.cache[child] = base
        return base


def plan_diff(fa: FsTree, fb: FsTree, ns, ra: int, rb: int) -> dict:
    """{path: (kind, ino)} of the layer from tree a to tree b."""
    entries, modified = fsdiff.visible(fa, fb, fsdiff.delta(ns, ra, rb))
    deleted = [(da, db, name) for da, db, name, ca, cb in entries if cb is None]
    added = [(db, name, cb, ca) for da, db, name, ca, cb in entries if cb is not None]
    pa, pb = _Paths(fa), _Paths(fb)
    plan: dict[tuple, tuple[int, int]] = {}
    dirt = S.S_IFDIR >> 12

    def put_tree(path, ino, dtype):
        plan[path] = (ENTRY, ino)
        if dtype == dirt:
            _walk(fb, ino, path, lambda p, c: plan.__setitem__(p, (ENTRY, c)))

    # Shallowest first, and a subtree an ancestor's walk already spelled out is
    # not walked again: a new chain of N directories costs O(N), not O(N^2).
    paths = []
    for parent, name, cb, ca in added:
        base = pb.of(parent)
        if base is not None:
            paths.append((len(base), base + (name,), cb))
    paths.sort(key=lambda t: t[0])
    for _, path, cb in paths:
        if plan.get(path) != (ENTRY, cb[0]):
            put_tree(path, cb[0], cb[1])
    for dir_a, dir_b, name in deleted:
        base = pb.of(dir_b) if dir_b is not None else None
        if base is None or base != pa.of(dir_a):
            continue                         # parent gone or moved: covered there
        plan.setdefault(base + (WH + name,), (WHITEOUT, 0))
    for ino in modified:                     # inodes of b (fs.diff.visible)
        for parent, name in fb.parents(ino) if ino != I.ROOT_INO else [(0, b"")]:
            path = () if ino == I.ROOT_INO else pb.of(parent)
            if path is None:
                continue
            if ino != I.ROOT_INO:
                path = path + (name,)
            plan.setdefault(path, (ENTRY, ino))
    for path, (kind, ino) in list(plan.items()):
        if kind == ENTRY and ino != I.ROOT_INO:
            node = fb.inode(ino)
            if not node.is_dir and node.nlink > 1:
                for parent, name in fb.parents(ino):
                    base = pb.of(parent)
                    if base is not None:
                        plan.setdefault(base + (name,), (ENTRY, ino))
    return plan


def write_diff(store, parent: str, name: str, out) -> str:
    """The OCI layer that turns ``parent`` into ``name``; returns its sha256 digest."""
    with store.env.read() as r:
        ns = NodeStore.of(r)
        ra, rb = catalog.get(r, parent).root, catalog.get(r, name).root
        fa, fb = FsTree(ns, ra, time.time_ns), FsTree(ns, rb, time.time_ns)
        plan = plan_diff(fa, fb, ns, ra, rb)
        for path, (kind, _) in plan.items():        # refuse before creating out
            if kind == ENTRY:
                check_name(name, path)
        with _open_out(out) as f:
            w = _Writer(fb, f)
            for path in sorted(plan):
                kind, ino = plan[path]
                if kind == ENTRY:
                    w.entry(path, ino)
                else:
                    w.marker(path)
            return w.close()
