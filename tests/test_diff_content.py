"""``diff`` and exported diff layers report what a user can see change:
content and metadata, not ctimes or block pointers (issue 16, item 6).
Trees written separately with equal content are equal; a change of one
byte at an equal size is still a change."""
from __future__ import annotations

import io
import os
import tarfile

from blockstore.oci import export_tar, import_image

import oci_ref as R


def _tree(root, seed=b""):
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "motd").write_text("hello\n")                 # inline
    (root / "bin").mkdir()
    (root / "bin" / "big").write_bytes(bytes(range(256)) * 400)   # extents
    (root / "bin" / "other").write_bytes(b"o" * 50000 + seed)
    os.setxattr(root / "bin" / "big", "user.x", b"v" * 3000)
    os.symlink("big", root / "bin" / "ln")
    for p in (root / "etc" / "motd", root / "bin" / "big", root / "bin" / "other",
              root / "bin", root / "etc", root):
        os.utime(p, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    os.utime(root / "bin" / "ln", ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000),
             follow_symlinks=False)


def _layer_members(store, parent, name):
    buf = io.BytesIO()
    export_tar(store, name, buf, parent=parent)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tf:
        return [m.name for m in tf.getmembers()]


def test_separately_written_equal_trees_do_not_differ(store, tmp_path):
    src = tmp_path / "src"
    _tree(src)
    store.import_dir(src, "a")
    store.import_dir(src, "b")
    assert store.info("a").root != store.info("b").root       # written twice
    assert store.diff("a", "b") == []
    assert _layer_members(store, "a", "b") == []
    # a clone whose files are rewritten with the same bytes: no change either
    store.clone("a", "c")
    with store.fs("c") as fs:
        st = fs.stat("/bin/big")
        data = fs.read_bytes("/bin/big")
        fs.write_bytes("/bin/big", data)
        fs.utime("/bin/big", ns=(st.st_atime_ns, st.st_mtime_ns))
    store.commit("c", "c1")
    assert store.diff("a", "c1") == []
    assert _layer_members(store, "a", "c1") == []


def test_equal_size_content_change_is_a_change(store, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _tree(a, b"1")
    _tree(b, b"2")
    store.import_dir(a, "a")
    store.import_dir(b, "b")
    assert [(c.kind, c.path) for c in store.diff("a", "b")] == [("M", "/bin/other")]
    assert _layer_members(store, "a", "b") == ["bin/other"]


def test_same_layer_imported_twice_onto_one_parent(store, tmp_path):
    src = tmp_path / "src"
    _tree(src)
    store.import_dir(src, "base")
    layer = R.layer([("etc/new", "f", b"n" * 9000), ("bin/other", "f", b"x" * 70000),
                     ("etc/.wh.motd", "f", b"")])
    for name in ("l1", "l2"):
        import_image(store, io.BytesIO(layer), name, parent="base")
    assert store.info("l1").root != store.info("l2").root
    assert store.diff("l1", "l2") == []
    assert _layer_members(store, "l1", "l2") == []
    assert {c.path for c in store.diff("base", "l2")} == {"/etc/new", "/bin/other", "/etc/motd"}
