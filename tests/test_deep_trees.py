"""Trees deeper than Python's recursion limit (1,100 levels, 2,200-byte
paths): every way out of the store (directory export, full tar, layer tar,
``cp`` out), whiteouts into them, ``--parent`` directory import and the
API walk complete; the code walks trees with explicit stacks, never by
recursion over depth.  Also ``cp`` of a tree into itself is refused as GNU
cp refuses it."""
from __future__ import annotations

import io
import os
import stat as S
import sys
import tarfile

import pytest
from click.testing import CliRunner

from blockstore.api import hostout
from blockstore.cli import main
from blockstore.fs import items as I
from blockstore.oci import export_image, export_tar, import_image

DEPTH = 1100                     # > sys.getrecursionlimit() (1000)
LEAF = "/".join(["d"] * DEPTH)   # 2,199 bytes


@pytest.fixture(autouse=True)
def _empty_tmp_path(tmp_path):
    """Deep host trees are removed here: pytest's own clean-up (shutil.rmtree)
    recurses over depth."""
    yield
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        hostout.remove_contents(fd)
    finally:
        os.close(fd)


def _deep(store, name: str = "deep", extra: bool = True) -> None:
    """Snapshot ``name``: d/d/.../d (DEPTH levels) with file f at the bottom
    (and a sibling file at the top), built by inode so it costs O(DEPTH)."""
    assert DEPTH > sys.getrecursionlimit()
    store.create(name + "-w")
    with store.batch(), store.fs(name + "-w") as t:
        ino = I.ROOT_INO
        for _ in range(DEPTH):
            ino = t.create_at(ino, b"d", S.S_IFDIR | 0o755).st_ino
        f = t.create_at(ino, b"f", S.S_IFREG | 0o644).st_ino
        t.write_at(f, 0, b"bottom")
        if extra:
            top = t.create_at(I.ROOT_INO, b"top", S.S_IFREG | 0o644).st_ino
            t.write_at(top, 0, b"top")
    store.snapshot(name + "-w", name)
    store.remove(name + "-w")


def _host_leaf(root: str) -> str:
    return os.path.join(root, *(["d"] * DEPTH), "f")


def _read_host(path: str) -> bytes:
    """Read a file whose path may be longer than is comfortable: by dir fds."""
    parts = os.path.relpath(path, "/").split("/")
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for p in parts[:-1]:
            nfd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
        ffd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
        try:
            return os.read(ffd, 100)
        finally:
            os.close(ffd)
    finally:
        os.close(fd)


def test_export_dir_deep(store, tmp_path):
    _deep(store)
    out = str(tmp_path / "out")
    store.export_dir("deep", out)
    assert _read_host(_host_leaf(out)) == b"bottom"
    assert _read_host(os.path.join(out, "top")) == b"top"


def test_export_tar_deep(store, tmp_path):
    _deep(store)
    out = str(tmp_path / "deep.tar")
    export_tar(store, "deep", out)
    with tarfile.open(out) as tf:
        names = tf.getnames()
    assert LEAF + "/f" in names and len(names) == DEPTH + 3   # ./, d..., f, top


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_export_image_deep(store, tmp_path, fmt):
    """An image export of a deep snapshot, re-imported: the bottom file is there."""
    _deep(store)
    out = str(tmp_path / ("img" if fmt == "oci" else "img.tar"))
    export_image(store, "deep", out, format=fmt)
    import_image(store, out, "back")
    with store.fs("back") as t:
        assert t.read_bytes("/" + LEAF + "/f") == b"bottom"


