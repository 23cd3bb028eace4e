"""Images keep what they are through the store (issue 16, items 4 and 5):

* the image config (Cmd, Env, Entrypoint, WorkingDir...) follows an image
  into its clones and their commits, and the exported history gains an
  entry per committed layer;
* an imported image exports with its original layer blobs (same digests,
  same diff IDs, same manifest: a digest-identical round trip like
  ``skopeo copy``), layers made in the store are compressed (gzip by
  default, zstd on request), and importing an export again reuses every
  layer snapshot (no new layers, no new data)."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile

import pytest

from blockstore.oci import export_image, import_image

import oci_ref as R

CONFIG = {"Cmd": ["/bin/sh", "-c", "run"], "Env": ["PATH=/usr/bin", "A=b"],
          "Entrypoint": ["/entry"], "WorkingDir": "/app", "User": "1000"}


def _sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def make_layout(root, layers, *, compress="gzip", tag="t"):
    """An OCI layout as other tools write it: gzip layers (mtime set, level 9),
    a config with history, the manifest with an annotation.  Returns facts."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(b: bytes) -> str:
        d = _sha(b)
        (blobs / d[7:]).write_bytes(b)
        return d
    descs, ids = [], []
    for i, tar in enumerate(layers):
        ids.append(_sha(tar))
        if compress == "gzip":
            blob = gzip.compress(tar, compresslevel=9, mtime=1_600_000_000 + i)
            media = "application/vnd.oci.image.layer.v1.tar+gzip"
        else:
            blob, media = tar, "application/vnd.oci.image.layer.v1.tar"
        descs.append({"mediaType": media, "digest": put(blob), "size": len(blob)})
    cfg = {"created": "2020-01-01T00:00:00Z", "architecture": "amd64", "os": "linux",
           "config": CONFIG, "rootfs": {"type": "layers", "diff_ids": ids},
           "history": [{"created": "2020-01-01T00:00:00Z", "created_by": f"step {i}"}
                       for i in range(len(layers))]}
    raw_cfg = json.dumps(cfg, indent=2).encode()       # not blockstore's own JSON style
    cdesc = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(raw_cfg),
             "size": len(raw_cfg)}
    raw_man = json.dumps({"schemaVersion": 2,
                          "mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "config": cdesc, "layers": descs,
                          "annotations": {"made.by": "test"}}, indent=1).encode()
    mdesc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(raw_man),
             "size": len(raw_man), "annotations": {"org.opencontainers.image.ref.name": tag}}
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [mdesc]}))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return {"layers": [d["digest"] for d in descs], "diff_ids": ids, "manifest": mdesc["digest"],
            "config": cdesc["digest"]}


def read_layout(root):
    """(manifest digest, manifest, config, {digest: blob bytes}) of a one-image layout."""
    index = json.loads((root / "index.json").read_text())
    mdesc = index["manifests"][0]
    blob = lambda d: (root / "blobs" / "sha256" / d[7:]).read_bytes()   # noqa: E731
    man = json.loads(blob(mdesc["digest"]))
    for d in [man["config"]] + man["layers"]:
        assert _sha(blob(d["digest"])) == d["digest"] and len(blob(d["digest"])) == d["size"]
    return mdesc["digest"], man, json.loads(blob(man["config"]["digest"])), blob


LAYERS = [R.layer([("bin", "d"), ("bin/sh", "f", os.urandom(300_000)), ("etc", "d"),
                   ("etc/motd", "f", "hello\n")]),
          R.layer([("etc/new", "f", b"n" * 50_000), ("etc/.wh.motd", "f", b"")])]


@pytest.fixture
def layout(tmp_path):
    root = tmp_path / "src"
    return root, make_layout(root, LAYERS)


# -- item 4: the image config follows clones and commits ------------------------------------------

