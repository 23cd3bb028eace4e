"""Import a host directory into a snapshot; export a tree to a host directory.

Import onto ``parent`` writes into a working clone of it (``Store.staging``,
staging.py: so unchanged files are not written again: a file whose type,
size, mtime, mode and owner match is kept, as rsync's quick check does),
committing every ``COMMIT_BYTES`` of data or ``COMMIT_ITEMS`` entries so
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

import errno
import os
import stat as S
import time

from .. import catalog
from ..btree.store import NodeStore
from ..errors import InvalidInput, NotFound
from ..fs import items as I
from ..fs.tree import FsTree

COMMIT_BYTES = 256 * 1024 * 1024
COMMIT_ITEMS = 20000
CHUNK = 8 * 1024 * 1024


def _xattrs(path: str) -> dict[bytes, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return {}
        raise
    out = {}
    for n in names:
        try:
            out[os.fsencode(n)] = os.getxattr(path, n, follow_symlinks=False)
        except OSError:
            continue
    return out


def _data_segments(fd: int, size: int):
    """(offset, length) of the data regions of a file (holes skipped)."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return
            yield pos, size - pos          # no SEEK_DATA support: all data
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, min(end, size) - start
        pos = end


class _Importer:
    """Runs inside ``store.batch()``: every ``env.write()`` is the batch's one
    transaction, so the importer keeps ONE ``FsTree`` on it and stores the
    working clone's root in the catalog only at sync points (every
    ``COMMIT_BYTES`` / ``COMMIT_ITEMS``) and at the end, not per operation."""

    def __init__(self, store, work: str, progress, layered: bool):
        self.store = store
        self.env = store.env
        self.work = work
        self.progress = progress
        self.layered = layered          # False: the working clone started empty
        # host (dev, ino) -> [tree ino, links not seen yet]: incomplete groups only
        self.links: dict[tuple[int, int], list] = {}
        self.since_bytes = 0
        self.since_items = 0
        self._w = None
        self._fst: FsTree | None = None

    def _tree(self) -> FsTree:
        if self._fst is None:
            with self.env.write() as w:          # joins the batch: stays open after the block
                self._w = w
                rec = catalog.get(w, self.work)
                self._fst = FsTree(NodeStore.of(w), rec.root, time.time_ns)
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
        if self.since_bytes >= COMMIT_BYTES or self.since_items >= COMMIT_ITEMS:
            self.flush()
            self.env.sync()                      # commits the batch and begins the next txn
            self._fst = self._w = None
            self.since_bytes = self.since_items = 0
        return out

    def _same(self, node, st) -> bool:
        return (S.S_IFMT(node.mode) == S.S_IFMT(st.st_mode) and node.mode == st.st_mode
                and node.size == (st.st_size if not S.S_ISDIR(st.st_mode) else node.size)
                and node.mtime == st.st_mtime_ns and node.uid == st.st_uid
                and node.gid == st.st_gid and node.rdev == (st.st_rdev if S.S_ISCHR(st.st_mode)
                                                           or S.S_ISBLK(st.st_mode) else 0))

    def _set_meta(self, fst: FsTree, ino: int, st, xattrs: dict, node=None,
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
        self._dir(src, I.ROOT_INO)
        # after its contents: creating entries touches the directory's times
        self._apply(lambda f: self._set_meta(f, I.ROOT_INO, st, _xattrs(src)))
        self.flush()

    def _dir(self, hostdir: str, dir_ino: int) -> None:
        try:
            names = sorted(os.listdir(hostdir))
        except OSError as exc:
            raise InvalidInput(f"cannot read directory: {exc.strerror}", path=hostdir) from None
        subdirs = []
        if self.layered:
            bnames = {os.fsencode(n) for n in names}

            def prune(f):
                for _, name, ino, dtype in list(f.readdir(dir_ino)):
                    if name not in bnames:
                        _remove_recursive(f, dir_ino, name)
            self._apply(prune)
        for n in names:
            p = os.path.join(hostdir, n)
            st = os.lstat(p)
            bn = os.fsencode(n)
            child = self._entry(dir_ino, bn, p, st)
            if S.S_ISDIR(st.st_mode):
                subdirs.append((p, child, st))
            if self.progress:
                self.progress(p, st.st_size if S.S_ISREG(st.st_mode) else 0)
        for p, child, st in subdirs:
            self._dir(p, child)
            xa = _xattrs(p)
            self._apply(lambda f, c=child, s=st, x=xa: self._set_meta(f, c, s, x))

    def _entry(self, dir_ino: int, name: bytes, path: str, st) -> int:
        self.since_items += 1
        mode = st.st_mode
        hard = not S.S_ISDIR(mode) and st.st_nlink > 1
        key = (st.st_dev, st.st_ino)
        xattrs = _xattrs(path)

        def prepare(f):
            """Reuse an identical existing entry, else clear the name; returns ino or None."""
            found = f.lookup(dir_ino, name) if self.layered else None
            group = self.links.get(key) if hard else None
            if group is not None:
                group[1] -= 1
                if group[1] <= 0:
                    del self.links[key]          # every link seen: forget the group
                if found and found[0] == group[0]:
                    return found[0]
                if found:
                    _remove_recursive(f, dir_ino, name)
                f.link(group[0], dir_ino, name)
                return group[0]
            if found is not None:
                node = f.inode(found[0])
                if S.S_ISDIR(mode) and node.is_dir:
                    return found[0]               # metadata is set after its contents
                if not hard and node.nlink == 1 and self._same(node, st):
                    self._set_meta(f, found[0], st, xattrs)
                    return found[0]
                _remove_recursive(f, dir_ino, name)
            return None
        existing = self._apply(prepare)
        if existing is not None:
            return existing
        if S.S_ISLNK(mode):
            target = os.fsencode(os.readlink(path))

            def mk_link(f):
                node = f.symlink(dir_ino, name, target, st.st_uid, st.st_gid)
                self._set_meta(f, node.ino, st, xattrs, node, fresh=True)
                return node.ino
            ino = self._apply(mk_link)
        else:
            rdev = st.st_rdev if S.S_ISCHR(mode) or S.S_ISBLK(mode) else 0
            node = self._apply(lambda f: f.create(dir_ino, name, mode, st.st_uid, st.st_gid,
                                                  rdev))
            ino = node.ino
            if S.S_ISREG(mode) and st.st_size:
                node = self._content(node, path, st.st_size)
            if not S.S_ISDIR(mode):             # a directory's come after its contents
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


def _remove_recursive(f: FsTree, dir_ino: int, name: bytes) -> None:
    found = f.lookup(dir_ino, name)
    if found is None:
        return
    node = f.inode(found[0])
    if node.is_dir:
        for _, n, _, _ in list(f.readdir(node.ino)):
            _remove_recursive(f, node.ino, n)
        f.rmdir(dir_ino, name)
    else:
        f.unlink(dir_ino, name)


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
        _Importer(store, st.work, progress, True).import_tree(src)
        st.commit(labels)
    return store.info(name)


def export_dir(store, name: str, dst: str, progress=None) -> None:
    if os.path.exists(dst) and (not os.path.isdir(dst) or os.listdir(dst)):
        raise InvalidInput("export destination must not exist or be an empty directory", path=dst)
    os.makedirs(dst, exist_ok=True)
    with store.env.read() as r:
        rec = catalog.get(r, name)
        fst = FsTree(NodeStore.of(r), rec.root, time.time_ns)
        links: dict[int, str] = {}
        dirs: list[tuple[str, object]] = []
        _export_dir(fst, I.ROOT_INO, dst, links, dirs, progress)
        for path, node in reversed(dirs):
            _apply_meta(fst, node, path, is_root=path == dst)


def _export_dir(fst: FsTree, dir_ino: int, hostdir: str, links, dirs, progress) -> None:
    dirs.append((hostdir, fst.inode(dir_ino)))
    for _, name, ino, _ in fst.readdir(dir_ino):
        p = os.path.join(hostdir, os.fsdecode(name))
        node = fst.inode(ino)
        if progress:
            progress(p, node.size if node.is_reg else 0)
        if not node.is_dir and node.nlink > 1 and ino in links:
            os.link(links[ino], p)
            continue
        if node.is_dir:
            os.mkdir(p, 0o700)
            _export_dir(fst, ino, p, links, dirs, progress)
            continue
        if node.is_lnk:
            os.symlink(fst.readlink(ino), p)
        elif node.is_reg:
            _export_file(fst, node, p)
        else:
            os.mknod(p, node.mode, node.rdev)
        if node.nlink > 1:
            links[ino] = p
        _apply_meta(fst, node, p)


def _export_file(fst: FsTree, node, path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        inline = fst._inline(node.ino)
        if inline is not None:
            os.write(fd, inline[:node.size])
        else:
            bs = fst.bs
            for fb, start, n in fst.extents(node.ino):
                off = fb * bs
                for i in range(0, n, CHUNK // bs):
                    k = min(CHUNK // bs, n - i)
                    data = fst.pool.read(start + i, k)
                    end = min(off + (i + k) * bs, node.size)
                    if end > off + i * bs:
                        os.pwrite(fd, data[:end - off - i * bs], off + i * bs)
        os.ftruncate(fd, node.size)
    finally:
        os.close(fd)


def _apply_meta(fst: FsTree, node, path: str, is_root: bool = False) -> None:
    for k in fst.listxattr(node.ino):
        try:
            os.setxattr(path, k, fst.getxattr(node.ino, k), follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EPERM):
                raise
    try:
        os.chown(path, node.uid, node.gid, follow_symlinks=False)
    except PermissionError:
        pass
    if not node.is_lnk:
        os.chmod(path, S.S_IMODE(node.mode))
    os.utime(path, ns=(node.atime, node.mtime), follow_symlinks=False)
