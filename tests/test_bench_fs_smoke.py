"""Smoke test of ``tools/bench.py fs``: runs the tiny sizes and checks the JSON's
shape (keys, goals, the store check).  Speed is never asserted."""
from __future__ import annotations

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = ["cow_write_bytes", "seq_write_ratio", "seq_read_ratio", "import_ratio",
        "store_size_ratio", "clone_ms", "commit_ms", "diff_ratio", "import_peak_rss_mib"]


def test_bench_fs_tiny_json(tmp_path):
    out = subprocess.run([sys.executable, os.path.join(REPO, "tools", "bench.py"), "fs",
                          "--tiny", "--json", "--dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1                                  # exactly one JSON object
    rep = json.loads(lines[0])
    assert rep["bench"] == "fs" and rep["quick"] is True and rep["mode"] == "tiny"
    for k in KEYS:
        assert isinstance(rep[k], (int, float)) and rep[k] >= 0, k
        assert k in rep["goals"] and rep["goals"][k]["pass"] in (True, False), k
    assert rep["cow_write_bytes"] > 0                       # the write did cost something
    assert rep["diff_changes"] > 0
    assert rep["check_ok"] is True
    assert os.listdir(tmp_path) == []                       # scratch removed
