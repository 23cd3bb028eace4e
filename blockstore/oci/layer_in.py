"""Apply one layer tar onto a tree, following the OCI image-spec layer rules.

* ``DIR/.wh.NAME`` deletes NAME (recursively) as it was in the lower layers;
  a NAME that this layer itself wrote stays (whiteouts only hide lower
  content), except that the lower children of such a directory go.
* Whiteouts below a path that this layer made a non-directory (a directory
  replaced by a file, in either order) remove nothing: there is no lower
  content below it any more.
* ``DIR/.wh..wh..opq`` hides every lower child of DIR; it acts as if it
  came before the layer's other entries wherever it appears: whatever this
  layer already wrote below DIR stays (``added`` remembers those paths).
* A directory over a directory merges attributes (mode, owner, times and
  the xattr set are the new entry's; children stay); anything else replaces.
* Hard links (tar type 1) name a path already in the tree (this layer's
  earlier entries or lower layers), resolved without following symlinks.
* Symlinks, char/block devices, fifos; PAX ``SCHILY.xattr.*`` (and
  ``LIBARCHIVE.xattr.*``); numeric uid/gid; PAX sub-second mtime/atime; GNU
  and PAX long names and sparse members (only the data regions are read:
  holes stay holes).
* Directory times: an entry added or removed under a directory does not
  change that directory's mtime (as ``umoci unpack`` and docker do): the
  directory keeps the time its own entry gave it.

Hostile input rules are in ``safety.py``.  Streaming: one member at a time,
file data in ``CHUNK`` pieces; the work is split into transactions every
``COMMIT_BYTES``/``COMMIT_ITEMS`` inside the caller's batch so memory stays
bounded (the batch is durable at its end; on error the caller drops the
working clone).  Memory beyond that: the set of paths this layer wrote.
"""
from __future__ import annotations

import base64
import os
import stat as S
import time
import tarfile
from decimal import Decimal

from .. import catalog
from ..btree.store import NodeStore
from ..errors import BlockstoreError, InvalidInput
from ..fs import items as I
from ..fs.tree import FsTree
from . import safety
from .tarread import Members

CHUNK = 1 << 20
COMMIT_BYTES = 256 << 20
COMMIT_ITEMS = 20000
WH, OPQ = b".wh.", b".wh..wh..opq"
DT_DIR, DT_LNK = S.S_IFDIR >> 12, S.S_IFLNK >> 12


def _ns(member: tarfile.TarInfo, key: str) -> int | None:
    """A PAX time in ns (exact: parsed as a decimal, not a float)."""
    v = member.pax_headers.get(key)
    if v is not None:
        try:
            return int(Decimal(v) * 1_000_000_000)
        except Exception:
            raise safety.refuse(member.name, f"bad PAX {key} {safety.show(v)}") from None
    return None


def _xattrs(member: tarfile.TarInfo) -> dict[bytes, bytes]:
    out = {}
    for k, v in member.pax_headers.items():
        if k.startswith("SCHILY.xattr."):
            out[k[13:].encode("utf-8", "surrogateescape")] = v.encode("utf-8", "surrogateescape")
        elif k.startswith("LIBARCHIVE.xattr."):
            from urllib.parse import unquote_to_bytes
            try:
                out[unquote_to_bytes(k[17:])] = base64.b64decode(v + "=" * (-len(v) % 4))
            except ValueError as exc:                       # binascii.Error
                raise safety.refuse(member.name, f"bad base64 in PAX {safety.show(k)} "
                                    f"({exc})") from None
    return out


