"""A read that waits for the disk does not stall the mount's other requests
(adapter.read: page-cache misses of a clean mount go to a worker thread).

The disk is made slow in the daemon with the ``pool.before_pread`` failpoint
(every pool read that may block sleeps SLOW seconds), and every page-cache-only
read misses (``pool.before_nowait_pread``: a virtio disk backed by the host's
cache can finish the kernel's readahead before RWF_NOWAIT looks, which a slow
disk never does); the pool's pages are dropped from the page cache first.  With
uncommitted changes in the mount (``dirty``) the read is mapped in the batch
and its I/O still runs on a worker."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from blockstore import Store

from _fuse_helpers import check_ok, needs_fuse, public_dir

pytestmark = needs_fuse

SLOW = 1.0

DAEMON = """
import sys, time
from blockstore import failpoints
read_once = []

def slow(name):
    time.sleep(float(sys.argv[4]))
    read_once.append(True)

def miss(name):
    if not read_once:       # what the slow disk read since is in the page cache
        raise BlockingIOError(11, "a slow disk: not in the page cache")
failpoints.set("pool.before_pread", slow)
failpoints.set("pool.before_nowait_pread", miss)
from blockstore.fuse.daemon import serve
serve(sys.argv[1], sys.argv[2], sys.argv[3], commit_interval=float(sys.argv[5]))
"""


@pytest.mark.parametrize("dirty", [False, True], ids=["clean", "uncommitted"])
def test_a_slow_read_does_not_stall_other_requests(tmp_path, dirty):
    sp = str(tmp_path / "store")
    data = os.urandom(1 << 20)
    with Store.open(sp) as s:
        s.create("c")
        s.fs("c").write_bytes("/cold", data)
    fd = os.open(os.path.join(sp, "pool.data"), os.O_RDONLY)
    os.fdatasync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)     # the next read goes to the disk
    os.close(fd)
    mnt = os.path.join(public_dir(), "mnt")
    os.mkdir(mnt)
    proc = subprocess.Popen([sys.executable, "-c", DAEMON, sp, "c", mnt, str(SLOW),
                             "600" if dirty else "0.05"])
    try:
        deadline = time.monotonic() + 30
        while not os.path.ismount(mnt):
            assert proc.poll() is None and time.monotonic() < deadline, "mount failed"
            time.sleep(0.02)
        if dirty:                                   # a change that stays uncommitted
            with open(os.path.join(mnt, "new"), "wb") as f:
                f.write(b"n" * 10000)
        got = {}

        def slow_reader():
            t0 = time.monotonic()
            with open(os.path.join(mnt, "cold"), "rb") as f:
                got["data"] = f.read()
            got["took"] = time.monotonic() - t0
        t = threading.Thread(target=slow_reader)
        t.start()
        time.sleep(0.2)                             # the read is waiting on the "disk" now
        worst, answered_meanwhile = 0.0, 0
        for i in range(10):                         # requests that reach the daemon
            t0 = time.monotonic()
            assert sorted(os.listdir(mnt)) == (["cold", "new"] if dirty else ["cold"])
            assert not os.path.exists(os.path.join(mnt, f"missing{i}"))
            worst = max(worst, time.monotonic() - t0)
            answered_meanwhile += t.is_alive()
        assert worst < SLOW / 4, f"a request waited {worst:.2f} s behind the slow read"
        t.join(60)
        assert got["data"] == data and got["took"] >= SLOW
        # (on a loaded machine all ten may take most of the slow read's second)
        assert answered_meanwhile >= 3, "the slow read finished early: the probes proved nothing"
    finally:
        subprocess.run(["fusermount3", "-u", mnt], capture_output=True)
        proc.wait(30)
    check_ok(sp)
