"""Crash and power-loss simulation: named failpoints + crashfs (dropped/torn writes).

Builds on tests/_workers.py (the seeded transaction generator and the pure
model that tests/test_crash.py uses for SIGKILL crashes).  What is added here:

* ``test_crash_at_every_failpoint``: a subprocess dies (os._exit) at the n-th
  hit of each named failpoint of a commit, after crashfs dropped or tore the
  data writes not yet fdatasync'ed.  Before the LMDB commit the interrupted
  transaction must be entirely absent, after it entirely present; check
  (with scrub) passes and every tree -- snapshots included -- equals the model.
* ``test_random_power_cuts``: 100 in-process crashes at random failpoint
  hits (any stage, any transaction) with dropped/torn/kept unsynced writes,
  each followed by reopen + check(scrub) + comparison with the model.
* ``test_power_cut_simulation_catches_a_missing_fdatasync``: the same loop
  with the data fdatasync disabled must detect lost data -- proof that the
  simulation can fail.

Reproduce with BLOCKSTORE_CRASH_SEED=<seed> (printed on failure).
"""
from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

import _reliability_worker as RW
import _workers as W
from _engine import Engine
from blockstore.errors import Corruption
from blockstore import failpoints
from blockstore.testing import crashfs

PRE_COMMIT = {"commit.before_hooks", "commit.after_flush", "commit.after_datasync",
              "pool.after_pwrite"}
POST_COMMIT = {"commit.after_lmdb", "commit.before_after_hooks"}
assert PRE_COMMIT | POST_COMMIT == set(failpoints.CRASH_POINTS)


def _seed() -> int:
    return int(os.environ.get("BLOCKSTORE_CRASH_SEED", random.randrange(1, 2**31)))


def _journal(path) -> tuple[int, str | None]:
    """(last journaled txn number or -1, failpoint name of the crash line or None)."""
    last, where = -1, None
    try:
        lines = open(path, "rb").read().split(b"\n")[:-1]
    except FileNotFoundError:
        return last, where
    for ln in lines:
        if ln.isdigit():
            last = max(last, int(ln))
        elif ln.startswith(b"crash "):
            where = ln.split()[1].decode()
    return last, where


def _verify(store, model, nxt, expect, where) -> str:
    """Reopen, check, compare; returns 'before' or 'after' (which model matched)."""
    e = Engine.open(str(store), create=False)
    try:
        rep = e.check(scrub=True)
        assert rep.ok, f"check failed {where}:\n{rep}"
        have = W.read_store(e)
    finally:
        e.close()
    got = "before" if have == model else "after" if have == nxt else None
    assert got is not None, (f"store matches neither side of the interrupted transaction "
                             f"{where}: vs before: {W.describe_diff(have, model)}; "
                             f"vs after: {W.describe_diff(have, nxt)}")
    if expect and model != nxt:
        assert got == expect, f"interrupted transaction is {got} the crash, expected {expect} {where}"
    return got


@pytest.mark.timeout(120)
@pytest.mark.parametrize("point", failpoints.CRASH_POINTS)
def test_crash_at_every_failpoint(tmp_path, point):
    seed = _seed()
    rng = random.Random(seed)
    store, journal = tmp_path / "store", tmp_path / "journal"
    Engine.open(str(store), block_size=W.BS, dedup=True).close()
    done, model = 0, W.Model()
    outcomes = []
    for cycle in range(3):
        nth = rng.randint(1, 12)
        mode = ("drop", "tear", "mixed")[cycle % 3]
        where = f"(point {point}, cycle {cycle}, nth {nth}, seed {seed})"
        args = [RW.WORKER_PY, "failpoint-crash", store, seed, done, journal, point, nth, mode]
        proc = subprocess.run([sys.executable, *map(str, args)],
                              capture_output=True, timeout=90)
        assert proc.returncode == 77, f"worker did not crash {where}: rc {proc.returncode}\n" \
                                      f"{proc.stderr.decode()[-3000:]}"
        last, hit = _journal(journal)
        assert hit == point
        while done <= last:
            W.step(model, seed, done)
            done += 1
        nxt = model.copy()
        W.step(nxt, seed, done)
        expect = "before" if point in PRE_COMMIT else "after"
        got = _verify(store, model, nxt, expect, where)
        if got == "after":
            model, done = nxt, done + 1
            # the crashed txn is committed: tell the next worker by journaling it
            with open(journal, "a") as f:
                f.write(f"{done - 1}\n")
        outcomes.append(got)
    assert done >= 1


