"""Smoke test of ``tools/bench.py fuse --tiny --json``: runs end to end and
reports every figure as a positive number (speed is never asserted)."""
from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from _fuse_helpers import needs_fuse, needs_root

REPO = pathlib.Path(__file__).resolve().parent.parent


@needs_fuse
@needs_root
@pytest.mark.timeout(180)
def test_fuse_bench_tiny_json(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "bench.py"), "fuse", "--tiny",
                           "--json", "--dir", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=170)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout)
    keys = ["seq_write_ratio", "seq_read_ratio", "small_files_ratio", "clone_write_ms",
            "clone_write_bytes", "passthrough_write_gbps", "blockstore_read_gbps",
            "seq_write_fsync_ratio", "store_write_ms_per_mib", "store_commit_ms_per_mib"]
    if "overlay_error" not in out:
        keys += ["overlay_write_ms", "overlay_write_bytes"]
        assert out["overlay_write_bytes"] > out["clone_write_bytes"]
    for k in keys:
        assert isinstance(out[k], (int, float)) and math.isfinite(out[k]) and out[k] > 0, k
    for k in ("blockstore_write_cpu_s_per_gib", "passthrough_write_cpu_s_per_gib"):
        # 16 MiB may take less than one clock tick of the passthrough's CPU: >= 0
        assert isinstance(out[k], (int, float)) and math.isfinite(out[k]) and out[k] >= 0, k
    tree = {"walk_warm_ratio", "tar_warm_ratio", "tar_cold_ratio", "chroot_python_ratio",
            "small_files_write_ratio", "mount_ms", "umount_ms"}
    goals = {"seq_write_ratio", "seq_read_ratio", "small_files_ratio"}
    if out["passthrough_write_cpu_s_per_gib"] > 0:
        goals.add("cpu_per_gib_ratio")
    if "tree_overlay_error" not in out:
        goals |= tree
        for k in tree:
            assert isinstance(out[k], (int, float)) and math.isfinite(out[k]) and out[k] > 0, k
        refs = []
        if len(os.sched_getaffinity(0)) > 1:       # the one-CPU cold tar (no goal)
            refs.append("tar_cold_one_cpu_ratio")
        if shutil.which("fuse-overlayfs") and os.geteuid() == 0:   # make setup installs it
            assert "fuse_overlayfs_error" not in out, out["fuse_overlayfs_error"]
            refs += ["tar_cold_fuse_overlayfs_ratio", "small_files_write_fuse_overlayfs_ratio"]
            assert set(out["small_files_write_ratio_rounds"]) == {
                "blockstore", "overlay", "fuse-overlayfs"}
        for k in refs:
            assert isinstance(out[k], (int, float)) and math.isfinite(out[k]) and out[k] > 0, k
    assert set(out["goals"]) == goals
    # the guest's idle policy the run had (None without cpuidle-haltpoll)
    hp = "/sys/module/haltpoll/parameters/guest_halt_poll_ns"
    assert out["halt_poll_ns"] == (int(open(hp).read()) if os.path.exists(hp) else None)
    wh = "/sys/module/fuse/parameters/wake_here"
    assert out["fuse_wake_here"] == (open(wh).read().strip() if os.path.exists(wh) else None)
    assert os.listdir(tmp_path) == []
