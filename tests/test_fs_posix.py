"""Targeted POSIX semantics of the filesystem layer through ``TreeView``:
each test states the Linux behaviour it checks and ends with ``check().ok``."""
from __future__ import annotations

import errno
import os
import stat as S

import pytest



@pytest.fixture
def fs(store):
    store.create("c")
    with store.fs("c") as f:
        yield f


def test_mkdir_ignores_setuid_setgid_bits(fs, tmp_path):
    """mkdir(2) uses mode & 01777 & ~umask: setuid/setgid in the mode are dropped
    (sticky kept)."""
    old = os.umask(0)
    try:
        os.mkdir(tmp_path / "h", 0o6755)
        os.mkdir(tmp_path / "k", 0o1777)
        fs.mkdir("/h", 0o6755)
        fs.mkdir("/k", 0o1777)
    finally:
        os.umask(old)
    assert S.S_IMODE(fs.stat("/h").st_mode) == S.S_IMODE(os.stat(tmp_path / "h").st_mode) == 0o755
    assert S.S_IMODE(fs.stat("/k").st_mode) == 0o1777


def test_setgid_directory_gives_its_group_and_the_bit_to_new_entries(fs):
    """Linux (BSD group semantics): in an S_ISGID directory new inodes get the
    directory's group; new subdirectories get S_ISGID as well, files do not."""
    fs.mkdir("/g", 0o775, gid=4242)
    fs.chmod("/g", 0o2775)
    fs.mkdir("/g/sub", gid=7)
    fs.write_bytes("/g/f", b"x")
    fs.symlink("f", "/g/ln")
    assert fs.stat("/g/sub").st_gid == fs.stat("/g/f").st_gid == fs.lstat("/g/ln").st_gid == 4242
    assert fs.stat("/g/sub").st_mode & S.S_ISGID
    assert not fs.stat("/g/f").st_mode & S.S_ISGID
    fs.mkdir("/plain", gid=7)
    fs.mkdir("/plain/sub", gid=9)
    assert fs.stat("/plain/sub").st_gid == 9 and not fs.stat("/plain/sub").st_mode & S.S_ISGID


def test_create_through_a_dangling_symlink_to_dir_dot(fs, tmp_path):
    """open(O_CREAT) through a symlink to "x/.": ENOENT while x is missing, EISDIR
    once x is a directory (the path names x itself), as on Linux."""
    for root in (str(tmp_path), None):
        ln = (lambda t, p: os.symlink(t, root + p)) if root else fs.symlink
        mk = (lambda p: os.mkdir(root + p)) if root else fs.mkdir
        op = (lambda p: open(root + p, "ab")) if root else (lambda p: fs.open(p, "ab"))
        ln("x/.", "/l")
        with pytest.raises(OSError) as ei:
            op("/l")
        assert ei.value.errno == errno.ENOENT, root
        mk("/x")
        with pytest.raises(OSError) as ei:
            op("/l")
        assert ei.value.errno == errno.EISDIR, root


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


# -- rename(2) ----------------------------------------------------------------------------

def test_rename_two_names_of_one_inode_is_a_noop(fs):
    """rename(a, b) where a and b link the same inode does nothing (both names stay)."""
    fs.write_bytes("/a", b"x")
    fs.link("/a", "/b")
    fs.rename("/a", "/b")
    assert fs.listdir("/") == ["a", "b"] and fs.stat("/a").st_nlink == 2


def test_rename_directory_over_empty_and_non_empty_directory(fs):
    fs.makedirs("/src/sub")
    fs.write_bytes("/src/sub/f", b"data")
    fs.mkdir("/empty")
    fs.makedirs("/full/x")
    with pytest.raises(OSError) as ei:
        fs.rename("/src", "/full")
    assert ei.value.errno == errno.ENOTEMPTY
    fs.rename("/src", "/empty")
    assert fs.read_bytes("/empty/sub/f") == b"data" and not fs.exists("/src")
    assert fs.stat("/").st_nlink == 2 + 2        # empty (was src) and full


