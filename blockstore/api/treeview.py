"""``TreeView``: os-like access to one tree (``store.fs(name)``).

Path methods mirror the os module (stat, listdir, scandir, walk, mkdir,
makedirs, rmdir, unlink/remove, rename/replace, symlink, readlink, link,
chmod, chown, utime, truncate, xattrs, open) and raise the same OSError
subclasses with the same errno.  Creation modes follow os too: the mode
given to ``open`` (``perm``, default 0o666), ``mkdir``/``makedirs`` (0o777)
and ``mknod`` is masked by the process umask.  Inode methods (``*_at`` / ``*_ino``) are
what the FUSE adapter uses.

Every change is one transaction on the tree: resolve, change, store the new
root in the catalog (atomic, durable on return unless in ``store.batch()``).
A snapshot's TreeView pins the snapshot's root when it is made, so files read
through it keep their bytes even if the snapshot is removed meanwhile;
``close()`` drops the pin.  Changing a snapshot raises ``ReadOnly`` (EROFS).

A clone's mount specs are honoured for paths: a path at or under a mount
point is served by the volume's tree, the bound host directory or the
tmpfs (see ``mounts.py``).
"""
from __future__ import annotations

import copy
import itertools
import os
import stat
from stat import S_IFREG          # a default argument below (TreeView.stat hides the module)
import threading
import time
from typing import Iterator

from .. import catalog
from ..btree.store import NodeStore
from ..errors import (AlreadyExists, CrossDevice, InvalidInput, IsADirectory, NotFound,
                      NoSuchPosition, ReadOnly, TooManyLinks)
from ..fs import paths
from ..fs.tree import INLINE_MAX, FileTree, fill
from . import fileio, umask


def _now() -> int:
    return time.time_ns()


def make_stat(node, dev: int, block_size: int, blocks: int) -> os.stat_result:
    return os.stat_result((
        node.mode, node.ino, dev, node.nlink, node.uid, node.gid, node.size,
        node.atime // 10**9, node.mtime // 10**9, node.ctime // 10**9,
        node.atime / 1e9, node.mtime / 1e9, node.ctime / 1e9,
        node.atime, node.mtime, node.ctime, block_size, blocks, node.rdev))


class DirEntry:
    """What ``scandir`` yields (the os.DirEntry interface)."""

    __slots__ = ("name", "path", "inode_no", "_dtype", "_tfs")

    def __init__(self, tfs, parent: str, name: bytes, ino: int, dtype: int, as_bytes: bool):
        self._tfs = tfs
        self.name = name if as_bytes else os.fsdecode(name)
        sep = b"/" if as_bytes else "/"
        base = parent.rstrip(sep) if parent not in (sep, b"/", "/") else parent.rstrip(sep)
        self.path = base + sep + self.name
        self.inode_no = ino
        self._dtype = dtype

    def inode(self) -> int:
        return self.inode_no

    def is_dir(self, follow_symlinks: bool = True) -> bool:
        if self._dtype == stat.S_IFLNK >> 12 and follow_symlinks:
            try:
                return stat.S_ISDIR(self._tfs.stat(self.path).st_mode)
            except OSError:
                return False
        return self._dtype == stat.S_IFDIR >> 12

    def is_file(self, follow_symlinks: bool = True) -> bool:
        if self._dtype == stat.S_IFLNK >> 12 and follow_symlinks:
            try:
                return stat.S_ISREG(self._tfs.stat(self.path).st_mode)
            except OSError:
                return False
        return self._dtype == stat.S_IFREG >> 12

    def is_symlink(self) -> bool:
        return self._dtype == stat.S_IFLNK >> 12

    def stat(self, follow_symlinks: bool = True) -> os.stat_result:
        """By inode (no path lookup) unless a symlink is followed or the entry is
        a mount point (its stat is the mounted tree's root)."""
        if (not follow_symlinks or self._dtype != stat.S_IFLNK >> 12) \
                and self._tfs._route(self.path)[0] is self._tfs:
            return self._tfs.getattr(self.inode_no)
        return self._tfs.stat(self.path, follow_symlinks=follow_symlinks)

    def __fspath__(self):
        return self.path

    def __repr__(self) -> str:
        return f"<DirEntry {self.name!r}>"


