"""POSIX file tree operations on one engine tree, inside one transaction.

``FileTree`` wraps a root; every mutation replaces ``self.root`` (copy-on-write
below), and the caller stores the final root in the catalog in the same
transaction.  Nothing here knows about names of trees, mounts or handles.

File content: a file of at most ``INLINE_MAX`` bytes with no extents keeps
its bytes in one INLINE item; larger files map file blocks to pool runs with
EXTENT items; missing blocks are holes (read as zeros, cost nothing).  A
write never changes a pool block in place: it writes new blocks for the
file blocks it touches (reading the untouched part of a partial block
first) and trims the old extents, so a 4 KiB write into a shared 1 GiB file
costs one block plus a root-to-leaf path.  Contiguous extents are merged.

Costs: lookup/stat O(depth); readdir O(entries); read/write O(extents
touched + depth); rename O(depth) plus an ancestor walk for directories.
"""
from __future__ import annotations

import errno
import stat
from typing import Callable, Iterator, NamedTuple

from ..btree import tree as bt
from ..btree import values
from ..btree.node import MAX_VALUE
from ..btree.store import NodeStore
from ..errors import (AlreadyExists, DirectoryNotEmpty, InvalidInput, IsADirectory,
                      NoAttribute, NotADirectory, NotFound, NotPermitted, TooBig,
                      TooManyLinks)
from ..pool import HOLE
from . import items
from .items import Inode

ROOT_INO = items.ROOT_INO  # the root directory's inode number
INLINE_MAX = 960          # an INLINE item exists only while the size is <= this
XATTR_INLINE_MAX = MAX_VALUE - 64
XATTR_MAX = 64 * 1024
LINK_MAX = 65000
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2


class ReadPlan(NamedTuple):
    """A read mapped onto the pool: ``n`` bytes; ``runs`` of (position in the
    buffer, pool run start or HOLE, byte offset in the run, length), the gaps
    between them being holes; or ``inline`` bytes of a small file."""
    n: int
    runs: list
    inline: bytes | None


def fill(blocks, plan: ReadPlan, buf, nowait: bool = False) -> int:
    """Do a planned read into ``buf`` (at least ``plan.n`` bytes); returns ``plan.n``.
    The caller keeps the plan's blocks from being reused meanwhile: the txn
    that planned it, or a read txn as old (docs/ARCHITECTURE.md §5)."""
    mv = memoryview(buf).cast("B")
    n = plan.n
    if plan.inline is not None:
        data = plan.inline
        mv[:len(data)] = data
        mv[len(data):n] = bytes(n - len(data))
        return n
    pos = 0                                 # bytes before pos are filled
    for at, start, off, length in plan.runs:
        if at > pos:
            mv[pos:at] = bytes(at - pos)
        blocks.readinto(start, off, mv[at:at + length], nowait=nowait)
        pos = at + length
    if pos < n:
        mv[pos:n] = bytes(n - pos)
    return n


