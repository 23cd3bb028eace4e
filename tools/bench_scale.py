"""Scaling curves: per-tree costs vs number of trees, import vs file count, lookup vs depth.

Three growth curves, each measured in one run:

  trees   one store per N (10 ... 10,000), all open at once, each holding a
          base snapshot (a synthetic root file system) and N clones of it
          (one clone in ten has a file of its own).  The operations below
          run in rounds (101; --quick 31; --rounds): each operation on every
          store in turn before the next one, the order of the stores
          alternating, so every N sees the same minutes of machine load.
          At each N, medians over the rounds:
            clone_ms      durable clone of the base
            commit_ms     durable commit of that clone after a small write
            rm_gc_ms      remove + gc of that snapshot (it frees no block: the
                          clone shares them; one durable commit)
            rm_gc_freeing_ms  remove + gc of the clone, which frees its own
                          blocks (also one durable commit: gc gives their
                          space back without one, gc.py)
            *_cpu_ms      the same in CPU time of this process (what
                          the store does, without the waits for the disk
                          and for the CPU that other processes take)
            clone_pages, commit_pages  LMDB pages one clone / commit writes
                          (bytes this process passed to write calls)
            ls_ms         Store.list() of every tree
            info_ms       what `blockstore info` does for one clone (c1)
                          (record, lineage, dependents, usage)
            du_one_ms     usage of one clone (c0, which has a file of its own)
            du_all_ms     usage of every tree (one pass, Store.usage_all)
            du_all_peak_mib  Python memory peak of du_all (tracemalloc)
  import  a source directory of small files (100 B .. 6 KB; 1,000 per
          directory) grown 1k ... 1M files.  At each size, interleaved:
          `blockstore import` (CLI, durable on return), `cp -a` + `sync -f`,
          `tar -c | tar -x` + `sync -f`; wall time, CPU time (user + system:
          what load on a shared machine does not inflate) and peak RSS of each
          (after one unmeasured CLI start that writes the byte code caches)
          (GNU time's %M: the largest process of the command, so for the tar
          pipeline the larger of the two tars; %U + %S of the command and its
          children).  As root, each size starts from dropped caches and the
          source read back, and the copies stay until the size's last
          round (``_settle``: ext4's recently-deleted inodes).
  depth   a chain of snapshots (clone, write, commit) 1 ... 1,000 deep; at
          depths 1, 10, 100, 1000 the median latency of stat + read of a file
          written at depth 1 (TreeView, in process).

Goals (issue 20): at the largest N rm_gc_ms <= 1, clone and commit <= 1.3x
their time at N = 10 (``*_growth``: ratio of the medians; ``*_growth_p10``,
``*_growth_p90``: its 10th and 90th percentile over bootstrap resamples of the
rounds, the spread the noise gives it; ``*_growth_paired``: the median of
the ratios of the two stores' times within one round, which a slow minute
moves less), du_all <= 5 s; import of the
largest tree peak RSS <= 300 MiB and time <= 1.0x cp -a + sync; 1k files
<= 2x cp -a + sync.  The load average is recorded beside every point (the
machine is shared).

``--plot DIR`` writes scale_trees.png, scale_import.png, scale_depth.png
(matplotlib), peers drawn beside.  Sizes: full (about 15-20 minutes) N up
to 10,000, 1M files, depth 1,000; --quick N to 1,000, 30k files, depth 100;
--tiny (smoke test) N to 40, 2k files, depth 10.  ``--max-trees``,
``--max-files`` and ``--max-depth`` cut a run short.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
import tracemalloc

import _benchutil as bu
from _benchutil import log

HELP = __doc__.split("\n")[0]
MiB = 1 << 20
BIN = os.path.join(os.path.dirname(sys.executable), "blockstore")


def add_args(p) -> None:
    p.add_argument("--plot", metavar="DIR", default=None, help="write PNG plots into DIR")
    p.add_argument("--max-trees", type=int, default=None)
    p.add_argument("--max-files", type=int, default=None)
    p.add_argument("--max-depth", type=int, default=None)
    p.add_argument("--files", default=None, metavar="N,N,...", help="import sizes to measure")
    p.add_argument("--trees", default=None, metavar="N,N,...", help="tree counts to measure")
    p.add_argument("--rounds", type=int, default=None,
                   help="rounds of the per-tree operations (default 101; --quick 31)")
    p.add_argument("--only", choices=["trees", "import", "depth"], action="append",
                   help="run only these curves (repeatable)")


def _sizes(args):
    if args.tiny:
        trees, files, depth = [10, 40], [500, 2000], [1, 10]
    elif args.quick:
        trees, files, depth = [10, 100, 1000], [1000, 10000, 30000], [1, 10, 100]
    else:
        trees = [10, 100, 1000, 10000]
        files = [1000, 10000, 100000, 1000000]
        depth = [1, 10, 100, 1000]
    if args.files:
        files = [int(x) for x in args.files.split(",")]
    if args.trees:
        trees = [int(x) for x in args.trees.split(",")]
    cut = lambda xs, m: [x for x in xs if m is None or x <= m] or xs[:1]  # noqa: E731
    return cut(trees, args.max_trees), cut(files, args.max_files), cut(depth, args.max_depth)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


# ----------------------------------------------------------------- the base tree
def _make_base(root: str, files: int, rnd: random.Random) -> None:
    """A synthetic root file system: nested directories, small files, symlinks."""
    for i in range(files):
        d = os.path.join(root, f"usr{i % 7}", f"lib{i % 53}", f"p{i % 211}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i}"), "wb") as f:
            f.write(rnd.randbytes(rnd.choice((60, 300, 900, 2500, 9000, 30000))))
        if i % 50 == 0:
            os.symlink(f"f{i}", os.path.join(d, f"l{i}"))


def _ms(ns_list) -> float:
    return bu.median(ns_list) / 1e6


def _written() -> int:
    """Bytes this process has passed to write calls (/proc/self/io wchar): LMDB
    writes each dirty page of a commit with pwrite, so the delta over one
    durable operation is the pages it wrote (plus the 120-byte meta record)."""
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class _Clock:
    """Wall and CPU time (this process) and bytes written of each ``with`` block:
    the CPU time of an operation does not move with other processes' load, its
    wall time does."""

    def __init__(self):
        self.wall: list[int] = []
        self.cpu: list[int] = []
        self.wrote: list[int] = []

    def __enter__(self):
        self.w0 = _written()
        self.t0, self.c0 = time.perf_counter_ns(), time.process_time_ns()

    def __exit__(self, *exc):
        self.wall.append(time.perf_counter_ns() - self.t0)
        self.cpu.append(time.process_time_ns() - self.c0)
        self.wrote.append(_written() - self.w0)


def _growth(a: list[int], b: list[int], rnd: random.Random, draws: int = 400):
    """(10th, 90th percentile) of median(b) / median(a) over bootstrap resamples
    of the rounds (a[i] and b[i] were measured in the same round, so a round
    is drawn as a pair): how far the ratio of medians moves with the noise."""
    n = len(a)
    got = []
    for _ in range(draws):
        pick = [rnd.randrange(n) for _ in range(n)]
        got.append(bu.median([b[i] for i in pick]) / max(1, bu.median([a[i] for i in pick])))
    got.sort()
    return got[draws // 10], got[draws * 9 // 10]


# The per-tree operations, measured round by round on every store (see bench_trees).
_OPS = ("clone", "commit", "rm", "rm_free", "ls", "info", "du1")


def _build_trees_store(st, src: str, n: int) -> None:
    """The base snapshot and n clones of it, one in ten with a file of its own."""
    st.import_dir(src, "base")
    made = 0
    while made < n:
        with st.batch():
            for _ in range(min(500, n - made)):
                name = f"c{made}"
                st.clone("base", name)
                if made % 10 == 0:
                    with st.fs(name) as fs:
                        fs.write_bytes(f"/own{made}", b"x" * 5000)
                made += 1


def _round(st, clocks: dict, tag: str, op: str) -> None:
    """One measured operation ``op`` on store ``st``; ``tag`` names this round's trees."""
    c, s = f"m{tag}", f"m{tag}-v1"
    clock = clocks[op]
    if op == "clone":
        with clock:
            st.clone("base", c)
        with st.fs(c) as fs:
            fs.write_bytes("/etc-new", b"y" * 3000)
    elif op == "commit":
        with clock:
            st.commit(c, s)
    elif op == "rm":                     # frees no block: one commit
        with clock:
            st.remove(s)
            st.gc()
    elif op == "rm_free":                # frees its own blocks: also one commit (gc.py)
        with clock:
            st.remove(c)
            st.gc()
    elif op == "ls":
        with clock:
            st.list()
    elif op == "info":
        with clock:
            st.info("c1")
            st.lineage("c1")
            st.dependents("c1")
            st.usage("c1")
    elif op == "du1":
        with clock:
            st.usage("c0")