def test_rename_directory_into_its_own_subtree_is_einval(fs):
    fs.makedirs("/a/b/c")
    for dst in ("/a/b/c/a", "/a/b/x", "/a/x"):
        with pytest.raises(OSError) as ei:
            fs.rename("/a", dst)
        assert ei.value.errno == errno.EINVAL
    assert fs.isdir("/a/b/c")


def test_rename_onto_a_directory_the_source_is_in_is_enotempty(fs, tmp_path):
    """Linux: the target being an ancestor of the source is ENOTEMPTY, checked before
    the types (a file or symlink renamed over its own parent directory)."""
    for root in (str(tmp_path), None):
        mk = (lambda p: os.mkdir(root + p)) if root else fs.mkdir
        ln = (lambda t, p: os.symlink(t, root + p)) if root else fs.symlink
        ren = (lambda a, b: os.rename(root + a, root + b)) if root else fs.rename
        mk("/b")
        mk("/b/c")
        ln("x", "/b/c/l")
        for src, dst in (("/b/c/l", "/b"), ("/b/c/l", "/b/c"), ("/b/c", "/b")):
            with pytest.raises(OSError) as ei:
                ren(src, dst)
            assert ei.value.errno == errno.ENOTEMPTY, (root, src, dst)


def test_rename_type_mismatch_errors(fs):
    fs.mkdir("/d")
    fs.write_bytes("/f", b"")
    with pytest.raises(OSError) as ei:
        fs.rename("/d", "/f")
    assert ei.value.errno == errno.ENOTDIR
    with pytest.raises(OSError) as ei:
        fs.rename("/f", "/d")
    assert ei.value.errno == errno.EISDIR
    with pytest.raises(OSError) as ei:
        fs.rename("/missing", "/x")
    assert ei.value.errno == errno.ENOENT


def test_rename_over_file_releases_the_replaced_file(store, fs):
    fs.write_bytes("/big", os.urandom(64 * 1024))
    fs.write_bytes("/small", b"s" * 5000)
    used = store.df().used_bytes
    fs.rename("/small", "/big")
    assert fs.read_bytes("/big") == b"s" * 5000 and fs.listdir("/") == ["big"]
    store.gc()
    assert store.df().used_bytes == used - 64 * 1024


def test_renameat2_noreplace_and_exchange(fs):
    NOREPLACE, EXCHANGE = 1, 2
    fs.makedirs("/d/inner")
    fs.write_bytes("/f", b"file")
    fs.mkdir("/e")
    with pytest.raises(FileExistsError):
        fs.rename("/f", "/d", NOREPLACE)
    fs.rename("/f", "/g", NOREPLACE)
    with pytest.raises(OSError) as ei:
        fs.rename("/g", "/nothere", EXCHANGE)
    assert ei.value.errno == errno.ENOENT
    # Exchange a file and a directory in different parents: nlinks follow the directory.
    fs.rename("/g", "/e", EXCHANGE)
    assert fs.isdir("/g") and fs.read_bytes("/e") == b"file"
    fs.rename("/d/inner", "/e", EXCHANGE)
    assert fs.isdir("/e") and fs.read_bytes("/d/inner") == b"file"
    assert fs.stat("/d").st_nlink == 2 and fs.stat("/").st_nlink == 2 + 3   # d, e, g
    with pytest.raises(OSError) as ei:
        fs.rename("/d", "/d/inner", EXCHANGE)       # d would move into itself
    assert ei.value.errno == errno.EINVAL


# -- links, unlink while open -----------------------------------------------------------------

def test_hard_links_share_content_and_count(fs):
    fs.write_bytes("/a", b"one")
    fs.mkdir("/d")
    fs.link("/a", "/d/b")
    fs.link("/d/b", "/c")
    assert [fs.stat(p).st_nlink for p in ("/a", "/d/b", "/c")] == [3, 3, 3]
    assert len({fs.stat(p).st_ino for p in ("/a", "/d/b", "/c")}) == 1
    with fs.open("/c", "r+b") as fh:
        fh.write(b"ONE")
    assert fs.read_bytes("/a") == b"ONE"
    fs.unlink("/a")
    fs.unlink("/c")
    assert fs.stat("/d/b").st_nlink == 1 and fs.read_bytes("/d/b") == b"ONE"


