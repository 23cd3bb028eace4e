"""blockstore.snapshotter.staging.layer_stream: the OCI layer tar of an
overlay upper directory, made by a child process: entries, whiteouts and
opaque markers come through the pipe; a failure of the child is raised."""
from __future__ import annotations

import io
import os
import tarfile

import pytest

from blockstore.snapshotter import staging


def test_layer_stream_of_an_upper_directory(tmp_path):
    upper = tmp_path / "upper"
    since = staging.prepare_upper(str(upper))
    (upper / "etc").mkdir()
    (upper / "etc" / "conf").write_text("x=1\n")
    os.link(upper / "etc" / "conf", upper / "etc" / "hard")
    if os.geteuid() == 0:
        os.mknod(upper / "gone", 0o600 | 0o020000, 0)          # an overlay whiteout
    with staging.layer_stream(str(upper), None, since) as raw:
        data = raw.read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        names = {m.name: m for m in tf.getmembers()}
        assert tf.extractfile("etc/conf").read() == b"x=1\n"
    assert names["etc/hard"].islnk() or names["etc/conf"].islnk()
    if os.geteuid() == 0:
        assert ".wh.gone" in names


def test_a_failing_child_is_an_error(tmp_path):
    with pytest.raises(OSError, match="making the layer tar"):
        with staging.layer_stream(str(tmp_path / "missing"), None, 0) as raw:
            raw.read()


def test_a_reader_that_gives_up_keeps_its_own_error(tmp_path):
    upper = tmp_path / "upper"
    since = staging.prepare_upper(str(upper))
    (upper / "big").write_bytes(os.urandom(4 << 20))
    with pytest.raises(ValueError, match="mine"):
        with staging.layer_stream(str(upper), None, since) as raw:
            raw.read(1000)
            raise ValueError("mine")


@pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts and trusted.* xattrs need root")
def test_plain_tree_tells_an_upper_with_overlay_artefacts(tmp_path):
    """A parentless layer's upper directory is imported as a directory only
    when nothing of overlayfs is in it: a whiteout (0/0 character device,
    deep down) or a trusted.overlay.* xattr (on a directory or a file) sends
    it through the layer tar, which turns them into what they mean."""
    def fresh(name):
        upper = tmp_path / name / "upper"
        staging.prepare_upper(str(upper))
        (upper / "etc" / "deep").mkdir(parents=True)
        (upper / "etc" / "deep" / "f").write_text("x")
        os.symlink("nowhere", upper / "etc" / "dangling")
        os.mkfifo(upper / "etc" / "fifo")
        os.setxattr(upper / "etc" / "deep" / "f", "user.ok", b"1")
        return upper
    assert staging.plain_tree(str(fresh("plain")))
    u = fresh("whiteout")
    os.mknod(u / "etc" / "deep" / "gone", 0o600 | 0o020000, 0)
    assert not staging.plain_tree(str(u))
    u = fresh("device")                             # a real character device is content
    os.mknod(u / "etc" / "null", 0o600 | 0o020000, os.makedev(1, 3))
    assert staging.plain_tree(str(u))
    u = fresh("opaque")
    os.setxattr(u / "etc" / "deep", "trusted.overlay.opaque", b"y")
    assert not staging.plain_tree(str(u))
    u = fresh("origin")
    os.setxattr(u / "etc" / "deep" / "f", "trusted.overlay.origin", b"\0")
    assert not staging.plain_tree(str(u))
