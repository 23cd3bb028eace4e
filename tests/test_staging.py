"""Staging clones of imports (``NAME@importing-xxxxxxxx``) are recoverable.

* SIGKILL mid-import (directory import onto --parent, layer import): ``check``
  reports the left-over staging clone (a finding, not corruption); the next
  writer (``rm``) or ``gc`` removes it because its owner process is gone; the
  parent can then be removed and ``check`` is clean.
* SIGTERM and SIGHUP mid-import: the process itself rolls back as on Ctrl-C
  (no staging clone left, the space it used back in the pool).
* A failed import gives back the space its committed chunks used (no ``gc``
  needed).

The importing process commits a chunk every few entries (the modules'
COMMIT_ITEMS, api/staging.py, set low by the runner below) so that a signal reliably lands
after committed chunks, mid-way through the import.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time

import pytest

import blockstore
from _engine import Engine

RUNNER = """
import sys
import blockstore.api.staging as T
T.COMMIT_ITEMS = int(sys.argv[1])
from blockstore.cli import main
sys.argv = ["blockstore"] + sys.argv[2:]
main()
"""
FILES = 3000
FILE_BYTES = 6000          # above the inline limit: every file takes pool blocks


def _cli(store, *args, check=True):
    r = subprocess.run([sys.executable, "-c", RUNNER, "1000000", "--store", str(store),
                        *map(str, args)], capture_output=True, text=True, timeout=300)
    if check:
        assert r.returncode == 0, f"blockstore {' '.join(map(str, args))}: {r.stderr}"
    return r


def _make_source(root, files: int = FILES) -> str:
    src = os.path.join(root, "big")
    for d in range(files // 100):
        os.makedirs(os.path.join(src, f"d{d:03d}"))
    for i in range(files):
        with open(os.path.join(src, f"d{i // 100:03d}", f"f{i:05d}"), "wb") as f:
            f.write(i.to_bytes(4, "big") * (FILE_BYTES // 4))
    return src


def _state(store) -> tuple[list[str], int]:
    """(names of staging clones, used pool bytes), read without writing."""
    e = Engine.open(str(store), create=False)
    try:
        names = [r.name for r in e.list() if "@importing-" in r.name]
        st = e.stats()
        return names, st.used_blocks * st.block_size
    finally:
        e.close()


def _start_import(tmp_path, store, kind: str):
    """Start importing the big source onto 'base'; return (process, baseline used bytes)
    once the import is mid-way (staging clone present, chunks committed)."""
    base = tmp_path / "base"
    base.mkdir()
    (base / "hello").write_text("base\n")
    _cli(store, "import", base, "base")
    src = _make_source(str(tmp_path))
    if kind == "layer":
        tar = str(tmp_path / "layer.tar")
        with tarfile.open(tar, "w") as tf:
            tf.add(src, arcname=".")
        src = tar
    _, baseline = _state(store)
    p = subprocess.Popen([sys.executable, "-c", RUNNER, "5", "--store", str(store),
                          "import", src, "big", "--parent", "base"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        names, used = _state(store)
        if names and used > baseline + 200 * FILE_BYTES:
            return p, baseline
        assert p.poll() is None, f"the import ended before it could be interrupted: {p.communicate()}"
        time.sleep(0.02)
    p.kill()
    pytest.fail("the import did not get mid-way in 120 s")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind,next_writer", [("dir", "rm"), ("layer", "gc")])
def test_killed_import_is_reported_then_removed_by_the_next_writer(tmp_path, kind, next_writer):
    store = tmp_path / "store"
    p, _ = _start_import(tmp_path, store, kind)
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    left, _ = _state(store)
    assert len(left) == 1, left

    r = _cli(store, "check")        # a finding, not corruption: exit 0
    assert left[0] in r.stdout, f"check does not report the staging clone:\n{r.stdout}"
    assert left[0] in _state(store)[0], "check (a reader) must not remove anything"

    if next_writer == "gc":
        _cli(store, "gc")
        assert _state(store)[0] == []
        # the blocks of the clone, and growth of the data file by the killed
        # process's uncommitted chunk, are given back to the file system
        assert os.stat(store / "pool.data").st_blocks * 512 < (1 << 20)
    _cli(store, "rm", "base")        # no dependents left
    assert _state(store)[0] == []
    r = _cli(store, "check", "--scrub")
    assert left[0] not in r.stdout and r.stdout.startswith("ok"), r.stdout


@pytest.mark.timeout(300)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("kind", ["dir", "layer"])
def test_sigterm_and_sighup_roll_the_import_back(tmp_path, sig, kind):
    store = tmp_path / "store"
    p, baseline = _start_import(tmp_path, store, kind)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 128 + sig, (p.returncode, err)
    assert "interrupted" in err, err
    names, used = _state(store)
    assert names == [], f"the process left its staging clone: {names}"
    assert used == baseline, f"rollback left {used - baseline} bytes used"
    assert os.stat(store / "pool.data").st_blocks * 512 < (1 << 20)     # and gave it back
    r = _cli(store, "check")
    assert r.stdout.startswith("ok") and "importing" not in r.stdout, r.stdout
    _cli(store, "rm", "base")


def test_failed_import_gives_its_space_back(tmp_path, monkeypatch):
    import blockstore.api.staging as T
    monkeypatch.setattr(T, "COMMIT_ITEMS", 50)
    src = _make_source(str(tmp_path), files=4000)
    (tmp_path / "base").mkdir()
    with blockstore.Store.open(tmp_path / "store") as s:
        s.import_dir(tmp_path / "base", "base")
        baseline = s.df().used_bytes
        seen = []

        def progress(path, n):
            seen.append(path)
            if len(seen) == 3900:
                raise OSError(5, "source went away")
        with pytest.raises(OSError, match="source went away"):
            s.import_dir(src, "big", parent="base", progress=progress)
        assert [r.name for r in s.list() if "@importing-" in r.name] == []
        assert s.df().used_bytes == baseline
        assert s.check().ok


@pytest.mark.timeout(300)
def test_gc_leaves_a_running_import_alone(tmp_path):
    """The owner of a staging clone is alive: gc, check and another writer leave it."""
    store = tmp_path / "store"
    p, _ = _start_import(tmp_path, store, "dir")
    r = _cli(store, "check")
    assert r.stdout.startswith("ok") and "finding" not in r.stdout, r.stdout
    _cli(store, "gc")
    (tmp_path / "other").mkdir()
    _cli(store, "import", tmp_path / "other", "other", "--parent", "base")
    out, err = p.communicate(timeout=240)
    assert p.returncode == 0, err
    with blockstore.Store.open(store) as s:
        assert s.info("big").parent == "base"
        assert [r.name for r in s.list() if "@importing-" in r.name] == []
        with s.fs("big") as fs:
            assert fs.open("/d029/f02999", "rb").read() == (2999).to_bytes(4, "big") * 1500
        assert s.check().ok


def test_owner_identity_survives_pid_reuse():
    from blockstore.api import owner as O
    me = O.current()
    assert O.state(me) == "alive"
    assert O.state(dict(me, start=me["start"] + 1)) == "gone"       # same pid, another process
    assert O.state(dict(me, boot="another-boot")) == "gone"         # rebooted since
    assert O.state(dict(me, host=me["host"] + "-elsewhere")) == "unknown"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert O.state(dict(me, pid=child.pid, start=me["start"])) == "gone"
    assert O.state(None) == "unknown"


def test_staging_clone_of_an_older_blockstore_is_reported_and_removed_by_gc(store, tmp_path):
    """Clones made by an older blockstore have no owner record: only gc (or
    check --repair) removes them, the writers' sweep does not guess."""
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "x").write_bytes(b"x" * 10000)
    store.import_dir(tmp_path / "base", "base")
    store.clone("base", "big@importing-0123abcd", labels={"blockstore.importing": "1"})
    rep = store.check()
    assert rep.ok
    assert [(f.kind, f.tree) for f in rep.findings] == [("staging-left", "big@importing-0123abcd")]
    store.clone("base", "c")                                         # a writer: not removed
    assert store.exists("big@importing-0123abcd")
    assert store.gc()["staging_removed"] == ["big@importing-0123abcd"]
    store.remove("base", force=True)
    assert store.check().findings == []
