"""Store API behaviour: kinds, labels and list filters, lineage, the removal
rule, volumes, bind and tmpfs mounts, commit, and diff results."""
from __future__ import annotations

import errno
import glob
import os

import pytest

from blockstore.api.diff import Change
from blockstore.errors import Busy, InvalidInput, NotFound, ReadOnly


@pytest.fixture
def base(store, tmp_path):
    """Snapshot "base" imported from a small host tree."""
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "motd").write_text("hello\n")
    (src / "bin").mkdir()
    (src / "bin" / "sh").write_bytes(os.urandom(20000))
    store.import_dir(src, "base")
    return "base"


# -- kinds, labels, lists, lineage --------------------------------------------------------------

def test_kinds_labels_and_list_filters(store, base):
    store.clone(base, "web", labels={"app": "web", "tier": "front"})
    store.clone(base, "db", labels={"app": "db"})
    store.commit("web", "web-v1", labels={"app": "web"})
    store.volume_create("data", labels={"app": "db"})
    store.create("scratch")
    kinds = {r.name: r.kind for r in store.list()}
    assert kinds == {"base": "snapshot", "web": "clone", "db": "clone", "web-v1": "snapshot",
                     "data": "volume", "scratch": "clone"}
    names = lambda recs: sorted(r.name for r in recs)          # noqa: E731
    assert names(store.list(kind="snapshot")) == ["base", "web-v1"]
    assert names(store.list(kind="volume")) == names(store.volumes()) == ["data"]
    assert names(store.list(parent="base")) == ["db", "web", "web-v1"]
    assert names(store.list(label="app=db")) == ["data", "db"]
    assert names(store.list(label={"app": "web", "tier": "front"})) == ["web"]
    assert names(store.list(kind="clone", label="app=web")) == ["web"]
    store.label("web", tier=None, owner="me")
    assert store.info("web").labels == {"app": "web", "owner": "me"}
    assert store.list(label="tier=front") == []
    assert store.info("web").writable and not store.info("web-v1").writable


def test_lineage_follows_parents(store, base):
    store.clone(base, "c1")
    store.commit("c1", "s1")
    store.clone("s1", "c2")
    store.commit("c2", "s2")
    store.clone("s2", "c3")
    assert store.lineage("c3") == ["c3", "s2", "s1", "base"]
    assert store.lineage("base") == ["base"]
    assert sorted(r.name for r in store.dependents("s1")) == ["c2", "s2"]


def test_remove_rule_busy_then_force_reparents_and_keeps_data(store, base):
    store.clone(base, "c1")
    with store.fs("c1") as fs:
        fs.write_text("/etc/motd", "c1\n")
    store.commit("c1", "s1")
    store.clone("s1", "c2")
    with pytest.raises(Busy) as ei:
        store.remove(base)
    assert ei.value.errno == errno.EBUSY
    with pytest.raises(Busy):
        store.remove("s1")
    assert store.exists(base) and store.exists("s1")
    store.remove(base, force=True)
    assert store.info("c1").parent is None and store.info("s1").parent is None
    store.remove("s1", force=True)
    store.gc()
    assert store.info("c2").parent is None
    with store.fs("c2") as fs:
        assert fs.read_text("/etc/motd") == "c1\n" and fs.stat("/bin/sh").st_size == 20000
    # Clones and childless snapshots go without force.
    store.remove("c2")
    store.remove("c1")
    assert store.list() == []


def test_commit_keeps_the_clone_usable(store, base):
    store.clone(base, "c")
    with store.fs("c") as fs:
        fs.write_text("/a", "1")
        store.commit("c", "s1")
        fs.write_text("/a", "2")              # same handle, after the commit
        with fs.open("/a", "a") as fh:
            fh.write("+")
        store.commit("c", "s2")
        fs.unlink("/a")
    with store.fs("s1") as s1, store.fs("s2") as s2, store.fs("c") as c:
        assert s1.read_text("/a") == "1" and s2.read_text("/a") == "2+" and not c.exists("/a")
    with pytest.raises(InvalidInput):
        store.commit("s1", "s3")


# -- volumes, bind, tmpfs ----------------------------------------------------------------------

