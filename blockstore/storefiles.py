"""The files of a store on disk: their names and modes, and what can be told
about them before LMDB maps the metadata.

Layout: ``STORE/meta/data.mdb`` and ``meta/lock.mdb`` (LMDB), ``pool.data``
(the data blocks), ``reserve`` (space kept for a full disk), ``fuse/`` and
``writers/`` (per-process lock and registration files).

Privacy: small files are stored inline in the metadata, so a store is
readable by its owner only: directories 0700, files 0600, whatever the
umask (``make_private_dir``, ``FILE_MODE`` at every creation).  ``loose_modes``
lists what a store made before that (or changed by hand) lets others read;
``check`` reports it and ``check --repair`` applies ``tighten``.

Damage that must be refused before LMDB maps the file (``metadata_problem``):
a data.mdb whose pages in use reach past its end is mapped past its end, and
the first read there kills the process with SIGBUS.  A file may end before
its header's last page and be healthy (pages LMDB allocated and freed in one
transaction are never written): then every missing page must be free
(``lmdbfree``).

Costs: a few stat calls; ``metadata_problem`` reads the two meta pages, and
the free list's pages only when the file ends before its last page.
"""
from __future__ import annotations

import os
import stat
import struct

from . import lmdbfree

META_DIR = "meta"
META_FILE = "data.mdb"
LOCK_FILE = "lock.mdb"
DATA_FILE = "pool.data"
# Space kept back so that removing trees works on a full disk: released when LMDB
# cannot write (ENOSPC) and re-created after a later commit once space allows.
RESERVE_FILE = "reserve"

DIR_MODE = 0o700
FILE_MODE = 0o600
PRIVATE_BITS = 0o077        # any of these on a store file or directory is "loose"

# Entries whose mode is checked: (path relative to the store, is a directory).
_CHECKED = ((".", True), (META_DIR, True), (os.path.join(META_DIR, META_FILE), False),
            (os.path.join(META_DIR, LOCK_FILE), False), (DATA_FILE, False),
            (RESERVE_FILE, False))


def make_private_dir(path: str) -> None:
    """Create ``path`` (and missing parents, with the default mode) as a
    directory of mode 0700; an existing one is set to 0700."""
    os.makedirs(path, mode=DIR_MODE, exist_ok=True)
    os.chmod(path, DIR_MODE)


def loose_modes(store: str) -> list[tuple[str, int, int]]:
    """(relative path, mode, wanted mode) of each store entry that gives group or
    other users any access."""
    out = []
    for rel, is_dir in _CHECKED:
        try:
            st = os.lstat(os.path.join(store, rel))
        except FileNotFoundError:
            continue
        mode = stat.S_IMODE(st.st_mode)
        if mode & PRIVATE_BITS:
            out.append((rel, mode, DIR_MODE if is_dir else FILE_MODE))
    return out


def tighten(store: str) -> list[str]:
    """Set every loose entry to its wanted mode; one sentence per change."""
    done = []
    for rel, mode, want in loose_modes(store):
        os.chmod(os.path.join(store, rel), want)
        done.append(f"{rel} mode {mode:04o} -> {want:04o}")
    return done


# -- LMDB's header ------------------------------------------------------------------
# A meta page (pages 0 and 1; 64-bit LMDB, data version 1): the page header
# (u64 pgno, u16 pad, u16 flags, u16 lower, u16 upper), then MDB_meta: u32
# magic, u32 version, u64 address, u64 mapsize, two 48-byte MDB_db records
# (the first one's leading u32 holds the page size), u64 last page number,
# u64 txn id.  LMDB uses the meta page with the larger txn id.
_PAGE_FLAGS = struct.Struct("<H")
_P_META = 0x08
_MAGIC_VERSION = struct.Struct("<II")
_MDB_MAGIC = 0xBEEFC0DE
_MDB_VERSION = 1
_PSIZE = struct.Struct("<I")
_LAST_TXN = struct.Struct("<QQ")
_OFF_FLAGS, _OFF_MAGIC, _OFF_PSIZE, _OFF_LAST = 10, 16, 40, 136


MISSING = "is missing"
EMPTY = "is empty (0 bytes)"
NO_METADATA = (MISSING, EMPTY)     # what a store that is yet to be created has


def metadata_problem(path: str) -> str | None:
    """What is wrong with the LMDB data file ``path`` (missing, empty, not LMDB,
    shorter than its header's last page), or None when its header is sound."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return MISSING
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return EMPTY
        head = os.pread(fd, 4096, 0)
        if len(head) < _OFF_LAST + _LAST_TXN.size:
            return f"is truncated to {size} bytes, shorter than LMDB's header"
        psize = _PSIZE.unpack_from(head, _OFF_PSIZE)[0]
        if psize < 512 or psize > 1 << 16 or psize & (psize - 1):
            return f"is damaged: its header gives a page size of {psize}"
        metas = []
        for i in (0, 1):
            page = head if i == 0 else os.pread(fd, _OFF_LAST + _LAST_TXN.size, psize)
            if len(page) < _OFF_LAST + _LAST_TXN.size:
                return f"is truncated to {size} bytes, shorter than LMDB's two meta pages"
            flags = _PAGE_FLAGS.unpack_from(page, _OFF_FLAGS)[0]
            magic, version = _MAGIC_VERSION.unpack_from(page, _OFF_MAGIC)
            if not flags & _P_META or magic != _MDB_MAGIC:
                return f"is damaged or not an LMDB file: meta page {i} is not valid"
            if version != _MDB_VERSION:
                return f"has LMDB data version {version} in meta page {i}, not {_MDB_VERSION}"
            metas.append(_LAST_TXN.unpack_from(page, _OFF_LAST))
        newest = max((0, 1), key=lambda i: metas[i][1])
        last_pg = metas[newest][0]
        need = (last_pg + 1) * psize
        if size >= need:
            return None
        # Shorter than the last page: healthy when every missing page is free
        # (pages allocated and freed within one transaction are never written:
        # lmdbfree), truncated when a missing page may be in use.
        first = size // psize
        meta = head if newest == 0 else os.pread(fd, psize, psize)
        try:
            free = lmdbfree.free_pages_from(fd, psize, lmdbfree.free_root(meta), first)
        except lmdbfree.Damaged as exc:
            return (f"is truncated: {size} bytes, its header says {last_pg + 1} pages of "
                    f"{psize} bytes ({need} bytes), and {exc}")
        used = next((p for p in range(first, last_pg + 1) if p not in free), None)
        if used is not None:
            return (f"is truncated: {size} bytes, but its header says it holds "
                    f"{last_pg + 1} pages of {psize} bytes ({need} bytes), and page "
                    f"{used} past its end is not free")
        return None
    finally:
        os.close(fd)
