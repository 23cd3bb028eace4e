"""No-open mode of writable tree mounts (blockstore/fuse/adapter.py, "Open
files"): open and create answer ENOSYS, so the kernel sends no
OPEN/CREATE/FLUSH/RELEASE at all and keeps the pages; which files are open
(an unlinked file stays until its last user) follows the kernel's lookup
counts, dropped by FORGET.

Mounted tests check the POSIX behaviour that used to need file handles
(unlink or rename over an open file, O_TRUNC, O_APPEND, fsync) and count the
requests in libfuse's debug log; the adapter-level test drives the lookup
counts directly."""
from __future__ import annotations

import errno
import os
import re
from types import SimpleNamespace

import pyfuse3
import pytest
import trio

from blockstore import Store
from blockstore.errors import NoSpace
from blockstore.fuse.adapter import Adapter
from blockstore.fuse.daemon import log_path

from _fuse_helpers import Mounted, check_ok, needs_fuse

CTX = SimpleNamespace(uid=0, gid=0, pid=os.getpid(), umask=0o022)


def _clone_with(sp, files: dict[str, bytes]) -> None:
    with Store.open(sp) as s:
        s.create("c")
        with s.fs("c") as fs:
            for path, data in files.items():
                fs.makedirs(os.path.dirname(path), exist_ok=True)
                fs.write_bytes(path, data)


def _read_tree(sp, path) -> bytes:
    with Store.open(sp, create=False) as s, s.fs("c") as fs:
        return fs.read_bytes(path)


# -- the adapter, without a kernel ---------------------------------------------------------------
def test_a_clone_mount_has_no_handles_and_keeps_looked_up_files_after_unlink(tmp_path):
    store = Store.open(tmp_path / "s")
    store.create("c")
    with store.fs("c") as fs:
        fs.write_bytes("/held", b"h" * 100)
        fs.write_bytes("/free", b"f" * 100)
    tfs = store.fs("c")
    ad = Adapter(store, tfs)
    try:
        assert ad.no_open and not ad.enable_atomic_o_trunc
        root = pyfuse3.ROOT_INODE

        async def go():
            held = await ad.lookup(root, b"held", CTX)             # the kernel holds it
            for call in (ad.open(held.st_ino, os.O_RDWR, CTX),
                         ad.create(root, b"new", 0o644, os.O_WRONLY, CTX),
                         ad.flush(held.st_ino)):
                with pytest.raises(pyfuse3.FUSEError) as ei:
                    await call
                assert ei.value.errno == errno.ENOSYS
            assert await ad.write(held.st_ino, 100, b"+") == 1        # fh = the inode
            await ad.unlink(root, b"held", CTX)
            # Unlinked while the kernel holds it: still readable and writable.
            assert await ad.read(held.st_ino, 98, 10) == b"hh+"
            assert await ad.write(held.st_ino, 0, b"H") == 1
            await ad.fsync(held.st_ino, False)                     # commits the batch
            assert (await ad.getattr(held.st_ino, CTX)).st_nlink == 0
            await ad.forget([(held.st_ino, 1)])                    # its last reference
            with pytest.raises(pyfuse3.FUSEError) as ei:
                await ad.getattr(held.st_ino, CTX)
            assert ei.value.errno == errno.ENOENT                  # freed

            # Two references (lookup + readdirplus): one forget is not the last.
            free = await ad.lookup(root, b"free", CTX)
            await ad.lookup(root, b"free", CTX)
            await ad.unlink(root, b"free", CTX)
            await ad.forget([(free.st_ino, 1)])
            assert await ad.read(free.st_ino, 0, 3) == b"fff"
            await ad.forget([(free.st_ino, 1)])
            with pytest.raises(pyfuse3.FUSEError):
                await ad.getattr(free.st_ino, CTX)
        trio.run(go)
    finally:
        ad.batcher.stop()
        tfs.close()
        with store:
            assert store.check().ok


def test_a_replayed_batch_sees_which_files_were_open_at_each_change(tmp_path):
    """A change that fails aborts the batch and replays it (committer.py): a
    write into a file unlinked while the kernel held it, before the kernel
    forgot it, must replay as it ran (the file open then, freed after)."""
    store = Store.open(tmp_path / "s")
    store.create("c")
    tfs = store.fs("c")
    ad = Adapter(store, tfs)
    root = pyfuse3.ROOT_INODE
    try:
        async def go():
            await ad.mkdir(root, b"d", 0o755, CTX)                 # opens a batch
            f = await ad.mknod(root, b"f", 0o100644, 0, CTX)       # held by the kernel
            await ad.write(f.st_ino, 0, b"G" * 9000)
            await ad.unlink(root, b"f", CTX)                       # an orphan
            await ad.write(f.st_ino, 9000, b"H")                   # written while unlinked
            await ad.forget([(f.st_ino, 1)])                       # freed
            with pytest.raises(pyfuse3.FUSEError) as ei:
                await ad.rmdir(root, b"nope", CTX)                 # fails: replay
            assert ei.value.errno == errno.ENOENT
            await ad.fsync(root, False)                            # nothing was lost
            assert (await ad.lookup(root, b"d", CTX)).st_ino
        trio.run(go)
    finally:
        ad.batcher.stop()
        tfs.close()
        with store:
            assert store.check().ok
            with store.fs("c") as fs:
                assert fs.listdir("/") == ["d"]