def test_volume_shared_live_by_two_clones(store, base):
    store.volume_create("vol")
    spec = [{"type": "volume", "source": "vol", "target": "/data"}]
    store.clone(base, "a", mounts=spec)
    store.clone(base, "b", mounts=spec)
    with store.fs("a") as a, store.fs("b") as b:
        assert a.isdir("/data") and b.isdir("/data")
        a.write_text("/data/x", "from a")
        assert b.read_text("/data/x") == "from a"          # visible at once
        with b.open("/data/x", "a") as fh:
            fh.write(" and b")
        assert a.read_text("/data/x") == "from a and b"
        b.mkdir("/data/d")
        assert sorted(a.listdir("/data")) == ["d", "x"]
        assert not a.exists("/x")                          # the clone's own tree is untouched
    with store.fs("vol") as v:
        assert v.read_text("/x") == "from a and b"
    # A volume mounted by a clone cannot be removed without force.
    with pytest.raises(Busy):
        store.volume_remove("vol")
    # Removing clones never removes their volumes.
    store.remove("a")
    store.remove("b")
    store.gc()
    with store.fs("vol") as v:
        assert v.read_text("/x") == "from a and b"
    store.volume_remove("vol")
    assert store.volumes() == []


def test_volume_remove_force_detaches_it(store, base):
    store.volume_create("vol")
    store.clone(base, "a", mounts=[{"type": "volume", "source": "vol", "target": "/data"}])
    store.volume_remove("vol", force=True)
    assert store.info("a").mounts == [] and not store.exists("vol")
    with pytest.raises(InvalidInput):
        store.volume_remove(base)               # not a volume


def test_volume_snapshot_and_clone_is_an_o1_backup(store):
    store.volume_create("vol")
    with store.fs("vol") as v:
        v.write_bytes("/db", os.urandom(1024 * 1024))
        original = v.read_bytes("/db")
    used = store.df().used_bytes
    store.snapshot("vol", "vol-backup")
    store.clone("vol-backup", "vol-restored")
    assert store.df().used_bytes == used                   # no data copied
    assert store.info("vol-backup").kind == "snapshot"
    with store.fs("vol") as v:
        v.write_bytes("/db", b"corrupted")
    with store.fs("vol-restored") as r:
        assert r.read_bytes("/db") == original
    u = store.usage("vol-backup")                          # shared with the restored clone
    assert (u.exclusive, u.shared) == (0, 1024 * 1024)
    store.remove("vol-restored")
    assert store.usage("vol-backup").exclusive == 1024 * 1024   # now it alone has the old data


def test_bind_mount_readonly_refuses_writes(store, base, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "conf").write_text("bound")
    rw = tmp_path / "rw"
    rw.mkdir()
    store.clone(base, "c", mounts=[
        {"type": "bind", "source": str(host), "target": "/etc/app", "readonly": True},
        {"type": "bind", "source": str(rw), "target": "/out"}])
    with store.fs("c") as fs:
        assert fs.read_text("/etc/app/conf") == "bound"
        assert fs.read_text("/etc/motd") == "hello\n"      # the tree still serves the rest
        for op in (lambda: fs.write_text("/etc/app/conf", "x"), lambda: fs.unlink("/etc/app/conf"),
                   lambda: fs.mkdir("/etc/app/d"), lambda: fs.open("/etc/app/new", "w"),
                   lambda: fs.chmod("/etc/app/conf", 0o600)):
            with pytest.raises(PermissionError) as ei:
                op()
            assert ei.value.errno == errno.EROFS
        fs.write_text("/out/result", "written through")
        assert (rw / "result").read_text() == "written through"
        with pytest.raises(OSError) as ei:
            fs.rename("/out/result", "/result")            # across mounts
        assert ei.value.errno == errno.EXDEV
    assert (host / "conf").read_text() == "bound" and sorted(os.listdir(host)) == ["conf"]


def test_tmpfs_mount_lives_in_dev_shm_and_dies_with_the_treeview(store, base):
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    store.clone(base, "c", mounts=[{"type": "tmpfs", "target": "/tmp"}])
    before = set(glob.glob("/dev/shm/blockstore-tmpfs-*"))
    fs = store.fs("c")
    fs.write_text("/tmp/scratch", "volatile")
    created = set(glob.glob("/dev/shm/blockstore-tmpfs-*")) - before
    assert len(created) == 1
    (d,) = created
    assert open(os.path.join(d, "scratch")).read() == "volatile"
    used = store.df().used_bytes
    fs.write_bytes("/tmp/big", os.urandom(100_000))
    assert store.df().used_bytes == used                   # memory, not the pool
    fs.close()
    assert not os.path.exists(d)
    with store.fs("c") as fs2:
        assert fs2.listdir("/tmp") == []                   # a fresh, empty tmpfs


# -- diff -----------------------------------------------------------------------------------

