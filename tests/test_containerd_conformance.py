"""containerd's own snapshotter conformance suite against `blockstore
snapshotter serve` (issue 19): snapshots/testsuite.SnapshotterSuite from
Debian's golang-github-containerd-containerd-dev, built offline in GOPATH
mode, talking to the server through containerd's proxy client
(tests/containerd/conformance_test.go).  Every case must pass; 1.6.20 skips
its own Rename case."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from _snapshotter import Server, check_store, go_build, needs_fuse_root, private_base

pytestmark = [
    needs_fuse_root,
    pytest.mark.skipif(shutil.which("go") is None, reason="needs go (make setup installs golang-go)"),
    pytest.mark.timeout(1200),
]


def test_snapshotter_suite(tmp_store_dir):
    base = private_base("bs-ctrd-suite-")
    server = Server(tmp_store_dir, base)
    try:
        binary = go_build("conformance_test.go", os.path.join(base, "gopath"),
                          "blockstoreconformance", test=True)
        server.start()
        env = dict(os.environ, BLOCKSTORE_SNAPSHOTTER_SOCK=server.sock)
        res = subprocess.run([binary, "-test.v", "-test.timeout", "900s"], env=env,
                             capture_output=True, text=True, timeout=1000, cwd=base)
        out = res.stdout + res.stderr
        cases = {name: verdict for verdict, name in
                 re.findall(r"--- (PASS|FAIL|SKIP): TestBlockstoreSnapshotter/(\S+)", out)}
        print(out[-4000:])
        assert res.returncode == 0, out[-20000:]
        assert {n for n, v in cases.items() if v != "PASS"} == {"Rename"}, cases
        assert cases["Rename"] == "SKIP"
        assert len(cases) >= 20, cases
        assert "128LayersMount" in cases and "ViewReadonly" in cases
        assert "Traceback" not in server.log()
    finally:
        server.stop()
        server.unmount_all()
        shutil.rmtree(base, ignore_errors=True)
    check_store(tmp_store_dir)
