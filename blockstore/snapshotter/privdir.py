"""Directories the snapshotter owns: created mode 0700, never through a
planted symlink, refused when someone else owns them.

``private_dir(path)`` creates every missing component of ``path`` with
``mkdirat`` relative to a descriptor of its (already verified) parent and
opens each component with ``O_NOFOLLOW|O_DIRECTORY``, so a symlink put in
place of any component (before or during the walk) makes it fail instead
of leading elsewhere.  The last component must be a directory owned by
this user with no access for group or others: a pre-existing one with a
wider mode is tightened when ``tighten`` (a directory the product owns
outright, like the snapshotter's root) and refused otherwise (the
directory of a socket path the user chose: ``/tmp`` is never chmod-ed).
Components above the last may be shared (``/run``, ``/tmp``) but must not
be symlinks.  Missing components are created 0700.
"""
from __future__ import annotations

import errno
import os
import stat

from ..errors import InvalidInput, PermissionDenied

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_component(parent_fd: int, part: str, create_mode: int | None) -> int:
    if create_mode is not None:
        try:
            os.mkdir(part, create_mode, dir_fd=parent_fd)
        except FileExistsError:
            pass
    try:
        return os.open(part, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise InvalidInput(f"{part!r} is a symlink or not a directory; refusing to "
                               "follow it") from None
        raise


def private_dir(path: str, tighten: bool = True) -> str:
    """Create (or verify) ``path`` as a 0700 directory owned by us; return its
    absolute path.  Missing parents are created 0700 too."""
    path = os.path.abspath(path)
    parts = [p for p in path.split("/") if p]
    fd = os.open("/", _DIR_FLAGS)
    try:
        for part in parts:
            nfd = _open_component(fd, part, 0o700)
            os.close(fd)
            fd = nfd
        st = os.fstat(fd)
        if not stat.S_ISDIR(st.st_mode):
            raise InvalidInput("not a directory", path=path)
        if st.st_uid != os.geteuid():
            raise PermissionDenied(f"owned by uid {st.st_uid}, not by us", path=path)
        if st.st_mode & 0o077:
            if not tighten:
                raise PermissionDenied(f"mode {stat.S_IMODE(st.st_mode):04o} lets others in; "
                                       "use a directory only this user can enter (0700)",
                                       path=path)
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return path


def private_subdir(parent: str, name: str) -> str:
    """``parent/name`` as a private directory (``parent`` made private first)."""
    if "/" in name or name in ("", ".", ".."):
        raise InvalidInput(f"bad directory name {name!r}")
    return private_dir(os.path.join(private_dir(parent), name))