def test_commit_of_a_clone_keeps_the_image_config(store, layout, tmp_path):
    root, facts = layout
    import_image(store, str(root), "img")
    store.clone("img", "c1")
    with store.fs("c1") as fs:
        fs.makedirs("/app", exist_ok=True)
        fs.write_bytes("/app/main", b"main\n")
    store.commit("c1", "app-v1")
    out = tmp_path / "out"
    export_image(store, "app-v1", out)
    _, man, cfg, _ = read_layout(out)
    assert cfg["config"] == CONFIG
    assert (cfg["os"], cfg["architecture"]) == ("linux", "amd64")
    assert len(cfg["rootfs"]["diff_ids"]) == len(man["layers"]) == 3
    assert cfg["rootfs"]["diff_ids"][:2] == facts["diff_ids"]
    assert [h.get("created_by") for h in cfg["history"]][:2] == ["step 0", "step 1"]
    assert len(cfg["history"]) == 3 and "app-v1" in cfg["history"][2]["created_by"]
    # a clone of the commit, committed again: still the same config, one more layer
    store.clone("app-v1", "c2")
    with store.fs("c2") as fs:
        fs.write_bytes("/app/more", b"more\n")
    store.commit("c2", "app-v2")
    out2 = tmp_path / "out2"
    export_image(store, "app-v2", out2)
    _, man2, cfg2, _ = read_layout(out2)
    assert cfg2["config"] == CONFIG and len(man2["layers"]) == len(cfg2["history"]) == 4
    # labels given at commit are the user's; the carried config stays
    store.commit("c2", "app-v3", labels={"team": "x"})
    assert store.info("app-v3").labels["team"] == "x"
    out3 = tmp_path / "out3"
    export_image(store, "app-v3", out3)
    assert read_layout(out3)[2]["config"] == CONFIG


# -- item 5: digest-identical round trip, compressed new layers, reuse on re-import ---------------

@pytest.mark.parametrize("compress", ["gzip", "none"])
def test_export_of_an_import_is_digest_identical(store, tmp_path, compress):
    root = tmp_path / "src"
    facts = make_layout(root, LAYERS, compress=compress)
    import_image(store, str(root), "img")
    out = tmp_path / "out"
    res = export_image(store, "img", out, tag="t")
    mdig, man, cfg, blob = read_layout(out)
    assert [d["digest"] for d in man["layers"]] == facts["layers"]
    assert cfg["rootfs"]["diff_ids"] == facts["diff_ids"]
    assert mdig == facts["manifest"] == res["manifest"]
    assert man["config"]["digest"] == facts["config"]
    for d in facts["layers"]:
        assert blob(d) == (root / "blobs" / "sha256" / d[7:]).read_bytes()


def test_reimport_of_an_export_reuses_layers_and_space(store, layout, tmp_path):
    root, facts = layout
    import_image(store, str(root), "img")
    out = tmp_path / "out"
    export_image(store, "img", out)
    before = {r.name for r in store.list()}
    used = store.df().used_bytes
    import_image(store, str(out), "img2")
    assert {r.name for r in store.list()} - before == {"img2"}
    assert store.df().used_bytes - used <= 64 * 1024          # metadata, no layer data
    assert store.info("img2").root == store.info("img").root
    out2 = tmp_path / "out2"
    export_image(store, "img2", out2)
    assert read_layout(out2)[0] == facts["manifest"]


@pytest.mark.parametrize("compression,magic,media", [
    (None, b"\x1f\x8b", "application/vnd.oci.image.layer.v1.tar+gzip"),
    ("gzip", b"\x1f\x8b", "application/vnd.oci.image.layer.v1.tar+gzip"),
    ("zstd", b"\x28\xb5\x2f\xfd", "application/vnd.oci.image.layer.v1.tar+zstd")])
def test_new_layers_are_compressed(store, layout, tmp_path, compression, magic, media):
    root, facts = layout
    import_image(store, str(root), "img")
    store.clone("img", "c")
    with store.fs("c") as fs:
        fs.write_bytes("/big", b"abc" * 200_000)
    store.commit("c", "v1")
    out = tmp_path / "out"
    kw = {} if compression is None else {"compression": compression}
    export_image(store, "v1", out, **kw)
    _, man, cfg, blob = read_layout(out)
    assert [d["digest"] for d in man["layers"][:2]] == facts["layers"]
    new = man["layers"][2]
    assert new["mediaType"] == media
    data = blob(new["digest"])
    assert data.startswith(magic) and len(data) < 100_000
    if magic == b"\x1f\x8b":
        tar = gzip.decompress(data)
    else:
        import zstandard
        tar = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    assert _sha(tar) == cfg["rootfs"]["diff_ids"][2]
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        assert [m.name for m in tf.getmembers()] == [".", "big"]     # the root: new mtime
    # the export of the commit imports again onto the same base layers
    # and reuses every layer snapshot, the committed one included: nothing new is stored
    before = {r.name for r in store.list()}
    used = store.df().used_bytes
    import_image(store, str(out), "v1-again")
    assert {r.name for r in store.list()} - before == {"v1-again"}
    assert store.df().used_bytes - used <= 64 * 1024
    assert store.info("v1-again").root == store.info("v1").root
    assert store.info("v1").labels["oci.chain_id"] == _chain_id(cfg["rootfs"]["diff_ids"])
    out2 = tmp_path / "out2"
    export_image(store, "v1-again", out2, **kw)
    assert read_layout(out2)[1]["layers"] == man["layers"]      # the same blobs again


