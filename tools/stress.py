#!/usr/bin/env python3
"""Stress the store: python tools/stress.py [--store DIR] --duration N --seed S [--json].

A randomized multi-process workload (writers on their own clones and on
shared volumes, readers on snapshots; commits, clones, removes, gc) that
verifies every read against a model and ends with check(scrub=True); see
blockstore/stress/__init__.py.  Exit status 0 when everything held, 1 on
any divergence, error or check problem (the report says how to reproduce).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from blockstore.stress import format_report, run  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", help="store directory (default: a temporary store)")
    ap.add_argument("--duration", type=float, default=20, help="seconds (default 20)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--writers", type=int, default=3)
    ap.add_argument("--readers", type=int, default=2)
    ap.add_argument("--volumes", type=int, default=2)
    ap.add_argument("--dedup", action="store_true", help="create the store with dedup on")
    ap.add_argument("--keep", action="store_true", help="keep the temporary store and logs")
    ap.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    a = ap.parse_args(argv)
    rep = run(a.store, a.duration, a.seed, a.writers, a.readers, a.volumes,
              dedup=True if a.dedup else None, keep=a.keep)
    if a.json:
        json.dump(rep, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    else:
        print(format_report(rep))
    return 0 if rep["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
