#!/usr/bin/env python3
"""Minimal pyfuse3 passthrough of a host directory: the baseline of ``bench.py fuse``.

``_passthrough_fuse.py SRC MOUNTPOINT`` serves SRC at MOUNTPOINT in the
foreground until unmounted (fusermount3 -u) or SIGTERM.  Inodes map to paths
(first name seen); syscalls run inline on the trio thread, as in pyfuse3's
own passthrough example: the cheapest honest Python FUSE file system.
Same mount options as blockstore's (default_permissions, noatime, 1 MiB
max_write, no writeback cache) so that ratios compare the adapters only.
"""
from __future__ import annotations

import os
import signal
import sys

import pyfuse3
import trio


class Passthrough(pyfuse3.Operations):
    def __init__(self, src: str):
        super().__init__()
        self.path = {pyfuse3.ROOT_INODE: src}
        self.ino = {src: pyfuse3.ROOT_INODE}
        self.next = pyfuse3.ROOT_INODE + 1
        self.fds: dict[int, int] = {}

    def _known(self, p):
        i = self.ino.get(p)
        if i is None:
            i, self.next = self.next, self.next + 1
            self.ino[p] = i
            self.path[i] = p
        return i

    def _attr(self, p):
        try:
            st = os.lstat(p)
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)
        e = pyfuse3.EntryAttributes()
        for k in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_rdev", "st_size",
                  "st_atime_ns", "st_mtime_ns", "st_ctime_ns", "st_blocks"):
            setattr(e, k, getattr(st, k))
        e.st_blksize = 1 << 20
        e.st_ino = self._known(p)
        e.attr_timeout = e.entry_timeout = 1.0
        return e

    def _p(self, parent, name):
        return os.path.join(self.path[parent], os.fsdecode(name))

    async def lookup(self, parent, name, ctx=None):
        return self._attr(self._p(parent, name))

    async def getattr(self, inode, ctx=None):
        return self._attr(self.path[inode])

    async def setattr(self, inode, attr, fields, fh, ctx):
        p = self.path[inode]
        try:
            if fields.update_size:
                os.truncate(p, attr.st_size)
            if fields.update_mode:
                os.chmod(p, attr.st_mode & 0o7777)
            if fields.update_atime or fields.update_mtime:
                st = os.lstat(p)
                os.utime(p, ns=(attr.st_atime_ns if fields.update_atime else st.st_atime_ns,
                                attr.st_mtime_ns if fields.update_mtime else st.st_mtime_ns))
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)
        return self._attr(p)

    async def opendir(self, inode, ctx):
        return inode

    async def readdir(self, fh, start_id, token):
        d = self.path[fh]
        names = sorted(os.listdir(d))
        for i, n in enumerate(names[start_id:], start=start_id + 1):
            if not pyfuse3.readdir_reply(token, os.fsencode(n), self._attr(os.path.join(d, n)), i):
                break

    async def mkdir(self, parent, name, mode, ctx):
        p = self._p(parent, name)
        try:
            os.mkdir(p, mode)
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)
        return self._attr(p)

    async def unlink(self, parent, name, ctx):
        p = self._p(parent, name)
        try:
            os.unlink(p)
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)
        i = self.ino.pop(p, None)
        if i is not None:
            self.path.pop(i, None)

    async def rmdir(self, parent, name, ctx):
        try:
            os.rmdir(self._p(parent, name))
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)

    async def open(self, inode, flags, ctx):
        fd = os.open(self.path[inode], flags & ~os.O_CREAT)
        self.fds[fd] = fd
        return pyfuse3.FileInfo(fh=fd)

    async def create(self, parent, name, mode, flags, ctx):
        p = self._p(parent, name)
        try:
            fd = os.open(p, flags | os.O_CREAT | os.O_TRUNC, mode)
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)
        return pyfuse3.FileInfo(fh=fd), self._attr(p)

    async def read(self, fh, off, size):
        return os.pread(fh, size, off)

    async def write(self, fh, off, buf):
        return os.pwrite(fh, buf, off)

    async def fsync(self, fh, datasync):
        os.fsync(fh)

    async def release(self, fh):
        os.close(fh)

    async def getxattr(self, inode, name, ctx):
        raise pyfuse3.FUSEError(pyfuse3.ENOATTR)

    async def statfs(self, ctx):
        st = os.statvfs(self.path[pyfuse3.ROOT_INODE])
        s = pyfuse3.StatvfsData()
        for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                  "f_ffree", "f_favail", "f_namemax"):
            setattr(s, k, getattr(st, k))
        return s


def main() -> None:
    src, mnt = os.path.abspath(sys.argv[1]), sys.argv[2]
    pyfuse3.init(Passthrough(src), mnt, set(pyfuse3.default_options) | {
        "fsname=passthrough", "noatime"})

    async def run():
        async with trio.open_nursery() as n:
            async def stop():
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as s:
                    async for _ in s:
                        pyfuse3.terminate()
                        return
            n.start_soon(stop)
            await pyfuse3.main()
            n.cancel_scope.cancel()
    try:
        trio.run(run)
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    main()
