#!/usr/bin/env python3
"""Store CPU per small file written through the FUSE adapter, without FUSE.

    tools/fs_small_cpu.py [--files 1200] [--rounds 5] [--json] [--profile OUT]
                          [LABEL=TREE ...]

Calls the mount's request handlers (``blockstore.fuse.adapter.Adapter``)
directly, in the order ``cp -a`` sends them for each file of a directory
(no-open mode): GETATTR of the directory, LOOKUP (a miss), MKNOD, GETXATTR
``security.capability`` (a miss: the kernel asks before every write),
WRITE, SETATTR (times), SETXATTR ``system.posix_acl_access``; commits
happen as in a mount, on the request thread (every ``COMMIT_EVERY`` files
instead of the batch's age bound, so their number does not depend on load).
What it measures is the daemon's CPU per file for the store's part of
``bench.py fuse``'s ``small_files_write_ratio`` (the kernel's and the
request loop's part are not in it).  CPU is ``time.process_time`` (user +
system of this process), so the figure holds up under load better than
wall time; per request kind the CPU of its handler calls is reported too.

The files: ``--files`` sizes drawn from a fixed log-uniform distribution
(64 B .. 256 KiB, mean ~22 KiB; the shape of a source tree), the same every
run.  Each round writes them all into a fresh directory of one clone; the
first round is a warm-up and not reported.

With LABEL=TREE arguments each TREE (a blockstore source tree with its
built ``blockstore/native/_blockkern*.so``) runs in its own process with
``PYTHONPATH=TREE``, the trees interleaved round by round, so old and new
code are compared in the same minutes.  Without them the tree this tool
belongs to is measured.  ``--profile OUT`` writes a cProfile of one round
(in-process only).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OPS = ("getattr", "lookup", "mknod", "getxattr", "write", "setattr", "setxattr", "commit")
# A commit every this many files: what the batch's 50 ms age bound gives a quiet
# ``cp -a`` (about 20 commits per 1,400 files).  Counted, not timed, so the
# number of commits does not depend on the machine's load.
COMMIT_EVERY = 64
# A minimal access ACL (user::rw-, group::r--, other::r--), as cp -a copies it.
ACL = (b"\2\0\0\0\1\0\6\0\377\377\377\377\4\0\4\0\377\377\377\377"
       b" \0\4\0\377\377\377\377")


def sizes(n: int) -> list[int]:
    rnd = random.Random(18)
    return [int(round(2 ** rnd.uniform(6, 18))) for _ in range(n)]


def _worker(nfiles: int, rounds: int, profile: str | None) -> dict:
    """Run ``rounds`` + 1 rounds in this process; per round CPU us per file."""
    import cProfile
    import stat
    from types import SimpleNamespace

    import pyfuse3
    import trio

    from blockstore import Store
    from blockstore.fuse.adapter import Adapter

    ctx = SimpleNamespace(uid=0, gid=0, pid=os.getpid(), umask=0o022)
    fields = SimpleNamespace(update_size=False, update_mode=False, update_uid=False,
                             update_gid=False, update_atime=True, update_mtime=True,
                             update_ctime=False)
    rnd = random.Random(7)
    datas = [rnd.randbytes(n) for n in sizes(nfiles)]
    result: dict = {"rounds": [], "ops": {op: [] for op in OPS}, "commits": 0}
    d = tempfile.mkdtemp(prefix="fs_small_cpu.")
    try:
        with Store.open(os.path.join(d, "store"), create=True) as s:
            s.create("c")
            tfs = s.fs("c")
            ad = Adapter(s, tfs)
            ad.batcher.interval = 1e9       # commits: COMMIT_EVERY (and the size limits)

            async def one_round(r: int) -> tuple[float, dict]:
                per = dict.fromkeys(OPS, 0.0)
                pt = time.process_time
                de = await ad.mkdir(pyfuse3.ROOT_INODE, b"r%d" % r, 0o755, ctx)
                dino = de.st_ino
                t0 = pt()
                for i, buf in enumerate(datas):
                    name = b"f%d" % i
                    a = pt()
                    await ad.getattr(dino, ctx)
                    b = pt()
                    per["getattr"] += b - a
                    try:
                        await ad.lookup(dino, name, ctx)
                    except pyfuse3.FUSEError:
                        pass
                    a = pt()
                    per["lookup"] += a - b
                    e = await ad.mknod(dino, name, stat.S_IFREG | 0o644, 0, ctx)
                    b = pt()
                    per["mknod"] += b - a
                    try:
                        await ad.getxattr(e.st_ino, b"security.capability", ctx)
                    except pyfuse3.FUSEError:
                        pass
                    a = pt()
                    per["getxattr"] += a - b
                    await ad.write(e.st_ino, 0, buf)
                    b = pt()
                    per["write"] += b - a
                    attr = pyfuse3.EntryAttributes()
                    attr.st_atime_ns = 1_600_000_000_000_000_000
                    attr.st_mtime_ns = 1_600_000_000_000_000_001
                    await ad.setattr(e.st_ino, attr, fields, None, ctx)
                    a = pt()
                    per["setattr"] += a - b
                    await ad.setxattr(e.st_ino, b"system.posix_acl_access", ACL, ctx)
                    b = pt()
                    per["setxattr"] += b - a
                    if i % COMMIT_EVERY == COMMIT_EVERY - 1:
                        ad.batcher.sync()
                        per["commit"] += pt() - b
                total = pt() - t0
                return total, per

            async def main():
                async with trio.open_nursery() as n:
                    ad.nursery = n
                    n.start_soon(ad.batcher.run)
                    for r in range(rounds + 1 + bool(profile)):
                        prof = None
                        if profile and r == rounds + 1:
                            prof = cProfile.Profile(time.process_time)
                            prof.enable()
                        c0 = ad.batcher.commits
                        total, per = await one_round(r)
                        if prof is not None:
                            prof.disable()
                            prof.dump_stats(profile)
                        ad.batcher.sync()
                        if r == 0 or prof is not None:
                            continue            # warm-up / profiled round
                        result["rounds"].append(1e6 * total / nfiles)
                        result["commits"] += ad.batcher.commits - c0
                        for op in OPS:
                            result["ops"][op].append(1e6 * per[op] / nfiles)
                    ad.batcher.stop()
                    n.cancel_scope.cancel()
            trio.run(main)
            tfs.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return result


def _summary(res: dict) -> dict:
    return {"cpu_us_per_file": round(statistics.median(res["rounds"]), 1),
            "cpu_us_per_file_rounds": [round(x, 1) for x in res["rounds"]],
            "ops_us_per_file": {op: round(statistics.median(v), 1)
                                for op, v in res["ops"].items() if v},
            "commits": res["commits"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=1200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--profile", help="cProfile output of one round (in-process only)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("trees", nargs="*", metavar="LABEL=TREE")
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(_worker(a.files, a.rounds, None)))
        return
    load0 = open("/proc/loadavg").read().split()[:3]
    out: dict = {"files": a.files, "bytes": sum(sizes(a.files))}
    if not a.trees:
        sys.path.insert(0, os.path.dirname(HERE))
        out["sides"] = {"this": _summary(_worker(a.files, a.rounds, a.profile))}
    else:
        sides = [t.split("=", 1) for t in a.trees]
        acc = {label: {"rounds": [], "ops": {op: [] for op in OPS}, "commits": 0}
               for label, _ in sides}
        for r in range(a.rounds):
            order = sides[r % len(sides):] + sides[:r % len(sides)]
            for label, tree in order:
                env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
                p = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker",
                                    "--files", str(a.files), "--rounds", "1"],
                                   env=env, capture_output=True, text=True, cwd="/")
                if p.returncode:
                    sys.exit(f"{label}: worker failed:\n{p.stderr}")
                res = json.loads(p.stdout)
                acc[label]["rounds"] += res["rounds"]
                acc[label]["commits"] += res["commits"]
                for op in OPS:
                    acc[label]["ops"][op] += res["ops"][op]
        out["sides"] = {label: _summary(acc[label]) for label, _ in sides}
    out["loadavg"] = {"start": load0, "end": open("/proc/loadavg").read().split()[:3]}
    if a.json:
        print(json.dumps(out, indent=1))
        return
    labels = list(out["sides"])
    print(f"{a.files} files, {out['bytes'] / 1e6:.1f} MB; CPU us per file (median of rounds)")
    print(f"{'':10}" + "".join(f"{lb:>12}" for lb in labels))
    for op in OPS:
        print(f"{op:10}" + "".join(f"{out['sides'][lb]['ops_us_per_file'].get(op, 0):12.1f}"
                                   for lb in labels))
    print(f"{'total':10}" + "".join(f"{out['sides'][lb]['cpu_us_per_file']:12.1f}" for lb in labels))
    print(f"load average {' '.join(load0)} -> {' '.join(out['loadavg']['end'])}")


if __name__ == "__main__":
    main()
