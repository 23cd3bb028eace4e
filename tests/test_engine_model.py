"""Engine state machine: random put / delete / range-read / blob / clone /
snapshot / remove / diff / gc on several trees against an in-memory model.
`check` passes after every step and every snapshot reads back exactly as it
was when taken."""
from __future__ import annotations

import shutil
import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from _engine import Engine
from blockstore.errors import ReadOnly

KEYS = st.integers(0, 3100).map(lambda i: b"key%05d" % i)
VALS = st.binary(min_size=0, max_size=40)
BS = 4096


def blob_data():
    """Blob contents with zero blocks, repeated (dedupable) blocks and partial tails."""
    piece = st.sampled_from([b"\x00" * BS, b"A" * BS, b"B" * BS]) | st.binary(min_size=1, max_size=64).map(
        lambda b: (b * (BS // len(b) + 1))[:BS])
    return st.tuples(st.lists(piece, max_size=5), st.integers(0, BS - 1)).map(
        lambda t: b"".join(t[0]) + b"t" * t[1])


class EngineModel(RuleBasedStateMachine):
    trees = Bundle("trees")

    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="bs-model-")
        self.n = 0
        self.model: dict[str, dict] = {}     # tree -> {key: value}
        self.blobs: dict[str, dict] = {}     # tree -> {key: data}
        self.kind: dict[str, str] = {}

    @initialize(target=trees, dedup=st.booleans())
    def open(self, dedup):
        self.e = Engine.open(self.dir + "/s", block_size=BS, dedup=dedup)
        self.e.create("v0")
        self.model["v0"], self.blobs["v0"], self.kind["v0"] = {}, {}, "volume"
        return "v0"

    def teardown(self):
        if hasattr(self, "e"):
            self.e.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _fresh_tree_name(self):
        self.n += 1
        return f"t{self.n}"

    def _live(self, t):
        return t in self.model

    @rule(t=trees, k=KEYS, v=VALS)
    def put(self, t, k, v):
        if not self._live(t):
            return
        if self.kind[t] == "snapshot":
            try:
                self.e.put(t, k, v)
            except ReadOnly:
                return
            raise AssertionError("put into a snapshot succeeded")
        self.e.put(t, k, v)
        self.model[t][k] = v

    @rule(t=trees, k=KEYS)
    def delete(self, t, k):
        if not self._live(t) or self.kind[t] == "snapshot":
            return
        assert self.e.delete(t, k) == (k in self.model[t])
        self.model[t].pop(k, None)

    @rule(t=trees, lo=st.integers(0, 3000), n=st.integers(1, 1500), size=st.integers(1, 200),
          seed=st.integers(0, 255))
    def bulk_put(self, t, lo, n, size, seed):
        """Many keys at once: trees grow to several levels, so splits, merges and
        shared internal nodes are exercised."""
        if not self._live(t) or self.kind[t] == "snapshot":
            return
        items = [(b"key%05d" % i, bytes([seed, i % 256]) * (size // 2 + 1)) for i in range(lo, lo + n)]
        self.e.put_many(t, items)
        self.model[t].update(items)

    @rule(t=trees, lo=st.integers(0, 3000), n=st.integers(1, 1500))
    def bulk_delete(self, t, lo, n):
        if not self._live(t) or self.kind[t] == "snapshot":
            return
        keys = [b"key%05d" % i for i in range(lo, lo + n)]
        with self.e.batch():
            for k in keys:
                assert self.e.delete(t, k) == (k in self.model[t])
                self.model[t].pop(k, None)

    @rule(t=trees, k=st.integers(0, 3).map(lambda i: b"blob%d" % i), data=blob_data())
    def put_blob(self, t, k, data):
        if not self._live(t) or self.kind[t] == "snapshot":
            return
        self.e.put_blob(t, k, data)
        self.blobs[t][k] = data

    @rule(t=trees, k=st.integers(0, 3).map(lambda i: b"blob%d" % i))
    def delete_blob(self, t, k):
        if not self._live(t) or self.kind[t] == "snapshot":
            return
        self.e.delete_blob(t, k)
        self.blobs[t].pop(k, None)

    @rule(t=trees, lo=KEYS, hi=KEYS)
    def range_read(self, t, lo, hi):
        if not self._live(t):
            return
        got = [(k, v) for k, v in self.e.items(t, lo, hi) if k.startswith(b"key")]
        assert got == sorted((k, v) for k, v in self.model[t].items() if lo <= k < hi)

    @rule(target=trees, t=trees)
    def snapshot(self, t):
        if not self._live(t):
            return t
        name = self._fresh_tree_name()
        self.e.snapshot(t, name)
        self.model[name], self.blobs[name] = dict(self.model[t]), dict(self.blobs[t])
        self.kind[name] = "snapshot"
        return name

    @rule(target=trees, t=trees)
    def clone(self, t):
        if not self._live(t):
            return t
        name = self._fresh_tree_name()
        self.e.clone(t, name)
        self.model[name], self.blobs[name] = dict(self.model[t]), dict(self.blobs[t])
        self.kind[name] = "clone"
        return name

    @rule(t=trees)
    def remove(self, t):
        if not self._live(t) or len(self.model) == 1:
            return
        self.e.remove(t)
        del self.model[t], self.blobs[t], self.kind[t]

    @rule(a=trees, b=trees)
    def diff(self, a, b):
        if not (self._live(a) and self._live(b)):
            return
        ma, mb = self.model[a], self.model[b]
        want = sorted((k, ma.get(k), mb.get(k)) for k in set(ma) | set(mb) if ma.get(k) != mb.get(k))
        got = [d for d in self.e.diff(a, b) if d[0].startswith(b"key")]
        assert got == want

    @rule()
    def gc(self):
        self.e.gc()

    @rule()
    def reopen(self):
        self.e.close()
        self.e = Engine.open(self.dir + "/s", create=False)

    @invariant()
    def trees_equal_model_and_check_passes(self):
        if not hasattr(self, "e"):
            return
        for t in self.model:
            got = {k: v for k, v in self.e.items(t) if k.startswith(b"key")}
            assert got == self.model[t], t
            for k, data in self.blobs[t].items():
                assert self.e.get_blob(t, k) == data
        assert sorted(r.name for r in self.e.list()) == sorted(self.model)
        report = self.e.check()
        assert report.ok, str(report)


TestEngineModel = EngineModel.TestCase
TestEngineModel.settings = settings(stateful_step_count=30)  # examples: the profile (conftest)
