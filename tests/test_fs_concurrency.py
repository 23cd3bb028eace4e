"""Many reader processes and one writer on one store.

Readers are fresh interpreters (subprocess, never fork).  The writer (this
process) keeps making new snapshot generations through clones, removing old
ones and running gc, so freed blocks are reused while readers still look at
older snapshots.  A reader that has opened a snapshot's TreeView holds a pin
on its root: every byte it reads must be that snapshot's, even if the
snapshot is removed and its blocks are freed meanwhile.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

from blockstore import Store

import _fs_workers as W

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_fs_workers.py")


def _spawn(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, WORKER, *map(str, args)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _write_generation(s: Store, gen: int) -> None:
    """Clone the previous generation, rewrite every file, commit as genN."""
    clone = f"work{gen}"
    if gen == 0:
        s.create(clone)
    else:
        s.clone(f"gen{gen - 1}", clone)
    with s.fs(clone) as fs:
        for i in range(W.FILES):
            data = W.content(gen, i)
            if gen and i % 2:
                # Rewrite in place (copy-on-write of the shared blocks) ...
                with fs.open(f"/f{i}", "r+b") as fh:
                    fh.truncate(0)
                    fh.write(data)
            else:
                fs.write_bytes(f"/f{i}", data)     # ... or replace through truncation
    s.commit(clone, f"gen{gen}")
    s.remove(clone)


def test_reader_processes_see_exact_snapshots_while_one_writer_churns(tmp_store_dir):
    path = str(tmp_store_dir)
    with Store.open(path) as s:
        _write_generation(s, 0)
        seconds = 6.0
        readers = [_spawn("reader", path, seconds) for _ in range(4)]
        gen, deadline = 1, time.monotonic() + seconds
        while time.monotonic() < deadline:
            _write_generation(s, gen)
            if gen >= 3:
                s.remove(f"gen{gen - 3}", force=True)     # keep three generations
                s.gc()
            gen += 1
        outs = [r.communicate(timeout=120) for r in readers]
        for r, (out, err) in zip(readers, outs):
            assert r.returncode == 0, (out, err)
            assert out.startswith("ok "), (out, err)
            checked, snaps = map(int, out.split()[1:3])
            assert checked >= W.FILES and snaps >= 1
            print(f"reader: {checked} files in {snaps} snapshots")
        assert gen > 4, "the writer made too few generations to churn the pool"
        print(f"writer: {gen} generations")
        report = s.check()
        assert report.ok, report.problems


def test_open_snapshot_file_survives_remove_gc_and_heavy_writes_in_process(tmp_store_dir):
    with Store.open(tmp_store_dir) as s:
        s.create("c")
        data = os.urandom(3 * 1024 * 1024)
        with s.fs("c") as fs:
            fs.write_bytes("/big", data)
        s.commit("c", "snap")
        s.remove("c")
        snap = s.fs("snap")
        fh = snap.open("/big", "rb", buffering=0)
        first = fh.read(1024 * 1024)
        s.remove("snap")
        s.gc()
        assert not s.exists("snap")
        # Heavy writes that would reuse the freed blocks if the pin did not hold them.
        s.create("other")
        with s.fs("other") as o:
            for i in range(8):
                o.write_bytes(f"/w{i}", os.urandom(1024 * 1024))
        assert first + fh.read() == data
        fh.seek(12345)
        assert fh.read(1000) == data[12345:13345]
        fh.close()
        snap.close()                                   # drops the pin: now the space goes
        s.gc()
        report = s.check()
        assert report.ok, report.problems


def test_open_snapshot_file_in_another_process_survives_removal(tmp_store_dir):
    path = str(tmp_store_dir)
    with Store.open(path) as s:
        s.create("c")
        data = os.urandom(2 * 1024 * 1024 + 777)
        with s.fs("c") as fs:
            fs.write_bytes("/f", data)
        s.commit("c", "snap")
        s.remove("c")
        holder = _spawn("holder", path, "snap", "/f")
        try:
            assert holder.stdout.readline().strip() == "ready"
            s.remove("snap")
            s.gc()
            s.create("other")
            with s.fs("other") as o:
                for i in range(6):
                    o.write_bytes(f"/w{i}", os.urandom(1024 * 1024))
            out, err = holder.communicate("go\n", timeout=60)
        finally:
            if holder.poll() is None:
                holder.kill()
        assert holder.returncode == 0, err
        assert out.split() == ["ok", hashlib.sha256(data).hexdigest()]
        s.gc()
        report = s.check()
        assert report.ok, report.problems


def test_content_generator_is_deterministic_and_distinct():
    """The readers' oracle: same (gen, i) -> same bytes; different -> different."""
    assert W.content(3, 1) == W.content(3, 1)
    assert len({W.content(g, i) for g in range(5) for i in range(W.FILES)}) == 5 * W.FILES
