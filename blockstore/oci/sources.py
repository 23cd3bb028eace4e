"""Read-only access to the files of an image: a directory or a tar of one.

Names are validated (relative, no ``..``) before use, so a manifest cannot
point outside the image.  Blobs are opened as streams (a tar member is read
in place from the archive file, never loaded whole); JSON documents are
read whole but refused above ``JSON_MAX`` bytes.
"""
from __future__ import annotations

import json
import os
import re
import tarfile

from ..errors import InvalidInput, NotFound
from . import safety

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
        p = self._path(rel)
        try:
            return open(p, "rb")
        except FileNotFoundError:
            raise NotFound(f"image file {rel!r} is missing", path=p) from None

    def close(self) -> None:
        pass


class TarSource:
    """An image archive: the member index is built once (headers only)."""

    def __init__(self, path: str):
        self.label = path
        try:
            self.tf = tarfile.open(path, "r:")
        except tarfile.TarError as exc:
            raise InvalidInput(f"not a readable tar archive ({exc})", path=path) from None
        self.index = {}
        for m in self.tf.getmembers():
            self.index[b"/".join(safety.split_path(m.name, m.name))] = m

    def _member(self, rel: str):
        m = self.index.get(b"/".join(safety.split_path(rel, rel)))
        if m is None:
            raise NotFound(f"image file {rel!r} is missing from the archive", path=self.label)
        return m

    def exists(self, rel: str) -> bool:
        return b"/".join(safety.split_path(rel, rel)) in self.index

    def open(self, rel: str):
        m = self._member(rel)
        try:
            f = self.tf.extractfile(m)
        except (tarfile.TarError, KeyError) as exc:
            raise InvalidInput(f"image file {rel!r}: {exc}", path=self.label) from None
        if f is None:
            raise InvalidInput(f"image file {rel!r} is not a regular file", path=self.label)
        return f

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
