"""Damage-then-check: one injected fault per invariant (tools/damage.py), each
found by the check meant for it; ``check(repair=True)`` fixes what can be
derived (counts, leaks, free/owned states, dangling catalog entries) and says
what cannot (damaged nodes, filesystem items); scrub finds a flipped data bit.

Every fault is injected into a CLOSED store, which is then reopened.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from blockstore import Store
from _engine import Engine
from blockstore.errors import Corruption

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import damage  # noqa: E402

BS = 4096


def _build(path, dedup=True, checksum=None):
    """A snapshot 'snap' and its clone 'c': files with several extents, a hole,
    small inline files, directories, a hard link.  ``checksum``: the store's
    block checksum (None: the default, xxh3-128 unless dedup)."""
    if checksum is not None:        # Store.open has no checksum option: create through the engine
        Engine.open(str(path), dedup=dedup, checksum=checksum).close()
    with Store.open(path, dedup=dedup) as s:
        s.create("c")
        with s.fs("c") as fs:
            fs.makedirs("/a/b")
            data = os.urandom(2 * BS) + bytes(BS) + os.urandom(2 * BS)   # extents [0,2) [3,5)
            fs.write_bytes("/a/big", data)
            fs.write_bytes("/a/b/small", b"hello")
            fs.write_bytes("/a/b/mid", os.urandom(3 * BS + 17))
            fs.link("/a/b/small", "/a/hard")
        s.commit("c", "snap")
        with s.fs("c") as fs:
            fs.write_bytes("/a/b/mid", os.urandom(BS))
        assert s.check(scrub=True).ok
    return data


# fault -> (problem kind, message part, repairable)
CASES = {
    "node-checksum": ("node-damaged", "checksum", False),
    "node-refcount": ("node-refcount", "", True),
    "node-leak": ("node-leak", "", True),
    "block-refcount": ("block-refcount", "", True),
    "block-leak": ("block-leak", "", True),
    "block-double-owned": ("block-double-owned", "", True),
    "dedup-mismatch": ("dedup-mismatch", "", True),
    "catalog-dangling": ("node-missing", "", True),
    "fs-nlink": ("fs", "nlink", False),
    "fs-dirent-no-index": ("fs", "no matching index item", False),
    "fs-overlap": ("fs", "overlapping extents", False),
}


@pytest.mark.parametrize("fault", sorted(CASES))
def test_each_fault_is_found_by_its_check(tmp_path, fault):
    store = tmp_path / "s"
    _build(store)
    kind, part, repairable = CASES[fault]
    what = damage.TARGETED[fault](store, "snap", 7)
    with Store.open(store, create=False) as s:
        rep = s.check()
        assert not rep.ok, f"{fault} ({what}) went unnoticed"
        hits = [p for p in rep.problems if p.kind == kind and part in p.message]
        assert hits, f"{fault} ({what}): expected {kind!r} ~ {part!r}, got:\n{rep}"
        if fault.startswith(("fs-", "node-checksum", "catalog")):
            assert any(p.tree in ("snap", "c") for p in hits), f"the damaged tree is not named:\n{rep}"
        fixed = s.check(repair=True)
        if repairable:
            assert fixed.ok, f"{fault}: repair left\n{fixed}\nrepaired: {fixed.repaired}"
            assert fixed.repaired
            assert s.check(scrub=True).ok
            for name in [r.name for r in s.list()]:
                with s.fs(name) as fs:
                    list(fs.walk("/"))
        else:
            assert not fixed.ok and any(not p.repairable for p in fixed.problems), \
                f"{fault}: an unrepairable fault must stay reported as such:\n{fixed}"


@pytest.mark.parametrize("dedup,checksum", [(True, "sha256"), (False, "xxh3-128"), (False, "sha256")])
def test_scrub_finds_a_flipped_bit_in_a_data_block(tmp_path, dedup, checksum):
    store = tmp_path / "s"
    _build(store, dedup=dedup, checksum=checksum)
    what = damage.flip_data(store, seed=3)
    block = int(what.rsplit(" ", 1)[1])
    with Store.open(store, create=False) as s:
        assert s.trees.checksum == checksum
        rep = s.check(scrub=True)
        assert any(p.kind in ("block-checksum", "dedup-mismatch") for p in rep.problems), \
            f"scrub missed: {what}\n{rep}"
        if not dedup:
            assert [p.message for p in rep.problems if p.kind == "block-checksum"] == \
                [f"block {block} does not match its {checksum} checksum"]


@pytest.mark.parametrize("db", ["nodes", "noderc", "pool.free", "pool.shared"])
def test_random_bit_flips_in_checked_tables_are_found(tmp_path, db):
    store = tmp_path / "s"
    _build(store)
    with Store.open(store, create=False) as s:     # make sure the table is not empty
        s.clone("snap", "c3")                       # shared root: a stored count of 2
        with s.fs("c") as fs:
            fs.unlink("/a/big")                     # a freed run (pool.free / pending)
        s.clone("snap", "c2")
        with s.fs("c2") as fs:
            fs.write_bytes("/x", os.urandom(BS))    # shadowing shares leaves: counts > 1
        s.gc()
    for seed in range(3):
        what = damage.flip_value(store, db, seed)
        with Store.open(store, create=False) as s:
            try:
                rep = s.check()
                ok = rep.ok
            except Corruption:
                ok = False
            assert not ok, f"{what} went unnoticed"


def test_truncated_data_file_is_reported(tmp_path):
    store = tmp_path / "s"
    _build(store)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "damage.py"), str(store),
                          "truncate-data", "2"], capture_output=True, text=True, check=True)
    assert "cut 2 blocks" in out.stdout
    with pytest.raises(Corruption, match="truncated"):
        Store.open(store, create=False)
