"""import_dir then export_dir reproduces real trees exactly.

Compared per entry (``manifest``): type and mode, owner, size, mtime and
atime in ns, symlink target, device number, xattrs, hard-link groups and
content (SHA-256); for the constructed tree also the SEEK_DATA/SEEK_HOLE
map of sparse files.  Times: the source's stat manifest is taken BEFORE the
import (the import's own reads may bump atimes under relatime afterwards;
it records each entry's lstat before reading it), after one settling walk
that makes every directory's relatime update happen first.

Trees: a constructed tricky tree (devices, fifo, socket, hard links,
xattrs, holes, odd names, odd owners and times); this machine's
/usr/lib/python3.X; /usr/share/doc (bounded). Behind ``-m slow``: all of
/usr/share and an mmdebstrap root filesystem (its tarball cached under
~/.cache/blockstore-tests).
"""
from __future__ import annotations

import errno
import glob
import hashlib
import os
import shutil
import stat as S
import subprocess
import tarfile

import pytest

from blockstore import Store

CACHE = os.path.expanduser("~/.cache/blockstore-tests")


# ------------------------------------------------------------------ comparing trees
def settle(root: str) -> None:
    """Do once every atime-bumping thing the import does before its lstat (list
    directories, read symlinks), so relatime's one update happens before the manifest."""
    manifest(root)


def _xattrs(p: str) -> dict:
    try:
        return {n: os.getxattr(p, n, follow_symlinks=False)
                for n in os.listxattr(p, follow_symlinks=False)}
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return {}
        raise


def manifest(root: str) -> dict:
    """rel path -> metadata of every entry under root (root itself is '.'). No file is read."""
    out = {".": _meta(root)}         # stat'ed before it is listed (listing bumps atime)
    stack = [root]
    while stack:                     # no os.walk: its is_dir() follows symlinks (bumps atime)
        d = stack.pop()
        for n in os.listdir(d):
            p = os.path.join(d, n)
            m = out[os.path.relpath(p, root)] = _meta(p)
            if S.S_ISDIR(m["mode"]):
                stack.append(p)
    return out


def _meta(p: str) -> dict:
    st = os.lstat(p)
    m = {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid,
         "mtime": st.st_mtime_ns, "atime": st.st_atime_ns, "xattrs": _xattrs(p),
         "ino": (st.st_dev, st.st_ino), "nlink": st.st_nlink}
    if S.S_ISREG(st.st_mode) or S.S_ISLNK(st.st_mode):
        m["size"] = st.st_size
    if S.S_ISLNK(st.st_mode):
        m["target"] = os.readlink(p)
    if S.S_ISCHR(st.st_mode) or S.S_ISBLK(st.st_mode):
        m["rdev"] = st.st_rdev
    return m


def content(root: str, rel: str) -> str:
    h = hashlib.sha256()
    with open(os.path.join(root, rel), "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def data_map(path: str) -> list[tuple[int, int]]:
    """(start, end) of the data regions (SEEK_DATA/SEEK_HOLE)."""
    out, pos = [], 0
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        fd = f.fileno()
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:
                    break
                raise
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, end))
            pos = end
    return out


def link_groups(man: dict) -> set[frozenset]:
    groups: dict = {}
    for rel, m in man.items():
        if not S.S_ISDIR(m["mode"]) and m["nlink"] > 1:
            groups.setdefault(m["ino"], set()).add(rel)
    return {frozenset(g) for g in groups.values()}


def assert_same_tree(src_man: dict, src: str, dst: str, holes: bool = False) -> None:
    dst_man = manifest(dst)
    assert sorted(dst_man) == sorted(src_man)
    strip = ("ino",)
    for rel, a in src_man.items():
        b = dst_man[rel]
        sa = {k: v for k, v in a.items() if k not in strip}
        sb = {k: v for k, v in b.items() if k not in strip}
        assert sb == sa, rel
        if S.S_ISREG(a["mode"]):
            assert content(dst, rel) == content(src, rel), rel
            if holes:
                assert data_map(os.path.join(dst, rel)) == data_map(os.path.join(src, rel)), rel
    assert link_groups(dst_man) == link_groups(src_man)