class Applier:
    """Applies members to an FsTree; ``fst`` is swapped at transaction boundaries."""

    def __init__(self, limits: safety.Limits):
        self.limits = limits
        self.fst: FsTree | None = None
        self.added: set[tuple[bytes, ...]] = set()
        self.entry = ""
        self.bytes = 0
        self.items = 0

    # -- paths, never following symlinks ------------------------------------------
    def _dir(self, parts, create: bool) -> int | None:
        f = self.fst
        ino = I.ROOT_INO
        for i, p in enumerate(parts):
            found = f.lookup(ino, p)
            if found is None:
                if not create:
                    return None
                with self._keep_times(ino):
                    t = f.now()
                    node = f.create(ino, p, S.S_IFDIR | 0o755, 0, 0)
                    node.mtime = node.atime = t
                    f.put_inode(node)
                self.added.add(tuple(parts[:i + 1]))
                ino = node.ino
                continue
            child, dtype = found
            if dtype == DT_LNK:
                raise safety.refuse(self.entry, f"path goes through symlink "
                                    f"{safety.show(b'/'.join(parts[:i + 1]))}")
            if dtype != DT_DIR:
                raise safety.refuse(self.entry, f"{safety.show(b'/'.join(parts[:i + 1]))} "
                                    "is not a directory")
            ino = child
        return ino

    class _Times:
        __slots__ = ("f", "ino", "t")

        def __init__(self, f, ino):
            self.f, self.ino = f, ino

        def __enter__(self):
            n = self.f.inode(self.ino)
            self.t = (n.atime, n.mtime)

        def __exit__(self, *exc):
            if exc[0] is None:
                n = self.f.inode(self.ino)
                if (n.atime, n.mtime) != self.t:
                    n.atime, n.mtime = self.t
                    self.f.put_inode(n)

    def _keep_times(self, dir_ino: int):
        return self._Times(self.fst, dir_ino)

    def _remove(self, dir_ino: int, name: bytes) -> None:
        """Remove name, a directory with everything below it (explicit stack: any depth)."""
        f = self.fst
        found = f.lookup(dir_ino, name)
        if found is None:
            return
        if found[1] != DT_DIR:
            f.unlink(dir_ino, name)
            return
        stack = [(dir_ino, name, found[0], self._clear_files(found[0]))]
        while stack:
            parent, n, ino, subdirs = stack[-1]
            if subdirs:
                cn, cino = subdirs.pop()
                stack.append((ino, cn, cino, self._clear_files(cino)))
                continue
            f.rmdir(parent, n)
            stack.pop()

    def _clear_files(self, dir_ino: int) -> list:
        """Unlink the non-directories of dir_ino; returns its subdirectories [(name, ino)]."""
        f = self.fst
        dirs = []
        for _, n, child, dtype in list(f.readdir(dir_ino)):
            if dtype == DT_DIR:
                dirs.append((n, child))
            else:
                f.unlink(dir_ino, n)
        return dirs

    def _prune(self, dir_ino: int, parts: tuple) -> None:
        """Remove every child of dir that this layer did not write (opaque); an
        explicit stack, each directory's times kept as they were."""
        f = self.fst
        stack = [(dir_ino, parts, list(f.readdir(dir_ino))[::-1], None)]
        while stack:
            ino, base, children, times = stack[-1]
            if not children:
                stack.pop()
                if times is not None:
                    times.__exit__(None, None, None)
                continue
            _, n, child, dtype = children.pop()
            p = base + (n,)
            if p not in self.added:
                self._remove(ino, n)
            elif dtype == DT_DIR:
                t = self._keep_times(child)
                t.__enter__()
                stack.append((child, p, list(f.readdir(child))[::-1], t))

    # -- one member ---------------------------------------------------------------------
    def apply(self, m: tarfile.TarInfo, data) -> None:
        self.entry = m.name
        self.items += 1
        parts = safety.split_path(m.name)
        base = parts[-1] if parts else b""
        if base.startswith(WH):
            return self._whiteout(parts)
        if not parts:
            if not m.isdir():
                raise safety.refuse(m.name, "the root must be a directory")
            self._meta(I.ROOT_INO, m)
            self.added.add(())
            return
        f = self.fst
        dup = parts in self.added
        if m.isdev() and not m.isfifo() and not self.limits.allow_devices:
            raise safety.refuse(m.name, "device nodes are not allowed")
        if m.isreg() and m.size > self.limits.max_file_size:
            raise safety.refuse(m.name, f"claims {m.size} bytes (limit "
                                f"{self.limits.max_file_size})")
        parent = self._dir(parts[:-1], create=True)
        with self._keep_times(parent):
            found = f.lookup(parent, base)
            if found is not None and m.isdir() and found[1] == DT_DIR:
                self._meta(found[0], m)
                self.added.add(parts)
                return
            if dup:
                raise safety.refuse(m.name, "duplicate entry in one layer")
            if m.islnk():
                return self._hardlink(m, parent, base, parts, found)
            if found is not None:
                self._remove(parent, base)
            if m.issym():
                node = f.symlink(parent, base, os.fsencode(m.linkname), m.uid, m.gid)
            elif m.isdir():
                node = f.create(parent, base, S.S_IFDIR | 0o700, m.uid, m.gid)
            elif m.isreg():
                node = f.create(parent, base, S.S_IFREG | 0o600, m.uid, m.gid)
                self._content(node, m, data)
            elif m.ischr() or m.isblk() or m.isfifo():
                typ = S.S_IFCHR if m.ischr() else S.S_IFBLK if m.isblk() else S.S_IFIFO
                node = f.create(parent, base, typ | 0o600, m.uid, m.gid,
                                os.makedev(m.devmajor, m.devminor) if typ != S.S_IFIFO else 0)
            else:
                raise safety.refuse(m.name, f"unsupported tar entry type {m.type!r}")
            self._meta(node.ino, m)
            self.added.add(parts)

    def _hardlink(self, m, parent, base, parts, found) -> None:
        f = self.fst
        tparts = safety.split_path(m.linkname, m.name)
        if not tparts:
            raise safety.refuse(m.name, "hard link to the root directory")
        if tparts == parts:
            raise safety.refuse(m.name, "hard link to itself")
        if found is not None:
            self._remove(parent, base)
        tdir = self._dir(tparts[:-1], create=False)
        target = f.lookup(tdir, tparts[-1]) if tdir is not None else None
        if target is None:
            raise safety.refuse(m.name, f"hard link target {safety.show(m.linkname)} "
                                "is not in the tree")
        if target[1] == DT_DIR:
            raise safety.refuse(m.name, f"hard link target {safety.show(m.linkname)} "
                                "is a directory")
        f.link(target[0], parent, base)
        self.added.add(parts)

    def _wh_dir(self, dparts, create: bool) -> int | None:
        """The directory a whiteout applies in, or None when there is nothing
        below to hide: a missing path, or one this layer made a non-directory
        (whiteouts hide lower content only, and a path that is no longer a
        directory holds none; umoci writes the replacing file before the
        whiteouts of the old directory's children).  A symlink or file from a
        lower layer in the path is refused as for any entry."""
        f = self.fst
        ino = I.ROOT_INO
        for i, p in enumerate(dparts):
            found = f.lookup(ino, p)
            if found is None:
                return self._dir(dparts, create=True) if create else None
            if found[1] != DT_DIR:
                if tuple(dparts[:i + 1]) in self.added:
                    return None
                return self._dir(dparts, create=False)      # refuses, naming the path
            ino = found[0]
        return ino

    def _whiteout(self, parts) -> None:
        base = parts[-1]
        dparts = parts[:-1]
        if base == OPQ:
            d = self._wh_dir(dparts, create=True)
            if d is None:
                return
            with self._keep_times(d):
                self._prune(d, dparts)
            return
        name = base[len(WH):]
        if not name or name in (b".", b"..") or name.startswith(WH):
            raise safety.refuse(self.entry, "malformed whiteout name")
        d = self._wh_dir(dparts, create=False)
        if d is None:
            return                          # nothing below to hide
        target = dparts + (name,)
        found = self.fst.lookup(d, name)
        if found is None:
            return
        with self._keep_times(d):
            if target not in self.added:
                self._remove(d, name)
            elif found[1] == DT_DIR:
                with self._keep_times(found[0]):
                    self._prune(found[0], target)

    def _content(self, node, m: tarfile.TarInfo, data) -> None:
        f = self.fst
        # a sparse member's data is its regions stored one after the other
        regions = m.sparse if m.sparse is not None else [(0, m.size)]
        try:
            for off, length in regions:
                if length <= 0:
                    continue
                pos, end = off, off + length
                while pos < end:
                    chunk = data.read(min(CHUNK, end - pos))
                    if not chunk:
                        raise safety.refuse(m.name, "archive ends inside the entry's data")
                    if chunk.count(0) != len(chunk):
                        f.write(node, pos, chunk)
                    pos += len(chunk)
                    self.bytes += len(chunk)
        except tarfile.ReadError as exc:
            raise safety.refuse(m.name, f"truncated data ({exc})") from None
        if node.size != m.size:
            f.truncate(node, m.size)

    def _meta(self, ino: int, m: tarfile.TarInfo) -> None:
        f = self.fst
        node = f.inode(ino)
        if not node.is_lnk:
            node.mode = S.S_IFMT(node.mode) | (m.mode & 0o7777)
        node.uid, node.gid = m.uid, m.gid
        mt = _ns(m, "mtime")
        node.mtime = mt if mt is not None else int(m.mtime) * 1_000_000_000
        at = _ns(m, "atime")
        node.atime = at if at is not None else node.mtime
        f.put_inode(node)
        want = _xattrs(m)
        for k in f.listxattr(ino):
            if k not in want:
                f.removexattr(ino, k)
        for k, v in want.items():          # setxattr changes ctime only
            f.setxattr(ino, k, v)


