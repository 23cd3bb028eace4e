"""The ``blockstore://`` fsspec filesystem (blockstore.interfaces.fsspec_fs)."""
from __future__ import annotations

import errno

import pytest

fsspec = pytest.importorskip("fsspec")

from blockstore import Store  # noqa: E402
from blockstore.interfaces import fsspec_fs  # noqa: E402
from blockstore.interfaces.fsspec_fs import BlockstoreFileSystem  # noqa: E402


@pytest.fixture
def st(store):
    """The conftest store with a snapshot 'base' and a clone 'work' of it."""
    store.create("seed")
    with store.fs("seed") as fs:
        fs.makedirs("/data/sub")
        fs.write_bytes("/data/a.bin", b"A" * 5000)
        fs.write_text("/data/sub/b.txt", "bee\n")
        fs.symlink("a.bin", "/data/link")
    store.commit("seed", "base")
    store.clone("base", "work")
    return store


def test_entry_point_registration():
    assert fsspec.get_filesystem_class("blockstore") is BlockstoreFileSystem


def test_strip_protocol_forms():
    sp = BlockstoreFileSystem._strip_protocol
    assert sp("blockstore://web:/a/b.csv") == "web:/a/b.csv"
    assert sp("blockstore://web/a/b.csv") == "web:/a/b.csv"
    assert sp("blockstore://img/v1:/etc//x/") == "img/v1:/etc/x"      # tree names with "/"
    assert sp("blockstore://web:/a?store=/s") == "web:/a"
    assert sp("blockstore://web:/") == "web:/"
    assert sp("blockstore://") == ""
    assert BlockstoreFileSystem._get_kwargs_from_urls("blockstore://w:/a?store=/x/y") == \
        {"store": "/x/y"}


def test_ls_info_open_read_snapshot(st):
    fs = fsspec.filesystem("blockstore", store=st)
    assert {i["name"] for i in fs.ls("")} >= {"base:/", "work:/"}
    assert sorted(fs.ls("base:/data", detail=False)) == \
        ["base:/data/a.bin", "base:/data/link", "base:/data/sub"]
    info = fs.info("blockstore://base:/data/a.bin")
    assert info["type"] == "file" and info["size"] == 5000
    link = fs.info("base:/data/link")
    assert link["islink"] and link["destination"] == "a.bin" and link["type"] == "file"
    assert fs.info("base:/data/sub")["type"] == "directory"
    assert fs.cat("base:/data/sub/b.txt") == b"bee\n"
    with fs.open("base:/data/a.bin", "rb") as f:
        f.seek(4990)
        assert f.read() == b"A" * 10
    assert fs.exists("base:/data/a.bin") and not fs.exists("base:/nope")
    assert fs.isdir("base:/data") and fs.isfile("base:/data/a.bin")
    assert fs.find("base:/data") == ["base:/data/a.bin", "base:/data/link",
                                     "base:/data/sub/b.txt"]
    with pytest.raises(FileNotFoundError):
        fs.info("base:/nope")
    with pytest.raises(FileNotFoundError):
        fs.ls("no-such-tree:/")
    fs.close()


def test_snapshot_is_read_only(st):
    fs = fsspec.filesystem("blockstore", store=st)
    with pytest.raises(PermissionError) as ei:
        with fs.open("base:/new", "wb") as f:
            f.write(b"x")
    assert ei.value.errno == errno.EROFS
    with pytest.raises(PermissionError):
        fs.rm("base:/data/a.bin")
    fs.close()


def test_write_clone_mkdir_mv_cp_rm(st):
    fs = fsspec.filesystem("blockstore", store=st)
    with fs.open("work:/data/new.txt", "w") as f:
        f.write("hello clone\n")
    assert fs.cat("work:/data/new.txt") == b"hello clone\n"
    fs.pipe("work:/data/piped", b"p" * 100_000)
    fs.mkdir("work:/x/y/z")
    assert fs.isdir("work:/x/y/z")
    fs.makedirs("work:/x/y", exist_ok=True)
    fs.cp_file("work:/data/piped", "work:/x/y/copy")
    assert fs.cat("work:/x/y/copy") == b"p" * 100_000
    fs.mv("work:/x", "work:/moved")                          # a whole directory, atomic
    assert fs.exists("work:/moved/y/copy") and not fs.exists("work:/x")
    fs.mv("work:/data/new.txt", "work:/moved")               # into a directory
    assert fs.cat("work:/moved/new.txt") == b"hello clone\n"
    fs.copy("work:/moved", "work:/copied", recursive=True)
    assert fs.cat("work:/copied/y/copy") == b"p" * 100_000
    fs.rm("work:/moved", recursive=True)
    assert not fs.exists("work:/moved")
    fs.rm("work:/data/piped")
    fs.touch("work:/t")
    assert fs.info("work:/t")["size"] == 0
    # across trees: copy then remove
    st.volume_create("vol")
    fs.mv("work:/t", "vol:/t")
    assert fs.exists("vol:/t") and not fs.exists("work:/t")
    # the snapshot never changed
    assert sorted(fs.ls("base:/data", detail=False)) == \
        ["base:/data/a.bin", "base:/data/link", "base:/data/sub"]
    fs.close()
    st.commit("work", "work@1")
    changes = {(c.kind, c.path) for c in st.diff("base", "work@1")}
    assert ("A", "/copied") in changes and ("A", "/data/piped") not in changes


def test_fsspec_open_url_with_store_query(tmp_path):
    path = tmp_path / "s"
    with Store.open(path) as s:
        s.create("c")
    url = f"blockstore://c:/hello.txt?store={path}"
    with fsspec.open(url, "w") as f:
        f.write("via url\n")
    with fsspec.open(url, "r") as f:
        assert f.read() == "via url\n"
    # the store was opened by the fsspec layer: one per path per process, shared
    s = fsspec_fs._shared_store(str(path), False)
    assert s.fs("c").read_text("/hello.txt") == "via url\n"
    assert s.check().ok
    s.close()


def test_tree_replaced_under_the_same_name(st):
    """A cached TreeView (pinned snapshot) is re-made when the name now means another tree."""
    fs = fsspec.filesystem("blockstore", store=st)
    st.commit("work", "snap")
    assert fs.cat("snap:/data/sub/b.txt") == b"bee\n"
    st.remove("snap")
    with st.fs("work") as w:
        w.write_text("/data/sub/b.txt", "second\n")
    st.commit("work", "snap")
    assert fs.cat("snap:/data/sub/b.txt") == b"second\n"
    fs.close()


def test_pandas_csv_clone_to_snapshot(st):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"n": range(1000), "sq": [i * i for i in range(1000)],
                       "name": [f"row{i}" for i in range(1000)]})
    opts = {"store": st}
    df.to_csv("blockstore://work:/data/table.csv", index=False, storage_options=opts)
    st.commit("work", "work@csv")
    back = pd.read_csv("blockstore://work@csv:/data/table.csv", storage_options=opts)
    assert back.equals(df)
    # the clone moves on; the snapshot keeps the old table
    df2 = df.assign(sq=-df.sq)
    df2.to_csv("blockstore://work:/data/table.csv", index=False, storage_options=opts)
    again = pd.read_csv("blockstore://work@csv:/data/table.csv", storage_options=opts)
    assert again.equals(df)
    assert pd.read_csv("blockstore://work:/data/table.csv",
                       storage_options=opts).equals(df2)
    with pytest.raises(PermissionError):
        df.to_csv("blockstore://work@csv:/data/other.csv", storage_options=opts)
