"""File-tree benchmark: CoW write cost, sequential I/O, import vs cp -a, store size, clone/commit, diff, import RSS.

``tools/bench.py fs [--quick] [--json]``.  Everything is measured in ONE run
on ONE disk (the scratch directory), and every ratio is against a baseline
taken in the same run (a shared machine's disk speed can change 40x
between runs):

* ``cow_write_bytes`` -- pool bytes plus live LMDB page bytes added by one
  4 KiB write at a random offset into a big file of a clone, after commit
  (goal <= one block + 64 KiB: one new block plus a root-to-leaf path).
* ``seq_write_ratio`` -- throughput of writing the big file through
  ``store.fs(clone).open(path, "wb")`` (1 MiB writes, closed = durable)
  over raw ``open``/``write`` + ``fsync`` on the same disk (goal >= 0.6).
* ``seq_read_ratio`` -- throughput of reading it back through
  ``fs.open(path, "rb")`` over a raw read of the raw file; both from the
  page cache: each side is read once as a warm-up and then timed (goal >= 0.7).
* ``import_ratio`` -- ``import_dir`` of a generated tree (seeded, 100k files
  / ~1 GiB full; many small files, a few big ones, symlinks) over
  ``cp -a`` of the same tree + ``sync``; the import is durable on return; the
  source is in the page cache for both (goal <= 1.0).
* ``store_size_ratio`` -- on-disk bytes of the store directory (pool data file
  and LMDB, ``du -s --block-size=1``) over ``du -s --block-size=1`` of the
  source (goal <= 1.05).
* ``clone_ms`` / ``commit_ms`` -- median of durable clone / commit of that tree
  (goal <= 2 each).
* ``diff_ratio`` -- ``store.diff`` of two commits that differ in 1% of the
  files over a walk of the whole tree with ``fs.walk`` + ``fs.lstat`` of
  every entry (goal <= 0.05).
* ``import_peak_rss_mib`` -- ru_maxrss of the subprocess that ran the import
  (``os.wait4`` of that one child; goal <= 300).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys

import _benchutil as bu

HELP = __doc__.split("\n")[0]
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

SIZES = {          # (files, tree bytes, big file bytes)
    "full": (100_000, 1 * GiB, 1 * GiB),
    "quick": (10_000, 100 * MiB, 256 * MiB),
    "tiny": (600, 6 * MiB, 16 * MiB),
}


def add_args(parser) -> None:
    parser.add_argument("--seed", type=int, default=42, help="seed of the generated tree")


# ------------------------------------------------------------------ the source tree
def file_sizes(n: int, total: int, rng: random.Random) -> list[int]:
    """n sizes summing to about total: log-normal (median ~2 KiB, long tail), a few
    big files, ~3% empty -- the shape of /usr or a container image."""
    sizes = [0 if rng.random() < 0.03 else int(rng.lognormvariate(7.6, 2.0)) for _ in range(n)]
    cap = max(total // 20, 64 * KiB)
    sizes = [min(s, cap) for s in sizes]
    scale = total / max(1, sum(sizes))
    return [min(cap, int(s * scale)) for s in sizes]


def make_tree(root: str, files: int, total: int, seed: int) -> dict:
    """Generate the benchmark tree under root (deterministic for a seed)."""
    rng = random.Random(seed)
    pool = rng.randbytes(8 * MiB)               # content: random (incompressible, no zeros)
    sizes = file_sizes(files, total, rng)
    os.makedirs(root)
    dirs = [root]
    nfiles = nlinks = 0
    for i, size in enumerate(sizes):
        if i % 40 == 0:                          # ~40 entries per directory, depth ~3-6
            parent = rng.choice(dirs[-200:]) if len(dirs) > 1 else root
            d = os.path.join(parent, f"d{len(dirs):05d}")
            os.mkdir(d)
            dirs.append(d)
        d = dirs[-1]
        if i % 97 == 5:
            os.symlink(f"../f{i - 1:06d}.dat", os.path.join(d, f"l{i:06d}"))
            nlinks += 1
            continue
        p = os.path.join(d, f"f{i:06d}.dat")
        with open(p, "wb") as f:
            left = size
            while left:
                n = min(left, len(pool))
                off = rng.randrange(0, len(pool) - n + 1)
                f.write(memoryview(pool)[off:off + n])
                left -= n
        nfiles += 1
    return {"files": nfiles, "symlinks": nlinks, "dirs": len(dirs), "bytes": sum(sizes)}


def du_bytes(path: str) -> int:
    out = subprocess.run(["du", "-s", "--block-size=1", path], check=True,
                         capture_output=True, text=True).stdout
    return int(out.split()[0])


def sync() -> None:
    os.sync()


# ------------------------------------------------------------------ import in a child
_CHILD = r"""
import json, sys, time
sys.path[:0] = {paths!r}
from blockstore import Store
with Store.open({store!r}) as s:
    t0 = time.perf_counter_ns()
    s.import_dir({src!r}, {name!r})
    dt = time.perf_counter_ns() - t0
