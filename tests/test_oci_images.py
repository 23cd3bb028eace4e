"""Real images: a Debian root filesystem (mmdebstrap, cached under
~/.cache/blockstore-tests) made into an OCI layout with umoci (a base layer,
a repacked layer deleting files and a directory, adding hard links, xattrs,
sub-second mtimes, an ``insert --opaque`` directory replacement and an
``insert --whiteout``) and into a docker archive with skopeo.  Import ->
export -> extract must equal ``umoci unpack`` of the same image exactly;
exported images must be accepted by umoci and skopeo."""
from __future__ import annotations

import io
import os
import shutil
import subprocess

import pytest

from blockstore import Store
from blockstore.oci import export_image, export_tar, import_image

import oci_ref as R

TOOLS = ("mmdebstrap", "umoci", "skopeo")
CACHE = os.path.expanduser("~/.cache/blockstore-tests")
ROOTFS_TAR = os.path.join(CACHE, "debian-bookworm-extract-busybox-tzdata.tar")

pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in TOOLS) or os.geteuid() != 0,
    reason="needs root and mmdebstrap, umoci, skopeo (Debian packages; `make setup` installs them)")


def sh(*cmd, cwd=None):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, f"{cmd}: {r.stderr[-2000:]}"
    return r.stdout


def _rootfs_tar() -> str:
    if not os.path.exists(ROOTFS_TAR):
        os.makedirs(CACHE, exist_ok=True)
        tmp = ROOTFS_TAR[:-4] + f".{os.getpid()}.tmp.tar"     # the suffix picks the format
        # Valid-Until off: the mirror's Release files may be older than this machine's
        # clock allows (packages are still signature-checked).
        sh("mmdebstrap", "--quiet", "--variant=extract", "--include=busybox,base-files,tzdata",
           "--mode=root", '--aptopt=Acquire::Check-Valid-Until "false"', "bookworm", tmp)
        os.replace(tmp, ROOTFS_TAR)
    return ROOTFS_TAR


