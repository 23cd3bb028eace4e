"""Shared helpers of the FUSE tests: skip without /dev/fuse, mount fixtures."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

import pytest

HAVE_FUSE = os.path.exists("/dev/fuse") and shutil.which("fusermount3") is not None
needs_fuse = pytest.mark.skipif(not HAVE_FUSE, reason="needs /dev/fuse and fusermount3")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def public_dir() -> str:
    """A directory every uid can traverse (pytest's tmp_path is 0700)."""
    d = tempfile.mkdtemp(prefix="bs-fuse-", dir="/tmp")
    os.chmod(d, 0o755)
    return d


def _plain_python() -> str:
    """A Python any uid may execute (the venv's may sit under root's home)."""
    for cand in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(cand, os.X_OK):
            return cand
    return sys.executable


def run_as(uid: int, code: str) -> subprocess.CompletedProcess:
    """Run Python code as another uid/gid (root only); stdout carries the result."""
    def drop():
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    return subprocess.run([_plain_python(), "-c", code], capture_output=True, text=True,
                          preexec_fn=drop, timeout=60)


class Mounted:
    """A tree mounted in the background; ``close()`` unmounts and checks the store."""

    def __init__(self, store_path, name, **opts):
        from blockstore.fuse import mount
        self.base = public_dir()
        self.mnt = os.path.join(self.base, "mnt")
        os.mkdir(self.mnt)
        os.chmod(self.mnt, 0o755)
        self.store_path = str(store_path)
        self.name = name
        self.pid = mount(self.store_path, name, self.mnt, **opts)

    def p(self, *parts) -> str:
        return os.path.join(self.mnt, *parts)

    def umount(self) -> None:
        from blockstore.fuse import umount
        if os.path.ismount(self.mnt):
            umount(self.mnt)

    def close(self) -> None:
        try:
            self.umount()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def until(cond, limit: float) -> float:
    """Seconds until cond() held (polled every 10 ms); fails after ``limit``."""
    import time
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < limit, "the mount kept showing stale state"
        time.sleep(0.01)
    return time.monotonic() - t0


def write_synced(path, data: bytes, *, offset: int | None = None) -> None:
    """Write ``data`` and fsync: as a new (or truncated) file, or at ``offset``
    into the existing file."""
    flags = os.O_WRONLY if offset is not None else os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, 0o644)
    try:
        os.pwrite(fd, data, offset or 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def cache_drops() -> tuple[int, int]:
    """How often anyone asked the kernel to drop its caches since boot:
    /proc/vmstat's (drop_pagecache, drop_slab), counted at every write to
    /proc/sys/vm/drop_caches ((0, 0) where the counters do not exist)."""
    got = {}
    try:
        with open("/proc/vmstat") as f:
            for line in f:
                k, _, v = line.partition(" ")
                if k in ("drop_pagecache", "drop_slab"):
                    got[k] = int(v)
    except OSError:
        pass
    return got.get("drop_pagecache", 0), got.get("drop_slab", 0)


def while_caches_kept(attempt, tries: int = 4):
    """The result of ``attempt()`` (warm the kernel's caches of a mount, then
    prove they answer) from the first try during which no process dropped the
    kernel's caches (``echo N > /proc/sys/vm/drop_caches``: the cold benchmarks
    of tools/bench_fuse_tree.py do it, in this suite and in any other run on the
    machine; it evicts every unused dentry, inode and page, whoever cached
    them).  A try without a drop counts whatever it returns; the test is
    skipped when every try saw one."""
    for _ in range(tries):
        before = cache_drops()
        result = attempt()
        time.sleep(0.5)             # a drop still running counts once it has finished
        if cache_drops() == before:
            return result
    pytest.skip(f"the kernel's caches were dropped from outside during each of {tries} tries")


def check_ok(store_path) -> None:
    from blockstore import Store
    with Store.open(store_path, create=False) as s:
        rep = s.check()
        assert rep.ok, str(rep)


# Commit tree "c" of the store argv[1] as snapshot argv[2], from another process.
COMMIT_CODE = """
import sys
from blockstore import Store
with Store.open(sys.argv[1], create=False) as s:
    s.commit("c", sys.argv[2])
"""


def cached_bytes(path) -> int:
    """Bytes of ``path`` in the kernel's page cache (mincore(2) over a shared
    read-only mapping; for a FUSE file: the mount's own cache of it)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    page = os.sysconf("SC_PAGE_SIZE")
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return 0
        PROT_READ, MAP_SHARED = 1, 1
        addr = libc.mmap(None, size, PROT_READ, MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap failed", path)
        try:
            vec = ctypes.create_string_buffer((size + page - 1) // page)
            if libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore failed", path)
            return sum(b & 1 for b in vec.raw) * page
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


@contextmanager
def served_by_child(code: str, *args: str, env: dict | None = None):
    """Run ``python -c code MNT *args`` in a child process that mounts a file
    system at MNT (a fresh directory every uid can traverse) and serves it in
    its foreground; yield MNT once it is mounted, then unmount it, wait for the
    child (killed after 20 s) and remove the directory."""
    base = public_dir()
    mnt = os.path.join(base, "mnt")
    os.mkdir(mnt)
    proc = subprocess.Popen([sys.executable, "-c", code, mnt, *args],
                            stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 30
        while not os.path.ismount(mnt):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the file system did not mount"
            time.sleep(0.02)
        yield mnt
    finally:
        subprocess.run(["fusermount3", "-u", mnt], capture_output=True)
        try:
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
            if not os.path.ismount(mnt):
                os.rmdir(mnt)
                os.rmdir(base)
