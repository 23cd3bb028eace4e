"""Bad input to the filesystem layer and the Store: every refusal is a typed
blockstore error that is also the matching OSError (errno), leaves the store
unchanged and consistent (``check().ok``), and loses nothing."""
from __future__ import annotations

import errno
import hashlib
import os

import pytest

from blockstore import Store
from blockstore import errors as E

from _fs_tree import describe_store


@pytest.fixture
def fs(store):
    store.create("c")
    with store.fs("c") as f:
        f.makedirs("/a/b")
        f.write_bytes("/a/b/f", b"keep")
        yield f


def refused(fn, cls, code):
    """fn must raise cls (a blockstore error) carrying errno code."""
    with pytest.raises(cls) as ei:
        fn()
    assert isinstance(ei.value, E.BlockstoreError) and isinstance(ei.value, OSError)
    assert ei.value.errno == code, ei.value
    return ei.value


def path_ops(fs, p):
    """Every path-taking TreeView operation applied to p."""
    return [lambda: fs.stat(p), lambda: fs.lstat(p), lambda: fs.listdir(p),
            lambda: fs.mkdir(p), lambda: fs.rmdir(p), lambda: fs.unlink(p),
            lambda: fs.open(p, "rb"), lambda: fs.open(p, "wb"), lambda: fs.rename(p, "/x"),
            lambda: fs.rename("/a/b/f", p), lambda: fs.symlink("t", p), lambda: fs.link("/a/b/f", p),
            lambda: fs.chmod(p, 0o600), lambda: fs.truncate(p, 0), lambda: fs.readlink(p),
            lambda: fs.setxattr(p, "user.a", b"1"), lambda: fs.getxattr(p, "user.a")]


def test_paths_with_nul_are_einval(store, fs):
    before = describe_store(fs)
    for p in ("/a\0b", "/a/b/f\0", b"/a\0", "\0"):
        for op in path_ops(fs, p):
            refused(op, E.InvalidInput, errno.EINVAL)
    refused(lambda: fs.symlink("x\0y", "/l"), E.InvalidInput, errno.EINVAL)
    refused(lambda: fs.setxattr("/a", "user.\0", b"1"), E.InvalidInput, errno.EINVAL)
    assert describe_store(fs) == before


def test_names_over_255_bytes_are_enametoolong(store, fs):
    before = describe_store(fs)
    long_name = "n" * 256
    for p in ("/" + long_name, "/a/" + long_name + "/x", "/a/" + "é" * 128):   # 256 bytes in UTF-8
        for op in path_ops(fs, p):
            refused(op, E.NameTooLong, errno.ENAMETOOLONG)
    fs.write_bytes("/" + "n" * 255, b"ok")             # exactly 255 bytes is fine
    assert fs.read_bytes("/" + "n" * 255) == b"ok"
    fs.unlink("/" + "n" * 255)
    assert describe_store(fs) == before


def test_paths_over_4096_bytes_are_enametoolong(store, fs):
    before = describe_store(fs)
    p = "/" + "/".join(["d" * 200] * 21)               # 4221 bytes, every name valid
    assert len(p) > 4096
    for op in path_ops(fs, p):
        refused(op, E.NameTooLong, errno.ENAMETOOLONG)
    assert describe_store(fs) == before


def test_dotdot_cannot_escape_the_tree(store, fs):
    before = describe_store(fs)
    for p in ("/..", "/../etc/passwd", "/a/../../x", "a/b/../../../x"):
        for op in path_ops(fs, p):
            refused(op, E.InvalidInput, errno.EINVAL)
    # A symlink pointing above the root is refused the same way when followed.
    fs.symlink("../../../../etc", "/a/esc")
    refused(lambda: fs.listdir("/a/esc"), E.InvalidInput, errno.EINVAL)
    refused(lambda: fs.open("/a/esc/passwd", "wb"), E.InvalidInput, errno.EINVAL)
    fs.unlink("/a/esc")
    # '..' that stays inside the tree works.
    assert fs.read_bytes("/a/b/../b/f") == b"keep"
    assert describe_store(fs) == before


def test_writes_to_snapshots_are_erofs(store, fs):
    store.commit("c", "snap")
    with store.fs("snap") as snap:
        before = describe_store(snap)
        for op in path_ops(snap, "/a/b/f")[3:]:
            if op is not None:
                try:
                    op()
                except E.ReadOnly as e:
                    assert e.errno == errno.EROFS and isinstance(e, PermissionError)
                except OSError as e:
                    # Read-only ops on a snapshot may succeed or fail for other reasons
                    # (readlink of a file: EINVAL), never change anything.
                    assert e.errno != errno.EROFS
        for fn in (lambda: snap.write_bytes("/new", b""), lambda: snap.mkdir("/new"),
                   lambda: snap.unlink("/a/b/f"), lambda: snap.setattr(1, mode=0o700),
                   lambda: snap.write_at(snap.stat("/a/b/f").st_ino, 0, b"x"),
                   lambda: snap.create_at(1, b"n", 0o100644)):
            refused(fn, E.ReadOnly, errno.EROFS)
        assert describe_store(snap) == before
    # Engine-level and Store-level changes to a snapshot are refused too.
    refused(lambda: store.commit("snap", "again"), E.InvalidInput, errno.EINVAL)


