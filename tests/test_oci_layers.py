"""OCI layer semantics: hand-made layers applied by blockstore.oci equal the
reference applier (tests/oci_ref.py) on a real directory; exported layers
(full and diff) re-applied give the same trees."""
from __future__ import annotations

import io
import os
import gzip

import pytest

from blockstore import Store
from blockstore.oci import export_tar, import_image

import oci_ref as R

T = 1_600_000_000_000_000_000
ROOT = os.geteuid() == 0

BASE = [
    ("./", "d", None, {"mode": 0o755, "mtime": T}),
    ("a/", "d", None, {"mtime": T + 1}),
    ("a/f1", "f", "one", {"mtime": T + 123456789, "uid": 1000, "gid": 1001}),
    ("a/f2", "f", "two" * 1000, {"mode": 0o4755}),
    ("a/sub/", "d", None, {"mode": 0o700}),
    ("a/sub/g", "f", "g"),
    ("a/sub/deep/", "d"),
    ("a/sub/deep/k", "f", "k"),
    ("a/q/", "d"), ("a/q/r/", "d"), ("a/q/r/s", "f", "s"), ("a/q/r/t", "f", "t"),
    ("b/", "d"), ("b/h", "f", "hard", {"xattrs": {"user.tag": "v1"}}),
    ("b/h2", "h", "b/h"),
    ("c", "l", "/etc/passwd", {"mtime": T + 5}),
    ("d/", "d", None, {"xattrs": {"user.dir": "x"}}),
    ("d/fifo", "p"),
    ("big", "f", b"\0" * 70000 + b"tail"),
]
if ROOT:
    BASE += [("d/null", "c", (1, 3)), ("d/blk", "b", (7, 0))]

L2 = [
    ("a/", "d", None, {"mode": 0o750, "mtime": T + 7}),
    ("a/.wh.f1", "f", ""),                        # delete a file
    ("a/sub/", "d", None, {"mtime": T + 9}),
    ("a/sub/.wh..wh..opq", "f", ""),              # opaque, re-populated in this layer
    ("a/sub/new", "f", "new"),
    ("a/q/r/.wh.s", "f", ""),                     # nested deletes
    ("a/q/.wh.r", "f", ""),
    (".wh.b", "f", ""),                           # delete a directory
    (".wh.c", "f", ""),                           # whiteout, then re-add the same path
    ("c", "f", "c is a file now"),
    ("e", "h", "a/f2"),                           # hard link across layers
    ("d/", "d", None, {"xattrs": {"user.dir": "y", "user.more": "z"}}),
]

L3 = [
    ("a/z", "f", "z"),
    ("a/.wh..wh..opq", "f", ""),                  # after an entry of this layer: z stays
    ("x", "f", "x"),
    (".wh.x", "f", ""),                           # whiteout after re-add: x stays
    ("d", "f", "dir replaced by file"),
    ("big/", "d"),                                # file replaced by directory
    ("big/in", "f", "in"),
    ("e2", "h", "e"),
]


_n = [0]


def _store_desc(s, name, tmp_path):
    _n[0] += 1
    dst = tmp_path / f"out-{_n[0]}"
    s.export_dir(name, dst)
    return R.describe(str(dst))


def _ref_desc(layers, tmp_path, tag):
    d = tmp_path / f"ref-{tag}"
    d.mkdir()
    for data in layers:
        R.apply_layer(str(d), data)
    return R.describe(str(d))


@pytest.fixture
def store(tmp_store_dir):
    with Store.open(tmp_store_dir) as s:
        yield s
        assert s.check().ok


def test_layers_equal_reference_applier(store, tmp_path):
    blobs = [R.layer(BASE), R.layer(L2), R.layer(L3)]
    prev = None
    for i, data in enumerate(blobs):
        import_image(store, io.BytesIO(data), f"l{i}", parent=prev)
        prev = f"l{i}"
        got = _store_desc(store, prev, tmp_path)
        want = _ref_desc(blobs[:i + 1], tmp_path, str(i))
        assert R.diff_desc(got, want) == []
    fs = store.fs("l2")
    assert sorted(fs.listdir("/a")) == ["z"]      # opaque: lower f2, q hidden
    assert fs.lstat("/e2").st_nlink == 2       # e, e2 (a/f2 hidden)
    fs.close()


@pytest.mark.parametrize("comp", ["none", "gzip", "zstd"])
def test_compressed_layers(store, comp):
    data = R.layer(BASE)
    if comp == "gzip":
        data = gzip.compress(data)
    elif comp == "zstd":
        import zstandard
        data = zstandard.ZstdCompressor().compress(data)
    import_image(store, io.BytesIO(data), "l0")
    with store.fs("l0") as fs:
        assert fs.read_bytes("/a/f2") == b"two" * 1000


