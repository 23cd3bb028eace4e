"""Which trees a live mount serves: lock files under ``STORE/fuse/``.

Files are named by the tree's fixed-length key (``treekeys.tree_key``), shown
as KEY below; NAME is the tree name.

* ``KEY.lock``: flock(LOCK_EX) held by the one process that mounts NAME as
  its tree (a second mount of NAME fails with Busy); its content is
  ``pid P at MOUNTPOINT`` for the error message.
* ``KEY.use``: flock(LOCK_SH) held by every process that serves NAME,
  as its tree or as a volume inside another tree's mount.  ``Store.remove``
  and ``Store.rename`` refuse a tree whose ``.use`` lock someone holds.

Locks die with their process (SIGKILL included), so a dead mount never
keeps a tree busy.  Costs: one open + flock per check.
"""
from __future__ import annotations

import fcntl
import os

from ..errors import Busy
from .treekeys import tree_key

LOCK_DIR = "fuse"
_RW_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC    # never through a symlink
_RO_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def _path(store_path: str, name: str, ext: str, make: bool = True) -> str:
    d = os.path.join(store_path, LOCK_DIR)
    if make:
        os.makedirs(d, mode=0o700, exist_ok=True)
    return os.path.join(d, tree_key(name) + ext)


def _holder_text(fd: int) -> str:
    return os.pread(fd, 4096, 0).decode(errors="replace").strip()


def claim(store_path: str, name: str, where: str) -> int:
    """Take NAME's exclusive mount lock for this process (Busy if another mount
    holds it); returns the fd that holds it (close it to release)."""
    fd = os.open(_path(store_path, name, ".lock"), _RW_FLAGS, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            text = _holder_text(fd)
        finally:
            os.close(fd)
        raise Busy(f"tree {name!r} is mounted already ({text or 'by another process'}); "
                   f"unmount it there first (`blockstore umount`), or clone it and mount "
                   f"the clone") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} at {where}\n".encode(), 0)
    return fd


def use(store_path: str, name: str) -> int:
    """Mark NAME as served by this process (shared); returns the fd holding it."""
    fd = os.open(_path(store_path, name, ".use"), _RW_FLAGS, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def in_use(store_path: str, name: str) -> bool:
    """True while some live process serves NAME (holds its ``.use`` lock)."""
    try:
        fd = os.open(_path(store_path, name, ".use", make=False), _RO_FLAGS)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)            # also drops the lock just taken
    return False


def refuse_if_mounted(store_path: str, name: str, doing: str) -> None:
    """Busy when NAME is served by a live mount."""
    if in_use(store_path, name):
        raise Busy(f"cannot {doing} {name!r}: it is mounted (`blockstore mount`, or as a "
                   f"volume of a mounted clone); unmount it first")
