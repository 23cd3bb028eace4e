"""Export a tree as a tar: the whole tree, or the OCI layer between two trees.

Reproducible: entries sorted by path (parents first), PAX format, numeric
owners only (no user/group names), no atime/ctime, mtime exact to the ns
(a PAX ``mtime`` record only when it has a fraction), xattrs as
``SCHILY.xattr.*``; hard links: the first path in sorted order carries the
content, the others are type-1 links to it.  The root directory is the
entry ``./``.  Holes are written as zeros (tar has no portable holes).

The layer (``write_diff``) comes from the engine's tree diff
(``api.layers.reading_diff`` plans it), so its cost
is proportional to the difference (subtrees both trees share are skipped
by node id), plus whole subtrees that appear at a new path (a renamed or
new directory must be spelled out in full in a tar layer).  Rules:

* an entry that disappears -> ``DIR/.wh.NAME`` (not below a directory that
  itself disappeared or moved: that one's whiteout covers it);
* a name that now refers to a different directory than before (a new
  inode) -> compared path by path with the old one (``fs.diff``), so only
  what differs is written, as for the same directory (the applier merges a
  directory over a directory); no opaque marker is needed;
* an inode whose attributes, content or xattrs changed as a user sees them
  (``fs.diff.visible``: not ctimes, not block pointers of equal bytes) -> an
  entry for it at every path it has (directories: the header only, which
  merges);
* a hard-linked file in the layer is written at all its paths, so the link
  group survives the applier's replacement of the changed path.

Names that are OCI markers: a tree entry whose name starts with ``.wh.``
cannot be written into a tar (an importer would take it for a whiteout and
delete instead of create); the export is refused, naming the path, before
anything is written (``check_names``: one pass over the names it would
write).

Everything is read in one read transaction (a consistent view; the blocks
it reaches are not reused while the export runs).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tarfile

from ..api import layers
from ..api.hostout import replace_file
from ..errors import InvalidInput
from .safety import show

CHUNK = 1 << 20
WH = b".wh."


class _HashWriter:
    def __init__(self, out):
        self.out = out
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, b) -> int:
        self.h.update(b)
        self.n += len(b)
        return self.out.write(b)

    def digest(self) -> str:
        return "sha256:" + self.h.hexdigest()


class _Content:
    """A file's bytes as a reader (holes read as zeros)."""

    def __init__(self, tree: layers.TreeReader, node):
        self.tree, self.node, self.pos = tree, node, 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.node.size - self.pos
        b = self.tree.read(self.node, self.pos, min(n, CHUNK * 4))
        self.pos += len(b)
        return b


def _ns_str(ns: int) -> str:
    s, frac = divmod(ns, 1_000_000_000)
    return f"{s}.{frac:09d}".rstrip("0")


def _tarinfo(tree: layers.TreeReader, node, parts: tuple) -> tarfile.TarInfo:
    name = os.fsdecode(b"/".join(parts)) if parts else "."
    ti = tarfile.TarInfo(name)
    ti.mode = stat.S_IMODE(node.mode)
    ti.uid, ti.gid = node.uid, node.gid
    ti.uname = ti.gname = ""
    ti.mtime = node.mtime // 1_000_000_000
    pax = {}
    if node.mtime % 1_000_000_000:
        pax["mtime"] = _ns_str(node.mtime)
    for k, v in tree.xattrs(node.ino):
        pax["SCHILY.xattr." + k.decode("utf-8", "surrogateescape")] = \
            v.decode("utf-8", "surrogateescape")
    ti.pax_headers = pax
    fmt = stat.S_IFMT(node.mode)
    if fmt == stat.S_IFDIR:
        ti.type = tarfile.DIRTYPE
    elif fmt == stat.S_IFLNK:
        ti.type = tarfile.SYMTYPE
        ti.linkname = os.fsdecode(tree.readlink(node.ino))
    elif fmt == stat.S_IFREG:
        ti.type = tarfile.REGTYPE
        ti.size = node.size
    elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
        ti.type = tarfile.CHRTYPE if fmt == stat.S_IFCHR else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(node.rdev), os.minor(node.rdev)
    elif fmt == stat.S_IFIFO:
        ti.type = tarfile.FIFOTYPE
    else:
        ti.type = None                         # sockets are not archived (as tar does)
    return ti


class _Writer:
    def __init__(self, tree: layers.TreeReader, out):
        self.tree = tree
        self.hw = _HashWriter(out)
        self.tf = tarfile.open(fileobj=self.hw, mode="w|", format=tarfile.PAX_FORMAT)
        self.tf.copybufsize = CHUNK
        self.first: dict[int, str] = {}

    def entry(self, parts: tuple, ino: int) -> None:
        node = self.tree.inode(ino)
        ti = _tarinfo(self.tree, node, parts)
        if ti.type is None:
            return
        if not node.is_dir and node.nlink > 1:
            if ino in self.first:
                ti.type, ti.linkname, ti.size = tarfile.LNKTYPE, self.first[ino], 0
                ti.pax_headers = {}
                self.tf.addfile(ti)
                return
            self.first[ino] = ti.name
        self.tf.addfile(ti, _Content(self.tree, node) if ti.type == tarfile.REGTYPE else None)

    def marker(self, parts: tuple) -> None:
        ti = tarfile.TarInfo(os.fsdecode(b"/".join(parts)))
        ti.type, ti.mode, ti.uname, ti.gname = tarfile.REGTYPE, 0o644, "", ""
        self.tf.addfile(ti)

    def close(self) -> str:
        self.tf.close()
        return self.hw.digest()


def _open_out(out):
    """A context manager giving the binary file to write: ``out`` itself when it
    is a file object, else a temporary file renamed to the path on success
    (a symlink there is replaced, not followed; nothing is left on failure)."""
    if hasattr(out, "write"):
        return contextlib.nullcontext(out)
    return replace_file(out)


def check_name(tree: str, parts: tuple) -> None:
    """Refuse an entry whose name is an OCI marker (``.wh.`` prefix)."""
    if parts and parts[-1].startswith(WH):
        raise InvalidInput(f"cannot export {tree!r} as a tar: {show(b'/' + b'/'.join(parts))} "
                           "has a name starting with '.wh.', which OCI layers reserve for "
                           "whiteouts (an import would delete it); rename it first")


def write_full(store, name: str, out) -> str:
    """The whole tree as a reproducible tar; returns its sha256 digest."""
    with layers.reading(store, name) as tree:       # refuse before creating out
        tree.walk(layers.ROOT, (), lambda p, ino: check_name(name, p))
    with _open_out(out) as f, layers.reading(store, name) as tree:
        w = _Writer(tree, f)
        w.entry((), layers.ROOT)
        tree.walk(layers.ROOT, (), w.entry)
        return w.close()


def write_diff(store, parent: str, name: str, out) -> str:
    """The OCI layer that turns ``parent`` into ``name``; returns its sha256 digest."""
    with layers.reading_diff(store, parent, name, lambda n: WH + n) as (tree, plan):
        for path, (kind, _) in plan.items():        # refuse before creating out
            if kind == layers.ENTRY:
                check_name(name, path)
        with _open_out(out) as f:
            w = _Writer(tree, f)
            for path in sorted(plan):
                kind, ino = plan[path]
                if kind == layers.ENTRY:
                    w.entry(path, ino)
                else:
                    w.marker(path)
            return w.close()