print(json.dumps({{"ns": dt}}))
"""


def import_in_child(store: str, src: str, name: str) -> tuple[int, float]:
    """(import ns, peak RSS MiB of the child) -- the child opens, imports, closes."""
    code = _CHILD.format(paths=sys.path[:3], store=store, src=src, name=name)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"import child failed with status {p.returncode}")
    return json.loads(out)["ns"], ru.ru_maxrss / 1024       # ru_maxrss is KiB on Linux


# ------------------------------------------------------------------ store helpers
def meta_live_bytes(store) -> int:
    """Bytes of live LMDB pages (branch + leaf + overflow) over all databases."""
    env = store.env.env
    total = 0
    with env.begin() as t:
        st = env.stat()
        total += (st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]) * st["psize"]
        for name in store.env.dbs.values():
            s = t.stat(name)
            total += (s["branch_pages"] + s["leaf_pages"] + s["overflow_pages"]) * s["psize"]
    return total


def pool_used(store) -> int:
    return store.df().used_bytes


# ------------------------------------------------------------------ measurements
def bench_seq(store, scratch: str, size: int, rep) -> None:
    """seq_write_ratio / seq_read_ratio / cow_write_bytes with one big file."""
    chunk = bytes(random.Random(7).randbytes(MiB))
    n = size // MiB
    raw = os.path.join(scratch, "raw.bin")
    rounds = 2 if size >= GiB else 3
    bu.log(f"seq: {rounds} alternating rounds of raw / store writes of {size / MiB:.0f} MiB")
    store.create("big")
    raw_ws, st_ws = [], []
    with store.fs("big") as fs:
        # Warm-up at full size, both paths (as bench_engine does): on a virtual
        # machine the first pass over fresh guest memory can be several times
        # slower, whichever path runs it.
        with open(raw, "wb") as f:
            for i in range(n):
                f.write(chunk)
        with fs.open("/big.bin", "wb") as f:
            for i in range(n):
                f.write(chunk)
        for r in range(rounds):        # alternate: the shared disk's regime changes over time
            sync()
            t0 = bu.now_ns()
            with open(raw, "wb") as f:
                for i in range(n):
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            raw_ws.append(bu.now_ns() - t0)
            sync()
            fs.unlink("/big.bin")
            t0 = bu.now_ns()
            with fs.open("/big.bin", "wb") as f:
                for i in range(n):
                    f.write(chunk)
            st_ws.append(bu.now_ns() - t0)      # close() = flushed, committed, durable
    raw_w, st_w = bu.median(raw_ws), bu.median(st_ws)
    rep.add("seq_write_ratio", bu.ratio(raw_w, st_w), "x", 0.6, ">=",
            note="store throughput / raw write+fsync throughput (median of alternating rounds)")
    rep.extra["seq_write_store_gbps"] = round(size / st_w, 3)
    rep.extra["seq_write_raw_gbps"] = round(size / raw_w, 3)

    def raw_read():
        with open(raw, "rb", buffering=0) as f:
            buf = bytearray(MiB)
            while f.readinto(buf):
                pass
    store.commit("big", "big@1")
    with store.fs("big@1") as fs:
        def st_read():
            with fs.open("/big.bin", "rb") as f:
                buf = bytearray(MiB)
                while f.readinto(buf):
                    pass
        bu.log("seq: reads (warm-up pass each, then timed from the page cache)")
        raw_read()
        st_read()
        raw_r, _ = bu.timed(raw_read)
        st_r, _ = bu.timed(st_read)
    rep.add("seq_read_ratio", bu.ratio(raw_r, st_r), "x", 0.7, ">=",
            note="page cache both sides after a warm-up pass")
    rep.extra["seq_read_store_gbps"] = round(size / st_r, 3)
    rep.extra["seq_read_raw_gbps"] = round(size / raw_r, 3)
    os.unlink(raw)

    bu.log("cow: 4 KiB write at a random offset into a clone of the big file")
    store.clone("big@1", "big-c")
    before = pool_used(store) + meta_live_bytes(store)
    off = random.Random(3).randrange(0, size - 4096)
    with store.fs("big-c") as fs:
        with fs.open("/big.bin", "r+b") as f:
            f.seek(off)
            f.write(b"x" * 4096)
    store.commit("big-c", "big@2")
    after = pool_used(store) + meta_live_bytes(store)
    rep.add("cow_write_bytes", after - before, "B", store.block_size + 64 * KiB, "<=",
            note="pool bytes + live LMDB page bytes added")
    for name in ("big@2", "big-c", "big@1", "big"):
        store.remove(name)
    store.gc()


def bench_tree(store, scratch: str, files: int, total: int, seed: int, rep) -> None:
    src = os.path.join(scratch, "src")
    bu.log(f"tree: generating {files} files / {total / MiB:.0f} MiB (seed {seed})")
    shape = make_tree(src, files, total, seed)
    rep.extra["tree"] = shape
    sync()
    # warm the page cache for both readers
    for dp, _, fns in os.walk(src):
        for fn in fns:
            os.lstat(os.path.join(dp, fn))

    bu.log("tree: cp -a + sync")
    dst = os.path.join(scratch, "cp")
    t0 = bu.now_ns()
    subprocess.run(["cp", "-a", src, dst], check=True)
    sync()
    cp_ns = bu.now_ns() - t0
    shutil.rmtree(dst)
    sync()

    bu.log("tree: import_dir (subprocess)")
    store_path = store.path
    store.close()
    imp_ns, rss = import_in_child(store_path, src, "t@1")
    from blockstore import Store
    store = Store.open(store_path)
    rep.add("import_ratio", bu.ratio(imp_ns, cp_ns), "x", 1.0, "<=",
            note="import_dir / (cp -a + sync)")
    rep.extra["import_s"] = round(imp_ns / 1e9, 2)
    rep.extra["cp_a_sync_s"] = round(cp_ns / 1e9, 2)
    rep.add("import_peak_rss_mib", rss, "MiB", 300, "<=")

    src_du = du_bytes(src)
    store_du = du_bytes(store_path)
    rep.add("store_size_ratio", bu.ratio(store_du, src_du), "x", 1.05, "<=",
            note="du of the store dir / du of the source")
    df = store.df()
    rep.extra["store_bytes"] = {"du_source": src_du, "du_store": store_du,
                                "data_file": df.data_file_bytes, "metadata": df.metadata_bytes,
                                "pool_used": df.used_bytes, "pool_total": df.total_bytes}

    bu.log("tree: clone / commit")
    clone_ns, commit_ns = [], []
    reps = 7
    for i in range(reps):
        t0 = bu.now_ns()
        store.clone("t@1", f"c{i}")
        clone_ns.append(bu.now_ns() - t0)
    for i in range(reps):
        t0 = bu.now_ns()
        store.commit(f"c{i}", f"c{i}@1")
        commit_ns.append(bu.now_ns() - t0)
    fs_ns = []                        # context: the disk's durable-write latency right now
    probe = os.path.join(scratch, "fsync-probe")
    with open(probe, "wb") as f:
        for i in range(reps):
            f.write(b"x")
            f.flush()
            t0 = bu.now_ns()
            os.fsync(f.fileno())
            fs_ns.append(bu.now_ns() - t0)
    os.unlink(probe)
    rep.extra["fsync_ms"] = round(bu.median(fs_ns) / 1e6, 3)
    rep.add("clone_ms", bu.median(clone_ns) / 1e6, "ms", 2, "<=")
    rep.add("commit_ms", bu.median(commit_ns) / 1e6, "ms", 2, "<=")
    for i in range(1, reps):
        store.remove(f"c{i}@1")
        store.remove(f"c{i}")

    bu.log("tree: change 1% of the files, commit, diff vs walk")
    rng = random.Random(seed + 1)
    with store.fs("c0") as fs:
        paths = []
        for dp, _, fns in fs.walk("/"):
            paths.extend(dp.rstrip("/") + "/" + fn for fn in fns if fn.endswith(".dat"))
        picked = rng.sample(paths, max(1, len(paths) // 100))
        with store.batch():
            for p in picked:
                with fs.open(p, "r+b") as f:
                    f.write(b"changed!")
    store.commit("c0", "t@2")
    diff_ns, walk_ns = [], []
    for _ in range(3):
        dt, changes = bu.timed(lambda: store.diff("t@1", "t@2"))
        diff_ns.append(dt)
    rep.extra["diff_changes"] = len(changes)
    with store.fs("t@1") as fs:
        def walk():
            n = 0
            for dp, ds, fns in fs.walk("/"):
                for fn in ds + fns:
                    fs.lstat(dp.rstrip("/") + "/" + fn)
                    n += 1
            return n
        for _ in range(2):
            dt, nwalk = bu.timed(walk)
            walk_ns.append(dt)
    rep.add("diff_ratio", bu.ratio(bu.median(diff_ns), bu.median(walk_ns)), "x", 0.05, "<=",
            note="diff of commits 1% apart / walk + lstat of the tree")
    rep.extra["diff_ms"] = round(bu.median(diff_ns) / 1e6, 2)
    rep.extra["walk_ms"] = round(bu.median(walk_ns) / 1e6, 2)
    check = store.check()
    rep.extra["check_ok"] = check.ok
    store.close()


def run(args):
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    files, total, big = SIZES[mode]
    rep = bu.Report("fs")
    rep.extra["quick"] = bool(args.quick)
    rep.extra["mode"] = mode
    rep.extra["env"] = bu.environment()
    from blockstore import Store
    with bu.scratch_dir(args.dir) as scratch:
        rep.extra["disk"] = bu.disk_usage(scratch)
        store_path = os.path.join(scratch, "store")
        store = Store.open(store_path)
        try:
            bench_seq(store, scratch, big, rep)
        finally:
            store.close()
        # a fresh store for the tree: store_size_ratio must not count the big file's space
        bench_tree(Store.open(os.path.join(scratch, "store2")), scratch, files, total,
                   args.seed, rep)
    return rep, ""
