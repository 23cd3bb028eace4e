"""A mount's tree watcher takes its base state before the mount serves a
request.  Otherwise a commit made after the kernel cached an answer but
before the watcher's first poll becomes that poll's base and is never
invalidated: the mount shows the old state for as long as the kernel keeps
it (a negative entry, a listing).  The first poll is delayed here by a
failpoint in the daemon (served in the foreground of a child process), so
the commit always lands in that window."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

from blockstore import Store

from _fuse_helpers import needs_fuse, public_dir, until

pytestmark = needs_fuse

FRESH = 3.0


def _serve_with_slow_first_poll(sp, mnt: str) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import time
        from blockstore import failpoints
        from blockstore.fuse import mount
        first = []
        def slow_first(name):
            if not first:
                first.append(1)
                time.sleep(1.5)
        failpoints.set("treewatch.before_poll", slow_first)
        mount({str(sp)!r}, "c", {mnt!r}, foreground=True)
    """)
    env = dict(os.environ, BLOCKSTORE_FUSE_SERVER="0")
    p = subprocess.Popen([sys.executable, "-c", code], env=env)
    t0 = time.monotonic()
    while not os.path.ismount(mnt):
        assert p.poll() is None, "the daemon exited"
        assert time.monotonic() - t0 < 30, "the mount did not come up"
        time.sleep(0.01)
    return p


def test_a_commit_before_the_watchers_first_poll_is_seen(tmp_path):
    sp = tmp_path / "store"
    with Store.open(sp) as s:
        s.create("c")
        with s.fs("c") as fs:
            fs.makedirs("/d")
            fs.write_bytes("/d/a", b"a")
    base = public_dir()
    mnt = os.path.join(base, "mnt")
    os.mkdir(mnt)
    p = _serve_with_slow_first_poll(sp, mnt)
    try:
        assert not os.path.exists(os.path.join(mnt, "d", "late"))   # a negative entry
        assert sorted(os.listdir(os.path.join(mnt, "d"))) == ["a"]  # a cached listing
        with Store.open(sp) as s:
            with s.fs("c") as fs:
                fs.write_bytes("/d/late", b"l")                    # before the first poll
        until(lambda: os.path.exists(os.path.join(mnt, "d", "late")), FRESH)
        until(lambda: sorted(os.listdir(os.path.join(mnt, "d"))) == ["a", "late"], FRESH)
    finally:
        subprocess.run(["fusermount3", "-u", mnt], capture_output=True)
        try:
            p.wait(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
            os.rmdir(mnt)
            os.rmdir(base)
