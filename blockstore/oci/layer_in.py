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
file data in ``CHUNK`` pieces.  The tree is written through
``api.layers.LayerWriter`` (the item writes, and commits of the staging
batch every ``COMMIT_BYTES``/``COMMIT_ITEMS`` between members, so memory
stays bounded; on error the caller drops the working clone).  Memory beyond
that: the set of paths this layer wrote.
"""
from __future__ import annotations

import base64
import os
import stat
import tarfile
from decimal import Decimal

from ..api.layers import DT_DIR, DT_LNK, ROOT, LayerWriter
from ..errors import BlockstoreError, InvalidInput
from . import safety
from .tarread import Members

CHUNK = 1 << 20
WH, OPQ = b".wh.", b".wh..wh..opq"


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
    """Applies members through a ``LayerWriter`` (``tree``): the OCI rules and the
    checks of each entry; the item writes are the writer's."""

    def __init__(self, tree: LayerWriter, limits: safety.Limits):
        self.tree = tree
        self.limits = limits
        self.added: set[tuple[bytes, ...]] = set()
        self.entry = ""

    # -- paths, never following symlinks ------------------------------------------
    def _dir(self, parts, create: bool) -> int | None:
        t = self.tree
        ino = ROOT
        for i, p in enumerate(parts):
            found = t.lookup(ino, p)
            if found is None:
                if not create:
                    return None
                ino = t.mkdir(ino, p)
                self.added.add(tuple(parts[:i + 1]))
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

    # -- one member ---------------------------------------------------------------------
    def apply(self, m: tarfile.TarInfo, data) -> None:
        self.entry = m.name
        parts = safety.split_path(m.name)
        base = parts[-1] if parts else b""
        if base.startswith(WH):
            return self._whiteout(parts)
        if not parts:
            if not m.isdir():
                raise safety.refuse(m.name, "the root must be a directory")
            self._meta(ROOT, m)
            self.added.add(())
            return
        t = self.tree
        dup = parts in self.added
        if m.isdev() and not m.isfifo() and not self.limits.allow_devices:
            raise safety.refuse(m.name, "device nodes are not allowed")
        if m.isreg() and m.size > self.limits.max_file_size:
            raise safety.refuse(m.name, f"claims {m.size} bytes (limit "
                                f"{self.limits.max_file_size})")
        parent = self._dir(parts[:-1], create=True)
        with t.keep_times(parent):
            found = t.lookup(parent, base)
            if found is not None and m.isdir() and found[1] == DT_DIR:
                self._meta(found[0], m)
                self.added.add(parts)
                return
            if dup:
                raise safety.refuse(m.name, "duplicate entry in one layer")
            if m.islnk():
                return self._hardlink(m, parent, base, parts, found)
            if found is not None:
                t.remove(parent, base)
            if m.issym():
                ino = t.symlink(parent, base, os.fsencode(m.linkname), m.uid, m.gid)
            elif m.isdir():
                ino = t.create(parent, base, stat.S_IFDIR | 0o700, m.uid, m.gid)
            elif m.isreg():
                ino = t.create(parent, base, stat.S_IFREG | 0o600, m.uid, m.gid)
                t.fill(ino, self._pieces(m, data), m.size)
            elif m.ischr() or m.isblk() or m.isfifo():
                typ = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
                ino = t.create(parent, base, typ | 0o600, m.uid, m.gid,
                               os.makedev(m.devmajor, m.devminor) if typ != stat.S_IFIFO else 0)
            else:
                raise safety.refuse(m.name, f"unsupported tar entry type {m.type!r}")
            self._meta(ino, m)
            self.added.add(parts)

    def _hardlink(self, m, parent, base, parts, found) -> None:
        t = self.tree
        tparts = safety.split_path(m.linkname, m.name)
        if not tparts:
            raise safety.refuse(m.name, "hard link to the root directory")
        if tparts == parts:
            raise safety.refuse(m.name, "hard link to itself")
        if found is not None:
            t.remove(parent, base)
        tdir = self._dir(tparts[:-1], create=False)
        target = t.lookup(tdir, tparts[-1]) if tdir is not None else None
        if target is None:
            raise safety.refuse(m.name, f"hard link target {safety.show(m.linkname)} "
                                "is not in the tree")
        if target[1] == DT_DIR:
            raise safety.refuse(m.name, f"hard link target {safety.show(m.linkname)} "
                                "is a directory")
        t.link(target[0], parent, base)
        self.added.add(parts)

    def _wh_dir(self, dparts, create: bool) -> int | None:
        """The directory a whiteout applies in, or None when there is nothing
        below to hide: a missing path, or one this layer made a non-directory
        (whiteouts hide lower content only, and a path that is no longer a
        directory holds none; umoci writes the replacing file before the
        whiteouts of the old directory's children).  A symlink or file from a
        lower layer in the path is refused as for any entry."""
        t = self.tree
        ino = ROOT
        for i, p in enumerate(dparts):
            found = t.lookup(ino, p)
            if found is None:
                return self._dir(dparts, create=True) if create else None
            if found[1] != DT_DIR:
                if tuple(dparts[:i + 1]) in self.added:
                    return None
                return self._dir(dparts, create=False)      # refuses, naming the path
            ino = found[0]
        return ino

    def _whiteout(self, parts) -> None:
        t = self.tree
        base = parts[-1]
        dparts = parts[:-1]
        if base == OPQ:
            d = self._wh_dir(dparts, create=True)
            if d is None:
                return
            with t.keep_times(d):
                t.prune(d, dparts, self.added)
            return
        name = base[len(WH):]
        if not name or name in (b".", b"..") or name.startswith(WH):
            raise safety.refuse(self.entry, "malformed whiteout name")
        d = self._wh_dir(dparts, create=False)
        if d is None:
            return                          # nothing below to hide
        target = dparts + (name,)
        found = t.lookup(d, name)
        if found is None:
            return
        with t.keep_times(d):
            if target not in self.added:
                t.remove(d, name)
            elif found[1] == DT_DIR:
                with t.keep_times(found[0]):
                    t.prune(found[0], target, self.added)

    def _pieces(self, m: tarfile.TarInfo, data):
        """(offset, bytes) of a regular member's data, read in CHUNK pieces; a
        sparse member's data is its regions stored one after the other."""
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
                    yield pos, chunk
                    pos += len(chunk)
        except tarfile.ReadError as exc:
            raise safety.refuse(m.name, f"truncated data ({exc})") from None

    def _meta(self, ino: int, m: tarfile.TarInfo) -> None:
        mt = _ns(m, "mtime")
        mtime = mt if mt is not None else int(m.mtime) * 1_000_000_000
        at = _ns(m, "atime")
        self.tree.set_meta(ino, m.mode, m.uid, m.gid, mtime, at if at is not None else mtime,
                           _xattrs(m))


def apply_stream(st, stream, limits: safety.Limits, progress=None,
                 what: str = "layer") -> Applier:
    """Apply the tar read from ``stream`` (decompressed) onto the working clone
    of staging import ``st`` (``Store.staging``)."""
    ap = Applier(LayerWriter(st), limits)

    def one(member):
        m, data = member
        try:
            ap.apply(m, data)
        except BlockstoreError as exc:
            if isinstance(exc, InvalidInput) and "layer entry" in str(exc):
                raise
            raise type(exc)(f"layer entry {safety.show(m.name)}: {exc.message}",
                            path=safety.cut(m.name)) from None
        if progress:
            progress(m.name, m.size if m.isreg() else 0)
    ap.tree.apply_each(Members(stream, what), one)
    return ap
