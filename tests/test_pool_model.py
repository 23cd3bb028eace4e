"""Simulation test of the pool against an in-memory model (Hypothesis stateful).

The model: block -> refcount and block -> content for live blocks, the set of
(freeing txn, block) pending entries, and the open LMDB readers with the
block contents they could reach when they started.  Rules: write (with
zero and duplicate blocks), inc, dec, commit, abort, open/close a reader,
release with a random limit no newer than the oldest reader.  After every
step: self_check() == [], the pool's states equal the model's, every live
block reads back its content, and every block an open reader could reach
still holds the bytes it had (the deferred-free hazard).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile

import lmdb
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from blockstore.pool import HOLE, DataFile, Pool, PoolDbs

BS = 4096
GROW_BLOCKS = 8  # tiny growth steps so growth and hint wrap-around happen often


def content(tag: int) -> bytes:
    return hashlib.sha256(tag.to_bytes(8, "big")).digest() * (BS // 32)


# None = zero block; 0..3 = a few recurring contents (duplicates); larger = mostly unique
BLOCK = st.one_of(st.none(), st.integers(0, 3), st.integers(4, 1 << 40))


class PoolModel(RuleBasedStateMachine):
    dedup = False

    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="pool-model-")
        self.env = lmdb.open(self.dir + "/meta", max_dbs=32, map_size=1 << 30)
        self.dbs = PoolDbs.open(self.env)
        self.data = DataFile(self.dir + "/data", BS, create=True)
        self.pool = Pool(self.dbs, self.data, BS, self.dedup, grow_min_bytes=GROW_BLOCKS * BS)
        self.t = self.env.begin(write=True)
        self.ref: dict[int, int] = {}
        self.content: dict[int, bytes] = {}
        self.pending: set[tuple[int, int]] = set()
        self.saved = self._snapshot()
        self.readers: list[tuple[lmdb.Transaction, dict[int, bytes]]] = []

    def teardown(self):
        for r, _ in self.readers:
            r.abort()
        self.t.abort()
        self.env.close()
        self.data.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _snapshot(self):
        return dict(self.ref), dict(self.content), set(self.pending)

    # ------------------------------------------------------------------ rules
    @rule(tags=st.lists(BLOCK, min_size=1, max_size=12))
    def write(self, tags):
        data = b"".join(bytes(BS) if x is None else content(x) for x in tags)
        live_before = set(self.ref)
        runs = self.pool.write(self.t, data)
        placed = [b for s, n in runs for b in ([HOLE] * n if s == HOLE else range(s, s + n))]
        assert len(placed) == len(tags)
        for x, b in zip(tags, placed):
            if x is None:
                assert b == HOLE
                continue
            assert b != HOLE
            if b in self.ref:
                assert self.dedup or b not in live_before, "dedup off must never share"
                assert self.content[b] == content(x)
                self.ref[b] += 1
            else:
                assert all(pb != b for _, pb in self.pending), f"pending block {b} reused"
                self.ref[b] = 1
                self.content[b] = content(x)

    def _run_at(self, data) -> tuple[int, int]:
        b = data.draw(st.sampled_from(sorted(self.ref)))
        n = 1
        limit = data.draw(st.integers(1, 4))
        while n < limit and b + n in self.ref:
            n += 1
        return b, n

    @precondition(lambda self: self.ref)
    @rule(data=st.data())
    def inc(self, data):
        b, n = self._run_at(data)
        self.pool.inc(self.t, b, n)
        for x in range(b, b + n):
            self.ref[x] += 1

    @precondition(lambda self: self.ref)
    @rule(data=st.data())
    def dec(self, data):
        b, n = self._run_at(data)
        self.pool.dec(self.t, b, n)
        for x in range(b, b + n):
            self.ref[x] -= 1
            if not self.ref[x]:
                del self.ref[x], self.content[x]
                self.pending.add((self.t.id(), x))

    @rule()
    def commit(self):
        self.pool.flush_pending(self.t)     # as WriteTxn._commit does
        self.pool.sync()
        self.t.commit()
        self.t = self.env.begin(write=True)
        self.saved = self._snapshot()

    @rule()
    def abort(self):
        self.t.abort()
        self.t = self.env.begin(write=True)
        self.ref, self.content, self.pending = (dict(self.saved[0]), dict(self.saved[1]), set(self.saved[2]))

    @precondition(lambda self: len(self.readers) < 3)
    @rule()
    def open_reader(self):
        self.readers.append((self.env.begin(), dict(self.saved[1])))

    @precondition(lambda self: self.readers)
    @rule(data=st.data())
    def close_reader(self, data):
        i = data.draw(st.integers(0, len(self.readers) - 1))
        r, _ = self.readers.pop(i)
        r.abort()

    @rule(data=st.data())
    def release(self, data):
        oldest = min([r.id() for r, _ in self.readers], default=self.t.id() - 1)
        limit = data.draw(st.integers(max(0, oldest - 3), oldest))
        got = self.pool.release_pending(self.t, limit)
        gone = {(w, b) for w, b in self.pending if w <= limit and w < self.t.id()}
        self.pending -= gone
        assert got == len(gone)

    # ------------------------------------------------------------- invariants
    @invariant()
    def pool_is_sound(self):
        assert self.pool.self_check(self.t, verify_data=True) == []

    @invariant()
    def states_match_model(self):
        p, t = self.pool, self.t
        for b, c in self.ref.items():
            assert p.refcount(t, b) == c, (b, c)
        pend = {(w, b) for w, s, n in p.pending_runs(t) for b in range(s, s + n)}
        assert pend == self.pending
        st_ = p.stats(t)
        assert st_.used_blocks == len(self.ref)
        assert st_.pending_blocks == len(self.pending)
        assert st_.shared_blocks == sum(1 for c in self.ref.values() if c >= 2)
        assert st_.shared_extra_refs == sum(c - 1 for c in self.ref.values())
        if self.dedup:
            assert len(set(self.content.values())) == len(self.content), "equal live blocks not shared"
            assert st_.dedup_entries == len(self.content)

    @invariant()
    def live_blocks_read_back(self):
        for b, data in self.content.items():
            assert self.pool.read(b, 1) == data, b

    @invariant()
    def readers_see_their_blocks(self):
        for _, seen in self.readers:
            for b, data in seen.items():
                assert self.pool.read(b, 1) == data, f"block {b} reused under an open reader"


SETTINGS = settings(max_examples=int(os.environ.get("POOL_MODEL_EXAMPLES", 50)), stateful_step_count=30,
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


class PoolModelDedup(PoolModel):
    dedup = True


TestPoolModel = PoolModel.TestCase
TestPoolModel.settings = SETTINGS
TestPoolModelDedup = PoolModelDedup.TestCase
TestPoolModelDedup.settings = SETTINGS
