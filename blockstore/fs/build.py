"""Fresh import of a host directory by bulk-building the tree.

When a directory is imported with no parent, every item of the new tree is
known up front, so instead of ~9 B-tree inserts per file the importer emits
the items in key order and ``btree.bulk.build`` packs them into full nodes
in O(n).  Inode numbers are given in breadth-first order, which is exactly
key order: a directory's entries are emitted with it, and every child gets
a larger inode number than its parent.

Small files' data is gathered into one buffer of up to ``BATCH_BYTES`` and
written with one ``Pool.write`` (one allocation, one hashing call, one
pwrite); big or sparse files are written segment by segment.  A file's
items wait until its data has blocks.  Hard links: the first name of a host
inode is emitted in the bulk pass, the other names are added afterwards
with ordinary ``FileTree.link`` calls (rare), and the directories they touch
get their times back; a host inode is forgotten once all its links were seen.

The builder works in one write transaction of its caller (api/bulkimport.py:
the working clone of an import, inside its batch) and hands the caller a
checkpoint root every ``CHECKPOINT_BYTES`` of items, at a point where every
block written is referenced by an emitted item; the caller commits and gives
back the transaction to go on in.  Nothing here knows names of trees.

Memory is independent of the number of files: the breadth-first walk
keeps, per directory whose children are still to come, its path, the
inode number of its first child and one byte per child (its type); the
children's names and metadata are read again when their turn comes (a
directory that changed meanwhile is refused by name).  Beyond that: the
pending data batch, one open node per B-tree level, the hard-link groups
not yet complete and the extra names of hard-linked files, the entries of
the one directory being listed (a flat directory of n files holds n names
for a moment), and what LMDB holds of one checkpoint's transaction.
"""
from __future__ import annotations

import os
import stat
import time
from collections import deque

from ..btree import bulk, values
from ..btree.store import NodeStore
from ..errors import InvalidInput
from . import items
from .hostread import data_segments as _data_segments, xattrs as _xattrs
from .tree import INLINE_MAX, XATTR_INLINE_MAX, FileTree
from ..pool import HOLE

BATCH_BYTES = 32 * 1024 * 1024
SMALL_FILE = 1024 * 1024
# Item bytes (keys + values) emitted between commits of the working clone:
# bounds the dirty LMDB pages one transaction holds in memory.
CHECKPOINT_BYTES = 48 * 1024 * 1024


_RDONLY = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR = _RDONLY | os.O_DIRECTORY
_PLAIN_EMPTY = values.plain(b"")


def _fail(message: str, path: bytes):
    return InvalidInput(message, path=os.fsdecode(path))


def _open_dir(path: bytes) -> tuple[int, list[bytes]]:
    """(fd, sorted names) of a directory to walk (not followed if a symlink)."""
    try:
        fd = os.open(path, _DIR)
    except OSError as exc:
        raise _fail(f"cannot read directory: {exc.strerror}", path) from None
    try:
        return fd, sorted(os.listdir(path))
    except OSError as exc:
        os.close(fd)
        raise _fail(f"cannot read directory: {exc.strerror}", path) from None


class _Entry:
    """One inode waiting to be emitted."""

    __slots__ = ("ino", "st", "parent", "name", "xattrs", "children", "data", "extents",
                 "inline", "size", "is_dir")

    def __init__(self, ino, st, parent, name, xattrs, is_dir):
        self.ino, self.st, self.parent, self.name, self.xattrs = ino, st, parent, name, xattrs
        self.children: list[tuple[bytes, int, int]] | None = [] if is_dir else None
        self.data = None            # bytes to write in the batch, or None
        self.extents: list[tuple[int, int, int]] | None = None    # (file block, start, n)
        self.inline: bytes | None = None
        self.size = 0
        self.is_dir = is_dir


class _Group:
    """A listed directory (inode ``dir_ino``) whose children are still to be walked:
    they get inode numbers first_ino, first_ino + 1, ... in name order (extra hard
    links, which get none, are named in ``skip``); ``types`` holds their dtypes."""

    __slots__ = ("path", "dir_ino", "first_ino", "types", "skip")

    def __init__(self, path: bytes, dir_ino: int, first_ino: int, types: bytearray, skip):
        self.path, self.dir_ino, self.first_ino = path, dir_ino, first_ino
        self.types, self.skip = types, skip


