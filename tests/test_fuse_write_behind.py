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
from blockstore.fuse.adapter import HOLD_BYTES, Adapter

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


def test_a_write_is_answered_then_stored_before_the_next_other_request(adapter):
    ad = adapter

    async def go():
        fi, entry = await ad.create(pyfuse3.ROOT_INODE, b"f", 0o644, os.O_WRONLY, CTX)
        assert await ad.write(fi.fh, 0, b"a" * 8192) == 8192      # the batch is open: held
        assert ad._behind is not None
        with pytest.raises(pyfuse3.FUSEError) as ei:               # answered without it
            await ad.getxattr(entry.st_ino, b"security.capability", CTX)
        assert ei.value.errno == errno.ENODATA
        assert ad._behind is not None and not ad.nursery.started   # less than HOLD_BYTES: kept
        assert await ad.read(fi.fh, 0, 10) == b"a" * 10            # a read stores it first
        assert ad._behind is None
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


def _counting(monkeypatch, srv, ad):
    """Count the store calls of the tree server's write (the real one runs); the
    batch's age bound is lifted so that a slow test run commits only when told."""
    ad.batcher.interval = 3600.0
    calls = []
    real = srv.write

    def write(ino, handle, off, data):
        calls.append((off, sum(len(p) for p in data) if isinstance(data, list) else len(data)))
        return real(ino, handle, off, data)
    monkeypatch.setattr(srv, "write", write)
    return calls


def test_contiguous_writes_join_the_held_run_and_are_stored_in_one_call(adapter, monkeypatch):
    ad = adapter
    calls = _counting(monkeypatch, ad.servers[0], ad)
    chunks = [os.urandom(1 << 20) for _ in range(5)]

    async def go():
        fi, entry = await ad.create(pyfuse3.ROOT_INODE, b"f", 0o644, os.O_WRONLY, CTX)
        for i, c in enumerate(chunks):                              # the batch is open (create)
            assert await ad.write(fi.fh, i << 20, c) == len(c)      # held, joined
            with pytest.raises(pyfuse3.FUSEError):
                await ad.getxattr(entry.st_ino, b"security.capability", CTX)
        assert calls == []
        assert ad._behind.n == 5 << 20
        st = await ad.getattr(entry.st_ino, CTX)                    # stores the run first
        assert ad._behind is None and st.st_size == 5 << 20
        assert calls == [(0, 5 << 20)]                              # one call for five writes
        assert await ad.read(fi.fh, 0, 5 << 20) == b"".join(chunks)
        await ad.fsync(fi.fh, False)
        await ad.release(fi.fh)
    _run(go)


def test_a_write_elsewhere_stores_the_held_run_first(adapter, monkeypatch):
    ad = adapter
    calls = _counting(monkeypatch, ad.servers[0], ad)

    async def go():
        fi, entry = await ad.create(pyfuse3.ROOT_INODE, b"f", 0o644, os.O_RDWR, CTX)
        other = await ad.open(entry.st_ino, os.O_RDWR, CTX)
        await ad.write(fi.fh, 0, b"1" * 4096)                       # held
        await ad.write(fi.fh, 4096, b"2" * 4096)                    # joined
        await ad.write(fi.fh, 12288, b"3" * 4096)                   # a gap: 1+2 stored, 3 held
        assert calls == [(0, 8192)]
        await ad.write(other.fh, 16384, b"4" * 4096)                # another handle: 3 stored
        assert calls[-1] == (12288, 4096) and ad._behind.fh == other.fh
        await ad.write(other.fh, 0, b"5" * 10)                      # overwrites, after 4
        assert await ad.read(fi.fh, 0, 20480) == (
            b"5" * 10 + b"1" * 4086 + b"2" * 4096 + bytes(4096) + b"3" * 4096 + b"4" * 4096)
        await ad.fsync(fi.fh, False)
        await ad.release(other.fh)
        await ad.release(fi.fh)
    _run(go)


def test_a_full_run_is_stored_after_the_next_getxattr_reply(adapter, monkeypatch):
    ad = adapter
    calls = _counting(monkeypatch, ad.servers[0], ad)
    chunk = b"z" * (1 << 20)
    n = HOLD_BYTES // len(chunk)

    async def go():
        fi, entry = await ad.create(pyfuse3.ROOT_INODE, b"f", 0o644, os.O_WRONLY, CTX)
        for i in range(n):
            await ad.write(fi.fh, i << 20, chunk)
        assert ad._behind.n == HOLD_BYTES and calls == []
        with pytest.raises(pyfuse3.FUSEError):
            await ad.getxattr(entry.st_ino, b"security.capability", CTX)
        assert ad._behind is not None and ad.nursery.started        # after the reply
        await ad.nursery.run_all()
        assert ad._behind is None and calls == [(0, HOLD_BYTES)]
        await ad.write(fi.fh, n << 20, chunk)
        await ad.write(fi.fh, (n + 1) << 20, chunk)
        assert ad._behind.n == 2 << 20
        await ad.nursery.run_all()
        await ad.fsync(fi.fh, False)
        assert ad._behind is None and (await ad.getattr(entry.st_ino, CTX)).st_size == (n + 2) << 20
        await ad.release(fi.fh)
    _run(go)
