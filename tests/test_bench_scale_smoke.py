"""Smoke test of `tools/bench.py scale` (issue 20): the tiny run measures every
curve, reports every key as a positive number, draws the three plots and
removes its scratch directory.  Speed is never asserted here."""
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

TREE_KEYS = ["trees", "rounds", "clone_ms", "commit_ms", "rm_gc_ms", "rm_gc_freeing_ms", "clone_cpu_ms",
             "commit_cpu_ms", "rm_gc_cpu_ms", "clone_pages", "commit_pages", "ls_ms", "info_ms",
             "du_one_ms", "du_all_ms", "du_all_peak_mib"]
IMPORT_KEYS = ["files", "import_s", "cp_s", "tar_s", "import_rss_mib", "cp_rss_mib",
               "tar_rss_mib", "import_ratio"]


def _positive(row, keys):
    for k in keys:
        v = row[k]
        assert isinstance(v, (int, float)) and math.isfinite(v) and v > 0, (k, v)


@pytest.mark.timeout(600)
def test_scale_bench_tiny_json_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    scratch, plots = tmp_path / "scratch", tmp_path / "plots"
    scratch.mkdir()
    proc = subprocess.run(
        [sys.executable, str(BENCH), "scale", "--tiny", "--json", "--dir", str(scratch),
         "--plot", str(plots)],
        capture_output=True, text=True, cwd=REPO, timeout=580)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout)
    assert [r["trees"] for r in out["trees"]] == [11, 41]      # the clones and the base
    for r in out["trees"]:
        _positive(r, TREE_KEYS)
    assert [r["files"] for r in out["import"]] == [500, 2000]
    for r in out["import"]:
        _positive(r, IMPORT_KEYS)
    assert [r["depth"] for r in out["depth"]] == [1, 10]
    for key in ("rm_gc_ms_at_max", "clone_growth", "du_all_s_at_max", "import_rss_mib_at_max",
                "import_ratio_first", "depth_ratio"):
        assert key in out["goals"], key
    for op in ("clone", "commit", "clone_cpu", "commit_cpu"):
        lo, hi = out[f"{op}_growth_p10"], out[f"{op}_growth_p90"]
        assert 0 < lo <= hi, (op, lo, hi)
        assert out[f"{op}_growth_paired"] > 0, op
    for r in out["trees"]:
        assert len(r["samples_us"]["clone"]["wall"]) == r["rounds"]
    # a durable clone or commit writes LMDB pages in every store
    assert out["clone_pages_at_first"] >= 1 and out["commit_pages_at_max"] >= 1
    assert "load_start" in out and "cpu_steal_pct" in out
    for name in ("scale_trees.png", "scale_import.png", "scale_depth.png"):
        png = plots / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert os.listdir(scratch) == []
