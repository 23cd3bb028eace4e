"""The data file's background writer (DataFile.pwrite_later, csrc/bkwriter.c):
nothing but timing may tell a queued write from an immediate one."""
from __future__ import annotations

import gc
import hashlib
import os
import time

import pytest
import xxhash

from blockstore.native import NATIVE
from blockstore.pool import datafile as datafile_mod
from blockstore.pool.datafile import LATER_MAX_BYTES, DataFile

BS = 4096

pytestmark = pytest.mark.skipif(NATIVE is None, reason="needs the native extension")


def _df(tmp_path, blocks=4096):
    df = DataFile(str(tmp_path / "data"), BS, create=True)
    df.grow(blocks)
    return df


def _data(n_blocks, seed):
    return bytes((seed + i) % 251 for i in range(256)) * (n_blocks * BS // 256)


def _idle_writer(df):
    """A writer thread that has nothing to do and waits (not just started)."""
    df.pwrite_later(4000, _data(1, 0))
    df.fdatasync()
    time.sleep(0.02)


def test_a_read_waits_for_the_queued_write_it_overlaps(tmp_path):
    df = _df(tmp_path)
    assert df.writes_later
    _idle_writer(df)
    new = _data(256, 1)                        # 1 MiB: below the wake-up group size,
    df.pwrite_later(10, new)                   # so the idle writer is not woken for it
    assert df.pread(10, 256) == new            # the read waited for it
    buf = bytearray(BS)
    df.preadinto(20 * BS, buf)
    assert bytes(buf) == new[10 * BS:11 * BS]
    df.close()


def test_an_immediate_write_lands_after_the_queued_one_of_its_range(tmp_path):
    df = _df(tmp_path)
    _idle_writer(df)
    df.pwrite_later(0, _data(64, 2))
    df.pwrite(0, _data(1, 3))                 # same first block, written now
    assert df.pread(0, 1) == _data(1, 3)
    assert df.pread(1, 63) == _data(64, 2)[BS:]
    df.close()


def test_close_finishes_the_queue(tmp_path):
    df = _df(tmp_path)
    datas = [_data(256, i) for i in range(6)]
    for i, d in enumerate(datas):
        df.pwrite_later(i * 256, d)
    df.close()
    with open(tmp_path / "data", "rb") as f:
        got = f.read(6 * 256 * BS)
    assert got == b"".join(datas)


def test_a_failed_queued_write_is_raised_by_fdatasync_once(tmp_path):
    df = _df(tmp_path)
    ro = os.open(tmp_path / "data", os.O_RDONLY)
    saved = os.dup(df.fd)
    os.dup2(ro, df.fd)                         # the writer's pwrite now gets EBADF
    try:
        df.pwrite_later(0, _data(8, 4))
        with pytest.raises(OSError) as info:
            df.fdatasync()
        assert info.value.errno == 9           # EBADF, from the writer thread
    finally:
        os.dup2(saved, df.fd)
        os.close(saved)
        os.close(ro)
    df.fdatasync()                             # taken: the next sync is clean
    df.close()


def test_digests_computed_by_the_writer(tmp_path):
    df = _df(tmp_path)
    d = _data(300, 5)
    for algo, fn in (("xxh3-128", lambda b: xxhash.xxh3_128_digest(b)),
                     ("sha256", lambda b: hashlib.sha256(b).digest())):
        q = df.pwrite_later(0, d, digest=(algo, BS))
        assert q.result() == b"".join(fn(d[i:i + BS]) for i in range(0, len(d), BS))
    df.close()


def test_queued_bytes_are_bounded(tmp_path):
    df = _df(tmp_path, blocks=(3 * LATER_MAX_BYTES) // BS)
    piece = 1 << 20
    for i in range(3 * LATER_MAX_BYTES // piece):
        df.pwrite_later(i * (piece // BS), os.urandom(piece))
        assert df._later_bytes <= LATER_MAX_BYTES + piece
    df.close()


def test_a_data_file_dropped_with_writes_queued_keeps_their_buffers(tmp_path):
    # No close(): the writer still owns the buffers until it has written them
    # (a use-after-free here crashed the process).
    for round_ in range(3):
        os.makedirs(tmp_path / str(round_))
        df = DataFile(str(tmp_path / str(round_) / "data"), BS, create=True)
        df.grow(2048)
        for i in range(8):
            df.pwrite_later(i * 256, os.urandom(256 * BS))
        del df
        gc.collect()
    with open(tmp_path / "2" / "data", "rb") as f:
        assert len(f.read()) == 2048 * BS


def test_without_the_native_writer_pwrite_later_writes_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(datafile_mod, "BackgroundWriter", None)
    df = _df(tmp_path)
    assert not df.writes_later
    df.pwrite_later(0, _data(4, 6))
    assert not df._later
    assert df.pread(0, 4) == _data(4, 6)
    with pytest.raises(ValueError):
        df.pwrite_later(0, _data(4, 6), digest=("xxh3-128", BS))
    df.close()