def test_unlink_while_open_keeps_the_inode_until_close(store, fs):
    data = os.urandom(100_000)
    fs.write_bytes("/f", data)
    fh = fs.open("/f", "r+b")
    fs.unlink("/f")
    assert not fs.exists("/f")
    fh.seek(50_000)
    fh.write(b"Z" * 10)
    fh.flush()
    fh.seek(0)
    assert fh.read() == data[:50_000] + b"Z" * 10 + data[50_010:]
    assert store.check().ok
    used = store.df().used_bytes
    fh.close()
    store.gc()
    assert store.df().used_bytes <= used - 100_000 // 4096 * 4096
    fs.write_bytes("/f", b"new")                  # the name is free again
    assert fs.read_bytes("/f") == b"new"


# -- content: truncate, holes, append, seek data/hole, inline, big files -----------------------

def test_truncate_up_and_down_reads_zeros(fs):
    fs.write_bytes("/f", b"a" * 10_000)
    fs.truncate("/f", 5000)
    fs.truncate("/f", 20_000)
    assert fs.read_bytes("/f") == b"a" * 5000 + bytes(15_000)
    fs.truncate("/f", 100)
    fs.truncate("/f", 3000)
    assert fs.read_bytes("/f") == b"a" * 100 + bytes(2900)
    fs.truncate("/f", 0)
    assert fs.read_bytes("/f") == b"" and fs.stat("/f").st_size == 0


def test_write_past_eof_leaves_a_hole_that_costs_nothing(store, fs):
    used = store.df().used_bytes
    with fs.open("/sparse", "wb") as fh:
        fh.seek(10 * 1024 * 1024)
        fh.write(b"end")
    st = fs.stat("/sparse")
    assert st.st_size == 10 * 1024 * 1024 + 3
    assert store.df().used_bytes - used == 4096          # one block of data, no hole blocks
    assert st.st_blocks * 512 == 4096
    with fs.open("/sparse", "rb") as fh:
        fh.seek(5 * 1024 * 1024)
        assert fh.read(4096) == bytes(4096)


def test_append_mode_always_writes_at_the_end(fs):
    fs.write_bytes("/log", b"1")
    with fs.open("/log", "ab") as fh:
        fh.write(b"2")
        fh.seek(0)
        fh.write(b"3")
    with fs.open("/log", "a+b") as fh:
        fh.seek(0)
        assert fh.read() == b"123"
        fh.write(b"4")
        fh.seek(0)
        assert fh.read() == b"1234"
    assert fs.read_bytes("/log") == b"1234"


def test_seek_data_and_seek_hole(fs):
    bs = 4096
    with fs.open("/f", "wb") as fh:
        fh.seek(2 * bs)
        fh.write(b"x" * bs)            # data in block 2 only
        fh.seek(6 * bs)
        fh.write(b"y" * 10)            # block 6, file ends inside it
    with fs.open("/f", "rb", buffering=0) as fh:
        assert fh.seek(0, os.SEEK_DATA) == 2 * bs
        assert fh.seek(2 * bs + 5, os.SEEK_HOLE) == 3 * bs
        assert fh.seek(3 * bs, os.SEEK_DATA) == 6 * bs
        assert fh.seek(6 * bs, os.SEEK_HOLE) == 6 * bs + 10      # the end is a hole
        assert fh.seek(0, os.SEEK_HOLE) == 0
        with pytest.raises(OSError) as ei:
            fh.seek(6 * bs + 10, os.SEEK_DATA)
        assert ei.value.errno == errno.ENXIO