def test_diff_kinds_and_types(store, base):
    store.clone(base, "c")
    with store.fs("c") as fs:
        fs.write_text("/etc/motd", "changed\n")                 # M file
        fs.mkdir("/new")                                       # A dir
        fs.write_text("/new/f", "n")                           # A file (inside new dir)
        fs.symlink("/etc/motd", "/lnk")                        # A symlink
        fs.rename("/bin/sh", "/bin/bash")                      # D + A
        fs.link("/etc/motd", "/etc/motd.hard")                 # A (hard link), motd M (nlink)
        fs.mknod("/fifo", 0o010644)                            # A fifo
        fs.write_bytes("/bin/x", b"x")
        fs.unlink("/bin/x")                                    # never existed in base: absent
    store.commit("c", "c1")
    got = store.diff(base, "c1")
    assert got == sorted(got)
    assert set(got) == {
        Change("/etc/motd", "C", "file"), Change("/new", "A", "dir"),
        Change("/new/f", "A", "file"), Change("/lnk", "A", "symlink"),
        Change("/bin/sh", "D", "file"), Change("/bin/bash", "A", "file"),
        Change("/etc/motd.hard", "A", "file"), Change("/fifo", "A", "fifo"),
        Change("/bin", "C", "dir"), Change("/etc", "C", "dir"), Change("/", "C", "dir")}
    assert store.diff("c1", "c1") == [] and store.diff(base, base) == []


def test_diff_deleted_directory_lists_children_once(store, base):
    store.clone(base, "c")
    with store.fs("c") as fs:
        fs.unlink("/etc/motd")
        fs.rmdir("/etc")
        fs.chmod("/bin/sh", 0o700)
    got = store.diff(base, "c")
    assert Change("/etc", "D", "dir") in got
    assert not any(c.path.startswith("/etc/") for c in got)
    assert Change("/bin/sh", "C", "file") in got
    back = store.diff("c", base)                             # the reverse adds them back
    assert Change("/etc", "A", "dir") in back and Change("/etc/motd", "A", "file") in back


def test_diff_of_unrelated_trees_and_missing_names(store, base, tmp_path):
    store.create("empty")
    got = store.diff("empty", base)
    assert {c.path for c in got if c.kind == "A"} >= {"/etc", "/etc/motd", "/bin", "/bin/sh"}
    with pytest.raises(NotFound):
        store.diff(base, "nope")


def test_snapshot_fs_is_readonly_everywhere(store, base):
    with store.fs(base) as fs:
        assert fs.readonly
        with pytest.raises(ReadOnly):
            fs.write_text("/etc/motd", "x")


def test_read_later_keeps_its_blocks_from_reuse_until_it_finishes(store):
    """TreeView.read_later maps a read in the open batch; the I/O may run much
    later (a FUSE worker thread): the blocks it maps must not be reused even
    if the batch overwrites the file, commits, and later writes fill the pool."""
    store.create("c")
    old = os.urandom(64 * 4096)
    with store.fs("c") as fs:
        fs.write_bytes("/f", old)
        ino = fs.stat("/f").st_ino
        with store.batch():
            finish = fs.read_later(ino, 0, len(old))
            fs.write_bytes("/f", b"\x01" * len(old))      # frees the mapped blocks
        # New txns writing more than the pool holds: the next-fit allocator wraps
        # around and would reuse the freed blocks if they were released.
        free = store.df().free_bytes
        for i in range(free // len(old) + 8):
            fs.write_bytes(f"/g{i}", os.urandom(len(old)))
        assert bytes(finish()) == old
        fs.write_bytes("/h", os.urandom(len(old)))        # after finish: reusable again
    assert store.check().ok


def test_two_handles_of_one_tree_see_each_others_writes_inside_a_batch(store):
    """TreeView remembers a batch's root by the catalog record's bytes: a change
    made through another handle (or the engine) in the same batch must show."""
    store.create("w")
    a, b = store.fs("w"), store.fs("w")
    with store.batch():
        a.write_bytes("/f", b"one")
        assert b.read_bytes("/f") == b"one"
        ino = b.stat("/f").st_ino
        b.write_at(ino, 3, b" two")
        assert a.getattr(ino).st_size == 7 and a.read_bytes("/f") == b"one two"
        a.unlink("/f")
        assert not b.exists("/f")
        store.commit("w", "w@1")           # a catalog change of another kind in the batch
        a.write_bytes("/g", b"x")
        assert b.read_bytes("/g") == b"x"
    assert store.fs("w@1").listdir("/") == []
    a.close()
    b.close()
