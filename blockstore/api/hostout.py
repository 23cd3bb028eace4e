"""Writing files and directories on the host without following planted symlinks.

Contracts (what ``cp``/``tar`` do):

* ``replace_file(path)``: an output file (a tar) is written to a temporary
  file created O_CREAT|O_EXCL|O_NOFOLLOW in the same directory and renamed
  over ``path`` on success (a symlink at ``path`` is replaced itself, its
  target is never opened), unlinked on failure: a failed export leaves
  nothing behind.
* Directory trees are written through directory fds: every directory is
  opened with O_DIRECTORY|O_NOFOLLOW relative to its parent's fd, every
  file created with O_EXCL|O_NOFOLLOW, metadata set by fd or with
  AT_SYMLINK_NOFOLLOW.  A symlink swapped in for a directory while the
  export runs leads nowhere: the export keeps writing into the directory
  it made.  Only the current directory's fd is open (going back up is
  ``..`` from the child, checked against the parent's identity), so deep
  trees cost O(1) descriptors.
* ``remove_contents(fd)`` empties a directory iteratively, without
  following symlinks: what a failed directory export created goes away.

Only the destination the caller names (``path``'s directory, the export
directory) is resolved the ordinary way, following symlinks, as tar -C does.
"""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat

from ..errors import InvalidInput

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@contextlib.contextmanager
def replace_file(path, mode: int = 0o666):
    """A binary file object whose content replaces ``path`` when the block ends
    without an error; on any error nothing is left (see the module docstring)."""
    path = os.fspath(path)
    parent, base = os.path.split(os.path.abspath(path))
    if not base or path.endswith("/"):
        raise InvalidInput("output must name a file, not a directory", path=path)
    dfd = os.open(parent or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(os.stat(base, dir_fd=dfd, follow_symlinks=False).st_mode):
                raise InvalidInput("output is a directory; give a file name", path=path)
        for _ in range(100):
            tmp = f".{base[:200]}.{secrets.token_hex(6)}.tmp"
            try:
                fd = os.open(tmp, O_NEW, mode, dir_fd=dfd)
                break
            except FileExistsError:
                continue
        else:
            raise FileExistsError(errno.EEXIST, "no free temporary name", path)
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
            os.rename(tmp, base, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
    finally:
        os.close(dfd)


def open_dir_at(dfd: int, name) -> int:
    """fd of directory ``name`` in ``dfd``; a symlink there is refused (ENOTDIR)."""
    try:
        return os.open(name, O_DIR, dir_fd=dfd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotADirectoryError(errno.ENOTDIR, "is a symlink, not a directory",
                                     os.fsdecode(name)) from None
        raise


def open_parts(rootfd: int, parts) -> int:
    """fd of the directory reached from rootfd by ``parts``, each opened O_NOFOLLOW."""
    fd = os.dup(rootfd)
    for p in parts:
        try:
            nfd = open_dir_at(fd, p)
        finally:
            os.close(fd)
        fd = nfd
    return fd


def identity(fd: int) -> tuple[int, int]:
    """(st_dev, st_ino) of an open file."""
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def up(fd: int, parent_ident: tuple[int, int]) -> int:
    """fd of ``..`` of directory fd, which must still be the directory we came from."""
    pfd = os.open("..", O_DIR, dir_fd=fd)
    if identity(pfd) != parent_ident:
        os.close(pfd)
        raise InvalidInput("the destination was moved while it was being written")
    return pfd


def set_meta_fd(fd: int, uid: int, gid: int, mode: int, xattrs, atime: int, mtime: int) -> None:
    """Owner, xattrs, mode, times of an open file or directory.  Ownership first:
    chown clears file capabilities (security.capability) and set-id bits."""
    try:
        os.fchown(fd, uid, gid)
    except PermissionError:
        pass
    for k, v in xattrs:
        _setxattr(fd, k, v, True)
    os.fchmod(fd, stat.S_IMODE(mode))
    os.utime(fd, ns=(atime, mtime))


def set_meta_at(dfd: int, name, uid: int, gid: int, mode: int, xattrs, atime: int,
                mtime: int, is_link: bool) -> None:
    """The same for a symlink, fifo or device node ``name`` in ``dfd``, never
    following a symlink (fchownat/utimensat with AT_SYMLINK_NOFOLLOW; mode and
    xattrs through /proc/self/fd of the directory fd or of an O_PATH fd)."""
    try:
        os.chown(name, uid, gid, dir_fd=dfd, follow_symlinks=False)
    except PermissionError:
        pass
    via_dir = f"/proc/self/fd/{dfd}/{os.fsdecode(name)}"
    for k, v in xattrs:
        _setxattr(via_dir, k, v, False)
    if not is_link:
        chmod_nofollow(name, mode, dir_fd=dfd)
    os.utime(name, ns=(atime, mtime), dir_fd=dfd, follow_symlinks=False)


def chmod_nofollow(path, mode: int, dir_fd: int | None = None) -> None:
    """chmod of path itself; a symlink there is left alone (symlinks have no
    mode of their own), its target never changed.  Through an O_PATH fd."""
    pfd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if not stat.S_ISLNK(os.fstat(pfd).st_mode):
            os.chmod(f"/proc/self/fd/{pfd}", stat.S_IMODE(mode))
    finally:
        os.close(pfd)


def _setxattr(target, k, v, follow: bool) -> None:
    try:
        os.setxattr(target, k, v, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno not in (errno.ENOTSUP, errno.EPERM):
            raise


def remove_contents(fd: int) -> None:
    """Remove everything inside directory fd, never following a symlink.
    Iterative (any depth), one directory fd open at a time."""
    cur = os.dup(fd)
    # per level below fd: (identity of the parent, name in the parent, subdirs left in the parent)
    stack: list[tuple[tuple[int, int], str, list[str]]] = []
    try:
        pending = _clear_files(cur)
        while True:
            if pending:
                name = pending.pop()
                child = open_dir_at(cur, name)
                with contextlib.suppress(OSError):
                    os.fchmod(child, 0o700)          # a read-only directory we made
                stack.append((identity(cur), name, pending))
                os.close(cur)
                cur = child
                pending = _clear_files(cur)
                continue
            if not stack:
                return
            ident, name, pending = stack.pop()
            parent = up(cur, ident)
            os.close(cur)
            cur = parent
            os.rmdir(name, dir_fd=cur)
    finally:
        os.close(cur)


def _clear_files(fd: int) -> list[str]:
    """Unlink every non-directory in fd; returns the subdirectories."""
    dirs = []
    with os.scandir(fd) as it:
        entries = list(it)
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            dirs.append(e.name)
        else:
            os.unlink(e.name, dir_fd=fd)
    return dirs
