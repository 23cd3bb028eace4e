"""Whiteouts below a path the same layer replaced (issue 16 item 1).

umoci writes a directory that became a file as the file first, then the
whiteouts of the old directory's children.  Whiteouts hide lower content
only: below a path this layer made a non-directory there is nothing to hide,
in either order.  Checked against the reference applier (oci_ref) and
against layers umoci itself writes."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile

import pytest

from blockstore.errors import BlockstoreError
from blockstore.oci import import_image

import oci_ref as R

BASE = [("etc/", "d"), ("etc/cron.daily/", "d"), ("etc/cron.daily/apt-compat", "f", "a"),
        ("etc/cron.daily/dpkg", "f", "d"), ("etc/cron.daily/sub/", "d"),
        ("etc/cron.daily/sub/x", "f", "x"), ("etc/keep", "f", "k")]
FILE = ("etc/cron.daily", "f", "now a file")
LINK = ("etc/cron.daily", "l", "/elsewhere")
WHITEOUTS = [("etc/cron.daily/.wh.apt-compat", "f", ""), ("etc/cron.daily/.wh.dpkg", "f", ""),
             ("etc/cron.daily/sub/.wh.x", "f", ""), ("etc/cron.daily/.wh..wh..opq", "f", "")]


def _check_against_reference(store, tmp_path, top):
    import_image(store, io.BytesIO(R.layer(BASE)), "base")
    import_image(store, io.BytesIO(R.layer(top)), "top", parent="base")
    ref = tmp_path / "ref"
    ref.mkdir()
    R.apply_layer(str(ref), R.layer(BASE))
    R.apply_layer(str(ref), R.layer(top))
    out = tmp_path / "out"
    store.export_dir("top", str(out))
    assert R.diff_desc(R.describe(str(out), with_root=False),
                       R.describe(str(ref), with_root=False)) == []
    return out


@pytest.mark.parametrize("replacement", [FILE, LINK], ids=["file", "symlink"])
def test_whiteouts_after_the_replacing_entry(store, tmp_path, replacement):
    out = _check_against_reference(store, tmp_path, [replacement] + WHITEOUTS)
    if replacement is FILE:
        assert (out / "etc/cron.daily").read_text() == "now a file"
    else:
        assert os.readlink(out / "etc/cron.daily") == "/elsewhere"
    assert (out / "etc/keep").read_text() == "k"


def test_whiteouts_before_the_replacing_entry(store, tmp_path):
    out = _check_against_reference(store, tmp_path, WHITEOUTS + [FILE])
    assert (out / "etc/cron.daily").read_text() == "now a file"


def test_whiteout_below_a_lower_symlink_is_still_refused(store):
    import_image(store, io.BytesIO(R.layer(BASE + [("lnk", "l", "/etc")])), "base")
    with pytest.raises(BlockstoreError, match=r"'lnk/\.wh\.passwd'.*symlink"):
        import_image(store, io.BytesIO(R.layer([("lnk/.wh.passwd", "f", "")])), "t",
                     parent="base")


def _sh(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"{cmd}: {r.stderr[-2000:]}"


@pytest.fixture(scope="module")
def umoci_image(tmp_path_factory):
    """An image whose second layer umoci wrote after a directory became a file."""
    if shutil.which("umoci") is None or os.geteuid() != 0:
        pytest.skip("needs root and umoci (`make setup` installs it)")
    t = tmp_path_factory.mktemp("umoci")
    L, B = str(t / "layout"), str(t / "bundle")
    _sh("umoci", "init", "--layout", L)
    _sh("umoci", "new", "--image", f"{L}:img")
    _sh("umoci", "unpack", "--image", f"{L}:img", B)
    d = os.path.join(B, "rootfs", "etc", "cron.daily")
    os.makedirs(d)
    for n in ("apt-compat", "dpkg"):
        with open(os.path.join(d, n), "w") as f:
            f.write(n)
    _sh("umoci", "repack", "--refresh-bundle", "--image", f"{L}:img", B)
    shutil.rmtree(d)
    with open(d, "w") as f:
        f.write("now a file\n")
    _sh("umoci", "repack", "--image", f"{L}:img", B)
    U = str(t / "unpacked")
    _sh("umoci", "unpack", "--image", f"{L}:img", U)
    srcs = {"layout": f"{L}:img"}
    srcs["layout-tar"] = str(t / "layout.tar")
    _sh("tar", "-C", L, "-cf", srcs["layout-tar"], ".")
    if shutil.which("skopeo"):
        srcs["docker"] = str(t / "docker.tar")
        _sh("skopeo", "copy", "-q", f"oci:{L}:img", f"docker-archive:{srcs['docker']}:x/img:1")
    return {"layout": L, "srcs": srcs, "want": R.describe(os.path.join(U, "rootfs"),
                                                           with_root=False)}


def test_umoci_writes_the_file_before_the_whiteouts(umoci_image):
    import json
    L = umoci_image["layout"]
    with open(os.path.join(L, "index.json")) as f:
        man_digest = json.load(f)["manifests"][0]["digest"]
    with open(os.path.join(L, "blobs/sha256", man_digest[7:])) as f:
        top = json.load(f)["layers"][-1]["digest"]
    with tarfile.open(os.path.join(L, "blobs/sha256", top[7:])) as tf:
        names = [m.name.lstrip("./") for m in tf]
    assert names.index("etc/cron.daily") < names.index("etc/cron.daily/.wh.apt-compat")


@pytest.mark.parametrize("kind", ["layout", "layout-tar", "docker"])
def test_umoci_layer_replacing_a_directory_by_a_file(store, tmp_path, umoci_image, kind):
    src = umoci_image["srcs"].get(kind)
    if src is None:
        pytest.skip("needs skopeo")
    import_image(store, src, "img")
    with store.fs("img") as fs:
        assert fs.read_bytes("/etc/cron.daily") == b"now a file\n"
    out = tmp_path / "out"
    store.export_dir("img", str(out))
    assert R.diff_desc(R.describe(str(out), with_root=False), umoci_image["want"]) == []
