"""``blockstore stress``: a randomized multi-process workload that verifies every read.

    report = blockstore.stress.run(store_path, duration=20, seed=1, writers=3, readers=2)

Layout of a run: the parent creates (or reuses) the store, imports a base
snapshot ``base`` with a manifest, creates the shared volumes, then starts
``writers`` + ``readers`` processes with the ``spawn`` method (see
workers.py for what each does).  When the duration is over it collects
their results, runs ``gc``, verifies every remaining stress snapshot against
its manifest and runs ``check(scrub=True)``.

The report (a dict; ``format_report`` renders it) holds operations/s, latency
percentiles per operation (p50/p90/p99/max, ms), check's verdict and, on any
divergence or error, the seed, the worker, the operation number, the message
and the path of that worker's full operation log.  Reproducing: each
worker's sequence of operations is a function of (seed, role, index) and of
what it read; interleaving between processes is not reproducible, so rerun
with the same seed and read the op log to replay the failing worker's
operations alone.

Cost: the store grows to a few hundred MiB at most (writers keep at most
a few snapshots and ~24 files of <= 50 KiB each).
"""
from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import tempfile
import time

from . import content
from .stats import format_table, summarize
from .workers import reader_main, writer_main

__all__ = ["run", "format_report"]


def _prepare(store_path: str, seed: int, volumes: int, block_size, dedup) -> None:
    from blockstore import Store
    with Store.open(store_path, create=True, block_size=block_size, dedup=dedup) as s:
        names = {r.name for r in s.list()}
        for v in range(volumes):
            if f"vol{v}" not in names:
                s.volume_create(f"vol{v}")
        if "base" in names:
            return
        rng = random.Random(f"{seed}/base")
        files = {f"/etc/f{i}": content.gen_data(rng, s.block_size) for i in range(12)}
        s.create("base-build")
        with s.fs("base-build") as fs:
            fs.makedirs("/etc", exist_ok=True)
            for p, d in files.items():
                fs.write_bytes(p, d)
            man = content.manifest_bytes(files)
            fs.write_bytes(content.MANIFEST, man)
        s.commit("base-build", "base", labels={content.LABEL: "1", "manifest": content.sha(man)})
        s.remove("base-build")


def _verify_all(store_path: str) -> tuple[int, list[str]]:
    """Every stress snapshot against its manifest (after the workers ended)."""
    from blockstore import Store
    bad, n = [], 0
    with Store.open(store_path, create=False) as s:
        for rec in s.list(kind="snapshot", label={content.LABEL: "1"}):
            n += 1
            with s.fs(rec.name) as fs:
                man = fs.read_bytes(content.MANIFEST)
                if content.sha(man) != rec.labels.get("manifest"):
                    bad.append(f"{rec.name}: manifest does not match its label")
                    continue
                for p, h in json.loads(man).items():
                    if content.sha(fs.read_bytes(p)) != h:
                        bad.append(f"{rec.name}:{p}: content differs from the manifest")
    return n, bad


def run(store_path: str | None = None, duration: float = 20, seed: int | None = None,
        writers: int = 3, readers: int = 2, volumes: int = 2, *, block_size: int | None = None,
        dedup: bool | None = None, keep: bool = False) -> dict:
    """Run the workload; returns the report dict (``report["ok"]`` is the verdict).

    ``store_path`` None: a temporary store, deleted afterwards unless ``keep``
    or the run failed."""
    seed = random.randrange(1, 2**31) if seed is None else int(seed)
    tmp = None
    if store_path is None:
        tmp = tempfile.mkdtemp(prefix="blockstore-stress-")
        store_path = os.path.join(tmp, "store")
    store_path = os.path.abspath(store_path)
    outdir = tempfile.mkdtemp(prefix="stress-out-", dir=os.path.dirname(store_path))
    _prepare(store_path, seed, volumes, block_size, dedup)

    ctx = multiprocessing.get_context("spawn")
    start = time.time()
    deadline = start + duration
    procs = [ctx.Process(target=writer_main, args=(i, store_path, seed, deadline, outdir, volumes),
                         name=f"writer{i}") for i in range(writers)]
    procs += [ctx.Process(target=reader_main, args=(i, store_path, seed, deadline, outdir),
                          name=f"reader{i}") for i in range(readers)]
    for p in procs:
        p.start()
    problems = []
    for p in procs:
        p.join(max(1.0, deadline - time.time() + 300))
        if p.is_alive():
            p.kill()
            p.join()
            problems.append(f"{p.name} did not finish within 300 s of the deadline (killed)")
        elif p.exitcode != 0:
            problems.append(f"{p.name} exited with code {p.exitcode}")
    elapsed = time.time() - start

    lat: dict[str, list[float]] = {}
    failures = []
    for name in sorted(os.listdir(outdir)):
        if not name.endswith(".json") or name.startswith("."):
            continue
        with open(os.path.join(outdir, name)) as f:
            res = json.load(f)
        for op, xs in res.pop("latencies_ms").items():
            lat.setdefault(op, []).extend(xs)
        if not res["ok"]:
            failures.append(res)
    lat.pop("vanished", None)

    from blockstore import Store
    with Store.open(store_path, create=False) as s:
        gc = s.gc()
        verified, bad = _verify_all(store_path) if False else (None, None)
    verified, bad = _verify_all(store_path)
    with Store.open(store_path, create=False) as s:
        rep = s.check(scrub=True)
        df = s.df()
    total_ops = sum(len(xs) for xs in lat.values())
    report = {
        "seed": seed, "store": store_path, "duration_s": round(elapsed, 1),
        "writers": writers, "readers": readers, "volumes": volumes,
        "ops": total_ops, "ops_per_s": round(total_ops / elapsed, 1) if elapsed else 0,
        "latency": summarize(lat, elapsed),
        "snapshots_verified_at_end": verified, "snapshot_problems": bad,
        "gc": gc, "check_ok": rep.ok, "check_problems": [str(p) for p in rep.problems],
        "pool": {k: getattr(df, k) for k in vars(df)} if hasattr(df, "__dict__") else str(df),
        "failures": failures, "process_problems": problems,
        "reproduce": f"python tools/stress.py --seed {seed} --duration {duration} "
                     f"--writers {writers} --readers {readers}",
    }
    report["ok"] = rep.ok and not failures and not problems and not bad
    if report["ok"] and not keep:
        shutil.rmtree(outdir, ignore_errors=True)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        report["outdir"] = outdir
    return report


def format_report(rep: dict) -> str:
    out = [f"stress: seed {rep['seed']}, {rep['writers']} writers, {rep['readers']} readers, "
           f"{rep['duration_s']} s, {rep['ops']} operations, {rep['ops_per_s']} ops/s",
           format_table(rep["latency"]),
           f"snapshots verified at the end: {rep['snapshots_verified_at_end']}; "
           f"check(scrub): {'ok' if rep['check_ok'] else 'FAILED'}"]
    for p in rep["check_problems"][:20]:
        out.append(f"  check: {p}")
    for p in rep["snapshot_problems"][:20] + rep["process_problems"]:
        out.append(f"  problem: {p}")
    for f in rep["failures"]:
        out.append(f"DIVERGENCE/ERROR in {f['role']}{f['idx']} at operation {f.get('op_number')} "
                   f"(seed {f['seed']}): {f.get('message')}")
        out.append(f"  operation log: {f.get('oplog')}; last operations:")
        out.extend("    " + ln for ln in f.get("oplog_tail", [])[-15:])
        out.append(f"  reproduce: {rep['reproduce']}")
    out.append("RESULT: " + ("ok" if rep["ok"] else "FAILED"))
    return "\n".join(out)
