"""Issue 20: usage of every tree in one pass equals the per-tree walk.

``Store.usage_all`` (api/usage_all.py) summarises each shared subtree once;
its result for every tree must be exactly ``Store.usage`` of that tree,
which tests/test_usage.py checks against brute force.  Random histories
come from that file's ``build_history`` (imports, clones, writes that
shadow shared leaves, hard links, large xattrs, commits, removals, gc,
dedup on and off, so blocks are shared within and across trees).
"""
from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blockstore import Store

from test_usage import BS, build_history


def _same(store) -> None:
    one_pass = store.usage_all()
    names = [r.name for r in store.list()]
    assert sorted(one_pass) == sorted(names)
    for n in names:
        assert one_pass[n] == store.usage(n), n


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), dedup=st.booleans())
def test_one_pass_equals_per_tree_on_random_stores(tmp_path_factory, seed, dedup):
    work = tmp_path_factory.mktemp("h")
    with Store.open(work / "store", dedup=dedup) as store:
        build_history(store, random.Random(seed), str(work))
        _same(store)
        # shared leaves below exclusive paths, and blocks shared within one tree
        store.clone("final", "twin")
        with store.fs("twin") as fs:
            fs.write_bytes("/own2", b"x" * BS)
            data = fs.read_bytes("/own")
            fs.write_bytes("/copy-of-own", data)
        _same(store)
        assert store.usage_all(["twin"])["twin"] == store.usage("twin")


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), dedup=st.booleans())
def test_one_pass_equals_per_tree_with_deep_shared_trees(tmp_path_factory, seed, dedup):
    """A base of 250 files (internal nodes, so clones share subtrees below their
    own root) whose clones change, copy and relabel files: blocks shared across
    subtrees of one tree, and pool-shared blocks both alone and below shared nodes."""
    rnd = random.Random(seed)
    work = tmp_path_factory.mktemp("deep")
    src = work / "src"
    src.mkdir()
    for i in range(250):
        (src / f"f{i:03d}").write_bytes(rnd.randbytes(rnd.randrange(1, 3) * BS) if i % 5
                                        else b"R" * BS * 2)
    with Store.open(work / "store", dedup=dedup) as store:
        store.import_dir(src, "base")
        for c in range(5):
            store.clone("base", f"c{c}")
            with store.fs(f"c{c}") as fs:
                for _ in range(3):
                    p = f"/f{rnd.randrange(250):03d}"
                    op = rnd.randrange(3)
                    if op == 0:
                        with fs.open(p, "r+b") as fh:
                            fh.write(rnd.randbytes(100))
                    elif op == 1:
                        fs.write_bytes(f"/copy{rnd.randrange(99)}", fs.read_bytes(p))
                    else:
                        fs.setxattr(p, "user.x", b"v")
            if c % 2:
                store.commit(f"c{c}", f"s{c}")
                store.clone(f"s{c}", f"d{c}")
        _same(store)


def test_one_pass_visits_each_shared_node_once(tmp_path):
    """Many clones of one snapshot: the snapshot's nodes are read once, not once
    per clone (counted at NodeStore.get, the real reader)."""
    from blockstore.btree import store as bstore
    src = tmp_path / "src"
    src.mkdir()
    for i in range(300):
        (src / f"f{i}").write_bytes(random.Random(i).randbytes(5000))
    with Store.open(tmp_path / "s") as store:
        store.import_dir(src, "base")
        with store.batch():
            for i in range(50):
                store.clone("base", f"c{i}")
        with store.fs("c3") as fs:
            fs.write_bytes("/f7", b"changed")
        per_tree = store.usage("base").nodes
        reads = [0]
        real = bstore.NodeStore.get

        def counting(self, nid):
            reads[0] += 1
            return real(self, nid)
        bstore.NodeStore.get = counting
        try:
            got = store.usage_all()
        finally:
            bstore.NodeStore.get = real
        assert got["c3"] == store.usage("c3") and got["c9"] == store.usage("c9")
        assert reads[0] <= 2 * per_tree + 10, (reads[0], per_tree)
