"""Recursive copy between host paths and tree paths (``blockstore cp``).

Both sides offer the same os-like surface: the host side is the ``os``
module, a tree side is a ``TreeFS`` (which already speaks os).  ``copy``
walks the source with lstat (symlinks are copied as symlinks, never
followed), creates directories, regular files (1 MiB chunks; zero blocks
are not stored by the pool), symlinks, fifos and device nodes; with
``archive`` it also keeps owners, permissions and times (like ``cp -a``;
on the host, owners only when running as root).  Hard links in the source
are copied as separate files.  Sockets are skipped.
Cost: one read and one write of every byte copied.
"""
from __future__ import annotations

import errno
import os
import posixpath
import stat as S

from ..errors import InvalidInput, NotADirectory

CHUNK = 1 << 20


class HostSide:
    """The host filesystem, with the TreeFS method names."""

    join = staticmethod(os.path.join)
    basename = staticmethod(os.path.basename)
    dirname = staticmethod(os.path.dirname)
    lstat = staticmethod(os.lstat)
    stat = staticmethod(os.stat)
    readlink = staticmethod(os.readlink)
    symlink = staticmethod(os.symlink)
    mkdir = staticmethod(os.mkdir)
    chmod = staticmethod(os.chmod)
    utime = staticmethod(os.utime)
    open = staticmethod(open)

    def listdir(self, p):
        return sorted(os.listdir(p))

    def mknod(self, p, mode, dev):
        os.mknod(p, mode, dev)

    def chown(self, p, uid, gid, follow_symlinks=True):
        try:
            os.chown(p, uid, gid, follow_symlinks=follow_symlinks)
        except PermissionError:
            if os.geteuid() == 0:
                raise          # as cp -a: not being root is no error

    def isdir(self, p):
        return os.path.isdir(p)

    def exists(self, p):
        return os.path.lexists(p)


class TreeSide:
    """A tree (TreeFS), paths are absolute inside it."""

    join = staticmethod(posixpath.join)
    basename = staticmethod(posixpath.basename)
    dirname = staticmethod(posixpath.dirname)

    def __init__(self, tfs):
        self.t = tfs

    def __getattr__(self, name):
        return getattr(self.t, name)

    def listdir(self, p):
        return sorted(self.t.listdir(p))

    def mknod(self, p, mode, dev):
        self.t.mknod(p, mode, dev)

    def chown(self, p, uid, gid, follow_symlinks=True):
        self.t.chown(p, uid, gid, follow_symlinks=follow_symlinks)

    def exists(self, p):
        try:
            self.t.lstat(p)
            return True
        except OSError:
            return False


def target_path(src, spath: str, dst, dpath: str) -> str:
    """cp's rule: into DST when it is an existing directory, else DST itself."""
    if dst.isdir(dpath):
        name = src.basename(spath.rstrip("/")) or ""
        if not name:
            return dpath
        return dst.join(dpath, name)
    return dpath


def copy(src, spath: str, dst, dpath: str, archive: bool = False, progress=None) -> int:
    """Copy spath (any type) to dpath; returns bytes of file content copied."""
    st = src.lstat(spath)
    m = st.st_mode
    if S.S_ISDIR(m):
        if dst.exists(dpath):
            if not dst.isdir(dpath):
                raise NotADirectory("cannot copy a directory onto a non-directory", path=dpath)
        else:
            dst.mkdir(dpath, 0o700)
        total = 0
        for name in src.listdir(spath):
            total += copy(src, src.join(spath, name), dst, dst.join(dpath, name), archive,
                          progress)
        _meta(dst, dpath, st, archive, is_link=False)
        if progress:
            progress(dpath, 0)
        return total
    if dst.exists(dpath) and dst.isdir(dpath) and not S.S_ISLNK(dst.lstat(dpath).st_mode):
        raise InvalidInput("cannot overwrite a directory with a non-directory", path=dpath)
    total = 0
    if S.S_ISREG(m):
        with src.open(spath, "rb") as fi, dst.open(dpath, "wb") as fo:
            while True:
                buf = fi.read(CHUNK)
                if not buf:
                    break
                fo.write(buf)
                total += len(buf)
    elif S.S_ISLNK(m):
        if dst.exists(dpath):
            _unlink(dst, dpath)
        dst.symlink(src.readlink(spath), dpath)
    elif S.S_ISFIFO(m) or S.S_ISCHR(m) or S.S_ISBLK(m):
        if dst.exists(dpath):
            _unlink(dst, dpath)
        dst.mknod(dpath, m, st.st_rdev)
    else:
        return 0                          # sockets: nothing to copy
    _meta(dst, dpath, st, archive, is_link=S.S_ISLNK(m))
    if progress:
        progress(dpath, total)
    return total


def _unlink(side, p):
    (side.t.unlink if isinstance(side, TreeSide) else os.unlink)(p)


def _meta(dst, p, st, archive: bool, is_link: bool) -> None:
    if archive:
        dst.chown(p, st.st_uid, st.st_gid, follow_symlinks=not is_link)
    if not is_link:
        dst.chmod(p, S.S_IMODE(st.st_mode))
    if archive:
        try:
            dst.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=not is_link)
        except NotImplementedError:
            pass                          # os.utime: follow_symlinks=False unsupported here
        except OSError as exc:            # hosts without lutimes
            if exc.errno not in (errno.ENOSYS, errno.EOPNOTSUPP):
                raise
