"""SEEK_DATA / SEEK_HOLE through FUSE mounts (pyfuse3 patched with lseek, see
third_party/pyfuse3/README.md).

The expected answers are those of a block filesystem such as ext4 with the
store's 4 KiB blocks: a hole is a run of unallocated blocks, a partly written
block is data as a whole, the end of file counts as a hole, and an offset at
or past the end (or negative) is ENXIO for both.  ``expected`` computes them
from the block layout.

Without a patched pyfuse3, or before the adapter serves ``lseek``, the FUSE
tests skip (the kernel's fallback then reports every file as all data).
"""
from __future__ import annotations

import errno
import os
import textwrap

import pytest

import pyfuse3

from blockstore import Store

from _fuse_helpers import Mounted, check_ok, needs_fuse, public_dir, served_by_child

BS = 4096
PYFUSE3_LSEEK = hasattr(pyfuse3.Operations, "lseek")


def _adapter_serves_lseek() -> bool:
    from blockstore.fuse.adapter import Adapter
    return PYFUSE3_LSEEK and getattr(Adapter, "lseek", None) is not pyfuse3.Operations.lseek


needs_pyfuse3_lseek = pytest.mark.skipif(
    not PYFUSE3_LSEEK, reason="pyfuse3 without Operations.lseek (unpatched; see third_party/pyfuse3)")
needs_adapter_lseek = pytest.mark.skipif(
    not _adapter_serves_lseek(), reason="the FUSE adapter does not serve lseek")


def expected(blocks: set[int], size: int, off: int, whence: int):
    """lseek's answer for a file of ``size`` bytes whose allocated blocks are
    ``blocks``: an offset, or "ENXIO"."""
    if off < 0 or off >= size:
        return "ENXIO"
    b = off // BS
    while b * BS < size:
        if (b in blocks) == (whence == os.SEEK_DATA):
            return max(off, b * BS)
        b += 1
    return size if whence == os.SEEK_HOLE else "ENXIO"


def seek(fd: int, off: int, whence: int):
    try:
        return os.lseek(fd, off, whence)
    except OSError as e:
        if e.errno == errno.ENXIO:
            return "ENXIO"
        raise


# The sparse file: data in blocks 0-1, a hole in 2-4, data from inside block 5
# to inside block 6, then a trailing hole made by truncate (blocks 7-10, the
# last one partial).
SIZE = 10 * BS + 123
BLOCKS = {0, 1, 5, 6}
OFFSETS = [-1, 0, 100, 2 * BS - 1, 2 * BS, 3 * BS + 7, 5 * BS - 1, 5 * BS, 5 * BS + 1000,
           6 * BS + 1000, 7 * BS - 1, 7 * BS, 8 * BS + 5, SIZE - 1, SIZE, SIZE + BS, 1 << 40]


def write_sparse(path: str) -> None:
    with open(path, "wb") as f:
        f.write(b"a" * (2 * BS))
        f.seek(5 * BS + 1000)
        f.write(b"b" * 5000)                    # 5*BS+1000 .. 6*BS+1904
        f.truncate(SIZE)


def table(path: str) -> list[tuple]:
    """[(offset, SEEK_DATA answer, SEEK_HOLE answer)] over OFFSETS."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return [(off, seek(fd, off, os.SEEK_DATA), seek(fd, off, os.SEEK_HOLE)) for off in OFFSETS]
    finally:
        os.close(fd)


def want(blocks=BLOCKS, size=SIZE) -> list[tuple]:
    return [(off, expected(blocks, size, off, os.SEEK_DATA), expected(blocks, size, off, os.SEEK_HOLE))
            for off in OFFSETS]


def test_expected_is_what_a_block_filesystem_says_of_these_cases():
    """The model, spelled out for the sparse file."""
    d, h = os.SEEK_DATA, os.SEEK_HOLE
    assert expected(BLOCKS, SIZE, 0, d) == 0 and expected(BLOCKS, SIZE, 0, h) == 2 * BS
    assert expected(BLOCKS, SIZE, 2 * BS, d) == 5 * BS            # the block start, not 5*BS+1000
    assert expected(BLOCKS, SIZE, 3 * BS + 7, h) == 3 * BS + 7
    assert expected(BLOCKS, SIZE, 5 * BS + 1000, h) == 7 * BS     # the trailing hole's start
    assert expected(BLOCKS, SIZE, 7 * BS, d) == "ENXIO"
    assert expected(BLOCKS, SIZE, 8 * BS + 5, h) == 8 * BS + 5
    assert expected(BLOCKS, SIZE, SIZE, h) == "ENXIO"
    assert expected(BLOCKS, SIZE, -1, d) == "ENXIO"


def test_treeview_seek_data_hole_follows_the_block_layout(tmp_path):
    """The store's own answers (what the FUSE adapter forwards), without FUSE."""
    with Store.open(tmp_path / "store") as s:
        s.create("c")
        fs = s.fs("c")
        with fs.open("/f", "wb") as f:
            f.write(b"a" * (2 * BS))
            f.seek(5 * BS + 1000)
            f.write(b"b" * 5000)
            f.truncate(SIZE)
        with fs.open("/sparse-only", "wb") as f:
            f.truncate(3 * BS)
        tfs = s.fs("c")
        ino = tfs.stat("/f").st_ino
        got = []
        for off in OFFSETS:
            row = [off]
            for data in (True, False):
                try:
                    row.append(tfs.seek_data_hole(ino, off, data))
                except OSError as e:
                    assert e.errno == errno.ENXIO
                    row.append("ENXIO")
            got.append(tuple(row))
        assert got == want()
        ino = tfs.stat("/sparse-only").st_ino
        assert tfs.seek_data_hole(ino, 5, False) == 5
        with pytest.raises(OSError) as ei:
            tfs.seek_data_hole(ino, 0, True)
        assert ei.value.errno == errno.ENXIO


