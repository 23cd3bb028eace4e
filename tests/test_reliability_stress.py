"""The stress tool (blockstore.stress / tools/stress.py) and the bugs it found.

``test_stress_short`` is the default-run version (~20 s of 3 writer and 2
reader processes); the ten-minute run is opt-in:
``python tools/stress.py --duration 600`` (see docs/RELIABILITY.md).
"""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys

import pytest

from blockstore import Store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_many_reads_without_cyclic_gc_do_not_exhaust_reader_slots(tmp_path):
    """Found by stress: every read view left its LMDB transaction in a reference
    cycle (txn.local -> NodeStore -> txn), so its reader slot was only freed by
    the cyclic GC; a busy reader process hit MDB_READERS_FULL (256 slots)."""
    with Store.open(tmp_path / "s") as s:
        s.create("c")
        with s.fs("c") as fs:
            fs.write_bytes("/f", b"x" * 9000)
        s.commit("c", "snap")
        was = gc.isenabled()
        gc.disable()
        try:
            with s.fs("snap") as fs:
                for _ in range(600):
                    assert fs.read_bytes("/f") == b"x" * 9000
        finally:
            if was:
                gc.enable()
        assert s.check().ok


def test_makedirs_through_a_volume_mount_point(tmp_path):
    """Found by stress: makedirs('/shared/w0') in a clone with a volume at /shared
    raised InvalidInput (mkdir of the mount point reached the volume as mkdir('/'))."""
    with Store.open(tmp_path / "s") as s:
        s.volume_create("vol")
        s.create("c0")
        s.commit("c0", "empty")
        s.clone("empty", "c", mounts=[{"type": "volume", "source": "vol", "target": "/shared"}])
        with s.fs("c") as fs:
            with pytest.raises(FileExistsError):
                fs.mkdir("/shared")
            fs.makedirs("/shared/w0/x", exist_ok=True)
            fs.write_bytes("/shared/w0/x/f", b"hi")
        with s.fs("vol") as v:
            assert v.read_bytes("/w0/x/f") == b"hi"
        assert s.check().ok


@pytest.mark.timeout(180)
def test_stress_short(tmp_path):
    """tools/stress.py --json: 20 s, 3 writers + 2 readers (spawned processes),
    no divergence, check(scrub) clean; the report has per-operation percentiles."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "stress.py"),
                           "--store", str(tmp_path / "store"), "--duration", "20",
                           "--seed", str(int.from_bytes(os.urandom(3), "big")), "--json"],
                          capture_output=True, timeout=170)
    rep = json.loads(proc.stdout)
    assert proc.returncode == 0 and rep["ok"], json.dumps(
        {k: rep[k] for k in ("seed", "failures", "check_problems", "snapshot_problems",
                             "process_problems")}, indent=1)[-6000:]
    lat = rep["latency"]
    for op in ("write", "read", "commit", "clone", "verify", "snap_read"):
        assert lat[op]["count"] > 0, (op, lat)
        assert lat[op]["p50_ms"] <= lat[op]["p90_ms"] <= lat[op]["p99_ms"] <= lat[op]["max_ms"]
    assert rep["snapshots_verified_at_end"] >= 2 and rep["check_ok"]
