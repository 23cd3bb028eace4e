"""The adapter's answers that let the kernel cache (blockstore/fuse/adapter.py,
"Caches"), driven without a kernel: handlers are called directly in trio.
The mounted behaviour is in test_fuse_kernel_cache.py."""
from __future__ import annotations

import errno
import os
from types import SimpleNamespace

import pyfuse3
import pytest
import trio

from blockstore import Store
from blockstore.fuse.adapter import SNAPSHOT_TIMEOUT, TREE_TIMEOUT, Adapter

CTX = SimpleNamespace(uid=0, gid=0, pid=os.getpid(), umask=0o022)


def _store(tmp_path, **create_kw):
    store = Store.open(tmp_path / "s")
    store.create("c", **create_kw)
    with store.fs("c") as fs:
        fs.makedirs("/d")
        for n in ("a", "b"):
            fs.write_bytes(f"/d/{n}", n.encode() * 10)
    return store


def _names(ad, fh) -> list[bytes]:
    got = []
    orig = pyfuse3.readdir_reply

    def collect(token, name, attr, next_id):
        got.append(name)
        return True
    pyfuse3.readdir_reply = collect
    try:
        trio.run(ad.readdir, fh, 0, None)
    finally:
        pyfuse3.readdir_reply = orig
    return got


def test_a_tree_only_mount_refuses_opendir_and_lists_by_inode(tmp_path):
    store = _store(tmp_path)
    tfs = store.fs("c")
    ad = Adapter(store, tfs, no_open=False)         # with file handles
    try:
        with pytest.raises(pyfuse3.FUSEError) as ei:
            trio.run(ad.opendir, pyfuse3.ROOT_INODE, CTX)
        assert ei.value.errno == errno.ENOSYS           # the kernel keeps every listing
        d = trio.run(ad.lookup, pyfuse3.ROOT_INODE, b"d", CTX)
        assert d.entry_timeout == d.attr_timeout == TREE_TIMEOUT
        assert sorted(_names(ad, d.st_ino)) == [b"a", b"b"]   # fh = the directory's inode
        missing = trio.run(ad.lookup, d.st_ino, b"nope", CTX)
        assert missing.st_ino == 0 and missing.entry_timeout == TREE_TIMEOUT   # negative entry
        fi = trio.run(ad.open, trio.run(ad.lookup, d.st_ino, b"a", CTX).st_ino, os.O_RDONLY, CTX)
        assert fi.keep_cache and fi.noflush                 # a read-only handle: no FLUSH
        trio.run(ad.release, fi.fh)
    finally:
        ad.batcher.stop()
        tfs.close()
        store.close()


def test_a_mount_with_a_host_directory_keeps_opendir(tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    store = _store(tmp_path, mounts=[{"type": "bind", "source": str(host), "target": "/h"}])
    tfs = store.fs("c")
    ad = Adapter(store, tfs)
    try:
        fi = trio.run(ad.opendir, pyfuse3.ROOT_INODE, CTX)
        assert fi.cache_readdir and fi.keep_cache           # a tree's listing is kept
        h = trio.run(ad.lookup, pyfuse3.ROOT_INODE, b"h", CTX)
        assert h.attr_timeout == 1.0                        # the host directory: 1 s
        hfi = trio.run(ad.opendir, h.st_ino, CTX)
        assert not hfi.cache_readdir                        # read at every open
        trio.run(ad.releasedir, fi.fh)
        trio.run(ad.releasedir, hfi.fh)
    finally:
        ad.batcher.stop()
        tfs.close()
        store.close()


def test_a_snapshot_mount_refuses_open_and_reads_by_inode(tmp_path):
    store = _store(tmp_path)
    store.commit("c", "snap")
    tfs = store.fs("snap")
    ad = Adapter(store, tfs)
    try:
        d = trio.run(ad.lookup, pyfuse3.ROOT_INODE, b"d", CTX)
        assert d.attr_timeout == SNAPSHOT_TIMEOUT
        a = trio.run(ad.lookup, d.st_ino, b"a", CTX)
        with pytest.raises(pyfuse3.FUSEError) as ei:
            trio.run(ad.open, a.st_ino, os.O_RDONLY, CTX)
        assert ei.value.errno == errno.ENOSYS               # no open/flush/release at all
        assert trio.run(ad.read, a.st_ino, 0, 100) == b"a" * 10   # fh = the file's inode
        with pytest.raises(pyfuse3.FUSEError) as ei:
            trio.run(ad.flush, a.st_ino)
        assert ei.value.errno == errno.ENOSYS               # no FLUSH at every close either
    finally:
        tfs.close()
        store.close()


def test_removing_a_missing_xattr_does_not_replay_the_batch(tmp_path):
    store = _store(tmp_path)
    tfs = store.fs("c")
    ad = Adapter(store, tfs, no_open=False)
    replays = []
    real = ad.batcher._replay

    def counted(redo, nbytes):
        replays.append(len(redo))
        return real(redo, nbytes)
    ad.batcher._replay = counted
    try:
        async def go():
            fi, e = await ad.create(pyfuse3.ROOT_INODE, b"f", 0o644, os.O_WRONLY, CTX)
            await ad.release(fi.fh)                     # a batch with a change is open
            with pytest.raises(pyfuse3.FUSEError) as ei:
                await ad.removexattr(e.st_ino, b"system.posix_acl_default", CTX)
            assert ei.value.errno == errno.ENODATA
        trio.run(go)
        assert replays == []                            # answered before the batch
    finally:
        ad.batcher.stop()
        tfs.close()
        with store:
            assert store.check().ok
