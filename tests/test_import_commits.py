"""Durable commits of making a store and of a small import (issue 20: a 1k-file
import within 2x `cp -a`, where each commit is two disk flushes).

LMDB numbers its committed write transactions; the environment's last txn id
counts them.  A store is made in one commit (every named database opened in
the transaction that writes the format record); a directory import that
needs no chunk commit is one (working clone, data, snapshot together), and a
failure before it leaves nothing behind.
"""
from __future__ import annotations

import os

import pytest

import blockstore
from blockstore.errors import InvalidInput


def _last_txn(store) -> int:
    return store.env.env.info()["last_txnid"]


def _src(tmp_path, n: int = 50):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for i in range(n):
        (src / ("sub" if i % 2 else "") / f"f{i}").write_bytes(os.urandom(50 + 97 * i))
    return src


def test_making_a_store_is_one_commit(tmp_path):
    with blockstore.Store.open(str(tmp_path / "s")) as s:
        assert _last_txn(s) == 1
    with blockstore.Store.open(str(tmp_path / "s")) as s:     # opening commits nothing
        assert _last_txn(s) == 1


@pytest.mark.parametrize("parent", [None, "base"])
def test_a_small_import_is_one_commit(store, tmp_path, parent):
    src = _src(tmp_path)
    if parent:
        store.create("w")
        with store.fs("w") as fs:
            fs.write_bytes("/old", b"o" * 5000)
        store.commit("w", "base")
    t0 = _last_txn(store)
    store.import_dir(str(src), "snap", parent=parent)
    assert _last_txn(store) == t0 + 1
    with store.fs("snap") as fs:
        assert fs.read_bytes("/sub/f1") == (src / "sub" / "f1").read_bytes()
    assert {r.name for r in store.list()} == {"snap"} | ({"base", "w"} if parent else set())


def test_a_failed_small_import_leaves_nothing(store, tmp_path, monkeypatch):
    src = _src(tmp_path)
    from blockstore.fs.build import TreeBuilder
    real = TreeBuilder._load

    def fail_late(self, e, dfd, path):
        if path.endswith(b"f40"):
            raise InvalidInput("refused for the test", path=os.fsdecode(path))
        return real(self, e, dfd, path)
    monkeypatch.setattr(TreeBuilder, "_load", fail_late)
    t0 = _last_txn(store)
    with pytest.raises(InvalidInput):
        store.import_dir(str(src), "snap")
    assert _last_txn(store) == t0                 # nothing was committed
    assert store.list() == []
    assert store.df().used_bytes == 0


def test_reused_batch_buffers_leave_no_bytes_of_other_files_in_a_block(store, tmp_path,
                                                                        monkeypatch):
    """The bulk builder fills its two batch buffers again and again: the tail of a
    file's last block must be zeros, never bytes of a file of an earlier batch."""
    import time

    from blockstore import catalog
    from blockstore.btree.store import NodeStore
    from blockstore.fs import build
    from blockstore.fs.tree import FileTree
    monkeypatch.setattr(build, "BATCH_BYTES", 3 * 4096)      # a batch every few files
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):                 # 8 KiB of 0xff, then ever shorter tails to check
        (src / f"f{i:02d}").write_bytes(b"\xff" * (8192 if i % 2 == 0 else 8100 - 90 * i))
    store.import_dir(str(src), "s")
    bs = store.block_size
    with store.env.read() as r:
        fst = FileTree(NodeStore.of(r), catalog.get(r, "s").root, time.time_ns)
        for i in range(1, 40, 2):
            node = fst.inode(fst.lookup(1, f"f{i:02d}".encode())[0])
            (fb, start, n), = fst.extents(node.ino)
            raw = r.blocks.read(start, n)
            assert raw[:node.size] == b"\xff" * node.size
            assert raw[node.size:] == bytes(n * bs - node.size), f"f{i:02d}"
