"""Targeted POSIX semantics of the filesystem layer through ``TreeFS``:
each test states the Linux behaviour it checks and ends with ``check().ok``."""
from __future__ import annotations

import errno
import os
import stat as S

import pytest

from blockstore import Store


@pytest.fixture
def store(tmp_store_dir):
    with Store.open(tmp_store_dir) as s:
        yield s
        report = s.check()
        assert report.ok, report.problems


@pytest.fixture
def fs(store):
    store.create("c")
    with store.fs("c") as f:
        yield f


def test_mkdir_ignores_setuid_setgid_bits(fs, tmp_path):
    """mkdir(2) uses mode & 01777: setuid/setgid in the mode are dropped (sticky kept)."""
    old = os.umask(0)
    try:
        os.mkdir(tmp_path / "h", 0o6755)
        os.mkdir(tmp_path / "k", 0o1777)
    finally:
        os.umask(old)
    fs.mkdir("/h", 0o6755)
    fs.mkdir("/k", 0o1777)
    assert S.S_IMODE(fs.stat("/h").st_mode) == S.S_IMODE(os.stat(tmp_path / "h").st_mode) == 0o755
    assert S.S_IMODE(fs.stat("/k").st_mode) == 0o1777


def test_link_directory_is_eperm_and_existing_target_eexist(fs):
    """link(2): a directory source gives EPERM; an existing target gives EEXIST first."""
    fs.mkdir("/d")
    fs.write_bytes("/f", b"x")
    with pytest.raises(PermissionError) as ei:
        fs.link("/d", "/d2")
    assert ei.value.errno == errno.EPERM
    for src, dst in (("/d", "/d"), ("/d", "/f"), ("/f", "/d")):
        with pytest.raises(FileExistsError) as ei:
            fs.link(src, dst)
        assert ei.value.errno == errno.EEXIST
    assert fs.listdir("/") == ["d", "f"] and fs.stat("/f").st_nlink == 1


def test_open_create_through_dangling_symlink_creates_target(fs):
    """open(O_CREAT) on a dangling symlink creates the file it points to (relative
    to the link's directory); with O_EXCL ('x') it fails with EEXIST."""
    fs.mkdir("/d")
    fs.symlink("t", "/d/l")            # -> /d/t
    fs.symlink("/d/u", "/abs")         # absolute targets resolve from the tree's root
    with fs.open("/d/l", "w") as fh:
        fh.write("via link")
    with fs.open("/abs", "wb") as fh:
        fh.write(b"abs")
    assert fs.read_text("/d/t") == "via link" and fs.read_bytes("/d/u") == b"abs"
    assert fs.readlink("/d/l") == "t"
    fs.symlink("missing", "/d/l2")
    with pytest.raises(FileExistsError) as ei:
        fs.open("/d/l2", "x")
    assert ei.value.errno == errno.EEXIST
    assert not fs.exists("/d/missing")
