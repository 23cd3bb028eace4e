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
* ``private_dir(path, parents=True)``: missing directories above ``path``
  are created too, each one the same way (mode 0700, opened
  ``O_NOFOLLOW`` relative to the descriptor of the one above it, checked
  like the leaf), so a symlink planted in place of a component being
  created is refused, not followed.  Components that already exist are
  taken as the system resolves them (``/var/run`` is a symlink on many
  systems), but each must be owned by root or us and writable by nobody
  else unless sticky (``/tmp``): no one else could rename what is made in
  it.
* ``tighten=False``: a directory the user chose for something others must
  not reach before its own mode is set (the directory of a socket path) is
  refused when its mode gives group or others any access, never chmod-ed
  (``/tmp`` is not ours to change).
* ``private_path`` / ``private_subdir``: the same checks for a caller that
  needs only the path (mount points, a staging area, a socket's directory).
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
        f"remove it, or use a directory of your own (for runtime state: set "
        f"XDG_RUNTIME_DIR)", path=None)


class PrivateDir:
    """An open directory checked as described in the module docstring; a context
    manager (closes the descriptor).  ``path`` is for messages only."""

    def __init__(self, fd: int, path: str):
        self.fd = fd
        self.path = path

    # -- the checks ---------------------------------------------------------------------------
    @classmethod
    def _open(cls, parent_fd: int | None, name: str, path: str,
              tighten: bool = True) -> "PrivateDir":
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
            if not stat.S_ISDIR(st.st_mode):
                raise _refuse(path, "it is not a directory")
            if st.st_mode & 0o022:
                raise _refuse(path, f"it is writable by group or others "
                                    f"(mode {stat.S_IMODE(st.st_mode):04o})")
            if st.st_mode & 0o077 and not tighten:
                raise _refuse(path, f"group or others can enter it (mode "
                                    f"{stat.S_IMODE(st.st_mode):04o}); it must be 0700")
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


def private_dir(path: str, *, parents: bool = False, tighten: bool = True) -> PrivateDir:
    """``path`` as a checked private directory.  Its parent must exist unless
    ``parents`` (then missing ones are created as private directories);
    ``tighten``: see the module docstring."""
    path = os.path.abspath(path)
    parent, leaf = os.path.split(path)
    if not leaf:
        raise _refuse(path, "it is the root directory")
    pfd = _open_parents(parent) if parents else \
        os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return PrivateDir._open(pfd, leaf, path, tighten)
    finally:
        os.close(pfd)


def _open_parents(path: str) -> int:
    """A descriptor of directory ``path``: its existing part opened as the
    system resolves it, each missing component below created private."""
    missing = []
    while True:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            break
        except FileNotFoundError:
            path, leaf = os.path.split(path)
            if not leaf:
                raise
            missing.append(leaf)
    try:
        _check_ancestors(path)
    except BaseException:
        os.close(fd)
        raise
    for leaf in reversed(missing):
        path = os.path.join(path, leaf)
        try:
            sub = PrivateDir._open(fd, leaf, path)
        finally:
            os.close(fd)
        fd, sub.fd = sub.fd, -1
    return fd


def _check_ancestors(path: str) -> None:
    """Every directory of ``path`` (as resolved) is owned by root or by us and
    writable by nobody else unless sticky (``/tmp``): no one else can rename
    or replace what we create below it."""
    real = os.path.realpath(path)
    parts = real.split("/")
    for i in range(1, len(parts) + 1):
        p = "/".join(parts[:i]) or "/"
        st = os.lstat(p)
        if st.st_uid not in (0, os.geteuid()):
            raise _refuse(p, f"it is owned by uid {st.st_uid}, not by uid {os.geteuid()}")
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise _refuse(p, f"it is writable by group or others without the sticky "
                             f"bit (mode {stat.S_IMODE(st.st_mode):04o})")


def private_path(path: str, *, tighten: bool = True) -> str:
    """``private_dir(path, parents=True, tighten=...)`` checked and closed: the
    absolute path, for callers that hand it to others (mount points, a socket)."""
    with private_dir(path, parents=True, tighten=tighten) as d:
        return d.path


def private_subdir(parent: str, name: str) -> str:
    """``parent/name`` as a private directory, ``parent`` checked first (created
    with its missing parents); returns its absolute path."""
    _check_leaf(name)
    with private_dir(parent, parents=True) as p, p.subdir(name) as d:
        return d.path


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