def test_inline_to_extents_at_960_bytes_and_back(store, fs):
    used = store.df().used_bytes
    fs.write_bytes("/f", b"i" * 960)
    assert store.df().used_bytes == used                   # inline: no pool block
    with fs.open("/f", "ab") as fh:
        fh.write(b"j")                                     # 961 bytes: one block
    assert store.df().used_bytes == used + 4096
    assert fs.read_bytes("/f") == b"i" * 960 + b"j"
    fs.truncate("/f", 500)
    assert fs.read_bytes("/f") == b"i" * 500
    fs.truncate("/f", 2000)
    assert fs.read_bytes("/f") == b"i" * 500 + bytes(1500)
    fs.write_bytes("/f", b"k" * 900)                       # rewritten small: inline again
    store.gc()
    assert fs.read_bytes("/f") == b"k" * 900 and store.df().used_bytes == used
    # A zero-filled file growing out of inline stores nothing at all.
    fs.write_bytes("/z", bytes(960))
    with fs.open("/z", "ab") as fh:
        fh.write(bytes(10))
    assert fs.read_bytes("/z") == bytes(970) and store.df().used_bytes == used


def test_big_file_random_writes_byte_exact(fs):
    import random
    rnd = random.Random(7)
    size = 6 * 1024 * 1024
    model = bytearray(rnd.randbytes(size))
    fs.write_bytes("/big", bytes(model))
    with fs.open("/big", "r+b") as fh:
        for _ in range(60):
            off = rnd.randrange(0, size + 100_000)
            data = rnd.randbytes(rnd.choice([1, 100, 4096, 5000, 70_000]))
            fh.seek(off)
            fh.write(data)
            if off > len(model):
                model.extend(bytes(off - len(model)))
            model[off:off + len(data)] = data
    assert fs.stat("/big").st_size == len(model)
    assert fs.read_bytes("/big") == bytes(model)
    with fs.open("/big", "rb") as fh:
        for _ in range(30):
            off, n = rnd.randrange(len(model)), rnd.randrange(1, 200_000)
            fh.seek(off)
            assert fh.read(n) == bytes(model[off:off + n])


# -- xattrs, symlinks, special files --------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 4000, 4096, 10_000, 65536])
def test_xattr_sizes_up_to_64k(fs, size):
    value = bytes((i * 7 + 1) % 251 for i in range(size))
    fs.write_bytes("/f", b"")
    fs.setxattr("/f", "user.v", value)
    assert fs.getxattr("/f", "user.v") == value
    fs.setxattr("/f", "user.v", b"short")                  # replace large with small
    assert fs.getxattr("/f", "user.v") == b"short"
    fs.setxattr("/f", "user.v", value)
    fs.removexattr("/f", "user.v")
    assert fs.listxattr("/f") == []
    with pytest.raises(OSError) as ei:
        fs.getxattr("/f", "user.v")
    assert ei.value.errno == errno.ENODATA


def test_xattr_flags_and_too_big(fs):
    fs.mkdir("/d")
    with pytest.raises(OSError) as ei:
        fs.setxattr("/d", "user.a", b"1", os.XATTR_REPLACE)
    assert ei.value.errno == errno.ENODATA
    fs.setxattr("/d", "user.a", b"1", os.XATTR_CREATE)
    with pytest.raises(OSError) as ei:
        fs.setxattr("/d", "user.a", b"2", os.XATTR_CREATE)
    assert ei.value.errno == errno.EEXIST
    with pytest.raises(OSError) as ei:
        fs.setxattr("/d", "user.big", b"x" * 65537)
    assert ei.value.errno == errno.E2BIG
    assert fs.listxattr("/d") == ["user.a"]


def test_symlink_loops_are_eloop(fs):
    fs.symlink("b", "/a")
    fs.symlink("a", "/b")
    fs.symlink("self/x", "/self")
    for p in ("/a", "/b/x", "/self"):
        with pytest.raises(OSError) as ei:
            fs.stat(p)
        assert ei.value.errno == errno.ELOOP
    with pytest.raises(OSError) as ei:
        fs.open("/a", "w")
    assert ei.value.errno == errno.ELOOP
    assert fs.readlink("/a") == "b" and S.S_ISLNK(fs.lstat("/a").st_mode)


