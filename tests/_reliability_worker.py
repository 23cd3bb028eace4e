"""Subprocess worker for tests/test_reliability_crash.py.

    python tests/_reliability_worker.py failpoint-crash STORE SEED START JOURNAL POINT NTH MODE

Runs the seeded transactions of tests/_workers.py (step/run_txn) from START
on an Engine whose data file is a ``crashfs.CrashDataFile``, journaling each
transaction number after its commit.  At the NTH hit of failpoint POINT it
simulates a power cut: the unsynced data-file writes are dropped/torn per
MODE (crashfs.crash) and the process ends with ``os._exit(77)`` -- no LMDB
commit, no cleanup, exactly like a crash.  Prints ``ready`` once started.
"""
from __future__ import annotations

import os
import random
import sys

import _workers as W
from blockstore import failpoints
from blockstore.testing import crashfs


def mode_failpoint_crash(store, seed, start, journal, point, nth, mode) -> None:
    from _engine import Engine
    seed_i, i, nth_i = int(seed), int(start), int(nth)
    m = W.replay(seed_i, i)
    e = Engine.open(store, create=False, data_file=crashfs.CrashDataFile)
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    rng = random.Random(seed_i * 31 + i)
    seen = [0]

    def action(name):
        seen[0] += 1
        if seen[0] >= nth_i:
            crashfs.crash_all(mode, rng)
            os.write(fd, b"crash %s %d\n" % (name.encode(), i))
            os.fsync(fd)
            os._exit(77)
    failpoints.set(point, action)
    W._ready()
    while True:
        txn = W.step(m, seed_i, i)
        W.run_txn(e, txn)
        os.write(fd, b"%d\n" % i)
        os.fsync(fd)
        i += 1


MODES = {"failpoint-crash": mode_failpoint_crash}
WORKER_PY = os.path.abspath(__file__)

if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
