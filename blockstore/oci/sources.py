"""Read-only access to the files of an image: a directory or a tar of one.

Names are validated (relative, no ``..``) before use, so a manifest cannot
point outside the image.  Blobs are opened as streams (a tar member is read
in place from the archive file, never loaded whole); JSON documents are
read whole but refused above ``JSON_MAX`` bytes.

Hostile images: in a directory every file is opened component by component
with ``O_NOFOLLOW`` and must be a regular file (a blob that is a symlink,
say to /dev/zero, or a FIFO is refused, never read).  In an archive the
headers pass the limits of ``tarread.Info``, every member's data must lie
inside the archive, at most ``MEMBERS_MAX`` members are indexed, and
symlinks and hard links between members are resolved inside the archive,
at most ``LINK_HOPS`` of them (a loop is refused).
"""
from __future__ import annotations

import errno
import json
import os
import re
import stat
import tarfile

from ..errors import InvalidInput, NotFound
from . import safety
from .tarread import Info, last_member, note_member, set_kind

MEMBERS_MAX = 1 << 16
LINK_HOPS = 40                      # as the kernel's symlink limit (ELOOP)

JSON_MAX = 8 << 20
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def blob_path(digest, where: str) -> str:
    if not isinstance(digest, str) or not DIGEST.match(digest):
        raise InvalidInput(f"{where}: bad or unsupported digest {digest!r}")
    return "blobs/sha256/" + digest[7:]


class DirSource:
    def __init__(self, root: str):
        self.root = root
        self.label = root

    def _path(self, rel: str) -> str:
        parts = safety.split_path(rel, rel)
        return os.path.join(self.root, *map(os.fsdecode, parts))

    def exists(self, rel: str) -> bool:
        return os.path.lexists(self._path(rel))

    def open(self, rel: str):
        """The regular file rel, reached without following any symlink below the root."""
        parts = safety.split_path(rel, rel)
        if not parts:
            raise InvalidInput(f"image file {rel!r} is not a file", path=self.label)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for p in parts[:-1]:
                nfd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=fd)
                os.close(fd)
                fd = nfd
            ffd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                          dir_fd=fd)
        except FileNotFoundError:
            raise NotFound(f"image file {rel!r} is missing", path=self._path(rel)) from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise InvalidInput(f"image file {rel!r} is a symlink or lies below one or "
                                   "below a file (the files of a layout must be regular "
                                   "files inside it)", path=self.label) from None
            raise
        finally:
            os.close(fd)
        st = os.fstat(ffd)
        if not stat.S_ISREG(st.st_mode):
            os.close(ffd)
            raise InvalidInput(f"image file {rel!r} is not a regular file", path=self.label)
        return os.fdopen(ffd, "rb")

    def close(self) -> None:
        pass


def _resolve(base: tuple, target: bytes, rel: str) -> tuple:
    """Path parts of a link target, relative to the archive root; refuses a
    target outside the archive."""
    if target.startswith(b"/"):
        raise InvalidInput(f"image file {rel!r}: link to an absolute path")
    out = list(base)
    for p in target.split(b"/"):
        if p in (b"", b"."):
            continue
        if p == b"..":
            if not out:
                raise InvalidInput(f"image file {rel!r}: link points outside the archive")
            out.pop()
        else:
            out.append(p)
    return tuple(out)


class TarSource:
    """An image archive (a path, or a seekable binary reader of an uncompressed
    one): the member index is built once (headers only)."""

    def __init__(self, path: str, fileobj=None, label: str | None = None):
        self.label = label or path
        try:
            self.tf = tarfile.open(path if fileobj is None else None, "r:", fileobj=fileobj,
                                   tarinfo=Info)
        except tarfile.TarError as exc:
            raise InvalidInput(f"not a readable tar archive ({exc})", path=self.label) from None
        try:
            set_kind(self.tf, "archive member")
            self.index = self._index()
        except BaseException:
            self.tf.close()
            raise

    def _index(self) -> dict:
        f = self.tf.fileobj
        pos = f.tell()
        size = f.seek(0, os.SEEK_END)
        f.seek(pos)
        index = {}
        try:
            while True:
                m = self.tf.next()
                if m is None:
                    break
                self.tf.members.clear()
                note_member(self.tf, m.name)
                if len(index) >= MEMBERS_MAX:
                    raise InvalidInput(f"more than {MEMBERS_MAX} members: not an image archive",
                                       path=self.label)
                if m.isreg() and m.offset_data + m.size > size:
                    raise safety.refuse(m.name, f"claims {m.size} bytes, past the archive's "
                                        "end", "archive member")
                index[b"/".join(safety.split_path(m.name, m.name))] = m
        except (tarfile.TarError, OSError) as exc:
            if isinstance(exc, InvalidInput):
                raise
            raise InvalidInput(f"damaged image archive after member "
                               f"{safety.show(last_member(self.tf))} ({exc})",
                               path=self.label) from None
        return index

    def _member(self, rel: str):
        """The regular member rel names, following symlinks and hard links
        between members (at most LINK_HOPS)."""
        key = safety.split_path(rel, rel)
        for hop in range(LINK_HOPS):
            m = self.index.get(b"/".join(key))
            if m is None:
                via = f" (a link to {safety.show(b'/'.join(key))})" if hop else ""
                raise NotFound(f"image file {rel!r}{via} is missing from the archive",
                               path=self.label)
            if m.isreg():
                return m
            if m.issym():
                key = _resolve(key[:-1], os.fsencode(m.linkname), rel)
            elif m.islnk():
                key = _resolve((), os.fsencode(m.linkname), rel)
            else:
                raise InvalidInput(f"image file {rel!r} is not a regular file", path=self.label)
        raise InvalidInput(f"image file {rel!r}: more than {LINK_HOPS} links to follow "
                           "(a loop between members?)", path=self.label)

    def exists(self, rel: str) -> bool:
        return b"/".join(safety.split_path(rel, rel)) in self.index

    def open(self, rel: str):
        m = self._member(rel)
        try:
            return self.tf.extractfile(m)
        except (tarfile.TarError, KeyError) as exc:
            raise InvalidInput(f"image file {rel!r}: {exc}", path=self.label) from None

    def close(self) -> None:
        self.tf.close()


def read_json(src, rel: str):
    """(parsed document, raw bytes) of a JSON file of the image."""
    with src.open(rel) as f:
        raw = f.read(JSON_MAX + 1)
    if len(raw) > JSON_MAX:
        raise InvalidInput(f"malformed {rel}: larger than {JSON_MAX} bytes", path=src.label)
    try:
        return json.loads(raw), raw
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"malformed {rel}: {exc}", path=src.label) from None


def field(doc, key: str, typ, where: str):
    """doc[key] checked to be a typ; a clear error otherwise."""
    if not isinstance(doc, dict):
        raise InvalidInput(f"malformed {where}: expected an object")
    v = doc.get(key)
    if not isinstance(v, typ):
        raise InvalidInput(f"malformed {where}: {key!r} missing or not a "
                           f"{getattr(typ, '__name__', typ)}")
    return v
