"""Hostile layers and images: each is refused with an error naming the entry,
and the store is left unchanged (no snapshot, no working clone, check ok)."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from blockstore import Store
from blockstore.errors import BlockstoreError
from blockstore.oci import import_image

import _hostile as H
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


# -- memory bombs and crashes, run as the CLI under a memory limit and a timeout ---------
# (issue 15 items 6 and 7; see _hostile.py for the limits)
BIG = 256 << 20


@pytest.fixture
def cli_store(tmp_path):
    path = tmp_path / "cs"
    with Store.open(path) as s:
        import_image(s, io.BytesIO(R.layer([("etc/", "d"), ("etc/passwd", "f", "root")])), "base")
    return path


def test_the_memory_limit_holds(tmp_path):
    """The limit the hostile imports run under stops a process at 1 GiB
    (RLIMIT_DATA is enforced for mmap'd memory since Linux 4.7)."""
    r = subprocess.run([sys.executable, "-c", "b = bytearray(2 << 30); print(len(b))"],
                       capture_output=True, timeout=H.TIMEOUT, preexec_fn=H._limit)
    assert r.returncode != 0 and b"MemoryError" in r.stderr


def _gz_bomb(path, head: bytes, n: int, mid: bytes, tail: bytes) -> None:
    """gzip of: head, n bytes of b"a", mid, zeros to a 512-byte boundary, tail
    (written in pieces: the test itself stays small)."""
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(head)
        chunk = b"a" * (1 << 20)
        left = n
        while left:
            f.write(chunk[:min(left, len(chunk))])
            left -= min(left, len(chunk))
        f.write(mid + b"\0" * (-(len(head) + n + len(mid)) % 512) + tail)


@pytest.mark.parametrize("typ", [tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK])
def test_gnu_long_name_bomb(cli_store, tmp_path, typ):
    p = tmp_path / "bomb.tar.gz"
    t = tarfile.TarInfo("short")
    _gz_bomb(p, R.gnu_long_header(BIG + 1, typ), BIG, b"\0", t.tobuf(tarfile.GNU_FORMAT) + R.END)
    assert os.path.getsize(p) < 2 << 20
    H.refused(cli_store, [p, "new", "--parent", "base"], r"GNU long (name|link target) of "
              r"268435457 bytes \(limit 4096\)")


def test_pax_record_bomb(cli_store, tmp_path):
    p = tmp_path / "pax.tar.gz"
    size = BIG + 20
    rec_head = f"{size} comment=".encode()
    x = tarfile.TarInfo("PaxHeaders/x")
    x.type, x.size = tarfile.XHDTYPE, size
    t = tarfile.TarInfo("f")
    _gz_bomb(p, x.tobuf(tarfile.USTAR_FORMAT) + rec_head, size - len(rec_head) - 1, b"\n",
             t.tobuf(tarfile.USTAR_FORMAT) + R.END)
    H.refused(cli_store, [p, "new", "--parent", "base"], r"PAX header of \d+ bytes")


def test_pax_global_headers_add_up(cli_store, tmp_path):
    p = tmp_path / "glob.tar"
    data = b"".join(R.pax_entry(f"f{i}", {f"k{i}": "v" * (600 << 10)}, xtype=tarfile.XGLTYPE)
                    for i in range(4))
    p.write_bytes(data + R.END)
    H.refused(cli_store, [p, "new", "--parent", "base"], r"PAX global headers of \d+ bytes")


def test_chain_of_extended_headers(cli_store, tmp_path):
    p = tmp_path / "chain.tar"
    one = R.pax_entry("x", {"comment": "c"})[:1024]          # an extended header alone
    p.write_bytes(one * 5000 + R.pax_entry("f", {}) + R.END)
    H.refused(cli_store, [p, "new", "--parent", "base"], r"more than 8 extended headers")


def test_long_name_in_a_message_is_cut(cli_store, tmp_path):
    """A refusal names the entry, cut: the line stays short (the name is 4002 bytes)."""
    name = "a/" * 1999 + "../x"
    p = tmp_path / "long.tar"
    p.write_bytes(R.pax_entry("short", {"path": name}, b"x") + R.END)
    err = H.refused(cli_store, [p, "new", "--parent", "base"], r"'\.\.' in path")
    assert "(4002 bytes)" in err and len(err) < 1000


@pytest.mark.parametrize("key,value", [("mtime", 2 ** 70), ("atime", 2 ** 70), ("mtime", "nan"),
                                       ("uid", 2 ** 70), ("gid", 2 ** 70), ("uid", -5),
                                       ("gid", -5)])
def test_pax_numbers_out_of_range(cli_store, tmp_path, key, value):
    p = tmp_path / "n.tar"
    p.write_bytes(R.pax_entry("f", {key: value}, b"x") + R.END)
    H.refused(cli_store, [p, "new", "--parent", "base"], rf"refused layer entry 'f': .*{key}")


def test_bad_base64_xattr(cli_store, tmp_path):
    p = tmp_path / "x.tar"
    p.write_bytes(R.pax_entry("f", {"LIBARCHIVE.xattr.user.x": "a"}, b"x") + R.END)
    H.refused(cli_store, [p, "new", "--parent", "base"],
              r"refused layer entry 'f': bad base64 in PAX 'LIBARCHIVE\.xattr\.user\.x'")


def test_pax_negative_mtime_is_a_time(cli_store, tmp_path):
    """Before 1970 is a time: accepted (the range check is not a sign check)."""
    p = tmp_path / "n.tar"
    p.write_bytes(R.pax_entry("f", {"mtime": "-5.5"}, b"x") + R.END)
    r = H.run(cli_store, "import", p, "old", "--parent", "base")
    assert r.returncode == 0, r.stderr
    with Store.open(cli_store) as s, s.fs("old") as fs:
        assert fs.stat("/f").st_mtime_ns == -5_500_000_000


def test_pax_size_beyond_the_archive(cli_store, tmp_path):
    p = tmp_path / "s.tar"
    p.write_bytes(R.pax_entry("f", {"size": 2 ** 60}, b"x") + R.END)
    H.refused(cli_store, [p, "new", "--parent", "base"], r"refused layer entry 'f': claims "
              r"1152921504606846976 bytes")


@pytest.mark.parametrize("records,body", [
    ({"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "100",
      "GNU.sparse.name": "sp"}, R._pad(b"1\n-50\n10\n") + b"y" * 10),
    ({"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "100",
      "GNU.sparse.name": "sp"}, R._pad(b"1\n%d\n10\n" % 2 ** 62) + b"y" * 10),
    ({"GNU.sparse.map": f"{2 ** 62},10", "GNU.sparse.size": "100", "GNU.sparse.name": "sp"},
     b"y" * 10),
    ({"GNU.sparse.map": "50,10,20,10", "GNU.sparse.size": "100", "GNU.sparse.name": "sp"},
     b"y" * 20),
    ({"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "100",
      "GNU.sparse.name": "sp"}, R._pad(b"99999999\n")),
], ids=["negative", "huge-1.0", "huge-0.1", "overlapping", "too-many"])
def test_bad_sparse_maps(cli_store, tmp_path, records, body):
    p = tmp_path / "sp.tar"
    p.write_bytes(R.pax_entry("f", records, body) + R.END)
    H.refused(cli_store, [p, "new", "--parent", "base"], r"refused layer entry 'sp': .*sparse")


def _docker_archive(path, members: list, layers: list[str], diff_ids: list[str]) -> None:
    """A docker-save-shaped tar: members (TarInfo, bytes | None), plus config and manifest."""
    cfg = json.dumps({"rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
    man = json.dumps([{"Config": cfg_name, "RepoTags": ["x:1"], "Layers": layers}]).encode()
    with tarfile.open(path, "w") as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
        for name, data in [(cfg_name, cfg), ("manifest.json", man)]:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))


def _sym(name, target):
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = tarfile.SYMTYPE, target
    return ti, None


def test_docker_archive_symlink_loop(cli_store, tmp_path):
    p = tmp_path / "loop.tar"
    a, b = "a" * 64, "b" * 64
    _docker_archive(p, [_sym(f"{a}/layer.tar", f"../{b}/layer.tar"),
                        _sym(f"{b}/layer.tar", f"../{a}/layer.tar")],
                    [f"{a}/layer.tar"], ["sha256:" + "0" * 64])
    H.refused(cli_store, [p, "img"], rf"image file '{a}/layer.tar': more than 40 links")


def test_docker_archive_links_are_followed(store, tmp_path):
    """A layer shared through a symlink (older docker save) still imports."""
    layer = R.layer([("a", "f", "a")])
    diff = "sha256:" + hashlib.sha256(layer).hexdigest()
    ti = tarfile.TarInfo("c" * 64 + "/layer.tar")
    ti.size = len(layer)
    p = tmp_path / "ok.tar"
    _docker_archive(p, [(ti, layer), _sym("d" * 64 + "/layer.tar", f"../{'c' * 64}/layer.tar")],
                    ["d" * 64 + "/layer.tar"], [diff])
    import_image(store, str(p), "img")
    with store.fs("img") as fs:
        assert fs.read_bytes("/a") == b"a"


@pytest.mark.parametrize("kind", ["symlink-to-dev-zero", "fifo", "symlink-in-layout"])
def test_layout_blob_not_a_regular_file(cli_store, tmp_path, kind):
    layer = R.layer([("a", "f", "a")])
    root = _oci_layout(tmp_path, [layer])
    blob = root / "blobs" / "sha256" / hashlib.sha256(layer).hexdigest()
    blob.unlink()
    if kind == "fifo":
        os.mkfifo(blob)
    else:
        (root / "elsewhere").write_bytes(layer)
        os.symlink("/dev/zero" if kind == "symlink-to-dev-zero" else "../../elsewhere", blob)
    H.refused(cli_store, [root, "img"], r"image file 'blobs/sha256/[0-9a-f]{64}' is (a symlink|"
              r"not a regular file)")


def test_layout_blob_longer_than_its_descriptor(store, tmp_path):
    layer = R.layer([("a", "f", "a")])
    root = _oci_layout(tmp_path, [layer])
    blob = root / "blobs" / "sha256" / hashlib.sha256(layer).hexdigest()
    blob.write_bytes(layer + b"\0" * 512)
    _refused_image(store, str(root), r"longer than its descriptor's size 10240")


def test_image_archive_member_past_the_end(cli_store, tmp_path):
    """An image archive member claiming more data than the archive holds."""
    p = tmp_path / "img.tar"
    p.write_bytes(R.pax_entry("manifest.json", {"size": 2 ** 60}, b"[]") + R.END)
    H.refused(cli_store, [p, "img", "--format", "image"],
              r"refused archive member 'manifest.json': claims 1152921504606846976 bytes, past "
              r"the archive's end")
