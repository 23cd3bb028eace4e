"""Mount lifecycle through FUSE: bad input, commit while mounted, mount specs,
SIGKILL of the daemon, a full pool, read-only snapshots."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from blockstore import Store
from blockstore.errors import Busy, InvalidInput, NotADirectory, NotFound
from blockstore.fuse import mount, umount

from _fuse_helpers import COMMIT_CODE, Mounted, check_ok, needs_fuse, needs_root, public_dir

pytestmark = needs_fuse


def test_bad_input(sp, tmp_path):
    base = public_dir()
    try:
        mnt, other, full, afile = (os.path.join(base, n) for n in ("m", "o", "full", "f"))
        for p in (mnt, other, full):
            os.mkdir(p)
        open(os.path.join(full, "x"), "w").close()
        open(afile, "w").close()
        with pytest.raises(InvalidInput, match="not an empty directory"):
            mount(sp, "c", full)
        with pytest.raises(NotADirectory):
            mount(sp, "c", afile)
        with pytest.raises(NotFound):
            mount(sp, "c", os.path.join(base, "missing"))
        with pytest.raises(NotFound):
            mount(sp, "no-such-tree", mnt)
        with Store.open(sp) as s:
            s.create("gone")
            s.remove("gone")
        with pytest.raises(NotFound):
            mount(sp, "gone", mnt)
        mount(sp, "c", mnt)
        try:
            with pytest.raises(Busy, match="mounted already"):
                mount(sp, "c", other)               # the same tree twice
            with pytest.raises(Busy):
                mount(sp, "c", mnt)                 # on top of a mount
            with Store.open(sp) as s:               # a mounted tree cannot go away under it
                with pytest.raises(Busy, match="mounted"):
                    s.remove("c", force=True)
                with pytest.raises(Busy, match="mounted"):
                    s.rename("c", "c2")
            fh = open(os.path.join(mnt, "held"), "w")
            fh.write("x")
            fh.flush()
            with pytest.raises(Busy):
                umount(mnt)
            assert os.path.ismount(mnt)
            fh.close()
        finally:
            umount(mnt)
        assert not os.path.ismount(mnt)
        with pytest.raises(InvalidInput, match="nothing is mounted"):
            umount(mnt)
        # lazy unmount with a file still open: detached at once, data kept
        mount(sp, "c", mnt)
        fh = open(os.path.join(mnt, "lazy"), "w")
        fh.write("kept")
        fh.flush()
        umount(mnt, lazy=True)
        assert not os.path.ismount(mnt)
        fh.close()
        deadline = time.time() + 20
        while time.time() < deadline:       # the daemon exits once the last file closes
            try:
                mount(sp, "c", other)
                break
            except Busy:
                time.sleep(0.1)
        assert open(os.path.join(other, "lazy")).read() == "kept"
        assert open(os.path.join(other, "held")).read() == "x"
        umount(other)
    finally:
        for p in ("m", "o"):
            if os.path.ismount(os.path.join(base, p)):
                subprocess.run(["umount", "-l", os.path.join(base, p)])
    check_ok(sp)


def test_snapshot_mounts_read_only(sp):
    with Store.open(sp) as s:
        s.fs("c").write_bytes("/f", b"frozen")
        s.commit("c", "snap")
    m = Mounted(sp, "snap")
    try:
        assert open(m.p("f"), "rb").read() == b"frozen"
        for fn in (lambda: open(m.p("f"), "w"), lambda: open(m.p("new"), "w"),
                   lambda: os.mkdir(m.p("d")), lambda: os.unlink(m.p("f")),
                   lambda: os.setxattr(m.p("f"), "user.x", b"1")):
            with pytest.raises(OSError) as ei:
                fn()
            assert ei.value.errno == errno.EROFS
    finally:
        m.close()
    check_ok(sp)




def test_commit_while_mounted_captures_completed_writes(sp):
    m = Mounted(sp, "c")
    try:
        fh = open(m.p("open-file"), "wb")            # stays open across the commit
        fh.write(b"a" * 100000)
        fh.flush()
        with open(m.p("closed-file"), "wb") as g:
            g.write(b"closed")
        subprocess.run([sys.executable, "-c", COMMIT_CODE, str(sp), "s1"], check=True)
        fh.write(b"b" * 10)
        fh.flush()
        fh.close()
        # the mount keeps working after the commit, and only the clone changed
        with open(m.p("closed-file"), "ab") as g:
            g.write(b"+more")
        subprocess.run([sys.executable, "-c", COMMIT_CODE, str(sp), "s2"], check=True)
    finally:
        m.close()
    with Store.open(sp) as s:
        s1, s2 = s.fs("s1"), s.fs("s2")
        assert s1.read_bytes("/open-file") == b"a" * 100000
        assert s1.read_bytes("/closed-file") == b"closed"
        assert s2.read_bytes("/open-file") == b"a" * 100000 + b"b" * 10
        assert s2.read_bytes("/closed-file") == b"closed+more"
        s1.close(), s2.close()
        assert s.check().ok


def test_volume_bind_and_tmpfs_mounts(sp, tmp_path):
    host = public_dir()
    os.makedirs(os.path.join(host, "sub"))
    with open(os.path.join(host, "sub", "h"), "w") as f:
        f.write("host")
    with Store.open(sp) as s:
        s.volume_create("vol")
        s.fs("vol").write_bytes("/v", b"vol-data")
        s.create("base")
        s.commit("base", "img")
        s.clone("img", "app", mounts=[
            {"type": "volume", "source": "vol", "target": "/data"},
            {"type": "bind", "source": host, "target": "/src", "readonly": True},
            {"type": "bind", "source": host, "target": "/rw"},
            {"type": "tmpfs", "target": "/tmp"}])
        s.clone("img", "app2", mounts=[{"type": "volume", "source": "vol", "target": "/shared"}])
    m = Mounted(sp, "app")
    m2 = Mounted(sp, "app2")
    try:
        assert sorted(os.listdir(m.mnt)) == ["data", "rw", "src", "tmp"]
        assert open(m.p("data", "v")).read() == "vol-data"
        with open(m.p("data", "w"), "w") as f:
            f.write("written via app")
        os.mkdir(m.p("data", "dir"))
        os.rename(m.p("data", "w"), m.p("data", "dir", "w2"))
        # shared live: the other mount sees it once app's batch is committed (<= 50 ms)
        deadline = time.monotonic() + 5
        while not os.path.exists(m2.p("shared", "dir", "w2")) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert open(m2.p("shared", "dir", "w2")).read() == "written via app"
        with pytest.raises(OSError) as ei:
            os.rename(m.p("data", "v"), m.p("moved"))
        assert ei.value.errno == errno.EXDEV
        with pytest.raises(OSError) as ei:
            os.rmdir(m.p("data"))
        assert ei.value.errno in (errno.EBUSY, errno.ENOTEMPTY)
        assert open(m.p("src", "sub", "h")).read() == "host"
        with pytest.raises(OSError) as ei:
            open(m.p("src", "new"), "w")
        assert ei.value.errno == errno.EROFS
        with open(m.p("rw", "sub", "new"), "w") as f:
            f.write("to host")
        os.rename(m.p("rw", "sub"), m.p("rw", "sub2"))
        assert open(os.path.join(host, "sub2", "new")).read() == "to host"
        assert open(m.p("rw", "sub2", "h")).read() == "host"
        with open(m.p("tmp", "t"), "w") as f:
            f.write("mem")
        assert open(m.p("tmp", "t")).read() == "mem"
        assert os.stat(m.p("tmp")).st_ino != os.stat(m.p("data")).st_ino
        with Store.open(sp) as s:               # in use as a volume: not removable
            with pytest.raises(Busy, match="mounted"):
                s.volume_remove("vol", force=True)
    finally:
        m.close()
        m2.close()
    with Store.open(sp) as s:
        s.remove("app2")                        # unmounted: removable again
        assert s.fs("vol").read_bytes("/dir/w2") == b"written via app"
        assert s.fs("app").listdir("/tmp") == []      # tmpfs content never reaches the tree
        assert s.check().ok


KILL_CODE = """
import os, sys
mnt = sys.argv[1]
with open(os.path.join(mnt, "synced"), "wb") as f:
    f.write(b"S" * 3000000)
    f.flush()
    os.fsync(f.fileno())
