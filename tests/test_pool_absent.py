"""Absent blocks (pool/absent.py, pool/lazy.py) without a remote: a reader
gets its blocks from an injected fetcher, verified by SHA-256; wrong bytes
never enter the pool; entries die with their blocks; check and repair."""
from __future__ import annotations

import errno
import hashlib
import os

import pytest

from blockstore import errors
from blockstore.api.treestream import Item, build_snapshot, absent_of


class DictFetcher:
    """A BlockFetcher over a dict sha256 -> bytes (a real object: the pool's protocol)."""

    timeout = 5.0

    def __init__(self, blocks: dict[bytes, bytes]):
        self.blocks = blocks
        self.calls = 0
        self.fetched = 0

    def fetch(self, wants):
        self.calls += 1
        self.fetched += len(wants)
        out = []
        for d, src in wants:
            if d not in self.blocks:
                raise errors.Unreachable("not here")
            out.append(self.blocks[d])
        return out


def _lazy_tree(store, name, data: bytes):
    """Snapshot ``name`` holding /f with ``data`` (whole blocks), all blocks absent."""
    bs = store.block_size
    blocks = [data[i:i + bs] for i in range(0, len(data), bs)]
    digests = [hashlib.sha256(b).digest() for b in blocks]
    store.create("tmp")
    with store.fs("tmp") as f:
        f.write_bytes("/f", b"\0" * len(data))       # holes: an inode of the right size
    store.commit("tmp", "tmp-s")
    from blockstore.api.treestream import SnapshotReader
    from blockstore.fs import items as I
    with SnapshotReader(store, "tmp-s") as rd:
        items = list(rd.items())
    ino = store.fs("tmp-s").stat("/f").st_ino
    items.append(Item(I.extent_key(ino, 0), b"", None, digests))
    items.sort(key=lambda it: it.key)
    build_snapshot(store, name, items, parent=None, labels={}, created=None, local={},
                   source="mem")
    store.remove("tmp")
    store.remove("tmp-s")
    return dict(zip(digests, blocks))


def test_absent_blocks_are_fetched_verified_and_kept(store):
    data = os.urandom(40 * store.block_size)
    blocks = _lazy_tree(store, "lazy", data)
    assert len(absent_of(store, "lazy")) == 40
    with store.fs("lazy") as f:
        # the remote tier's fetcher, but no such remote configured: EIO, never zeros
        with pytest.raises(OSError) as ei:
            f.read_bytes("/f")
        assert ei.value.errno == errno.EIO
        store.set_block_fetcher(None)               # no fetcher at all: EIO too
        with pytest.raises(OSError) as ei:
            f.read_bytes("/f")
        assert ei.value.errno == errno.EIO
        fx = DictFetcher(blocks)
        store.set_block_fetcher(fx)
        with f.open("/f", "rb") as fh:
            fh.seek(5 * store.block_size)
            assert fh.read(100) == data[5 * store.block_size:5 * store.block_size + 100]
        assert fx.fetched < 40                       # only what was read (no read-ahead yet)
        assert f.read_bytes("/f") == data
    deadline = __import__("time").monotonic() + 10
    while absent_of(store, "lazy") and __import__("time").monotonic() < deadline:
        store.env.flush_filled()                    # the recorder thread commits them
        __import__("time").sleep(0.05)
    assert absent_of(store, "lazy") == []
    assert store.check(scrub=True).ok


def test_wrong_bytes_never_enter_the_pool(store):
    data = os.urandom(8 * store.block_size)
    blocks = _lazy_tree(store, "lazy", data)
    bad = {d: (b[:-1] + bytes([b[-1] ^ 1])) for d, b in blocks.items()}
    store.set_block_fetcher(DictFetcher(bad))
    with store.fs("lazy") as f:
        with pytest.raises(errors.Corruption):
            f.read_bytes("/f")
    assert len(absent_of(store, "lazy")) == 8      # still absent: nothing was stored
    store.set_block_fetcher(DictFetcher(blocks))
    with store.fs("lazy") as f:
        assert f.read_bytes("/f") == data


def test_absent_entries_die_with_their_blocks_and_check_sees_strays(store):
    _lazy_tree(store, "lazy", os.urandom(6 * store.block_size))
    pool = store.env.pool
    store.remove("lazy")
    store.gc()
    with store.env.read() as r:
        assert pool.absent.count(r.t) == 0
    assert store.check().ok
    # a stray entry on a free block is reported, and repair drops it
    b = _lazy_tree(store, "lazy2", os.urandom(2 * store.block_size))
    del b
    with store.env.read() as r:
        free = next(iter(pool.free_runs(r.t)), None)
    if free is None:
        pytest.skip("no free run to plant an entry on")
    store.env.transact(lambda w: pool.absent.add(w.t, free[0], [b"\1" * 32], "x"))
    rep = store.check()
    assert not rep.ok and "Absent block" in str(rep)
    assert store.check(repair=True).ok