def bench_trees(args, work: str, sizes: list[int]) -> list[dict]:
    """One store per tree count, all open at once; the operations are measured
    in rounds, each operation on every store in turn before the next (the
    order of the stores alternating from round to round), so the stores see
    the same minutes of machine load and a ratio between them is not the
    difference between two moments."""
    from blockstore import Store
    rnd = random.Random(1)
    src = os.path.join(work, "base-src")
    _make_base(src, 300 if args.tiny else 3000, rnd)
    rounds = args.rounds or (3 if args.tiny else 31 if args.quick else 101)
    stores = {}
    try:
        for n in sizes:
            t0 = time.perf_counter()
            st = stores[n] = Store.open(os.path.join(work, f"trees-{n}"))
            _build_trees_store(st, src, n)
            log(f"trees: store of {n} clones ({time.perf_counter() - t0:.1f} s to make), "
                f"load {_load()}")
        clocks = {n: {op: _Clock() for op in _OPS} for n in sizes}
        load0 = _load()
        for i in range(rounds):
            order = sizes if i % 2 == 0 else sizes[::-1]
            for op in _OPS:
                for n in order:
                    _round(stores[n], clocks[n], f"{n}-{i}", op)
        log(f"trees: {rounds} rounds, load {load0} -> {_load()}")
        rows = []
        for n in sizes:
            st, k = stores[n], clocks[n]
            du_all = []
            for _ in range(1 if n >= 3000 else 3):
                with bu.stopwatch(du_all):
                    got = st.usage_all()
            tracemalloc.start()
            st.usage_all()
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            row = {"trees": len(got), "rounds": rounds,
                   "clone_ms": _ms(k["clone"].wall), "commit_ms": _ms(k["commit"].wall),
                   "rm_gc_ms": _ms(k["rm"].wall), "rm_gc_freeing_ms": _ms(k["rm_free"].wall),
                   "clone_cpu_ms": _ms(k["clone"].cpu),
                   "commit_cpu_ms": _ms(k["commit"].cpu), "rm_gc_cpu_ms": _ms(k["rm"].cpu),
                   "rm_gc_freeing_cpu_ms": _ms(k["rm_free"].cpu),
                   "clone_pages": bu.median(k["clone"].wrote) // 4096,
                   "commit_pages": bu.median(k["commit"].wrote) // 4096,
                   "ls_ms": _ms(k["ls"].wall), "info_ms": _ms(k["info"].wall),
                   "du_one_ms": _ms(k["du1"].wall), "du_all_ms": _ms(du_all),
                   "du_all_peak_mib": peak / MiB, "load": _load()}
            log("trees:", {k2: round(v, 3) for k2, v in row.items()})
            rows.append(row)
        first, last = clocks[sizes[0]], clocks[sizes[-1]]
        spread = {}
        for op, key in (("clone", "clone"), ("commit", "commit")):
            for kind, suffix in (("wall", ""), ("cpu", "_cpu")):
                lo, hi = _growth(getattr(first[op], kind), getattr(last[op], kind), rnd)
                spread[f"{key}{suffix}_growth_p10"] = lo
                spread[f"{key}{suffix}_growth_p90"] = hi
        for op in ("clone", "commit"):
            for kind, suffix in (("wall", ""), ("cpu", "_cpu")):
                a, b = getattr(first[op], kind), getattr(last[op], kind)
                spread[f"{op}{suffix}_growth_paired"] = bu.median(
                    [y / max(1, x) for x, y in zip(a, b)])
        rows[-1]["growth_spread"] = spread
        for n, row in zip(sizes, rows):       # every round's figures, in µs, for re-analysis
            row["samples_us"] = {op: {kind: [round(v / 1e3, 1) for v in getattr(clocks[n][op], kind)]
                                      for kind in ("wall", "cpu")} for op in ("clone", "commit", "rm")}
    finally:
        for st in stores.values():
            st.close()
    return rows