def _chain_id(ids):
    c = ids[0]
    for d in ids[1:]:
        c = "sha256:" + hashlib.sha256(f"{c} {d}".encode()).hexdigest()
    return c


def test_clones_do_not_keep_layer_blobs(store, tmp_path):
    """A clone is not the layer it came from: it does not hold the layer's blob, so
    removing the image frees the blob even while a container of it lives on; an
    unchanged clone committed adds no layer."""
    root = tmp_path / "src"
    facts = make_layout(root, [R.layer([("etc", "d"), ("etc/a", "f", "a")]),
                               R.layer([("etc/new", "f", b"n" * 50_000),
                                        ("big", "f", os.urandom(400_000))])])
    import_image(store, str(root), "img")
    blob_bytes = os.path.getsize(root / "blobs" / "sha256" / facts["layers"][1][7:])
    store.clone("img", "c")
    store.commit("c", "same")
    out = tmp_path / "out"
    export_image(store, "same", out)
    _, man, cfg, _ = read_layout(out)
    assert [d["digest"] for d in man["layers"]] == facts["layers"]
    assert cfg["rootfs"]["diff_ids"] == facts["diff_ids"]
    store.remove("same")
    used = store.df().used_bytes
    for name in store.lineage("img"):
        store.remove(name, force=True)
    store.gc()
    freed = used - store.df().used_bytes
    assert freed >= blob_bytes * 0.9, (freed, blob_bytes)
    with store.fs("c") as fs:
        assert fs.read_bytes("/etc/new") == b"n" * 50_000


def test_cli_clone_commit_export_keeps_config_and_compresses(tmp_path):
    """The issue's workflow through the CLI: import, clone, change, commit, export."""
    from click.testing import CliRunner

    from blockstore.cli import main
    store = str(tmp_path / "store")
    runner = CliRunner()

    def run(*args):
        r = runner.invoke(main, ["--store", store, *map(str, args)], catch_exceptions=False)
        assert r.exit_code == 0, (args, r.stdout, r.stderr)
        return r
    root = tmp_path / "src"
    facts = make_layout(root, LAYERS)
    run("import", str(root), "img")
    run("clone", "img", "c1")
    host = tmp_path / "main"
    host.write_text("main\n")
    run("cp", str(host), "c1:/main")
    run("commit", "c1", "app-v1")
    out = tmp_path / "out"
    run("export", "app-v1", str(out), "--format", "oci", "--compression", "zstd")
    _, man, cfg, blob = read_layout(out)
    assert cfg["config"] == CONFIG
    assert [d["digest"] for d in man["layers"][:2]] == facts["layers"]
    assert man["layers"][2]["mediaType"].endswith("+zstd")
    assert blob(man["layers"][2]["digest"]).startswith(b"\x28\xb5\x2f\xfd")
    assert "image.config=" in run("ls").stdout


def test_kept_blob_with_zero_blocks_round_trips(store, tmp_path):
    """A blob may hold whole zero blocks (gzip level 0 stores data as it is): they
    are holes in the pool and read back as zeros."""
    root = tmp_path / "src"
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    tar = R.layer([("zeros", "f", bytes(200_000)), ("r", "f", os.urandom(5000))])
    blob = gzip.compress(tar, compresslevel=0, mtime=0)
    assert bytes(8192) in blob
    d = _sha(blob)
    (blobs / d[7:]).write_bytes(blob)
    cfg = json.dumps({"rootfs": {"type": "layers", "diff_ids": [_sha(tar)]}}).encode()
    (blobs / _sha(cfg)[7:]).write_bytes(cfg)
    man = json.dumps({"schemaVersion": 2, "config": {"digest": _sha(cfg), "size": len(cfg)},
                      "layers": [{"digest": d, "size": len(blob)}]}).encode()
    (blobs / _sha(man)[7:]).write_bytes(man)
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2,
                                                 "manifests": [{"digest": _sha(man)}]}))
    import_image(store, str(root), "img")
    out = tmp_path / "out"
    export_image(store, "img", out)
    mdig, man_doc, _, rd = read_layout(out)
    assert mdig == _sha(man) and rd(d) == blob