def test_a_release_replayed_after_a_failed_change_keeps_a_file_opened_again(tmp_path):
    """A batch replay (a change failed) re-runs the opens and releases of the
    batch: a file the kernel looked up again after a release stays open."""
    store = Store.open(tmp_path / "s")
    store.create("c")
    with store.fs("c") as fs:
        fs.write_bytes("/a", b"a" * 10)
    tfs = store.fs("c")
    ad = Adapter(store, tfs)
    root = pyfuse3.ROOT_INODE
    try:
        async def go():
            await ad.mkdir(root, b"d", 0o755, CTX)                 # opens a batch
            a = await ad.lookup(root, b"a", CTX)
            await ad.forget([(a.st_ino, 1)])                       # logged: a release
            a = await ad.lookup(root, b"a", CTX)                   # held again
            with pytest.raises(pyfuse3.FUSEError):
                await ad.rmdir(root, b"nope", CTX)                 # fails: replay
            await ad.unlink(root, b"a", CTX)
            assert await ad.read(a.st_ino, 0, 10) == b"a" * 10     # still there
            await ad.forget([(a.st_ino, 1)])
        trio.run(go)
    finally:
        ad.batcher.stop()
        tfs.close()
        with store:
            assert store.check().ok


class _Nursery:
    """Collects what the adapter starts after a reply (write-behind needs one)."""

    def __init__(self):
        self.started = []

    def start_soon(self, fn, *args):
        self.started.append((fn, args))


def test_a_held_write_that_fails_fails_the_files_next_fsync_without_handles(tmp_path, monkeypatch):
    store = Store.open(tmp_path / "s")
    store.create("c")
    with store.fs("c") as fs:
        fs.write_bytes("/f", b"")
    tfs = store.fs("c")
    ad = Adapter(store, tfs)
    ad.nursery = _Nursery()
    root = pyfuse3.ROOT_INODE
    try:
        async def go():
            f = (await ad.lookup(root, b"f", CTX)).st_ino
            assert await ad.write(f, 0, b"k" * 4096) == 4096       # opens a batch: stored
            assert await ad.write(f, 4096, b"x" * 4096) == 4096    # held (fh = the inode)
            assert ad._behind is not None

            def full(*a, **kw):
                raise NoSpace("the pool is full (test)")
            monkeypatch.setattr(ad.servers[0], "write", full)
            with pytest.raises(pyfuse3.FUSEError) as ei:           # fsync(2) gets ENOSPC
                await ad.fsync(f, False)
            assert ei.value.errno == errno.ENOSPC
            monkeypatch.undo()
            await ad.fsync(f, False)                               # reported once
            assert (await ad.getattr(f, CTX)).st_size == 4096      # the failed write is not there
            await ad.forget([(f, 1)])
        trio.run(go)
    finally:
        ad.batcher.stop()
        tfs.close()
        with store:
            assert store.check().ok


def test_a_mount_with_a_read_only_volume_keeps_file_handles(tmp_path):
    store = Store.open(tmp_path / "s")
    store.volume_create("vol")
    store.create("c", mounts=[{"type": "volume", "source": "vol", "target": "/v",
                               "readonly": True}])
    tfs = store.fs("c")
    ad = Adapter(store, tfs)
    try:
        assert len(ad.servers) == 2
        assert not ad.no_open and ad.enable_atomic_o_trunc   # open must refuse writes there
    finally:
        ad.batcher.stop()
        tfs.close()
        store.close()