d = os.open(mnt, os.O_RDONLY)
os.fsync(d)
os.close(d)
print("synced", flush=True)
with open(os.path.join(mnt, "aged"), "wb") as f:       # no fsync: committed by the age bound
    for i in range(64):
        f.write(bytes([i % 251]) * 65536)
print("aged", flush=True)
with open(os.path.join(mnt, "unsynced"), "wb", buffering=0) as f:
    i = 0
    while True:                                         # until the daemon dies
        f.write(bytes([i % 251]) * 65536)
        i += 1
"""


def test_sigkill_daemon_then_umount_remount_check(sp):
    """SIGKILL loses at most the uncommitted batch: fsync'ed data is there, data
    older than the commit interval (50 ms) is there, the file being written
    when killed holds a prefix of whole completed writes."""
    m = Mounted(sp, "c")
    try:
        w = subprocess.Popen([sys.executable, "-c", KILL_CODE, m.mnt], stdout=subprocess.PIPE,
                             text=True)
        assert w.stdout.readline().strip() == "synced"
        assert w.stdout.readline().strip() == "aged"
        time.sleep(0.5)                            # >> the 50 ms commit interval
        os.kill(m.pid, signal.SIGKILL)
        w.wait(timeout=30)
        with pytest.raises(OSError) as ei:
            os.listdir(m.mnt)
        assert ei.value.errno == errno.ENOTCONN
        with pytest.raises(Busy, match="dead mount"):
            mount(sp, "c", m.mnt)
        umount(m.mnt)                              # cleans the leftover
        assert not os.path.ismount(m.mnt)
        check_ok(sp)
        m.pid = mount(sp, "c", m.mnt)             # remount works
        assert open(m.p("synced"), "rb").read() == b"S" * 3000000
        assert open(m.p("aged"), "rb").read() == b"".join(bytes([i % 251]) * 65536
                                                          for i in range(64))
        data = open(m.p("unsynced"), "rb").read()
        assert len(data) % 4096 == 0               # whole completed writes, nothing torn
        assert len(data) > 0                       # written for 0.5 s: some batches committed
        n = -(-len(data) // 65536)
        assert data == b"".join(bytes([i % 251]) * 65536 for i in range(n))[:len(data)]
    finally:
        m.close()
    check_ok(sp)


@needs_root
def test_full_pool_gives_enospc_and_keeps_the_store(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(small)], check=True)
    try:
        sp = small / "store"
        with Store.open(sp) as s:
            s.create("c")
        m = Mounted(sp, "c")
        try:
            with open(m.p("keep"), "wb") as f:
                f.write(b"K" * 1000000)
                os.fsync(f.fileno())
            with pytest.raises(OSError) as ei:
                with open(m.p("fill"), "wb") as f:
                    for _ in range(200):
                        f.write(os.urandom(1 << 20))
                        f.flush()
            assert ei.value.errno == errno.ENOSPC
            assert open(m.p("keep"), "rb").read() == b"K" * 1000000
            os.unlink(m.p("fill"))
            with open(m.p("after"), "wb") as f:     # space comes back after the unlink
                f.write(b"A" * 100000)
        finally:
            m.close()
        check_ok(sp)
    finally:
        subprocess.run(["umount", "-l", str(small)])
