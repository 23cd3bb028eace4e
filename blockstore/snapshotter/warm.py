"""Warming a spare's mount: what every container start reads, read before it is claimed.

A spare's FUSE mount is a new superblock: no dentries, no page cache.  The
container that claims it would send each lookup of its start (runc's mount
targets, the dynamic loader, libc) to the mount daemon while it starts.
``warm(root)`` does those lookups and reads in the background instead,
through the same mount, so they are in the kernel's caches (the mounts keep
entries and pages: ``fuse/adapter.py``) when the container asks.

It only reads: the tree is unchanged, and the clone stays private (reading
it gives no other container anything of it).  Paths are resolved inside
``root`` (an image's absolute symlinks point into the image, never to the
host); a missing path is skipped.  Cost: O(len(PATHS)) lookups plus at most
``MAX_FILE`` bytes read per file, a few MiB for a glibc image.
"""
from __future__ import annotations

import os
import stat

# The mount targets of an OCI runtime's default spec (runc looks each up
# before mounting on it) and the files every dynamically linked program of a
# glibc or musl image reads at its start; /bin/sh, the usual entrypoint
# shell.  A path an image lacks costs one negative lookup, which the mount
# keeps (glibc looks for /etc/ld.so.preload at every start).
DIRS = ("proc", "dev", "dev/pts", "dev/shm", "dev/mqueue", "sys", "sys/fs/cgroup", "run",
        "etc", "tmp")
FILES = ("etc/ld.so.cache", "etc/ld.so.preload", "etc/hosts", "etc/resolv.conf", "etc/hostname",
         "etc/passwd", "etc/group", "bin/sh",
         "lib64/ld-linux-x86-64.so.2", "lib/x86_64-linux-gnu/libc.so.6",
         "lib/ld-linux-aarch64.so.1", "lib/aarch64-linux-gnu/libc.so.6",
         "lib/ld-musl-x86_64.so.1", "lib/ld-musl-aarch64.so.1")
MAX_FILE = 8 << 20             # bytes read of one file at most
MAX_LINKS = 40                 # symlinks followed per path (the kernel's limit)
CHUNK = 1 << 20


def _resolve(root: str, rel: str) -> str | None:
    """``rel`` resolved inside ``root`` (symlinks followed as if ``root`` were
    "/"); None when a component is missing or the links loop."""
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while parts:
        p = parts.pop(0)
        if p == "..":
            if done:
                done.pop()
            continue
        path = os.path.join(root, *done, p)
        try:
            st = os.lstat(path)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_LINKS:
                return None
            try:
                target = os.readlink(path)
            except OSError:
                return None
            if target.startswith("/"):
                done = []
            parts = [q for q in target.split("/") if q not in ("", ".")] + parts
            continue
        done.append(p)
    return os.path.join(root, *done)


def _read(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return 0
    n = 0
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return 0
        while n < MAX_FILE:
            b = os.read(fd, CHUNK)
            if not b:
                break
            n += len(b)
        if n:
            os.fstat(fd)          # FUSE marks the atime stale after a read: asked again now
    except OSError:
        pass                          # best effort: the container reads it itself
    finally:
        os.close(fd)
    return n


def warm(root: str) -> int:
    """Look up ``DIRS`` and read ``FILES`` under mount ``root``; returns the bytes read."""
    for d in DIRS:
        _resolve(root, d)
    total = 0
    for f in FILES:
        path = _resolve(root, f)
        if path is not None:
            total += _read(path)
    return total
