"""Recursive copy between host paths and tree paths (``blockstore cp``).

Both sides offer the same os-like surface: the host side is the ``os``
module, a tree side is a ``TreeView`` (which already speaks os).  ``copy``
walks the source with lstat (symlinks are copied as symlinks, never
followed), creates directories, regular files (1 MiB chunks; zero blocks
are not stored by the pool), symlinks, fifos and device nodes; with
``archive`` it also keeps owners, permissions and times (like ``cp -a``;
on the host, owners only when running as root).  Hard links in the source
are copied as separate files.  Sockets are skipped.

Destinations as cp/tar treat them: a symlink at a file's destination is
replaced (never written through: the host side opens with O_NOFOLLOW); a
directory never replaces a non-directory (a symlink included: "cannot
overwrite non-directory"); a directory is never copied into itself.  The
walk is an explicit stack (trees of any depth).  The host side checks each
destination component with lstat; a race with a writer of the destination
directory is out of scope (``export`` writes through directory fds).
Cost: one read and one write of every byte copied.
"""
from __future__ import annotations

import errno
import os
import posixpath
import stat as statmod

from ..api import hostout
from ..errors import InvalidInput, NotADirectory

CHUNK = 1 << 20


class HostSide:
    """The host filesystem, with the TreeView method names."""

    join = staticmethod(os.path.join)
    basename = staticmethod(os.path.basename)
    dirname = staticmethod(os.path.dirname)
    lstat = staticmethod(os.lstat)
    stat = staticmethod(os.stat)
    readlink = staticmethod(os.readlink)
    symlink = staticmethod(os.symlink)
    mkdir = staticmethod(os.mkdir)
    utime = staticmethod(os.utime)
    open = staticmethod(open)
    unlink = staticmethod(os.unlink)

    def chmod(self, p, mode):
        hostout.chmod_nofollow(p, mode)

    def create(self, p):
        """A file object writing p: created or truncated, never through a symlink."""
        return os.fdopen(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, 0o666), "wb")

    def listdir(self, p):
        return sorted(os.listdir(p))

    def entries(self, p, st=None):
        """[(name, lstat)] of directory p, sorted by name."""
        with os.scandir(p) as it:
            return sorted((e.name, e.stat(follow_symlinks=False)) for e in it)

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
    """A tree (TreeView), paths are absolute inside it."""

    join = staticmethod(posixpath.join)
    basename = staticmethod(posixpath.basename)
    dirname = staticmethod(posixpath.dirname)

    def __init__(self, tfs):
        self.t = tfs

    def __getattr__(self, name):
        return getattr(self.t, name)

    def listdir(self, p):
        return sorted(self.t.listdir(p))

    def entries(self, p, st=None):
        """[(name, lstat)] of directory p, sorted by name.  With p's lstat ``st``
        (and p not a mount point) by inode: no path lookup, so a walk costs
        O(entries), not O(entries x depth)."""
        t = self.t
        if st is not None and st.st_dev == t.dev and t.mounts.route(p)[0] is t:
            return sorted((os.fsdecode(name), t.getattr(ino))
                          for _, name, ino, _ in t.readdir(st.st_ino))
        return sorted((e.name, e.stat(follow_symlinks=False)) for e in t.scandir(p))

    def mknod(self, p, mode, dev):
        self.t.mknod(p, mode, dev)

    def create(self, p):
        return self.t.open(p, "wb")

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


def _lstat(side, p):
    """lstat of p, or None when nothing is there."""
    try:
        return side.lstat(p)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise


def _make_dir(dst, p: str) -> None:
    st = _lstat(dst, p)
    if st is None:
        dst.mkdir(p, 0o700)
    elif not statmod.S_ISDIR(st.st_mode):
        raise NotADirectory("cannot overwrite non-directory with directory", path=p)


def _not_into_itself(src, spath: str, dst, dpath: str) -> None:
    """cp's refusal: a directory copied to itself or below itself never ends."""
    if isinstance(src, TreeSide) and isinstance(dst, TreeSide) and src.t.name == dst.t.name \
            and dst.t.is_within(dpath, spath):
        raise InvalidInput(f"cannot copy a directory, {src.t.name}:{spath}, into itself, "
                           f"{dst.t.name}:{dpath}")


def copy(src, spath: str, dst, dpath: str, archive: bool = False, progress=None) -> int:
    """Copy spath (any type) to dpath; returns bytes of file content copied."""
    st = src.lstat(spath)
    if not statmod.S_ISDIR(st.st_mode):
        return _copy_leaf(src, spath, st, dst, dpath, archive, progress)
    _not_into_itself(src, spath, dst, dpath)
    _make_dir(dst, dpath)
    total = 0
    stack = [(spath, dpath, st, src.entries(spath, st)[::-1])]
    while stack:
        sp, dp, sst, names = stack[-1]
        if not names:                      # contents done: the directory's own metadata
            stack.pop()
            _meta(dst, dp, sst, archive, is_link=False)
            if progress:
                progress(dp, 0)
            continue
        n, cst = names.pop()
        csp, cdp = src.join(sp, n), dst.join(dp, n)
        if statmod.S_ISDIR(cst.st_mode):
            _make_dir(dst, cdp)
            stack.append((csp, cdp, cst, src.entries(csp, cst)[::-1]))
        else:
            total += _copy_leaf(src, csp, cst, dst, cdp, archive, progress)
    return total


def _copy_leaf(src, spath: str, st, dst, dpath: str, archive: bool, progress) -> int:
    """Copy one non-directory; a symlink at dpath is replaced, never followed."""
    m = st.st_mode
    if statmod.S_ISSOCK(m):
        return 0                          # sockets: nothing to copy
    old = _lstat(dst, dpath)
    if old is not None and statmod.S_ISDIR(old.st_mode):
        raise InvalidInput("cannot overwrite a directory with a non-directory", path=dpath)
    if old is not None and not (statmod.S_ISREG(m) and statmod.S_ISREG(old.st_mode)):
        dst.unlink(dpath)                 # a symlink, fifo or node: replaced, never opened
    total = 0
    if statmod.S_ISREG(m):
        with src.open(spath, "rb") as fi, dst.create(dpath) as fo:
            while True:
                buf = fi.read(CHUNK)
                if not buf:
                    break
                fo.write(buf)
                total += len(buf)
    elif statmod.S_ISLNK(m):
        dst.symlink(src.readlink(spath), dpath)
    else:
        dst.mknod(dpath, m, st.st_rdev)
    _meta(dst, dpath, st, archive, is_link=statmod.S_ISLNK(m))
    if progress:
        progress(dpath, total)
    return total


def _meta(dst, p, st, archive: bool, is_link: bool) -> None:
    if archive:
        dst.chown(p, st.st_uid, st.st_gid, follow_symlinks=False)
    if not is_link:
        dst.chmod(p, statmod.S_IMODE(st.st_mode))
    if archive:
        try:
            dst.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        except NotImplementedError:
            pass                          # os.utime: follow_symlinks=False unsupported here
        except OSError as exc:            # hosts without lutimes
            if exc.errno not in (errno.ENOSYS, errno.EOPNOTSUPP):
                raise
