"""Crash safety by SIGKILL.

A writer subprocess (tests/_workers.py crash-writer) runs a deterministic,
seeded sequence of transactions on one store -- puts/deletes on several
trees, multi-block blobs with zero and duplicated blocks, clone/snapshot/
remove, gc (small budget, so several gc transactions per call) and batched
groups -- and journals each transaction number (fsync) AFTER its commit
returned.  The parent SIGKILLs it after a random delay (10 us .. 250 ms after
it is ready), reopens the store, requires ``check(scrub=True).ok`` and
compares every tree, key and blob byte for byte with a pure-dict model
(tests/_workers.py Model/step) replayed to k+1 or k+2 transactions, where k is
the last journaled one (the last commit may have no journal line yet).
The next writer resumes from the recovered state.

Set BLOCKSTORE_CRASH_SEED / BLOCKSTORE_CRASH_CYCLES to reproduce or to soak.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

import _workers as W
from _engine import Engine

CYCLES = int(os.environ.get("BLOCKSTORE_CRASH_CYCLES", "60"))


def _last_journaled(path) -> int:
    """The last fully written transaction number in the journal, or -1."""
    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except FileNotFoundError:
        return -1
    last = -1
    for ln in lines[:-1]:                   # a torn last line has no newline
        if ln.strip().isdigit():
            last = max(last, int(ln))
    return last


def _kill_delay(rng: random.Random) -> float:
    r = rng.random()
    if r < 0.15:
        return rng.uniform(0.05, 0.25)          # let it get further now and then
    return 10 ** rng.uniform(-5, -1.3)          # 10 us .. 50 ms, log-uniform


def _sleep(delay: float) -> None:
    if delay < 0.002:                          # sleep() is too coarse down there
        end = time.perf_counter() + delay
        while time.perf_counter() < end:
            pass
    else:
        time.sleep(delay)


def _spawn(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, W.WORKERS_PY, *map(str, args)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


@pytest.mark.timeout(240)
def test_sigkill_anywhere_all_or_nothing(tmp_path):
    seed = int(os.environ.get("BLOCKSTORE_CRASH_SEED", random.randrange(1, 2**31)))
    store, journal = tmp_path / "store", tmp_path / "journal"
    Engine.open(str(store), block_size=W.BS, dedup=True).close()
    rng = random.Random(seed)

    done = 0                        # transactions known committed
    model = W.Model()               # == replay(seed, done)
    unjournaled = 0                 # kills that landed between a commit and its journal line
    where = f"(seed {seed}; rerun with BLOCKSTORE_CRASH_SEED={seed})"

    for cycle in range(CYCLES):
        proc = _spawn("crash-writer", store, seed, done, journal)
        line = proc.stdout.readline()
        if line != b"ready\n":
            proc.kill()
            proc.wait()
            pytest.fail(f"cycle {cycle}: writer did not start {where}: "
                        f"{line!r} {proc.stderr.read().decode()[-3000:]}")
        _sleep(_kill_delay(rng))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        err = proc.stderr.read().decode()
        proc.stdout.close()
        proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL, \
            f"cycle {cycle}: writer died on its own (rc {proc.returncode}) {where}:\n{err[-3000:]}"

        # Candidates: base or base + 1 transactions committed.
        base = max(_last_journaled(journal) + 1, done)
        while done < base:
            W.step(model, seed, done)
            done += 1
        nxt = model.copy()
        W.step(nxt, seed, done)

        e = Engine.open(str(store), create=False)
        try:
            rep = e.check(scrub=True)
            assert rep.ok, f"cycle {cycle}, after txn {done - 1} {where}: check failed:\n{rep}"
            have = W.read_store(e)
        finally:
            e.close()

        if have == nxt:
            model, done = nxt, done + 1
            unjournaled += _last_journaled(journal) + 1 < done
        elif have != model:
            pytest.fail(f"cycle {cycle} {where}: store matches neither the model after "
                        f"{done} transactions ({W.describe_diff(have, model)}) nor after "
                        f"{done + 1} ({W.describe_diff(have, nxt)})")

    print(f"crash test: {CYCLES} kills, {done} transactions, "
          f"{unjournaled} commits recovered without their journal line, seed {seed}")
    assert done >= CYCLES // 4, f"the writer hardly progressed ({done} transactions) {where}"


@pytest.mark.parametrize("point", ["before-format", "before-datafile"])
def test_sigkill_during_store_creation(tmp_path, point):
    """A crash while a store is being created must not leave a directory that
    can neither be opened nor re-created: opening it with create=True again
    finishes the creation."""
    store = tmp_path / "store"
    proc = _spawn("kill-at", store, point)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    e = Engine.open(str(store), block_size=W.BS)
    try:
        e.create("v")
        e.put("v", b"k", b"v")
        e.put_blob("v", b"b", b"x" * (3 * W.BS))
        assert e.get("v", b"k") == b"v"
        assert e.get_blob("v", b"b") == b"x" * (3 * W.BS)
        assert e.check(scrub=True).ok
    finally:
        e.close()
