"""Unit tests of layer 2 (pool): allocator, deferred frees, refcounts, dedup, check, repair.

Each test opens a real LMDB environment and data file in tmp_path and commits
its own transactions, as the txn layer would.  Every test ends with
self_check() == [] unless it corrupts the pool on purpose.
"""
from __future__ import annotations

import errno
import hashlib
import os
import subprocess

import lmdb
import pytest

from blockstore import errors
from blockstore.pool import HOLE, DataFile, Pool, PoolDbs
from blockstore.pool.dbs import (FREE_BLOCKS, HINT, TOTAL_BLOCKS, BLOCK_SIZE, pack_u64, pack_u64x2)

BS = 4096
GROW = 64  # blocks per minimum growth step in most tests (keeps files small)


class Store:
    """An LMDB env + data file + pool, with a current write txn ``t``."""

    def __init__(self, path, *, dedup=False, bs=BS, grow_blocks=GROW):
        self.path = path
        self.env = lmdb.open(str(path / "meta"), max_dbs=32, map_size=1 << 34)
        self.dbs = PoolDbs.open(self.env)
        self.data = DataFile(str(path / "data"), bs, create=True)
        self.pool = Pool(self.dbs, self.data, bs, dedup, grow_min_bytes=grow_blocks * bs)
        self.bs = bs
        self.t = self.env.begin(write=True)

    def commit(self):
        self.pool.flush_pending(self.t)     # as WriteTxn._commit does
        self.pool.sync()
        self.t.commit()
        self.t = self.env.begin(write=True)

    def abort(self):
        self.t.abort()
        self.t = self.env.begin(write=True)

    def check(self):
        assert self.pool.self_check(self.t, verify_data=True) == []

    def close(self):
        self.t.abort()
        self.env.close()
        self.data.close()


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path)
    yield s
    s.close()


@pytest.fixture
def dstore(tmp_path):
    s = Store(tmp_path, dedup=True)
    yield s
    s.close()


