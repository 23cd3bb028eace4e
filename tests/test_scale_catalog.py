"""Issue 20: per-tree catalog operations do not look at the other trees.

Removal, gc, clone, commit, rename and dependents find the records that
name a tree through the catalog's reverse index (blockstore/catalog/links.py),
so the number of records they decode does not grow with the store.  The
count is taken by wrapping the real decoder (every call still decodes).
"""
from __future__ import annotations

import lmdb
import pytest

import blockstore
from blockstore import catalog, txn as txnmod
from blockstore.catalog import links as catalog_links

TREES = 300


@pytest.fixture
def crowded(store, tmp_path):
    """A store with one imported snapshot and TREES clones of it."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(20):
        (src / f"f{i}").write_bytes(bytes([i]) * 5000)
    store.import_dir(src, "base")
    with store.batch():
        for i in range(TREES):
            store.clone("base", f"c{i}")
    return store


@pytest.fixture
def decodes(monkeypatch):
    """Counts TreeRecord.decode calls (the real decoder runs)."""
    calls = [0]
    real = catalog.TreeRecord.decode.__func__

    def counting(cls, raw):
        calls[0] += 1
        return real(cls, raw)
    monkeypatch.setattr(catalog.TreeRecord, "decode", classmethod(counting))
    return calls


def test_remove_and_gc_of_one_tree_decode_a_bounded_number_of_records(crowded, decodes):
    """Old code: Store.remove decoded every record to find dependents and
    Store.gc decoded every record again to find old staging clones (605 here)."""
    crowded.gc()
    decodes[0] = 0
    crowded.remove("c7")
    crowded.gc()
    assert decodes[0] <= 10, decodes[0]
    assert not crowded.exists("c7")


def test_clone_commit_dependents_rename_do_not_scan(crowded, decodes):
    decodes[0] = 0
    crowded.clone("base", "extra")
    crowded.commit("c3", "c3-v1")
    deps = crowded.dependents("c3-v1")
    crowded.clone("c3-v1", "c3-child")
    assert [d.name for d in crowded.dependents("c3-v1")] == ["c3-child"]
    crowded.rename("c3-v1", "c3-v2")
    assert crowded.info("c3-child").parent == "c3-v2"
    assert decodes[0] <= 30, decodes[0]
    assert deps == []


def test_dependents_cover_children_and_volume_mounts(store):
    store.create("base-clone")
    store.snapshot("base-clone", "snap")
    store.volume_create("vol")
    store.clone("snap", "a")
    store.clone("snap", "b", mounts=[{"type": "volume", "source": "vol", "target": "/v"},
                                     {"type": "volume", "source": "vol", "target": "/w"}])
    assert [d.name for d in store.dependents("snap")] == ["a", "b"]
    assert [d.name for d in store.dependents("vol")] == ["b"]
    with pytest.raises(blockstore.errors.Busy):
        store.remove("vol")
    store.remove("vol", force=True)
    assert store.info("b").mounts == []
    assert store.dependents("vol") == []
    store.remove("snap", force=True)
    assert store.info("a").parent is None and store.info("b").parent is None
    with store.env.read() as r:
        assert catalog_links.stored(r.t, r.env.dbs) == catalog_links.expected(
            r.t, r.db(catalog.CATALOG))


def _raw_env(path):
    return lmdb.open(str(path / "meta"), max_dbs=64, subdir=True)


def test_format_2_store_is_upgraded_with_its_index_built(tmp_store_dir):
    with blockstore.Store.open(tmp_store_dir) as s:
        s.create("c")
        s.snapshot("c", "snap")
        s.clone("snap", "d")
    # Make it what a format-2 blockstore wrote: no index, format 2.
    env = _raw_env(tmp_store_dir)
    with env.begin(write=True) as t:
        for db in catalog_links.DBS:
            t.drop(env.open_db(db.encode(), txn=t), delete=True)
        t.put(b"format", txnmod.u64(2), db=env.open_db(b"meta", txn=t))
    env.close()
    with blockstore.Store.open(tmp_store_dir) as s:
        assert [d.name for d in s.dependents("snap")] == ["d"]
        assert s.check().ok
        with s.env.read() as r:
            assert txnmod.from_u64(r.t.get(b"format", db=r.db("meta"))) == 3


def test_check_finds_a_stale_index_and_repair_rebuilds_it(tmp_store_dir):
    with blockstore.Store.open(tmp_store_dir) as s:
        s.create("c")
        s.snapshot("c", "snap")
        s.clone("snap", "d")
        s.env.transact(lambda w: w.t.delete(b"snap\x00d", db=w.db(catalog_links.CHILDREN)))
        rep = s.check()
        assert [p.kind for p in rep.problems] == ["catalog-index"]
        rep = s.check(repair=True)
        assert rep.ok, rep
        assert [d.name for d in s.dependents("snap")] == ["d"]
