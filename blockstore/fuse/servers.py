"""What serves the inodes of a mount: one ``TreeServer`` per blockstore tree
(the mounted tree and every volume it mounts) and one ``HostServer`` per bind
or tmpfs mount.  Both offer the same inode-level calls, named after
``TreeView``'s, so the adapter translates FUSE requests without knowing which
kind it talks to.  Servers hold no storage logic: a TreeServer forwards to
TreeView; a HostServer forwards to the host's syscalls by path.

Threads: a TreeServer is called from the trio thread (its changes join the
batch that thread owns, see ``committer.py``) and, for data reads of a
clean mount that miss the page cache, from trio worker threads (their own
read transaction); a HostServer from trio worker threads and the trio
thread, guarding its inode table with a lock.
"""
from __future__ import annotations

import os
import stat
import threading

from ..errors import ReadOnly


def _lookup_many(srv, dir_ino, names):
    out = []
    for name in names:
        try:
            out.append(srv.lookup(dir_ino, name))
        except OSError:
            out.append(None)
    return out


class TreeServer:
    """Inode-level access to one blockstore tree (``TreeView``)."""

    kind = "tree"
    # Called on the trio thread (its changes join the mount's batch).
    inline = True

    def __init__(self, tfs, readonly: bool = False):
        self.tfs = tfs
        self.readonly = readonly or tfs.readonly

    def _w(self):
        if self.readonly:
            raise ReadOnly(f"{self.tfs.name!r} is mounted read-only")

    def root(self) -> int:
        return 1

    def getattr(self, ino):
        return self.tfs.getattr(ino)

    def lookup(self, dir_ino, name):
        return self.tfs.lookup(dir_ino, name)

    def readdir(self, dir_ino, after):
        """[(offset, name)] of the entries after offset ``after`` (the DIR_INDEX)."""
        return [(idx, name) for idx, name, _, _ in self.tfs.readdir(dir_ino, after)]

    def lookup_many(self, dir_ino, names):
        """[stat or None (gone)] of each name in the directory (one read view)."""
        return self.tfs.lookup_many(dir_ino, names)

    def create(self, dir_ino, name, mode, uid, gid, rdev=0):
        self._w()
        return self.tfs.create_at(dir_ino, name, mode, uid, gid, rdev)

    def symlink(self, dir_ino, name, target, uid, gid):
        self._w()
        return self.tfs.symlink_at(dir_ino, name, target, uid, gid)

    def link(self, ino, dir_ino, name):
        self._w()
        return self.tfs.link_at(ino, dir_ino, name)

    def unlink(self, dir_ino, name):
        self._w()
        self.tfs.unlink_at(dir_ino, name)

    def rmdir(self, dir_ino, name):
        self._w()
        self.tfs.rmdir_at(dir_ino, name)

    def rename(self, sdir, sname, ddir, dname, flags):
        self._w()
        self.tfs.rename_at(sdir, sname, ddir, dname, flags)

    def readlink(self, ino):
        return self.tfs.readlink_ino(ino)

    def setattr(self, ino, **kw):
        self._w()
        return self.tfs.setattr(ino, **kw)

    def open(self, ino, write: bool):
        if write:
            self._w()
        self.tfs.file_opened(ino)
        return None

    def release(self, ino, handle) -> None:
        self.tfs.file_closed(ino)

    def read(self, ino, handle, off, size, cached_only: bool = False):
        """``cached_only``: BlockingIOError instead of waiting for the disk."""
        return self.tfs.read_at(ino, off, size, cached_only=cached_only)

    def read_later(self, ino, handle, off, size):
        """Map the read now (the batch's view); the returned callable does the I/O
        on any thread (TreeView.read_later)."""
        return self.tfs.read_later(ino, off, size)

    def write(self, ino, handle, off, data):
        self._w()
        return self.tfs.write_at(ino, off, data)

    def seek(self, ino, handle, off, whence):
        """lseek SEEK_DATA / SEEK_HOLE: the resulting offset; ENXIO when there is
        none (at or past the end of file, or no data after ``off``)."""
        if whence not in (os.SEEK_DATA, os.SEEK_HOLE):
            raise OSError(22, "only SEEK_DATA and SEEK_HOLE are served")
        return self.tfs.seek_data_hole(ino, off, whence == os.SEEK_DATA)

    def append(self, ino, handle, data):
        """Write at the current end of file (O_APPEND), as one step."""
        return self.write(ino, handle, self.getattr(ino).st_size, data)

    def open_state(self) -> dict:
        """Open counts per inode (what unlink/release act on), for a batch replay."""
        return self.tfs.open_inodes()

    def set_open_state(self, counts: dict) -> None:
        self.tfs.set_open_inodes(counts)

    def getxattr(self, ino, name):
        return self.tfs.getxattr_ino(ino, name)

    def listxattr(self, ino):
        return self.tfs.listxattr_ino(ino)

    def setxattr(self, ino, name, value):
        self._w()
        self.tfs.setxattr_ino(ino, name, value)

    def removexattr(self, ino, name):
        self._w()
        self.tfs.removexattr_ino(ino, name)

    def forget(self, ino) -> None:
        pass

    def close(self) -> None:
        pass


