"""The bulk fill of absent blocks (an eager pull's path, without a remote):
``BlockFiller.write`` verifies every block against its SHA-256 before it is
written, ``Absent.matching`` finds the blocks still absent with the given
digests (its one-walk fast path included), ``BlockFiller.record`` makes
them present."""
from __future__ import annotations

import hashlib
import os

import pytest

import blockstore
from blockstore import errors
from blockstore.api.treestream import BlockFiller, Item, SnapshotReader, absent_of, build_snapshot

BS = 4096


def _items_and_bytes(store, name):
    """The items of snapshot ``name`` with their digests, and SHA-256 -> block bytes."""
    blocks = {}
    with SnapshotReader(store, name) as rd:
        items = []
        for it in rd.items():
            digests = None
            if it.run:
                s, n = it.run
                digests = rd.digests(s, n)
                data = rd.read(s, n)
                for i, d in enumerate(digests):
                    blocks[d] = bytes(data[i * BS:(i + 1) * BS])
            items.append(Item(it.key, it.payload, None, digests))
    return items, blocks


def _source_store(d, files):
    """A store in ``d`` (made) holding snapshot ``t`` of ``files``."""
    src = d / "src"
    src.mkdir(parents=True)
    for name, data in files.items():
        (src / name).write_bytes(data)
    a = blockstore.Store.open(d / "A")
    a.import_dir(str(src), "t")
    return a


def _built(store, items, name="t"):
    runs: list = []
    build_snapshot(store, name, items, parent=None, labels={}, created=None, local={},
                   source="nowhere", absent_out=runs)
    return runs


def test_fill_refuses_a_flipped_byte_and_stores_nothing_then_takes_the_right_bytes(store, tmp_path):
    with _source_store(tmp_path, {"f": os.urandom(40 * BS)}) as a:
        items, blocks = _items_and_bytes(a, "t")
    runs = _built(store, items)
    (s, ds), = runs
    good = b"".join(blocks[d] for d in ds)
    bad = bytearray(good)
    bad[17 * BS + 100] ^= 0x01
    filler = BlockFiller(store)
    with pytest.raises(errors.Corruption, match=f"block {s + 17}"):
        filler.write([(s, ds, memoryview(bad))])
    # nothing of the refused call was written or recorded: every block still absent
    assert len(absent_of(store, "t")) == len(ds)
    written = filler.write([(s, ds, memoryview(good))])
    assert filler.record(written) == len(ds)
    assert absent_of(store, "t") == []
    with store.fs("t") as f:
        assert hashlib.sha256(f.read_bytes("/f")).digest() == hashlib.sha256(good).digest()


def test_fill_skips_blocks_no_longer_absent_with_that_digest(store, tmp_path):
    """A range whose digests differ from the absent entries in the middle (as
    when its snapshot was removed and the blocks reused): only the blocks
    still absent with the given digests are written and recorded."""
    with _source_store(tmp_path, {"f": os.urandom(16 * BS)}) as a:
        items, blocks = _items_and_bytes(a, "t")
    (s, ds), = _built(store, items)
    with store.env.read() as r:
        t = r.t
        absent = store.env.pool.absent
        assert absent.matching(t, s, ds) == [(0, 16)]
        other = list(ds)
        other[5] = hashlib.sha256(b"something else").digest()
        assert absent.matching(t, s, other) == [(0, 5), (6, 16)]
        # shifted by one block: nothing lines up
        assert absent.matching(t, s + 1, ds[:-1]) == []
    # bytes for the changed list: block 5's bytes match ``other[5]`` neither here
    data = bytearray(b"".join(blocks[d] for d in ds))
    data[5 * BS:6 * BS] = b"something else".ljust(BS, b"\0")[:BS]
    other[5] = hashlib.sha256(bytes(data[5 * BS:6 * BS])).digest()
    written = BlockFiller(store).write([(s, other, memoryview(data))])
    assert sum(len(w[1]) for w in written) == 15            # block 5 skipped
    assert BlockFiller(store).record(written) == 15
    assert [b for b, _, _ in absent_of(store, "t")] == [s + 5]
    # complete it, so the store checks clean
    good = b"".join(blocks[d] for d in ds)
    w = BlockFiller(store).write([(s + 5, [ds[5]], memoryview(good)[5 * BS:6 * BS])])
    assert BlockFiller(store).record(w) == 1
    assert absent_of(store, "t") == []


def test_matching_fast_path_checks_the_entries_are_consecutive(store, tmp_path):
    """Entries read in one walk from ``start`` must be the blocks start..start+n-1:
    a run of digests that matches the next n entries in order, but whose last
    entry lies past a gap (a block that is not absent), is not all absent."""
    with _source_store(tmp_path, {"f": os.urandom(8 * BS)}) as a:
        items_x, blocks_x = _items_and_bytes(a, "t")
    with _source_store(tmp_path / "2", {"g": os.urandom(8 * BS)}) as b:
        items_y, blocks_y = _items_and_bytes(b, "t")
    (sx, dx), = _built(store, items_x, "x")
    store.create("w")
    with store.fs("w") as f:                  # present blocks between the two absent runs
        f.write_bytes("/pad", os.urandom(4 * BS))
    (sy, dy), = _built(store, items_y, "y")
    assert sy > sx + len(dx)                  # a gap of blocks that are not absent
    with store.env.read() as r:
        absent = store.env.pool.absent
        assert absent.matching(r.t, sx, dx + [dy[0]]) == [(0, len(dx))]
        assert absent.matching(r.t, sx, dx) == [(0, len(dx))]
    for name, (s, ds), blocks in (("x", (sx, dx), blocks_x), ("y", (sy, dy), blocks_y)):
        w = BlockFiller(store).write([(s, ds, memoryview(b"".join(blocks[d] for d in ds)))])
        assert BlockFiller(store).record(w) == len(ds)
    assert absent_of(store, "x") == [] and absent_of(store, "y") == []
