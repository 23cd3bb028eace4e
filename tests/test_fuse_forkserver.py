"""blockstore.fuse.forkserver: mounts started by forking a pre-imported
server instead of a new interpreter (the containerd snapshotter's path)."""
from __future__ import annotations

import os
import statistics
import time

import pytest

import blockstore
from _fuse_helpers import needs_fuse, public_dir
from blockstore import errors as E
from blockstore.fuse import daemon
from blockstore.fuse.forkserver import ForkServer

pytestmark = [needs_fuse, pytest.mark.timeout(120)]


@pytest.fixture
def fs_store(tmp_store_dir):
    with blockstore.Store.open(tmp_store_dir) as s:
        s.create("c")
        s.create("d")
    yield str(tmp_store_dir)
    with blockstore.Store.open(tmp_store_dir, create=False) as s:
        assert s.check().ok


def _mp():
    d = os.path.join(public_dir(), "mnt")
    os.mkdir(d)
    return d


def test_mount_write_unmount_and_errors(fs_store):
    fs = ForkServer()
    try:
        mp = _mp()
        pid = fs.spawn(fs_store, "c", mp)
        assert os.path.ismount(mp) and pid == daemon.registered(mp)["pid"]
        with open(os.path.join(mp, "hello"), "w") as f:
            f.write("from a forked daemon\n")
        with pytest.raises(E.Busy):                      # errors come back with their class
            fs.spawn(fs_store, "c", _mp())
        with pytest.raises(E.NotFound):
            fs.spawn(fs_store, "missing", _mp())
        fs.close()                                       # the daemon outlives its starter
        assert open(os.path.join(mp, "hello")).read() == "from a forked daemon\n"
        daemon.unmount(mp)
        assert not os.path.ismount(mp)
        with blockstore.Store.open(fs_store, create=False) as s:
            assert s.fs("c").read_bytes("/hello") == b"from a forked daemon\n"
    finally:
        fs.close()


def _unmount(mp, store_path, name):
    """Unmount (lazily if a just-started daemon's own stat still holds it) and
    wait until nothing serves the tree, so the next mount of it can start."""
    from blockstore.api import mountlock
    try:
        daemon.unmount(mp)
    except E.Busy:
        daemon.unmount(mp, lazy=True)
    deadline = time.monotonic() + 10
    while mountlock.in_use(store_path, name) and time.monotonic() < deadline:
        time.sleep(0.01)


def test_faster_than_a_new_interpreter(fs_store):
    """Median mount time, fork server vs. `python -m blockstore.fuse`."""
    fs = ForkServer()
    times = {"fork": [], "spawn": []}
    warm = _mp()
    try:
        fs.spawn(fs_store, "d", warm)                    # starts (and warms) the server
        for _ in range(5):
            for how, start in (("fork", fs.spawn), ("spawn", daemon.spawn)):
                mp = _mp()
                t0 = time.perf_counter()
                start(fs_store, "c", mp)
                times[how].append(time.perf_counter() - t0)
                _unmount(mp, fs_store, "c")
    finally:
        _unmount(warm, fs_store, "d")
        fs.close()
    fork, spawn = statistics.median(times["fork"]), statistics.median(times["spawn"])
    print(f"mount start: fork server {fork * 1000:.0f} ms, new interpreter {spawn * 1000:.0f} ms "
          f"(medians of 5)")
    assert fork < spawn
