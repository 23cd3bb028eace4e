"""btree.bulk: bottom-up build from sorted items equals the same items inserted."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blockstore import catalog
from blockstore.btree import bulk, values
from blockstore.btree.store import NodeStore
from blockstore.catalog import TreeRecord
from _engine import Engine
from blockstore.errors import InvalidInput


def _bulk_tree(e: Engine, name: str, items) -> None:
    def work(w):
        root = bulk.build(NodeStore.of(w), iter(items))
        catalog.add(w, TreeRecord(name=name, kind="volume", root=root))
    e.env.transact(work)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 20000), st.integers(1, 300))
def test_bulk_build_reads_back_and_stays_mutable(tmp_path_factory, n, vlen):
    d = tmp_path_factory.mktemp("bulk")
    with Engine.open(str(d / "s"), block_size=4096) as e:
        items = [(b"k%08d" % i, b"%d" % i * (vlen // 8 + 1)) for i in range(n)]
        _bulk_tree(e, "t", [(k, values.plain(v)) for k, v in items])
        assert e.items("t") == items
        if n:
            assert e.get("t", items[n // 2][0]) == items[n // 2][1]
        e.snapshot("t", "s")
        e.put("t", b"k00000000a", b"x")
        e.delete("t", b"k%08d" % (n // 3))
        assert e.items("s") == items
        assert e.check().ok, str(e.check())


def test_bulk_build_refuses_unsorted_keys(tmp_path):
    with Engine.open(str(tmp_path / "s")) as e:
        with pytest.raises(InvalidInput):
            _bulk_tree(e, "t", [(b"b", values.plain(b"1")), (b"a", values.plain(b"2"))])
        assert e.list() == []
        assert e.check().ok


def test_bulk_nodes_are_full_and_levels_even(tmp_path):
    with Engine.open(str(tmp_path / "s")) as e:
        _bulk_tree(e, "t", [(b"k%08d" % i, values.plain(b"v" * 20)) for i in range(50000)])
        with e.reader() as r:
            ns = NodeStore.of(r)
            root = catalog.get(r, "t").root
            node = ns.get(root)
            depth = 1
            while node.level:
                node = ns.get(node.vals[0])
                depth += 1
            assert depth <= 3
        assert e.check().ok
