"""Write-behind in the FUSE adapter (blockstore/fuse/adapter.py, "Write-behind"),
driven without a kernel: the handlers are called directly in trio, so what is
held back and when it is stored is deterministic.  The mounted behaviour (age
bound, requested commits) is in test_fuse_commit.py."""
from __future__ import annotations

import errno
import os
from types import SimpleNamespace

import pyfuse3
import pytest
import trio

from blockstore import Store
from blockstore.errors import NoSpace
from blockstore.fuse.adapter import Adapter

CTX = SimpleNamespace(uid=0, gid=0, pid=os.getpid(), umask=0o022)


class _Nursery:
    """Collects what the adapter starts after a reply; the test runs it."""

    def __init__(self):
        self.started = []

    def start_soon(self, fn, *args):
        self.started.append((fn, args))

    async def run_all(self):
        started, self.started = self.started, []
        for fn, args in started:
            await fn(*args)


@pytest.fixture
def adapter(tmp_path):
    store = Store.open(tmp_path / "s")
    store.create("c")
    tfs = store.fs("c")
    ad = Adapter(store, tfs, no_open=False)     # file handles (no-open mode: below)
    ad.nursery = _Nursery()
    yield ad
    ad.batcher.stop()
    tfs.close()
    with store:
        assert store.check().ok


def _run(fn):
    return trio.run(fn)


def test_a_write_is_answered_then_stored_after_the_next_getxattr(adapter):
    ad = adapter

    async def go():
        fi, entry = await ad.create(pyfuse3.ROOT_INODE, b"f", 0o644, os.O_WRONLY, CTX)
        assert await ad.write(fi.fh, 0, b"a" * 8192) == 8192      # the batch is open: held
        assert ad._behind is not None
        with pytest.raises(pyfuse3.FUSEError) as ei:               # answered without it
            await ad.getxattr(entry.st_ino, b"security.capability", CTX)
        assert ei.value.errno == errno.ENODATA
        assert ad._behind is not None and ad.nursery.started       # stored after the reply
        await ad.nursery.run_all()
        assert ad._behind is None
        assert await ad.read(fi.fh, 0, 10) == b"a" * 10
        assert await ad.write(fi.fh, 8192, b"b" * 100) == 100
        st = await ad.getattr(entry.st_ino, CTX)                   # any other request stores it
        assert ad._behind is None and st.st_size == 8292
        await ad.flush(fi.fh)
        await ad.release(fi.fh)
    _run(go)


def test_a_held_write_that_fails_fails_the_next_flush_once(adapter, monkeypatch):
    ad = adapter
    srv = ad.servers[0]

    async def go():
        fi, entry = await ad.create(pyfuse3.ROOT_INODE, b"f", 0o644, os.O_WRONLY, CTX)
        other = await ad.open(entry.st_ino, os.O_RDONLY, CTX)     # a second open file
        assert await ad.write(fi.fh, 0, b"k" * 4096) == 4096
        await ad.fsync(fi.fh, False)                               # stored and committed
        assert await ad.write(fi.fh, 4096, b"k" * 4096) == 4096    # opens a batch: stored
        assert await ad.write(fi.fh, 8192, b"x" * 4096) == 4096    # held
        assert ad._behind is not None

        def full(*a, **kw):
            raise NoSpace("the pool is full (test)")
        monkeypatch.setattr(srv, "write", full)
        with pytest.raises(pyfuse3.FUSEError) as ei:               # close(2) gets ENOSPC
            await ad.flush(fi.fh)
        assert ei.value.errno == errno.ENOSPC
        assert ad.nursery.started            # the kernel's cache of the file is dropped
        await ad.flush(fi.fh)                                      # reported once
        with pytest.raises(pyfuse3.FUSEError) as ei:               # ...to each open file
            await ad.fsync(other.fh, False)
        assert ei.value.errno == errno.ENOSPC
        await ad.release(other.fh)
        monkeypatch.undo()
        st = await ad.getattr(entry.st_ino, CTX)
        assert st.st_size == 8192                                  # the failed write is not there
        assert await ad.read(fi.fh, 0, 8192) == b"k" * 8192
        await ad.fsync(fi.fh, False)
        await ad.release(fi.fh)
    _run(go)


def test_no_write_is_held_while_no_batch_is_open_or_when_off(adapter):
    ad = adapter

    async def go():
        fi, _ = await ad.create(pyfuse3.ROOT_INODE, b"f", 0o644, os.O_WRONLY, CTX)
        await ad.fsync(fi.fh, False)                               # commits: no batch open
        assert ad.batcher.clean
        await ad.write(fi.fh, 0, b"1" * 100)                       # opens the batch: stored
        assert ad._behind is None and not ad.batcher.clean
        ad.write_behind = False
        await ad.write(fi.fh, 100, b"2" * 100)
        assert ad._behind is None
        await ad.flush(fi.fh)
        await ad.release(fi.fh)
    _run(go)