# -- mounted ----------------------------------------------------------------------------------------
def _requests(sp, since: int) -> dict[str, int]:
    """Requests per opcode in the daemon's libfuse debug log after offset ``since``."""
    with open(log_path(str(sp), "c"), "rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    out: dict[str, int] = {}
    for op in re.findall(r"opcode: ([A-Z_]+)", text):
        out[op] = out.get(op, 0) + 1
    return out


def _log_size(sp) -> int:
    try:
        return os.path.getsize(log_path(str(sp), "c"))
    except FileNotFoundError:
        return 0


@needs_fuse
def test_reading_and_writing_files_of_a_clone_sends_no_open_flush_or_release(tmp_path):
    sp = tmp_path / "store"
    _clone_with(sp, {f"/d/{i}": b"x" * 5000 for i in range(20)})
    m = Mounted(sp, "c", debug=True)
    try:
        for i in range(20):                                        # cold: pages read once
            with open(m.p("d", str(i)), "rb") as f:
                f.read()
        with open(m.p("first"), "wb"):     # the first CREATE, OPEN, FLUSH: answered ENOSYS
            pass
        start = _log_size(sp)
        for _ in range(3):                                         # warm
            for i in range(20):
                with open(m.p("d", str(i)), "rb") as f:
                    assert f.read() == b"x" * 5000
        for i in range(20):                                        # new files, written
            with open(m.p("d", f"n{i}"), "wb") as f:
                f.write(b"y" * 100)
        with open(m.p("d", "n0"), "r+b") as f:
            f.write(b"z")
            os.fsync(f.fileno())
        m.umount()
        got = _requests(sp, start)
        for op in ("OPEN", "CREATE", "FLUSH", "RELEASE", "READ"):
            assert got.get(op, 0) == 0, (op, got)
        assert got.get("MKNOD", 0) == 20 and got.get("WRITE", 0) == 21, got
        assert _read_tree(sp, "/d/n0") == b"z" + b"y" * 99
    finally:
        m.close()
    check_ok(sp)


@needs_fuse
def test_unlink_and_rename_over_an_open_file_keep_it_until_closed(tmp_path):
    sp = tmp_path / "store"
    _clone_with(sp, {"/a": b"a" * 4096, "/b": b"b" * 4096, "/c": b"c" * 10})
    m = Mounted(sp, "c")
    try:
        fa = os.open(m.p("a"), os.O_RDWR)
        fb = os.open(m.p("b"), os.O_RDONLY)
        try:
            os.unlink(m.p("a"))
            os.rename(m.p("c"), m.p("b"))                          # b replaced while open
            os.pwrite(fa, b"A" * 10, 4096)
            os.fsync(fa)                                           # commits the batch
            assert os.pread(fa, 20, 4090) == b"a" * 6 + b"A" * 10
            assert os.fstat(fa).st_size == 4106 and os.fstat(fa).st_nlink == 0
            assert os.pread(fb, 10, 0) == b"b" * 10
            with open(m.p("b"), "rb") as f:
                assert f.read() == b"c" * 10
            assert sorted(os.listdir(m.mnt)) == ["b"]
        finally:
            os.close(fa)
            os.close(fb)
    finally:
        m.close()
    check_ok(sp)


@needs_fuse
def test_o_trunc_and_o_append_of_a_clone_reach_the_tree(tmp_path):
    sp = tmp_path / "store"
    _clone_with(sp, {"/t": b"old content" * 100, "/log": b"1\n"})
    m = Mounted(sp, "c")
    try:
        with open(m.p("t"), "rb") as f:                            # cached by the kernel
            assert f.read(3) == b"old"
        fd = os.open(m.p("t"), os.O_WRONLY | os.O_TRUNC)
        os.close(fd)
        assert os.stat(m.p("t")).st_size == 0
        with open(m.p("t"), "rb") as f:
            assert f.read() == b""
        with open(m.p("log"), "ab") as f1, open(m.p("log"), "ab") as f2:
            f1.write(b"2\n")
            f1.flush()
            f2.write(b"3\n")
        with open(m.p("log"), "rb") as f:
            assert f.read() == b"1\n2\n3\n"
        m.umount()
        assert _read_tree(sp, "/t") == b""                         # the store has it too
        assert _read_tree(sp, "/log") == b"1\n2\n3\n"
    finally:
        m.close()
    check_ok(sp)


def test_a_directory_larger_than_a_reply_lists_every_entry_once(tmp_path):
    """Without opendir the adapter keeps a listing per directory inode until
    its end is reached; the kernel's continuations (and its last call past the
    end) then resume by offset.  Every name shows once, with its inode, and a
    second listing (a fresh walk) is the same."""
    sp = tmp_path / "store"
    names = {f"entry-with-a-long-name-{i:05d}-" + "x" * 40 for i in range(1500)}
    with Store.open(sp) as s:
        s.create("c")
        with s.fs("c") as fs:
            fs.makedirs("/d")
            for n in names:
                fs.write_bytes("/d/" + n, n.encode())
    m = Mounted(sp, "c")
    try:
        for _ in range(2):
            seen = [(e.name, e.inode()) for e in os.scandir(m.p("d"))]
            assert sorted(n for n, _ in seen) == sorted(names)
            assert len({ino for _, ino in seen}) == len(names)
            for n, ino in seen[::300]:
                assert os.lstat(m.p("d", n)).st_ino == ino
    finally:
        m.close()
    check_ok(sp)
