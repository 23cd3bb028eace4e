"""What a tar archive holds: an image (``docker save``, OCI layout) or one layer.

Decided from member names only (headers; data is skipped), after
decompression (gzip, zstd), by these rules:

* Image-like names: any top-level file (tools name their files as they
  like: ``manifest.json``, ``repositories``, ``index.json``,
  ``oci-layout``, ``<hex>.json``, ``<hex>.tar``, ``sha256:<hex>``, ...),
  and anything in or below a top-level ``blobs`` or ``<64 hex>``
  directory.  Layer-like: any other directory or path (``etc/``,
  ``usr/bin/env``).  ``.`` and ``./`` prefixes are ignored.
* A first member that is layer-like makes the archive a layer at once (no
  image archive holds such a name), so a layer costs one header.
* Image markers: ``manifest.json`` (docker) or ``index.json`` with
  ``oci-layout`` (OCI layout), at the top level.  With markers and only
  image-like names: an image.  Without markers: a layer.
* Markers next to layer-like names could be either (a root file system
  holding a ``/manifest.json``): refused with a hint (``format="layer"``
  or ``"image"``), never imported silently as one layer; a caller that
  gave a parent means a layer.

A compressed archive not decided at its first member is decompressed once
to read its names (nothing is kept).  A compressed image is then
decompressed again into an unnamed temporary file in the store directory
(``O_TMPFILE``; gone when closed, even after a crash; runs of zeros are
holes), which image import reads at random.  Cost: for an image, two
decompressions and its uncompressed size, temporarily, on the store's disk;
for a layer decided late, one more decompression and no disk.
"""
from __future__ import annotations

import os
import re
import tarfile
import tempfile

from ..errors import InvalidInput
from .compress import detect, open_stream
from .safety import show
from .tarread import Info, note_member

_IMAGE_DIR = re.compile(r"^(blobs|[0-9a-f]{64})$")


class Ambiguous(Exception):
    pass


class Classifier:
    """Feed members in archive order; ``verdict()`` at the end."""

    def __init__(self):
        self.first = True
        self.other: str | None = None
        self.markers: set[str] = set()

    def add(self, name: str, isdir: bool) -> str | None:
        """'layer' when decided by this member, else None (keep feeding)."""
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if not parts:
            return None
        top = parts[0]
        image_like = _IMAGE_DIR.match(top) is not None or (len(parts) == 1 and not isdir)
        if not image_like:
            if self.first:
                return "layer"
            self.other = self.other or (name.rstrip("/") + "/" if isdir else name)
        elif len(parts) == 1:
            self.markers.add(top)
        self.first = False
        return None

    def image_kind(self) -> str | None:
        if "manifest.json" in self.markers:
            return "docker"
        if {"index.json", "oci-layout"} <= self.markers:
            return "oci"
        return None

    def verdict(self) -> str:
        """'docker', 'oci' or 'layer'; raises Ambiguous with the reason."""
        kind = self.image_kind()
        if kind is None:
            return "layer"
        if self.other is None:
            return kind
        marker = "manifest.json" if kind == "docker" else "index.json and oci-layout"
        raise Ambiguous(f"it holds {marker} like an image archive, and also "
                        f"{show(self.other)} like a layer")


def _names_seekable(f):
    """Member names of an uncompressed archive (random access: data is seeked over).
    A header the limits refuse is refused here, as the layer reader would."""
    return _names(f, "r:")


def _names_stream(f):
    return _names(f, "r|")


def _names(f, mode: str):
    with tarfile.open(fileobj=f, mode=mode, tarinfo=Info) as tf:
        while True:
            m = tf.next()
            if m is None:
                return
            tf.members.clear()
            note_member(tf, m.name)
            yield m.name, m.isdir()


def _classify(names, c: Classifier) -> str | None:
    """Feed names; 'layer' when decided early, None when all were read.
    A damaged archive ends the names: the strict layer reader, or the image
    reader, reports the damage with the entry named."""
    try:
        for n, isdir in names:
            if c.add(n, isdir) == "layer":
                return "layer"
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, InvalidInput):
            raise
        if c.first:
            return "layer"
    return None


def temp_file(directory: str):
    """An unnamed read-write file in directory (O_TMPFILE; else a name made
    with O_EXCL|O_NOFOLLOW and unlinked at once)."""
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except (OSError, AttributeError):
        fd, name = tempfile.mkstemp(dir=directory, prefix=".import-")
        os.unlink(name)
    return os.fdopen(fd, "w+b")


def decompress_to(raw, out) -> None:
    """The decompressed bytes of raw into file out; runs of zeros become holes
    (a compressed run of zeros costs no disk)."""
    stream, _ = open_stream(raw)
    end = 0
    while True:
        b = stream.read(1 << 20)
        if not b:
            break
        if b.count(0) == len(b):
            out.seek(len(b), os.SEEK_CUR)
        else:
            out.write(b)
        end += len(b)
    out.truncate(end)
    out.flush()
    out.seek(0)


def _decide(c: Classifier, fmt: str, what: str, ambiguous_is_layer: bool) -> str:
    if fmt == "image":
        kind = c.image_kind()
        if kind is None:
            raise InvalidInput(f"{what} is not an image archive (no manifest.json, no "
                               "index.json with oci-layout)")
        return kind
    try:
        return c.verdict()
    except Ambiguous as exc:
        if ambiguous_is_layer:
            return "layer"
        raise InvalidInput(f"cannot tell whether {what} is an image archive or a layer: "
                           f"{exc}; say which with --format image or --format layer") from None


def examine(path: str, fmt: str, tmp_dir: str, ambiguous_is_layer: bool = False):
    """(kind, reader or None) of the archive at path.  kind: 'docker', 'oci'
    or 'layer'; the reader (positioned at 0) is the decompressed archive for
    a compressed image, else None (read ``path``).
    fmt: 'auto', 'image' or 'layer' (the caller's word; 'layer' is not sniffed);
    ambiguous_is_layer: the caller has reason to expect a layer (a parent)."""
    what = os.path.basename(path)
    if fmt == "layer":
        return "layer", None
    with open(path, "rb") as f:
        compressed = detect(f.read(4)) != "none"
        f.seek(0)
        c = Classifier()
        if not compressed:
            early = _classify(_names_seekable(f), c)
            if early and fmt == "auto":
                return "layer", None
            return _decide(c, fmt, what, ambiguous_is_layer), None
        early = _classify(_names_stream(open_stream(f)[0]), c)
        if early and fmt == "auto":
            return "layer", None
        kind = _decide(c, fmt, what, ambiguous_is_layer)
        if kind == "layer":
            return kind, None                     # applied from path (decompressed again)
        f.seek(0)
        tmp = temp_file(tmp_dir)
        try:
            decompress_to(f, tmp)
        except BaseException:
            tmp.close()
            raise
        return kind, tmp
