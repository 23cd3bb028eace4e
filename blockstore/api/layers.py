"""The storage side of image layers, for the OCI interface (``blockstore/oci/``).

The interface parses and checks tars (the OCI rules, hostile input); what
touches a tree is here, so it never opens a transaction nor sees the
catalog, the B-tree or the fs items:

* ``LayerWriter``: a layer's entries written into the working clone of a
  ``Store.staging`` import, by inode and name (nothing here follows a
  symlink: path resolution is the caller's), with chunked commits between
  entries (``staging.COMMIT_BYTES`` / ``COMMIT_ITEMS``).
* ``SourceWriter``: a layer's source blob kept beside the clone's files
  (``fs/source.py``), written a block multiple at a time.
* ``reading`` / ``reading_diff``: one read transaction on a tree, or the
  plan of the layer between two trees (proportional to their difference:
  ``fs/diff.py`` skips shared subtrees), for a tar export.
* ``adding_layers``: which snapshots of a lineage change the files.
"""
from __future__ import annotations

import contextlib
import stat
import time

from .. import catalog
from ..btree.store import NodeStore
from ..errors import InvalidInput
from ..fs import diff as fsdiff
from ..fs import source
from ..fs.tree import ROOT_INO, FileTree
from . import staging

ROOT = ROOT_INO
DT_DIR, DT_LNK = stat.S_IFDIR >> 12, stat.S_IFLNK >> 12
ENTRY, WHITEOUT = 0, 1
PIECE = 4 << 20                     # source blob bytes handed to the pool at a time (a block multiple)
SOURCE_SYNC_BYTES = 256 << 20       # commit the import batch every this many blob bytes
_MAX_DEPTH = 1 << 20                # a parent chain longer than this is a loop


def check_name(name: str) -> str:
    """Refuse a tree name the catalog would refuse, before any work is done."""
    return catalog.check_name(name)


def _edit(store, name: str, fn):
    """Run fn(tree) on tree ``name`` in a write transaction (the caller's batch)
    and store its new root."""
    with staging.editing(store, name) as fst:
        return fn(fst)


class _KeptTimes:
    """Restores a directory's atime/mtime on a clean exit (changes below it
    touch them; a layer keeps the times its own entry gave)."""
    __slots__ = ("fst", "ino", "times")

    def __init__(self, fst: FileTree, ino: int):
        self.fst, self.ino = fst, ino

    def __enter__(self):
        n = self.fst.inode(self.ino)
        self.times = (n.atime, n.mtime)

    def __exit__(self, *exc):
        if exc[0] is None:
            n = self.fst.inode(self.ino)
            if (n.atime, n.mtime) != self.times:
                n.atime, n.mtime = self.times
                self.fst.put_inode(n)


