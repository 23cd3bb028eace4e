"""``diff`` and exported diff layers report what a user can see change:
content and metadata, not ctimes or block pointers (issue 16, item 6).
Trees written separately with equal content are equal; a change of one
byte at an equal size is still a change."""
from __future__ import annotations

import io
import pytest
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
    assert [(c.kind, c.path) for c in store.diff("a", "b")] == [("C", "/bin/other")]
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


def test_equal_trees_numbered_differently_do_not_differ(store, tmp_path):
    """The same files written by two importers get other inode numbers (a directory
    import numbers files before subdirectories, a layer in archive order): equal
    still, and a real change inside a renumbered directory is still found."""
    src = tmp_path / "src"
    _tree(src)
    (src / "bin" / "sub").mkdir()
    (src / "bin" / "sub" / "deep").write_text("deep\n")
    os.utime(src / "bin" / "sub" / "deep", ns=(1_600_000_000_000_000_000,) * 2)
    os.utime(src / "bin" / "sub", ns=(1_600_000_000_000_000_000,) * 2)
    os.utime(src / "bin", ns=(1_600_000_000_000_000_000,) * 2)
    store.import_dir(src, "a")
    buf = io.BytesIO()
    export_tar(store, "a", buf)
    import_image(store, io.BytesIO(buf.getvalue()), "b")
    with store.fs("a") as fa, store.fs("b") as fb:
        assert fa.stat("/bin/sub").st_ino != fb.stat("/bin/sub").st_ino
    assert store.diff("a", "b") == []
    assert _layer_members(store, "a", "b") == []
    store.clone("b", "c")
    with store.fs("c") as fs:
        st = fs.stat("/bin/sub/deep")
        fs.write_bytes("/bin/sub/deep", b"DEEP\n")
        fs.utime("/bin/sub/deep", ns=(st.st_atime_ns, st.st_mtime_ns))
        et = fs.stat("/etc")
        fs.unlink("/etc/motd")
        fs.utime("/etc", ns=(et.st_atime_ns, et.st_mtime_ns))
    store.commit("c", "c1")
    assert [(c.kind, c.path) for c in store.diff("a", "c1")] == [
        ("C", "/bin/sub/deep"), ("D", "/etc/motd")]
    assert _layer_members(store, "a", "c1") == ["bin/sub/deep", "etc/.wh.motd"]


def _random_edits(fs, rnd, n):
    """n random visible edits (files, dirs, symlinks, modes, xattrs, hard links)."""
    for _ in range(n):
        files = [os.path.join(d, f) for d, _, fl in fs.walk("/") for f in fl]
        dirs = [d for d, _, _ in fs.walk("/")]
        op = rnd.choice(["write", "same", "new", "mkdir", "rm", "rmtree", "chmod", "xattr",
                         "link", "replace_dir"])
        d = rnd.choice(dirs)
        if op == "write" and files:
            p = rnd.choice(files)
            if not fs.islink(p):
                fs.write_bytes(p, os.urandom(rnd.choice([10, 5000, 40000])))
        elif op == "same" and files:
            p = rnd.choice(files)
            if not fs.islink(p):
                fs.write_bytes(p, fs.read_bytes(p))       # same bytes, new blocks, new times
        elif op == "new":
            fs.write_bytes(d.rstrip("/") + f"/n{rnd.randrange(10**6)}", os.urandom(3000))
        elif op == "mkdir":
            fs.makedirs(d.rstrip("/") + f"/d{rnd.randrange(10**6)}/x", exist_ok=True)
        elif op == "rm" and files:
            fs.unlink(rnd.choice(files))
        elif op == "rmtree" and d != "/":
            for sub, _, fl in list(fs.walk(d, topdown=False)):
                for f in fl:
                    fs.unlink(sub.rstrip("/") + "/" + f)
                fs.rmdir(sub)
        elif op == "chmod" and files:
            p = rnd.choice(files)
            if not fs.islink(p):
                fs.chmod(p, rnd.choice([0o600, 0o755, 0o640]))
        elif op == "xattr" and files:
            p = rnd.choice(files)
            if not fs.islink(p):
                fs.setxattr(p, "user.r", os.urandom(8))
        elif op == "link" and files:
            p = rnd.choice(files)
            if not fs.islink(p):
                fs.link(p, d.rstrip("/") + f"/h{rnd.randrange(10**6)}")
        elif op == "replace_dir" and d != "/":
            # the same name, a new directory inode with part of the old content
            keep = {f: fs.read_bytes(d.rstrip("/") + "/" + f) for f in fs.listdir(d)
                    if fs.isfile(d.rstrip("/") + "/" + f) and not fs.islink(d + "/" + f)}
            for sub, _, fl in list(fs.walk(d, topdown=False)):
                for f in fl:
                    fs.unlink(sub.rstrip("/") + "/" + f)
                fs.rmdir(sub)
            fs.mkdir(d)
            for f, data in list(keep.items())[::2]:
                fs.write_bytes(d + "/" + f, data)


def _describe_tree(store, name, dst):
    """R.describe plus the link count (a hard link added or removed is a visible change)."""
    store.export_dir(name, dst)
    d = R.describe(str(dst))
    return {p: v if p == "__links__" else v + (os.lstat(str(dst) + p).st_nlink,)
            for p, v in d.items()}


@pytest.mark.parametrize("seed", range(8))
def test_diff_and_layer_match_the_trees_across_numberings(store, tmp_path, seed):
    """Seeded random edits on a tree renumbered by a round trip through a tar: the
    diff names exactly the paths whose described state differs, and the exported
    layer applied by the reference applier turns a into the result."""
    import random
    rnd = random.Random(seed)
    src = tmp_path / "src"
    _tree(src)
    for i in range(4):
        (src / f"dir{i}" / "sub").mkdir(parents=True)
        for j in range(3):
            (src / f"dir{i}" / f"f{j}").write_bytes(os.urandom(rnd.choice([100, 9000])))
            (src / f"dir{i}" / "sub" / f"g{j}").write_bytes(os.urandom(200))
    store.import_dir(src, "a")
    buf = io.BytesIO()
    export_tar(store, "a", buf)
    base = "a"
    if seed % 2:
        import_image(store, io.BytesIO(buf.getvalue()), "b")   # other inode numbers
        base = "b"
    store.clone(base, "c")
    with store.fs("c") as fs:
        _random_edits(fs, rnd, 15)
    store.commit("c", "c1")
    da = _describe_tree(store, "a", tmp_path / "xa")
    dc = _describe_tree(store, "c1", tmp_path / "xc")
    differ = {p for p in set(da) | set(dc) if p != "__links__" and da.get(p) != dc.get(p)}

    def under_deleted(p):
        parts = p.split("/")
        return any("/".join(parts[:i]) in da and "/".join(parts[:i]) not in dc
                   for i in range(2, len(parts)))
    want = {p for p in differ if not (p not in dc and under_deleted(p))}
    got = {c.path for c in store.diff("a", "c1")}
    assert got == want, [(p, da.get(p)[5:], dc.get(p)[5:]) for p in got ^ want]
    layer = io.BytesIO()
    export_tar(store, "c1", layer, parent="a")
    R.apply_layer(str(tmp_path / "xa"), layer.getvalue())
    assert R.diff_desc(R.describe(str(tmp_path / "xa")), R.describe(str(tmp_path / "xc"))) == []