def blk(tag: int, bs: int = BS) -> bytes:
    """A non-zero block whose content is determined by ``tag``."""
    return hashlib.sha256(tag.to_bytes(8, "big")).digest() * (bs // 32)


def blocks(*tags) -> bytes:
    return b"".join(bytes(BS) if x is None else blk(x) for x in tags)


# ============================================================ data file
def test_datafile_roundtrip_and_size(tmp_path):
    with DataFile(str(tmp_path / "d"), BS, create=True) as df:
        assert df.size_blocks() == 0
        df.grow(4)
        assert df.size_blocks() == 4
        df.pwrite(1, blocks(1, 2))
        df.pwritev(3, [blk(3)])
        assert df.pread(1, 3) == blocks(1, 2, 3)
        df.fdatasync()


def test_datafile_open_missing_is_notfound(tmp_path):
    with pytest.raises(errors.NotFound):
        DataFile(str(tmp_path / "missing"), BS, create=False)


def test_datafile_truncated_read_is_corruption(store):
    runs = store.pool.write(store.t, blocks(1, 2, 3))
    store.commit()
    os.truncate(store.path / "data", BS)  # only block 0 left
    with pytest.raises(errors.Corruption, match="data file truncated"):
        store.pool.read(runs[0][0], 3)
    assert any("data file has 1 blocks" in p for p in store.pool.self_check(store.t))


def test_datafile_grow_enospc_leaves_file_as_it_was(tmp_path, monkeypatch):
    df = DataFile(str(tmp_path / "d"), BS, create=True)
    df.grow(2)

    def boom(fd, off, ln):
        os.ftruncate(fd, off + ln // 2)  # a partial extension must be undone
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "posix_fallocate", boom)
    with pytest.raises(errors.NoSpace) as ei:
        df.grow(10)
    assert ei.value.filename == str(tmp_path / "d")
    assert df.size_blocks() == 2
    df.close()


# ============================================================ write / allocation
def test_write_rejects_partial_blocks(store):
    with pytest.raises(errors.InvalidInput):
        store.pool.write(store.t, b"x" * (BS + 1))
    assert store.pool.write(store.t, b"") == []


def test_sequential_writes_are_contiguous_across_txns(store):
    got = []
    for i in range(5):
        got += store.pool.write(store.t, blocks(*range(10 * i, 10 * i + 7)))
        store.commit()
    assert got == [(7 * i, 7) for i in range(5)]
    assert store.pool.read(0, 35) == blocks(*[x for i in range(5) for x in range(10 * i, 10 * i + 7)])
    store.check()


def test_write_spanning_growth_stays_contiguous(store):
    r1 = store.pool.write(store.t, blocks(*range(60)))
    r2 = store.pool.write(store.t, blocks(*range(100, 110)))  # crosses the first 64-block step
    assert r1 == [(0, 60)] and r2 == [(60, 10)]
    store.check()


def test_zero_blocks_are_holes_and_not_allocated(store):
    runs = store.pool.write(store.t, blocks(None, None, 1, None, 2, 3, None))
    assert runs == [(HOLE, 2), (0, 1), (HOLE, 1), (1, 2), (HOLE, 1)]
    st = store.pool.stats(store.t)
    assert st.used_blocks == 3 and st.zero_blocks == 4
    assert store.pool.read(HOLE, 2) == bytes(2 * BS)
    assert store.pool.read(1, 2) == blocks(2, 3)
    # an all-zero write allocates nothing, not even the file
    total = store.pool.total_blocks(store.t)
    assert store.pool.write(store.t, bytes(5 * BS)) == [(HOLE, 5)]
    assert store.pool.total_blocks(store.t) == total
    store.check()


def test_empty_pool_all_zero_write_grows_nothing(store):
    assert store.pool.write(store.t, bytes(3 * BS)) == [(HOLE, 3)]
    assert store.pool.total_blocks(store.t) == 0 and store.data.size_blocks() == 0
    store.check()


def test_gather_write_with_interleaved_zeros_reads_back(store):
    tags = [None if i % 3 == 0 else i for i in range(200)]
    data = blocks(*tags)
    runs = store.pool.write(store.t, data)
    out = b"".join(store.pool.read(s, n) for s, n in runs)
    assert out == data
    store.check()


# ============================================================ dedup
def test_dedup_on_shares_equal_blocks(dstore):
    p, t = dstore.pool, dstore.t
    r1 = p.write(t, blocks(1, 2, 1, None, 1))  # duplicates within the call
    assert r1 == [(0, 2), (0, 1), (HOLE, 1), (0, 1)]
    assert p.refcount(t, 0) == 3 and p.refcount(t, 1) == 1
    dstore.commit()
    r2 = p.write(dstore.t, blocks(2, 3))  # duplicate of an earlier txn
    assert r2 == [(1, 2)]  # the hit on block 1 and the new block 2 happen to be contiguous
    t = dstore.t
    assert p.refcount(t, 1) == 2
    st = p.stats(t)
    assert (st.used_blocks, st.shared_blocks, st.shared_extra_refs, st.dedup_entries, st.dedup_hits) == (3, 2, 3, 3, 3)
    assert list(p.shared_runs(t)) == [(0, 1, 3), (1, 1, 2)]
    dstore.check()


def test_dedup_off_stores_equal_blocks_separately(store):
    p, t = store.pool, store.t
    assert p.write(t, blocks(1, 1, 1)) == [(0, 3)]
    assert [p.refcount(t, b) for b in range(3)] == [1, 1, 1]
    assert list(p.dedup_entries(t)) == [] and list(p.shared_runs(t)) == []
    store.check()


def test_dedup_entry_dies_with_last_reference(dstore):
    p = dstore.pool
    (b, _), = p.write(dstore.t, blocks(7))
    dstore.commit()
    p.dec(dstore.t, b, 1)
    assert list(p.dedup_entries(dstore.t)) == []  # same txn as the last reference
    # the same content again must not resurrect the pending block
    (b2, _), = p.write(dstore.t, blocks(7))
    assert b2 != b and p.refcount(dstore.t, b) == 0
    dstore.check()


def test_dedup_hit_on_dead_block_is_corruption(dstore):
    p, t = dstore.pool, dstore.t
    (b, _), = p.write(t, blocks(5))
    h = hashlib.sha256(blk(5)).digest()
    p.dec(t, b, 1)
    t.put(h, pack_u64(b), db=dstore.dbs.dedup)  # the hazard: entry outliving its block
    with pytest.raises(errors.Corruption, match="dedup hit on block 0"):
        p.write(t, blocks(5))


# ============================================================ refcounts, deferred frees
def test_inc_dec_transitions_and_deferred_release(store):
    p = store.pool
    (b, _), = p.write(store.t, blocks(1))
    store.commit()
    t = store.t
    p.inc(t, b, 1)
    assert p.refcount(t, b) == 2 and list(p.shared_runs(t)) == [(b, 1, 2)]
    p.dec(t, b, 1)
    assert p.refcount(t, b) == 1 and list(p.shared_runs(t)) == []
    p.dec(t, b, 1)
    w = t.id()
    assert p.refcount(t, b) == 0 and list(p.pending_runs(t)) == [(w, b, 1)]
    assert p.release_pending(t, w) == 0  # never the current txn's frees
    store.commit()
    t = store.t
    assert p.release_pending(t, w - 1) == 0  # a reader older than W is alive
    assert list(p.pending_runs(t)) == [(w, b, 1)]
    assert p.release_pending(t, w) == 1
    assert list(p.pending_runs(t)) == [] and (b, 1) in list(p.free_runs(t)) or \
        any(s <= b < s + n for s, n in p.free_runs(t))
    store.check()


def test_pending_blocks_are_not_reused_while_an_old_reader_lives(store):
    p = store.pool
    runs = p.write(store.t, blocks(1, 2, 3))
    store.commit()
    reader = store.env.begin()
    p.dec(store.t, *runs[0])
    store.commit()
    p.release_pending(store.t, reader.id())  # what the txn layer does
    new = p.write(store.t, blocks(*range(10, 80)))  # forces growth and wraps the hint
    assert all(s + n <= runs[0][0] or s >= sum(runs[0]) for s, n in new)
    assert p.read(*runs[0]) == blocks(1, 2, 3)
    reader.abort()
    store.check()


def test_double_dec_and_inc_of_dead_block_are_corruption(store):
    p, t = store.pool, store.t
    (b, _), = p.write(t, blocks(1))
    p.dec(t, b, 1)
    with pytest.raises(errors.Corruption, match="pending-free"):
        p.dec(t, b, 1)
    with pytest.raises(errors.Corruption, match="pending-free"):
        p.inc(t, b, 1)
    with pytest.raises(errors.Corruption, match="free"):
        p.inc(t, 40, 1)  # never allocated
    with pytest.raises(errors.Corruption, match="beyond"):
        p.dec(t, 10_000, 1)
    p.inc(t, HOLE, 3)
    p.dec(t, HOLE, 3)  # holes hold no blocks
    store.check()


def test_shared_runs_split_and_merge(store):
    p, t = store.pool, store.t
    (s, n), = p.write(t, blocks(*range(10)))
    p.inc(t, s, 10)
    p.inc(t, s + 3, 4)
    assert list(p.shared_runs(t)) == [(0, 3, 2), (3, 4, 3), (7, 3, 2)]
    p.dec(t, s + 3, 4)
    assert list(p.shared_runs(t)) == [(0, 10, 2)]
    p.dec(t, s + 2, 6)
    assert list(p.shared_runs(t)) == [(0, 2, 2), (8, 2, 2)]
    p.dec(t, s, 10)
    assert list(p.shared_runs(t)) == []
    assert list(p.pending_runs(t)) == [(t.id(), 2, 6)]
    st = p.stats(t)
    assert (st.used_blocks, st.pending_blocks, st.shared_blocks) == (4, 6, 0)
    store.check()


def test_free_runs_coalesce(store):
    p = store.pool
    (s, n), = p.write(store.t, blocks(*range(10)))
    before = list(p.free_runs(store.t))
    assert before == [(10, GROW - 10)]
    for a, k in ((s + 2, 2), (s + 6, 2), (s + 4, 2), (s, 2), (s + 8, 2)):
        p.dec(store.t, a, k)
    # pending runs of one txn coalesce too
    assert [(a, k) for _, a, k in p.pending_runs(store.t)] == [(0, 10)]
    store.commit()
    assert p.release_pending(store.t, store.t.id() - 1) == 10
    assert list(p.free_runs(store.t)) == [(0, GROW)]
    store.check()


def test_free_coalescing_across_separate_releases(store):
    p = store.pool
    (s, n), = p.write(store.t, blocks(*range(GROW)))  # the whole pool
    assert list(p.free_runs(store.t)) == []
    for a in (1, 5, 3, 2, 4):
        p.dec(store.t, a, 1)
        store.commit()
        p.release_pending(store.t, store.t.id() - 1)
    assert list(p.free_runs(store.t)) == [(1, 5)]
    store.check()


def test_next_fit_wraps_to_freed_space(store):
    p = store.pool
    (s, n), = p.write(store.t, blocks(*range(GROW)))
    p.dec(store.t, 10, 5)
    store.commit()
    p.release_pending(store.t, store.t.id() - 1)
    # the hint is at the end of the pool: the next write wraps to the hole
    assert p.write(store.t, blocks(*range(100, 103))) == [(10, 3)]
    assert p.write(store.t, blocks(*range(200, 204))) == [(13, 2), (GROW, 2)]
    store.check()


# ============================================================ growth, ENOSPC
def test_growth_steps(tmp_path):
    s = Store(tmp_path, grow_blocks=16)
    p = s.pool
    p.write(s.t, blocks(1))
    assert p.total_blocks(s.t) == 16 and s.data.size_blocks() == 16
    p.write(s.t, blocks(*range(2, 102)))  # shortfall 85 > step
    assert p.total_blocks(s.t) == 101
    p.write(s.t, blocks(200))  # step = max(16, 101 // 8 = 12, 1) = 16
    assert p.total_blocks(s.t) == 117
    s.check()
    s.close()


def test_uncommitted_growth_is_reused(store):
    p = store.pool
    p.write(store.t, blocks(1))
    assert store.data.size_blocks() == GROW
    store.abort()
    assert p.total_blocks(store.t) == 0
    calls = []
    orig = store.data.grow
    store.data.grow = lambda n: (calls.append(n), orig(n))
    assert p.write(store.t, blocks(2)) == [(0, 1)]
    assert calls == [] and p.total_blocks(store.t) == GROW
    store.check()


def test_enospc_falls_back_to_exact_growth(store, monkeypatch):
    p = store.pool
    p.write(store.t, blocks(*range(GROW)))
    real = os.posix_fallocate
    seen = []

    def picky(fd, off, ln):
        seen.append(ln // BS)
        if ln > 3 * BS:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, off, ln)
    monkeypatch.setattr(os, "posix_fallocate", picky)
    assert p.write(store.t, blocks(100, 101, 102)) == [(GROW, 3)]
    assert seen == [GROW, 3] and p.total_blocks(store.t) == GROW + 3
    store.check()


def test_enospc_raises_nospace_and_pool_stays_consistent(store, monkeypatch):
    p = store.pool
    p.write(store.t, blocks(*range(GROW - 2)))
    store.commit()
    before = (p.stats(store.t), list(p.free_runs(store.t)))
    monkeypatch.setattr(os, "posix_fallocate",
                        lambda fd, off, ln: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(errors.NoSpace) as ei:
        p.write(store.t, blocks(*range(100, 105)))
    assert "data" in str(ei.value)
    # same txn stays usable: nothing changed
    assert (p.stats(store.t), list(p.free_runs(store.t))) == before
    assert p.write(store.t, blocks(200, 201)) == [(GROW - 2, 2)]
    store.check()


def _mount_tmpfs(path, size):
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True)
    return r.returncode == 0


def test_enospc_on_a_real_small_filesystem(tmp_path):
    mnt = tmp_path / "small"
    if os.geteuid() != 0 or not _mount_tmpfs(mnt, "4m"):
        pytest.skip("cannot mount a tmpfs here")
    try:
        s = Store(mnt, grow_blocks=256)  # 1 MiB steps
        p = s.pool
        written = []
        with pytest.raises(errors.NoSpace):
            for i in range(64):  # 64 MiB in 1 MiB writes: must run out
                written += p.write(s.t, blocks(*range(i * 256, i * 256 + 256)))
                s.commit()
        assert p.self_check(s.t) == []
        assert written and p.read(*written[0])[:BS] == blk(0)
        s.close()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# ============================================================ sync
def test_sync_only_after_writes(store, monkeypatch):
    calls = []
    monkeypatch.setattr(store.data, "fdatasync", lambda: calls.append(1))
    store.pool.sync()
    assert calls == []
    store.pool.write(store.t, blocks(1))
    store.pool.sync()
    store.pool.sync()
    assert calls == [1]
    store.pool.write(store.t, bytes(BS))  # holes write nothing
    store.pool.sync()
    assert calls == [1]


# ============================================================ rebuild
def test_rebuild_fixes_leak_wrong_count_pending_and_dedup(dstore):
    p, t = dstore.pool, dstore.t
    r = p.write(t, blocks(1, 2, 3, 4, 5))  # blocks 0..4
    p.inc(t, 1, 1)
    p.dec(t, 4, 1)  # block 4 pending
    dstore.commit()
    t = dstore.t
    # the trees actually reference: 0 once, 1 three times (count was 2),
    # 2 not at all (leaked), 3 once, 4 once (pending but referenced)
    changes = p.rebuild(t, [(0, 1, 1), (1, 1, 3), (3, 2, 1)])
    text = "\n".join(changes)
    assert "Block 2 was owned once but nothing references it (leaked)" in text
    assert "Block 1 was shared with count 2; the trees make it shared with count 3" in text
    assert "Block 4 was pending-free" in text and "taken out of pending" in text
    assert "dropped" in text  # block 2's dedup entry
    assert [p.refcount(t, b) for b in range(5)] == [1, 3, 0, 1, 1]
    assert list(p.pending_runs(t)) == []
    assert all(b != 2 for _, b in p.dedup_entries(t))
    dstore.check()
    assert p.rebuild(t, [(0, 1, 1), (1, 1, 3), (3, 2, 1)]) == []  # idempotent


def test_rebuild_revives_referenced_free_block(store):
    p, t = store.pool, store.t
    p.write(t, blocks(1, 2))
    changes = p.rebuild(t, [(0, 2, 1), (5, 1, 2)])
    assert changes == ["Block 5 was free; the trees make it shared with count 2."]
    assert p.refcount(t, 5) == 2
    store.check()


def test_rebuild_rejects_unsorted_refs(store):
    store.pool.write(store.t, blocks(1, 2))
    with pytest.raises(errors.InvalidInput):
        store.pool.rebuild(store.t, [(1, 1, 1), (0, 1, 1)])


# ============================================================ self_check: one injected fault per check
def _setup_for_faults(s: Store):
    p = s.pool
    p.write(s.t, blocks(*range(8)))  # blocks 0..7, free 8..63
    p.inc(s.t, 2, 2)                 # shared 2..3 count 2
    p.dec(s.t, 5, 1)                 # pending 5
    s.commit()
    assert p.self_check(s.t) == []


def _put_free(s, a, n):
    s.t.put(pack_u64(a), pack_u64(n), db=s.dbs.free)


def _bump(s, name, d):
    s.pool.meta.add(s.t, name, d)


FAULTS = {
    "free beyond pool": (lambda s: (_put_free(s, 64, 4), _bump(s, FREE_BLOCKS, 4)),
                         "blocks 64..67 (free) extend beyond the pool's 64 blocks"),
    "zero-length run": (lambda s: _put_free(s, 6, 0), "free run at block 6 has length 0"),
    "free not coalesced": (lambda s: (_put_free(s, 7, 1), _bump(s, FREE_BLOCKS, 1)),
                                 "touch but are not coalesced"),
    "free overlaps shared": (lambda s: (_put_free(s, 3, 1), _bump(s, FREE_BLOCKS, 1)),
                             "Block 3 (free) overlaps blocks 2..3 (shared with count 2)"),
    "free overlaps pending": (lambda s: (_put_free(s, 5, 1), _bump(s, FREE_BLOCKS, 1)),
                              ("block 5 (free)", "block 5 (pending-free since txn", "overlaps")),
    "shared count below 2": (lambda s: s.t.put(pack_u64(0), pack_u64x2(1, 1), db=s.dbs.shared),
                             "Shared run block 0 has count 1, below 2"),
    "shared not merged": (lambda s: s.t.put(pack_u64(3), pack_u64x2(1, 2), db=s.dbs.shared) and
                          s.t.put(pack_u64(2), pack_u64x2(1, 2), db=s.dbs.shared),
                          "touch with equal count 2 but are not merged"),
    "pending without mirror": (lambda s: s.t.delete(pack_u64(5), db=s.dbs.pending_rev),
                               "has no matching pool.pending_rev entry"),
    "pending_rev orphan": (lambda s: s.t.put(pack_u64(6), pack_u64x2(1, 3), db=s.dbs.pending_rev),
                           "pool.pending_rev entry block 6 (txn 3) has no matching pool.pending entry"),
    "pending from the future": (lambda s: (s.t.put(pack_u64x2(10 ** 6, 6), pack_u64(1), db=s.dbs.pending),
                                           s.t.put(pack_u64(6), pack_u64x2(1, 10 ** 6), db=s.dbs.pending_rev),
                                           _bump(s, b"pending_blocks", 1)),
                                "later than the current txn"),
    "counter wrong": (lambda s: _bump(s, FREE_BLOCKS, 1), "pool.meta free_blocks is 57 but the tables hold 56"),
    "hint beyond pool": (lambda s: s.pool.meta.set(s.t, HINT, 1000), "allocation hint 1000 is beyond"),
    "block size": (lambda s: s.pool.meta.set(s.t, BLOCK_SIZE, 8192), "says 8192-byte blocks"),
    "data file short": (lambda s: s.pool.meta.set(s.t, TOTAL_BLOCKS, 100), "data file has 64 blocks but the pool manages 100"),
    "dedup at free block": (lambda s: s.pool.index.add(s.t, b"\x01" * 32, 9), "points at block 9, which is free"),
    "dedup at pending block": (lambda s: s.pool.index.add(s.t, b"\x01" * 32, 5), "points at block 5, which is pending-free"),
    "dedup without mirror": (lambda s: s.t.put(b"\x02" * 32, pack_u64(1), db=s.dbs.dedup),
                             "-> block 1 has no matching pool.dedup_rev entry"),
    "dedup_rev orphan": (lambda s: s.t.put(pack_u64(1), b"\x03" * 32, db=s.dbs.dedup_rev),
                         "dedup_rev entry block 1 -> 0303"),
    "dedup content": (lambda s: s.pool.index.add(s.t, b"\x04" * 32, 1), "Block 1 does not have the content"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_self_check_detects(tmp_path, fault):
    s = Store(tmp_path)
    _setup_for_faults(s)
    inject, expected = FAULTS[fault]
    inject(s)
    problems = s.pool.self_check(s.t, verify_data=True)
    expected = (expected,) if isinstance(expected, str) else expected
    assert any(all(e.lower() in p.lower() for e in expected) for p in problems), problems
    s.close()


def test_writeback_hints_run_off_the_writers_thread_and_close_waits(tmp_path, monkeypatch):
    """Contiguous writes are gathered into one hint of HINT_BYTES; a write elsewhere
    sends what was gathered; hints run on the writeback thread; close waits for them;
    fdatasync drops the gathered range (the sync writes it)."""
    import threading
    import time as _time

    from blockstore.pool import datafile

    calls = []

    def slow_hint(fd, off, length):
        _time.sleep(0.2)
        calls.append((threading.current_thread().name, fd, off, length))
    monkeypatch.setattr(datafile, "start_writeback", slow_hint)
    df = DataFile(str(tmp_path / "d"), BS, create=True)
    df.grow(8192)
    fd = df.fd
    mib = 1 << 20
    per_mib = mib // BS
    t0 = _time.monotonic()
    for i in range(datafile.HINT_BYTES // mib):       # contiguous: one hint when full
        df.pwrite(i * per_mib, blk(1) * per_mib)
    df.pwrite(4096, blk(2) * per_mib)                 # elsewhere: gathered
    df.pwrite(4096 + per_mib, blk(2) * 8)             # 32 KiB: below WRITEBACK_MIN, none
    df.pwrite(6000, blk(3) * per_mib)                 # elsewhere: sends the 1 MiB above
    assert _time.monotonic() - t0 < 0.15 and calls == []    # the writer did not wait
    df.fdatasync()                                    # drops the range gathered at 6000
    df.pwrite(6000 + per_mib, blk(3) * per_mib)       # contiguous with it, but a new range
    df.pwrite(2000, blk(4) * per_mib)                 # sends (6000 + per_mib) only
    df.close()
    assert all(c[0].startswith("blockstore-writeback") for c in calls)
    assert [c[1:] for c in calls] == [(fd, 0, datafile.HINT_BYTES), (fd, 4096 * BS, mib),
                                      (fd, (6000 + per_mib) * BS, mib)]   # ran before close returned