class LayerWriter:
    """Writes a layer's entries into the working clone of staging import ``st``.

    ``apply_each(entries, fn)`` calls ``fn(entry)`` for each entry inside a
    write transaction of the staging batch; the other methods are the item
    writes ``fn`` may make, valid only inside it.  The clone's root is stored
    and the batch committed every ``COMMIT_BYTES`` written or
    ``COMMIT_ITEMS`` entries, between entries, so memory stays bounded."""

    def __init__(self, st):
        self.store = st.store
        self.work = st.work
        self.bytes = 0
        self.items = 0
        self._fst: FileTree | None = None

    def apply_each(self, entries, fn) -> None:
        env = self.store.env
        it = iter(entries)
        done = False
        while not done:
            with staging.editing(self.store, self.work) as fst:
                self._fst = fst
                b0, i0 = self.bytes, self.items
                try:
                    while (self.bytes - b0 < staging.COMMIT_BYTES
                           and self.items - i0 < staging.COMMIT_ITEMS):
                        entry = next(it, None)
                        if entry is None:
                            done = True
                            break
                        self.items += 1
                        fn(entry)
                finally:
                    self._fst = None
            if not done:
                env.sync()

    # -- reading names --------------------------------------------------------
    def lookup(self, dir_ino: int, name: bytes) -> tuple[int, int] | None:
        """(ino, dtype) of name in directory dir_ino, or None."""
        return self._fst.lookup(dir_ino, name)

    def children(self, dir_ino: int) -> list[tuple[bytes, int, int]]:
        """(name, ino, dtype) of every entry of a directory, in creation order."""
        return [(n, c, d) for _, n, c, d in self._fst.readdir(dir_ino)]

    def keep_times(self, dir_ino: int):
        """A context manager: the directory's atime/mtime are what they were on entry."""
        return _KeptTimes(self._fst, dir_ino)

    # -- changing ---------------------------------------------------------------
    def mkdir(self, dir_ino: int, name: bytes) -> int:
        """A directory made to hold entries (mode 0755, owner 0, times now);
        dir_ino's times are kept."""
        f = self._fst
        with self.keep_times(dir_ino):
            t = f.now()
            node = f.create(dir_ino, name, stat.S_IFDIR | 0o755, 0, 0)
            node.mtime = node.atime = t
            f.put_inode(node)
        return node.ino

    def create(self, dir_ino: int, name: bytes, mode: int, uid: int, gid: int,
               rdev: int = 0) -> int:
        return self._fst.create(dir_ino, name, mode, uid, gid, rdev).ino

    def symlink(self, dir_ino: int, name: bytes, target: bytes, uid: int, gid: int) -> int:
        return self._fst.symlink(dir_ino, name, target, uid, gid).ino

    def link(self, ino: int, dir_ino: int, name: bytes) -> None:
        self._fst.link(ino, dir_ino, name)

    def remove(self, dir_ino: int, name: bytes) -> None:
        """Remove name, a directory with everything below it (any depth)."""
        self._fst.remove_all(dir_ino, name)

    def prune(self, dir_ino: int, path: tuple, keep) -> None:
        """Remove every entry below directory dir_ino (at ``path``) whose path is
        not in ``keep``, descending only into kept directories; each kept
        directory's times stay as they were (an explicit stack: any depth)."""
        f = self._fst
        stack = [(dir_ino, path, self.children(dir_ino)[::-1], None)]
        while stack:
            ino, base, children, times = stack[-1]
            if not children:
                stack.pop()
                if times is not None:
                    times.__exit__(None, None, None)
                continue
            n, child, dtype = children.pop()
            p = base + (n,)
            if p not in keep:
                f.remove_all(ino, n)
            elif dtype == DT_DIR:
                t = self.keep_times(child)
                t.__enter__()
                stack.append((child, p, self.children(child)[::-1], t))

    def fill(self, ino: int, pieces, size: int) -> None:
        """Write file ino's content from ``pieces`` ((offset, bytes), in order;
        all-zero pieces stay holes), then set its size to ``size``."""
        f = self._fst
        node = f.inode(ino)
        for off, chunk in pieces:
            if chunk.count(0) != len(chunk):
                f.write(node, off, chunk)
            self.bytes += len(chunk)
        if node.size != size:
            f.truncate(node, size)

    def set_meta(self, ino: int, perm: int, uid: int, gid: int, mtime: int, atime: int,
                 xattrs: dict[bytes, bytes]) -> None:
        """Permission bits (not on a symlink), owner, times (ns) and exactly these xattrs."""
        f = self._fst
        node = f.inode(ino)
        if not node.is_lnk:
            node.mode = stat.S_IFMT(node.mode) | (perm & 0o7777)
        node.uid, node.gid = uid, gid
        node.mtime, node.atime = mtime, atime
        f.put_inode(node)
        for k in f.listxattr(ino):
            if k not in xattrs:
                f.removexattr(ino, k)
        for k, v in xattrs.items():          # setxattr changes ctime only
            f.setxattr(ino, k, v)