class HostServer:
    """Path passthrough to a host directory (bind mounts, tmpfs).

    Local inode numbers are handed out on first sight of a path (root = 1) and
    map to paths relative to the host root; renames rewrite the moved path and
    everything below it.  A host file with several hard links is known by the
    last name it was looked up under.  Cost: one syscall per request plus an
    O(known inodes) rewrite per directory rename.
    """

    kind = "host"
    # Listings and changes run in worker threads (host syscalls may block).
    inline = False

    def __init__(self, root: str, readonly: bool):
        self.rootdir = os.path.realpath(root)
        self.readonly = readonly
        self._lock = threading.Lock()
        self._path = {1: b""}
        self._ino = {b"": 1}
        self._next = 2

    def root(self) -> int:
        return 1

    def _w(self):
        if self.readonly:
            raise ReadOnly("this directory is bound read-only")

    def _abs(self, ino) -> bytes:
        with self._lock:
            rel = self._path.get(ino)
        if rel is None:
            raise FileNotFoundError(2, "stale host inode")
        return os.path.join(os.fsencode(self.rootdir), rel) if rel else os.fsencode(self.rootdir)

    def _rel(self, dir_ino, name) -> bytes:
        with self._lock:
            d = self._path.get(dir_ino)
        if d is None:
            raise FileNotFoundError(2, "stale host inode")
        return os.path.join(d, name) if d else name

    def _known(self, rel: bytes) -> int:
        with self._lock:
            ino = self._ino.get(rel)
            if ino is None:
                ino, self._next = self._next, self._next + 1
                self._ino[rel] = ino
                self._path[ino] = rel
            return ino

    def _full(self, rel: bytes) -> bytes:
        return os.path.join(os.fsencode(self.rootdir), rel)

    def _stat(self, rel: bytes):
        st = os.lstat(self._full(rel) if rel else os.fsencode(self.rootdir))
        ino = self._known(rel)
        return os.stat_result((st.st_mode, ino) + tuple(st)[2:10] + (
            st.st_atime, st.st_mtime, st.st_ctime, st.st_atime_ns, st.st_mtime_ns,
            st.st_ctime_ns, st.st_blksize, st.st_blocks, st.st_rdev))

    def _drop(self, rel: bytes) -> None:
        with self._lock:
            ino = self._ino.pop(rel, None)
            if ino is not None:
                self._path.pop(ino, None)

    def getattr(self, ino):
        with self._lock:
            rel = self._path.get(ino)
        if rel is None:
            raise FileNotFoundError(2, "stale host inode")
        return self._stat(rel)

    def lookup(self, dir_ino, name):
        if name in (b".", b".."):
            raise PermissionError(1, "no . or .. lookups")
        return self._stat(self._rel(dir_ino, name))

    def readdir(self, dir_ino, after):
        names = sorted(os.listdir(self._abs(dir_ino)))
        return list(enumerate(names[after:], start=after + 1))

    def lookup_many(self, dir_ino, names):
        return _lookup_many(self, dir_ino, names)

    def create(self, dir_ino, name, mode, uid, gid, rdev=0):
        self._w()
        rel = self._rel(dir_ino, name)
        p = self._full(rel)
        if stat.S_ISDIR(mode):
            os.mkdir(p, mode & 0o7777)
        else:
            os.mknod(p, mode, rdev)
        os.chmod(p, mode & 0o7777)
        os.lchown(p, uid, gid)
        return self._stat(rel)

    def symlink(self, dir_ino, name, target, uid, gid):
        self._w()
        rel = self._rel(dir_ino, name)
        os.symlink(target, self._full(rel))
        os.lchown(self._full(rel), uid, gid)
        return self._stat(rel)

    def link(self, ino, dir_ino, name):
        self._w()
        rel = self._rel(dir_ino, name)
        os.link(self._abs(ino), self._full(rel))
        return self._stat(rel)

    def unlink(self, dir_ino, name):
        self._w()
        rel = self._rel(dir_ino, name)
        os.unlink(self._full(rel))
        self._drop(rel)

    def rmdir(self, dir_ino, name):
        self._w()
        rel = self._rel(dir_ino, name)
        os.rmdir(self._full(rel))
        self._drop(rel)

    def rename(self, sdir, sname, ddir, dname, flags):
        self._w()
        if flags:
            raise OSError(22, "rename flags are not supported on bind and tmpfs mounts")
        src, dst = self._rel(sdir, sname), self._rel(ddir, dname)
        os.rename(self._full(src), self._full(dst))
        with self._lock:
            gone = self._ino.pop(dst, None)
            if gone is not None:
                self._path.pop(gone, None)
            for rel in [r for r in self._ino if r == src or r.startswith(src + b"/")]:
                ino = self._ino.pop(rel)
                new = dst + rel[len(src):]
                self._ino[new] = ino
                self._path[ino] = new

    def readlink(self, ino):
        return os.readlink(self._abs(ino))

    def setattr(self, ino, mode=None, uid=None, gid=None, size=None, atime=None, mtime=None):
        self._w()
        p = self._abs(ino)
        if size is not None:
            os.truncate(p, size)
        if mode is not None:
            os.chmod(p, mode & 0o7777)
        if uid is not None or gid is not None:
            os.lchown(p, -1 if uid is None else uid, -1 if gid is None else gid)
        if atime is not None or mtime is not None:
            st = os.lstat(p)
            import time
            now = time.time_ns()
            a = st.st_atime_ns if atime is None else (now if atime == "now" else atime)
            m = st.st_mtime_ns if mtime is None else (now if mtime == "now" else mtime)
            os.utime(p, ns=(a, m), follow_symlinks=False)
        return self.getattr(ino)

    def open(self, ino, write: bool):
        if write:
            self._w()
        return os.open(self._abs(ino), (os.O_RDWR if write else os.O_RDONLY) | os.O_CLOEXEC)

    def release(self, ino, handle) -> None:
        os.close(handle)

    def read(self, ino, handle, off, size):
        return os.pread(handle, size, off)

    def write(self, ino, handle, off, data):
        self._w()
        return os.pwrite(handle, data, off)

    def seek(self, ino, handle, off, whence):
        """lseek SEEK_DATA / SEEK_HOLE on the host fd (reads and writes use
        pread/pwrite, so moving its file position is harmless)."""
        if whence not in (os.SEEK_DATA, os.SEEK_HOLE):
            raise OSError(22, "only SEEK_DATA and SEEK_HOLE are served")
        return os.lseek(handle, off, whence)

    def append(self, ino, handle, data):
        self._w()
        return os.pwrite(handle, data, os.fstat(handle).st_size)

    def fsync(self, handle) -> None:
        os.fsync(handle)

    def getxattr(self, ino, name):
        return os.getxattr(self._abs(ino), name, follow_symlinks=False)

    def listxattr(self, ino):
        return [os.fsencode(n) for n in os.listxattr(self._abs(ino), follow_symlinks=False)]

    def setxattr(self, ino, name, value):
        self._w()
        os.setxattr(self._abs(ino), name, value, follow_symlinks=False)

    def removexattr(self, ino, name):
        self._w()
        os.removexattr(self._abs(ino), name, follow_symlinks=False)

    def forget(self, ino) -> None:
        pass

    def close(self) -> None:
        pass
