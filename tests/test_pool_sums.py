"""Per-block checksums (pool.sums): write / free / reuse / partial
overwrite patterns, dedup on and off, both algorithms (XXH3-128, SHA-256),
and a flipped data bit found by ``Pool.verify``, by verified reads and by
scrub; stores from before the checksum choice (SHA-256, no meta record).

The pool-level tests open a real LMDB environment and data file and commit
their own transactions, as the txn layer would; each ends with the pool's
self_check() == [].  The store-level tests end with ``check().ok``.
"""
from __future__ import annotations

import hashlib
import os
import random
import sys

import lmdb
import pytest
import xxhash

from blockstore import Store, errors
from _engine import Engine
from blockstore.pool import HOLE, DataFile, Pool, PoolDbs
from blockstore.pool.dbs import pack_u64
from blockstore.txn import DATA_FILE, Env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import damage  # noqa: E402

BS = 4096
ALGOS = ["xxh3-128", "sha256"]
# reference digests, computed apart from the pool's own hash functions
REF = {"sha256": lambda b: hashlib.sha256(b).digest(),
       "xxh3-128": lambda b: xxhash.xxh3_128_intdigest(b).to_bytes(16, "big")}


@pytest.fixture(params=ALGOS)
def algo(request):
    return request.param


class P:
    """LMDB env + data file + pool with a current write txn ``t``."""

    def __init__(self, path, *, dedup=False, checksum="sha256", grow_blocks=16):
        self.env = lmdb.open(str(path / "meta"), max_dbs=32, map_size=1 << 32)
        self.data = DataFile(str(path / "data"), BS, create=True)
        self.pool = Pool(PoolDbs.open(self.env), self.data, BS, dedup, checksum=checksum,
                         grow_min_bytes=grow_blocks * BS)
        assert self.pool.checksum == checksum
        self.digest = REF[checksum]
        self.t = self.env.begin(write=True)

    def commit(self):
        self.pool.flush_pending(self.t)     # as WriteTxn._commit does
        self.pool.sync()
        self.t.commit()
        self.t = self.env.begin(write=True)

    def free(self, start, n):
        """Drop the last reference of [start, start+n) and release it (as txn + gc would)."""
        self.pool.dec(self.t, start, n)
        self.commit()
        self.pool.release_pending(self.t, self.t.id() - 1)

    def close(self):
        self.t.abort()
        self.env.close()
        self.data.close()


@pytest.fixture(params=[(False, "xxh3-128"), (False, "sha256"), (True, "sha256")],
                ids=["nodedup-xxh3", "nodedup-sha256", "dedup"])
def p(tmp_path, request):
    dedup, checksum = request.param
    s = P(tmp_path, dedup=dedup, checksum=checksum)
    yield s
    assert s.pool.self_check(s.t, verify_data=True) == []
    s.close()