# Stats memoized per read view (``TreeView._stats``): at most this many per tree
# view and read view (~200 bytes each), then the memo starts over.
STAT_MEMO = "treeview.stats"
STAT_MEMO_MAX = 16384
_SERIALS = itertools.count()


class TreeView:
    """os-like access to one tree of a store: ``store.fs(name)``.

    Path methods take absolute paths inside the tree and behave like the os
    functions of the same name (``stat``, ``listdir``, ``mkdir``,
    ``rename``, ``open`` giving real io file objects, ...), raising the same
    OSError subclasses with the same errno.  Each change is one transaction,
    durable on return unless inside ``store.batch()``.  A snapshot's TreeView
    is read-only (``ReadOnly``, EROFS) and keeps the snapshot's content
    while open.  Close it, or use it as a context manager.
    """

    def __init__(self, store, name: str):
        self.store = store
        self.env = store.env
        self.name = name
        self._serial = next(_SERIALS)
        self._lock = threading.Lock()
        self._open: dict[int, int] = {}
        self._pin: bytes | None = None
        self._closed = False
        with self.env.read() as r:
            rec = catalog.get(r, name)
        self.kind = rec.kind
        self.uuid = rec.uuid
        self.dev = int(rec.uuid[:8], 16)
        self.readonly = not rec.writable
        self._root = None
        self._root_cache: tuple[int, int] | None = None     # (read txn id, root) last seen
        self._wrec_cache: tuple[bytes, catalog.TreeRecord] | None = None   # (bytes, record)
        if self.readonly:
            def pin(w):
                rec = catalog.get(w, name)
                from ..btree import tree as bt
                bt.share(NodeStore.of(w), rec.root)
                return catalog.add_pin(w, rec.root), rec.root
            self._pin, self._root = self.env.transact(pin)
        from .mounts import MountTable
        self.mounts = MountTable.for_tree(self, rec)

    # -- lifecycle -----------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.mounts.close()
        if self._pin is not None:
            key, self._pin = self._pin, None

            def unpin(w):
                root = catalog.remove_pin(w, key)
                if root:
                    from ..btree import tree as bt
                    bt.release(NodeStore.of(w), root)
            self.env.transact(unpin)
        self.store.forget_fs(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- transactions ----------------------------------------------------------------
    def _is_open(self, ino: int) -> bool:
        return self._open.get(ino, 0) > 0

    def _view(self, fn):
        """Run fn(FileTree) on a consistent read view of the tree."""
        def run(r):
            root = self._root if self._root is not None else self._root_in(r)
            return fn(FileTree(NodeStore.of(r), root, _now))
        return self.env.in_view(run)

    def _root_in(self, r) -> int:
        """The tree's root in txn ``r``.  A read txn's state is fixed by its LMDB
        txn id, so the root is remembered per id: reads between two commits
        decode the catalog record once (a FUSE read is ~30 us; the decode ~8)."""
        if r.write:
            # Inside a batch the root changes with every write; a getattr/getxattr
            # between two writes (the kernel asks for security.capability before
            # each write) decodes the record only when its bytes changed.
            return self._record_in(r).root
        cached = self._root_cache
        tid = r.id()
        if cached is not None and cached[0] == tid:
            return cached[1]
        root = catalog.get(r, self.name).root
        self._root_cache = (tid, root)
        return root

    def _record_in(self, w) -> catalog.TreeRecord:
        """The tree's catalog record in write txn ``w``, decoded only when its bytes
        changed since the last call (inside a batch every write changes the root,
        and ``_change`` caches the record it stores).  Callers must not change it."""
        raw = catalog.get_raw(w, self.name)
        wc = self._wrec_cache
        if wc is not None and wc[0] == raw:
            return wc[1]
        rec = catalog.TreeRecord.decode(raw)
        self._wrec_cache = (raw, rec)
        return rec

    def _change(self, fn):
        """Run fn(FileTree) in a write transaction and store the tree's new root."""
        if self.readonly:
            raise ReadOnly(f"{self.name!r} is a snapshot and cannot be changed; clone it first",
                           path=self.name)

        def work(w):
            rec = self._record_in(w)
            if not rec.writable:
                raise ReadOnly(f"{self.name!r} is a snapshot and cannot be changed")
            fst = FileTree(NodeStore.of(w), rec.root, _now, self._is_open)
            result = fn(fst)
            if fst.root != rec.root:
                new = copy.copy(rec)        # the cached record stays as stored
                new.root = fst.root
                self._wrec_cache = (catalog.put(w, new), new)
            return result
        return self.env.transact(work)

    # -- inode-level API (FUSE) -------------------------------------------------------
    def getattr(self, ino: int) -> os.stat_result:
        return self._view(lambda f: self._stat_in(f, self._stats(f), ino))

    def _stats(self, f: FileTree) -> dict | None:
        """Stats answered in read view ``f`` (committed state, so fixed for the
        view's life), by inode; None in a write txn.  A kept read view
        (``Store.keep_read_views``) lives across calls: a mount's GETATTR after
        its READDIRPLUS or LOOKUP of the same inode (the kernel asks again after
        every read of a file, for the atime) costs a dict lookup."""
        t = f.ns.txn
        if t.write:
            return None
        key = (STAT_MEMO, self._serial, f.root)
        memo = t.local.get(key)
        if memo is None or len(memo) >= STAT_MEMO_MAX:
            memo = t.local[key] = {}
        return memo

    def _stat_of(self, f: FileTree, node) -> os.stat_result:
        bs = f.bs
        if node.is_reg and node.size > INLINE_MAX:
            blocks = sum(n for _, _, n in f.extents(node.ino)) * (bs // 512)
        else:
            blocks = (node.size + 511) // 512 if node.is_reg or node.is_lnk else 0
        return make_stat(node, self.dev, bs, blocks)

    def lookup(self, dir_ino: int, name: bytes) -> os.stat_result:
        def fn(f):
            st = self._lookup_in(f, self._stats(f), dir_ino, name)
            if st is None:
                raise NotFound("no such file or directory", path=os.fsdecode(name))
            return st
        return self._view(fn)

    def lookup_many(self, dir_ino: int, names) -> list[os.stat_result | None]:
        """``lookup`` of each name in one read view; None for a name not there."""
        def fn(f):
            memo = self._stats(f)
            out = []
            for n in names:
                try:
                    out.append(self._lookup_in(f, memo, dir_ino, n))
                except OSError:             # a bad name or entry: that one only
                    out.append(None)
            return out
        return self._view(fn)

    def _lookup_in(self, f: FileTree, memo, dir_ino: int, name: bytes):
        found = f.lookup(dir_ino, paths.check_name(name) if name not in (b".", b"..") else name)
        return None if found is None else self._stat_in(f, memo, found[0])

    def _stat_in(self, f: FileTree, memo: dict | None, ino: int) -> os.stat_result:
        """The stat of ``ino``, from ``memo`` (``_stats``) when it has it."""
        st = memo.get(ino) if memo is not None else None
        if st is None:
            st = self._stat_of(f, f.inode(ino))
            if memo is not None:
                memo[ino] = st
        return st

    def readdir(self, dir_ino: int, after: int = 0) -> list[tuple[int, bytes, int, int]]:
        return self._view(lambda f: (f.directory(dir_ino), list(f.readdir(dir_ino, after)))[1])

    def create_at(self, dir_ino: int, name: bytes, mode: int, uid: int = 0, gid: int = 0,
                  rdev: int = 0) -> os.stat_result:
        def fn(f):
            node = f.create(dir_ino, paths.check_name(name), mode, uid, gid, rdev)
            return self._stat_of(f, node)
        return self._change(fn)

    def symlink_at(self, dir_ino: int, name: bytes, target: bytes, uid: int = 0,
                   gid: int = 0) -> os.stat_result:
        return self._change(lambda f: self._stat_of(
            f, f.symlink(dir_ino, paths.check_name(name), target, uid, gid)))

    def link_at(self, ino: int, dir_ino: int, name: bytes) -> os.stat_result:
        return self._change(lambda f: self._stat_of(f, f.link(ino, dir_ino, paths.check_name(name))))

    def unlink_at(self, dir_ino: int, name: bytes) -> None:
        self._change(lambda f: f.unlink(dir_ino, name))

    def rmdir_at(self, dir_ino: int, name: bytes) -> None:
        self._change(lambda f: f.rmdir(dir_ino, name))

    def rename_at(self, sdir: int, sname: bytes, ddir: int, dname: bytes, flags: int = 0) -> None:
        self._change(lambda f: f.rename(sdir, sname, ddir, paths.check_name(dname), flags))

    def readlink_ino(self, ino: int) -> bytes:
        return self._view(lambda f: f.readlink(ino))

    def setattr(self, ino: int, mode=None, uid=None, gid=None, size=None, atime=None,
                mtime=None, ctime=None) -> os.stat_result:
        """Change attributes; times in ns (None keeps, ``"now"`` sets the current time)."""
        def fn(f):
            node = f.inode(ino)
            if size is not None:
                if node.is_dir:
                    raise IsADirectory("cannot truncate a directory")
                f.truncate(node, size)
                node = f.inode(ino)
            if mode is not None:
                node.mode = stat.S_IFMT(node.mode) | (mode & 0o7777)
            if uid is not None and uid != -1:
                node.uid = uid
            if gid is not None and gid != -1:
                node.gid = gid
            t = _now()
            if atime is not None:
                node.atime = t if atime == "now" else atime
            if mtime is not None:
                node.mtime = t if mtime == "now" else mtime
            node.ctime = t if ctime is None else ctime
            f.put_inode(node)
            return self._stat_of(f, node)
        return self._change(fn)

    def read_ino(self, ino: int, offset: int, size: int) -> bytes:
        return self._view(lambda f: f.read(f.inode(ino), offset, size))

    def readinto_ino(self, ino: int, offset: int, buf) -> int:
        return self._view(lambda f: f.readinto(f.inode(ino), offset, buf))

    def size_ino(self, ino: int) -> int:
        return self._view(lambda f: f.inode(ino).size)

    def write_ino(self, ino: int, offset: int | None, data) -> int:
        """Write at offset (None: at the end, atomically); returns the new position.
        ``data``: bytes-like, or a list of pieces written one after the other
        (FileTree.write: whole-block pieces reach the pool without a copy)."""
        def fn(f):
            node = f.inode(ino)
            at = node.size if offset is None else offset
            return at + f.write(node, at, data)
        return self._change(fn)

    def truncate_ino(self, ino: int, size: int) -> None:
        self._change(lambda f: f.truncate(f.inode(ino), size))

    def seek_data_hole(self, ino: int, offset: int, data: bool) -> int:
        """lseek SEEK_DATA / SEEK_HOLE over the extent map."""
        def fn(f):
            node = f.inode(ino)
            if offset < 0 or offset >= node.size:
                raise NoSuchPosition("offset is negative or at or beyond the end of the file")
            if f.inline(ino) is not None:
                return offset if data else node.size
            bs = f.bs
            pos = offset
            for fb, _, n in f.extents(ino):
                lo, hi = fb * bs, (fb + n) * bs
                if hi <= pos:
                    continue
                if data:
                    return max(pos, lo)
                if lo > pos:
                    return pos
                pos = hi
            # Past the last extent: a hole from pos (or from offset, if no extent
            # reached it) to the end of file; the end of file counts as a hole.
            return min(pos, node.size) if not data else _no_data(node.size, offset)
        return self._view(fn)

    def read_at(self, ino: int, offset: int, size: int, *, cached_only: bool = False):
        """Up to ``size`` bytes at ``offset`` (a bytearray; one copy from the pool).
        ``cached_only``: raise BlockingIOError (EAGAIN) rather than wait for the
        disk when the data is not in the page cache (metadata reads may still
        fault LMDB pages in)."""
        return self._view(lambda f: f.read_buffer(f.inode(ino), offset, size, cached_only))

    def read_later(self, ino: int, offset: int, size: int):
        """Map a read now, in this thread's view (its open batch included), and
        return ``finish()``, which reads the pool blocks on any thread and
        returns the bytes.  A read transaction taken now and closed by
        ``finish`` keeps every block of the plan from being reused meanwhile,
        whatever the batch frees or commits (docs/ARCHITECTURE.md §5).  Call
        ``finish`` exactly once.  Cost: the mapping here; the I/O in finish."""
        plan = self._view(lambda f: f.read_plan(f.inode(ino), offset, size))
        cm = self.env.snapshot()
        rt = cm.__enter__()

        def finish() -> bytearray:
            try:
                buf = bytearray(plan.n)
                fill(rt.blocks, plan, buf)
                return buf
            finally:
                cm.__exit__(None, None, None)
        return finish

    def write_at(self, ino: int, offset: int, data) -> int:
        """Write ``data`` (bytes-like or a list of pieces, as write_ino) at
        ``offset``; returns the bytes written."""
        return self.write_ino(ino, offset, data) - offset

    def getxattr_ino(self, ino: int, name: bytes) -> bytes:
        return self._view(lambda f: f.getxattr(ino, name))

    def listxattr_ino(self, ino: int) -> list[bytes]:
        return self._view(lambda f: f.listxattr(ino))

    def setxattr_ino(self, ino: int, name: bytes, value: bytes, flags: int = 0) -> None:
        self._change(lambda f: f.setxattr(ino, name, value, flags))

    def removexattr_ino(self, ino: int, name: bytes) -> None:
        self._change(lambda f: f.removexattr(ino, name))

    # -- open files, for interfaces that track them (FUSE) ------------------------------
    def file_opened(self, ino: int) -> None:
        """Count one more user of inode ``ino``: while it has users, unlinking its
        last name keeps it (an orphan) instead of freeing it."""
        with self._lock:
            self._open[ino] = self._open.get(ino, 0) + 1

    def file_closed(self, ino: int) -> None:
        """One user fewer; the last one frees the inode if it was unlinked."""
        with self._lock:
            c = self._open.get(ino, 0) - 1
            if c > 0:
                self._open[ino] = c
                return
            self._open.pop(ino, None)
        if not self.readonly and not self._closed_store():
            try:
                if self._view(lambda f: ino in f.orphans()):
                    self._change(lambda f: f.release_orphan(ino))
            except NotFound:
                pass           # the tree itself was removed meanwhile

    def open_inodes(self) -> dict[int, int]:
        return dict(self._open)

    def set_open_inodes(self, counts: dict[int, int]) -> None:
        """Replace the users per inode (``open_inodes``'s result), e.g. to
        restore them before a batch is replayed."""
        with self._lock:
            self._open.clear()
            self._open.update(counts)

    def _closed_store(self) -> bool:
        return self.store.closed

    # -- path-level API (os-like) -----------------------------------------------------
    def _route(self, path):
        """(TreeView-or-mount, path inside it) for a path, honouring mount specs."""
        return self.mounts.route(path)

    def stat(self, path, *, follow_symlinks: bool = True) -> os.stat_result:
        tfs, sub = self._route(path)
        if tfs is not self:
            return tfs.stat(sub, follow_symlinks=follow_symlinks)
        return self._view(lambda f: self._stat_of(f, f.inode(paths.resolve(f, sub, follow_symlinks))))

    def lstat(self, path) -> os.stat_result:
        return self.stat(path, follow_symlinks=False)

    def exists(self, path) -> bool:
        try:
            self.stat(path)
            return True
        except (NotFound, InvalidInput, OSError):
            return False

    def isdir(self, path) -> bool:
        try:
            return stat.S_ISDIR(self.stat(path).st_mode)
        except OSError:
            return False

    def isfile(self, path) -> bool:
        try:
            return stat.S_ISREG(self.stat(path).st_mode)
        except OSError:
            return False

    def islink(self, path) -> bool:
        try:
            return stat.S_ISLNK(self.lstat(path).st_mode)
        except OSError:
            return False

    def is_within(self, path, top) -> bool:
        """True when ``path`` is directory ``top`` or lies below it (``path`` need
        not exist: its nearest existing ancestor counts; symlinks on the way are
        followed as a lookup follows them).  Cost: O(depth)."""
        tfs, tsub = self._route(top)
        pfs, psub = self._route(path)
        if tfs is not self or pfs is not self:
            return False

        def fn(f):
            try:
                anc = paths.resolve(f, tsub, follow=False)
            except (NotFound, InvalidInput):
                return False
            parts = paths.components(psub)
            while True:
                try:
                    ino = paths.resolve(f, b"/" + b"/".join(parts))
                    break
                except (NotFound, InvalidInput, OSError):
                    if not parts:
                        return False
                    parts.pop()
            return f.is_ancestor(anc, ino)
        return self._view(fn)

    def listdir(self, path="/") -> list:
        return [e.name for e in self.scandir(path)]

    def scandir(self, path="/") -> Iterator[DirEntry]:
        tfs, sub = self._route(path)
        if tfs is not self:
            yield from tfs.scandir(sub)
            return
        as_bytes = isinstance(path, bytes)

        def fn(f):
            ino = paths.resolve(f, sub)
            f.directory(ino)
            return list(f.readdir(ino))
        for _, name, ino, dtype in self._view(fn):
            yield DirEntry(self, path, name, ino, dtype, as_bytes)

    def walk(self, top="/", topdown: bool = True):
        """Like os.walk (symlinks to directories are not followed).  An explicit
        stack, not recursion: trees of any depth.  Directories below ``top``
        are listed by inode (no path lookup) unless a mount spec serves them."""
        sep = b"/" if isinstance(top, bytes) else "/"
        stack = [(top, None, None)]            # (dir, ino or None, None | (dirs, files) to yield)
        while stack:
            d, ino, listed = stack.pop()
            if listed is not None:
                yield d, listed[0], listed[1]
                continue
            if ino is not None and self._route(d)[0] is self:
                ents = [DirEntry(self, d, n, c, t, isinstance(d, bytes))
                        for _, n, c, t in self.readdir(ino)]
            else:
                ents = list(self.scandir(d))
            dirs, files, inos = [], [], {}
            for e in ents:
                if e.is_dir(follow_symlinks=False):
                    dirs.append(e.name)
                    inos[e.name] = e.inode()
                else:
                    files.append(e.name)
            if topdown:
                yield d, dirs, files             # the caller may prune dirs in place
            else:
                stack.append((d, None, (dirs, files)))
            base = d.rstrip(sep) if d not in ("/", b"/") else sep[:0]
            stack.extend((base + sep + n, inos.get(n), None) for n in reversed(dirs))

    def mkdir(self, path, mode: int = 0o777, *, uid: int | None = None, gid: int | None = None) -> None:
        tfs, sub = self._route(path)
        if tfs is not self:
            if not paths.components(sub):       # the mount point itself exists
                raise AlreadyExists("file exists", path=os.fsdecode(paths.to_bytes(path)))
            return tfs.mkdir(sub, mode)
        uid = os.getuid() if uid is None else uid
        gid = os.getgid() if gid is None else gid
        perm = umask.apply(mode)

        def fn(f):
            d, name = paths.resolve_parent(f, sub)
            # mkdir(2): the umask applies, S_ISUID/S_ISGID are dropped
            f.create(d, name, stat.S_IFDIR | (perm & 0o1777), uid, gid)
        self._change(fn)

    def makedirs(self, path, mode: int = 0o777, exist_ok: bool = False) -> None:
        parts = paths.components(path)
        cur = ""
        for i, p in enumerate(parts):
            cur += "/" + os.fsdecode(p)
            try:
                self.mkdir(cur, mode)
            except AlreadyExists:
                if i == len(parts) - 1 and not exist_ok or not self.isdir(cur):
                    raise

    def rmdir(self, path) -> None:
        tfs, sub = self._route(path)
        if tfs is not self:
            return tfs.rmdir(sub)

        def fn(f):
            d, name = paths.resolve_parent(f, sub)
            f.rmdir(d, name)
        self._change(fn)

    def unlink(self, path) -> None:
        tfs, sub = self._route(path)
        if tfs is not self:
            return tfs.unlink(sub)

        def fn(f):
            d, name = paths.resolve_parent(f, sub)
            f.unlink(d, name)
        self._change(fn)

    remove = unlink

    def rename(self, src, dst, flags: int = 0) -> None:
        """rename(2): replaces dst if it exists (files, or empty directories)."""
        ts, s = self._route(src)
        td, d = self._route(dst)
        if ts is not td:
            raise CrossDevice("rename across mounts", path=str(src))
        if ts is not self:
            return ts.rename(s, d, flags)

        def fn(f):
            sd, sn = paths.resolve_parent(f, s)
            dd, dn = paths.resolve_parent(f, d)
            f.rename(sd, sn, dd, dn, flags)
        self._change(fn)

    replace = rename

    def symlink(self, target, path) -> None:
        tfs, sub = self._route(path)
        if tfs is not self:
            return tfs.symlink(target, sub)

        def fn(f):
            d, name = paths.resolve_parent(f, sub)
            f.symlink(d, name, paths.to_bytes(target), os.getuid(), os.getgid())
        self._change(fn)

    def readlink(self, path):
        tfs, sub = self._route(path)
        if tfs is not self:
            return tfs.readlink(sub)
        out = self._view(lambda f: f.readlink(paths.resolve(f, sub, follow=False)))
        return out if isinstance(path, bytes) else os.fsdecode(out)

    def link(self, src, dst) -> None:
        ts, s = self._route(src)
        td, d = self._route(dst)
        if ts is not td:
            raise CrossDevice("hard link across mounts", path=str(src))
        if ts is not self:
            return ts.link(s, d)

        def fn(f):
            ino = paths.resolve(f, s, follow=False)
            dd, dn = paths.resolve_parent(f, d)
            f.link(ino, dd, dn)
        self._change(fn)

    def mknod(self, path, mode: int = 0o600 | S_IFREG, device: int = 0) -> None:
        tfs, sub = self._route(path)
        if tfs is not self:
            return tfs.mknod(sub, mode, device)

        mode = stat.S_IFMT(mode) | umask.apply(mode)          # mknod(2): the umask applies

        def fn(f):
            d, name = paths.resolve_parent(f, sub)
            f.create(d, name, mode, os.getuid(), os.getgid(), device)
        self._change(fn)

    def _setattr_path(self, path, follow: bool, **kw) -> None:
        tfs, sub = self._route(path)
        if tfs is not self:
            return tfs._setattr_path(sub, follow, **kw)
        ino = self._view(lambda f: paths.resolve(f, sub, follow))
        self.setattr(ino, **kw)

    def chmod(self, path, mode: int, *, follow_symlinks: bool = True) -> None:
        self._setattr_path(path, follow_symlinks, mode=mode)

    def chown(self, path, uid: int, gid: int, *, follow_symlinks: bool = True) -> None:
        self._setattr_path(path, follow_symlinks, uid=uid, gid=gid)

    def utime(self, path, times=None, *, ns=None, follow_symlinks: bool = True) -> None:
        if times is not None and ns is not None:
            raise InvalidInput("utime: give times or ns, not both")
        if ns is None and times is not None:
            ns = (int(times[0] * 1e9), int(times[1] * 1e9))
        at, mt = ns if ns is not None else ("now", "now")
        self._setattr_path(path, follow_symlinks, atime=at, mtime=mt)

    def truncate(self, path, length: int) -> None:
        self._setattr_path(path, True, size=length)

    def getxattr(self, path, attribute, *, follow_symlinks: bool = True) -> bytes:
        tfs, sub = self._route(path)
        if tfs is not self:
            return tfs.getxattr(sub, attribute, follow_symlinks=follow_symlinks)
        name = paths.to_bytes(attribute)
        return self._view(lambda f: f.getxattr(paths.resolve(f, sub, follow_symlinks), name))

    def listxattr(self, path="/", *, follow_symlinks: bool = True) -> list[str]:
        tfs, sub = self._route(path)
        if tfs is not self:
            return tfs.listxattr(sub, follow_symlinks=follow_symlinks)
        names = self._view(lambda f: f.listxattr(paths.resolve(f, sub, follow_symlinks)))
        return [os.fsdecode(n) for n in names]

    def setxattr(self, path, attribute, value: bytes, flags: int = 0, *,
                 follow_symlinks: bool = True) -> None:
        tfs, sub = self._route(path)
        if tfs is not self:
            return tfs.setxattr(sub, attribute, value, flags, follow_symlinks=follow_symlinks)
        name = paths.to_bytes(attribute)
        ino = self._view(lambda f: paths.resolve(f, sub, follow_symlinks))
        self.setxattr_ino(ino, name, bytes(value), flags)

    def removexattr(self, path, attribute, *, follow_symlinks: bool = True) -> None:
        tfs, sub = self._route(path)
        if tfs is not self:
            return tfs.removexattr(sub, attribute, follow_symlinks=follow_symlinks)
        name = paths.to_bytes(attribute)
        ino = self._view(lambda f: paths.resolve(f, sub, follow_symlinks))
        self.removexattr_ino(ino, name)

    def open(self, path, mode: str = "r", buffering: int = -1, encoding=None, errors=None,
             newline=None, *, perm: int = 0o666):
        """A real io file object, like the builtin open()."""
        tfs, sub = self._route(path)
        if tfs is not self:
            return tfs.open(sub, mode, buffering, encoding, errors, newline, perm=perm)
        rd, wr, append, create, trunc, excl = fileio.parse_mode(mode)
        if wr and self.readonly:
            raise ReadOnly(f"{self.name!r} is a snapshot and cannot be changed; clone it first",
                           path=os.fsdecode(paths.to_bytes(path)))
        uid, gid = os.getuid(), os.getgid()
        perm = umask.apply(perm) if create else perm       # open(2): O_CREAT modes see the umask

        def fn(f):
            if excl:
                # O_EXCL: an existing last component (even a symlink loop) is EEXIST.
                try:
                    paths.resolve(f, sub, follow=False)
                except NotFound:
                    pass
                else:
                    raise AlreadyExists("file exists", path=os.fsdecode(paths.to_bytes(path)))
            try:
                ino = paths.resolve(f, sub)
            except NotFound:
                if not create:
                    raise
                d, name = paths.resolve_parent(f, sub)
                hops = 0
                while (found := f.lookup(d, name)) is not None and found[1] == stat.S_IFLNK >> 12:
                    # O_CREAT through a dangling symlink creates its target (O_EXCL: EEXIST).
                    hops += 1
                    if excl or hops > paths.SYMLOOP_MAX:
                        raise (AlreadyExists("file exists", path=os.fsdecode(paths.to_bytes(path)))
                               if excl else TooManyLinks("too many levels of symbolic links"))
                    target = f.readlink(found[0])
                    if not target.startswith(b"/"):
                        target = f.path_of(d).rstrip(b"/") + b"/" + target
                    d, name = paths.resolve_parent(f, target)
                ino = f.create(d, name, stat.S_IFREG | perm, uid, gid).ino
                return ino
            node = f.inode(ino)
            fileio.check_not_dir(node.is_dir, os.fsdecode(paths.to_bytes(path)))
            if trunc and node.size:
                f.truncate(node, 0)
            return ino
        ino = self._change(fn) if (create or trunc) and not self.readonly else self._view(fn)
        raw = fileio.RawTreeFile(self, ino, os.fsdecode(paths.to_bytes(path)), rd, wr, append)
        if append:
            raw.seek(0, os.SEEK_END)
        return fileio.wrap(raw, mode, buffering, encoding, errors, newline)

    def read_bytes(self, path) -> bytes:
        with self.open(path, "rb") as fh:
            return fh.read()

    def write_bytes(self, path, data: bytes) -> None:
        with self.open(path, "wb") as fh:
            fh.write(data)

    def read_text(self, path, encoding: str = "utf-8") -> str:
        return self.read_bytes(path).decode(encoding)

    def write_text(self, path, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(path, text.encode(encoding))


def _no_data(size: int, offset: int) -> int:
    raise NoSuchPosition("no data after offset")
