"""Import a host directory into a snapshot; export a tree to a host directory.

Import onto ``parent`` writes into a working clone of it (``Store.staging``,
staging.py: so unchanged files are not written again: a file whose type,
size, mtime, mode and owner match is kept, as rsync's quick check does),
committing every ``COMMIT_BYTES`` of data or ``COMMIT_ITEMS`` entries (staging.py) so
memory stays bounded, then turns it into the snapshot.  On any error or
interrupt the working clone is removed and its space given back: no snapshot
appears, nothing leaks.  Without a parent the tree is bulk-built in one
transaction (bulkimport.py).

Preserved both ways: content (holes stay holes: SEEK_DATA/SEEK_HOLE on
input, zero blocks are never stored), type, mode, owner, atime/mtime in ns,
symlink targets, hard-link groups, xattrs, device numbers.  Export reads
one consistent view (a single read transaction, so gc cannot reuse what it
reads) and sets directory times after their contents.
"""
from __future__ import annotations

import os
import stat
import time

from .. import catalog
from ..btree.store import NodeStore
from ..errors import InvalidInput, NotFound
from ..fs.hostread import data_segments as _data_segments, xattrs as _xattrs
from ..fs.tree import ROOT_INO, FileTree
from . import hostout, staging

CHUNK = 8 * 1024 * 1024