def test_mknod_fifo_and_devices_are_metadata_only(store, fs):
    used = store.df().used_bytes
    fs.mknod("/fifo", S.S_IFIFO | 0o644)
    fs.mknod("/null", S.S_IFCHR | 0o666, os.makedev(1, 3))
    fs.mknod("/sda", S.S_IFBLK | 0o660, os.makedev(8, 0))
    st = fs.lstat("/null")
    assert S.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3) and st.st_size == 0
    assert S.S_ISBLK(fs.lstat("/sda").st_mode) and fs.lstat("/sda").st_rdev == os.makedev(8, 0)
    assert S.S_ISFIFO(fs.lstat("/fifo").st_mode) and fs.lstat("/fifo").st_rdev == 0
    assert store.df().used_bytes == used
    with pytest.raises(FileExistsError):
        fs.mknod("/fifo", S.S_IFIFO | 0o644)


# -- io objects -------------------------------------------------------------------------

def test_text_mode_readline_iteration_and_newlines(fs):
    with fs.open("/t.txt", "w", encoding="utf-8") as fh:
        fh.write("héllo\nwörld\n")
        fh.write("last")
    with fs.open("/t.txt") as fh:
        assert fh.readline() == "héllo\n"
        assert list(fh) == ["wörld\n", "last"]
    with fs.open("/t.txt", "rb") as fh:
        assert fh.readlines() == ["héllo\n".encode(), "wörld\n".encode(), b"last"]
    fs.write_bytes("/crlf", b"a\r\nb\r\n")
    with fs.open("/crlf", "r", newline=None) as fh:
        assert fh.read() == "a\nb\n"


def test_x_mode_and_r_plus_on_missing(fs):
    with fs.open("/new", "x") as fh:
        fh.write("1")
    with pytest.raises(FileExistsError):
        fs.open("/new", "x")
    with pytest.raises(FileNotFoundError):
        fs.open("/missing", "r+")
    with pytest.raises(IsADirectoryError):
        fs.open("/", "rb")


def test_seek_tell_truncate_through_the_file_object(fs):
    with fs.open("/f", "w+b") as fh:
        fh.write(b"0123456789")
        assert fh.tell() == 10
        fh.seek(-3, os.SEEK_END)
        assert fh.read() == b"789"
        fh.seek(4)
        assert fh.truncate() == 4
        assert fh.tell() == 4
        fh.seek(0)
        assert fh.read() == b"0123"
        fh.truncate(8)
        fh.seek(0)
        assert fh.read() == b"0123" + bytes(4)
        buf = bytearray(3)
        fh.seek(1)
        assert fh.readinto(buf) == 3 and buf == b"123"
    with pytest.raises(ValueError):
        fh.read()
    with fs.open("/f", "rb") as fh:
        import io
        with pytest.raises(io.UnsupportedOperation):
            fh.write(b"x")


# -- snapshots and copy-on-write ----------------------------------------------------------

def test_snapshot_writes_are_erofs(store, fs):
    fs.write_bytes("/f", b"x")
    fs.mkdir("/d")
    store.commit("c", "snap")
    with store.fs("snap") as snap:
        for op in (lambda: snap.write_bytes("/g", b"1"), lambda: snap.open("/f", "r+b"),
                   lambda: snap.open("/f", "ab"), lambda: snap.unlink("/f"),
                   lambda: snap.mkdir("/e"), lambda: snap.rmdir("/d"),
                   lambda: snap.rename("/f", "/h"), lambda: snap.chmod("/f", 0o600),
                   lambda: snap.truncate("/f", 0), lambda: snap.setxattr("/f", "user.a", b"1"),
                   lambda: snap.symlink("f", "/l"), lambda: snap.link("/f", "/l"),
                   lambda: snap.utime("/f", ns=(1, 1))):
            with pytest.raises(PermissionError) as ei:
                op()
            assert ei.value.errno == errno.EROFS
        assert snap.read_bytes("/f") == b"x" and sorted(snap.listdir("/")) == ["d", "f"]


