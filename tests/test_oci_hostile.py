"""Hostile layers and images: each is refused with an error naming the entry,
and the store is left unchanged (no snapshot, no working clone, check ok)."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from blockstore import Store
from blockstore.errors import BlockstoreError
from blockstore.oci import import_image

import oci_ref as R


@pytest.fixture
def store(tmp_store_dir):
    with Store.open(tmp_store_dir) as s:
        import_image(s, io.BytesIO(R.layer([("./", "d"), ("etc/", "d"), ("etc/passwd", "f", "root"),
                                            ("out", "l", "/etc"), ("rel", "l", "../../..")])),
                     "base")
        yield s


def _refused(store, data, match, **kw):
    names = sorted(r.name for r in store.list())
    usage = store.df()
    with pytest.raises(BlockstoreError, match=match):
        import_image(store, io.BytesIO(data) if isinstance(data, bytes) else data, "new",
                     parent=kw.pop("parent", "base"), **kw)
    assert sorted(r.name for r in store.list()) == names
    assert store.check().ok
    return usage


def test_dotdot(store):
    _refused(store, R.layer([("a/../../etc/x", "f", "x")]), r"'a/../../etc/x'.*'\.\.'")


def test_absolute(store):
    _refused(store, R.layer([("ok", "f", "x"), ("/etc/shadow", "f", "x")]),
             r"'/etc/shadow'.*absolute")


@pytest.mark.parametrize("link", ["out", "rel"])
def test_write_through_symlink(store, link):
    _refused(store, R.layer([(f"{link}/passwd", "f", "pwned")]), rf"'{link}/passwd'.*symlink")


def test_symlink_made_in_same_layer_then_written_through(store):
    _refused(store, R.layer([("esc", "l", "/"), ("esc/etc/x", "f", "x")]),
             r"'esc/etc/x'.*symlink")


def test_whiteout_through_symlink(store):
    _refused(store, R.layer([("out/.wh.passwd", "f", "")]), r"'out/\.wh\.passwd'.*symlink")


@pytest.mark.parametrize("target", ["../../etc/passwd", "/etc/passwd", "missing", "later"])
def test_bad_hard_links(store, target):
    _refused(store, R.layer([("h", "h", target), ("later", "f", "x")]), r"'h'")


def test_hard_link_through_symlink(store):
    _refused(store, R.layer([("h", "h", "out/passwd")]), r"'h'.*symlink")


def test_duplicate_entry(store):
    _refused(store, R.layer([("x", "f", "first"), ("x", "f", "second")]), r"'x'.*duplicate")


def test_duplicate_directory_merges(store):
    import_image(store, io.BytesIO(R.layer([("d/", "d"), ("d/", "d", None, {"mode": 0o700})])),
                 "ok", parent="base")
    with store.fs("ok") as fs:
        assert fs.stat("/d").st_mode & 0o777 == 0o700
    assert store.check().ok


def test_truncated_archive(store):
    data = R.layer([("a", "f", "x" * 5000), ("b", "f", "y" * 5000)])
    _refused(store, data[:3000], r"'a'")                # inside a's data
    _refused(store, data[:512 * 13 + 100], r"truncated|unexpected end")


def test_layer_without_end_blocks_is_accepted(store):
    data = R.layer([("a", "f", "x" * 700)])
    end = 512 * 4                                     # pax header, header, 2 data blocks
    import_image(store, io.BytesIO(data[:end]), "noeof", parent="base")
    with store.fs("noeof") as fs:
        assert fs.read_bytes("/a") == b"x" * 700


def test_bad_header_checksum(store):
    data = bytearray(R.layer([("a", "f", "x"), ("b", "f", "y")]))
    second = data.index(b"b\0", 1024)                  # the name field of b's header
    data[second + 100] ^= 0x01                         # mode field: checksum no longer matches
    _refused(store, bytes(data), r"bad tar header after entry 'a'")


def test_huge_size_member(store):
    ti = tarfile.TarInfo("huge")
    ti.size = 1 << 40
    hdr = ti.tobuf(tarfile.PAX_FORMAT)
    _refused(store, hdr + b"z" * 4096, r"'huge'")
    small = hdr + b"z" * 4096
    _refused(store, small, r"'huge'.*claims", max_file_size=1 << 30)


def test_devices_disallowed(store):
    _refused(store, R.layer([("null", "c", (1, 3))]), r"'null'.*device", allow_devices=False)


def test_garbage_and_damaged_compression(store):
    import gzip
    _refused(store, b"this is not a tar archive at all" * 40, r"not a tar|header")
    gz = gzip.compress(R.layer([("a", "f", "x" * 100000)]))
    _refused(store, gz[:len(gz) // 2], r"gzip|truncated|'a'")


# -- images -----------------------------------------------------------------------------
def _oci_layout(tmp_path, layers, *, bad_digest=False, bad_diff=False, tag="t"):
    root = tmp_path / "layout"
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(b: bytes) -> str:
        h = hashlib.sha256(b).hexdigest()
        (blobs / h).write_bytes(b)
        return "sha256:" + h
    descs, ids = [], []
    for data in layers:
        d = put(data)
        ids.append(d if not bad_diff else "sha256:" + "0" * 64)
        if bad_digest:
            (blobs / d[7:]).write_bytes(data[:-1] + b"\1")     # same size, other bytes
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d,
                      "size": len(data)})
    cfg = put(json.dumps({"rootfs": {"type": "layers", "diff_ids": ids}}).encode())
    man = put(json.dumps({"schemaVersion": 2, "config": {"digest": cfg}, "layers": descs}).encode())
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"digest": man, "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return root


def _refused_image(store, src, match):
    names = sorted(r.name for r in store.list())
    with pytest.raises(BlockstoreError, match=match):
        import_image(store, src, "img")
    assert sorted(r.name for r in store.list()) == names
    assert store.check().ok


def test_wrong_layer_digest(store, tmp_path):
    l1 = R.layer([("a", "f", "a")])
    root = _oci_layout(tmp_path, [l1, R.layer([("b", "f", "b")])], bad_digest=True)
    _refused_image(store, str(root), r"digest mismatch")


def test_wrong_diff_id_rolls_back_earlier_layers(store, tmp_path):
    root = _oci_layout(tmp_path, [R.layer([("a", "f", "a")])], bad_diff=True)
    _refused_image(store, str(root), r"diff_id mismatch|digest")


def test_good_layout_then_tag_selection(store, tmp_path):
    root = _oci_layout(tmp_path, [R.layer([("a", "f", "a")]), R.layer([(".wh.a", "f", "")])])
    import_image(store, f"{root}:t", "img")
    with store.fs("img") as fs:
        assert fs.listdir("/") == []
    _refused_image(store, f"{root}:nope", r"no image tagged 'nope'")
    assert store.check().ok


@pytest.mark.parametrize("doc", ["{not json", "[]", '{"manifests": 7}',
                                 '{"manifests": [{"digest": "md5:abc"}]}',
                                 '{"manifests": [{"digest": "sha256:../../etc/passwd"}]}'])
def test_malformed_index_json(store, tmp_path, doc):
    root = _oci_layout(tmp_path, [R.layer([("a", "f", "a")])])
    (root / "index.json").write_text(doc)
    _refused_image(store, str(root), r"malformed index.json|digest|images")


@pytest.mark.parametrize("doc", ["nope", "{}", "[]", '[{"Config": 3}]',
                                 '[{"Config": "../x.json", "Layers": []}]'])
def test_malformed_manifest_json(store, tmp_path, doc):
    p = tmp_path / "img.tar"
    with tarfile.open(p, "w") as tf:
        for name, data in [("manifest.json", doc.encode()), ("x.json", b"{}")]:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    _refused_image(store, str(p), r"malformed manifest.json|'\.\./x\.json'|Config")
