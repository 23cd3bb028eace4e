"""FUSE mount options ``-o dev`` and ``-o suid`` (root only): device nodes and
set-id bits of a mounted image work, so a chroot into it needs no bind of
/dev; without them the mount is nodev,nosuid (the FUSE default).  Also the
mount commands' ``--json`` and the hint of a second mount (issue 16)."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

from blockstore import Store

from _fuse_helpers import needs_fuse, needs_root, public_dir

BIN = os.path.join(os.path.dirname(sys.executable), "blockstore")
pytestmark = [needs_fuse, needs_root,
              pytest.mark.skipif(not os.path.exists(BIN), reason="console script not installed")]


def bs(store, *args, code=0, **kw):
    r = subprocess.run([BIN, "--store", str(store), *map(str, args)], capture_output=True,
                       text=True, timeout=120, **kw)
    assert r.returncode == code, (args, r.returncode, r.stdout, r.stderr)
    return r


@pytest.fixture
def image(tmp_path):
    """A store with snapshot "img" holding a char device (1,3 = /dev/null) and a
    set-uid file, and a public directory for mount points."""
    src = tmp_path / "src"
    (src / "dev").mkdir(parents=True)
    os.mknod(src / "dev" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    (src / "suid").write_text("#!/bin/sh\n")
    os.chmod(src / "suid", 0o4755)
    store = tmp_path / "store"
    bs(store, "import", src, "img")
    base = public_dir()
    yield store, base
    for d in os.listdir(base):
        p = os.path.join(base, d)
        if os.path.ismount(p):
            subprocess.run([BIN, "--store", str(store), "umount", p], timeout=60)
    shutil.rmtree(base, ignore_errors=True)
    with Store.open(store) as s:
        assert s.check().ok


def _mnt(base, name):
    p = os.path.join(base, name)
    os.mkdir(p)
    return p


def test_dev_and_suid_options(image):
    store, base = image
    plain, devs = _mnt(base, "plain"), _mnt(base, "devs")
    bs(store, "mount", "img", plain)              # a tree mounts once at a time
    try:
        f = os.statvfs(plain).f_flag
        assert f & os.ST_NODEV and f & os.ST_NOSUID          # the safe default
        with pytest.raises(PermissionError):
            open(os.path.join(plain, "dev", "null"), "rb")
    finally:
        bs(store, "umount", plain)
    bs(store, "mount", "img", devs, "-o", "dev,suid")
    try:
        f = os.statvfs(devs).f_flag
        assert not f & os.ST_NODEV and not f & os.ST_NOSUID
        with open(os.path.join(devs, "dev", "null"), "rb") as fh:   # the device itself
            assert fh.read(10) == b""
        assert os.stat(os.path.join(devs, "suid")).st_mode & stat.S_ISUID
        with open(os.path.join(devs, "dev", "null"), "wb") as fh:   # writes go to the device
            fh.write(b"x" * 100)
        assert os.path.getsize(os.path.join(devs, "dev", "null")) == 0
    finally:
        bs(store, "umount", devs)


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
          # keeps read access to the venv under a private home; still not root
          "--inh-caps=+dac_override,+dac_read_search",
          "--ambient-caps=+dac_override,+dac_read_search"]


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_dev_and_suid_refused_for_non_root(image):
    store, base = image
    mnt = _mnt(base, "m")
    for opt in ("dev", "suid"):
        r = subprocess.run([*NOBODY, BIN, "--store", str(store), "mount", "img", mnt, "-o", opt],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 6, (opt, r.returncode, r.stderr)
        assert "root" in r.stderr and f"-o {opt}" in r.stderr, r.stderr
        assert not os.path.ismount(mnt)


def test_mount_json_and_second_mount_hint(image):
    store, base = image
    m1, m2 = _mnt(base, "m1"), _mnt(base, "m2")
    doc = json.loads(bs(store, "--json", "mount", "img", m1).stdout)
    assert doc == {"name": "img", "mountpoint": m1}
    try:
        r = bs(store, "mount", "img", m2, code=5)
        assert "--force" not in r.stderr and "umount" in r.stderr, r.stderr
        r = bs(store, "mount", "img", m1, code=5)          # the mount point is taken
        assert "--force" not in r.stderr and "umount" in r.stderr, r.stderr
        r = bs(store, "mount", "img", os.path.join(base, "missing"), code=3)
        assert "blockstore ls" not in r.stderr and "mkdir" in r.stderr, r.stderr
    finally:
        doc = json.loads(bs(store, "umount", m1, "--json").stdout)
    assert doc == {"mountpoint": m1}
