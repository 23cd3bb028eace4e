"""Full disk: the store on a small tmpfs (root only; skipped otherwise).

Writes that hit ENOSPC -- in the data file or in LMDB -- fail with NoSpace
(an OSError with errno ENOSPC), the store stays consistent, removing a tree
is possible even when the disk is full (the store keeps a reserve file,
released when LMDB runs out of space) and writing resumes once space is freed.
"""
from __future__ import annotations

import errno
import os

import pytest

from blockstore import Store
from blockstore.errors import NoSpace

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def small_fs(tmpfs):
    return tmpfs("16m")


def _fill(fs, prefix, size):
    n = 0
    with pytest.raises(NoSpace) as ei:
        while True:
            fs.write_bytes(f"/{prefix}{n}", os.urandom(size))
            n += 1
    assert isinstance(ei.value, OSError) and ei.value.errno == errno.ENOSPC
    return n


def test_full_disk_fails_cleanly_removal_works_and_writing_resumes(small_fs):
    with Store.open(small_fs / "s") as s:
        s.create("keep")
        with s.fs("keep") as fs:
            fs.write_bytes("/k", b"precious" * 1000)
        s.commit("keep", "keep-snap")
        s.create("c")
        with s.fs("c") as fs:
            big = _fill(fs, "big", 256 * 1024)      # the data file cannot grow
            small = _fill(fs, "small", 100)         # inline files: LMDB cannot grow
        assert big > 10 and small > 0
        assert s.check().ok
        with s.fs("keep-snap") as fs:
            assert fs.read_bytes("/k") == b"precious" * 1000
        s.remove("c")                               # possible although the disk is full
        s.gc()
        assert s.check().ok
        with s.fs("keep") as fs:                    # writing resumes
            for i in range(big // 2):
                fs.write_bytes(f"/again{i}", os.urandom(256 * 1024))
            assert fs.read_bytes("/k") == b"precious" * 1000
        assert s.check(scrub=True).ok


def test_trimmed_blocks_are_reserved_again_before_use(tmpfs):
    """gc gave the free blocks' space back; when another file then takes the disk,
    reusing those blocks fails with NoSpace before anything changes (their space
    is reserved again first), and works once there is room."""
    d = tmpfs("32m")
    with Store.open(d / "s") as s:
        s.create("c")
        with s.fs("c") as fs:
            for i in range(12):
                fs.write_bytes(f"/f{i}", os.urandom(1 << 20))
        s.remove("c")
        assert s.gc()["trimmed_blocks"] * s.block_size >= 12 << 20
        filler = d / "filler"
        with open(filler, "wb") as f, pytest.raises(OSError) as ei:
            while True:
                f.write(os.urandom(1 << 20))
                f.flush()
        assert ei.value.errno == errno.ENOSPC
        s.create("d")
        with s.fs("d") as fs, pytest.raises(NoSpace, match="reserve"):
            for i in range(8):
                fs.write_bytes(f"/g{i}", os.urandom(1 << 20))
        assert s.check().ok
        os.unlink(filler)
        with s.fs("d") as fs:
            for i in range(8):
                fs.write_bytes(f"/g{i}", b"%d" % i * (1 << 19))
            assert fs.read_bytes("/g7") == b"7" * (1 << 19)
        assert s.check(scrub=True).ok
