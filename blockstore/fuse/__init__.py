"""Mount a blockstore tree as a real file system (FUSE, pyfuse3).

    from blockstore.fuse import mount, umount
    mount("/var/lib/mystore", "web", "/mnt/web")       # returns once mounted
    ...                                                # any program uses /mnt/web
    umount("/mnt/web")

A snapshot mounts read-only (writes fail with EROFS); a clone mounts
read-write with its volumes, bind and tmpfs mounts at their targets.  See
``adapter.py`` for the translation, commits and caching, ``daemon.py`` for
the process lifecycle and kill-safety.  Needs /dev/fuse and fusermount3.
"""
from __future__ import annotations

from .daemon import check_mountpoint, registered, serve, spawn, unmount
from .options import parse as parse_options

__all__ = ["mount", "umount", "registered", "check_mountpoint", "parse_options"]


def mount(store_path, name: str, mountpoint, foreground: bool = False, **opts) -> int | None:
    """Mount tree ``name`` of the store at ``mountpoint``.

    Background (default): start a daemon and return its pid once the mount is
    live; errors (NotFound tree, Busy already mounted, mount point not an
    empty directory, ...) are raised here.  ``foreground=True``: serve in this
    process until unmounted or SIGTERM/SIGINT, then return None.

    opts: readonly (bool), attr_timeout (seconds the kernel keeps entries and
    attributes of writable trees; default 3600: the watcher invalidates what
    changes; host directories keep 1 s),
    allow_other (default: when root), max_tasks (concurrent requests, 32),
    debug (libfuse debug output), commit_interval (seconds a change may stay
    uncommitted, default 0.05; see ``committer.py``), read_ahead_kb (the
    mount's kernel readahead window, default 1024 = 1 MiB read requests; set
    when root; None keeps the kernel's 128), write_behind (default True: a write
    is answered before its store work, which overlaps the writer's next
    request; see ``adapter.py`` "Write-behind"), dev and suid (root only;
    default off: the mount is nodev,nosuid, as mount(8) makes user mounts;
    on, device nodes and set-uid/set-gid files of the tree work, e.g. for a
    chroot into a mounted image), verify_reads (default False:
    the store's setting; True: every data block read is checked against its
    checksum and a mismatch answers EIO, as ``Store.open(verify_reads=True)``).  Options are checked first
    (``options.py``): an unknown one, a wrong type, NaN/infinite or out of
    range raises InvalidInput naming it, before any daemon starts.

    Durability: changes are grouped; fsync (or a ``Store.commit`` of the tree
    from any process) commits at once, otherwise within commit_interval.
    Other processes see a change once it is committed.
    """
    import os

    opts = parse_options(opts)   # InvalidInput naming a bad option, before anything starts
    if foreground:
        serve(os.fspath(store_path), name, os.fspath(mountpoint), **opts)
        return None
    return spawn(os.fspath(store_path), name, os.fspath(mountpoint), **opts)


def umount(mountpoint, lazy: bool = False) -> None:
    """Unmount; Busy (EBUSY) while files are open there unless ``lazy``.
    Also detaches the dead mount a SIGKILLed daemon leaves behind."""
    import os
    unmount(os.fspath(mountpoint), lazy=lazy)
