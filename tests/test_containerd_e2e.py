"""Real containers on blockstore (issue 19): a private containerd with
`blockstore snapshotter serve` as its proxy snapshotter, an image built
from a real Debian root file system, `ctr image import --snapshotter
blockstore` and `ctr run --rm --snapshotter blockstore`.

* a container reads, writes, renames a directory, deletes a lower file and
  runs programs from the image; a second container of the same image sees
  none of that;
* `ctr snapshots commit` of a stopped container's snapshot is a store
  snapshot whose diff against the image is exactly the container's changes;
* after a restart of both the snapshotter and containerd, containers run
  again;
* the fast path: layers imported with `blockstore import` first are not
  unpacked again when containerd's unpacker pulls the image (no Prepare
  that writes data: no Commit, no pool growth), pulled with containerd's
  unpacker (tests/containerd/pull/main.go, the CRI path) from a private
  registry on 127.0.0.1; and `ctr image import` after `blockstore
  snapshotter register` (containerd 1.6's Image.Unpack sends no
  containerd.io/snapshot.ref label and answers its Stat of each layer from
  its own database, so the layers must be registered with containerd
  first)."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time

import pytest

import blockstore
from _snapshotter import (Containerd, Registry, Server, build_image, check_store, cli, go_build,
                          needs_containerd, needs_fuse_root, private_base)

pytestmark = [needs_fuse_root, needs_containerd, pytest.mark.timeout(900),
              pytest.mark.skipif(shutil.which("umoci") is None, reason="needs umoci")]

IMAGE = "local/bs:img"
SCRIPT = ("set -e; cat /data/lower.txt; echo written > /data/new.txt; "
          "mv /data/dir /data/dir2; rm /data/gone.txt; ls /data; cat /data/dir2/file; "
          "busybox true && echo program-ran")


@pytest.fixture(scope="module")
def image_tar(tmp_path_factory):
    from test_oci_images import TOOLS, _rootfs_tar
    if any(shutil.which(t) is None for t in TOOLS):
        pytest.skip("needs mmdebstrap, umoci, skopeo")
    d = tmp_path_factory.mktemp("ctrd-img")
    return build_image(str(d), _rootfs_tar())


class Env:
    def __init__(self, store):
        self.base = private_base("bs-ctrd-e2e-")
        self.store = store
        self.server = Server(store, self.base)
        self.containerd = Containerd(self.base, self.server.sock)

    def start(self):
        self.server.start()
        self.containerd.start()
        return self

    def stop(self):
        self.containerd.stop()
        self.server.stop()

    def ctr(self, *args, **kw):
        return self.containerd.ctr(*args, **kw)

    def wait_connected(self, timeout: float = 30.0) -> None:
        """containerd redials a restarted proxy after a back-off (up to ~10 s
        after a failed dial): wait until it answers."""
        from _snapshotter import wait_for

        def probe():          # a call that reaches the proxy (ls answers from containerd's db)
            ok = self.ctr("snapshots", "--snapshotter", "blockstore", "prepare", "probe",
                          check=False).returncode == 0
            if ok:
                self.ctr("snapshots", "--snapshotter", "blockstore", "rm", "probe")
            return ok
        wait_for(probe, timeout, "containerd to redial the snapshotter")

    def run(self, cid: str, script: str, rm: bool = True) -> str:
        args = ["run"] + (["--rm"] if rm else []) + ["--snapshotter", "blockstore", IMAGE, cid,
                                                      "sh", "-c", script]
        return self.ctr(*args, timeout=120).stdout

    def close(self):
        try:
            for c in self.ctr("containers", "ls", "-q", check=False).stdout.split():
                self.ctr("tasks", "kill", "-s", "SIGKILL", c, check=False)
                self.ctr("tasks", "rm", "-f", c, check=False)
                self.ctr("containers", "rm", c, check=False)
        except Exception:                               # noqa: BLE001
            pass
        self.stop()
        self.server.unmount_all()
        for sub in ("root", "state"):
            d = os.path.join(self.containerd.base, sub)
            if os.path.isdir(d):
                os.system(f"umount -R -l {d}/* >/dev/null 2>&1")
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def env(tmp_store_dir):
    e = Env(tmp_store_dir).start()
    yield e
    e.close()
    check_store(tmp_store_dir)


def test_containers_run_change_and_stay_apart(env, image_tar):
    tar, _layout = image_tar
    t0 = time.perf_counter()
    env.ctr("image", "import", "--snapshotter", "blockstore", "--base-name", "local/bs", tar)
    unpack = time.perf_counter() - t0
    print(f"ctr image import (unpack into blockstore): {unpack:.2f} s")

    t0 = time.perf_counter()
    out = env.run("c1", SCRIPT)
    print(f"ctr run --rm (script): {time.perf_counter() - t0:.2f} s")
    assert "from the image" in out
    assert "in a directory" in out
    assert "program-ran" in out
    listing = out.split()
    assert "new.txt" in listing and "dir2" in listing and "gone.txt" not in listing

    out2 = env.run("c2", "ls /data; cat /data/lower.txt /data/gone.txt /data/dir/file; "
                         "test -e /data/new.txt && echo LEAK || echo clean")
    assert out2.split()[:3] == ["dir", "gone.txt", "lower.txt"], out2
    assert "deleted by the container" in out2 and "in a directory" in out2
    assert "clean" in out2 and "LEAK" not in out2

    # A stopped container's snapshot committed the ctr way: diff = the changes.
    env.run("c3", SCRIPT, rm=False)
    env.ctr("tasks", "rm", "c3", check=False)
    env.ctr("snapshots", "--snapshotter", "blockstore", "commit", "c3-committed", "c3")
    with blockstore.Store.open(str(env.store), create=False) as store:
        # containerd's backend keys are "NAMESPACE/ID/KEY"
        committed = [r for r in store.list()
                     if r.labels.get("blockstore.containerd.kind") == "committed"
                     and r.labels.get("blockstore.containerd.key", "").endswith("/c3-committed")]
        assert len(committed) == 1
        parent_key = committed[0].labels["blockstore.containerd.parent"]
        image_top = [r for r in store.list()
                     if r.labels.get("blockstore.containerd.key") == parent_key]
        assert len(image_top) == 1
        changes = {(c.kind, c.path) for c in store.diff(image_top[0].name, committed[0].name)}
    # (a directory added or deleted is one change; Store.diff does not list its entries)
    assert changes == {("C", "/data"), ("A", "/data/new.txt"), ("D", "/data/gone.txt"),
                       ("D", "/data/dir"), ("A", "/data/dir2")}, sorted(changes)
    env.ctr("containers", "rm", "c3")

    # Restart both; containers run again from the same image and snapshots.
    env.stop()
    env.start()
    env.wait_connected()
    out3 = env.run("c4", SCRIPT)
    assert "program-ran" in out3 and "from the image" in out3
    assert "Traceback" not in env.server.log()


def _unpack_calls(log: str) -> tuple[list, list]:
    """Outcomes of the unpack Prepares ("extract-" keys) and the Commits in a log."""
    prepares = re.findall(r"Prepare ns='[^']*' key='[^']*extract-[^']*'.* -> (\w+)", log)
    commits = re.findall(r"Commit ns='[^']*' key='[^']*extract-", log)
    return prepares, commits


needs_registry_and_go = pytest.mark.skipif(
    shutil.which("docker-registry") is None or shutil.which("go") is None,
    reason="needs docker-registry and go (make setup installs them)")


@pytest.fixture(scope="module")
def puller(tmp_path_factory):
    """containerd's unpacker as CRI uses it (tests/containerd/pull/main.go)."""
    return go_build("pull/main.go", str(tmp_path_factory.mktemp("gopath")), "blockstorepull")