def apply_stream(store, work: str, stream, limits: safety.Limits, progress=None,
                 what: str = "layer") -> Applier:
    """Apply the tar read from ``stream`` (decompressed) onto tree ``work``.
    Must run inside ``store.batch()``; commits every COMMIT_BYTES/ITEMS."""
    env = store.env
    ap = Applier(limits)
    members = iter(Members(stream, what))
    done = False
    while not done:
        with env.write() as w:
            rec = catalog.get(w, work)
            ap.fst = FsTree(NodeStore.of(w), rec.root, time.time_ns)
            b0, i0 = ap.bytes, ap.items
            while ap.bytes - b0 < COMMIT_BYTES and ap.items - i0 < COMMIT_ITEMS:
                try:
                    nxt = next(members, None)
                except InvalidInput:
                    raise
                if nxt is None:
                    done = True
                    break
                m, data = nxt
                try:
                    ap.apply(m, data)
                except BlockstoreError as exc:
                    if isinstance(exc, InvalidInput) and "layer entry" in str(exc):
                        raise
                    raise type(exc)(f"layer entry {safety.show(m.name)}: {exc.message}",
                                    path=safety.cut(m.name)) from None
                if progress:
                    progress(m.name, m.size if m.isreg() else 0)
            if ap.fst.root != rec.root:
                rec.root = ap.fst.root
                catalog.put(w, rec)
        if not done:
            env.sync()
    return ap