# ----------------------------------------------------------------- import
def _grow_source(root: str, have: int, want: int, rnd: random.Random) -> None:
    for i in range(have, want):
        d = os.path.join(root, f"d{i // 1000:05d}")
        if i % 1000 == 0:
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:07d}"), "wb") as f:
            f.write(rnd.randbytes(rnd.choice((100, 700, 2000, 4000, 6000))))


# Byte code caches are written (as an installed package has them), whatever
# the caller's environment says: a start-up that compiles every module is not
# what the CLI costs.
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _run(cmd: list[str]) -> tuple[float, float, float]:
    """(wall seconds, peak RSS MiB, CPU seconds) of one command, run under GNU time,
    whose own small process is what forks it (a child forked from this process
    would count this process's memory as its own until it execs)."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", *cmd], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, env=_ENV)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise RuntimeError(f"{cmd[0]} failed: {p.stderr[-2000:]}")
    rss, user, sys_ = p.stderr.strip().splitlines()[-1].split()
    return wall, int(rss) / 1024, float(user) + float(sys_)


def _rm(path: str) -> None:
    subprocess.run(["rm", "-rf", "--one-file-system", path], check=True)


def _settle(src: str) -> bool:
    """Before a size's rounds (root only): ``drop_caches`` (which ends ext4's
    slow creates after the previous size's copies were removed: ``cp -a`` and
    ``tar -x`` make ext4 inodes, ``blockstore import`` a handful of files), then
    the source read back, so every command starts from the same warm source.
    False when not root (nothing done)."""
    if not bu.drop_caches():
        return False
    subprocess.run(f"tar -C {src} -cf - . | cat > /dev/null", shell=True, check=True)
    return True


def bench_import(args, work: str, sizes: list[int]) -> list[dict]:
    rnd = random.Random(2)
    src = os.path.join(work, "import-src")
    os.makedirs(src)
    have, rows = 0, []
    warm = os.path.join(work, "warm")
    os.makedirs(os.path.join(warm, "src"))
    _run([BIN, "--store", os.path.join(warm, "store"), "import", os.path.join(warm, "src"), "w"])
    shutil.rmtree(warm)
    for n in sizes:
        t0 = time.perf_counter()
        _grow_source(src, have, n, rnd)
        have = n
        subprocess.run(["sync", "-f", src], check=True)
        log(f"import: source of {n} files ready ({time.perf_counter() - t0:.1f} s), load {_load()}")
        reps = 1 if args.tiny else 3 if n <= 10000 else 1
        settled = _settle(src)
        cp, cp_rss, cp_cpu, tar, tar_rss, imp, imp_rss, imp_cpu = ([] for _ in range(8))
        copies = []                 # removed after the size's rounds (see _settle)
        for r in range(reps):
            dst = os.path.join(work, f"dst{r}")
            copies.append(dst)
            w, m, c = _run(["cp", "-a", src, dst])
            ws, _, cs = _run(["sync", "-f", dst])
            cp.append(w + ws)
            cp_rss.append(m)
            cp_cpu.append(c + cs)
            store = os.path.join(work, "imp-store")
            w, m, c = _run([BIN, "--store", store, "import", src, "snap"])
            imp.append(w)
            imp_rss.append(m)
            imp_cpu.append(c)
            _rm(store)
            dst = os.path.join(work, f"tdst{r}")
            copies.append(dst)
            os.makedirs(dst)
            w, m, _ = _run(["bash", "-c", f"tar -C {src} -cf - . | tar -C {dst} -xf - && sync -f {dst}"])
            tar.append(w)
            tar_rss.append(m)
        for dst in copies:
            _rm(dst)
        row = {"files": n, "import_s": bu.median(imp), "cp_s": bu.median(cp),
               "tar_s": bu.median(tar), "import_rss_mib": max(imp_rss),
               "cp_rss_mib": max(cp_rss), "tar_rss_mib": max(tar_rss),
               "import_ratio": bu.median(imp) / bu.median(cp),
               "import_cpu_s": bu.median(imp_cpu), "cp_cpu_s": bu.median(cp_cpu),
               "import_cpu_ratio": bu.median(imp_cpu) / max(1e-3, bu.median(cp_cpu)),
               "load": _load(), "settled": settled}
        log("import:", {k: round(v, 3) for k, v in row.items()})
        rows.append(row)
    _rm(src)
    return rows


# ----------------------------------------------------------------- depth
def bench_depth(args, work: str, depths: list[int]) -> list[dict]:
    from blockstore import Store
    rows = []
    with Store.open(os.path.join(work, "depth")) as st:
        st.create("w")
        with st.fs("w") as fs:
            fs.write_bytes("/first", b"z" * 3000)
        st.commit("w", "d1")
        have = 1
        for d in depths:
            with st.batch():
                while have < d:
                    with st.fs("w") as fs:
                        fs.write_bytes(f"/f{have}", b"q" * 100)
                    have += 1
                    st.commit("w", f"d{have}")
            lat = []
            with st.fs(f"d{d}") as fs:
                for _ in range(200):
                    t0 = time.perf_counter_ns()
                    fs.stat("/first")
                    fs.read_bytes("/first")
                    lat.append(time.perf_counter_ns() - t0)
            row = {"depth": d, "lookup_us": bu.median(lat) / 1e3, "load": _load()}
            log("depth:", row)
            rows.append(row)
    return rows


# ----------------------------------------------------------------- plots
def plot(result: dict, out: str) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(out, exist_ok=True)
    made = []
    stamp = f"{result['date'][:10]}, load {result.get('load_start', '?')}-{result.get('load_end', '?')}"
    trees = result.get("trees") or []
    if trees:
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
        n = [r["trees"] for r in trees]
        for key, label in (("clone_ms", "clone"), ("commit_ms", "commit"),
                           ("rm_gc_ms", "rm + gc"), ("rm_gc_freeing_ms", "rm + gc (frees blocks)"),
                           ("info_ms", "info")):
            line, = a.plot(n, [r[key] for r in trees], marker="o", label=label)
            if key.replace("_ms", "_cpu_ms") in trees[0]:
                a.plot(n, [r[key.replace("_ms", "_cpu_ms")] for r in trees], ls="--",
                       color=line.get_color(), label=f"{label} (CPU)")
        a.set(xscale="log", yscale="log", xlabel="trees in the store", ylabel="ms (median)",
              title="per-tree operations")
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
        b.plot(n, [r["du_all_ms"] / 1e3 for r in trees], marker="o", label="du of all trees")
        b.plot(n, [r["du_one_ms"] / 1e3 for r in trees], marker="o", label="du of one tree")
        b.plot(n, [r["ls_ms"] / 1e3 for r in trees], marker="o", label="ls (all)")
        b.set(xscale="log", yscale="log", xlabel="trees in the store", ylabel="s",
              title="whole-store operations")
        b.grid(True, which="both", alpha=0.3)
        b.legend()
        fig.suptitle(f"blockstore: cost vs number of trees ({stamp})", fontsize=10)
        fig.tight_layout()
        made.append(os.path.join(out, "scale_trees.png"))
        fig.savefig(made[-1], dpi=80)
        plt.close(fig)
    imp = result.get("import") or []
    if imp:
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
        n = [r["files"] for r in imp]
        for key, label in (("import_s", "blockstore import"), ("cp_s", "cp -a + sync"),
                           ("tar_s", "tar | tar + sync")):
            a.plot(n, [r[key] for r in imp], marker="o", label=label)
        a.set(xscale="log", yscale="log", xlabel="files", ylabel="s", title="import time")
        a.grid(True, which="both", alpha=0.3)
        a.legend()
        for key, label in (("import_rss_mib", "blockstore import"), ("cp_rss_mib", "cp -a"),
                           ("tar_rss_mib", "tar | tar")):
            b.plot(n, [r[key] for r in imp], marker="o", label=label)
        b.axhline(300, color="grey", ls="--", lw=1, label="goal 300 MiB")
        b.set(xscale="log", xlabel="files", ylabel="peak RSS, MiB", title="import memory")
        b.grid(True, which="both", alpha=0.3)
        b.legend()
        fig.suptitle(f"blockstore: import vs file count ({stamp})", fontsize=10)
        fig.tight_layout()
        made.append(os.path.join(out, "scale_import.png"))
        fig.savefig(made[-1], dpi=80)
        plt.close(fig)
    dep = result.get("depth") or []
    if dep:
        fig, a = plt.subplots(figsize=(5.5, 4))
        a.plot([r["depth"] for r in dep], [r["lookup_us"] for r in dep], marker="o",
               label="stat + read of a 3 KB file")
        a.set(xscale="log", xlabel="snapshot depth", ylabel="µs (median)",
              title=f"lookup vs snapshot depth ({result['date'][:10]})")
        a.set_ylim(bottom=0)
        a.grid(True, which="both", alpha=0.3)
        a.legend()
        fig.tight_layout()
        made.append(os.path.join(out, "scale_depth.png"))
        fig.savefig(made[-1], dpi=80)
        plt.close(fig)
    return made


# ----------------------------------------------------------------- run
def run(args):
    trees_n, files_n, depth_n = _sizes(args)
    only = set(args.only or ["trees", "import", "depth"])
    report = bu.Report("scale")
    result = {"date": bu.environment()["date"], "load_start": _load()}
    steal0 = bu.cpu_steal()
    with bu.scratch_dir(args.dir) as work:
        if "trees" in only:
            result["trees"] = bench_trees(args, work, trees_n)
        if "depth" in only:
            result["depth"] = bench_depth(args, work, depth_n)
        if "import" in only:
            result["import"] = bench_import(args, work, files_n)
    steal1 = bu.cpu_steal()
    result["load_end"] = _load()
    result["cpu_steal_pct"] = round(100 * (steal1[0] - steal0[0]) / max(1, steal1[1] - steal0[1]), 2)
    t = result.get("trees")
    if t:
        first, last = t[0], t[-1]
        report.add("trees_max", last["trees"])
        report.add("rm_gc_ms_at_max", last["rm_gc_ms"], "ms", 1, "<=")
        report.add("rm_gc_cpu_ms_at_max", last["rm_gc_cpu_ms"], "ms", 1, "<=")
        report.add("rm_gc_freeing_ms_at_max", last["rm_gc_freeing_ms"], "ms", 1, "<=")
        report.add("rm_gc_freeing_cpu_ms_at_max", last["rm_gc_freeing_cpu_ms"], "ms")
        report.add("clone_growth", last["clone_ms"] / first["clone_ms"], "x", 1.3, "<=",
                   note=f"clone at {last['trees']} / at {first['trees']} trees")
        report.add("commit_growth", last["commit_ms"] / first["commit_ms"], "x", 1.3, "<=")
        report.add("clone_cpu_growth", last["clone_cpu_ms"] / first["clone_cpu_ms"], "x", 1.3, "<=")
        report.add("commit_cpu_growth", last["commit_cpu_ms"] / first["commit_cpu_ms"], "x",
                   1.3, "<=")
        for key, v in (last.get("growth_spread") or {}).items():
            report.add(key, v, "x", note="median of the per-round ratios" if key.endswith("paired")
                       else "bootstrap percentile of the ratio over the rounds")
        report.add("clone_pages_at_first", first["clone_pages"], "pages",
                   note="LMDB pages one clone writes")
        report.add("clone_pages_at_max", last["clone_pages"], "pages")
        report.add("commit_pages_at_first", first["commit_pages"], "pages")
        report.add("commit_pages_at_max", last["commit_pages"], "pages")
        report.add("du_all_s_at_max", last["du_all_ms"] / 1e3, "s", 5, "<=")
        report.add("du_all_over_du_one", last["du_all_ms"] / last["du_one_ms"], "x")
        report.add("du_all_peak_mib_at_max", last["du_all_peak_mib"], "MiB")
    i = result.get("import")
    if i:
        first, last = i[0], i[-1]
        report.add("import_files_max", last["files"])
        report.add("import_rss_mib_at_max", last["import_rss_mib"], "MiB", 300, "<=")
        report.add("import_ratio_at_max", last["import_ratio"], "x", 1.0, "<=",
                   note="import / (cp -a + sync)")
        report.add("import_ratio_first", first["import_ratio"], "x", 2.0, "<=",
                   note=f"{first['files']} files")
        report.add("import_cpu_ratio_at_max", last["import_cpu_ratio"], "x",
                   note="CPU (user + system) of import / of cp -a + sync")
    d = result.get("depth")
    if d:
        report.add("depth_ratio", d[-1]["lookup_us"] / d[0]["lookup_us"], "x", 1.3, "<=",
                   note=f"lookup at depth {d[-1]['depth']} / at 1")
    if args.plot:
        result["plots"] = plot(result, args.plot)
    report.extra.update(result)
    report.extra.update(bu.environment())
    report.extra["quick"] = bool(args.quick)
    text = []
    for key, cols in (("trees", ["trees", "clone_ms", "commit_ms", "rm_gc_ms", "rm_gc_freeing_ms",
                                 "clone_cpu_ms", "commit_cpu_ms", "rm_gc_cpu_ms",
                                 "clone_pages", "commit_pages", "ls_ms",
                                 "info_ms", "du_one_ms", "du_all_ms", "du_all_peak_mib", "load"]),
                      ("import", ["files", "import_s", "cp_s", "tar_s", "import_ratio",
                                  "import_cpu_s", "cp_cpu_s", "import_cpu_ratio",
                                  "import_rss_mib", "cp_rss_mib", "tar_rss_mib", "load"]),
                      ("depth", ["depth", "lookup_us", "load"])):
        if result.get(key):
            text.append(bu.format_rows(result[key], cols))
    text.append(f"load {result['load_start']} -> {result['load_end']}, "
                f"cpu steal {result['cpu_steal_pct']}%")
    return report, "\n\n".join(text)

