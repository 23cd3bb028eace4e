#!/usr/bin/env python3
"""Daemon CPU per GiB of sequential 1 MiB overwrites: the passthrough against
clone mounts of one or more code trees, interleaved in one run (A/B of changes).

    tools/fuse_write_cpu.py [--rounds 5] [--mib 1024] [--dir DIR] LABEL=TREE [LABEL=TREE ...]

TREE is a source tree of blockstore (a checkout or ``git archive`` of a
commit, with the built ``blockstore/native/_blockkern*.so`` copied in); each
is mounted by a daemon that imports it (``PYTHONPATH``), so old and new code
run side by side.  This is the write part of ``bench.py fuse``
(``cpu_per_gib_ratio``: CPU of the daemon, all threads, user + system, from
/proc/PID/stat, per GiB written; the same file laid out first, then
overwritten) without the rest of that bench: about 10 s per round and side.
Each round goes through every side, the first side rotating.  Prints one
JSON object: per side the median CPU s/GiB, its rounds, GB/s and the ratio
to the passthrough, with the load average at the end.  Needs root (FUSE).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MiB = 1 << 20


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        x = f.read().rsplit(")", 1)[1].split()
    return (int(x[11]) + int(x[12])) / os.sysconf("SC_CLK_TCK")


def write(path: str, total: int, chunk: bytes) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    t0 = time.perf_counter()
    try:
        for _ in range(total // len(chunk)):
            os.write(fd, chunk)
    finally:
        os.close(fd)
    return total / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--dir", default=None)
    ap.add_argument("trees", nargs="+", metavar="LABEL=TREE")
    args = ap.parse_args()
    env0 = dict(os.environ, BLOCKSTORE_FUSE_SERVER="0")    # a daemon per tree, its own code
    scratch = tempfile.mkdtemp(prefix="fuse-write-cpu-", dir=args.dir)
    host, pt = f"{scratch}/host", f"{scratch}/pt"
    os.mkdir(host)
    os.mkdir(pt)
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "_passthrough_fuse.py"), host, pt],
                            env=env0)
    mounts = [pt]
    sides = {}
    try:
        while not os.path.ismount(pt):
            if proc.poll() is not None:
                raise SystemExit("the passthrough did not start")
            time.sleep(0.05)
        sides["passthrough"] = (pt, proc.pid)
        for spec in args.trees:
            label, tree = spec.split("=", 1)
            sp, mp = f"{scratch}/store-{label}", f"{scratch}/mnt-{label}"
            os.mkdir(mp)
            out = subprocess.run([sys.executable, "-c", (
                "import sys; from blockstore import Store; from blockstore.fuse import mount\n"
                "with Store.open(sys.argv[1]) as s: s.create('c')\n"
                "print(mount(sys.argv[1], 'c', sys.argv[2]))"), sp, mp],
                env=dict(env0, PYTHONPATH=os.path.abspath(tree)),
                capture_output=True, text=True, check=True).stdout.split()
            mounts.append(mp)
            sides[label] = (mp, int(out[-1]))
        chunk = os.urandom(MiB)
        total = args.mib * MiB
        for root, _ in sides.values():
            write(f"{root}/big", total, chunk)
        res = {k: {"cpu": [], "gbps": []} for k in sides}
        labels = list(sides)
        for i in range(args.rounds):
            for k in labels[i % len(labels):] + labels[:i % len(labels)]:
                root, pid = sides[k]
                c0 = cpu_s(pid)
                g = write(f"{root}/big", total, chunk)
                res[k]["cpu"].append((cpu_s(pid) - c0) * 1024 / args.mib)
                res[k]["gbps"].append(g / 1e9)
        out = {}
        base = statistics.median(res["passthrough"]["cpu"])
        for k, v in res.items():
            cpu = statistics.median(v["cpu"])
            out[k] = {"cpu_s_per_gib": round(cpu, 3), "cpu_rounds": [round(x, 3) for x in v["cpu"]],
                      "gbps": round(statistics.median(v["gbps"]), 3),
                      "ratio": round(cpu / base, 3) if base else None}
        with open("/proc/loadavg") as f:
            out["loadavg"] = f.read().split()[:3]
        print(json.dumps(out, indent=1))
    finally:
        for mp in reversed(mounts):
            subprocess.run(["fusermount3", "-u", "-z", mp], capture_output=True)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
