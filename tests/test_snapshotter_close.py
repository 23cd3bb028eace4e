"""Stopping the snapshotter: its background threads (the reaper, the spares
thread) are done with the store before the store is closed.  A store closed
while the reaper was inside a write transaction left the reaper failing
("closed/deleted/dropped object") and the closing process hung in LMDB's
close (seen in a CI run: ``snapshotter serve`` did not exit within 60 s of
SIGTERM).  Run in a child process with a time limit, so a hang fails the
test instead of stalling the run."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("grpc")

CHILD = textwrap.dedent("""
    import sys, threading, time
    from blockstore import Store
    from blockstore.snapshotter.service import Snapshotter
    store = Store.open(sys.argv[1])
    snap = Snapshotter(store, sys.argv[2])
    inside, done = threading.Event(), []

    def slow_removal():                 # a write transaction that takes a while
        def work(w):
            inside.set()
            time.sleep(0.5)
            return store.list()
        done.append(store.env.transact(work))
    snap._reap_queue.put(slow_removal)
    snap._reap_queue.put(lambda: done.append("queued after close: must not run"))
    assert inside.wait(10)
    snap.close()                        # waits for the removal in progress
    assert done and done[0] == [], done
    assert len(done) == 1, done         # what was still queued was dropped
    store.close()
    print("closed")
""")


def test_close_waits_for_the_reapers_transaction_then_the_store_closes(tmp_path):
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    r = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "store"), str(root)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "closed" in r.stdout, r.stderr[-3000:]