def test_layer_from_file_path(store, tmp_path):
    p = tmp_path / "l.tar.gz"
    p.write_bytes(gzip.compress(R.layer(BASE)))
    import_image(store, p, "l0")
    with store.fs("l0") as fs:
        assert fs.readlink("/c") == "/etc/passwd"


def test_gnu_long_names_and_sparse(store, tmp_path):
    long = "dir/" + "n" * 200 + "/" + "f" * 150
    data = R.layer([("dir/", "d"), ("dir/" + "n" * 200 + "/", "d"), (long, "f", "x")],
                   fmt=__import__("tarfile").GNU_FORMAT)
    import_image(store, io.BytesIO(data), "gnu")
    with store.fs("gnu") as fs:
        assert fs.read_bytes("/" + long) == b"x"
    # a GNU sparse member made by GNU tar: only the data regions are stored
    src = tmp_path / "sp"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.seek(1 << 30)
        f.write(b"end")
    tarp = tmp_path / "sp.tar"
    assert os.system(f"tar -C {src} --sparse --format=gnu -cf {tarp} sparse") == 0
    before = store.df()
    import_image(store, tarp, "sparse")
    with store.fs("sparse") as fs:
        st = fs.stat("/sparse")
        assert st.st_size == (1 << 30) + 3
        with fs.open("/sparse", "rb") as f:
            f.seek(1 << 30)
            assert f.read() == b"end"
    assert store.usage("sparse").exclusive < 1 << 20


def _apply_exported(store, name, parent, tmp_path, base_dir):
    buf = io.BytesIO()
    export_tar(store, name, buf, parent=parent)
    R.apply_layer(str(base_dir), buf.getvalue())
    return buf.getvalue()


def test_diff_layer_reapplies_to_child(store, tmp_path):
    blobs = [R.layer(BASE), R.layer(L2), R.layer(L3)]
    prev = None
    for i, data in enumerate(blobs):
        import_image(store, io.BytesIO(data), f"l{i}", parent=prev)
        prev = f"l{i}"
    # also a child made with the fs API: rename a directory, replace a dir by a dir
    store.clone("l2", "w")
    with store.fs("w") as fs:
        fs.rename("/big", "/moved")
        fs.write_bytes("/moved/new", b"new")
        fs.unlink("/x")
        fs.link("/e", "/a/e-link")
        fs.setxattr("/a/z", "user.k", b"\xff\x00bin")
        fs.utime("/a/z", ns=(T, T + 1))
    store.commit("w", "l3")
    store.remove("w")
    for parent, child in [("l0", "l1"), ("l1", "l2"), ("l2", "l3"), ("l0", "l3")]:
        d = tmp_path / f"apply-{parent}-{child}"
        store.export_dir(parent, d)
        data = _apply_exported(store, child, parent, tmp_path, d)
        assert R.diff_desc(R.describe(str(d)), _store_desc(store, child, tmp_path)) == [], \
            (parent, child)
        # and our own applier gives the same child
        import_image(store, io.BytesIO(data), f"re-{child}-{parent}", parent=parent)
        assert store.diff(child, f"re-{child}-{parent}") == [] or \
            R.diff_desc(_store_desc(store, f"re-{child}-{parent}", tmp_path),
                        _store_desc(store, child, tmp_path)) == []


def test_full_export_reproducible_and_exact(store, tmp_path):
    import_image(store, io.BytesIO(R.layer(BASE)), "l0")
    import_image(store, io.BytesIO(R.layer(L2)), "l1", parent="l0")
    a, b = io.BytesIO(), io.BytesIO()
    da = export_tar(store, "l1", a)
    db = export_tar(store, "l1", b)
    assert da == db and a.getvalue() == b.getvalue()
    d = tmp_path / "full"
    d.mkdir()
    R.apply_layer(str(d), a.getvalue())
    assert R.diff_desc(R.describe(str(d)), _store_desc(store, "l1", tmp_path)) == []
    names = [m.name for m in __import__("tarfile").open(fileobj=io.BytesIO(a.getvalue()))]
    assert names[0] == "." or names[0] == "./"
    rest = [tuple(n.split("/")) for n in names[1:]]
    assert rest == sorted(rest)


def test_diff_layer_cost_is_proportional_to_difference(store, tmp_path):
    entries = [("./", "d")] + [(f"d{i}/", "d") for i in range(40)] + \
        [(f"d{i}/f{j}", "f", f"{i}-{j}") for i in range(40) for j in range(50)]
    import_image(store, io.BytesIO(R.layer(entries)), "big")
    import_image(store, io.BytesIO(R.layer([("d7/f3", "f", "changed")])), "small", parent="big")
    buf = io.BytesIO()
    export_tar(store, "small", buf, parent="big")
    names = [m.name for m in __import__("tarfile").open(fileobj=io.BytesIO(buf.getvalue()))]
    assert "d7/f3" in names and len(names) <= 3