def test_export_layer_deep(store):
    """--from layer of a deep change (a file added at the bottom, one removed),
    re-applied on the parent; a deep subtree deleted and added."""
    _deep(store, "base")
    store.clone("base", "c")
    with store.fs("c") as t:
        t.unlink("/" + LEAF + "/f")
        t.write_bytes("/" + LEAF + "/g", b"new")
        t.rename("/d", "/e")
    store.commit("c", "child")
    buf = io.BytesIO()
    export_tar(store, "child", buf, parent="base")
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tf:
        names = set(tf.getnames())
    e_leaf = LEAF.replace("d", "e", 1)
    assert {".wh.d", e_leaf + "/g"} <= names and e_leaf + "/f" not in names
    buf.seek(0)
    import_image(store, buf, "child2", parent="base")
    listing = []
    for name in ("child", "child2"):
        with store.fs(name) as t:
            listing.append(list(t.walk("/")))
            assert t.read_bytes("/" + e_leaf + "/g") == b"new"
    assert listing[0] == listing[1] and len(listing[0]) == DEPTH + 1
    store.create("empty")                                 # a whole deep tree added: each
    store.snapshot("empty", "e")                          # level is walked once, not per
    buf = io.BytesIO()                                    # new ancestor (O(depth^2))
    export_tar(store, "base", buf, parent="e")
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tf:
        names = tf.getnames()
    assert len(names) == len(set(names)) == DEPTH + 3 and LEAF + "/f" in names


def _layer(*members) -> io.BytesIO:
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, typ in members:
            ti = tarfile.TarInfo(name)
            ti.type = typ
            tf.addfile(ti)
    b.seek(0)
    return b


def test_whiteouts_into_deep_tree(store):
    """A whiteout at the bottom, a whiteout of the top directory (removes the
    whole deep subtree) and an opaque marker on it (prunes it)."""
    _deep(store, "base")
    import_image(store, _layer((LEAF + "/.wh.f", tarfile.REGTYPE)), "bottom", parent="base")
    with store.fs("bottom") as t:
        assert t.listdir("/" + LEAF) == []
    import_image(store, _layer((".wh.d", tarfile.REGTYPE)), "gone", parent="base")
    with store.fs("gone") as t:
        assert t.listdir("/") == ["top"]
    import_image(store, _layer(("d", tarfile.DIRTYPE), ("d/.wh..wh..opq", tarfile.REGTYPE)),
                 "opaque", parent="base")
    with store.fs("opaque") as t:
        assert t.listdir("/d") == []


