"""LMDB's free list, read from data.mdb with pread (never mapped).

Why: LMDB's meta page names the last page a transaction allocated
(``mm_last_pg``), but not every page up to it is in the file.  A page a
transaction allocates at the end of the file and frees again before it
commits ("loose" pages; also overflow pages freed in their own transaction)
is never written: ``mdb_page_flush`` skips P_LOOSE pages, and without
MDB_WRITEMAP the file grows only by writing pages.  Such pages go to the
free list (the free DB) at commit.  So a healthy file may end before
``(last_pg + 1) * page size``, and what tells a healthy short file from a
truncated one is whether every missing page is free: LMDB never reads a
free page (it allocates it as a fresh page and writes it whole).

Cost: one pread per page of the free DB (branch, leaf and overflow pages),
done only when the file is shorter than its last page; pages read are
bounded by the file's own page count and each is read once.
"""
from __future__ import annotations

import os
import struct

P_INVALID = (1 << 64) - 1
_P_BRANCH, _P_LEAF, _P_OVERFLOW = 0x01, 0x02, 0x04
_F_BIGDATA = 0x01
_PAGEHDRSZ = 16
# page header: u64 pgno, u16 pad, u16 flags, u16 lower, u16 upper (u32 page
# count on an overflow page); a node: u32 data size (the child's low 32 page
# bits on a branch page), u16 flags (its high 16 bits there), u16 key size.
_HEAD = struct.Struct("<QHHHH")
_OVPAGES = struct.Struct("<I")
_NODE = struct.Struct("<IHH")
_U64 = struct.Struct("<Q")
_FREE_ROOT_OFF = 16 + 8 + 8 + 8 + 40      # meta page: header, magic+version, address, mapsize, free DB's md_root


class Damaged(Exception):
    """The free DB cannot be read within the file: the message says why."""


def free_root(meta_page: bytes) -> int:
    return _U64.unpack_from(meta_page, _FREE_ROOT_OFF)[0]


def free_pages_from(fd: int, psize: int, root: int, first: int) -> set[int]:
    """Page numbers >= ``first`` that the free DB rooted at ``root`` lists.
    Raises Damaged when a page of the free DB itself is missing or malformed."""
    have = os.fstat(fd).st_size // psize
    out: set[int] = set()
    if root == P_INVALID:
        return out
    seen: set[int] = set()
    stack = [root]

    def page(pgno: int, overflow: bool = False) -> bytes:
        """Page ``pgno`` (all its pages, for an overflow page), read once."""
        if pgno < 2 or pgno >= have or pgno in seen:
            raise Damaged(f"its free list reaches page {pgno}, past the end of the file"
                          if pgno >= have else f"its free list reaches page {pgno} wrongly")
        seen.add(pgno)
        data = os.pread(fd, psize, pgno * psize)
        if len(data) < psize or _HEAD.unpack_from(data, 0)[0] != pgno:
            raise Damaged(f"its free list's page {pgno} is not that page")
        if overflow:
            n = _OVPAGES.unpack_from(data, 12)[0]
            if n < 1 or pgno + n > have:
                raise Damaged(f"its free list's overflow page {pgno} runs past the end of the file")
            data += os.pread(fd, psize * (n - 1), (pgno + 1) * psize)
            seen.update(range(pgno, pgno + n))
        return data

    while stack:
        pg = page(stack.pop())
        _, _, flags, lower, upper = _HEAD.unpack_from(pg, 0)
        if lower < _PAGEHDRSZ or lower > upper or upper > psize or not flags & (_P_BRANCH | _P_LEAF):
            raise Damaged("a page of its free list is malformed")
        for i in range((lower - _PAGEHDRSZ) >> 1):
            off = struct.unpack_from("<H", pg, _PAGEHDRSZ + 2 * i)[0]
            if off < upper or off + 8 > psize:
                raise Damaged("a page of its free list is malformed")
            lo, nflags, ksize = _NODE.unpack_from(pg, off)
            if flags & _P_BRANCH:
                stack.append(lo | nflags << 32)
                continue
            at = off + 8 + ksize
            if nflags & _F_BIGDATA:
                if at + 8 > psize:
                    raise Damaged("a page of its free list is malformed")
                data = page(_U64.unpack_from(pg, at)[0], overflow=True)[_PAGEHDRSZ:_PAGEHDRSZ + lo]
            else:
                data = pg[at:at + lo]
            if len(data) < 8 or len(data) % 8:
                raise Damaged("a record of its free list is malformed")
            ids = memoryview(data).cast("Q")        # LMDB's files are in the host's byte order
            count = min(ids[0], len(ids) - 1)
            out.update(p for p in ids[1:1 + count] if p >= first)
    return out
