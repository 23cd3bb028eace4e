"""Kept read views (``Store.keep_read_views``): reads outside a batch reuse their
thread's last view only while nothing was committed since, by any process;
a view that fell behind is replaced at its next use and dropped by
``release_read_views``, and a view in use is never dropped under its reader."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

from blockstore import Store


def _commit_elsewhere(sp, path: str, data: bytes) -> None:
    """Write a file of tree "t" from another process (its own LMDB environment)."""
    code = textwrap.dedent(f"""
        from blockstore import Store
        with Store.open({str(sp)!r}, create=False) as s:
            with s.fs("t") as fs:
                fs.write_bytes({path!r}, {data!r})
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def _our_readers(store) -> int:
    """LMDB readers of this process's environment that hold a snapshot."""
    lines = store.env.env.readers().splitlines()[1:]
    return sum(1 for ln in lines if ln.split()[0] == str(os.getpid()) and ln.split()[2] != "-")


def _keeping(s):
    """Tree "t" with /a = b"1" in store ``s``, which keeps read views; a view of it."""
    s.create("t")
    with s.fs("t") as fs:
        fs.write_bytes("/a", b"1")
    s.keep_read_views(True)
    return s.fs("t")


def test_a_kept_view_shows_a_commit_of_another_process(sp):
    with Store.open(sp) as s:
        tv = _keeping(s)
        assert tv.read_bytes("/a") == b"1"          # the view is kept now
        assert _our_readers(s) == 1
        _commit_elsewhere(sp, "/a", b"2")
        assert tv.read_bytes("/a") == b"2"          # a view behind the commit is not reused
        assert tv.exists("/a") and not tv.exists("/b")
        _commit_elsewhere(sp, "/b", b"3")
        assert tv.read_bytes("/b") == b"3"
        tv.close()
        s.keep_read_views(False)
        assert _our_readers(s) == 0


def test_release_drops_views_behind_the_newest_commit_and_idle_ones(sp):
    with Store.open(sp) as s:
        s.create("t")
        s.keep_read_views(True)
        tv = s.fs("t")
        assert not tv.exists("/a")
        s.release_read_views(idle=3600)              # newest and just used: kept
        assert _our_readers(s) == 1
        _commit_elsewhere(sp, "/a", b"1")
        s.release_read_views(idle=3600)              # behind the commit: dropped
        assert _our_readers(s) == 0
        assert tv.exists("/a")
        assert _our_readers(s) == 1
        s.release_read_views(idle=1e-9)              # unused longer than idle: dropped
        assert _our_readers(s) == 0
        tv.close()


def test_a_view_in_use_is_not_dropped_under_its_reader(sp):
    with Store.open(sp) as s:
        s.create("t")
        with s.fs("t") as fs:
            fs.write_bytes("/a", b"x" * 10000)
        s.keep_read_views(True)
        tv = s.fs("t")
        env = s.env

        def read_while_released(txn):
            t = threading.Thread(target=s.release_read_views)     # drop all, meanwhile
            t.start()
            t.join()
            return txn.t.get(b"no such key") is None           # the txn still works

        assert tv.read_bytes("/a") == b"x" * 10000               # a view is kept
        assert env.in_view(read_while_released)
        assert tv.read_bytes("/a") == b"x" * 10000
        tv.close()


def test_a_mount_drops_its_view_once_a_commit_leaves_it_behind(tmp_path):
    """A mount daemon keeps its request thread's view between requests; after a
    commit by another process the old view must go within a few polls, or it
    would pin what later commits free (LMDB pages, pool blocks) for as long as
    the mount stays idle."""
    import pytest
    from _fuse_helpers import HAVE_FUSE, Mounted, until
    if not HAVE_FUSE:
        pytest.skip("needs /dev/fuse and fusermount3")
    sp = tmp_path / "store"
    with Store.open(sp) as s:
        s.create("t")
        with s.fs("t") as fs:
            fs.write_bytes("/a", b"1")
    m = Mounted(sp, "t")
    try:
        with open(m.p("a"), "rb") as f:         # a request: the daemon keeps a view
            assert f.read() == b"1"

        def daemon_views(s) -> list[int]:
            lines = s.env.env.readers().splitlines()[1:]
            return [int(ln.split()[2]) for ln in lines
                    if ln.split()[0] == str(m.pid) and ln.split()[2] != "-"]
        with Store.open(sp) as s:
            assert daemon_views(s), "the daemon keeps no view between requests"
            with s.fs("t") as fs:
                fs.write_bytes("/b", b"2")      # a commit the daemon's view is behind
            last = s.env.env.info()["last_txnid"]
            until(lambda: all(v >= last for v in daemon_views(s)), 3.0)
    finally:
        m.close()


def test_stats_answered_in_a_kept_view_follow_commits(sp):
    """The inode-level getattr/lookup (a mount's) remember stats per read view;
    a commit elsewhere gives a new view, so new stats."""
    with Store.open(sp) as s:
        tv = _keeping(s)
        ino = tv.lookup(1, b"a").st_ino
        before = tv.getattr(ino)
        assert before.st_size == 1 and tv.getattr(ino) == before
        _commit_elsewhere(sp, "/a", b"22222")
        assert tv.getattr(ino).st_size == 5
        assert tv.lookup(1, b"a").st_size == 5
        tv.close()


def test_a_nested_read_on_the_same_thread_leaves_one_view(sp):
    """A read inside a read (same thread) opens a view of its own; when both
    are done one view is kept and the other's reader slot is freed at once."""
    with Store.open(sp) as s:
        tv = _keeping(s)
        env = s.env
        inner = env.in_view(lambda r: env.in_view(lambda r2: r2 is not r))
        assert inner
        assert _our_readers(s) == 1
        tv.close()