def test_import_with_parent_deep(store, tmp_path):
    """--parent dir import over a deep parent: the unchanged deep part is kept,
    a deep part gone from the host is removed, a new deep host tree is read."""
    _deep(store, "base")
    src = tmp_path / "src"
    src.mkdir()
    fd = os.open(src, os.O_RDONLY)                       # d/... gone, e/... new
    for name in ["e"] + ["d"] * (DEPTH - 1):
        os.mkdir(name, dir_fd=fd)
        nfd = os.open(name, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    f = os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(f, b"bottom")
    os.close(f)
    os.close(fd)
    (src / "top").write_bytes(b"top")
    store.import_dir(str(src), "next", parent="base")
    with store.fs("next") as t:
        assert sorted(t.listdir("/")) == ["e", "top"]
        assert t.read_bytes("/" + LEAF.replace("d", "e", 1) + "/f") == b"bottom"
    store.import_dir(str(src), "again", parent="next")   # all unchanged
    assert store.diff("next", "again") == []


def test_walk_deep(store):
    _deep(store, extra=False)
    with store.fs("deep") as t:
        tops = [top for top, _dirs, _files in t.walk("/")]
        assert len(tops) == DEPTH + 1 and tops[-1] == "/" + LEAF
        assert len(list(t.walk("/", topdown=False))) == DEPTH + 1


def _cli(store, *args):
    return CliRunner().invoke(main, ["--store", store.path, *args])


def test_cp_out_deep(store, tmp_path):
    _deep(store)
    path = store.path
    store.close()
    r = CliRunner().invoke(main, ["--store", path, "cp", "deep:/d", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert _read_host(_host_leaf(str(tmp_path))) == b"bottom"
    store.__class__.open(path).close()


def test_cp_tree_into_itself_refused(store):
    store.create("c")
    with store.fs("c") as t:
        t.makedirs("/sub/x")
        t.write_bytes("/sub/x/f", b"f")
    path = store.path
    store.close()
    for src, dst in (("c:/", "c:/sub"), ("c:/sub", "c:/sub/x"), ("c:/sub", "c:/sub")):
        r = CliRunner().invoke(main, ["--store", path, "cp", src, dst])
        assert r.exit_code == 9, (src, dst, r.output)
        assert "cannot copy a directory" in r.output and "into itself" in r.output
    reopened = store.__class__.open(path)
    try:
        with reopened.fs("c") as t:
            assert [top for top, _, _ in t.walk("/")] == ["/", "/sub", "/sub/x"]
    finally:
        reopened.close()


def test_lineage_rows_long_chain():
    """`ls --tree` of a chain of 1,100 snapshots (each the parent of the next),
    plus a parent cycle: every tree once, parents above children."""
    from blockstore.catalog import TreeRecord
    from blockstore.cli.format import lineage_rows
    recs = [TreeRecord(f"s{i:04d}", "snapshot", parent=f"s{i - 1:04d}" if i else None,
                       created=i) for i in range(DEPTH)]
    recs += [TreeRecord("x", "snapshot", parent="y"), TreeRecord("y", "snapshot", parent="x")]
    rows = lineage_rows(recs)
    assert [r.name for _, r in rows][:DEPTH] == [r.name for r in recs[:DEPTH]]
    assert sorted(r.name for _, r in rows) == sorted(r.name for r in recs)
    assert rows[2][0].endswith("└── s0002") and rows[0][0] == "s0000"


def test_fsspec_find_and_walk_deep(store):
    """fsspec's find and walk (fsspec's own walk recurses once per level; find,
    du, get and a recursive rm all use it)."""
    pytest.importorskip("fsspec")
    from blockstore.interfaces.fsspec_fs import BlockstoreFileSystem
    _deep(store, extra=False)
    store.clone("deep", "c")
    fs = BlockstoreFileSystem(store, skip_instance_cache=True)
    try:
        assert fs.find("c:/") == ["c:/" + LEAF + "/f"]
        assert [d for d, _, _ in fs.walk("c:/" + LEAF[:-12], topdown=False)] == \
            ["c:/" + "/".join(["d"] * n) for n in range(DEPTH, DEPTH - 7, -1)]
        assert len(list(fs.walk("c:/", maxdepth=5))) == 5
    finally:
        fs.close()


def test_tmpfs_mount_with_deep_tree_is_removed(store):
    """A tmpfs mount spec is a temporary host directory removed when the tree's
    handle closes; a deep tree written into it goes too (no RecursionError)."""
    store.create("c", mounts=[{"type": "tmpfs", "target": "/scratch"}])
    t = store.fs("c")
    path = "/scratch"
    for _ in range(DEPTH):
        path += "/d"
        t.mkdir(path)
    t.write_bytes(path + "/f", b"x")
    host = t._route("/scratch/d")[0].root
    assert os.path.isdir(host)
    t.close()
    assert not os.path.exists(host)


def test_bind_mount_deep_makedirs_and_walk(store, tmp_path):
    """A bind-mounted host directory: makedirs of a deep path and the host
    side's walk (os.makedirs and os.walk recurse once per level)."""
    host = tmp_path / "host"
    host.mkdir()
    (host / ".hidden").mkdir()
    store.create("c", mounts=[{"type": "bind", "source": str(host), "target": "/b"}])
    with store.fs("c") as t:
        t.makedirs("/b/" + LEAF)
        t.write_bytes("/b/" + LEAF + "/f", b"x")
        hd = t._route("/b/d")[0]
        tops = [top for top, _, _ in hd.walk("/")]
        assert tops[:2] == ["/", "/.hidden"] and tops[-1] == "/" + LEAF
        assert len(tops) == DEPTH + 2
        assert [top for top, _, _ in hd.walk("/", topdown=False)][-1] == "/"
    assert _read_host(_host_leaf(str(host))) == b"x"
