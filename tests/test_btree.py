"""btree layer: node encoding, tree operations against a dict, sharing, diff."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blockstore.btree import tree as bt
from blockstore.btree import values
from blockstore.btree.diff import diff
from blockstore.btree.node import MAX_NODE_BYTES, Node, decode, encode
from blockstore.btree.store import NodeStore
from blockstore.errors import Corruption
from blockstore.txn import Env


@pytest.fixture
def env(tmp_path):
    e = Env(str(tmp_path / "s"), create=True, block_size=4096)
    yield e
    e.close()


def test_node_roundtrip_leaf_and_internal():
    leaf = Node(7, 0, [b"a", b"bb", b"ccc"], [b"\x00x", b"\x00", b"\x00yyyy"])
    raw = encode(leaf)
    assert len(raw) == leaf.nbytes
    d = decode(7, raw)
    assert (d.level, d.keys, d.vals) == (0, leaf.keys, leaf.vals)
    inner = Node(8, 2, [b"", b"m"], [11, 12])
    d = decode(8, encode(inner))
    assert (d.level, d.keys, d.vals) == (2, [b"", b"m"], [11, 12])
    assert len(encode(inner)) == inner.nbytes


def test_node_checksum_detects_any_bit_flip():
    raw = bytearray(encode(Node(3, 0, [b"key"], [b"\x00value"])))
    for bit in range(len(raw) * 8):
        bad = bytearray(raw)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(Corruption):
            decode(3, bytes(bad))


def _key(i: int) -> bytes:
    return b"k%08d" % i


def test_insert_lookup_delete_many(env):
    model = {}
    rnd = random.Random(1)
    with env.write() as w:
        ns = NodeStore.of(w)
        root = 0
        for _ in range(5000):
            k = _key(rnd.randrange(3000))
            if rnd.random() < 0.7:
                v = values.plain(bytes(rnd.randrange(1, 60)))
                root = bt.insert(ns, root, k, v)
                model[k] = v
            else:
                root, old = bt.delete(ns, root, k)
                assert old == model.pop(k, None)
        assert [(k, v) for k, v in bt.iterate(ns, root)] == sorted(model.items())
        w.put("meta", b"test.root", root.to_bytes(8, "big"))
    with env.read() as r:
        ns = NodeStore.of(r)
        for k, v in model.items():
            assert bt.lookup(ns, root, k) == v
        assert bt.lookup(ns, root, b"zz") is None
        lo, hi = _key(100), _key(200)
        assert list(bt.iterate(ns, root, lo, hi)) == sorted(
            (k, v) for k, v in model.items() if lo <= k < hi)
        assert list(bt.iterate(ns, root, reverse=True)) == sorted(model.items(), reverse=True)


def test_nodes_stay_within_size_and_depth_is_logarithmic(env):
    with env.write() as w:
        ns = NodeStore.of(w)
        root = 0
        for i in range(20000):
            root = bt.insert(ns, root, _key(i), values.plain(b"v" * 20))
        node, depth = ns.get(root), 1
        while node.level:
            assert node.nbytes <= MAX_NODE_BYTES
            node = ns.get(node.vals[0])
            depth += 1
        assert depth <= 4


def test_shared_tree_is_not_changed_by_writes_to_its_clone(env):
    with env.write() as w:
        ns = NodeStore.of(w)
        a = 0
        for i in range(2000):
            a = bt.insert(ns, a, _key(i), values.plain(b"a"))
        # Clone inside the same transaction: in-place writes must stop (docs/ARCHITECTURE.md §5).
        b = bt.share(ns, a)
        for i in range(0, 2000, 7):
            b = bt.insert(ns, b, _key(i), values.plain(b"b"))
        b, _ = bt.delete(ns, b, _key(1))
        assert all(v == values.plain(b"a") for _, v in bt.iterate(ns, a))
        assert sum(1 for _ in bt.iterate(ns, a)) == 2000
        assert bt.lookup(ns, b, _key(7)) == values.plain(b"b")
        assert bt.lookup(ns, b, _key(1)) is None
        changed = list(diff(ns, a, b))
        assert len(changed) == len(range(0, 2000, 7)) + 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 3)), max_size=300),
       st.lists(st.tuples(st.integers(0, 400), st.integers(0, 3)), max_size=60))
def test_diff_equals_model(tmp_path_factory, base_ops, change_ops):
    e = Env(str(tmp_path_factory.mktemp("d") / "s"), create=True, block_size=4096)
    try:
        with e.write() as w:
            ns = NodeStore.of(w)
            a, ma = 0, {}
            for k, op in base_ops:
                a = bt.insert(ns, a, _key(k), values.plain(b"%d" % op))
                ma[_key(k)] = values.plain(b"%d" % op)
            b, mb = bt.share(ns, a), dict(ma)
            for k, op in change_ops:
                if op == 0:
                    b, _ = bt.delete(ns, b, _key(k))
                    mb.pop(_key(k), None)
                else:
                    b = bt.insert(ns, b, _key(k), values.plain(b"x%d" % op))
                    mb[_key(k)] = values.plain(b"x%d" % op)
            want = sorted((k, ma.get(k), mb.get(k)) for k in set(ma) | set(mb)
                          if ma.get(k) != mb.get(k))
            assert list(diff(ns, a, b)) == want
            assert list(diff(ns, b, a)) == [(k, y, x) for k, x, y in want]
    finally:
        e.close()


def test_node_ids_carry_their_level(env):
    """Internal nodes' ids sort apart from the leaves, grouped by level (store.ID_LEVEL_SHIFT);
    the low bits are one never-reused counter."""
    from blockstore.btree.store import ID_LEVEL_SHIFT
    with env.write() as w:
        ns = NodeStore.of(w)
        root = 0
        for i in range(20000):
            root = bt.insert(ns, root, _key(i), values.plain(b"v" * 20))
        seen, todo = [], [root]
        while todo:
            node = ns.get(todo.pop())
            seen.append(node.id)
            assert node.id >> ID_LEVEL_SHIFT == node.level
            if node.level:
                todo.extend(node.vals)
        assert ns.get(root).level >= 2
        seqs = [nid & ((1 << ID_LEVEL_SHIFT) - 1) for nid in seen]
        assert len(set(seqs)) == len(seqs)


def _node_counts(ns, roots):
    """Expected refcount of every node reachable from roots (one per root reference
    and one per parent that names it)."""
    want, todo = {}, list(roots)
    while todo:
        nid = todo.pop()
        want[nid] = want.get(nid, 0) + 1
        if want[nid] == 1:
            node = ns.get(nid)
            if node.level:
                todo.extend(node.vals)
    return want


def test_freeing_shadowed_nodes_keeps_counts_exact(tmp_path):
    """Removing clones decrements shared children from n to n-1 (n = 2 and n > 2), and
    a clone shadowed and freed in one transaction (counts in the overlay) too."""
    from _engine import Engine
    e = Engine.open(str(tmp_path / "s"))
    try:
        e.create("base")
        with e.batch():
            e.put_many("base", [(_key(i), b"v") for i in range(30000)])
        e.snapshot("base", "snap")
        names = []
        for c in range(4):             # overlapping changes: some children reach count 5
            e.clone("snap", f"c{c}")
            e.put_many(f"c{c}", [(_key(i), b"c%d" % c) for i in range(c * 50, 30000, 997)])
            names.append(f"c{c}")
        with e.batch():                # shadow and free within one transaction
            e.clone("snap", "tmp")
            e.put_many("tmp", [(_key(i), b"t") for i in range(0, 30000, 1500)])
            e.remove("tmp")
        for name in (names[1], names[3], names[0]):
            e.remove(name)
            e.gc()
            with e.reader() as r:
                from blockstore import catalog
                ns = NodeStore.of(r)
                roots = [rec.root for rec in catalog.records(r) if rec.root]
                want = _node_counts(ns, roots)
                assert {nid: ns.rc(nid) for nid in want} == want
                assert NodeStore.of(r).gc_pending() == 0
            assert e.check().ok
        assert e.get(names[2], _key(100)) == b"c2"
        assert e.get("snap", _key(100)) == b"v"
    finally:
        e.close()


def test_gc_step_out_of_budget_queues_what_it_could_not_free(tmp_path):
    """gc_step frees nodes reaching zero within the step from memory; what the
    budget leaves over must be queued before the commit (check runs after each
    step: a zero-count node that is neither freed nor queued is a leak)."""
    from _engine import Engine
    e = Engine.open(str(tmp_path / "s"))
    try:
        e.create("t")
        with e.batch():
            e.put_many("t", [(_key(i), b"v" * 40) for i in range(20000)])
        with e.reader() as r:
            from blockstore import catalog
            root = catalog.get(r, "t").root
        with e.env.write() as w:
            from blockstore import catalog
            catalog.delete(w, "t")
            assert NodeStore.of(w).gc_step(3, drop=(root,)) == 3
        steps = 0
        while True:
            with e.reader() as r:
                left = NodeStore.of(r).gc_pending()
            assert e.check().ok
            if not left:
                break
            e.env.transact(lambda w: NodeStore.of(w).gc_step(7))
            steps += 1
        assert steps > 10
        with e.reader() as r:
            assert r.t.stat(r.db("nodes"))["entries"] == 0
    finally:
        e.close()


def test_insert_over_a_key_releases_its_blocks_unless_told_to_keep_them(env):
    with env.write() as w:
        ns = NodeStore.of(w)
        blocks = w.blocks
        (s, n), = blocks.write(bytes(range(256)) * 32)          # 2 blocks, one reference
        root = bt.insert(ns, 0, b"x", values.blockref(s, n))
        (s2, n2), = blocks.write(bytes(range(1, 256)) * 16 + b"z" * 16)   # 1 block
        assert s2 == s + n                                          # contiguous: extends it
        # An extent growing over its old blocks hands their reference on: no count changes.
        root = bt.insert(ns, root, b"x", values.blockref(s, n + n2), release_old=False)
        assert [blocks.refcount(b) for b in range(s, s + 3)] == [1, 1, 1]
        # The default releases the old value: its blocks drop to zero (pending-free).
        root = bt.insert(ns, root, b"x", values.plain(b"v"))
        assert [blocks.refcount(b) for b in range(s, s + 3)] == [0, 0, 0]
        bt.release(ns, root)
