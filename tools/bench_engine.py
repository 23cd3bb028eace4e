"""Engine benchmark: clone/snapshot depth/delete/diff costs, SHA-256, pool writes, block sizes.

Measures the costs docs/ARCHITECTURE.md §3 promises, each as a ratio against a
baseline taken in the same run (a shared machine's disk speed can change
40x between runs):

  clone_ratio     durable clone of an N-key tree / of a 1-key tree   (<= 1.5)
  clone_ms        median durable clone                                (<= 2 ms)
  depth_ratio     engine.get at snapshot depth 1000 / depth 1         (<= 1.3)
  delete_ratio    remove+gc of a clone that changed 10 keys /
                  remove+gc of a whole unshared N-key tree            (<= 0.01)
  diff_ratio      diff of a snapshot and a clone changing 100 keys /
                  full scan of one                                    (<= 0.01)
  diff_ratio_cpu  the same in CPU time of this process (the scan runs before,
                  between and after the diffs; ``diff_baseline`` gives the
                  scan runs' spread, CPU steal and load, and ``disturbed``)
  delete_*_nodes_freed  nodes freed by each remove + gc (most inside the
                  removal's own transaction)
  sha256_*_gbps   native (1 and 2 threads) and hashlib, 64 KiB blocks
  pool_write_ratio[_dedup]  durable writes through the engine (put_blob in
                  a batch + sync: data pwrite, fdatasync, LMDB commit) /
                  os.pwrite + os.fdatasync of the same bytes          (>= 0.6)
  block_size_table  durable write throughput and the pool bytes one 4 KiB
                  random overwrite costs, for 4K/16K/64K/256K blocks

N = 1,000,000 keys (b"k%012d", 16-byte values); --quick: 200,000.
"""
from __future__ import annotations

import gc as pygc
import hashlib
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass

# The key-value/blob engine this benchmark drives is a test helper (tests/_engine.py):
# the product stores only file trees.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

import _benchutil as bu
from _benchutil import MiB, log, median, now_ns

HELP = __doc__.split("\n")[0]

KEY = b"k%012d"
BIG, ONE = "big", "one"
BIG_SNAP, ONE_SNAP = "big@base", "one@base"


@dataclass
class Sizes:
    keys: int
    clone_reps: int
    depth: int
    lookups: int           # random keys per lookup round
    lookup_rounds: int
    delete_reps: int
    diff_reps: int
    scan_reps: int
    sha_bytes: int
    pool_bytes: int
    pool_reps: int
    piece: int             # bytes per put_blob call / random piece
    bs_bytes: int          # file size of the block-size table
    bs_file_blocks: int    # blocks of the file overwritten in the block-size table
    overwrites: int
    bs_reps: int = 1


FULL = Sizes(keys=1_000_000, clone_reps=31, depth=1000, lookups=10_000, lookup_rounds=15,
             delete_reps=5, diff_reps=7, scan_reps=3, sha_bytes=256 * MiB,
             pool_bytes=1024 * MiB, pool_reps=5, piece=64 * MiB, bs_bytes=256 * MiB,
             bs_file_blocks=64, overwrites=32, bs_reps=3)
QUICK = Sizes(keys=200_000, clone_reps=21, depth=1000, lookups=5_000, lookup_rounds=9,
              delete_reps=5, diff_reps=5, scan_reps=2, sha_bytes=64 * MiB,
              pool_bytes=256 * MiB, pool_reps=3, piece=64 * MiB, bs_bytes=64 * MiB,
              bs_file_blocks=32, overwrites=16, bs_reps=2)
TINY = Sizes(keys=3_000, clone_reps=5, depth=20, lookups=500, lookup_rounds=3,
             delete_reps=2, diff_reps=3, scan_reps=2, sha_bytes=4 * MiB,
             pool_bytes=8 * MiB, pool_reps=1, piece=4 * MiB, bs_bytes=2 * MiB,
             bs_file_blocks=8, overwrites=4)

BLOCK_SIZES = (4096, 16384, 65536, 262144)
BUILD_SLOW_S = 40.0          # put_many of 1M keys slower than this is a finding


def add_args(parser) -> None:
    parser.add_argument("--seed", type=int, default=1, help="random seed for key choices")