def _crash_loop(tmp_path, cycles: int, seed: int, no_datasync: bool = False):
    """In-process crashes: SimulatedCrash raised at the k-th failpoint hit aborts
    the LMDB txn on its way out; crashfs then drops/tears the unsynced writes and
    the Engine is closed and reopened (a fresh Env, nothing cached)."""
    rng = random.Random(seed)
    store = str(tmp_path / "store")
    if no_datasync:
        from blockstore.pool import Pool
        real_sync = Pool.sync
        Pool.sync = lambda self: None
    try:
        Engine.open(store, block_size=W.BS, dedup=True, data_file=crashfs.CrashDataFile).close()
        done, model = 0, W.Model()
        stats = {"before": 0, "after": 0, "points": {}, "torn": 0, "dropped": 0}
        for cycle in range(cycles):
            k = rng.randint(1, 80)
            hits = [0, None]

            def action(name):
                hits[0] += 1
                if hits[0] == k:
                    hits[1] = name
                    raise crashfs.SimulatedCrash(name)
            e = Engine.open(store, create=False, data_file=crashfs.CrashDataFile)
            failpoints.set_counter(action)
            try:
                while True:
                    nxt = model.copy()
                    txn = W.step(nxt, seed, done)
                    W.run_txn(e, txn)
                    model, done = nxt, done + 1
            except crashfs.SimulatedCrash:
                pass
            finally:
                failpoints.clear()
            mode = rng.choice(("drop", "tear", "mixed"))
            for s in crashfs.crash_all(mode, rng):
                stats["torn"] += s["torn"]
                stats["dropped"] += s["dropped"]
            e.close()
            name = hits[1]
            stats["points"][name] = stats["points"].get(name, 0) + 1
            nxt = model.copy()
            W.step(nxt, seed, done)
            where = f"(cycle {cycle}, crash at {name}, hit {k}, mode {mode}, txn {done}, " \
                    f"seed {seed}; rerun with BLOCKSTORE_CRASH_SEED={seed})"
            got = _verify(store, model, nxt, "before" if name in PRE_COMMIT else "after", where)
            stats[got] += 1
            if got == "after":
                model, done = nxt, done + 1
        return done, stats
    finally:
        failpoints.clear()
        if no_datasync:
            Pool.sync = real_sync


@pytest.mark.timeout(150)
def test_random_power_cuts(tmp_path):
    seed = _seed()
    done, stats = _crash_loop(tmp_path, 100, seed)
    print(f"power cuts: 100 crashes, {done} txns, {stats}, seed {seed}")
    assert done >= 100
    assert stats["torn"] and stats["dropped"], stats
    assert set(stats["points"]) >= {"commit.after_flush", "commit.after_lmdb", "pool.after_pwrite"}


def test_power_cut_simulation_catches_a_missing_fdatasync(tmp_path):
    """Without the data fdatasync before the LMDB commit, dropped writes lose
    committed data; the same loop must notice (check, scrub or model)."""
    caught = None
    for attempt in range(4):
        try:
            _crash_loop(tmp_path / str(attempt), 40, 1000 + attempt, no_datasync=True)
        except (AssertionError, Corruption) as exc:    # model/check mismatch or truncated pool
            caught = exc
            break
    assert caught is not None, "power cuts with fdatasync disabled went unnoticed"