class _Importer:
    """Runs inside ``store.batch()``: every ``env.write()`` is the batch's one
    transaction, so the importer keeps ONE ``FileTree`` on it and stores the
    working clone's root in the catalog only at sync points (every
    ``COMMIT_BYTES`` / ``COMMIT_ITEMS``) and at the end, not per operation."""

    def __init__(self, store, work: str, progress):
        self.store = store
        self.env = store.env
        self.work = work
        self.progress = progress
        # host (dev, ino) -> [tree ino, links not seen yet]: incomplete groups only
        self.links: dict[tuple[int, int], list] = {}
        self.since_bytes = 0
        self.since_items = 0
        self._w = None
        self._fst: FileTree | None = None

    def _tree(self) -> FileTree:
        if self._fst is None:
            with self.env.write() as w:          # joins the batch: stays open after the block
                self._w = w
                rec = catalog.get(w, self.work)
                self._fst = FileTree(NodeStore.of(w), rec.root, time.time_ns)
        return self._fst

    def flush(self) -> None:
        """Store the working tree's root in its catalog record (same transaction)."""
        if self._fst is None:
            return
        rec = catalog.get(self._w, self.work)
        if rec.root != self._fst.root:
            rec.root = self._fst.root
            catalog.put(self._w, rec)

    def _apply(self, fn):
        """Run fn(fst) on the working clone inside the open batch."""
        out = fn(self._tree())
        if (self.since_bytes >= staging.COMMIT_BYTES
                or self.since_items >= staging.COMMIT_ITEMS):
            self.flush()
            self.env.sync()                      # commits the batch and begins the next txn
            self._fst = self._w = None
            self.since_bytes = self.since_items = 0
        return out

    def _same(self, node, st) -> bool:
        return (stat.S_IFMT(node.mode) == stat.S_IFMT(st.st_mode) and node.mode == st.st_mode
                and node.size == (st.st_size if not stat.S_ISDIR(st.st_mode) else node.size)
                and node.mtime == st.st_mtime_ns and node.uid == st.st_uid
                and node.gid == st.st_gid and node.rdev == (st.st_rdev if stat.S_ISCHR(st.st_mode)
                                                           or stat.S_ISBLK(st.st_mode) else 0))

    def _set_meta(self, fst: FileTree, ino: int, st, xattrs: dict, node=None,
                  fresh: bool = False) -> None:
        """Copy mode, owner, times and xattrs; ``fresh``: the inode has no xattrs yet."""
        if xattrs:
            for k, v in xattrs.items():
                fst.setxattr(ino, k, v)
            node = None                          # setxattr rewrote the inode (ctime)
        node = fst.inode(ino) if node is None else node
        node.mode = st.st_mode
        node.uid, node.gid = st.st_uid, st.st_gid
        node.atime, node.mtime, node.ctime = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
        fst.put_inode(node)
        if not fresh:
            for k in set(fst.listxattr(ino)) - set(xattrs):
                fst.removexattr(ino, k)
            if xattrs:
                fst.put_inode(node)              # removexattr touched ctime again

    def import_tree(self, src: str) -> None:
        st = os.lstat(src)
        self._dir(src, ROOT_INO)
        # after its contents: creating entries touches the directory's times
        self._apply(lambda f: self._set_meta(f, ROOT_INO, st, _xattrs(src)))
        self.flush()

    def _dir(self, hostdir: str, dir_ino: int) -> None:
        """Import the contents of hostdir into dir_ino, then every subdirectory's
        (an explicit stack, not recursion: trees of any depth); a directory's
        metadata is set after its contents."""
        todo = [(hostdir, dir_ino, None, False)]    # (host path, ino, lstat, contents done)
        while todo:
            path, ino, st, done = todo.pop()
            if done:
                xa = _xattrs(path)
                self._apply(lambda f, c=ino, s=st, x=xa: self._set_meta(f, c, s, x))
                continue
            if st is not None:                     # the root's metadata: import_tree
                todo.append((path, ino, st, True))
            todo.extend((p, c, s, False) for p, c, s in reversed(self._contents(path, ino)))

    def _contents(self, hostdir: str, dir_ino: int) -> list:
        """Entries of one host directory; returns its subdirectories [(path, ino, st)]."""
        try:
            names = sorted(os.listdir(hostdir))
        except OSError as exc:
            raise InvalidInput(f"cannot read directory: {exc.strerror}", path=hostdir) from None
        subdirs = []
        bnames = {os.fsencode(n) for n in names}

        def prune(f):
            for _, name, ino, dtype in list(f.readdir(dir_ino)):
                if name not in bnames:
                    f.remove_all(dir_ino, name)
        self._apply(prune)
        for n in names:
            p = os.path.join(hostdir, n)
            st = os.lstat(p)
            bn = os.fsencode(n)
            child = self._entry(dir_ino, bn, p, st)
            if stat.S_ISDIR(st.st_mode):
                subdirs.append((p, child, st))
            if self.progress:
                self.progress(p, st.st_size if stat.S_ISREG(st.st_mode) else 0)
        return subdirs

    def _entry(self, dir_ino: int, name: bytes, path: str, st) -> int:
        self.since_items += 1
        mode = st.st_mode
        hard = not stat.S_ISDIR(mode) and st.st_nlink > 1
        key = (st.st_dev, st.st_ino)
        xattrs = _xattrs(path)

        def prepare(f):
            """Reuse an identical existing entry, else clear the name; returns ino or None."""
            found = f.lookup(dir_ino, name)
            group = self.links.get(key) if hard else None
            if group is not None:
                group[1] -= 1
                if group[1] <= 0:
                    del self.links[key]          # every link seen: forget the group
                if found and found[0] == group[0]:
                    return found[0]
                if found:
                    f.remove_all(dir_ino, name)
                f.link(group[0], dir_ino, name)
                return group[0]
            if found is not None:
                node = f.inode(found[0])
                if stat.S_ISDIR(mode) and node.is_dir:
                    return found[0]               # metadata is set after its contents
                if not hard and node.nlink == 1 and self._same(node, st):
                    self._set_meta(f, found[0], st, xattrs)
                    return found[0]
                f.remove_all(dir_ino, name)
            return None
        existing = self._apply(prepare)
        if existing is not None:
            return existing
        if stat.S_ISLNK(mode):
            target = os.fsencode(os.readlink(path))

            def mk_link(f):
                node = f.symlink(dir_ino, name, target, st.st_uid, st.st_gid)
                self._set_meta(f, node.ino, st, xattrs, node, fresh=True)
                return node.ino
            ino = self._apply(mk_link)
        else:
            rdev = st.st_rdev if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else 0
            node = self._apply(lambda f: f.create(dir_ino, name, mode, st.st_uid, st.st_gid,
                                                  rdev))
            ino = node.ino
            if stat.S_ISREG(mode) and st.st_size:
                node = self._content(node, path, st.st_size)
            if not stat.S_ISDIR(mode):             # a directory's come after its contents
                self._apply(lambda f: self._set_meta(f, ino, st, xattrs, node, fresh=True))
        if hard:
            self.links[key] = [ino, st.st_nlink - 1]
        return ino

    def _content(self, node, path: str, size: int):
        """Write the content of path into node; returns the up-to-date inode.  Files
        up to CHUNK are read whole (zero blocks become holes in the pool anyway);
        bigger ones by SEEK_DATA/SEEK_HOLE regions."""
        ino = node.ino
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise InvalidInput(f"cannot read file: {exc.strerror}", path=path) from None
        try:
            segs = [(0, size)] if size <= CHUNK else _data_segments(fd, size)
            for off, length in segs:
                pos = off
                while pos < off + length:
                    chunk = os.pread(fd, min(CHUNK, off + length - pos), pos)
                    if not chunk:
                        break
                    f = self._tree()
                    if node is None:
                        node = f.inode(ino)
                    f.write(node, pos, chunk)
                    self.since_bytes += len(chunk)
                    pos += len(chunk)
                    self._apply(lambda f: None)   # a sync point may drop the tree
                    if self._fst is not f:
                        node = None

            def fix_size(f):
                n = f.inode(ino) if node is None else node
                if n.size != size:
                    f.truncate(n, size)
                return n
            return self._apply(fix_size)
        finally:
            os.close(fd)


