"""Private directories and atomic file writes that follow no planted path.

Every file blockstore keeps outside a store (the mount registry; later a
snapshotter's or a cache's state) lives in a directory obtained here:

* ``private_dir(path)``: the directory exists (created with mode 0700 if it
  is absent), is a real directory (never a symlink to one), is owned by this
  process's effective uid and is writable by nobody else.  A directory
  owned by another uid, or writable by its group or others, is refused with
  ``PermissionDenied`` naming it: someone else may have created it or
  planted files in it.  Our own directory with read/search bits for others
  is tightened to 0700.  The directory is held open (``O_DIRECTORY |
  O_NOFOLLOW``) and every later call goes through that descriptor
  (``openat``, ``renameat``, ``unlinkat``), so renaming or replacing the
  path after the check cannot redirect a write.
* ``runtime_dir(component)``: ``private_dir`` of
  ``runtime_base()/component``, where ``runtime_base()`` is
  ``$XDG_RUNTIME_DIR/blockstore`` when that is set, ``/run/blockstore`` for
  root, else ``/tmp/blockstore-UID`` (both levels checked as above).
* ``PrivateDir.write_atomic(name, data)``: the data goes into a new file
  with a random name (``O_CREAT | O_EXCL | O_NOFOLLOW``, mode 0600, never an
  existing path), then is renamed over ``name``; a symlink planted at
  ``name`` is replaced, never written through.  Readers see the old or the
  new content.
* ``PrivateDir.read`` and ``open_append`` open with ``O_NOFOLLOW``.

The base (``$XDG_RUNTIME_DIR``, ``/run``, ``/tmp``) is taken as the
environment gives it; only what blockstore creates in it is checked.
Costs: one open and fstat per directory level, one ``fchmod`` at most;
a write is a create, a write and a rename (no fsync: runtime state does
not outlive a reboot).
"""
from __future__ import annotations

import errno
import os
import secrets
import stat

from .errors import PermissionDenied

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _refuse(path: str, why: str) -> PermissionDenied:
    return PermissionDenied(
        f"refusing directory {path}: {why}; it may be under another user's control: "
        f"remove it, or set XDG_RUNTIME_DIR to a directory of your own", path=None)


class PrivateDir:
    """An open directory checked as described in the module docstring; a context
    manager (closes the descriptor).  ``path`` is for messages only."""

    def __init__(self, fd: int, path: str):
        self.fd = fd
        self.path = path

    # -- the checks ---------------------------------------------------------------------------
    @classmethod
    def _open(cls, parent_fd: int | None, name: str, path: str) -> "PrivateDir":
        try:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            pass
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            # O_DIRECTORY|O_NOFOLLOW on a symlink gives ENOTDIR or ELOOP: say which it is
            st = os.lstat(name, dir_fd=parent_fd)
            raise _refuse(path, "it is a symbolic link" if stat.S_ISLNK(st.st_mode)
                          else "it is not a directory") from None
        try:
            st = os.fstat(fd)
            if st.st_uid != os.geteuid():
                raise _refuse(path, f"it is owned by uid {st.st_uid}, not by uid {os.geteuid()}")
            if st.st_mode & 0o022:
                raise _refuse(path, f"it is writable by group or others "
                                    f"(mode {stat.S_IMODE(st.st_mode):04o})")
            if stat.S_IMODE(st.st_mode) != 0o700:
                os.fchmod(fd, 0o700)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, path)

    def subdir(self, name: str) -> "PrivateDir":
        """The private directory ``name`` inside this one (created if absent)."""
        _check_leaf(name)
        return PrivateDir._open(self.fd, name, os.path.join(self.path, name))

    # -- files --------------------------------------------------------------------------------
    def write_atomic(self, name: str, data: bytes) -> None:
        """Replace ``name`` with a file holding ``data`` (mode 0600); see module docstring."""
        _check_leaf(name)
        for _ in range(100):
            tmp = f".tmp-{secrets.token_hex(8)}"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600, dir_fd=self.fd)
                break
            except FileExistsError:
                continue
        else:
            raise FileExistsError(errno.EEXIST, "no free temporary name", self.path)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            self.unlink(tmp)
            raise

    def read(self, name: str, limit: int = 1 << 20) -> bytes:
        """Up to ``limit`` bytes of ``name``; OSError (ELOOP for a symlink) if unreadable."""
        _check_leaf(name)
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     dir_fd=self.fd)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", os.path.join(self.path, name))
            return os.read(fd, limit)
        finally:
            os.close(fd)

    def unlink(self, name: str) -> bool:
        """Remove ``name`` if it is there; True if it was."""
        _check_leaf(name)
        try:
            os.unlink(name, dir_fd=self.fd)
            return True
        except FileNotFoundError:
            return False

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "PrivateDir":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except OSError:
            pass


def _check_leaf(name: str) -> None:
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not a plain file name: {name!r}")


def private_dir(path: str) -> PrivateDir:
    """``path`` as a checked private directory (its parent must exist)."""
    path = os.path.abspath(path)
    parent, leaf = os.path.split(path)
    pfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return PrivateDir._open(pfd, leaf, path)
    finally:
        os.close(pfd)


def runtime_base() -> str:
    """Where blockstore keeps runtime state (see the module docstring)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "blockstore")
    if os.geteuid() == 0 and os.path.isdir("/run") and os.access("/run", os.W_OK):
        return "/run/blockstore"
    return f"/tmp/blockstore-{os.geteuid()}"


def runtime_dir(component: str) -> PrivateDir:
    """The private directory ``runtime_base()/component`` (both levels checked)."""
    with private_dir(runtime_base()) as base:
        return base.subdir(component)


def open_append(path: str, mode: int = 0o600) -> int:
    """An fd appending to the regular file ``path`` (created with ``mode`` if absent),
    opened without following a symlink at its last component; refuses a file
    with other hard links (one planted to a victim file)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PermissionDenied("refusing to append to a symbolic link", path=path) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise PermissionDenied("refusing to append to a file that is not a plain file "
                                   "with one link", path=path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd
