"""Filesystem items: how a POSIX tree is laid out in one B-tree (like btrfs).

Every key is ``u64 inode | u8 item type | rest``, so all items of an inode
are adjacent and a directory's entries are one key range:

    INODE      (ino, 1)                  -> Inode record (fixed 96 bytes)
    INODE_REF  (ino, 2, parent, name)    -> b""      one per link: path of an inode
    DIRENT     (dir, 3, name)            -> child ino | dtype | index   lookup by name
    DIR_INDEX  (dir, 4, index)           -> child ino | dtype | name    stable readdir order
    XATTR      (ino, 5, name)            -> value (inline, or blocks for large values)
    EXTENT     (ino, 6, file block)      -> blockref(start, n, b"")   file blocks [fb, fb+n)
    INLINE     (ino, 7)                  -> the whole content of a small file or symlink

Inode 0 holds the tree's own counters (SUPER), its orphan list (inodes
unlinked while open) and the tree's source blob, if it keeps one
(SOURCE_META, SOURCE_DATA: see ``source.py``).  The root directory is inode 1.  Holes are the
absence of EXTENT items; zero blocks are never stored.
"""
from __future__ import annotations

import stat as st
import struct
from dataclasses import dataclass

INODE, INODE_REF, DIRENT, DIR_INDEX, XATTR, EXTENT, INLINE = 1, 2, 3, 4, 5, 6, 7
SUPER, ORPHAN, SOURCE_META, SOURCE_DATA = 0x10, 0x11, 0x12, 0x13
ROOT_INO = 1

_HEAD = struct.Struct(">QB")
_U64 = struct.Struct(">Q")
_DIRENT = struct.Struct(">QBQ")     # child ino, dtype, index
_INDEX = struct.Struct(">QB")       # child ino, dtype (+ name)
_SUPER = struct.Struct(">QQ")       # next ino, generation


def key(ino: int, typ: int, rest: bytes = b"") -> bytes:
    return _HEAD.pack(ino, typ) + rest


def prefix_range(ino: int, typ: int | None = None) -> tuple[bytes, bytes]:
    """[lo, hi) covering every item of an inode (or of one type of it)."""
    if typ is None:
        return _U64.pack(ino), _U64.pack(ino + 1)
    return _HEAD.pack(ino, typ), _HEAD.pack(ino, typ + 1)


def split(k: bytes) -> tuple[int, int, bytes]:
    ino, typ = _HEAD.unpack_from(k)
    return ino, typ, k[9:]


def inode_key(ino: int) -> bytes:
    return key(ino, INODE)


def ref_key(ino: int, parent: int, name: bytes) -> bytes:
    return key(ino, INODE_REF, _U64.pack(parent) + name)


def parse_ref(rest: bytes) -> tuple[int, bytes]:
    return _U64.unpack_from(rest)[0], rest[8:]


def dirent_key(parent: int, name: bytes) -> bytes:
    return key(parent, DIRENT, name)


def dirent_value(child: int, dtype: int, index: int) -> bytes:
    return _DIRENT.pack(child, dtype, index)


def parse_dirent(v: bytes) -> tuple[int, int, int]:
    return _DIRENT.unpack(v)


def index_key(parent: int, index: int) -> bytes:
    return key(parent, DIR_INDEX, _U64.pack(index))


def index_value(child: int, dtype: int, name: bytes) -> bytes:
    return _INDEX.pack(child, dtype) + name


def parse_index(v: bytes) -> tuple[int, int, bytes]:
    child, dtype = _INDEX.unpack_from(v)
    return child, dtype, v[_INDEX.size:]


def xattr_key(ino: int, name: bytes) -> bytes:
    return key(ino, XATTR, name)


def extent_key(ino: int, fblock: int) -> bytes:
    return key(ino, EXTENT, _U64.pack(fblock))


def extent_fblock(k: bytes) -> int:
    return _U64.unpack_from(k, 9)[0]


def inline_key(ino: int) -> bytes:
    return key(ino, INLINE)


def super_key() -> bytes:
    return key(0, SUPER)


def orphan_key(ino: int) -> bytes:
    return key(0, ORPHAN, _U64.pack(ino))


def pack_super(next_ino: int, generation: int) -> bytes:
    return _SUPER.pack(next_ino, generation)


def unpack_super(v: bytes) -> tuple[int, int]:
    return _SUPER.unpack(v)


# dtype values follow <dirent.h> DT_* so readdir can hand them on unchanged.
def dtype_of(mode: int) -> int:
    return st.S_IFMT(mode) >> 12


_INODE = struct.Struct(">IIIIQqqqqQQQI4x")


def pack_inode(mode: int, uid: int, gid: int, nlink: int, size: int, atime: int, mtime: int,
               ctime: int, btime: int, rdev: int, generation: int, next_index: int = 2,
               flags: int = 0) -> bytes:
    """An INODE item's value from its fields (``Inode.pack`` without the object:
    the bulk builder packs one per file)."""
    return _INODE.pack(mode, uid, gid, nlink, size, atime, mtime, ctime, btime, rdev,
                       generation, next_index, flags)


@dataclass
class Inode:
    """The attributes of one inode.  Times are ns since the epoch."""

    ino: int
    mode: int
    uid: int = 0
    gid: int = 0
    nlink: int = 1
    size: int = 0
    atime: int = 0
    mtime: int = 0
    ctime: int = 0
    btime: int = 0
    rdev: int = 0
    generation: int = 0
    next_index: int = 2           # directories: next DIR_INDEX (0 and 1 are . and ..)
    flags: int = 0

    def pack(self) -> bytes:
        return _INODE.pack(self.mode, self.uid, self.gid, self.nlink, self.size,
                           self.atime, self.mtime, self.ctime, self.btime,
                           self.rdev, self.generation, self.next_index, self.flags)

    @classmethod
    def unpack(cls, ino: int, v: bytes) -> "Inode":
        return cls(ino, *_INODE.unpack(v))

    @property
    def is_dir(self) -> bool:
        return st.S_ISDIR(self.mode)

    @property
    def is_reg(self) -> bool:
        return st.S_ISREG(self.mode)

    @property
    def is_lnk(self) -> bool:
        return st.S_ISLNK(self.mode)