def _pull(env, puller, ref):
    res = subprocess.run([puller, env.containerd.sock, "blockstore", ref], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr


@needs_registry_and_go
def test_fast_path_skips_unpacking_imported_layers(env, image_tar, puller):
    """`blockstore import` of the image first; then containerd's unpacker
    (client.Pull with WithPullUnpack, as CRI uses it) finds every layer present:
    each unpack Prepare answers ALREADY_EXISTS, nothing is written or
    committed, the pool does not grow, and containers run from it."""
    tar, layout = image_tar
    reg = Registry(env.base).start()
    try:
        reg.push(layout, "img", "bs:img")
        cli("import", f"{layout}:img", "debian-test", store=env.store)
        with blockstore.Store.open(str(env.store), create=False) as store:
            used_before = store.df().used_bytes
            layers = [r.name for r in store.list() if r.labels.get("oci.chain_id") == r.name]
        assert len(layers) == 2
        log_before = env.server.log()
        ref = f"{reg.host}/bs:img"
        t0 = time.perf_counter()
        _pull(env, puller, ref)
        took = time.perf_counter() - t0
        new_log = env.server.log()[len(log_before):]
        print(new_log[-3000:])
        prepares, commits = _unpack_calls(new_log)
        print(f"ctr image pull with the fast path: {took:.2f} s; unpack Prepares {prepares}, "
              f"{len(commits)} commits")
        assert prepares == ["ALREADY_EXISTS"] * len(prepares) and prepares, prepares
        assert commits == [], "a layer was unpacked (written and committed)"
        with blockstore.Store.open(str(env.store), create=False) as store:
            assert store.df().used_bytes == used_before
        out = env.ctr("run", "--rm", "--snapshotter", "blockstore", ref, "f1", "sh", "-c",
                      "cat /data/lower.txt; busybox true && echo program-ran", timeout=120).stdout
        assert "from the image" in out and "program-ran" in out
    finally:
        reg.stop()


def _import_and_register(env, layout, *register_args):
    """`blockstore import` of the test image as debian-test, then `snapshotter
    register` of it (with ``register_args``): (pool bytes before the register,
    the snapshotter's log before it, the register's result)."""
    cli("import", f"{layout}:img", "debian-test", store=env.store)
    with blockstore.Store.open(str(env.store), create=False) as store:
        used_before = store.df().used_bytes
    log_before = env.server.log()
    t0 = time.perf_counter()
    reg = cli("snapshotter", "register", "debian-test", "--containerd", env.containerd.sock,
              *register_args, store=env.store)
    print(f"register {' '.join(register_args)} {time.perf_counter() - t0:.2f} s\n{reg.stdout}")
    return used_before, log_before, reg


def test_fast_path_through_ctr_image_import(env, image_tar):
    """`blockstore import` of the image, `blockstore snapshotter register`,
    then `ctr image import --snapshotter blockstore`: containerd's Stat of
    each layer's chain ID finds it (registered), so no layer is unpacked
    (no unpack Prepare, no Commit), the pool does not grow, and containers
    run from it.  Without the register step containerd 1.6 answers that Stat
    from its own database and unpacks every layer (see register.py)."""
    tar, layout = image_tar
    used_before, log_before, reg = _import_and_register(env, layout)
    t1 = time.perf_counter()
    env.ctr("image", "import", "--snapshotter", "blockstore", "--base-name", "local/bs", tar)
    t2 = time.perf_counter()
    print(f"ctr image import {t2 - t1:.2f} s")
    lines = reg.stdout.split()
    assert lines.count("registered") == 2, reg.stdout
    new_log = env.server.log()[len(log_before):]
    prepares, commits = _unpack_calls(new_log)
    print(new_log[-3000:])
    assert prepares == ["ALREADY_EXISTS", "ALREADY_EXISTS"], prepares   # the register step's
    assert commits == [], "a layer was unpacked (written and committed)"
    with blockstore.Store.open(str(env.store), create=False) as store:
        assert store.df().used_bytes == used_before
    # Registering again finds them present; running uses the registered layers.
    again = cli("snapshotter", "register", "debian-test", "--containerd", env.containerd.sock,
                store=env.store)
    assert again.stdout.split().count("present") == 2, again.stdout
    out = env.run("r1", "cat /data/lower.txt; busybox true && echo program-ran")
    assert "from the image" in out and "program-ran" in out
    assert "Traceback" not in env.server.log()


def test_register_image_runs_without_ctr_image_import(env, image_tar):
    """`blockstore snapshotter register --image REF`: the layers are
    registered and REF is made from the manifest and config the store
    recorded, so the image runs with no `ctr image import`: containerd's
    content store holds those two documents and no layer blob, nothing is
    unpacked, the pool does not grow.  Registering again points REF at the
    same manifest ("image updated").  Containers run from it after both
    daemons restart (the image holds its snapshots against containerd's gc)."""
    _tar, layout = image_tar
    used_before, log_before, reg = _import_and_register(env, layout, "--image", "local/reg:img")
    assert reg.stdout.split().count("registered") == 2, reg.stdout
    assert "image created local/reg:img" in reg.stdout, reg.stdout
    images = env.ctr("image", "ls", "-q").stdout.split()
    assert images == ["local/reg:img"], images
    blobs = [line.split()[0] for line in env.ctr("content", "ls", "-q").stdout.splitlines()]
    assert len(blobs) == 2, blobs                       # the manifest and the config only
    out = env.ctr("run", "--rm", "--snapshotter", "blockstore", "local/reg:img", "g1", "sh", "-c",
                  "cat /data/lower.txt; busybox true && echo program-ran", timeout=120).stdout
    assert "from the image" in out and "program-ran" in out
    prepares, commits = _unpack_calls(env.server.log()[len(log_before):])
    assert prepares == ["ALREADY_EXISTS", "ALREADY_EXISTS"] and commits == [], (prepares, commits)
    with blockstore.Store.open(str(env.store), create=False) as store:
        assert store.df().used_bytes == used_before
    again = cli("snapshotter", "register", "debian-test", "--containerd", env.containerd.sock,
                "--image", "local/reg:img", "--json", store=env.store)
    import json
    entries = json.loads(again.stdout)
    assert [e["outcome"] for e in entries] == ["present", "present", "updated"], entries
    assert entries[-1]["image"] == "local/reg:img" and entries[0]["image"] is None
    assert entries[-1]["chain_id"] == entries[1]["chain_id"]
    env.stop()
    env.start()
    env.wait_connected()
    env.ctr("run", "--rm", "--snapshotter", "blockstore", "local/reg:img", "g2", "busybox", "true",
            timeout=120)
    assert "Traceback" not in env.server.log()


def test_register_image_refuses_an_image_without_its_documents(env, image_tar):
    """An image whose manifest the store does not hold: a clear error before
    anything reaches containerd (no layer registered, no image)."""
    _tar, layout = image_tar
    cli("import", f"{layout}:img", "debian-test", store=env.store)
    cli("label", "debian-test", "oci.manifest=", store=env.store)
    res = cli("snapshotter", "register", "debian-test", "--containerd", env.containerd.sock,
              "--image", "local/reg:img", store=env.store, check=False)
    assert res.returncode != 0 and "no manifest and config recorded" in res.stderr, res.stderr
    assert env.ctr("snapshots", "--snapshotter", "blockstore", "ls").stdout.count("sha256") == 0
    assert env.ctr("image", "ls", "-q").stdout.split() == []


def test_register_refuses_what_the_store_lacks(env, image_tar):
    """register of a tree that is no imported image: a clear error, exit code
    of InvalidInput, and nothing registered."""
    cli("volume", "create", "plain", store=env.store)
    res = cli("snapshotter", "register", "plain", "--containerd", env.containerd.sock,
              store=env.store, check=False)
    assert res.returncode != 0 and "no imported image layers" in res.stderr, res.stderr
    res = cli("snapshotter", "register", "nothing", "--containerd", env.containerd.sock,
              store=env.store, check=False)
    assert res.returncode != 0 and "nothing" in res.stderr
    assert env.ctr("snapshots", "--snapshotter", "blockstore", "ls").stdout.count("sha256") == 0


@needs_registry_and_go
def test_pull_without_fast_path_unpacks(env, image_tar, puller):
    """The control: without `blockstore import` first, the same pull unpacks
    every layer (a Prepare that answers ok and a Commit per layer)."""
    tar, layout = image_tar
    reg = Registry(env.base).start()
    try:
        reg.push(layout, "img", "bs:img")
        t0 = time.perf_counter()
        _pull(env, puller, f"{reg.host}/bs:img")
        took = time.perf_counter() - t0
        prepares, commits = _unpack_calls(env.server.log())
        print(f"ctr image pull without the fast path: {took:.2f} s; {len(commits)} commits")
        assert prepares == ["ok", "ok"] and len(commits) == 2
    finally:
        reg.stop()


def test_snapshotter_killed_during_unpack(env, image_tar):
    """SIGKILL of the snapshotter while containerd unpacks: the import fails,
    the store checks clean, and after a restart the next import unpacks and
    runs.  No traceback reaches the log."""
    tar, _layout = image_tar
    proc = subprocess.Popen(["ctr", "-a", env.containerd.sock, "-n", "default", "image", "import",
                             "--snapshotter", "blockstore", "--base-name", "local/bs", tar],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while "extract-" not in env.server.log() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)                                   # the unpack is writing through the mount
    env.server.stop(signal.SIGKILL)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, out
    check_store(env.store)
    env.server.start()
    env.wait_connected()
    env.ctr("image", "import", "--snapshotter", "blockstore", "--base-name", "local/bs", tar)
    out = env.run("k1", "cat /data/lower.txt; busybox true && echo program-ran")
    assert "from the image" in out and "program-ran" in out
    assert "Traceback" not in env.server.log()


from test_oci_images import _extract_export, image as oci_image  # noqa: E402,F401  (fixture)
import oci_ref as OR  # noqa: E402


def test_unpack_equals_umoci_unpack(env, oci_image, tmp_path):
    """containerd unpacks each layer into a staging directory (overlay
    upperdir: whiteouts as 0/0 devices, opaque directories as xattrs) and the
    store imports it as a layer: the result must be exactly what `umoci
    unpack` makes of the image of tests/test_oci_images.py (deleted and
    replaced directories, an opaque directory, a deleted file, hard links
    within a layer and to a lower file, xattrs, a fifo, nanosecond times)."""
    env.ctr("image", "import", "--snapshotter", "blockstore", "--base-name", "local/oci",
            oci_image["layout_tar"])
    with blockstore.Store.open(str(env.store), create=False) as store:
        committed = [r for r in store.list()
                     if r.labels.get("blockstore.containerd.kind") == "committed"]
        keys = {r.labels["blockstore.containerd.key"] for r in committed}
        tops = [r for r in committed
                if not any(o.labels.get("blockstore.containerd.parent") ==
                           r.labels["blockstore.containerd.key"] for o in committed)]
        assert len(committed) == 4 and len(keys) == 4 and len(tops) == 1
        got = _extract_export(store, tops[0].name, str(tmp_path / "x"))
    # What containerd itself does not apply, whatever the snapshotter (seen
    # the same with the FUSE-mount unpack): a layer's entry for the root
    # directory ("resolved to root": the root keeps the snapshotter's own),
    # and trusted.* xattrs of the layer.
    def untrusted(desc):
        out = {}
        for path, t in desc.items():
            t = list(t)
            t[-1] = tuple(x for x in t[-1] if not str(x[0]).startswith("trusted."))
            out[path] = tuple(t)
        return out
    diffs = [d for d in OR.diff_desc(untrusted(got), untrusted(oci_image["want"]))
             if d[0] != "/"]
    for d in diffs:
        print(d)
    assert diffs == []
    assert "Traceback" not in env.server.log()
