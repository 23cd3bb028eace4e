#!/usr/bin/env python3
"""Benchmarks of blockstore: ``tools/bench.py SUBCOMMAND [--quick] [--json] [--dir DIR]``.

Every subcommand is a module next to this file listed in ``BENCHES``; it
defines ``HELP``, ``add_args(parser)`` (its own options, may be a no-op) and
``run(args) -> (Report, extra_text)``.  Adding a benchmark is one line here
plus its module.  Common options:

  --quick   smaller sizes and fewer repetitions (under a minute on 2 cores)
  --json    print exactly one JSON object on stdout (progress goes to stderr)
  --dir DIR put the scratch store under DIR (default: the temp dir if it is
            on the repository's disk, else the repository); removed at the end

Ratios are always measured against a baseline taken in the same run: on a
shared virtual machine disk and memory speed can change 2-40x between
minutes (docs/BENCHMARKS.md has the figures and the machine).
Exit status: 0 when the run completed (goals missed are reported, not
raised), 2 on usage errors, 1 when the benchmark itself failed.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
_REPO = os.path.dirname(HERE)
try:
    import blockstore  # noqa: F401
except ImportError:          # running from a checkout without an install
    sys.path.insert(1, _REPO)

import _benchutil as bu  # noqa: E402

# subcommand -> module in tools/ (imported only when chosen)
BENCHES: dict[str, str] = {
    "engine": "bench_engine",
    "fuse": "bench_fuse",
    "oci": "bench_oci",
    "fs": "bench_fs",
    "containerd": "bench_containerd",
    "remote": "bench_remote",
    "scale": "bench_scale",
}


def _help(module: str) -> str:
    # Read the module docstring's first line without importing it (imports are lazy).
    try:
        with open(os.path.join(HERE, module + ".py")) as f:
            src = f.read(2000)
        start = src.index('"""') + 3
        return src[start:src.index("\n", start)].strip()
    except (OSError, ValueError):
        return module


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="bench", required=True, metavar="SUBCOMMAND")
    for name, module in BENCHES.items():
        sp = sub.add_parser(name, help=_help(module), description=_help(module))
        sp.add_argument("--quick", action="store_true", help="smaller sizes, fewer repetitions")
        sp.add_argument("--json", action="store_true", help="one JSON object on stdout")
        sp.add_argument("--dir", metavar="DIR", default=None,
                        help="parent directory of the scratch store (same disk as the data you care about)")
        # smallest sizes, for the smoke test (also BLOCKSTORE_BENCH_TINY=1)
        sp.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
        sp.set_defaults(module=module)
        if name in argv:        # only the chosen module is imported
            mod_args = getattr(importlib.import_module(module), "add_args", None)
            if mod_args:
                mod_args(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    if os.environ.get("BLOCKSTORE_BENCH_TINY") == "1":
        args.tiny = True
    if args.tiny:
        args.quick = True
    mod = importlib.import_module(args.module)
    t0 = time.perf_counter()
    report, text = mod.run(args)
    wall = time.perf_counter() - t0
    report.extra["wall_s"] = round(wall, 2)
    bu.log(f"{args.bench}: done in {wall:.1f} s")
    bu.emit(report, args.json, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