# A throwaway filesystem whose lseek gives fixed answers: proves the binding
# (request -> Operations.lseek -> fuse_reply_lseek / fuse_reply_err) alone.
FIXED_FS = textwrap.dedent("""
    import errno, os, stat, sys
    import pyfuse3, trio

    SIZE = 1 << 20

    class FS(pyfuse3.Operations):
        async def getattr(self, inode, ctx=None):
            e = pyfuse3.EntryAttributes()
            e.st_ino = inode
            if inode == pyfuse3.ROOT_INODE:
                e.st_mode, e.st_nlink = stat.S_IFDIR | 0o755, 2
            elif inode == 2:
                e.st_mode, e.st_nlink, e.st_size = stat.S_IFREG | 0o644, 1, SIZE
            else:
                raise pyfuse3.FUSEError(errno.ENOENT)
            return e

        async def lookup(self, parent, name, ctx=None):
            if parent == pyfuse3.ROOT_INODE and name == b"f":
                return await self.getattr(2)
            raise pyfuse3.FUSEError(errno.ENOENT)

        async def open(self, inode, flags, ctx):
            return pyfuse3.FileInfo(fh=77)

        async def lseek(self, fh, off, whence):
            if fh != 77 or off >= SIZE:
                raise pyfuse3.FUSEError(errno.ENXIO)
            return {os.SEEK_DATA: 1000 + off, os.SEEK_HOLE: 5000 + off}[whence]

    async def main():
        pyfuse3.init(FS(), sys.argv[1], {"fsname=seekcheck"})
        try:
            await pyfuse3.main()
        finally:
            pyfuse3.close(unmount=True)

    trio.run(main)
""")


@needs_fuse
@needs_pyfuse3_lseek
def test_patched_pyfuse3_passes_lseek_to_the_filesystem():
    with served_by_child(FIXED_FS) as mnt:
        fd = os.open(os.path.join(mnt, "f"), os.O_RDONLY)
        try:
            assert os.lseek(fd, 0, os.SEEK_DATA) == 1000
            assert os.lseek(fd, 0, os.SEEK_CUR) == 1000          # the position is set
            assert os.lseek(fd, 7, os.SEEK_HOLE) == 5007
            assert seek(fd, 1 << 20, os.SEEK_DATA) == "ENXIO"
            assert os.lseek(fd, 3, os.SEEK_SET) == 3              # the kernel's own
        finally:
            os.close(fd)


@pytest.fixture
def sp(tmp_path):
    return tmp_path / "store"


@needs_fuse
@needs_adapter_lseek
def test_seek_data_hole_on_a_clone_and_its_snapshot(sp):
    with Store.open(sp) as s:
        s.create("c")
    m = Mounted(sp, "c")
    try:
        write_sparse(m.p("f"))
        with open(m.p("small"), "wb") as f:        # inline: all data
            f.write(b"s" * 500)
        with open(m.p("sparse-only"), "wb") as f:  # no block at all
            f.truncate(3 * BS + 1)
        assert os.stat(m.p("f")).st_size == SIZE
        assert table(m.p("f")) == want()
        fd = os.open(m.p("f"), os.O_RDONLY)
        try:
            assert os.lseek(fd, 2 * BS, os.SEEK_DATA) == 5 * BS
            assert os.lseek(fd, 0, os.SEEK_CUR) == 5 * BS        # the position is set
            with open(m.p("f"), "rb") as f:                    # holes still read as zeros
                f.seek(2 * BS)
                assert f.read(3 * BS) == bytes(3 * BS)
        finally:
            os.close(fd)
        small, sparse = os.open(m.p("small"), os.O_RDONLY), os.open(m.p("sparse-only"), os.O_RDONLY)
        try:
            assert (seek(small, 10, os.SEEK_DATA), seek(small, 10, os.SEEK_HOLE)) == (10, 500)
            assert seek(small, 500, os.SEEK_HOLE) == "ENXIO"
            assert (seek(sparse, 0, os.SEEK_DATA), seek(sparse, 5, os.SEEK_HOLE)) == ("ENXIO", 5)
        finally:
            os.close(small), os.close(sparse)
    finally:
        m.close()
    with Store.open(sp) as s:
        s.commit("c", "snap")
    m = Mounted(sp, "snap")                        # a snapshot mounts read-only
    try:
        with pytest.raises(OSError) as ei:
            open(m.p("f"), "r+b")
        assert ei.value.errno == errno.EROFS
        assert table(m.p("f")) == want()
    finally:
        m.close()
    check_ok(sp)


@needs_fuse
@needs_adapter_lseek
def test_seek_data_hole_on_a_bind_mount_is_the_host_files(sp):
    host = public_dir()
    try:
        write_sparse(os.path.join(host, "f"))
        with Store.open(sp) as s:
            s.create("base")
            s.commit("base", "img")
            s.clone("img", "app", mounts=[{"type": "bind", "source": host, "target": "/h"}])
        m = Mounted(sp, "app")
        try:
            assert table(m.p("h", "f")) == table(os.path.join(host, "f"))
        finally:
            m.close()
    finally:
        import shutil
        shutil.rmtree(host, ignore_errors=True)
    check_ok(sp)