class SourceWriter:
    """Keeps a source blob in the working clone of staging import ``st``:
    ``write`` the stored bytes in order, then ``close`` and ``put_meta``.
    Runs in the staging batch, committed every ``SOURCE_SYNC_BYTES``."""

    def __init__(self, st):
        self.store = st.store
        self.work = st.work
        self._buf = bytearray()
        self._block = 0
        self._since = 0

    def write(self, piece: bytes) -> None:
        self._buf += piece
        if len(self._buf) >= PIECE:
            self._flush(False)

    def close(self) -> None:
        """Store what is buffered (the last block zero-padded)."""
        self._flush(True)

    def put_meta(self, meta: bytes) -> None:
        _edit(self.store, self.work, lambda fst: source.put_meta(fst, meta))

    def _flush(self, final: bool) -> None:
        bs = self.store.block_size
        n = len(self._buf) if final else len(self._buf) - len(self._buf) % bs
        if n == 0:
            return
        piece, self._buf = bytes(self._buf[:n]), self._buf[n:]
        block = self._block
        _edit(self.store, self.work, lambda fst: source.write(fst, block, piece))
        self._block += -(-n // bs)
        self._since += n
        if self._since >= SOURCE_SYNC_BYTES:
            self.store.env.sync()
            self._since = 0


class TreeReader:
    """Read-only access to one tree inside a read transaction (``reading``)."""

    def __init__(self, fst: FileTree):
        self._fst = fst

    def inode(self, ino: int):
        """The inode record (``fs.items.Inode``: mode, uid, gid, mtime, size, nlink, rdev, ...)."""
        return self._fst.inode(ino)

    def xattrs(self, ino: int) -> list[tuple[bytes, bytes]]:
        """(name, value) of every xattr, sorted by name."""
        f = self._fst
        return [(k, f.getxattr(ino, k)) for k in sorted(f.listxattr(ino))]

    def readlink(self, ino: int) -> bytes:
        return self._fst.readlink(ino)

    def read(self, node, offset: int, size: int) -> bytes:
        """File bytes (holes read as zeros)."""
        return self._fst.read(node, offset, size)

    def walk(self, ino: int, path: tuple, emit) -> None:
        """emit(path, ino) for every entry below directory ino, sorted by name,
        parents first (an explicit stack of sorted listings: any depth)."""
        _walk(self._fst, ino, path, emit)

    def source_meta(self) -> bytes | None:
        """The meta of the tree's source blob, or None (``SourceWriter``)."""
        return source.meta(self._fst)

    def source(self, size: int):
        """Yield the source blob's first ``size`` bytes in pieces."""
        return source.read(self._fst, size)


@contextlib.contextmanager
def reading(store, name: str):
    """A ``TreeReader`` on tree ``name``, valid inside the block (one read
    transaction: a consistent view whose blocks are not reused meanwhile)."""
    with store.env.read() as r:
        yield TreeReader(FileTree(NodeStore.of(r), catalog.get(r, name).root, time.time_ns))


@contextlib.contextmanager
def reading_diff(store, parent: str, name: str, whiteout):
    """(reader of ``name``, plan) of the layer that turns ``parent`` into ``name``,
    in one read transaction.  plan: {path: (ENTRY, ino of name) or (WHITEOUT, 0)};
    a deleted entry NAME appears as ``dir + (whiteout(NAME),)``."""
    with store.env.read() as r:
        ns = NodeStore.of(r)
        ra, rb = catalog.get(r, parent).root, catalog.get(r, name).root
        fa, fb = FileTree(ns, ra, time.time_ns), FileTree(ns, rb, time.time_ns)
        yield TreeReader(fb), _plan_diff(fa, fb, ns, ra, rb, whiteout)


def adding_layers(store, names: list[str]) -> list[str]:
    """Those of ``names`` (a lineage, oldest first) whose files differ from the
    one before: not one equal to its parent (the named top of an import, a
    commit of an unchanged clone).  Cost: proportional to each difference."""
    out, prev_root = [], None
    with store.env.read() as r:
        ns = NodeStore.of(r)
        for t in names:
            root = catalog.get(r, t).root
            if prev_root is None or fsdiff.differs(ns, prev_root, root):
                out.append(t)
            prev_root = root
    return out


def _walk(fst: FileTree, ino: int, parts: tuple, emit) -> None:
    stack = [(parts, _sorted_children(fst, ino))]
    while stack:
        base, children = stack[-1]
        if not children:
            stack.pop()
            continue
        name, child, dtype = children.pop()
        p = base + (name,)
        emit(p, child)
        if dtype == DT_DIR:
            stack.append((p, _sorted_children(fst, child)))


def _sorted_children(fst: FileTree, ino: int) -> list:
    """(name, ino, dtype) of a directory, sorted by name descending (pop() gives the first)."""
    return sorted(((n, c, d) for _, n, c, d in fst.readdir(ino)), reverse=True)


class _Paths:
    """Cached path (tuple of names) of directories in one tree."""

    def __init__(self, fst: FileTree):
        self.fst, self.cache = fst, {ROOT: ()}

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


def _plan_diff(fa: FileTree, fb: FileTree, ns, ra: int, rb: int, whiteout) -> dict:
    """{path: (kind, ino)} of the layer from tree a to tree b (``reading_diff``)."""
    entries, modified = fsdiff.visible(fa, fb, fsdiff.delta(ns, ra, rb))
    deleted = [(da, db, name) for da, db, name, ca, cb in entries if cb is None]
    added = [(db, name, cb, ca) for da, db, name, ca, cb in entries if cb is not None]
    pa, pb = _Paths(fa), _Paths(fb)
    plan: dict[tuple, tuple[int, int]] = {}

    def put_tree(path, ino, dtype):
        plan[path] = (ENTRY, ino)
        if dtype == DT_DIR:
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
        plan.setdefault(base + (whiteout(name),), (WHITEOUT, 0))
    for ino in modified:                     # inodes of b (fs.diff.visible)
        for parent, name in fb.parents(ino) if ino != ROOT else [(0, b"")]:
            path = () if ino == ROOT else pb.of(parent)
            if path is None:
                continue
            if ino != ROOT:
                path = path + (name,)
            plan.setdefault(path, (ENTRY, ino))
    for path, (kind, ino) in list(plan.items()):
        if kind == ENTRY and ino != ROOT:
            node = fb.inode(ino)
            if not node.is_dir and node.nlink > 1:
                for parent, name in fb.parents(ino):
                    base = pb.of(parent)
                    if base is not None:
                        plan.setdefault(base + (name,), (ENTRY, ino))
    return plan
