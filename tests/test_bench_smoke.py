"""Smoke test of tools/bench.py: the engine bench runs end to end in its tiny
mode and reports every key.  Speed is never asserted here (the shared VM's
numbers vary 40x); only that each figure exists and is a positive number."""
from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
BENCH = REPO / "tools" / "bench.py"

NUMBERS = [
    "clone_ratio", "clone_ms", "depth_ratio", "delete_ratio", "diff_ratio",
    "sha256_native_gbps", "sha256_hashlib_gbps", "sha256_native_2threads_gbps",
    "pool_write_ratio", "pool_write_ratio_dedup", "diff_ratio_cpu",
]
ENVIRONMENT = ["implementation", "block_size", "dedup", "python", "date", "quick"]
TABLE_NUMBERS = ["block_size", "write_gbps", "write_dedup_gbps", "overwrite_pool_bytes",
                 "overwrite_ms"]


@pytest.mark.timeout(60)
def test_engine_bench_tiny_json(tmp_path):
    env = dict(os.environ, BLOCKSTORE_BENCH_TINY="1")
    proc = subprocess.run(
        [sys.executable, str(BENCH), "engine", "--tiny", "--json", "--dir", str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout)            # exactly one JSON object on stdout
    for key in NUMBERS:
        v = out.get(key)
        assert isinstance(v, (int, float)) and not isinstance(v, bool), (key, v)
        assert math.isfinite(v) and v > 0, (key, v)
    for key in ENVIRONMENT:
        assert key in out, key
    assert out["quick"] is True
    # the small delete frees the nodes its clone shadowed, inside the removal (issue 20)
    assert out["delete_small_nodes_freed"] > 0, out["delete_small_nodes_freed"]
    assert out["delete_big_nodes_freed"] > out["delete_small_nodes_freed"]
    base = out["diff_baseline"]          # says whether the diff baseline was disturbed
    assert len(base["scan_s_runs"]) >= 2 and base["scan_spread"] >= 1
    assert isinstance(base["disturbed"], bool) and "cpu_steal_pct" in base
    table = out["block_size_table"]
    assert [r["block_size"] for r in table] == [4096, 16384, 65536, 262144]
    for row in table:
        for key in TABLE_NUMBERS:
            assert isinstance(row[key], (int, float)) and row[key] > 0, (row, key)
    assert os.listdir(tmp_path) == []         # the scratch store was removed
