"""Group commit of a FUSE mount (blockstore/fuse/committer.py): what is durable
and visible when.  Mounts with a long commit_interval make "not committed yet"
deterministic; the default (50 ms) is tested for its bound.  Note that any
Store.open elsewhere asks the mount to commit (writers.flush_all): reads of
"not yet committed" state go through a store handle opened before the write."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from blockstore import Store
from blockstore.api import writers
from blockstore.fuse import mount, umount
from blockstore.fuse.daemon import process_alive

from _fuse_helpers import COMMIT_CODE, Mounted, check_ok, needs_fuse

pytestmark = needs_fuse

LONG = 600.0        # seconds: nothing commits by age during a test


def _kill_and_remount(m: Mounted, sp) -> None:
    os.kill(m.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process_alive(m.pid) and time.monotonic() < deadline:    # a zombie counts as dead
        time.sleep(0.01)
    umount(m.mnt)                   # detach the dead mount
    check_ok(sp)
    m.pid = mount(sp, "c", m.mnt)


def test_fsync_is_durable_across_sigkill_and_unsynced_batch_is_lost(sp):
    m = Mounted(sp, "c", commit_interval=LONG)
    try:
        with open(m.p("synced"), "wb") as f:
            f.write(b"D" * 200000)
            f.flush()
            os.fsync(f.fileno())
        with open(m.p("unsynced"), "wb") as f:       # returned, closed, never fsync'ed
            f.write(b"U" * 1000)
        assert open(m.p("unsynced"), "rb").read() == b"U" * 1000   # the mount sees it
        _kill_and_remount(m, sp)
        assert open(m.p("synced"), "rb").read() == b"D" * 200000
        assert not os.path.exists(m.p("unsynced"))  # the uncommitted batch, and only it, is lost
        # fsync of a directory commits too (a create with no data)
        open(m.p("made"), "w").close()
        d = os.open(m.mnt, os.O_RDONLY)
        os.fsync(d)
        os.close(d)
        _kill_and_remount(m, sp)
        assert os.path.exists(m.p("made"))
    finally:
        m.close()
    check_ok(sp)




def test_store_commit_elsewhere_captures_unsynced_writes(sp):
    m = Mounted(sp, "c", commit_interval=LONG)
    try:
        live = writers.live_writers(sp, "c")
        assert [pid for pid, _ in live] == [m.pid]
        with Store.open(sp, create=False) as s:      # opened before the writes
            fh = open(m.p("open-file"), "wb")        # stays open, never fsync'ed
            fh.write(b"a" * 70000)
            fh.flush()
            os.mkdir(m.p("dir"))
            os.rename(m.p("open-file"), m.p("dir", "moved"))
            fs = s.fs("c")
            assert not fs.exists("/dir")             # not committed: not visible here
            t0 = time.monotonic()
            s.commit("c", "s1")                      # SIGUSR1 -> the mount commits first
            took = time.monotonic() - t0
            assert fs.read_bytes("/dir/moved") == b"a" * 70000
            fh.write(b"b" * 10)                      # after the commit: not in s1
            fh.close()
            assert fs.read_bytes("/dir/moved") == b"a" * 70000   # closing does not commit
            s.diff("c", "s1")                        # flushes again: now "b" is committed
            assert fs.read_bytes("/dir/moved") == b"a" * 70000 + b"b" * 10
            fs.close()
        # and from a fresh process (Store.open + commit, as the CLI does)
        with open(m.p("late"), "wb") as f:
            f.write(b"late")
        subprocess.run([sys.executable, "-c", COMMIT_CODE, str(sp), "s2"], check=True)
    finally:
        m.close()
    assert writers.live_writers(sp, "c") == []      # unregistered at unmount
    with Store.open(sp) as s:
        fs = s.fs("s1")
        assert fs.read_bytes("/dir/moved") == b"a" * 70000
        assert not fs.exists("/late")
        fs.close()
        fs = s.fs("s2")
        assert fs.read_bytes("/late") == b"late"
        fs.close()
        assert s.fs("c").read_bytes("/dir/moved") == b"a" * 70000 + b"b" * 10
        assert s.check().ok
    assert took < 10, took


def test_a_write_becomes_visible_elsewhere_within_the_commit_interval(sp):
    """Default interval 50 ms: another process sees a write that was never fsync'ed
    soon after (the bound plus LMDB lock wait; asserted loosely on a busy VM)."""
    m = Mounted(sp, "c")
    try:
        with Store.open(sp, create=False) as s:
            fs = s.fs("c")
            with open(m.p("f"), "wb") as f:
                f.write(b"visible")
            t0 = time.monotonic()
            while not fs.exists("/f") or fs.read_bytes("/f") != b"visible":
                assert time.monotonic() - t0 < 3, "not committed within 3 s"
                time.sleep(0.005)
            took = time.monotonic() - t0
            fs.close()
        print(f"visible elsewhere after {took * 1000:.0f} ms")
    finally:
        m.close()
    check_ok(sp)


def _held_write(m: Mounted, name: str, data: bytes) -> int:
    """Create a file and write ``data`` with one write(2) that the mount answers before
    storing it (write-behind: the create opened the batch, and no request follows the
    write while the file stays open).  Returns the open fd."""
    fd = os.open(m.p(name), os.O_WRONLY | os.O_CREAT, 0o644)
    assert os.write(fd, data) == len(data)
    return fd


def test_the_age_bound_commits_a_write_held_back(sp):
    """The write answered before it was stored is part of the commit made by age,
    although the file stays open and no other request comes (Batcher.before_commit)."""
    m = Mounted(sp, "c", commit_interval=0.2)
    try:
        with Store.open(sp, create=False) as s:      # opened before: asks for no commit
            fs = s.fs("c")
            fd = _held_write(m, "f", b"held" * 1000)
            t0 = time.monotonic()
            while not (fs.exists("/f") and fs.read_bytes("/f") == b"held" * 1000):
                assert time.monotonic() - t0 < 5, "the held write was not committed by age"
                time.sleep(0.01)
            os.close(fd)
            fs.close()
    finally:
        m.close()
    check_ok(sp)


@pytest.mark.parametrize("write_behind", [True, False])
def test_a_commit_requested_elsewhere_captures_a_write_held_back(sp, write_behind):
    """With write-behind the write(2) was answered before it was stored; the commit
    another process asks for stores it first (off: the same result)."""
    m = Mounted(sp, "c", commit_interval=LONG, write_behind=write_behind)
    try:
        with Store.open(sp, create=False) as s:
            fd = _held_write(m, "f", b"x" * 300000)
            s.commit("c", "snap")                    # SIGUSR1 -> the mount commits
            fs = s.fs("snap")
            assert fs.read_bytes("/f") == b"x" * 300000
            fs.close()
            os.close(fd)
    finally:
        m.close()
    check_ok(sp)


def test_dead_writer_registration_is_ignored(sp, tmp_path):
    """A writer file left by a SIGKILLed process does not make commits wait."""
    code = ("import sys, time\nfrom blockstore.api.writers import Registration\n"
            "r = Registration(sys.argv[1], ['c'])\nr.opened()\nprint('ok', flush=True)\n"
            "time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(sp)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ok"
        assert [pid for pid, _ in writers.live_writers(sp, "c")] == [p.pid]
        p.kill()
        p.wait()
        t0 = time.monotonic()
        with Store.open(sp, create=False) as s:
            s.commit("c", "snap")
            assert time.monotonic() - t0 < 2
            assert s.check().ok
        assert writers.live_writers(sp, "c") == []
        assert os.listdir(os.path.join(sp, writers.WRITERS_DIR)) == []
    finally:
        p.kill()


def test_a_failing_change_keeps_the_batch_before_it(sp):
    """A change that fails inside the batch aborts it and replays the changes
    before it (committer.py): they all stay, including an inode unlinked while
    open and freed at close, and the store checks clean."""
    m = Mounted(sp, "c", commit_interval=LONG)
    try:
        with open(m.p("a"), "wb") as f:
            f.write(b"A" * 50000)
        os.mkdir(m.p("d"))
        open(m.p("d", "x"), "w").close()
        held = open(m.p("gone"), "wb")
        held.write(b"G" * 9000)
        held.flush()
        os.unlink(m.p("gone"))                       # orphan while held
        held.write(b"H")
        held.close()                                 # release frees it (in the batch)
        with open(m.p("a"), "ab") as f:
            f.write(b"+")
        for fail in (lambda: os.rmdir(m.p("d")),                 # ENOTEMPTY from the store
                     lambda: os.rename(m.p("a"), m.p("d"))):     # EISDIR
            with pytest.raises(OSError):
                fail()
        assert open(m.p("a"), "rb").read() == b"A" * 50000 + b"+"
        assert os.listdir(m.p("d")) == ["x"]
        assert not os.path.exists(m.p("gone"))
        with open(m.p("b"), "wb") as f:              # the mount keeps working
            f.write(b"B")
            os.fsync(f.fileno())
        _kill_and_remount(m, sp)                     # fsync committed the replayed batch
        assert open(m.p("a"), "rb").read() == b"A" * 50000 + b"+"
        assert sorted(os.listdir(m.mnt)) == ["a", "b", "d"]
    finally:
        m.close()
    check_ok(sp)
