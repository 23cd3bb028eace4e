"""Vectored writes (FileTree.write / TreeView.write_at / Pool.write with a list
of pieces): the FUSE adapter stores a run of held writes in one call.  The
result must be exactly that of writing the pieces one after the other, every
new block checksummed (scrub), whichever path the pool takes."""
from __future__ import annotations

import os

import pytest

import blockstore

MiB = 1 << 20


def _pieces(n, size=MiB, seed=0):
    return [bytes([(seed + i) % 251]) * 7 + os.urandom(size - 7) for i in range(n)]


def _file(store, name="c", size=0):
    store.create(name)
    tfs = store.fs(name)
    with tfs.open("/f", "wb") as fh:
        fh.write(os.urandom(size) if size else b"")
    return tfs, tfs.stat("/f").st_ino


def test_pieces_land_one_after_the_other_and_are_checksummed(store):
    tfs, ino = _file(store, size=3 * MiB)
    pieces = _pieces(6)
    with store.batch():
        assert tfs.write_at(ino, MiB, pieces) == 6 * MiB
    with tfs.open("/f", "rb") as fh:
        data = fh.read()
    assert len(data) == 7 * MiB
    assert data[MiB:] == b"".join(pieces)
    report = store.check(scrub=True)            # every block's checksum matches its bytes
    assert report.ok, report


def test_the_same_extents_as_one_contiguous_write(store):
    tfs, ino = _file(store, "a", size=2 * MiB)
    tfs2, ino2 = _file(store, "b", size=2 * MiB)
    pieces = _pieces(4, seed=3)
    with store.batch():
        tfs.write_at(ino, 0, pieces)
    with store.batch():
        tfs2.write_at(ino2, 0, b"".join(pieces))
    with tfs.open("/f", "rb") as a, tfs2.open("/f", "rb") as b:
        assert a.read() == b.read()
    assert tfs.stat("/f").st_blocks == tfs2.stat("/f").st_blocks


@pytest.mark.parametrize("case", ["unaligned_offset", "partial_piece", "zero_piece", "small_file"])
def test_pieces_that_cannot_go_as_they_are_are_joined(store, case):
    size = 100 if case == "small_file" else 3 * MiB
    tfs, ino = _file(store, size=size)
    pieces = _pieces(3)
    off = MiB
    if case == "unaligned_offset":
        off = MiB + 100
    elif case == "partial_piece":
        pieces[1] = pieces[1][:5000]
    elif case == "zero_piece":
        pieces[1] = bytes(MiB)                  # becomes a hole, as in a single write
    elif case == "small_file":
        off = 0
    with tfs.open("/f", "rb") as fh:
        before = bytearray(fh.read())
    with store.batch():
        assert tfs.write_at(ino, off, pieces) == sum(len(p) for p in pieces)
    joined = b"".join(pieces)
    before[off:off + len(joined)] = joined
    if len(before) < off:
        before.extend(bytes(off - len(before)))
    with tfs.open("/f", "rb") as fh:
        assert fh.read() == bytes(before)
    assert store.check(scrub=True).ok


def test_with_dedup_pieces_are_deduplicated_like_one_write(tmp_path):
    with blockstore.Store.open(tmp_path / "s", dedup=True) as s:
        tfs, ino = _file(s, size=MiB)
        p = _pieces(1)[0]
        with s.batch():
            tfs.write_at(ino, 0, [p, p, p])     # the same MiB three times
        with tfs.open("/f", "rb") as fh:
            assert fh.read() == p * 3
        assert s.check(scrub=True).ok