def roundtrip(store_dir, src: str, out: str, holes: bool = False, name: str = "t") -> None:
    settle(src)
    man = manifest(src)
    with Store.open(store_dir) as s:
        s.import_dir(src, name)
        s.export_dir(name, out)
        assert_same_tree(man, src, out, holes)
        assert s.check().ok


# ------------------------------------------------------------------ the tricky tree
def make_tricky(root: str) -> None:
    os.makedirs(root)
    d = os.path.join(root, "a", "b", "c")
    os.makedirs(d)
    with open(os.path.join(root, "small.txt"), "w") as f:
        f.write("hello\n")
    open(os.path.join(root, "empty"), "w").close()
    with open(os.path.join(root, "inline-edge"), "wb") as f:
        f.write(os.urandom(960))
    with open(os.path.join(root, "over-inline"), "wb") as f:
        f.write(os.urandom(961))
    with open(os.path.join(d, "big.bin"), "wb") as f:
        f.write(os.urandom(3 * 1024 * 1024 + 17))
    with open(os.path.join(root, "zeros"), "wb") as f:          # explicit zeros, not sparse
        f.write(bytes(100))
    # sparse: hole, data, hole, data, trailing hole (4 KiB aligned)
    sp = os.path.join(root, "sparse")
    with open(sp, "wb") as f:
        f.seek(1 << 20)
        f.write(os.urandom(8192))
        f.seek(16 << 20)
        f.write(os.urandom(4096))
        f.truncate(64 << 20)
    with open(os.path.join(root, "all-hole"), "wb") as f:
        f.truncate(10 << 20)
    big_sparse = os.path.join(root, "big-sparse")              # sparse beyond one import chunk
    with open(big_sparse, "wb") as f:
        f.seek(40 << 20)
        f.write(os.urandom(12 << 20))
        f.truncate(100 << 20)
    # hard links: a group of 3 across directories, and a pair
    hl = os.path.join(root, "hl-1")
    with open(hl, "wb") as f:
        f.write(os.urandom(5000))
    os.link(hl, os.path.join(root, "a", "hl-2"))
    os.link(hl, os.path.join(d, "hl-3"))
    os.link(os.path.join(root, "small.txt"), os.path.join(root, "a", "b", "small-link"))
    # symlinks: relative, absolute, dangling, to a directory, long target
    os.symlink("small.txt", os.path.join(root, "rel-link"))
    os.symlink("/etc/passwd", os.path.join(root, "abs-link"))
    os.symlink("does/not/exist", os.path.join(root, "dangling"))
    os.symlink("a/b", os.path.join(root, "dir-link"))
    os.symlink("x" * 1000, os.path.join(root, "long-link"))
    # devices, fifo, socket
    os.mknod(os.path.join(root, "null"), S.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(os.path.join(root, "loop9"), S.S_IFBLK | 0o660, os.makedev(7, 9))
    os.mknod(os.path.join(root, "big-dev"), S.S_IFCHR | 0o600, os.makedev(4095, 1048575))
    os.mkfifo(os.path.join(root, "fifo"), 0o640)
    os.mknod(os.path.join(root, "sock"), S.S_IFSOCK | 0o755)
    # odd names
    for n in ("space name", "ünïcödé", "new\nline", "-dash", "x" * 255, ".hidden"):
        with open(os.path.join(root, "a", n), "w") as f:
            f.write(n)
    os.mkdir(os.path.join(root, "empty-dir"))
    bad = os.fsencode(root) + b"/latin1-\xe9"
    with open(bad, "wb") as f:
        f.write(b"bytes name")
    # modes, owners, xattrs, times
    os.chmod(os.path.join(root, "small.txt"), 0o4755)
    os.chmod(os.path.join(root, "a", "b"), 0o1777)
    os.chmod(os.path.join(root, "empty-dir"), 0o2750)
    os.chmod(os.path.join(root, "a", "-dash"), 0o000)
    os.chown(os.path.join(root, "a", "space name"), 1234, 5678)
    os.chown(os.path.join(root, "dangling"), 4321, 8765, follow_symlinks=False)
    os.chown(os.path.join(root, "a"), 65534, 65534)
    os.setxattr(os.path.join(root, "small.txt"), "user.color", b"blue")
    os.setxattr(os.path.join(root, "small.txt"), "user.empty", b"")
    os.setxattr(os.path.join(d, "big.bin"), "user.big", os.urandom(3000))
    os.setxattr(os.path.join(root, "a"), "user.dir", b"on a directory")
    os.setxattr(hl, "user.shared", b"one inode, three names")
    os.setxattr(os.path.join(root, "fifo"), "trusted.fifo", b"trusted ns")
    # times with odd nanoseconds, before 1970 and far in the future; atime != mtime
    os.utime(os.path.join(root, "small.txt"), ns=(1_234_567_891_123_456_789, 987_654_321_987_654_321))
    os.utime(os.path.join(root, "zeros"), ns=(-1_000_000_001, -5))
    os.utime(os.path.join(root, "over-inline"), ns=(4_102_444_800_000_000_001, 4_102_444_800_000_000_003))
    os.utime(os.path.join(root, "rel-link"), ns=(111, 222), follow_symlinks=False)
    os.utime(os.path.join(root, "null"), ns=(333, 444))
    os.utime(os.path.join(root, "a", "b"), ns=(555_000_000_123, 666_000_000_456))


def test_tricky_tree(tmp_path):
    src = str(tmp_path / "src")
    make_tricky(src)
    roundtrip(tmp_path / "store", src, str(tmp_path / "out"), holes=True)
    # holes cost nothing in the pool
    with Store.open(tmp_path / "store") as s:
        u = s.usage("t")
        assert u.referenced < 20 << 20          # 64+10+100 MiB apparent, ~19 MiB of data
        assert s.check().ok


def test_python_stdlib(tmp_path):
    cands = sorted(p for p in glob.glob("/usr/lib/python3*") if os.path.isdir(p)
                   and not os.path.islink(p))
    if not cands:
        pytest.skip("no /usr/lib/python3*")
    src = max(cands, key=lambda p: sum(len(f) for _, _, f in os.walk(p)))
    roundtrip(tmp_path / "store", src, str(tmp_path / "out"))


def test_usr_share_doc(tmp_path):
    if not os.path.isdir("/usr/share/doc"):
        pytest.skip("no /usr/share/doc")
    roundtrip(tmp_path / "store", "/usr/share/doc", str(tmp_path / "out"))


def test_layered_import(tmp_path):
    """Import v2 on top of v1: v2 reads back exactly and unchanged files are shared."""
    v1 = str(tmp_path / "v1")
    make_tricky(v1)
    v2 = str(tmp_path / "v2")
    subprocess.run(["cp", "-a", v1, v2], check=True)
    with open(os.path.join(v2, "a", "b", "c", "big.bin"), "r+b") as f:
        f.seek(100_000)
        f.write(b"changed in v2")
    os.unlink(os.path.join(v2, "empty"))
    shutil.rmtree(os.path.join(v2, "a", "b", "c"))
    os.mkdir(os.path.join(v2, "a", "b", "c"))                  # a dir replaced by a new one
    os.unlink(os.path.join(v2, "zeros"))
    os.mkdir(os.path.join(v2, "zeros"))                         # a file replaced by a dir
    with open(os.path.join(v2, "new-file"), "wb") as f:
        f.write(os.urandom(70000))
    os.chmod(os.path.join(v2, "inline-edge"), 0o600)            # metadata-only change
    os.removexattr(os.path.join(v2, "small.txt"), "user.color")
    os.setxattr(os.path.join(v2, "a"), "user.dir", b"changed")
    os.link(os.path.join(v2, "over-inline"), os.path.join(v2, "now-linked"))
    settle(v1)
    settle(v2)
    man2 = manifest(v2)
    with Store.open(tmp_path / "store") as s:
        s.import_dir(v1, "v1")
        s.import_dir(v2, "v2", parent="v1")
        assert s.info("v2").parent == "v1"
        s.export_dir("v2", tmp_path / "out2")
        assert_same_tree(man2, v2, str(tmp_path / "out2"), holes=True)
        u = s.usage("v2")
        assert u.shared > 10 << 20              # sparse/big-sparse data comes from v1
        assert u.exclusive < 1 << 20             # only new-file's blocks are new
        kinds = {(c.kind, c.path) for c in s.diff("v1", "v2")}
        assert ("A", "/new-file") in kinds and ("D", "/empty") in kinds
        assert s.check().ok
        # no working clone is left behind
        assert [r.name for r in s.list()] == ["v1", "v2"] or \
            sorted(r.name for r in s.list()) == ["v1", "v2"]


def test_import_failure_leaves_nothing(tmp_path):
    """An error midway (here: the progress callback raises) leaves no snapshot and
    no working clone, and the store stays consistent."""
    src = str(tmp_path / "src")
    make_tricky(src)
    seen = []

    def progress(path, nbytes):
        seen.append(path)
        if len(seen) == 12:
            raise RuntimeError("stop here")
    with Store.open(tmp_path / "store") as s:
        with pytest.raises(RuntimeError, match="stop here"):
            s.import_dir(src, "t", progress=progress)
        assert s.list() == []
        with pytest.raises(FileNotFoundError):
            s.import_dir(tmp_path / "missing", "t")
        assert s.list() == []
        s.gc()
        assert s.df().used_bytes == 0
        assert s.check().ok


# ------------------------------------------------------------------ slow: big real trees
@pytest.mark.slow
def test_usr_share_full(tmp_path):
    roundtrip(tmp_path / "store", "/usr/share", str(tmp_path / "out"))


def _debootstrap_tarball() -> str:
    path = os.path.join(CACHE, "mmdebstrap-minbase.tar")
    if os.path.exists(path):
        return path
    if shutil.which("mmdebstrap") is None:
        pytest.skip("mmdebstrap is not installed")
    os.makedirs(CACHE, exist_ok=True)
    tmp = path[:-4] + f".{os.getpid()}.tmp.tar"        # mmdebstrap picks the format by suffix
    # The mirror's Release files may be past Valid-Until on a machine whose clock is
    # ahead of the mirror snapshot; the packages are still signed and checked.
    r = subprocess.run(["mmdebstrap", "--quiet", "--variant=minbase", "--mode=root",
                        '--aptopt=Acquire::Check-Valid-Until "false"', "bookworm", tmp],
                       capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        pytest.skip(f"mmdebstrap failed (offline?): {r.stderr[-500:]}")
    os.rename(tmp, path)
    return path


@pytest.mark.slow
def test_mmdebstrap_rootfs(tmp_path):
    tarball = _debootstrap_tarball()
    src = tmp_path / "rootfs"
    src.mkdir()
    # tar as root keeps owners, modes, devices, hard links, xattrs and ns times
    subprocess.run(["tar", "-xpf", tarball, "--xattrs", "--xattrs-include=*",
                    "--numeric-owner", "-C", str(src)], check=True)
    with tarfile.open(tarball) as tf:
        assert len(tf.getmembers()) > 1000
    roundtrip(tmp_path / "store", str(src), str(tmp_path / "out"))


def test_reads_through_open_match_host(tmp_path):
    """fs.open reads (readinto straight into the caller's buffer: holes, inline files,
    unaligned offsets, reads spanning extents) equal the host's bytes."""
    import random
    src = str(tmp_path / "src")
    make_tricky(src)
    rng = random.Random(5)
    with Store.open(tmp_path / "store") as s:
        s.import_dir(src, "t")
        with s.fs("t") as fs:
            for rel, m in manifest(src).items():
                if not S.S_ISREG(m["mode"]):
                    continue
                host = open(os.path.join(src, rel), "rb").read()
                p = "/" + rel
                assert fs.read_bytes(p) == host, rel
                for buffering in (0, -1):
                    with fs.open(p, "rb", buffering=buffering) as f:
                        for _ in range(5):
                            off = rng.randrange(0, len(host) + 2)
                            n = rng.choice([1, 4095, 4097, 300_000, 2 << 20])
                            f.seek(off)
                            buf = bytearray(n)
                            got = f.readinto(buf)
                            assert bytes(buf[:got]) == host[off:off + n], (rel, off, n)
        assert s.check().ok
