"""Import a host directory into a snapshot; export a tree to a host directory.

Import writes into a hidden working clone (of ``parent`` when given, so
unchanged files are not written again: a file whose type, size, mtime, mode
and owner match is kept, as rsync's quick check does), committing every
``COMMIT_BYTES`` of data or ``COMMIT_ITEMS`` entries so memory stays
bounded, then freezes it as the snapshot and drops the working clone.  On
any error the working clone is removed: no snapshot appears, nothing leaks.

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
import uuid

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
    def __init__(self, store, work: str, progress):
        self.store = store
        self.env = store.env
        self.work = work
        self.progress = progress
        self.links: dict[tuple[int, int], int] = {}
        self.since_bytes = 0
        self.since_items = 0

    def _apply(self, fn):
        """Run fn(fst) on the working clone inside the open batch."""
        with self.env.write() as w:
            rec = catalog.get(w, self.work)
            fst = FsTree(NodeStore.of(w), rec.root, time.time_ns)
            out = fn(fst)
            if fst.root != rec.root:
                rec.root = fst.root
                catalog.put(w, rec)
        if self.since_bytes >= COMMIT_BYTES or self.since_items >= COMMIT_ITEMS:
            self.env.sync()
            self.since_bytes = self.since_items = 0
        return out

    def _same(self, node, st) -> bool:
        return (S.S_IFMT(node.mode) == S.S_IFMT(st.st_mode) and node.mode == st.st_mode
                and node.size == (st.st_size if not S.S_ISDIR(st.st_mode) else node.size)
                and node.mtime == st.st_mtime_ns and node.uid == st.st_uid
                and node.gid == st.st_gid and node.rdev == (st.st_rdev if S.S_ISCHR(st.st_mode)
                                                           or S.S_ISBLK(st.st_mode) else 0))

    def _set_meta(self, fst: FsTree, ino: int, st, xattrs: dict) -> None:
        node = fst.inode(ino)
        node.mode = st.st_mode
        node.uid, node.gid = st.st_uid, st.st_gid
        node.atime, node.mtime, node.ctime = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
        fst.put_inode(node)
        old = set(fst.listxattr(ino))
        for k, v in xattrs.items():
            fst.setxattr(ino, k, v)
            old.discard(k)
        for k in old:
            fst.removexattr(ino, k)

    def import_tree(self, src: str) -> None:
        st = os.lstat(src)
        self._apply(lambda f: self._set_meta(f, I.ROOT_INO, st, _xattrs(src)))
        self._dir(src, I.ROOT_INO)

    def _dir(self, hostdir: str, dir_ino: int) -> None:
        try:
            names = sorted(os.listdir(hostdir))
        except OSError as exc:
            raise InvalidInput(f"cannot read directory: {exc.strerror}", path=hostdir) from None
        bnames = {os.fsencode(n) for n in names}
        subdirs = []

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
            found = f.lookup(dir_ino, name)
            if hard and key in self.links:
                if found and found[0] == self.links[key]:
                    return found[0]
                if found:
                    _remove_recursive(f, dir_ino, name)
                f.link(self.links[key], dir_ino, name)
                return self.links[key]
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
            ino = self._apply(lambda f: f.symlink(dir_ino, name, target, st.st_uid, st.st_gid).ino)
        else:
            rdev = st.st_rdev if S.S_ISCHR(mode) or S.S_ISBLK(mode) else 0
            ino = self._apply(lambda f: f.create(dir_ino, name, mode, st.st_uid, st.st_gid, rdev).ino)
            if S.S_ISREG(mode) and st.st_size:
                self._content(ino, path, st.st_size)
        self._apply(lambda f: self._set_meta(f, ino, st, xattrs))
        if hard:
            self.links[key] = ino
        return ino

    def _content(self, ino: int, path: str, size: int) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise InvalidInput(f"cannot read file: {exc.strerror}", path=path) from None
        try:
            for off, length in _data_segments(fd, size):
                pos = off
                while pos < off + length:
                    chunk = os.pread(fd, min(CHUNK, off + length - pos), pos)
                    if not chunk:
                        break
                    self._apply(lambda f, p=pos, c=chunk: f.write(f.inode(ino), p, c))
                    self.since_bytes += len(chunk)
                    pos += len(chunk)

            def fix_size(f):
                node = f.inode(ino)
                if node.size != size:
                    f.truncate(node, size)
            self._apply(fix_size)
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
    work = f"{name}@importing-{uuid.uuid4().hex[:8]}"
    if parent is not None:
        store.engine.clone(parent, work, labels={"blockstore.importing": "1"})
    else:
        store.create(work, kind="clone", labels={"blockstore.importing": "1"})
    try:
        with store.batch():
            _Importer(store, work, progress).import_tree(src)
        store.engine.snapshot(work, name, labels=labels)
        _set_parent(store, name, parent)
        store.remove(work)
        return store.info(name)
    except BaseException:
        try:
            store.remove(work)
        except Exception:
            pass
        raise


def _set_parent(store, name: str, parent: str) -> None:
    def work(w):
        rec = catalog.get(w, name)
        rec.parent = parent
        catalog.put(w, rec)
    store.env.transact(work)


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