def test_operations_on_removed_trees(store, fs):
    store.commit("c", "snap")
    store.clone("snap", "gone")
    g = store.fs("gone")
    g.write_bytes("/x", b"1")
    store.remove("gone")
    for fn in (lambda: g.write_bytes("/y", b"2"), lambda: g.stat("/x"), lambda: g.listdir("/"),
               lambda: g.mkdir("/d"), lambda: store.fs("gone"), lambda: store.remove("gone"),
               lambda: store.clone("gone", "z"), lambda: store.commit("gone", "z"),
               lambda: store.usage("gone"), lambda: store.diff("snap", "gone"),
               lambda: store.info("gone"), lambda: store.rename("gone", "z"),
               lambda: store.label("gone", a="1"), lambda: store.export_dir("gone", "/nonexistent")):
        refused(fn, E.NotFound, errno.ENOENT)
    g.close()
    assert not store.exists("gone") and not store.exists("z")
    assert fs.read_bytes("/a/b/f") == b"keep"


BAD_NAMES = ["", ".hidden", "-x", "/abs", ":x", "a//b", "a:/b", "x/", "x:", "a b", "a\0b",
             "n" * 256, "tab\t", "ü"]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_invalid_tree_names(store, fs, bad, tmp_path):
    store.commit("c", "snap")
    before = sorted(r.name for r in store.list())
    for fn in (lambda: store.create(bad), lambda: store.volume_create(bad),
               lambda: store.clone("snap", bad), lambda: store.commit("c", bad),
               lambda: store.snapshot("c", bad), lambda: store.rename("c", bad),
               lambda: store.import_dir(tmp_path, bad)):
        refused(fn, E.InvalidInput, errno.EINVAL)
    assert sorted(r.name for r in store.list()) == before


def test_tree_name_taken_is_eexist(store, fs):
    store.commit("c", "snap")
    for fn in (lambda: store.create("c"), lambda: store.clone("snap", "c"),
               lambda: store.commit("c", "snap"), lambda: store.rename("c", "snap"),
               lambda: store.volume_create("snap")):
        refused(fn, E.AlreadyExists, errno.EEXIST)


# -- full disk -----------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmpfs):
    """A 32 MiB tmpfs (root only)."""
    return tmpfs("32m")


def test_full_disk_is_enospc_and_recoverable(small_disk):
    mib = 1024 * 1024
    with Store.open(small_disk / "store") as s:
        s.create("old")
        kept = {}
        with s.fs("old") as old:
            for i in range(8):
                data = os.urandom(mib)
                old.write_bytes(f"/f{i}", data)
                kept[f"/f{i}"] = hashlib.sha256(data).hexdigest()
        s.commit("old", "old-snap")
        s.create("new")
        written = {}
        with s.fs("new") as new:
            err = None
            for i in range(100):
                data = os.urandom(mib)
                try:
                    new.write_bytes(f"/g{i}", data)
                except OSError as e:
                    err = e
                    break
                written[f"/g{i}"] = hashlib.sha256(data).hexdigest()
            assert err is not None, "32 MiB disk never filled"
            assert isinstance(err, E.NoSpace) and err.errno == errno.ENOSPC
            report = s.check()
            assert report.ok, report.problems
            # Nothing written before the failure is lost, in either tree.
            for p, h in written.items():
                assert hashlib.sha256(new.read_bytes(p)).hexdigest() == h
            with s.fs("old-snap") as snap:
                for p, h in kept.items():
                    assert hashlib.sha256(snap.read_bytes(p)).hexdigest() == h
            # Further writes keep failing cleanly ...
            with pytest.raises(E.NoSpace):
                new.write_bytes("/more", os.urandom(mib))
            # ... until a tree is removed and gc returns its blocks.
            s.remove("old-snap")
            s.remove("old")
            s.gc()
            for i in range(4):
                new.write_bytes(f"/after{i}", b"z" * mib)
            assert new.read_bytes("/after3") == b"z" * mib
            for p, h in written.items():
                assert hashlib.sha256(new.read_bytes(p)).hexdigest() == h
        report = s.check()
        assert report.ok, report.problems