def import_dir(store, src: str, name: str, parent: str | None, labels, progress):
    if not os.path.isdir(src):
        raise NotFound("import source is not a directory", path=src)
    catalog.check_name(name)
    if store.exists(name):
        from ..errors import AlreadyExists
        raise AlreadyExists(f"a tree named {name!r} already exists")
    if parent is None:
        # A fresh tree: bulk-built in one transaction (see bulkimport.py).
        from .bulkimport import bulk_import
        return bulk_import(store, src, name, labels, progress)
    with store.staging(name, parent) as st:
        _Importer(store, st.work, progress).import_tree(src)
        st.commit(labels)
    return store.info(name)


def export_dir(store, name: str, dst: str, progress=None) -> None:
    """Write tree ``name`` into host directory ``dst`` (absent or empty).  Written
    through directory fds (hostout.py): planted symlinks are never followed.
    On any error what this export created is removed (``dst`` too if it made it)."""
    made = False
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    try:
        os.mkdir(dst, 0o700)
        made = True
    except FileExistsError:
        pass
    try:
        rootfd = os.open(dst, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except NotADirectoryError:
        raise InvalidInput("export destination must not exist or be an empty directory",
                           path=dst) from None
    try:
        if not made and os.listdir(rootfd):
            raise InvalidInput("export destination must not exist or be an empty directory",
                               path=dst)
        try:
            with store.env.read() as r:
                rec = catalog.get(r, name)
                fst = FileTree(NodeStore.of(r), rec.root, time.time_ns)
                _DirExport(fst, rootfd, dst, progress).run()
        except BaseException:
            try:
                hostout.remove_contents(rootfd)
                if made:
                    os.rmdir(dst)
            except OSError:
                pass                       # the original error is the one to report
            raise
    finally:
        os.close(rootfd)


class _Frame:
    """One directory on the export's explicit stack (no recursion over depth)."""
    __slots__ = ("node", "fd", "ident", "children", "parts", "path")

    def __init__(self, node, fd, children, parts, path):
        self.node, self.fd, self.children = node, fd, children
        self.ident = hostout.identity(fd)
        self.parts, self.path = parts, path


class _DirExport:
    """Depth-first, one directory fd open at a time; a directory's metadata is
    set when its contents are done (creating entries touches its times)."""

    def __init__(self, fst: FileTree, rootfd: int, dst: str, progress):
        self.fst, self.rootfd, self.dst, self.progress = fst, rootfd, dst, progress
        self.links: dict[int, tuple[tuple, bytes]] = {}   # ino -> (dir parts, name)

    def _frame(self, ino: int, fd: int, parts: tuple, path: str) -> _Frame:
        node = self.fst.inode(ino)
        children = list(self.fst.readdir(ino))
        children.reverse()                                # pop() in directory order
        return _Frame(node, fd, children, parts, path)

    def run(self) -> None:
        stack = [self._frame(ROOT_INO, os.dup(self.rootfd), (), self.dst)]
        try:
            while stack:
                top = stack[-1]
                if top.children:
                    child = self._entry(top, *top.children.pop()[1:3])
                    if child is not None:
                        os.close(top.fd)
                        top.fd = None
                        stack.append(child)
                    continue
                stack.pop()
                fd = top.fd
                if stack:
                    stack[-1].fd = hostout.up(fd, stack[-1].ident)
                self._meta_fd(fd, top.node)
                os.close(fd)
                top.fd = None
        finally:
            for fr in stack:
                if fr.fd is not None:
                    os.close(fr.fd)

    def _xattrs(self, ino: int):
        return [(k, self.fst.getxattr(ino, k)) for k in self.fst.listxattr(ino)]

    def _meta_fd(self, fd: int, node) -> None:
        hostout.set_meta_fd(fd, node.uid, node.gid, node.mode, self._xattrs(node.ino),
                            node.atime, node.mtime)

    def _entry(self, top: _Frame, name: bytes, ino: int):
        """Write one entry into top's directory; a directory's frame is returned."""
        fst, dfd = self.fst, top.fd
        node = fst.inode(ino)
        path = os.path.join(top.path, os.fsdecode(name)) if self.progress else None
        if self.progress:
            self.progress(path, node.size if node.is_reg else 0)
        if not node.is_dir and node.nlink > 1 and ino in self.links:
            parts, first = self.links[ino]
            sfd = dfd if parts == top.parts else hostout.open_parts(self.rootfd, parts)
            try:
                os.link(first, name, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
            finally:
                if sfd != dfd:
                    os.close(sfd)
            return None
        if node.is_dir:
            os.mkdir(name, 0o700, dir_fd=dfd)
            cfd = hostout.open_dir_at(dfd, name)
            return self._frame(ino, cfd, top.parts + (name,), path)
        if node.is_reg:
            fd = os.open(name, hostout.O_NEW, 0o600, dir_fd=dfd)
            try:
                _export_file(fst, node, fd)
                self._meta_fd(fd, node)
            finally:
                os.close(fd)
        else:
            if node.is_lnk:
                os.symlink(fst.readlink(ino), name, dir_fd=dfd)
            else:
                os.mknod(name, node.mode, node.rdev, dir_fd=dfd)
            hostout.set_meta_at(dfd, name, node.uid, node.gid, node.mode, self._xattrs(ino),
                                node.atime, node.mtime, node.is_lnk)
        if node.nlink > 1:
            self.links[ino] = (top.parts, name)
        return None


def _export_file(fst: FileTree, node, fd: int) -> None:
    inline = fst.inline(node.ino)
    if inline is not None:
        os.write(fd, inline[:node.size])
    else:
        bs = fst.bs
        for fb, start, n in fst.extents(node.ino):
            off = fb * bs
            for i in range(0, n, CHUNK // bs):
                k = min(CHUNK // bs, n - i)
                data = fst.blocks.read(start + i, k)
                end = min(off + (i + k) * bs, node.size)
                if end > off + i * bs:
                    os.pwrite(fd, data[:end - off - i * bs], off + i * bs)
    os.ftruncate(fd, node.size)
