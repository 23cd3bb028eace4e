"""`blockstore snapshotter serve` over its gRPC API, as containerd calls it:
error codes, namespaces, keys, labels, filters, Usage, Mounts, Cleanup,
restarts and kills (issue 19).  The server runs as a real process on a
temporary store; the client is the generated stub (the wire contract)."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

grpc = pytest.importorskip("grpc")

from google.protobuf import field_mask_pb2  # noqa: E402

from _fuse_helpers import cached_bytes  # noqa: E402
from _snapshotter import Server, check_store, needs_fuse_root, private_base, wait_for  # noqa: E402
from blockstore.snapshotter.filters import matches, parse_all  # noqa: E402
from blockstore.snapshotter.proto import snapshots_pb2 as pb  # noqa: E402
from blockstore.snapshotter.proto import snapshots_pb2_grpc as pbg  # noqa: E402

pytestmark = [needs_fuse_root, pytest.mark.timeout(300)]


class Client:
    def __init__(self, sock: str, ns: str = "default"):
        self.channel = grpc.insecure_channel("unix:" + sock)
        self.stub = pbg.SnapshotsStub(self.channel)
        self.md = [("containerd-namespace", ns)]

    def __getattr__(self, method):
        rpc = getattr(self.stub, method)
        return lambda req, **kw: rpc(req, metadata=self.md, timeout=60, **kw)

    def close(self):
        self.channel.close()


@pytest.fixture
def srv(tmp_store_dir):
    base = private_base("bs-snap-api-")
    server = Server(tmp_store_dir, base).start()
    yield server
    server.stop()
    server.unmount_all()
    subprocess.run(["rm", "-rf", base])
    check_store(tmp_store_dir)


def code_of(fn) -> tuple:
    with pytest.raises(grpc.RpcError) as ei:
        fn()
    return ei.value.code(), ei.value.details()


def prepare(c, key, parent="", **labels):
    return c.Prepare(pb.PrepareSnapshotRequest(key=key, parent=parent, labels=labels))


def test_error_codes(srv):
    c = Client(srv.sock)
    m = prepare(c, "/a/b c:/d//e")                      # any string is a key
    assert m.mounts[0].type == "bind" and list(m.mounts[0].options) == ["rbind", "rw"]
    assert os.path.ismount(m.mounts[0].source)
    assert code_of(lambda: c.Stat(pb.StatSnapshotRequest(key="nope")))[0] == \
        grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: prepare(c, "/a/b c:/d//e"))[0] == grpc.StatusCode.ALREADY_EXISTS
    assert code_of(lambda: prepare(c, "x", parent="missing"))[0] == grpc.StatusCode.NOT_FOUND
    # a parent must be committed
    assert code_of(lambda: prepare(c, "x", parent="/a/b c:/d//e"))[0] == \
        grpc.StatusCode.INVALID_ARGUMENT
    c.Commit(pb.CommitSnapshotRequest(name="base", key="/a/b c:/d//e"))
    assert code_of(lambda: c.Stat(pb.StatSnapshotRequest(key="/a/b c:/d//e")))[0] == \
        grpc.StatusCode.NOT_FOUND
    prepare(c, "child", parent="base")
    assert code_of(lambda: c.Commit(pb.CommitSnapshotRequest(name="base", key="child")))[0] == \
        grpc.StatusCode.ALREADY_EXISTS
    code, msg = code_of(lambda: c.Remove(pb.RemoveSnapshotRequest(key="base")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "remove" in msg
    # bad field mask, bad filter, reserved label
    info = pb.Info(name="base", parent="x")
    assert code_of(lambda: c.Update(pb.UpdateSnapshotRequest(
        info=info, update_mask=field_mask_pb2.FieldMask(paths=["parent"]))))[0] == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: list(c.List(pb.ListSnapshotsRequest(filters=["name=="]))))[0] == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: prepare(c, "y", **{"blockstore.containerd.key": "z"}))[0] == \
        grpc.StatusCode.INVALID_ARGUMENT
    # removed keys are reusable at once, mounted ones are unmounted first
    mp = c.Mounts(pb.MountsRequest(key="child")).mounts[0].source
    c.Remove(pb.RemoveSnapshotRequest(key="child"))
    assert not os.path.ismount(mp)
    prepare(c, "child", parent="base")
    c.Remove(pb.RemoveSnapshotRequest(key="child"))
    c.Remove(pb.RemoveSnapshotRequest(key="base"))
    assert list(c.List(pb.ListSnapshotsRequest())) == []
    log = srv.log()
    assert "Traceback" not in log
    assert "Stat ns='default' key='nope' -> NOT_FOUND" in log
    c.close()


def test_namespaces_apart_and_labels_update(srv):
    a, b = Client(srv.sock, "a"), Client(srv.sock, "b")
    prepare(a, "k", x="1")
    assert code_of(lambda: b.Stat(pb.StatSnapshotRequest(key="k")))[0] == \
        grpc.StatusCode.NOT_FOUND
    prepare(b, "k", x="2")
    assert a.Stat(pb.StatSnapshotRequest(key="k")).info.labels["x"] == "1"
    assert b.Stat(pb.StatSnapshotRequest(key="k")).info.labels["x"] == "2"
    st = a.Stat(pb.StatSnapshotRequest(key="k")).info
    mask = field_mask_pb2.FieldMask(paths=["labels.y", "labels.x"])
    up = a.Update(pb.UpdateSnapshotRequest(info=pb.Info(name="k", labels={"y": "3"}),
                                           update_mask=mask)).info
    assert dict(up.labels) == {"y": "3"}
    assert up.created_at == st.created_at and up.updated_at.ToNanoseconds() > \
        st.updated_at.ToNanoseconds()
    listed = [i for r in a.List(pb.ListSnapshotsRequest(filters=['labels.y==3']))
              for i in r.info]
    assert [i.name for i in listed] == ["k"] and listed[0] == up
    a.Remove(pb.RemoveSnapshotRequest(key="k"))
    b.Remove(pb.RemoveSnapshotRequest(key="k"))


def test_usage_counts_the_changes(srv):
    c = Client(srv.sock)
    mp = prepare(c, "w").mounts[0].source
    before = c.Usage(pb.UsageRequest(key="w"))
    with open(os.path.join(mp, "big"), "wb") as f:     # written and closed, not fsync'ed:
        f.write(os.urandom(1 << 20))                   # Usage must count it all the same
    after = c.Usage(pb.UsageRequest(key="w"))
    assert after.size - before.size >= 1 << 20
    assert after.inodes == before.inodes + 1
    c.Commit(pb.CommitSnapshotRequest(name="w1", key="w"))
    assert c.Usage(pb.UsageRequest(key="w1")).size >= 1 << 20
    c.Remove(pb.RemoveSnapshotRequest(key="w1"))


def test_view_is_read_only_and_commit_captures_writes(srv):
    c = Client(srv.sock)
    mp = prepare(c, "a").mounts[0].source
    for i in range(50):                              # completed writes, no fsync
        with open(os.path.join(mp, f"f{i}"), "w") as f:
            f.write(str(i))
    c.Commit(pb.CommitSnapshotRequest(name="a1", key="a"))
    v = c.View(pb.ViewSnapshotRequest(key="v", parent="a1")).mounts[0]
    assert list(v.options) == ["rbind", "ro"]
    assert sorted(os.listdir(v.source)) == sorted(f"f{i}" for i in range(50))
    assert open(os.path.join(v.source, "f7")).read() == "7"
    with pytest.raises(OSError) as ei:
        open(os.path.join(v.source, "new"), "w")
    assert ei.value.errno == 30                          # EROFS
    c.Remove(pb.RemoveSnapshotRequest(key="v"))
    c.Remove(pb.RemoveSnapshotRequest(key="a1"))


def test_restart_and_kill_keep_mounts(srv):
    c = Client(srv.sock)
    mp = prepare(c, "live").mounts[0].source
    with open(os.path.join(mp, "kept"), "w") as f:
        f.write("x")
    c.close()
    srv.stop(signal.SIGKILL)                         # no goodbye
    assert os.path.ismount(mp)                       # containers keep their roots
    srv.start()
    c = Client(srv.sock)
    assert c.Mounts(pb.MountsRequest(key="live")).mounts[0].source == mp
    assert open(os.path.join(mp, "kept")).read() == "x"
    # a mount whose daemon died is re-established by the next Mounts
    subprocess.run(["umount", "-l", mp], check=True)
    time.sleep(0.5)
    again = c.Mounts(pb.MountsRequest(key="live")).mounts[0].source
    assert os.path.ismount(again) and open(os.path.join(again, "kept")).read() == "x"
    c.Remove(pb.RemoveSnapshotRequest(key="live"))
    c.close()


def _trees_with_key(store_path: str, key: str) -> list:
    import blockstore
    with blockstore.Store.open(store_path, create=False) as store:
        return [r.name for r in store.list()
                if r.labels.get("blockstore.containerd.key") == key]


def test_remove_answers_without_waiting_for_its_mount(srv):
    """Remove of a mounted snapshot answers once the key is gone (one durable
    change); the unmount and the tree's removal follow in the background, and
    a mount still in use elsewhere (a file held open) does not hold up the
    answer.  The key is reusable at once; the old tree goes when its mount ends."""
    c = Client(srv.sock)
    mp = prepare(c, "busy").mounts[0].source
    held = open(os.path.join(mp, "held"), "w")
    try:
        t0 = time.monotonic()
        c.Remove(pb.RemoveSnapshotRequest(key="busy"))
        took = time.monotonic() - t0
        assert took < 1.0, f"Remove took {took:.2f} s"     # waited 2 s + 2 s before
        assert code_of(lambda: c.Stat(pb.StatSnapshotRequest(key="busy")))[0] == \
            grpc.StatusCode.NOT_FOUND
        again = prepare(c, "busy").mounts[0].source
        assert again != mp and os.path.ismount(again)
        c.Remove(pb.RemoveSnapshotRequest(key="busy"))
    finally:
        held.close()
    wait_for(lambda: _trees_with_key(srv.store, "busy") == [], 30,
             "the removed snapshots' trees to go")
    wait_for(lambda: not os.path.ismount(mp) and not os.path.ismount(again), 30,
             "their mounts to end")
    c.close()
    assert "Traceback" not in srv.log()


def _spares(store_path: str) -> list:
    import blockstore
    with blockstore.Store.open(store_path, create=False) as store:
        return [r.name for r in store.list()
                if "blockstore.containerd.spare" in r.labels
                and "blockstore.containerd.retired" not in r.labels]


def _containerd_trees(store_path: str) -> list:
    import blockstore
    with blockstore.Store.open(store_path, create=False) as store:
        return [r.name for r in store.list() if r.name.startswith("containerd.")]


def test_next_container_gets_a_ready_spare(srv):
    """After a Prepare on a committed parent, a spare (a mounted clone of the
    parent) is made in the background; the next Prepare on that parent claims
    it: its mount is the spare's, already live.  Spares are invisible to List,
    the claimed one starts clean, and removing the parent removes its spare."""
    c = Client(srv.sock)
    mp = prepare(c, "img-a").mounts[0].source
    with open(os.path.join(mp, "f"), "w") as f:
        f.write("image\n")
    c.Commit(pb.CommitSnapshotRequest(name="img", key="img-a"))
    first = prepare(c, "c1", parent="img").mounts[0].source
    with open(os.path.join(first, "f"), "w") as f:
        f.write("changed by c1\n")
    spares = wait_for(lambda: _spares(srv.store), 30, "a spare of img")
    assert len(spares) == 1
    spare_mp = os.path.join(os.path.dirname(first), spares[0])
    wait_for(lambda: os.path.ismount(spare_mp), 30, "the spare's mount")
    keys = sorted(i.name for r in c.List(pb.ListSnapshotsRequest()) for i in r.info)
    assert keys == ["c1", "img"]
    second = prepare(c, "c2", parent="img").mounts[0].source
    assert second == spare_mp                                  # claimed, mounted before
    assert open(os.path.join(second, "f")).read() == "image\n"
    info = c.Stat(pb.StatSnapshotRequest(key="c2")).info
    assert info.parent == "img" and info.kind == pb.ACTIVE
    assert info.created_at.seconds >= int(time.time()) - 60
    keys = sorted(i.name for r in c.List(pb.ListSnapshotsRequest()) for i in r.info)
    assert keys == ["c1", "c2", "img"]
    wait_for(lambda: _spares(srv.store), 30, "the next spare of img")
    for k in ("c1", "c2", "img"):
        c.Remove(pb.RemoveSnapshotRequest(key=k))
    wait_for(lambda: _spares(srv.store) == [], 30, "the spare to go with its parent")
    wait_for(lambda: _containerd_trees(srv.store) == [], 30, "every tree to go")
    c.close()
    assert "Traceback" not in srv.log()


def test_spares_are_not_made_behind_slow_removals(srv):
    """Making a spare does not wait for the reaper: removals of containers
    whose mounts are still in use elsewhere (a file held open) each keep the
    reaper waiting up to RELEASE_WAIT, yet the next spare of an image is
    ready long before they are through."""
    c = Client(srv.sock)
    mp = prepare(c, "img-a").mounts[0].source
    with open(os.path.join(mp, "f"), "w") as f:
        f.write("image\n")
    c.Commit(pb.CommitSnapshotRequest(name="img", key="img-a"))
    held = []
    try:
        for i in range(4):
            m = prepare(c, f"h{i}", parent="img").mounts[0].source
            held.append(open(os.path.join(m, f"held{i}"), "w"))
        wait_for(lambda: _spares(srv.store), 30, "a spare of img")
        for i in range(4):                              # the reaper: ~4 x 2 s of waiting
            c.Remove(pb.RemoveSnapshotRequest(key=f"h{i}"))
        prepare(c, "c1", parent="img")                  # claims the spare, asks for the next
        t0 = time.monotonic()
        wait_for(lambda: _spares(srv.store), 30, "the next spare of img")
        took = time.monotonic() - t0
        assert took < 4.0, f"the next spare took {took:.1f} s (queued behind the removals?)"
    finally:
        for f in held:
            f.close()
    c.Remove(pb.RemoveSnapshotRequest(key="c1"))
    c.Remove(pb.RemoveSnapshotRequest(key="img"))
    c.close()
    assert "Traceback" not in srv.log()


def test_spare_is_warm_before_it_is_claimed(srv):
    """A spare's mount is warmed before a Prepare claims it: the dynamic loader
    and libc an image's programs read at their start are in the page cache of
    the spare's own mount (found through the image's absolute symlinks, inside
    the image), so the container does not start on a cold FUSE mount.  Warming
    only reads: the claimed spare holds exactly the image."""
    c = Client(srv.sock)
    mp = prepare(c, "img-a").mounts[0].source
    os.makedirs(os.path.join(mp, "usr/lib64"))
    os.makedirs(os.path.join(mp, "usr/lib/x86_64-linux-gnu"))
    os.makedirs(os.path.join(mp, "etc"))
    os.symlink("/usr/lib64", os.path.join(mp, "lib64"))                 # absolute: in the image
    os.symlink("usr/lib", os.path.join(mp, "lib"))
    loader = os.urandom(256 * 1024)
    with open(os.path.join(mp, "usr/lib64/ld-linux-x86-64.so.2"), "wb") as f:
        f.write(loader)
    with open(os.path.join(mp, "usr/lib/x86_64-linux-gnu/libc.so.6"), "wb") as f:
        f.write(os.urandom(512 * 1024))
    with open(os.path.join(mp, "etc/ld.so.cache"), "wb") as f:
        f.write(b"cache" * 1000)
    c.Commit(pb.CommitSnapshotRequest(name="img", key="img-a"))
    first = prepare(c, "c1", parent="img").mounts[0].source
    spares = wait_for(lambda: _spares(srv.store), 30, "a spare of img")
    spare_mp = os.path.join(os.path.dirname(first), spares[0])
    wait_for(lambda: os.path.ismount(spare_mp), 30, "the spare's mount")
    files = {"usr/lib64/ld-linux-x86-64.so.2": 64, "usr/lib/x86_64-linux-gnu/libc.so.6": 128,
             "etc/ld.so.cache": 2}
    for rel, pages in files.items():
        wait_for(lambda: cached_bytes(os.path.join(spare_mp, rel)) == pages * 4096, 10,
                 f"{rel} of the spare in the page cache")
    second = prepare(c, "c2", parent="img").mounts[0].source
    assert second == spare_mp
    with open(os.path.join(second, "usr/lib64/ld-linux-x86-64.so.2"), "rb") as f:
        assert f.read() == loader
    assert c.Usage(pb.UsageRequest(key="c2")).size == 0                 # nothing written
    for k in ("c1", "c2", "img"):
        c.Remove(pb.RemoveSnapshotRequest(key=k))
    wait_for(lambda: _containerd_trees(srv.store) == [], 30, "every tree to go")
    c.close()
    assert "Traceback" not in srv.log()


def test_client_gone_mid_call(srv):
    """A client that disconnects while its Prepare runs leaves a consistent state."""
    c = Client(srv.sock)
    fut = c.stub.Prepare.future(pb.PrepareSnapshotRequest(key="gone"), metadata=c.md)
    c.close()
    fut.cancel()
    c = Client(srv.sock)
    keys = [i.name for r in c.List(pb.ListSnapshotsRequest()) for i in r.info]
    assert keys in ([], ["gone"])
    if keys:
        c.Remove(pb.RemoveSnapshotRequest(key="gone"))
    prepare(c, "gone")
    c.Remove(pb.RemoveSnapshotRequest(key="gone"))
    c.close()


def test_filters():
    infos = [{"name": "a", "parent": "", "kind": "committed", "labels": {"x.y": "1"}},
             {"name": "b", "parent": "a", "kind": "active", "labels": {"l": "v"}}]

    def sel(*fs):
        f = parse_all(list(fs))
        return [i["name"] for i in infos if matches(i, f)]
    assert sel() == ["a", "b"]
    assert sel('parent!=""') == ["b"]
    assert sel("kind==committed") == ["a"]
    assert sel('labels."x.y"==1') == ["a"]
    assert sel("labels.l") == ["b"]
    assert sel("labels.l", "name==a") == ["a", "b"]          # OR
    assert sel("labels.l,name==a") == []                     # AND
    assert sel('labels."containerd.io/snapshot.ref"==sha256:x,parent=="a"') == []
    assert sel("name~=^b") == ["b"]


def test_unexpected_error_is_logged_with_its_request(srv):
    """An error outside blockstore's hierarchy becomes INTERNAL, and its
    traceback is logged together with the request that caused it."""
    import shutil
    c = Client(srv.sock)
    mnt = os.path.join(srv.root, "mnt")
    shutil.rmtree(mnt)
    with open(mnt, "w") as f:              # the mount directory replaced by a file
        f.write("in the way\n")
    try:
        code, _ = code_of(lambda: prepare(c, "boom"))
        assert code == grpc.StatusCode.INTERNAL
        log = srv.log()
        head = "Prepare ns='default' key='boom': unexpected error\nTraceback"
        assert head in log, log[-3000:]
        # the failed Prepare left nothing behind
        assert list(c.List(pb.ListSnapshotsRequest())) == []
    finally:
        os.unlink(mnt)
        os.mkdir(mnt, 0o700)
        c.close()