class FileTree:
    def __init__(self, ns: NodeStore, root: int, now: Callable[[], int],
                 is_open: Callable[[int], bool] = lambda ino: False):
        self.ns = ns
        self.root = root
        self.now = now
        self.is_open = is_open
        self.blocks = ns.txn.blocks
        self.bs = self.blocks.block_size

    # -- raw items (for the fs modules that own other item kinds: source, diff, build)
    def get_item(self, k: bytes):
        return bt.lookup(self.ns, self.root, k)

    def put_item(self, k: bytes, payload: bytes) -> None:
        self.root = bt.insert(self.ns, self.root, k, values.plain(payload))

    def put_value(self, k: bytes, v: bytes, release_old: bool = True) -> None:
        self.root = bt.insert(self.ns, self.root, k, v, release_old)

    def delete_item(self, k: bytes, release: bool = True) -> None:
        self.root, _ = bt.delete(self.ns, self.root, k, release)

    def item_range(self, lo: bytes, hi: bytes, reverse: bool = False):
        return bt.iterate(self.ns, self.root, lo, hi, reverse)

    # -- tree-wide ---------------------------------------------------------
    def mkfs(self, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        """Make an empty filesystem: the root directory and the counters."""
        t = self.now()
        self.put_item(items.super_key(), items.pack_super(items.ROOT_INO + 1, 1))
        self.put_inode(Inode(items.ROOT_INO, stat.S_IFDIR | (mode & 0o7777), uid, gid, nlink=2,
                             atime=t, mtime=t, ctime=t, btime=t, generation=1))

    def set_counters(self, next_ino: int) -> None:
        """The next inode number (and generation) of a tree built in bulk, whose
        inode numbers are all below ``next_ino`` (fs/build.py)."""
        self.put_item(items.super_key(), items.pack_super(next_ino, next_ino))

    def _alloc_ino(self) -> tuple[int, int]:
        v = self.get_item(items.super_key())
        if v is None:
            raise NotFound("tree has no filesystem (no root directory)")
        nxt, gen = items.unpack_super(values.payload(v))
        self.put_item(items.super_key(), items.pack_super(nxt + 1, gen + 1))
        return nxt, gen

    # -- inodes --------------------------------------------------------------
    def inode(self, ino: int) -> Inode:
        v = self.get_item(items.inode_key(ino))
        if v is None:
            raise NotFound(f"inode {ino} does not exist")
        return Inode.unpack(ino, values.payload(v))

    def has_inode(self, ino: int) -> bool:
        return self.get_item(items.inode_key(ino)) is not None

    def put_inode(self, ino: Inode) -> None:
        self.put_item(items.inode_key(ino.ino), ino.pack())

    def touch(self, ino: Inode, m: bool = True, c: bool = True, a: bool = False) -> None:
        t = self.now()
        if m:
            ino.mtime = t
        if c:
            ino.ctime = t
        if a:
            ino.atime = t

    # -- directories ---------------------------------------------------------
    def lookup(self, dir_ino: int, name: bytes) -> tuple[int, int] | None:
        v = self.get_item(items.dirent_key(dir_ino, name))
        if v is None:
            return None
        child, dtype, _ = items.parse_dirent(values.payload(v))
        return child, dtype

    def readdir(self, dir_ino: int, after: int = 0) -> Iterator[tuple[int, bytes, int, int]]:
        """(index, name, ino, dtype) in creation order, starting after index ``after``."""
        lo = items.index_key(dir_ino, after + 1)
        _, hi = items.prefix_range(dir_ino, items.DIR_INDEX)
        for k, v in self.item_range(lo, hi):
            child, dtype, name = items.parse_index(values.payload(v))
            yield items.extent_fblock(k), name, child, dtype

    def is_empty_dir(self, dir_ino: int) -> bool:
        lo, hi = items.prefix_range(dir_ino, items.DIRENT)
        return next(iter(self.item_range(lo, hi)), None) is None

    def parents(self, ino: int) -> list[tuple[int, bytes]]:
        """(parent dir, name) of every link to ino."""
        lo, hi = items.prefix_range(ino, items.INODE_REF)
        return [items.parse_ref(items.split(k)[2]) for k, _ in self.item_range(lo, hi)]

    def _add_entry(self, dir_ino: Inode, name: bytes, child: Inode) -> None:
        idx = dir_ino.next_index
        dir_ino.next_index += 1
        dtype = items.dtype_of(child.mode)
        self.put_item(items.dirent_key(dir_ino.ino, name), items.dirent_value(child.ino, dtype, idx))
        self.put_item(items.index_key(dir_ino.ino, idx), items.index_value(child.ino, dtype, name))
        self.put_item(items.ref_key(child.ino, dir_ino.ino, name), b"")
        self.touch(dir_ino)

    def _remove_entry(self, dir_ino: Inode, name: bytes) -> int:
        v = self.get_item(items.dirent_key(dir_ino.ino, name))
        if v is None:
            raise NotFound(f"no entry {name!r} in directory inode {dir_ino.ino}")
        child, _, idx = items.parse_dirent(values.payload(v))
        self.delete_item(items.dirent_key(dir_ino.ino, name))
        self.delete_item(items.index_key(dir_ino.ino, idx))
        self.delete_item(items.ref_key(child, dir_ino.ino, name))
        self.touch(dir_ino)
        return child

    def directory(self, ino: int) -> Inode:
        d = self.inode(ino)
        if not d.is_dir:
            raise NotADirectory(f"inode {ino} is not a directory")
        return d

    # -- creating and removing -------------------------------------------------
    def create(self, dir_ino: int, name: bytes, mode: int, uid: int = 0, gid: int = 0,
               rdev: int = 0, exist_ok: bool = False) -> Inode:
        """A new inode of any type (regular, dir, fifo, socket, device) named name.
        In a set-group-ID directory the new inode takes the directory's group,
        and a new directory is set-group-ID too (BSD group semantics)."""
        d = self.directory(dir_ino)
        found = self.lookup(dir_ino, name)
        if found is not None:
            if exist_ok:
                return self.inode(found[0])
            raise AlreadyExists(f"{name.decode(errors='replace')!r} already exists")
        if stat.S_IFMT(mode) == 0:
            mode |= stat.S_IFREG
        if stat.S_IFMT(mode) == stat.S_IFLNK:
            raise InvalidInput("use symlink() to make symbolic links")
        if d.mode & stat.S_ISGID:
            gid = d.gid
            if stat.S_ISDIR(mode):
                mode |= stat.S_ISGID
        ino, gen = self._alloc_ino()
        t = self.now()
        node = Inode(ino, mode, uid, gid, nlink=1, atime=t, mtime=t, ctime=t, btime=t,
                     rdev=rdev if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else 0, generation=gen)
        if node.is_dir:
            node.nlink = 2
            d.nlink += 1
        self._add_entry(d, name, node)
        self.put_inode(node)
        self.put_inode(d)
        return node

    def symlink(self, dir_ino: int, name: bytes, target: bytes, uid: int = 0,
                gid: int = 0) -> Inode:
        if not target or b"\0" in target or len(target) > 4095:
            raise InvalidInput("symlink target must be 1..4095 bytes without NUL")
        d = self.directory(dir_ino)
        if self.lookup(dir_ino, name) is not None:
            raise AlreadyExists(f"{name.decode(errors='replace')!r} already exists")
        if d.mode & stat.S_ISGID:
            gid = d.gid                 # as create(): the set-group-ID directory's group
        ino, gen = self._alloc_ino()
        t = self.now()
        node = Inode(ino, stat.S_IFLNK | 0o777, uid, gid, nlink=1, atime=t, mtime=t, ctime=t,
                     btime=t, generation=gen)
        self._add_entry(d, name, node)
        self.put_inode(d)
        self.write(node, 0, target)
        return node

    def readlink(self, ino: int) -> bytes:
        node = self.inode(ino)
        if not node.is_lnk:
            raise InvalidInput(f"inode {ino} is not a symbolic link")
        return self.read(node, 0, node.size)

    def link(self, ino: int, dir_ino: int, name: bytes) -> Inode:
        node = self.inode(ino)
        d = self.directory(dir_ino)
        if self.lookup(dir_ino, name) is not None:
            raise AlreadyExists(f"{name.decode(errors='replace')!r} already exists")
        if node.is_dir:
            raise NotPermitted("hard links to directories are not allowed")     # link(2): EPERM
        if node.nlink >= LINK_MAX:
            raise TooManyLinks(f"inode {ino} has {node.nlink} links already")
        node.nlink += 1
        self.touch(node, m=False)
        self._add_entry(d, name, node)
        self.put_inode(node)
        self.put_inode(d)
        return node

    def unlink(self, dir_ino: int, name: bytes) -> int:
        """Remove a non-directory entry; the inode goes when its last link and
        its last open handle are gone.  Returns the inode number."""
        found = self.lookup(dir_ino, name)
        if found is None:
            raise NotFound(f"{name.decode(errors='replace')!r} does not exist")
        node = self.inode(found[0])
        if node.is_dir:
            raise IsADirectory(f"{name.decode(errors='replace')!r} is a directory")
        d = self.directory(dir_ino)
        self._remove_entry(d, name)
        self.put_inode(d)
        self._drop_link(node)
        return node.ino

    def rmdir(self, dir_ino: int, name: bytes) -> int:
        found = self.lookup(dir_ino, name)
        if found is None:
            raise NotFound(f"{name.decode(errors='replace')!r} does not exist")
        node = self.inode(found[0])
        if not node.is_dir:
            raise NotADirectory(f"{name.decode(errors='replace')!r} is not a directory")
        if not self.is_empty_dir(node.ino):
            raise DirectoryNotEmpty(f"{name.decode(errors='replace')!r} is not empty")
        d = self.directory(dir_ino)
        self._remove_entry(d, name)
        d.nlink -= 1
        self.put_inode(d)
        self._destroy(node.ino)
        return node.ino

    def remove_all(self, dir_ino: int, name: bytes) -> None:
        """Remove name from dir_ino, a directory with everything below it; nothing
        when there is no such entry.  An explicit stack, not recursion: any
        depth.  Cost: one unlink or rmdir per entry below name."""
        found = self.lookup(dir_ino, name)
        if found is None:
            return
        if not self.inode(found[0]).is_dir:
            self.unlink(dir_ino, name)
            return
        stack = [(dir_ino, name, found[0], self._clear_files(found[0]))]
        while stack:
            parent, n, ino, subdirs = stack[-1]
            if subdirs:
                cn, cino = subdirs.pop()
                stack.append((ino, cn, cino, self._clear_files(cino)))
                continue
            self.rmdir(parent, n)
            stack.pop()

    def _clear_files(self, ino: int) -> list[tuple[bytes, int]]:
        """Unlink the non-directories of directory ino; returns its subdirectories."""
        dirs = []
        for _, n, cino, dtype in list(self.readdir(ino)):
            if dtype == stat.S_IFDIR >> 12:
                dirs.append((n, cino))
            else:
                self.unlink(ino, n)
        return dirs

    def _drop_link(self, node: Inode) -> None:
        node.nlink -= 1
        if node.nlink > 0:
            self.touch(node, m=False)
            self.put_inode(node)
        elif self.is_open(node.ino):
            self.touch(node, m=False)
            self.put_inode(node)
            self.put_item(items.orphan_key(node.ino), b"")
        else:
            self._destroy(node.ino)

    def _destroy(self, ino: int) -> None:
        """Delete every item of an inode (its extents release their blocks)."""
        lo, hi = items.prefix_range(ino)
        self.root = bt.delete_range(self.ns, self.root, lo, hi)
        self.delete_item(items.orphan_key(ino))

    def release_orphan(self, ino: int) -> bool:
        """Called when the last handle on ino closes: free it if it was unlinked."""
        if self.get_item(items.orphan_key(ino)) is None:
            return False
        if self.has_inode(ino) and self.inode(ino).nlink == 0:
            self._destroy(ino)
        else:
            self.delete_item(items.orphan_key(ino))
        return True

    def orphans(self) -> list[int]:
        lo, hi = items.prefix_range(0, items.ORPHAN)
        return [items.extent_fblock(k) for k, _ in self.item_range(lo, hi)]

    def is_ancestor(self, anc: int, ino: int) -> bool:
        """True if directory anc is ino or one of its ancestors."""
        seen = 0
        while True:
            if ino == anc:
                return True
            if ino == items.ROOT_INO:
                return False
            refs = self.parents(ino)
            if not refs:
                return False
            ino = refs[0][0]
            seen += 1
            if seen > 100000:
                raise InvalidInput("directory ancestry is cyclic")

    def rename(self, sdir: int, sname: bytes, ddir: int, dname: bytes, flags: int = 0) -> None:
        """rename(2) / renameat2: atomic; a directory moves with everything under it."""
        src = self.lookup(sdir, sname)
        if src is None:
            raise NotFound(f"{sname.decode(errors='replace')!r} does not exist")
        dst = self.lookup(ddir, dname)
        snode = self.inode(src[0])
        if flags & RENAME_EXCHANGE:
            if dst is None:
                raise NotFound(f"{dname.decode(errors='replace')!r} does not exist")
            return self._exchange(sdir, sname, src[0], ddir, dname, dst[0])
        if dst is not None and flags & RENAME_NOREPLACE:
            raise AlreadyExists(f"{dname.decode(errors='replace')!r} already exists")
        if snode.is_dir and self.is_ancestor(snode.ino, ddir):
            raise InvalidInput("cannot move a directory into itself")
        if dst is not None and dst[0] != src[0] and self.is_ancestor(dst[0], sdir):
            # Linux checks this before the types: the target is a directory the source is in.
            raise DirectoryNotEmpty(f"{dname.decode(errors='replace')!r} contains the source")
        if dst is not None:
            if dst[0] == src[0]:
                return                      # both names link the same inode: nothing to do
            dnode = self.inode(dst[0])
            if snode.is_dir and not dnode.is_dir:
                raise NotADirectory(f"{dname.decode(errors='replace')!r} is not a directory")
            if not snode.is_dir and dnode.is_dir:
                raise IsADirectory(f"{dname.decode(errors='replace')!r} is a directory")
            if dnode.is_dir:
                self.rmdir(ddir, dname)
            else:
                self.unlink(ddir, dname)
        sd = self.directory(sdir)
        self._remove_entry(sd, sname)
        if snode.is_dir and sdir != ddir:
            sd.nlink -= 1
        self.put_inode(sd)
        dd = self.directory(ddir)
        if snode.is_dir and sdir != ddir:
            dd.nlink += 1
        self._add_entry(dd, dname, snode)
        self.put_inode(dd)
        snode = self.inode(snode.ino)
        self.touch(snode, m=False)
        self.put_inode(snode)

    def _exchange(self, sdir, sname, sino, ddir, dname, dino) -> None:
        """RENAME_EXCHANGE: swap two existing entries atomically."""
        a, b = self.inode(sino), self.inode(dino)
        if a.is_dir and self.is_ancestor(a.ino, ddir) or b.is_dir and self.is_ancestor(b.ino, sdir):
            raise InvalidInput("cannot move a directory into itself")
        sd = self.directory(sdir)
        dd = sd if sdir == ddir else self.directory(ddir)
        self._remove_entry(sd, sname)
        self._remove_entry(dd, dname)
        if sdir != ddir:
            moved = int(a.is_dir) - int(b.is_dir)      # directories leaving sd for dd
            sd.nlink -= moved
            dd.nlink += moved
        self._add_entry(sd, sname, b)
        self._add_entry(dd, dname, a)
        self.put_inode(sd)
        if dd is not sd:
            self.put_inode(dd)
        for n in (a, b):
            self.touch(n, m=False)
            self.put_inode(n)

    # -- file content --------------------------------------------------------------
    def inline(self, ino: int) -> bytes | None:
        v = self.get_item(items.inline_key(ino))
        return None if v is None else values.payload(v)

    def extents_in(self, ino: int, fb_lo: int, fb_hi: int):
        """(fblock, start, n) of extents overlapping file blocks [fb_lo, fb_hi)."""
        lo, hi = items.prefix_range(ino, items.EXTENT)
        first = next(iter(self.item_range(lo, items.extent_key(ino, fb_lo + 1), reverse=True)), None)
        if first is not None:
            fb = items.extent_fblock(first[0])
            s, n = values.refs(first[1])
            if fb + n > fb_lo:
                yield fb, s, n
                if fb + n >= fb_hi:
                    return          # extents never overlap: no other one starts inside
        for k, v in self.item_range(items.extent_key(ino, fb_lo + 1), items.extent_key(ino, fb_hi)):
            s, n = values.refs(v)
            yield items.extent_fblock(k), s, n

    def read(self, node: Inode, offset: int, size: int) -> bytes:
        """Up to size bytes from offset (short at end of file)."""
        return bytes(self.read_buffer(node, offset, size))

    def read_buffer(self, node: Inode, offset: int, size: int, nowait: bool = False) -> bytearray:
        """read() as a fresh bytearray (no second copy); ``nowait`` as in readinto."""
        buf = bytearray(max(0, min(size, node.size - offset)))
        self.readinto(node, offset, buf, nowait)
        return buf

    def readinto(self, node: Inode, offset: int, buf, nowait: bool = False) -> int:
        """Like read() but into the writable buffer ``buf``; returns the byte count.
        Extents are read straight into ``buf`` (one copy); holes are zero-filled.
        ``nowait``: data only from the page cache, else BlockingIOError (EAGAIN)."""
        plan = self.read_plan(node, offset, memoryview(buf).nbytes)
        return fill(self.blocks, plan, buf, nowait)

    def read_plan(self, node: Inode, offset: int, size: int) -> "ReadPlan":
        """Where the bytes of a read are, without reading the pool: what ``fill``
        needs to do the read later (on another thread, see TreeView.read_later)."""
        end = min(node.size, offset + size)
        if offset >= end:
            return ReadPlan(0, [], None)
        n = end - offset
        inline = self.inline(node.ino) if node.size <= INLINE_MAX else None
        if inline is not None:
            return ReadPlan(n, [], inline[offset:end])
        bs = self.bs
        fb_lo, fb_hi = offset // bs, (end - 1) // bs + 1
        runs = []
        for fb, s, k in self.extents_in(node.ino, fb_lo, fb_hi):
            lo = max(offset, fb * bs)
            hi = min(end, (fb + k) * bs)
            runs.append((lo - offset, s, lo - fb * bs, hi - lo))
        return ReadPlan(n, runs, None)

    def _punch(self, ino: int, fb_lo: int, fb_hi: int | None) -> None:
        """Remove the mapping of file blocks [fb_lo, fb_hi) (None: to the end)."""
        hi = fb_hi if fb_hi is not None else 1 << 62
        for fb, s, n in list(self.extents_in(ino, fb_lo, hi)):
            k = items.extent_key(ino, fb)
            left = fb_lo - fb if fb < fb_lo else 0
            right = (fb + n) - hi if fb + n > hi else 0
            # The kept parts take over the old extent's references to their blocks
            # (no count changes, whatever the extent's size); only the punched
            # middle is released.
            if left:
                self.put_value(k, values.blockref(s, left), release_old=False)
            else:
                self.delete_item(k, release=False)
            if right:
                self.put_value(items.extent_key(ino, fb + n - right), values.blockref(s + n - right, right))
            self.blocks.dec(s + left, n - left - right)

    def _map(self, ino: int, fb: int, runs: list[tuple[int, int]]) -> None:
        """Insert extents for freshly written runs at file block fb (HOLE runs stay holes),
        merging with a preceding extent that ends where the new one starts in the pool."""
        for start, n in runs:
            if start != HOLE:
                # Nothing precedes file block 0 (a new file's first write): no probe.
                prev = None if fb == 0 else next(iter(self.item_range(
                    items.extent_key(ino, 0), items.extent_key(ino, fb), reverse=True)), None)
                if prev is not None:
                    pfb = items.extent_fblock(prev[0])
                    ps, pn = values.refs(prev[1])
                    if pfb + pn == fb and ps + pn == start:
                        # One extent [pfb, fb+n): it owns both runs' references already
                        # (the old value's pass on to it, the new run's are ours).
                        self.put_value(prev[0], values.blockref(ps, pn + n), release_old=False)
                        fb += n
                        continue
                self.put_value(items.extent_key(ino, fb), values.blockref(start, n))
            fb += n

    def write(self, node: Inode, offset: int, data) -> int:
        """Write data at offset (extending the file, leaving a hole before it if past EOF).

        ``data``: bytes-like, or a list of bytes-like pieces written one after
        the other (a vectored write: pieces of whole blocks at a block-aligned
        offset of a file past the inline limit go to the pool as they are, one
        extent update for all of them; otherwise they are joined first)."""
        if isinstance(data, list):
            bs = self.bs
            if (offset % bs or len(data) == 1 or node.size <= INLINE_MAX
                    or any(memoryview(p).nbytes % bs for p in data)):
                data = b"".join(data) if len(data) != 1 else data[0]
            else:
                n = sum(memoryview(p).nbytes for p in data)
                if n == 0:
                    return 0
                self._write_blocks(node.ino, offset, data, node.size, n)
                node.size = max(node.size, offset + n)
                self.touch(node)
                self.put_inode(node)
                return n
        n = len(data)
        if n == 0:
            return 0
        end = offset + n
        new_size = max(node.size, end)
        # Files over INLINE_MAX have no INLINE item (fscheck enforces it): no lookup.
        inline = self.inline(node.ino) if node.size <= INLINE_MAX else None
        if inline is not None or node.size == 0:
            # Inline (or empty) file: stays inline while it fits.
            cur = (inline or b"")[:node.size].ljust(node.size, b"\0")
            if new_size <= INLINE_MAX:
                buf = bytearray(cur)
                if len(buf) < offset:
                    buf.extend(bytes(offset - len(buf)))
                buf[offset:end] = data
                self.put_item(items.inline_key(node.ino), bytes(buf))
                node.size = new_size
                self.touch(node)
                self.put_inode(node)
                return n
            if inline is not None:
                # Grows past the inline limit: the old bytes become file blocks from 0.
                self.delete_item(items.inline_key(node.ino))
                if cur.strip(b"\0"):
                    self._write_blocks(node.ino, 0, cur, node.size)
        self._write_blocks(node.ino, offset, data, node.size)
        node.size = new_size
        self.touch(node)
        self.put_inode(node)
        return n

    def _write_blocks(self, ino: int, offset: int, data, size: int, n: int | None = None) -> None:
        """Store ``data`` at ``offset`` as new blocks; ``data`` may be a list of
        pieces of whole blocks when ``offset`` is block-aligned (``n``: their bytes)."""
        bs = self.bs
        end = offset + (len(data) if n is None else n)
        fb_lo, fb_hi = offset // bs, (end - 1) // bs + 1
        head, tail = offset - fb_lo * bs, fb_hi * bs - end
        owned = False                       # may the pool hash buf after we return?
        if head == 0 and tail == 0:
            buf = data
        else:
            owned = True                    # our own copy: nobody changes it
            buf = bytearray(fb_hi * bs - fb_lo * bs)
            if head:
                buf[:head] = self._block_bytes(ino, fb_lo, size)[:head]
            if tail:
                last = self._block_bytes(ino, fb_hi - 1, size)
                buf[-tail:] = last[bs - tail:]
            buf[head:head + len(data)] = data
        runs = self.blocks.write(buf, owned)
        if fb_lo * bs < size:
            # Extents lie within the file's size (fscheck enforces it): at or past the
            # block after EOF nothing is mapped, so an append has nothing to punch.
            self._punch(ino, fb_lo, fb_hi)
        self._map(ino, fb_lo, runs)

    def _block_bytes(self, ino: int, fb: int, size: int) -> bytes:
        """Current content of one file block (zeros beyond EOF and in holes)."""
        bs = self.bs
        if fb * bs >= size:
            return bytes(bs)
        for efb, s, n in self.extents_in(ino, fb, fb + 1):
            return self.blocks.read(s + fb - efb, 1)
        return bytes(bs)

    def truncate(self, node: Inode, size: int) -> None:
        if size < 0:
            raise InvalidInput("negative size")
        if size == node.size:
            self.touch(node)
            self.put_inode(node)
            return
        inline = self.inline(node.ino)
        if inline is not None:
            if size <= INLINE_MAX:
                self.put_item(items.inline_key(node.ino), inline[:size].ljust(size, b"\0"))
            else:
                self.delete_item(items.inline_key(node.ino))
                if inline[:node.size].strip(b"\0"):
                    self._write_blocks(node.ino, 0, inline[:node.size], node.size)
        elif size < node.size:
            bs = self.bs
            keep = (size + bs - 1) // bs
            self._punch(node.ino, keep, None)
            if size % bs:
                # Zero the tail of the last kept block so a later extension reads zeros.
                blk = bytearray(self._block_bytes(node.ino, size // bs, node.size))
                if any(blk[size % bs:]):
                    blk[size % bs:] = bytes(bs - size % bs)
                    self._write_blocks(node.ino, (size // bs) * bs, bytes(blk), node.size)
        node.size = size
        self.touch(node)
        self.put_inode(node)

    def extents(self, ino: int) -> list[tuple[int, int, int]]:
        """(file block, pool block, n) of every extent: for SEEK_DATA/SEEK_HOLE and usage.
        One forward scan of the inode's EXTENT items (what ``extents_in`` over
        every block yields, without its backward probe for an overlapping start)."""
        lo, hi = items.prefix_range(ino, items.EXTENT)
        refs, fblock = values.refs, items.extent_fblock
        return [(fblock(k), *refs(v)) for k, v in self.item_range(lo, hi)]

    # -- extended attributes -----------------------------------------------------
    def getxattr(self, ino: int, name: bytes) -> bytes:
        v = self.get_item(items.xattr_key(ino, name))
        if v is None:
            raise NoAttribute(f"no attribute {name.decode(errors='replace')!r}")
        r = values.refs(v)
        if r is None:
            return values.payload(v)
        size = int.from_bytes(values.payload(v), "big")
        return self.blocks.read(r[0], r[1])[:size]

    def listxattr(self, ino: int) -> list[bytes]:
        lo, hi = items.prefix_range(ino, items.XATTR)
        return [items.split(k)[2] for k, _ in self.item_range(lo, hi)]

    def setxattr(self, ino: int, name: bytes, value: bytes, flags: int = 0) -> None:
        """flags: os.XATTR_CREATE (1) fails if present, os.XATTR_REPLACE (2) if absent."""
        if not name or len(name) > 255 or b"\0" in name:
            raise InvalidInput("attribute names are 1..255 bytes without NUL")
        if len(value) > XATTR_MAX:
            raise TooBig(f"attribute values are at most {XATTR_MAX} bytes")
        k = items.xattr_key(ino, name)
        if flags & 3:           # without flags a value it had is replaced (and released) by put
            exists = self.get_item(k) is not None
            if flags & 1 and exists:
                raise AlreadyExists(f"attribute {name.decode(errors='replace')!r} exists")
            if flags & 2 and not exists:
                raise NoAttribute(f"no attribute {name.decode(errors='replace')!r}")
        node = self.inode(ino)
        if len(value) <= XATTR_INLINE_MAX:
            self.put_item(k, bytes(value))
        else:
            bs = self.bs
            buf = bytes(value) + bytes(-len(value) % bs)
            # One run: allocate without zero-skipping so the value is one extent.
            runs = self.blocks.write(buf)
            if len(runs) != 1 or runs[0][0] == HOLE:
                for s, n in runs:
                    if s != HOLE:
                        self.blocks.dec(s, n)
                raise InvalidInput("large attribute values must not be mostly zero blocks")
            self.put_value(k, values.blockref(runs[0][0], runs[0][1], len(value).to_bytes(8, "big")))
        self.touch(node, m=False)
        self.put_inode(node)

    def removexattr(self, ino: int, name: bytes) -> None:
        k = items.xattr_key(ino, name)
        if self.get_item(k) is None:
            raise NoAttribute(f"no attribute {name.decode(errors='replace')!r}")
        self.delete_item(k)
        node = self.inode(ino)
        self.touch(node, m=False)
        self.put_inode(node)

    # -- paths ----------------------------------------------------------------------
    def path_of(self, ino: int) -> bytes | None:
        """One path of ino (b"/" for the root), or None if unlinked."""
        parts = []
        guard = 0
        while ino != items.ROOT_INO:
            refs = self.parents(ino)
            if not refs:
                return None
            ino, name = refs[0]
            parts.append(name)
            guard += 1
            if guard > 10000:
                raise InvalidInput("directory ancestry is cyclic")
        return b"/" + b"/".join(reversed(parts))


ELOOP = errno.ELOOP