def _untar(tarpath, dst):
    os.makedirs(dst, exist_ok=True)
    sh("tar", "-C", str(dst), "--xattrs", "--xattrs-include=*", "--numeric-owner",
       "-xpf", str(tarpath))


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    t = tmp_path_factory.mktemp("img")
    L, B = str(t / "layout"), str(t / "bundle")
    sh("umoci", "init", "--layout", L)
    sh("umoci", "new", "--image", f"{L}:img")
    sh("umoci", "unpack", "--image", f"{L}:img", B)
    rootfs = os.path.join(B, "rootfs")
    _untar(_rootfs_tar(), rootfs)
    sh("umoci", "repack", "--refresh-bundle", "--image", f"{L}:img", B)   # layer 1: base
    r = lambda *p: os.path.join(rootfs, *p)                                # noqa: E731
    shutil.rmtree(r("usr/share/zoneinfo/Asia"))                            # delete a directory
    os.unlink(r("etc/issue.net"))                                          # delete a file
    shutil.rmtree(r("usr/share/doc/busybox"))                              # replace a directory
    os.mkdir(r("usr/share/doc/busybox"))
    with open(r("usr/share/doc/busybox/NEW"), "w") as f:
        f.write("replaced\n")
    with open(r("etc/new"), "w") as f:
        f.write("new\n")
    os.link(r("etc/new"), r("etc/new-link"))                               # hard links
    os.link(r("usr/share/zoneinfo/UTC"), r("etc/utc-hardlink"))            # link to a lower file
    os.setxattr(r("etc/new"), "user.blockstore", b"\x00\xffxattr")
    os.setxattr(r("usr/share/doc"), "trusted.dir", b"d")
    os.utime(r("etc/new"), ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    os.mknod(r("etc/fifo"), 0o10644)
    sh("umoci", "repack", "--image", f"{L}:img", B)                       # layer 2: whiteouts
    src = t / "america"
    src.mkdir()
    (src / "only").write_text("only\n")
    sh("umoci", "insert", "--image", f"{L}:img", "--opaque", str(src),
       "/usr/share/zoneinfo/America")                                      # layer 3: opaque
    sh("umoci", "insert", "--image", f"{L}:img", "--whiteout", "/etc/issue")  # layer 4
    D = str(t / "docker.tar")
    sh("skopeo", "copy", "-q", f"oci:{L}:img", f"docker-archive:{D}:test/img:latest")
    U = str(t / "unpacked")
    sh("umoci", "unpack", "--image", f"{L}:img", U)
    Lt = str(t / "layout.tar")
    sh("tar", "-C", L, "-cf", Lt, ".")
    return {"layout": L, "docker": D, "layout_tar": Lt, "want": R.describe(os.path.join(U, "rootfs")),
            "tmp": t}


def _extract_export(store, name, dst):
    buf = dst + ".tar"
    export_tar(store, name, buf)
    _untar(buf, dst)
    return R.describe(dst)


def test_real_image_round_trips(image, tmp_store_dir, tmp_path):
    want = image["want"]
    with Store.open(tmp_store_dir) as s:
        rec = import_image(s, f"{image['layout']}:img", "deb")
        chain = [n for n in s.lineage("deb")][1:]
        assert len(chain) == 4 and all(n.startswith("sha256:") for n in chain)
        got = _extract_export(s, "deb", str(tmp_path / "x1"))
        assert R.diff_desc(got, want) == []
        # docker archive (skopeo) shares every layer: no new layer snapshot, ~0 bytes
        before = {r.name for r in s.list()}
        used = s.df()
        import_image(s, image["docker"], "deb-docker")
        assert {r.name for r in s.list()} - before == {"deb-docker"}
        assert s.diff("deb", "deb-docker") == []
        assert s.info("deb-docker").root == rec.root
        del used
        # OCI layout as a tar, chosen by tag
        import_image(s, f"{image['layout_tar']}:img", "deb-tar")
        assert s.info("deb-tar").root == rec.root
        # exported image: umoci unpacks it to the same tree (umoci applies our diff layers)
        out = str(tmp_path / "exported")
        export_image(s, "deb", out, tag="rt")
        sh("umoci", "unpack", "--image", f"{out}:rt", str(tmp_path / "u2"))
        assert R.diff_desc(R.describe(str(tmp_path / "u2" / "rootfs")), want) == []
        # docker format: skopeo reads it; re-import gives the same tree
        dout = str(tmp_path / "exported.tar")
        export_image(s, "deb", dout, format="docker", tag="blockstore/deb:rt")
        sh("skopeo", "inspect", f"docker-archive:{dout}")
        sh("skopeo", "copy", "-q", f"docker-archive:{dout}", f"oci:{tmp_path / 'fromdocker'}:x")
        import_image(s, str(tmp_path / "fromdocker") + ":x", "deb-rt")
        assert R.diff_desc(_extract_export(s, "deb-rt", str(tmp_path / "x2")), want) == []
        # every diff layer re-applied by the reference applier onto its parent gives the child
        prev = None
        for n in reversed(chain):
            if prev is not None:
                d = tmp_path / f"ref-{n[7:19]}"
                s.export_dir(prev, d)
                buf = io.BytesIO()
                export_tar(s, n, buf, parent=prev)
                R.apply_layer(str(d), buf.getvalue())
                c = tmp_path / f"child-{n[7:19]}"
                s.export_dir(n, c)
                assert R.diff_desc(R.describe(str(d)), R.describe(str(c))) == [], n
            prev = n
        assert s.check().ok


def _layout_facts(layout, tag):
    import json
    index = json.load(open(os.path.join(layout, "index.json")))
    mdesc = [m for m in index["manifests"]
             if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag][0]
    blob = lambda d: open(os.path.join(layout, "blobs", "sha256", d[7:]), "rb").read()  # noqa: E731
    man = json.loads(blob(mdesc["digest"]))
    cfg = json.loads(blob(man["config"]["digest"]))
    return {"manifest": mdesc["digest"], "config": man["config"]["digest"],
            "layers": [d["digest"] for d in man["layers"]],
            "sizes": [d["size"] for d in man["layers"]], "diff_ids": cfg["rootfs"]["diff_ids"]}


def test_real_image_export_is_digest_identical_and_reimport_is_free(image, tmp_store_dir,
                                                                    tmp_path):
    """umoci's image (gzip layers) -> import -> export: the same blobs, diff IDs and
    manifest; skopeo copies the export unchanged; importing either again adds no
    layer snapshot and no data (issue 16, item 5)."""
    src = _layout_facts(image["layout"], "img")
    with Store.open(tmp_store_dir) as s:
        import_image(s, f"{image['layout']}:img", "deb")
        out = str(tmp_path / "exported")
        export_image(s, "deb", out, tag="rt")
        got = _layout_facts(out, "rt")
        assert got == src
        copy = str(tmp_path / "copied")
        sh("skopeo", "copy", "-q", f"oci:{out}:rt", f"oci:{copy}:rt")
        assert _layout_facts(copy, "rt") == src
        names = {r.name for r in s.list()}
        used = s.df().used_bytes
        import_image(s, f"{out}:rt", "deb-again")
        import_image(s, f"{copy}:rt", "deb-copied")
        assert {r.name for r in s.list()} - names == {"deb-again", "deb-copied"}
        assert s.df().used_bytes - used <= 256 * 1024
        assert s.info("deb-again").root == s.info("deb-copied").root == s.info("deb").root
        assert s.check().ok