def blk(tag: int) -> bytes:
    return hashlib.sha256(tag.to_bytes(8, "big")).digest() * (BS // 32)


def sha(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def assert_sums_match(p: P, model: dict[int, bytes]) -> None:
    """Every live block's recorded digest is the checksum of its model content."""
    for b, content in model.items():
        assert p.pool.block_digest(p.t, b) == p.digest(content), f"block {b}"
        assert p.pool.read(b, 1, verify=p.t) == content


def write(p: P, model: dict[int, bytes], tags) -> list[tuple[int, int]]:
    """Write blocks (tag None = a zero block); record the new blocks in ``model``."""
    data = [bytes(BS) if x is None else blk(x) for x in tags]
    runs = p.pool.write(p.t, b"".join(data))
    pos = 0
    for s, n in runs:
        for i in range(n):
            if s != HOLE:
                if s + i in model:
                    assert model[s + i] == data[pos + i]    # a dedup hit: same content
                model[s + i] = data[pos + i]
        pos += n
    return runs


def test_digest_of_every_written_block_and_none_for_holes(p):
    model: dict[int, bytes] = {}
    runs = write(p, model, [1, None, 2, 3, None, 3])
    assert [n for _, n in runs] == [1, 1, 2, 1, 1] if not p.pool.dedup else True
    assert_sums_match(p, model)
    assert p.pool.verify(p.t, 0, 1, blk(1)) == []
    assert p.pool.verify(p.t, 0, 1, blk(9)) == [0]
    top = max(model) + 1
    assert p.pool.block_digest(p.t, top) is None          # never written
    assert p.pool.verify(p.t, top, 1, blk(9)) == []      # no digest: not reported


def test_free_reuse_and_partial_overwrite_keep_live_digests(tmp_path, algo):
    """The pattern that breaks 'drop every entry starting inside the rewritten run':
    X [0,16) -> free 4..15 -> Y [4,16) -> free 2..5 -> Z [2,6).  Blocks 6..15 are
    still Y's; an entry of X (written earlier) also covers them and must not answer."""
    p = P(tmp_path, checksum=algo, grow_blocks=16)
    model: dict[int, bytes] = {}
    assert write(p, model, range(100, 116)) == [(0, 16)]
    p.free(4, 12)
    for b in range(4, 16):
        del model[b]
    assert write(p, model, range(200, 212)) == [(4, 12)]
    p.commit()
    assert_sums_match(p, model)
    p.free(2, 4)
    for b in range(2, 6):
        del model[b]
    assert write(p, model, range(300, 304)) == [(2, 4)]
    assert_sums_match(p, model)
    assert [s for s, _ in p.pool.sums.entries(p.t)] == [0, 2, 6]   # disjoint runs
    p.commit()
    assert_sums_match(p, model)
    assert p.pool.self_check(p.t) == []
    p.close()


def test_runs_longer_than_a_chunk_and_a_cut_inside_one(tmp_path, algo):
    ds = {"sha256": 32, "xxh3-128": 16}[algo]
    C = {"sha256": 127, "xxh3-128": 254}[algo]      # 4064-byte entries: one overflow page
    N = 2 * C + 46
    p = P(tmp_path, checksum=algo, grow_blocks=N)
    assert (p.pool.digest_size, p.pool.sums.chunk) == (ds, C)
    model: dict[int, bytes] = {}
    assert write(p, model, range(1000, 1000 + N)) == [(0, N)]
    ent = list(p.pool.sums.entries(p.t))
    assert [(s, len(v) // ds) for s, v in ent] == [(0, C), (C, C), (2 * C, 46)]
    assert max(len(v) for _, v in ent) == 4064
    cut = C + 23
    p.free(cut, 3)                       # inside the second chunk
    for b in range(cut, cut + 3):
        del model[b]
    assert write(p, model, [7, 8, 9]) == [(cut, 3)]
    assert_sums_match(p, model)
    assert [(s, len(v) // ds) for s, v in p.pool.sums.entries(p.t)] == \
        [(0, C), (C, 23), (cut, 3), (cut + 3, C - 26), (2 * C, 46)]
    assert p.pool.digests(p.t, cut - 10, 20) == [p.digest(model[b]) for b in range(cut - 10, cut + 10)]
    assert p.pool.self_check(p.t) == []
    p.close()


def test_dedup_needs_sha256(tmp_path):
    env = lmdb.open(str(tmp_path / "meta"), max_dbs=32, map_size=1 << 32)
    data = DataFile(str(tmp_path / "data"), BS, create=True)
    try:
        with pytest.raises(errors.InvalidInput, match="sha256"):
            Pool(PoolDbs.open(env), data, BS, True, checksum="xxh3-128")
        assert Pool(PoolDbs.open(env), data, BS, True).checksum == "sha256"       # the default
        assert Pool(PoolDbs.open(env), data, BS, False).checksum == "xxh3-128"
    finally:
        env.close()
        data.close()


def test_dedup_hits_keep_their_digest(tmp_path):
    p = P(tmp_path, dedup=True)
    model: dict[int, bytes] = {}
    a = write(p, model, [1, 2])
    before = list(p.pool.sums.entries(p.t))
    b = write(p, model, [2, 1, 3, 3])          # 2 and 1 are hits, 3 is new (twice in the buffer)
    assert b[0] == (a[0][0] + 1, 1) and b[1] == (a[0][0], 1)
    new = [(s, v) for s, v in p.pool.sums.entries(p.t) if (s, v) not in before]
    assert len(new) == 1 and new[0][1] == sha(blk(3))   # only the one new block got an entry
    assert_sums_match(p, model)
    p.close()


@pytest.mark.parametrize("seed", range(6))
def test_random_write_free_reuse_against_a_model(tmp_path, seed):
    """Random writes (with zero blocks and repeated content), frees of random
    sub-runs and reuse; after every step each live block's digest is right."""
    rng = random.Random(seed)
    dedup = seed % 3 == 1
    p = P(tmp_path, dedup=dedup, checksum="sha256" if dedup or seed % 3 == 2 else "xxh3-128",
          grow_blocks=32)
    model: dict[int, bytes] = {}
    refs: dict[int, int] = {}
    tag = 0
    for step in range(60):
        if refs and rng.random() < 0.4:
            live = sorted(refs)
            b = rng.choice(live)
            n = 1
            while b + n in refs and n < 8 and rng.random() < 0.7:
                n += 1
            p.pool.dec(p.t, b, n)
            for x in range(b, b + n):
                refs[x] -= 1
                if not refs[x]:
                    del refs[x], model[x]
            if rng.random() < 0.5:
                p.commit()
                p.pool.release_pending(p.t, p.t.id() - 1)
        else:
            tags = []
            for _ in range(rng.randint(1, 40)):
                r = rng.random()
                tags.append(None if r < 0.1 else rng.randint(0, 5) if r < 0.3 else 10 + (tag := tag + 1))
            for s, n in write(p, model, tags):
                for x in range(s, s + n) if s != HOLE else ():
                    refs[x] = refs.get(x, 0) + 1
        if rng.random() < 0.3:
            p.commit()
        assert_sums_match(p, model)
    p.commit()
    assert_sums_match(p, model)
    assert p.pool.self_check(p.t, verify_data=True) == []
    p.close()


def test_flipped_bit_found_by_verify_and_verified_reads(p):
    model: dict[int, bytes] = {}
    write(p, model, [1, 2, 3, 4])
    p.commit()
    bad = sorted(model)[2]
    with open(p.data.path, "r+b") as f:
        f.seek(bad * BS + 100)
        c = f.read(1)
        f.seek(bad * BS + 100)
        f.write(bytes([c[0] ^ 0x10]))
    lo = min(model)
    assert p.pool.verify(p.t, lo, 4, p.pool.read(lo, 4)) == [bad]
    assert p.pool.read(lo, 4) != b"".join(model[b] for b in range(lo, lo + 4))   # unverified: silent
    with pytest.raises(errors.Corruption, match=f"block {bad} "):
        p.pool.read(lo, 4, verify=p.t)
    with pytest.raises(errors.Corruption, match=f"block {bad} "):
        p.pool.readinto(lo, (bad - lo) * BS + 10, bytearray(20), verify=p.t)   # a partial block
    buf = bytearray(30)
    p.pool.readinto(lo, 10, buf, verify=p.t)              # the blocks around it still verify
    assert bytes(buf) == model[lo][10:40]
    assert p.pool.verifying(p.t).read(bad - 1, 1) == model[bad - 1]
    with pytest.raises(errors.Corruption):
        p.pool.verifying(p.t).read(bad, 1)
    with open(p.data.path, "r+b") as f:                  # undo, so the fixture's check passes
        f.seek(bad * BS)
        f.write(model[bad])


def test_self_check_reports_and_rebuild_drops_bad_sums_entries(tmp_path, algo):
    p = P(tmp_path, checksum=algo)
    model: dict[int, bytes] = {}
    write(p, model, [1, 2, 3])
    p.commit()                                              # the damage comes after the write
    total = p.pool.total_blocks(p.t)
    db = p.pool.dbs.sums
    p.t.put(pack_u64(total - 1), bytes(64), db=db)         # reaches beyond the pool
    p.t.put(pack_u64(1), bytes(32 * 2), db=db)             # overlaps the entry at 0
    p.t.put(pack_u64(5), b"short", db=db)                  # not a multiple of 16 nor 32
    p.t.put(pack_u64(8), bytes(48), db=db)                 # 3 XXH3 digests, 1.5 SHA-256 ones
    probs = p.pool.self_check(p.t)
    assert any("beyond the pool" in m for m in probs)
    assert any("overlaps" in m for m in probs)
    assert any("5-byte value" in m for m in probs)
    # the store's digest size decides (block 8 is free: a stale entry is harmless)
    assert any("48-byte value" in m for m in probs) == (algo == "sha256")
    changes = p.pool.rebuild(p.t, [(s, 1, 1) for s in sorted(model)])
    assert sum("pool.sums" in c for c in changes) == (4 if algo == "sha256" else 3)
    assert p.pool.self_check(p.t) == []
    assert p.pool.block_digest(p.t, 0) == p.digest(blk(1))
    p.close()


# ======================================================================= store level
STORES = pytest.mark.parametrize("dedup,checksum", [(False, "xxh3-128"), (False, "sha256"), (True, "sha256")],
                                 ids=["nodedup-xxh3", "nodedup-sha256", "dedup"])


def _store_with_file(path, dedup, checksum=None):
    data = os.urandom(5 * BS) + bytes(BS) + os.urandom(2 * BS + 100)
    if checksum is not None:            # Store.open has no checksum option: create through the engine
        Engine.open(str(path), dedup=dedup, checksum=checksum).close()
    with Store.open(path, dedup=dedup) as s:
        assert s.trees.checksum == (checksum or ("sha256" if dedup else "xxh3-128"))
        s.create("c")
        with s.fs("c") as fs:
            fs.write_bytes("/f", data)
        s.commit("c", "snap")
        rep = s.check(scrub=True)
        assert rep.ok and rep.stats["scrub_unverifiable_blocks"] == 0
        assert rep.stats["scrub_verified_blocks"] == 8
    return data


@STORES
def test_store_scrub_and_verified_reads_find_a_flipped_bit(tmp_path, dedup, checksum):
    path = tmp_path / "s"
    data = _store_with_file(path, dedup, checksum)
    what = damage.flip_data(path, seed=1)
    bad = int(what.rsplit(" ", 1)[1])
    with Store.open(path, create=False) as s:
        rep = s.check(scrub=True)
        hits = [p for p in rep.problems if p.kind == "block-checksum"]
        assert len(hits) == 1 and f"block {bad} " in hits[0].message and hits[0].tree in ("c", "snap")
        assert checksum in hits[0].message
        assert not hits[0].repairable
        with s.fs("snap") as fs:                          # default: reads are not verified
            assert fs.read_bytes("/f") != data and len(fs.read_bytes("/f")) == len(data)
    with Store.open(path, create=False, verify_reads=True) as s:
        with s.fs("snap") as fs:
            with pytest.raises(errors.Corruption, match=f"block {bad} "):
                fs.read_bytes("/f")
            with fs.open("/f", "rb") as f:                # readinto path (io objects)
                with pytest.raises(errors.Corruption, match=f"block {bad} "):
                    f.read()
            assert fs.read_at(fs.stat("/f").st_ino, 5 * BS, BS) == bytes(BS)   # a hole: nothing to verify
        with s.fs("c") as fs:                             # a partial-block write reads the old block
            ino, failed = fs.stat("/f").st_ino, 0
            for fb in range(9):
                try:
                    fs.write_at(ino, fb * BS + 1, b"x")
                except errors.Corruption as exc:
                    assert f"block {bad} " in str(exc)
                    failed += 1
            assert failed == 1
    with Store.open(path, create=False) as s:             # verified reads end with their handle
        assert s.trees.env.verify_reads == 0


@STORES
def test_store_without_sums_entries_scrubs_as_unverifiable(tmp_path, dedup, checksum):
    """A store written before pool.sums existed: no digest is not corruption."""
    path = tmp_path / "s"
    _store_with_file(path, dedup, checksum)
    env = Env(str(path))
    try:
        env.transact(lambda w: w.t.drop(w.env.pool.dbs.sums, delete=False))
    finally:
        env.close()
    with Store.open(path, create=False, verify_reads=True) as s:
        rep = s.check(scrub=True)
        assert rep.ok, str(rep)
        if dedup:       # the dedup index still vouches for every block
            assert rep.stats["scrub_verified_blocks"] == 8 and rep.stats["scrub_unverifiable_blocks"] == 0
        else:
            assert rep.stats["scrub_verified_blocks"] == 0 and rep.stats["scrub_unverifiable_blocks"] == 8
        with s.fs("snap") as fs:
            assert len(fs.read_bytes("/f")) == 8 * BS + 100    # reads pass unverified
        with s.fs("c") as fs:                                   # new writes get digests again
            fs.write_bytes("/g", os.urandom(2 * BS))
        rep = s.check(scrub=True)
        assert rep.ok and rep.stats["scrub_verified_blocks"] == (10 if dedup else 2)
    assert os.path.exists(path / DATA_FILE)


def _meta(path):
    return lmdb.open(str(path / "meta"), max_dbs=64)


def _format_and_checksum(path):
    env = _meta(path)
    try:
        with env.begin() as t:
            meta = env.open_db(b"meta", txn=t)
            return int.from_bytes(t.get(b"format", db=meta), "big"), t.get(b"checksum", db=meta)
    finally:
        env.close()


def test_new_stores_record_their_checksum_and_format(tmp_path):
    with Store.open(tmp_path / "x") as s:
        assert (s.trees.checksum, s.env.checksum, s.env.pool.digest_size) == ("xxh3-128", "xxh3-128", 16)
    with Store.open(tmp_path / "d", dedup=True) as s:
        assert (s.trees.checksum, s.env.pool.digest_size) == ("sha256", 32)
    Engine.open(str(tmp_path / "s"), checksum="sha256").close()
    # every new store is format 3 (the catalog's reverse index, FORMAT.md §5.1: a
    # blockstore of format 2 or 1 refuses it instead of writing without the index)
    assert _format_and_checksum(tmp_path / "x") == (3, b"xxh3-128")
    assert _format_and_checksum(tmp_path / "d") == (3, b"sha256")
    assert _format_and_checksum(tmp_path / "s") == (3, b"sha256")
    with pytest.raises(errors.InvalidInput, match="dedup"):
        Engine.open(str(tmp_path / "bad"), dedup=True, checksum="xxh3-128")
    with pytest.raises(errors.InvalidInput, match="checksum"):
        Engine.open(str(tmp_path / "bad2"), checksum="crc32")
    with Store.open(tmp_path / "x", dedup=True) as s:       # options only apply at creation
        assert s.trees.checksum == "xxh3-128" and not s.env.dedup


def test_a_store_from_before_the_checksum_record_is_sha256(tmp_path):
    """A store written by the previous blockstore: format 1, no b"checksum" meta key.
    It opens as sha256, reads, scrubs clean and finds a damaged block."""
    path = tmp_path / "s"
    data = _store_with_file(path, False, "sha256")
    env = _meta(path)
    with env.begin(write=True) as t:
        assert t.delete(b"checksum", db=env.open_db(b"meta", txn=t))
    with env.begin(write=True) as t:                     # what the previous blockstore wrote
        t.put(b"format", (1).to_bytes(8, "big"), db=env.open_db(b"meta", txn=t))
    env.close()
    assert _format_and_checksum(path) == (1, None)
    with Store.open(path, create=False) as s:
        assert s.trees.checksum == "sha256" and s.env.pool.digest_size == 32
        with s.fs("snap") as fs:
            assert fs.read_bytes("/f") == data
        rep = s.check(scrub=True)
        assert rep.ok and rep.stats["scrub_verified_blocks"] == 8
        assert rep.stats["scrub_unverifiable_blocks"] == 0
        with s.fs("c") as fs:                                 # it writes sha256 digests still
            fs.write_bytes("/g", os.urandom(3 * BS))
        with s.env.read() as r:
            ent = list(s.env.pool.sums.entries(r.t))
        assert len(ent) > 1 and all(len(v) % 32 == 0 for _, v in ent)
        assert s.check(scrub=True).stats["scrub_verified_blocks"] == 11
    what = damage.flip_data(path, seed=3)
    bad = int(what.rsplit(" ", 1)[1])
    with Store.open(path, create=False) as s:
        rep = s.check(scrub=True)
        hits = [p for p in rep.problems if p.kind == "block-checksum"]
        assert len(hits) == 1 and f"block {bad} " in hits[0].message and "sha256" in hits[0].message
    # upgraded to format 3 at its first open: the checksum record says what its
    # absence meant, and the digests were never rewritten (the scrubs above)
    assert _format_and_checksum(path) == (3, b"sha256")


def test_unknown_or_missing_checksum_record(tmp_path):
    path = tmp_path / "s"
    _store_with_file(path, False)
    env = _meta(path)
    with env.begin(write=True) as t:
        t.put(b"checksum", b"blake3", db=env.open_db(b"meta", txn=t))
    env.close()
    with pytest.raises(errors.FormatTooNew, match="blake3"):
        Store.open(path, create=False)
    env = _meta(path)
    with env.begin(write=True) as t:
        t.delete(b"checksum", db=env.open_db(b"meta", txn=t))     # format 2 needs the record
    env.close()
    with pytest.raises(errors.Corruption, match="checksum"):
        Store.open(path, create=False)
    env = _meta(path)
    with env.begin(write=True) as t:
        t.put(b"checksum", b"xxh3-128", db=env.open_db(b"meta", txn=t))
    env.close()
    with Store.open(path, create=False) as s:
        assert s.check(scrub=True).ok


# ======================================================================= hashing later
def test_background_hashing_is_invisible_to_readers_and_commits(tmp_path, algo):
    """bytes are hashed on the background thread (Sums.put_later); the txn reads
    and commits exactly the digests an inline hash would give."""
    p = P(tmp_path, checksum=algo)
    data = b"".join(blk(i) for i in range(300))        # > CHUNK blocks, one bytes object
    runs = p.pool.write(p.t, data)
    assert p.pool.sums._later                          # really deferred
    assert p.pool.block_digest(p.t, runs[0][0] + 5) == p.digest(blk(5))   # a read puts them first
    more = p.pool.write(p.t, blk(7) * 3)
    p.commit()                                         # flush_pending, then the LMDB commit
    assert not p.pool.sums._later
    assert p.pool.block_digest(p.t, more[0][0] + 2) == p.digest(blk(7))
    assert p.pool.self_check(p.t, verify_data=True) == []
    p.close()


def test_a_buffer_the_caller_may_change_is_hashed_at_once(tmp_path, algo):
    p = P(tmp_path, checksum=algo)
    buf = bytearray(blk(1) * 4)
    runs = p.pool.write(p.t, buf)
    buf[:] = blk(2) * 4                                # reused by the caller right away
    p.commit()
    assert p.pool.block_digest(p.t, runs[0][0]) == p.digest(blk(1))
    assert p.pool.self_check(p.t, verify_data=True) == []
    p.close()


def test_digests_pending_for_an_aborted_txn_are_dropped(tmp_path, algo):
    p = P(tmp_path, checksum=algo)
    p.pool.write(p.t, blk(1) * 8)                      # never committed
    p.t.abort()
    p.t = p.env.begin(write=True)
    runs = p.pool.write(p.t, blk(3) * 2)
    p.commit()
    assert not p.pool.sums._later
    got = p.pool.digests(p.t, 0, p.pool.total_blocks(p.t))
    live = {runs[0][0], runs[0][0] + 1}
    assert all(d == p.digest(blk(3)) for b, d in enumerate(got) if b in live)
    assert p.pool.self_check(p.t, verify_data=True) == []
    p.close()


def test_data_waiting_to_be_hashed_is_bounded(tmp_path, algo):
    from blockstore.pool.sums import LATER_MAX_BYTES
    p = P(tmp_path, checksum=algo, grow_blocks=4096)
    chunk = 1 << 20
    for i in range(3 * LATER_MAX_BYTES // chunk):      # one long txn, as an import is
        p.pool.write(p.t, os.urandom(chunk))
        assert p.pool.sums._later_bytes <= LATER_MAX_BYTES + chunk
    p.commit()
    assert p.pool.self_check(p.t, verify_data=True) == []
    p.close()


def test_buffers_are_handed_to_the_hashing_thread_in_groups(tmp_path, algo, monkeypatch):
    """Without the native background writer (pure build, forked child): one job of
    the hashing thread per GROUP_BYTES of buffers (not per write); a group still
    open at the commit is hashed by the committing thread; digests are exact."""
    from blockstore.pool import sums as sums_mod
    monkeypatch.setattr(DataFile, "writes_later", property(lambda self: False))
    jobs = []
    real = sums_mod._Group.start

    def counted(self, hash_fn):
        jobs.append(len(self.buffers))
        real(self, hash_fn)
    monkeypatch.setattr(sums_mod._Group, "start", counted)
    p = P(tmp_path, checksum=algo, grow_blocks=4096)
    piece = 256 * 1024
    per_group = sums_mod.GROUP_BYTES // piece
    datas = [os.urandom(piece) for _ in range(2 * per_group + 3)]
    written = [p.pool.write(p.t, d) for d in datas]
    assert jobs == [per_group, per_group]              # the last 3 pieces: still open
    p.commit()
    assert jobs == [per_group, per_group]              # ...hashed by the commit itself
    assert not p.pool.sums._later
    bs = p.pool.block_size
    for d, runs in zip(datas, written):
        (s, n), = runs
        assert [p.pool.block_digest(p.t, s + i) for i in range(n)] == [
            p.digest(d[i * bs:(i + 1) * bs]) for i in range(n)]
    assert p.pool.self_check(p.t, verify_data=True) == []
    p.close()


def test_opening_many_stores_leaves_one_hashing_thread(tmp_path):
    import threading
    for i in range(5):
        with Store.open(tmp_path / f"s{i}") as s:
            s.create("c")
            with s.fs("c") as fs:
                fs.write_bytes("/f", os.urandom(8 * BS))
    names = [t.name for t in threading.enumerate() if t.name.startswith("blockstore-sums")]
    assert len(names) <= 1, names