class TreeBuilder:
    """Builds the tree of a host directory bottom-up (see the module docstring)
    in the write transaction of ``ns``.  ``checkpoint(root)``, called at safe
    points once ``CHECKPOINT_BYTES`` of items were emitted, must take ownership
    of ``root`` (a complete tree of what was emitted so far), commit, and return
    the NodeStore of the transaction to go on in."""

    def __init__(self, ns: NodeStore, checkpoint, progress=None):
        self.ns = ns
        self.checkpoint = checkpoint
        self.progress = progress
        self.pool = ns.txn.blocks           # the blocks of the transaction (verified reads)
        self.bs = self.pool.block_size
        self.next_ino = items.ROOT_INO + 1
        # host (dev, ino) -> [tree ino, links not seen yet]: incomplete groups only
        self.links: dict[tuple[int, int], list] = {}
        self.extra_links: list[tuple[int, int, bytes]] = []  # (ino, parent, name)
        self.subdirs: dict[int, int] = {}
        self.pending: deque[_Entry] = deque()
        self.batch: list[_Entry] = []
        self.batch_bytes = 0
        self.emitted = 0                    # item bytes since the last checkpoint
        self._bufs: list[bytearray | None] = [None, None]
        self._buf_runs: list[list] = [[], []]
        self._buf_at = 0

    # -- the walk ---------------------------------------------------------------
    def run(self, src: str) -> int:
        """Build the tree of src; returns its root (owned by the caller)."""
        builder = bulk.Builder(self.ns)
        for chunk in self._items(os.fsencode(src)):
            if chunk is None:               # a safe point: every block written is emitted
                if self.emitted >= CHECKPOINT_BYTES:
                    self.ns = self.checkpoint(builder.checkpoint())
                    self.pool = self.ns.txn.blocks
                    builder.ns = self.ns
                    self.emitted = 0
                continue
            self.emitted += builder.add_many(chunk)
        root = builder.finish()
        fst = FileTree(self.ns, root, time.time_ns)
        fst.set_counters(self.next_ino)
        touched = {}
        for ino, parent, name in self.extra_links:
            if parent not in touched:
                touched[parent] = fst.inode(parent)
            fst.link(ino, parent, name)
        for parent, before in touched.items():
            d = fst.inode(parent)
            d.mtime, d.ctime, d.atime = before.mtime, before.ctime, before.atime
            fst.put_inode(d)
        return fst.root

    def _list(self, e: _Entry, path: bytes) -> None:
        """Give the children of directory e their inode numbers and queue them."""
        dfd, names = _open_dir(path)
        first = self.next_ino
        types = bytearray()
        skip = None
        children = e.children
        lstat = os.stat
        try:
            for name in names:
                mode = (cst := lstat(name, dir_fd=dfd, follow_symlinks=False)).st_mode
                is_dir = stat.S_ISDIR(mode)
                if not is_dir and cst.st_nlink > 1:
                    key = (cst.st_dev, cst.st_ino)
                    group = self.links.get(key)
                    if group is not None:
                        self.extra_links.append((group[0], e.ino, name))
                        group[1] -= 1
                        if group[1] <= 0:
                            del self.links[key]         # every link seen
                        skip = skip or set()
                        skip.add(name)
                        continue
                    self.links[key] = [self.next_ino, cst.st_nlink - 1]
                dtype = stat.S_IFMT(mode) >> 12            # items.dtype_of
                children.append((name, self.next_ino, dtype))
                self.next_ino += 1
                types.append(dtype)
                if is_dir:
                    self.subdirs[e.ino] = self.subdirs.get(e.ino, 0) + 1
        finally:
            os.close(dfd)
        if types:
            self.groups.append(_Group(path, e.ino, first, types, skip))

    def _walk(self, src: bytes):
        """(entry, fd of its directory, its path) of every entry in inode
        (breadth-first) order.  A regular file's xattrs are read by ``_load``
        through the file's own descriptor."""
        st = os.lstat(src)
        yield _Entry(items.ROOT_INO, st, 0, b"", _xattrs(src), stat.S_ISDIR(st.st_mode)), -1, src
        lstat = os.stat
        while self.groups:
            g = self.groups.popleft()
            dfd, names = _open_dir(g.path)
            try:
                ino, parent, types, skip = g.first_ino, g.dir_ino, g.types, g.skip
                k = 0
                base = g.path + b"/"
                for name in names:
                    if skip and name in skip:
                        continue
                    mode = (cst := lstat(name, dir_fd=dfd, follow_symlinks=False)).st_mode
                    if k >= len(types) or stat.S_IFMT(mode) >> 12 != types[k]:
                        raise _fail("directory changed while being imported", g.path)
                    path = base + name
                    reg = stat.S_ISREG(mode) and cst.st_size
                    yield (_Entry(ino, cst, parent, name, None if reg else _xattrs(path),
                                  stat.S_ISDIR(mode)), dfd, path)
                    ino += 1
                    k += 1
                if k != len(types):
                    raise _fail("directory changed while being imported", g.path)
            finally:
                os.close(dfd)

    def _items(self, src: bytes):
        """The tree's items in key order, in lists; None at every point where all
        data written so far is referenced by emitted items (where a checkpoint
        may commit)."""
        self.groups: deque[_Group] = deque()
        pending = self.pending
        for e, dfd, path in self._walk(src):
            if e.is_dir:
                self._list(e, path)
            else:
                self._load(e, dfd, path)
            if self.progress:
                self.progress(os.fsdecode(path), e.st.st_size if stat.S_ISREG(e.st.st_mode) else 0)
            pending.append(e)
            if self.batch_bytes >= BATCH_BYTES:
                self._flush_batch()
            if pending[0].data is None:
                yield self._ready()
            if not pending and not self.batch:
                yield None
        self._flush_batch()
        yield self._ready()

    def _load(self, e: _Entry, dfd: int, path: bytes) -> None:
        """Read a file's content (and xattrs) or a symlink's target into the entry."""
        mode = e.st.st_mode
        if stat.S_ISLNK(mode):
            target = os.readlink(e.name, dir_fd=dfd)
            e.size = len(target)
            if len(target) <= INLINE_MAX:
                e.inline = target
            else:
                self._queue_data(e, target)
            return
        if not stat.S_ISREG(mode) or e.st.st_size == 0:
            return
        size = e.st.st_size
        e.size = size
        try:
            fd = os.open(e.name, _RDONLY, dir_fd=dfd)
        except OSError as exc:
            raise _fail(f"cannot open: {exc.strerror}", path) from None
        try:
            e.xattrs = _xattrs(fd)
            if size <= SMALL_FILE:
                data = os.pread(fd, size, 0)
                if len(data) != size:
                    raise _fail("file changed size while being imported", path)
                if size <= INLINE_MAX:
                    e.inline = data
                else:
                    self._queue_data(e, data)
            else:
                self._write_big(e, fd, size)
        finally:
            os.close(fd)

    def _buffer(self, size: int) -> bytearray:
        """One of two batch buffers, alternately, once the writes made from it
        have landed: a buffer filled again costs no page faults, a new one does.
        A new buffer for a full batch is made to hold any batch, for reuse; one
        for a smaller batch (the last of an import: a full batch flushes as soon
        as it is full) only what it holds, since zeroing the 33 MiB costs a
        small import more than the rest of its work."""
        self._buf_at ^= 1
        buf = self._bufs[self._buf_at]
        if buf is not None:
            self.pool.written(self._buf_runs[self._buf_at])
        if buf is None or len(buf) < size:
            keep = BATCH_BYTES + SMALL_FILE if size >= BATCH_BYTES else 0
            buf = self._bufs[self._buf_at] = bytearray(max(size, keep))
        return buf

    def _queue_data(self, e: _Entry, data: bytes) -> None:
        e.data = data
        self.batch.append(e)
        self.batch_bytes += len(data) + (-len(data) % self.bs)

    def _write_big(self, e: _Entry, fd: int, size: int) -> None:
        bs = self.bs
        chunk = 8 * 1024 * 1024
        spans: list[list[int]] = []           # block-aligned, merged data spans
        for off, length in _data_segments(fd, size):
            a, b = off - off % bs, min(size, off + length)
            b += -b % bs
            if spans and a <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], b)
            else:
                spans.append([a, b])
        for a, end in spans:
            pos = a
            while pos < end:
                n = min(chunk, end - pos)
                data = os.pread(fd, n, pos)
                if len(data) < n:
                    data += bytes(n - len(data))
                data += bytes(-len(data) % bs)
                self._add_runs(e, pos // bs, self.pool.write(data))
                pos += n

    def _add_runs(self, e: _Entry, fb: int, runs) -> None:
        if e.extents is None:
            e.extents = []
        for start, n in runs:
            if start != HOLE:
                last = e.extents[-1] if e.extents else None
                if last and last[0] + last[2] == fb and last[1] + last[2] == start:
                    e.extents[-1] = (last[0], last[1], last[2] + n)
                elif last and last[0] + last[2] > fb:
                    raise InvalidInput("overlapping data segments")
                else:
                    e.extents.append((fb, start, n))
            fb += n

    def _flush_batch(self) -> None:
        if not self.batch:
            return
        bs = self.bs
        buf = self._buffer(self.batch_bytes)
        mv = memoryview(buf)
        zeros = bytes(bs)
        spans = []                              # (entry, first block, blocks)
        pos = 0
        for e in self.batch:
            n = len(e.data)
            mv[pos:pos + n] = e.data
            k = (n + bs - 1) // bs
            if n % bs:                          # the last block's tail: zeros
                mv[pos + n:pos + k * bs] = zeros[n % bs:]
            spans.append((e, pos // bs, k))
            pos += k * bs
            e.data = None
        # Never changed until written: the data file's background writer hashes
        # and writes it (native, no GIL) while the walk goes on (at most one
        # batch queued), then the buffer is filled again (``_buffer``).
        runs = self.pool.write(mv[:pos], True)
        self._buf_runs[self._buf_at] = runs
        # Cut the runs back into each file's blocks.
        i, used = 0, 0          # position in runs, blocks of runs[i] consumed
        for e, first, nblocks in spans:
            start, n = runs[i]
            if start != HOLE and n - used >= nblocks:     # the common case: one piece
                e.extents = [(0, start + used, nblocks)]
                used += nblocks
                if used == n:
                    i, used = i + 1, 0
                continue
            fb = 0
            while nblocks:
                start, n = runs[i]
                take = min(n - used, nblocks)
                self._add_runs(e, fb, [(HOLE if start == HOLE else start + used, take)])
                fb += take
                nblocks -= take
                used += take
                if used == n:
                    i, used = i + 1, 0
        self.batch = []
        self.batch_bytes = 0

    # -- emission -----------------------------------------------------------------
    def _ready(self) -> list:
        """Items of pending entries whose data is placed, in inode (= key) order."""
        out: list = []
        pending, emit = self.pending, self._emit
        while pending and pending[0].data is None:
            emit(pending.popleft(), out)
        return out

    def _emit(self, e: _Entry, out: list) -> None:
        ino, st, add = e.ino, e.st, out.append
        mode = st.st_mode
        plain = values.plain
        if e.is_dir:
            nlink, size, next_index = 2 + self.subdirs.pop(ino, 0), 0, 2 + len(e.children)
        else:
            nlink, size, next_index = 1, e.size, 2
        rdev = st.st_rdev if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else 0
        add((items.inode_key(ino), plain(items.pack_inode(
            mode, st.st_uid, st.st_gid, nlink, size, st.st_atime_ns, st.st_mtime_ns,
            st.st_ctime_ns, st.st_ctime_ns, rdev, ino, next_index))))
        if e.parent:
            add((items.ref_key(ino, e.parent, e.name), _PLAIN_EMPTY))
        if e.children:
            children = e.children
            dirent_key, dirent_value = items.dirent_key, items.dirent_value
            # names were listed in sorted order: DIRENT keys are in key order as they are
            for i, (name, child, dtype) in enumerate(children):
                add((dirent_key(ino, name), plain(dirent_value(child, dtype, 2 + i))))
            index_key, index_value = items.index_key, items.index_value
            for i, (name, child, dtype) in enumerate(children):
                add((index_key(ino, 2 + i), plain(index_value(child, dtype, name))))
        if e.xattrs:
            for name in sorted(e.xattrs):
                v = e.xattrs[name]
                if len(v) > XATTR_INLINE_MAX:
                    buf = v + bytes(-len(v) % self.bs)
                    runs = self.pool.write(buf)
                    if len(runs) != 1 or runs[0][0] == HOLE:
                        raise InvalidInput("large attribute values must not be mostly zero blocks")
                    add((items.xattr_key(ino, name), values.blockref(runs[0][0], runs[0][1],
                                                                 len(v).to_bytes(8, "big"))))
                else:
                    add((items.xattr_key(ino, name), plain(v)))
        if e.extents:
            for fb, start, n in e.extents:
                add((items.extent_key(ino, fb), values.blockref(start, n)))
        if e.inline is not None:
            add((items.inline_key(ino), plain(e.inline)))
