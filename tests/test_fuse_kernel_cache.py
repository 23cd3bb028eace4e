"""The kernel answers from its caches (blockstore/fuse/adapter.py, "Caches"):
entries and attributes with long timeouts, directory listings kept across
opens (FOPEN_CACHE_DIR), and every path that changes a tree behind the
kernel drops what changed:

* a commit into the clone by another process (the watcher, watch.py);
* a volume written through another mount (the same watcher);
* a volume shown at two places of one mount (own commits diffed too);
* a host directory bound into the tree (short timeouts, listings not kept).

Mounts here use the default (long) timeouts, so only an invalidation can
explain a fresh answer within the few seconds each test waits."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from blockstore import Store

from _fuse_helpers import (Mounted, check_ok, needs_fuse, until, while_caches_kept,
                           write_synced)

pytestmark = needs_fuse

FRESH = 3.0         # seconds a change behind the kernel may take to show


def _listing(path) -> set[str]:
    return set(os.listdir(path))


def _clone_with(sp, files: dict[str, bytes], **create_kw) -> None:
    with Store.open(sp) as s:
        s.create("c", **create_kw)
        with s.fs("c") as fs:
            for path, data in files.items():
                fs.makedirs(os.path.dirname(path), exist_ok=True)
                fs.write_bytes(path, data)


def test_a_name_added_from_the_library_shows_in_the_cached_listing(tmp_path):
    sp = tmp_path / "store"
    _clone_with(sp, {"/d/a": b"a"})
    m = Mounted(sp, "c")
    try:
        for _ in range(2):                              # the second open reads the cache
            assert _listing(m.p("d")) == {"a"}
        with Store.open(sp) as s:
            with s.fs("c") as fs:
                fs.write_bytes("/d/new", b"n")          # a name the kernel never looked up
        until(lambda: _listing(m.p("d")) == {"a", "new"}, FRESH)
    finally:
        m.close()
    check_ok(sp)


def test_a_name_looked_up_in_vain_then_added_from_the_library_shows(tmp_path):
    sp = tmp_path / "store"
    _clone_with(sp, {"/d/a": b"a"})
    m = Mounted(sp, "c")
    try:
        for _ in range(2):                              # a negative entry, kept
            assert not os.path.exists(m.p("d", "late"))
        with Store.open(sp) as s:
            with s.fs("c") as fs:
                fs.write_bytes("/d/late", b"l")
        until(lambda: os.path.exists(m.p("d", "late")), FRESH)
    finally:
        m.close()
    check_ok(sp)


def test_a_commit_from_the_library_drops_cached_entries_attributes_and_pages(tmp_path):
    sp = tmp_path / "store"
    _clone_with(sp, {"/d/old": b"o", "/d/f": b"1" * 5000, "/d/g": b"g"})
    m = Mounted(sp, "c")
    try:
        assert os.path.exists(m.p("d", "old"))
        umask = os.umask(0o022)
        os.umask(umask)
        assert os.stat(m.p("d", "g")).st_mode & 0o777 == 0o666 & ~umask    # created by the library
        with open(m.p("d", "f"), "rb") as f:
            assert f.read() == b"1" * 5000
        with Store.open(sp) as s:
            with s.fs("c") as fs:
                fs.unlink("/d/old")
                fs.write_bytes("/d/f", b"2" * 7000)
                fs.chmod("/d/g", 0o600)

        def fresh() -> bool:
            with open(m.p("d", "f"), "rb") as f:
                data = f.read()
            return (not os.path.exists(m.p("d", "old")) and data == b"2" * 7000
                    and os.stat(m.p("d", "g")).st_mode & 0o777 == 0o600)
        until(fresh, FRESH)
    finally:
        m.close()
    check_ok(sp)


def test_a_volume_written_through_another_mount_drops_the_cached_listing(tmp_path):
    sp = tmp_path / "store"
    with Store.open(sp) as s:
        s.volume_create("vol")
        s.create("a", mounts=[{"type": "volume", "source": "vol", "target": "/v"}])
        s.create("b", mounts=[{"type": "volume", "source": "vol", "target": "/v"}])
    ma, mb = Mounted(sp, "a"), Mounted(sp, "b")
    try:
        write_synced(ma.p("v", "one"), b"1")
        until(lambda: _listing(mb.p("v")) == {"one"}, FRESH)
        assert _listing(mb.p("v")) == {"one"}           # cached now
        write_synced(ma.p("v", "two"), b"2")            # never looked up through b
        until(lambda: _listing(mb.p("v")) == {"one", "two"}, FRESH)
    finally:
        ma.close()
        mb.close()
    check_ok(sp)


def test_a_volume_at_two_places_of_one_mount_drops_the_other_places_listing(tmp_path):
    sp = tmp_path / "store"
    with Store.open(sp) as s:
        s.volume_create("vol")
        s.create("c", mounts=[{"type": "volume", "source": "vol", "target": "/a"},
                              {"type": "volume", "source": "vol", "target": "/b"}])
    m = Mounted(sp, "c")
    try:
        for _ in range(2):
            assert _listing(m.p("b")) == set()
            assert not os.path.exists(m.p("b", "f"))    # a negative entry at /b
        write_synced(m.p("a", "f"), b"x" * 100)         # through /a only
        until(lambda: _listing(m.p("b")) == {"f"} and os.path.exists(m.p("b", "f")), FRESH)
        assert os.stat(m.p("b", "f")).st_size == 100
        write_synced(m.p("a", "f"), b"y" * 300)
        until(lambda: os.stat(m.p("b", "f")).st_size == 300, FRESH)
        with open(m.p("b", "f"), "rb") as f:
            assert f.read() == b"y" * 300
    finally:
        m.close()
    check_ok(sp)


def test_a_bound_host_directory_is_not_cached_past_its_short_timeout(tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "a").write_bytes(b"a")
    sp = tmp_path / "store"
    _clone_with(sp, {}, mounts=[{"type": "bind", "source": str(host), "target": "/h"}])
    m = Mounted(sp, "c")
    try:
        for _ in range(2):
            assert _listing(m.p("h")) == {"a"}
        assert os.stat(m.p("h", "a")).st_size == 1
        (host / "b").write_bytes(b"b")                  # behind the mount's back
        (host / "a").write_bytes(b"aaa")
        until(lambda: _listing(m.p("h")) == {"a", "b"}
              and os.stat(m.p("h", "a")).st_size == 3, FRESH)
    finally:
        m.close()
    check_ok(sp)


# Stats every path given on stdin (lstat: no request when the kernel holds entry
# and attributes); run while the daemon is stopped, it finishes only from the cache.
_STAT_ALL = "import os, sys\nfor p in sys.stdin.read().split('\\0'):\n    os.lstat(p)\nprint('ok')\n"


def _stat_all_while_stopped(pid: int, paths: list[str]) -> subprocess.CompletedProcess | None:
    """lstat every path in a subprocess while the daemon is SIGSTOPped; None if
    it did not finish in 30 s (some answer had to come from the daemon: with the
    daemon stopped such a stat never finishes, so a long bound costs nothing
    when the kernel answers, and a loaded machine's slow interpreter start
    cannot fail the test)."""
    os.kill(pid, signal.SIGSTOP)
    try:
        p = subprocess.Popen([sys.executable, "-c", _STAT_ALL], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        try:
            out, _ = p.communicate("\0".join(paths), timeout=30)
            return out
        except subprocess.TimeoutExpired:
            return None
        finally:
            os.kill(pid, signal.SIGCONT)
            if p.poll() is None:
                p.communicate(timeout=30)               # answered now that it runs again
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_warm_stat_walk_of_a_clone_is_answered_by_the_kernel(tmp_path):
    sp = tmp_path / "store"
    files = {f"/d{i}/f{j}": b"x" * j for i in range(5) for j in range(20)}
    _clone_with(sp, files)
    m = Mounted(sp, "c")
    try:
        paths = []
        for root, dirs, names in os.walk(m.mnt):
            paths += [os.path.join(root, n) for n in dirs + names]
        assert len(paths) == 105

        def warm_then_stopped() -> str | None:
            for p in paths:
                os.lstat(p)
            time.sleep(1.5)                 # past the kernel's usual 1 s timeouts
            return _stat_all_while_stopped(m.pid, paths)
        # A drop_caches meanwhile (a cold benchmark) evicts the entries: retried.
        assert while_caches_kept(warm_then_stopped) == "ok\n"
    finally:
        m.close()
    check_ok(sp)


def test_a_warm_read_of_a_snapshot_mount_asks_the_daemon_nothing(tmp_path):
    sp = tmp_path / "store"
    files = {f"/d{i}/f{j}": bytes([65 + j]) * (j * 100) for i in range(3) for j in range(10)}
    _clone_with(sp, files)
    with Store.open(sp) as s:
        s.commit("c", "snap")
    m = Mounted(sp, "snap")
    try:
        def read_all() -> int:
            n = 0
            for root, _dirs, names in os.walk(m.mnt):
                for name in names:
                    fd = os.open(os.path.join(root, name), os.O_RDONLY)
                    n += len(os.read(fd, 1 << 20))
                    os.close(fd)
            return n
        want = sum(len(v) for v in files.values())
        # os.open/os.read: Python's open() asks isatty (an ioctl the kernel
        # always forwards to the daemon); cat, tar and the like do not.
        code = (f"import os\nn = 0\nfor r, _, fs in os.walk({m.mnt!r}):\n"
                f"    for f in fs:\n        fd = os.open(os.path.join(r, f), os.O_RDONLY)\n"
                f"        n += len(os.read(fd, 1 << 20))\n        os.close(fd)\nprint(n)\n")

        def warm_then_stopped() -> str | None:
            assert read_all() == want               # now in the kernel's caches
            os.kill(m.pid, signal.SIGSTOP)
            try:
                p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                     text=True)
                try:
                    return p.communicate(timeout=30)[0]     # open, read, close: no request
                except subprocess.TimeoutExpired:
                    return None
            finally:
                os.kill(m.pid, signal.SIGCONT)
                if p.poll() is None:
                    p.communicate(timeout=30)
        # A drop_caches meanwhile (a cold benchmark) evicts the pages: retried.
        assert while_caches_kept(warm_then_stopped) == f"{want}\n"
    finally:
        m.close()
    check_ok(sp)
