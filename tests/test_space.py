"""Space given back to the file system, and the words df and du use.

* ``gc`` punches holes in the pool file's free blocks: after rm + gc the data
  file's allocated size (st_blocks) drops, the trees that remain read back
  intact, ``check --scrub`` is clean, and the trimmed blocks are used again.
* ``df`` and ``du`` do not use one word for two quantities.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import blockstore

MiB = 1 << 20
CLI = "import sys; from blockstore.cli import main; sys.argv[0] = 'blockstore'; main()"


def _allocated(store) -> int:
    return os.stat(os.path.join(store.path, "pool.data")).st_blocks * 512


def _tree(root, name: str, files: int, size: int) -> dict:
    d = root / name
    d.mkdir()
    out = {}
    for i in range(files):
        data = os.urandom(size)
        (d / f"f{i}").write_bytes(data)
        out[f"/f{i}"] = data
    return out


def _same(store, tree: str, files: dict) -> None:
    with store.fs(tree) as fs:
        for path, data in files.items():
            with fs.open(path, "rb") as f:
                assert f.read() == data, f"{tree}:{path} changed"


def test_gc_gives_freed_blocks_back_to_the_file_system(store, tmp_path):
    keep = _tree(tmp_path, "keep", 4, 2 * MiB)
    big = _tree(tmp_path, "big", 16, 4 * MiB)
    store.import_dir(tmp_path / "keep", "keep")
    store.import_dir(tmp_path / "big", "big")
    store.clone("keep", "c")
    with store.fs("c") as fs, fs.open("/f1", "r+b") as f:
        f.write(b"x" * 5000)                   # copy-on-write of shared blocks
    keep_c = dict(keep, **{"/f1": b"x" * 5000 + keep["/f1"][5000:]})
    before = _allocated(store)
    store.remove("big")
    store.gc()
    after = _allocated(store)
    assert before - after >= 60 * MiB, (before, after)
    assert store.df().data_file_bytes == after
    _same(store, "keep", keep)
    _same(store, "c", keep_c)
    assert store.check(scrub=True).ok

    # trimmed blocks are allocated again (and reserved) by the next writes
    again = _tree(tmp_path, "again", 8, 4 * MiB)
    store.import_dir(tmp_path / "again", "again")
    assert _allocated(store) >= after + 30 * MiB
    _same(store, "again", again)
    _same(store, "keep", keep)
    rep = store.check(scrub=True)
    assert rep.ok, rep


def test_gc_does_not_trim_blocks_an_older_reader_can_reach(store, tmp_path):
    """A block freed while an older LMDB reader can still reach it stays pending:
    neither reused nor punched until that reader ends."""
    import time

    from blockstore import catalog
    from blockstore.btree.store import NodeStore
    from blockstore.fs.tree import FileTree

    big = _tree(tmp_path, "big", 4, 4 * MiB)
    store.import_dir(tmp_path / "big", "big")
    with store.env.read() as r:
        fst = FileTree(NodeStore.of(r), catalog.get(r, "big").root, time.time_ns)
        node = fst.inode(fst.lookup(1, b"f0")[0])
        store.remove("big")
        store.gc()
        assert store.df().pending_bytes >= 16 * MiB
        assert fst.read(node, 0, node.size) == big["/f0"]
    before = _allocated(store)
    store.gc()
    assert store.df().pending_bytes == 0
    assert before - _allocated(store) >= 15 * MiB


def test_df_and_du_do_not_share_a_word_for_different_things(tmp_path):
    """du's SHARED is per tree (also reached from another tree); df's pool count is
    of blocks with 2+ references (shared B-tree nodes count once).  A clone of a
    snapshot shares everything with it and has no block referenced twice."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a").write_bytes(os.urandom(256 * 1024))
    with blockstore.Store.open(tmp_path / "s") as s:
        s.import_dir(tmp_path / "src", "base")
        s.clone("base", "c")
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-c", CLI, "--store", str(tmp_path / "s"), *a],
        capture_output=True, text=True, check=True).stdout
    du = {d["name"]: d for d in json.loads(run("--json", "du"))}
    df = json.loads(run("--json", "df"))
    assert du["c"]["shared"] == du["c"]["referenced"] > 0
    df_text = run("df")
    assert "shared" not in " ".join(df).lower() and "shared" not in df_text.lower(), (
        f"df says 'shared' for something else than du's SHARED ({du['c']['shared']}):\n{df_text}")


def test_check_finds_a_trimmed_record_over_a_used_block_and_repair_fixes_it(store, tmp_path):
    from blockstore.pool.dbs import TRIMMED_BLOCKS, pack_u64
    keep = _tree(tmp_path, "keep", 2, 1 * MiB)
    store.import_dir(tmp_path / "keep", "keep")
    store.gc()
    with store.env.write() as w:                 # damage: record a used block as trimmed
        pool = store.env.pool
        used = next(b for b in range(pool.total_blocks(w.t)) if pool.refcount(w.t, b))
        w.t.put(pack_u64(used), pack_u64(1), db=pool.dbs.trimmed)
        pool.meta.add(w.t, TRIMMED_BLOCKS, 1)
    rep = store.check()
    assert not rep.ok and any("trimmed" in p.message for p in rep.problems), rep
    store.check(repair=True)
    assert store.check(scrub=True).ok
    _same(store, "keep", keep)
