"""rm + gc of a small tree: one durable commit, and still safe.

The removal frees the tree's nodes and defers its blocks in its own
transaction, marked to be trimmed when released (Pool.trim_when_released);
gc then gives their disk space back under the writer lock without a commit
of its own (Env.trial), and the next write makes them free and records them
trimmed.  These tests count LMDB commits (the environment's last txn id),
check that an older reader keeps its blocks, and kill the process between
the steps (issue 20).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import blockstore

KiB = 1024


def _allocated(path) -> int:
    return os.stat(os.path.join(str(path), "pool.data")).st_blocks * 512


def _last_txn(store) -> int:
    return store.env.env.info()["last_txnid"]


def _base(store, tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(20):
        (src / f"f{i}").write_bytes(os.urandom(3000 + 100 * i))
    store.import_dir(str(src), "base")


def _clone_with_blocks(store, name: str, size: int = 64 * KiB) -> bytes:
    store.clone("base", name)
    data = os.urandom(size)
    with store.fs(name) as fs:
        fs.write_bytes("/own", data)
    return data


def test_rm_gc_of_a_tree_that_frees_blocks_is_one_durable_commit(store, tmp_path):
    _base(store, tmp_path)
    _clone_with_blocks(store, "c")
    store.gc()
    t0, disk0 = _last_txn(store), _allocated(store.path)
    store.remove("c")
    got = store.gc()
    assert _last_txn(store) == t0 + 1, "rm + gc committed more than once"
    bs = store.block_size
    assert got["blocks_released"] * bs >= 64 * KiB and got["pending_blocks"] == 0, got
    assert got["trimmed_blocks"] * bs >= 64 * KiB, got
    assert disk0 - _allocated(store.path) >= 64 * KiB      # the disk space is back now
    df = store.df()                     # no reader holds them: free, for df too
    assert df.pending_bytes == 0 and df.free_bytes >= 64 * KiB, df
    with store.env.read() as r:         # the tables catch up at the next write ...
        assert r.blocks.pending_blocks() * bs >= 64 * KiB
    store.create("next")
    with store.env.read() as r:         # ... which releases them and records the trim
        assert r.blocks.pending_blocks() == 0
        assert r.blocks.trimmed_count() * bs >= 64 * KiB
    # a second gc finds nothing to do: no commit
    t1 = _last_txn(store)
    assert store.gc()["trimmed_blocks"] == 0 and _last_txn(store) == t1
    # the blocks are reused, and read back right
    again = _clone_with_blocks(store, "d")
    with store.fs("d") as fs:
        assert fs.read_bytes("/own") == again


def test_a_reader_older_than_the_removal_keeps_its_blocks(store, tmp_path):
    """gc's commit-free path never releases or punches what an older reader reaches."""
    import time

    from blockstore import catalog
    from blockstore.btree.store import NodeStore
    from blockstore.fs.tree import FileTree

    _base(store, tmp_path)
    data = _clone_with_blocks(store, "c")
    store.gc()                          # gives back what is free already
    with store.env.read() as r:
        fst = FileTree(NodeStore.of(r), catalog.get(r, "c").root, time.time_ns)
        node = fst.inode(fst.lookup(1, b"own")[0])
        disk0 = _allocated(store.path)
        store.remove("c")
        got = store.gc()
        assert got["blocks_released"] == 0 and got["trimmed_blocks"] == 0, got
        assert got["pending_blocks"] * store.block_size >= 64 * KiB, got
        assert _allocated(store.path) == disk0
        _clone_with_blocks(store, "d")             # a write: must not reuse them
        assert fst.read(node, 0, node.size) == data
    got = store.gc()
    assert got["trimmed_blocks"] * store.block_size >= 64 * KiB, got


_KILLED = textwrap.dedent("""
    import os, sys
    import blockstore
    from blockstore import failpoints
    path, step = sys.argv[1], sys.argv[2]
    with blockstore.Store.open(path) as s:
        if step == "after-remove":        # dies as the removal's commit is durable
            failpoints.set("commit.after_lmdb", failpoints.exit_)
            s.remove("c")
        else:                             # dies after gc punched, before any write
            s.remove("c")
            s.gc()
            os._exit(77)
""")


def _killed_run(tmp_path, step: str):
    path = tmp_path / "st"
    with blockstore.Store.open(str(path)) as s:
        _base(s, tmp_path)
        _clone_with_blocks(s, "c")
        keep = _clone_with_blocks(s, "keep")
        s.gc()
    disk0 = _allocated(path)
    p = subprocess.run([sys.executable, "-c", _KILLED, str(path), step],
                       capture_output=True, timeout=120)
    assert p.returncode == 77, p.stderr.decode()[-2000:]
    return path, disk0, keep


def test_killed_after_the_removal_commit(tmp_path):
    path, disk0, keep = _killed_run(tmp_path, "after-remove")
    with blockstore.Store.open(str(path)) as s:
        rep = s.check(scrub=True)
        assert rep.ok, rep
        assert not s.exists("c")
        assert _allocated(path) == disk0                 # nothing punched yet
        got = s.gc()
        assert got["blocks_released"] * s.block_size >= 64 * KiB, got
        assert disk0 - _allocated(path) >= 64 * KiB
        assert s.df().pending_bytes == 0
        with s.fs("keep") as fs:
            assert fs.read_bytes("/own") == keep
        rep = s.check(scrub=True)
        assert rep.ok, rep


def test_killed_after_gc_punched_before_the_next_write(tmp_path):
    path, disk0, keep = _killed_run(tmp_path, "after-gc")
    with blockstore.Store.open(str(path)) as s:
        rep = s.check(scrub=True)
        assert rep.ok, rep
        assert disk0 - _allocated(path) >= 64 * KiB      # punched, still pending in the tables
        with s.env.read() as r:
            assert r.blocks.pending_blocks() * s.block_size >= 64 * KiB
        new = _clone_with_blocks(s, "d", 256 * KiB)      # releases (punches again) and reuses
        with s.env.read() as r:
            assert r.blocks.pending_blocks() == 0
        with s.fs("d") as fs:
            assert fs.read_bytes("/own") == new
        with s.fs("keep") as fs:
            assert fs.read_bytes("/own") == keep
        rep = s.check(scrub=True)
        assert rep.ok, rep
