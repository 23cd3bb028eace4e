"""New files, directories and nodes made through the API follow ``os``:
the mode argument (default 0o666 for files, 0o777 for directories) is
masked by the process umask (issue 16, item 7)."""
from __future__ import annotations

import io
import os
import stat as S
import tarfile

import pytest

from blockstore.oci import export_tar


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _modes(store, name):
    buf = io.BytesIO()
    export_tar(store, name, buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tf:
        return {m.name: m.mode for m in tf.getmembers()}


def test_open_mkdir_makedirs_mknod_apply_the_umask(store, umask_022):
    store.create("c")
    with store.fs("c") as fs:
        with fs.open("/f", "w") as f:
            f.write("x")
        fs.makedirs("/a/b")
        fs.mkdir("/d")
        fs.mkdir("/d2", 0o775)
        with fs.open("/p", "wb", perm=0o640):
            pass
        fs.mknod("/fifo", S.S_IFIFO | 0o666)
        got = {p: S.S_IMODE(fs.lstat(p).st_mode) for p in
               ("/f", "/a", "/a/b", "/d", "/d2", "/p", "/fifo")}
    assert got == {"/f": 0o644, "/a": 0o755, "/a/b": 0o755, "/d": 0o755, "/d2": 0o755,
                   "/p": 0o640, "/fifo": 0o644}
    store.commit("c", "s")
    modes = _modes(store, "s")
    assert modes["f"] == 0o644 and modes["a/b"] == 0o755


def test_umask_077_and_000(store):
    store.create("c")
    old = os.umask(0o077)
    try:
        with store.fs("c") as fs:
            with fs.open("/private", "w"):
                pass
            fs.mkdir("/pd")
    finally:
        os.umask(0)
    try:
        with store.fs("c") as fs:
            with fs.open("/open", "w"):
                pass
            fs.mkdir("/od")
            modes = {p: S.S_IMODE(fs.lstat(p).st_mode) for p in ("/private", "/pd", "/open", "/od")}
    finally:
        os.umask(old)
    assert modes == {"/private": 0o600, "/pd": 0o700, "/open": 0o666, "/od": 0o777}