# ======================================================================= helpers
class RandomData:
    """One random piece generated once; each use gets a distinct 16-byte header in
    every 4 KiB, so no 4 KiB-or-larger block ever repeats (dedup finds nothing)
    and no block is zero."""

    def __init__(self, size: int):
        self.buf = bytearray(os.urandom(size))
        self.q = memoryview(self.buf).cast("Q")
        self.uses = 0

    def next(self) -> bytearray:
        self.uses += 1
        q, tag = self.q, self.uses << 32
        for j in range(0, len(q), 512):          # 512 u64 = 4 KiB
            q[j] = tag | (j >> 9)
            q[j + 1] = 0x5EED_B10C_0000_0000 | self.uses
        return self.buf


def _val(i: int) -> bytes:
    return b"v%015d" % i


def _interleaved(n: int, fa, fb) -> tuple[list[int], list[int]]:
    """Time fa and fb n times each, alternating which goes first."""
    ta, tb = [], []
    for i in range(n):
        order = ((fa, ta), (fb, tb)) if i % 2 == 0 else ((fb, tb), (fa, ta))
        for f, acc in order:
            t0 = now_ns()
            f(i)
            acc.append(now_ns() - t0)
    return ta, tb


# ======================================================================= tree benchmarks
def bench_trees(rep: bu.Report, sz: Sizes, root_dir: str, seed: int) -> None:
    from _engine import Engine
    from blockstore.btree import tree as bt
    from blockstore.btree.store import NodeStore
    from blockstore import catalog

    rng = random.Random(seed)
    path = os.path.join(root_dir, "trees")
    e = Engine.open(path)
    try:
        rep.extra["block_size"] = e.block_size
        rep.extra["dedup"] = e.env.dedup
        n = sz.keys

        # -- build the N-key tree in one transaction ---------------------------------
        items = [(KEY % i, _val(i)) for i in range(n)]
        e.create(BIG)
        e.create(ONE)
        e.put(ONE, KEY % 0, _val(0))
        log(f"building a {n:,}-key tree (put_many in one batch)")
        pygc.collect()
        t0 = now_ns()
        with e.batch():
            e.put_many(BIG, items)
            t_insert = now_ns() - t0
        build_s = (now_ns() - t0) / 1e9
        del items
        e.snapshot(BIG, BIG_SNAP)
        e.snapshot(ONE, ONE_SNAP)
        with e.reader() as r:
            ns = NodeStore.of(r)
            root = catalog.get(r, BIG).root
            levels = ns.get(root).level + 1 if root else 0
        rep.add("build_s", build_s, "s", note=f"put_many of {n} keys + commit")
        rep.add("build_keys_per_s", n / build_s, "keys/s")
        rep.extra["build_insert_s"] = round(t_insert / 1e9, 3)
        rep.extra["tree_levels"] = levels
        rep.extra["keys"] = n
        if build_s > BUILD_SLOW_S * n / 1_000_000:
            rep.extra.setdefault("findings", []).append(
                f"put_many of {n} keys took {build_s:.1f} s (> {BUILD_SLOW_S:.0f} s per 1M keys)")
        log(f"built in {build_s:.1f} s ({levels} levels)")

        # -- the fixed cost every durable call pays: a write transaction with one put
        # (an empty one is free: LMDB skips the sync when nothing is dirty) -----------
        def one_put(i):
            e.env.transact(lambda w: w.meta_put(b"bench.commit", b"%020d" % i))
        for i in range(3):
            one_put(i)
        t_commit = [bu.timed(lambda: one_put(i))[0] for i in range(sz.clone_reps)]
        rep.add("commit_ms", median(t_commit) / 1e6, "ms",
                note="durable write txn of one put: the disk's fixed cost per durable call")

        # -- clone: N-key tree vs 1-key tree -------------------------------------------
        log(f"clone x{sz.clone_reps} each (durable)")
        for i in range(2):                                   # warm-up
            e.clone(BIG_SNAP, f"warm.big.{i}")
            e.clone(ONE_SNAP, f"warm.one.{i}")
        t_big, t_one = _interleaved(
            sz.clone_reps,
            lambda i: e.clone(BIG_SNAP, f"cl.big.{i}"),
            lambda i: e.clone(ONE_SNAP, f"cl.one.{i}"))
        big_ns, one_ns = median(t_big), median(t_one)
        rep.add("clone_ratio", big_ns / one_ns, "x", 1.5, "<=",
                note=f"median clone of {n} keys / of 1 key")
        rep.add("clone_ms", big_ns / 1e6, "ms", 2.0, "<=")
        rep.extra["clone_1key_ms"] = round(one_ns / 1e6, 3)

        # -- snapshot depth --------------------------------------------------------------
        log(f"snapshot chain of depth {sz.depth}")
        final: dict[bytes, bytes] = {}
        src = BIG_SNAP
        t0 = now_ns()
        with e.batch():
            for d in range(1, sz.depth + 1):
                k = KEY % rng.randrange(n)
                v = b"d%015d" % d
                e.clone(src, f"ch.c{d}")
                e.put(f"ch.c{d}", k, v)
                src = f"ch.s{d}"
                e.snapshot(f"ch.c{d}", src)
                final[k] = v
                if d % 100 == 0:
                    e.sync()
        rep.extra["chain_build_s"] = round((now_ns() - t0) / 1e9, 3)
        deep = src
        # The depth-1 tree with the same content: one clone of the base with all
        # the chain's changes applied at once, then frozen.
        with e.batch():
            e.clone(BIG_SNAP, "flat")
            e.put_many("flat", sorted(final.items()))
        e.snapshot("flat", "flat@s")
        flat = "flat@s"
        same = not e.diff(deep, flat)
        rep.extra["depth_content_equal"] = same
        if not same:
            rep.extra.setdefault("findings", []).append(
                "depth chain and flat tree differ in content (diff is not empty)")
        lookup_keys = [KEY % rng.randrange(n) for _ in range(sz.lookups)]
        lookup_keys[: len(final)] = list(final)[: len(lookup_keys)]
        rng.shuffle(lookup_keys)

        def lookups(name):
            with e.reader() as r:
                get = e.get
                t0 = now_ns()
                for k in lookup_keys:
                    get(name, k, view=r)
                return now_ns() - t0

        def bt_lookups(name):
            with e.reader() as r:
                ns = NodeStore.of(r)
                root = catalog.get(r, name).root
                t0 = now_ns()
                for k in lookup_keys:
                    bt.lookup(ns, root, k)
                return now_ns() - t0

        log(f"lookups: {sz.lookup_rounds} rounds x {sz.lookups} random keys per tree")
        for name in (deep, flat):                           # warm-up (node cache)
            lookups(name)
            bt_lookups(name)
        rd, rf, bd, bf = [], [], [], []
        for i in range(sz.lookup_rounds):
            pair = ((deep, rd), (flat, rf)) if i % 2 == 0 else ((flat, rf), (deep, rd))
            for name, acc in pair:
                acc.append(lookups(name))
            pair = ((deep, bd), (flat, bf)) if i % 2 == 0 else ((flat, bf), (deep, bd))
            for name, acc in pair:
                acc.append(bt_lookups(name))
        rep.add("depth_ratio", median(rd) / median(rf), "x", 1.3, "<=",
                note=f"engine.get at depth {sz.depth} / depth 1")
        rep.add("lookup_us", median(rd) / len(lookup_keys) / 1e3, "us",
                note="engine.get with a shared read view, deep tree")
        rep.add("depth_ratio_btree", median(bd) / median(bf), "x",
                note="btree.lookup only (no catalog decode per call)")
        rep.extra["lookup_flat_us"] = round(median(rf) / len(lookup_keys) / 1e3, 3)
        rep.extra["btree_lookup_us"] = round(median(bd) / len(lookup_keys) / 1e3, 3)

        # -- diff vs full scan ------------------------------------------------------------
        log("diff of 100 changed keys vs full scan")
        changed = sorted({KEY % rng.randrange(n) for _ in range(100)})
        while len(changed) < 100:
            changed = sorted(set(changed) | {KEY % rng.randrange(n)})
        with e.batch():
            e.clone(BIG_SNAP, "diffc")
            e.put_many("diffc", [(k, b"x%015d" % j) for j, k in enumerate(changed)])
        nd = len(e.diff(BIG_SNAP, "diffc"))                  # warm-up
        if nd != len(changed):
            rep.extra.setdefault("findings", []).append(
                f"diff found {nd} differences, expected {len(changed)}")
        # The scan (the baseline) runs before, between and after the diffs: a
        # spread among its runs, CPU steal or a load change says the machine
        # moved under the measurement.  CPU time (this process) beside wall time
        # separates a regression (the CPU ratio moves) from a disturbance (only
        # the wall ratio does).
        t_diff, c_diff, t_scan, c_scan = [], [], [], []
        e.items(BIG_SNAP)                      # warm-up, as the diff had one
        load0, steal0 = os.getloadavg()[0], bu.cpu_steal()
        per = max(1, sz.diff_reps // max(1, sz.scan_reps - 1))
        for i in range(max(2, sz.scan_reps)):
            c0 = time.process_time_ns()
            dt, got = bu.timed(lambda: e.items(BIG_SNAP))
            c_scan.append(time.process_time_ns() - c0)
            t_scan.append(dt)
            nscan = len(got)
            del got
            if i == max(2, sz.scan_reps) - 1:
                break
            for _ in range(per):
                c0 = time.process_time_ns()
                t_diff.append(bu.timed(lambda: e.diff(BIG_SNAP, "diffc"))[0])
                c_diff.append(time.process_time_ns() - c0)
        steal1 = bu.cpu_steal()
        rep.add("diff_ratio", median(t_diff) / median(t_scan), "x", 0.01, "<=",
                note=f"diff (100 keys changed) / items() of {nscan} keys")
        rep.add("diff_ratio_cpu", median(c_diff) / median(c_scan), "x",
                note="the same in CPU time of this process: insensitive to other load")
        rep.extra["diff_ms"] = round(median(t_diff) / 1e6, 3)
        rep.extra["scan_s"] = round(median(t_scan) / 1e9, 3)
        spread = max(t_scan) / min(t_scan)
        steal = 100 * (steal1[0] - steal0[0]) / max(1, steal1[1] - steal0[1])
        rep.extra["diff_baseline"] = {
            "scan_s_runs": [round(x / 1e9, 3) for x in t_scan],
            "scan_spread": round(spread, 3),
            "scan_cpu_over_wall": round(sum(c_scan) / sum(t_scan), 3),
            "cpu_steal_pct": round(steal, 2),
            "load": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "disturbed": bool(spread > 1.25 or steal > 5 or sum(c_scan) / sum(t_scan) < 0.8),
        }
        if rep.extra["diff_baseline"]["disturbed"]:
            rep.extra.setdefault("findings", []).append(
                "diff_ratio: the baseline was disturbed (scan runs spread "
                f"{spread:.2f}x, CPU steal {steal:.1f}%, the scan got "
                f"{100 * sum(c_scan) / sum(t_scan):.0f}% of a CPU); see diff_ratio_cpu")

        # -- delete: small clone vs whole unshared tree ------------------------------------
        log(f"delete: clone with 10 changed keys x{sz.delete_reps}")
        e.gc()
        t_small, t_small_rm = [], []
        for i in range(sz.delete_reps):
            name = f"del.{i}"
            with e.batch():
                e.clone(BIG_SNAP, name)
                e.put_many(name, sorted((KEY % rng.randrange(n), b"y%015d" % j)
                                        for j in range(10)))
            t0 = now_ns()
            freed = e.remove(name)          # most nodes are freed inside the removal
            t1 = now_ns()
            st = e.gc()
            t_small.append(now_ns() - t0)
            t_small_rm.append(t1 - t0)
        rep.extra["delete_small_nodes_freed"] = freed + st["nodes_freed"]
        log("removing every other tree, then delete the unshared base tree")
        with e.batch():
            for r in e.list():
                if r.name != BIG:
                    e.remove(r.name)
        e.gc()
        with e.reader() as r:
            root = catalog.get(r, BIG).root
            rc = NodeStore.of(r).rc(root)
        rep.extra["base_root_refcount_before_delete"] = rc
        t0 = now_ns()
        freed = e.remove(BIG)
        st = e.gc()
        t_big = now_ns() - t0
        rep.add("delete_ratio", median(t_small) / t_big, "x", 0.01, "<=",
                note=f"remove+gc of a 10-key clone / of an unshared {n}-key tree")
        rep.extra["delete_small_ms"] = round(median(t_small) / 1e6, 3)
        rep.extra["delete_small_remove_ms"] = round(median(t_small_rm) / 1e6, 3)
        rep.extra["delete_big_s"] = round(t_big / 1e9, 3)
        rep.extra["delete_big_nodes_freed"] = freed + st["nodes_freed"]
    finally:
        e.close()
        shutil.rmtree(path, ignore_errors=True)


# ======================================================================= SHA-256
def bench_sha(rep: bu.Report, sz: Sizes) -> None:
    from blockstore import native

    bs = 64 * 1024
    data = os.urandom(sz.sha_bytes)
    impl = native.NATIVE or native            # pure twin if the extension is missing
    reps = 3

    def gbps(fn):
        fn(memoryview(data)[: 4 * MiB])          # warm-up
        return sz.sha_bytes / (median([bu.timed(fn)[0] for _ in range(reps)]) / 1e9) / bu.GB

    def hl(buf=data):
        mv, sha = memoryview(buf), hashlib.sha256
        return [sha(mv[o:o + bs]).digest() for o in range(0, len(mv), bs)]

    log(f"sha256 over {sz.sha_bytes // MiB} MiB")
    n1 = gbps(lambda buf=data: impl.sha256_many(buf, bs, 1))
    n2 = gbps(lambda buf=data: impl.sha256_many(buf, bs, 2))
    h = gbps(hl)
    rep.add("sha256_native_gbps", n1, "GB/s", note="1 thread, 64 KiB blocks")
    rep.add("sha256_native_2threads_gbps", n2, "GB/s")
    rep.add("sha256_hashlib_gbps", h, "GB/s", note="one hashlib call per block")
    rep.extra["sha256_native_available"] = native.NATIVE is not None


# ======================================================================= pool writes
def _raw_write(path: str, rd: RandomData, total: int) -> int:
    """ns of pwrite of every piece + one fdatasync into a fresh file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    acc = 0
    try:
        off = 0
        while off < total:
            buf = rd.next()
            t0 = now_ns()
            mv = memoryview(buf)
            while mv:
                w = os.pwrite(fd, mv, off)
                off += w
                mv = mv[w:]
            acc += now_ns() - t0
        t0 = now_ns()
        os.fdatasync(fd)
        acc += now_ns() - t0
    finally:
        os.close(fd)
        os.unlink(path)
    return acc


def _engine_write(path: str, rd: RandomData, total: int, block_size: int, dedup: bool,
                  after=None) -> int:
    """ns of put_blob of every piece in one batch + sync (data, fdatasync, LMDB commit)
    into a fresh store; ``after(engine)`` runs before the store is removed."""
    from _engine import Engine

    e = Engine.open(path, block_size=block_size, dedup=dedup)
    try:
        e.create("v")
        acc = 0
        with e.batch():
            i = 0
            while i * len(rd.buf) < total:
                buf = rd.next()
                t0 = now_ns()
                e.put_blob("v", b"blob%06d" % i, buf)
                acc += now_ns() - t0
                i += 1
            t0 = now_ns()
            e.sync()
            acc += now_ns() - t0
        if after is not None:
            after(e)
        return acc
    finally:
        e.close()
        shutil.rmtree(path, ignore_errors=True)


def bench_pool(rep: bu.Report, sz: Sizes, root_dir: str) -> None:
    from blockstore.txn import DEFAULT_BLOCK_SIZE

    rd = RandomData(sz.piece)
    total = sz.pool_bytes
    log(f"durable writes of {total // MiB} MiB: raw, engine (dedup off), engine (dedup on)"
        f" x{sz.pool_reps}")
    runs = {"raw": lambda: _raw_write(os.path.join(root_dir, "raw.data"), rd, total),
            "off": lambda: _engine_write(os.path.join(root_dir, "pw"), rd, total,
                                         DEFAULT_BLOCK_SIZE, False),
            "on": lambda: _engine_write(os.path.join(root_dir, "pw"), rd, total,
                                        DEFAULT_BLOCK_SIZE, True)}
    times: dict[str, list[int]] = {k: [] for k in runs}
    order = list(runs)
    # Warm-up at full size: on a virtual machine the first pass over fresh guest
    # memory (page cache) can be several times slower than later ones, whichever
    # path runs it.
    runs["raw"]()
    runs["off"]()
    for i in range(sz.pool_reps):
        for k in order[i % 3:] + order[:i % 3]:              # rotate to cancel drift
            os.sync()                  # start each run without others' dirty pages queued
            times[k].append(runs[k]())
    gbps = {k: total / (median(v) / 1e9) / bu.GB for k, v in times.items()}
    rep.add("pool_write_ratio", gbps["off"] / gbps["raw"], "x", 0.6, ">=",
            note="engine put_blob+sync, dedup off / raw pwrite+fdatasync")
    rep.add("pool_write_ratio_dedup", gbps["on"] / gbps["raw"], "x",
            note="the same with dedup on (the cost of dedup)")
    rep.add("pool_write_gbps", gbps["off"], "GB/s")
    rep.add("pool_write_dedup_gbps", gbps["on"], "GB/s")
    rep.add("raw_write_gbps", gbps["raw"], "GB/s")
    rep.extra["pool_write_bytes"] = total
    rep.extra["pool_write_times_s"] = {k: [round(x / 1e9, 3) for x in v] for k, v in times.items()}


# ======================================================================= block sizes
def bench_block_sizes(rep: bu.Report, sz: Sizes, root_dir: str, seed: int) -> list[dict]:
    rng = random.Random(seed)
    piece = min(sz.piece, sz.bs_bytes, 8 * MiB)
    rd = RandomData(piece)
    rows = []
    log(f"block sizes {', '.join(str(b // 1024) + 'K' for b in BLOCK_SIZES)}: "
        f"{sz.bs_bytes // MiB} MiB durable writes, {sz.overwrites} 4 KiB overwrites")
    for bs in BLOCK_SIZES:
        row: dict = {"block_size": bs}

        def overwrite_cost(e, bs=bs, row=row):
            # A file of bs_file_blocks blocks, one blob per block (like per-block
            # extents), frozen in a snapshot; a clone then overwrites 4 KiB inside
            # distinct random blocks, each change durable on its own.
            nblk = sz.bs_file_blocks
            data = os.urandom(nblk * bs)
            e.create("f")
            with e.batch():
                for j in range(nblk):
                    e.put_blob("f", b"b%08d" % j, data[j * bs:(j + 1) * bs])
            e.snapshot("f", "f@s")
            e.clone("f@s", "fc")
            before = e.stats()
            lat = []
            for j in rng.sample(range(nblk), min(sz.overwrites, nblk)):
                off = rng.randrange(bs // 4096) * 4096
                t0 = now_ns()
                blk = bytearray(e.get_blob("fc", b"b%08d" % j))
                blk[off:off + 4096] = os.urandom(4096)
                e.put_blob("fc", b"b%08d" % j, bytes(blk))
                lat.append(now_ns() - t0)
            after = e.stats()
            k = len(lat)
            row["overwrite_pool_bytes"] = (after.used_blocks - before.used_blocks) * bs / k
            row["overwrite_amplification"] = row["overwrite_pool_bytes"] / 4096
            row["overwrite_ms"] = median(lat) / 1e6

        t_off, t_on = [], []
        for i in range(sz.bs_reps):
            os.sync()
            t_off.append(_engine_write(os.path.join(root_dir, f"bs{bs}"), rd, sz.bs_bytes, bs,
                                       False, after=overwrite_cost if i == 0 else None))
            os.sync()
            t_on.append(_engine_write(os.path.join(root_dir, f"bs{bs}d"), rd, sz.bs_bytes, bs,
                                      True))
        row["write_gbps"] = sz.bs_bytes / (median(t_off) / 1e9) / bu.GB
        row["write_dedup_gbps"] = sz.bs_bytes / (median(t_on) / 1e9) / bu.GB
        rows.append({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
        log(f"  {bs // 1024:>4}K: {row['write_gbps']:.2f} GB/s, dedup {row['write_dedup_gbps']:.2f}"
            f" GB/s, overwrite {row['overwrite_pool_bytes']:.0f} B, {row['overwrite_ms']:.2f} ms")
    rep.extra["block_size_table"] = rows
    rep.extra["block_size_table_file_bytes"] = sz.bs_bytes
    return rows


# ======================================================================= entry
def run(args):
    from blockstore import native
    from blockstore.txn import DEFAULT_BLOCK_SIZE

    sz = TINY if args.tiny else QUICK if args.quick else FULL
    rep = bu.Report("engine")
    env = bu.environment()
    rep.extra.update({
        "quick": bool(args.quick), "tiny": bool(args.tiny),
        "implementation": native.IMPLEMENTATION,
        "block_size": DEFAULT_BLOCK_SIZE, "dedup": None,
        "python": env["python"], "date": env["date"], "platform": env["platform"],
        "cpus": env["cpus"],
    })
    with bu.scratch_dir(args.dir) as d:
        rep.extra["scratch"] = bu.disk_usage(d)
        log(f"scratch store in {d}")
        bench_trees(rep, sz, d, args.seed)
        bench_sha(rep, sz)
        bench_pool(rep, sz, d)
        rows = bench_block_sizes(rep, sz, d, args.seed)
    text = "block sizes (durable writes of %d MiB, dedup off/on; one 4 KiB overwrite):\n%s" % (
        sz.bs_bytes // MiB,
        bu.format_rows(rows, ["block_size", "write_gbps", "write_dedup_gbps",
                              "overwrite_pool_bytes", "overwrite_amplification",
                              "overwrite_ms"]))
    if rep.extra.get("findings"):
        text += "\n\nfindings:\n" + "\n".join("  - " + f for f in rep.extra["findings"])
    return rep, text