def test_small_write_into_big_clone_file_costs_one_block(store, fs):
    size = 8 * 1024 * 1024
    with fs.open("/big", "wb") as fh:
        fh.write(os.urandom(size))
    store.commit("c", "base")
    store.clone("base", "w")
    before = store.df().used_bytes
    assert store.usage("w").exclusive == 0
    with store.fs("w") as w:
        with w.open("/big", "r+b") as fh:
            fh.seek(3 * 1024 * 1024 + 123)
            fh.write(os.urandom(4096))                  # straddles two blocks
        added = store.df().used_bytes - before
        assert added == 2 * 4096
        u = store.usage("w")
        assert u.exclusive == 2 * 4096 and u.referenced == size and u.logical == size
        with w.open("/big", "r+b") as fh:
            fh.seek(5 * 4096)
            fh.write(b"q" * 4096)                       # aligned: exactly one block
        assert store.df().used_bytes - before == 3 * 4096
        assert store.usage("w").exclusive == 3 * 4096
        assert store.usage("w").referenced == size
    with store.fs("base") as b:
        assert b.stat("/big").st_size == size


def test_readdir_order_is_stable_while_entries_come_and_go(fs):
    """Entries are listed in creation order; a cursor (the index of the last entry
    seen) stays valid across removals and additions: nothing seen is repeated, no
    surviving entry is skipped, new entries appear after the old ones."""
    fs.mkdir("/d")
    names = [f"n{i:03d}" for i in range(200)]
    for n in names:
        fs.write_bytes(f"/d/{n}", b"")
    ino = fs.stat("/d").st_ino
    first = fs.readdir(ino, 0)[:50]
    assert [e[1].decode() for e in first] == names[:50]
    cursor = first[-1][0]
    for n in names[::3]:                       # remove some seen and some unseen entries
        fs.unlink(f"/d/{n}")
    fs.write_bytes("/d/late", b"")
    fs.rename("/d/n199", "/d/renamed")         # a rename is a new entry at the end
    rest = [e[1].decode() for e in fs.readdir(ino, cursor)]
    expected = [n for n in names[50:] if n not in names[::3] and n != "n199"] + ["late", "renamed"]
    assert rest == expected
    assert fs.listdir("/d") == [n for n in names if n not in names[::3] and n != "n199"] + [
        "late", "renamed"]


def test_exclusive_create_on_a_symlink_loop_is_eexist(fs):
    """O_CREAT|O_EXCL never follows the last component: any existing name is EEXIST,
    even a symlink loop (which without O_EXCL gives ELOOP)."""
    fs.symlink("loop", "/loop")
    with pytest.raises(FileExistsError):
        fs.open("/loop", "xb")
    with pytest.raises(OSError) as ei:
        fs.open("/loop", "wb")
    assert ei.value.errno == errno.ELOOP


def test_trailing_slash_requires_a_directory(fs):
    """A path ending in '/' names a directory: for a file it is ENOTDIR (stat, open);
    a symlink to a directory is followed."""
    fs.write_bytes("/f", b"x")
    fs.mkdir("/d")
    fs.symlink("d", "/ld")
    for op in (lambda: fs.stat("/f/"), lambda: fs.open("/f/", "rb"), lambda: fs.lstat("/f/")):
        with pytest.raises(OSError) as ei:
            op()
        assert ei.value.errno == errno.ENOTDIR
    assert S.S_ISDIR(fs.stat("/d/").st_mode) and S.S_ISDIR(fs.lstat("/ld/").st_mode)


def test_commit_and_clone_do_not_keep_files_unlinked_while_open(store, fs):
    """A file unlinked while open has no name: a snapshot taken meanwhile (and its
    clones) must not carry it, or its blocks would be held forever."""
    fs.write_bytes("/f", os.urandom(40960))
    fh = fs.open("/f", "rb")
    fs.unlink("/f")
    store.commit("c", "snap")
    store.clone("snap", "c2")
    assert len(fh.read()) == 40960
    fh.close()
    for name in ("snap", "c2", "c"):
        u = store.usage(name)
        assert (u.logical, u.referenced, u.files) == (0, 0, 0), name
    store.gc()
    assert store.df().used_bytes == 0
