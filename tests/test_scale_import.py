"""Issue 20: a fresh directory import takes memory independent of its file count.

The bulk import walks breadth-first without holding an object per file still
to come (it re-reads each directory when its children's turn comes) and
commits its working clone at checkpoints, so the LMDB transaction does not
hold the whole tree either.  Peak RSS is measured in a child process
(``ru_maxrss``) for two file counts; the old importer grew about 1.8 KB per
file.  ``CHECKPOINT_BYTES`` is lowered in the child so that these small trees
take several checkpoints, as a big tree does with the default.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from blockstore import Store

CHILD = r"""
import os, resource, sys
from blockstore import Store
from blockstore.fs import build as bulkimport
bulkimport.CHECKPOINT_BYTES = int(sys.argv[3])
with Store.open(sys.argv[2]) as s:
    s.import_dir(sys.argv[1], "snap")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _tree(root, files: int, per_dir: int = 500) -> None:
    for i in range(files):
        d = root / f"d{i // per_dir:04d}"
        if i % per_dir == 0:
            d.mkdir(parents=True)
        (d / f"f{i:06d}").write_bytes(b"%d" % i if i % 3 else b"")
    os.link(root / "d0000" / "f000001", root / "d0001" / "hard")   # a link group across dirs


def _import_rss(tmp_path, files: int, checkpoint: int) -> int:
    src = tmp_path / f"src{files}"
    _tree(src, files)
    out = subprocess.run([sys.executable, "-c", CHILD, str(src), str(tmp_path / f"s{files}"),
                          str(checkpoint)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1]) * 1024


@pytest.mark.timeout(900)
def test_import_memory_does_not_grow_with_the_file_count(tmp_path):
    small = _import_rss(tmp_path, 5_000, 1 << 20)
    big = _import_rss(tmp_path, 60_000, 1 << 20)
    # old importer: +~100 MiB for the 55,000 more files
    assert big - small < 24 << 20, (small >> 20, big >> 20)
    with Store.open(tmp_path / "s60000") as s:
        assert s.check().ok
        with s.fs("snap") as fs:
            assert fs.read_bytes("/d0119/f059999") == b"59999"
            assert fs.stat("/d0001/hard").st_ino == fs.stat("/d0000/f000001").st_ino
            assert fs.stat("/d0001/hard").st_nlink == 2
            assert len(fs.listdir("/")) == 120
        assert [r.name for r in s.list()] == ["snap"]       # the working clone is gone


def test_checkpointed_import_equals_the_source(tmp_path):
    """Many checkpoints (one every few items): the snapshot is the source, the
    store checks clean, nothing is left of the working clone or its spines."""
    from blockstore.fs import build as bulkimport
    src = tmp_path / "src"
    _tree(src, 3000, per_dir=70)
    (src / "big").write_bytes(os.urandom(3 << 20))
    os.symlink("d0000/f000002", src / "sym")
    old = bulkimport.CHECKPOINT_BYTES
    bulkimport.CHECKPOINT_BYTES = 4096
    try:
        with Store.open(tmp_path / "s") as s:
            s.import_dir(src, "snap")
            rep = s.check()
            assert rep.ok and rep.findings == [], rep
            assert [r.name for r in s.list()] == ["snap"]
            with s.fs("snap") as fs:
                assert fs.read_bytes("/big") == (src / "big").read_bytes()
                assert fs.readlink("/sym") == "d0000/f000002"
                for i in (0, 1, 2, 1499, 2999):
                    p = f"/d{i // 70:04d}/f{i:06d}"
                    assert fs.read_bytes(p) == (b"%d" % i if i % 3 else b""), p
            u = s.usage("snap")
            assert u.files == 3000 + 2 and u.exclusive == u.referenced
    finally:
        bulkimport.CHECKPOINT_BYTES = old


BULK_RUNNER = r"""
import sys
from blockstore.fs import build as bulkimport
bulkimport.CHECKPOINT_BYTES = 1
bulkimport.BATCH_BYTES = 64 * 1024
from blockstore.cli import main
sys.argv = ["blockstore"] + sys.argv[1:]
main()
"""


@pytest.mark.timeout(300)
def test_killed_bulk_import_leaves_a_partial_clone_that_check_accepts_and_gc_removes(tmp_path):
    """SIGKILL after some checkpoints of a fresh import: the working clone holds a
    partial tree (committed); check reports it as a finding only, gc removes it
    and the pool is back to empty."""
    import signal
    import time
    from _engine import Engine
    src = tmp_path / "src"
    for i in range(4000):
        d = src / f"d{i // 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}").write_bytes(i.to_bytes(4, "big") * 1500)
    store = tmp_path / "store"
    with Store.open(store):
        pass
    p = subprocess.Popen([sys.executable, "-c", BULK_RUNNER, "--store", str(store), "import",
                          str(src), "big"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def staging_used():
        e = Engine.open(str(store), create=False)
        try:
            names = [r.name for r in e.list() if "@importing-" in r.name]
            return names, e.stats().used_blocks
        finally:
            e.close()
    deadline = time.monotonic() + 120
    while True:
        names, used = staging_used()
        if names and used > 500:
            break
        assert p.poll() is None, p.communicate()
        assert time.monotonic() < deadline, "the import did not get mid-way"
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    with Store.open(store) as s:
        rep = s.check()
        assert rep.ok, rep
        assert [f.tree for f in rep.findings] == names
        assert s.gc()["staging_removed"] == names
        assert s.list() == [] and s.df().used_bytes == 0
        assert s.check().ok
