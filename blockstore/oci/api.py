"""Entry points: detect what ``src`` is and dispatch (see the package docstring)."""
from __future__ import annotations

import os

from ..api import layers
from ..errors import InvalidInput, NotFound
from . import safety
from .chain import import_layer
from .image_in import import_chain, read_docker, read_oci
from .sniff import examine
from .sources import DirSource, TarSource

FORMATS = ("auto", "image", "layer")


def _split_tag(src: str) -> tuple[str, str | None]:
    if os.path.exists(src) or ":" not in src:
        return src, None
    path, tag = src.rsplit(":", 1)
    if not os.path.exists(path):
        raise NotFound("import source does not exist", path=src)
    return path, tag


def import_image(store, src, name: str, parent: str | None = None, progress=None,
                 allow_devices: bool = True, max_file_size: int = safety.DEFAULT_MAX_FILE_SIZE,
                 format: str = "auto"):
    """Import an image (chain of snapshots) or a single layer; returns ``name``'s record.

    ``format``: "auto" tells an image archive from a layer by its member
    names (``sniff``; an archive that could be either is refused), "image"
    or "layer" say which it is.  With ``parent`` given, an archive that
    could be either is a layer."""
    if format not in FORMATS:
        raise InvalidInput(f"unknown import format {format!r} (one of {', '.join(FORMATS)})")
    limits = safety.Limits(allow_devices, max_file_size)
    if hasattr(src, "read"):
        if format == "image":
            raise InvalidInput("an image is read from a path (a directory or an archive), "
                               "not from a stream")
        _new_name(store, name)
        return import_layer(store, src, name, parent, limits=limits, progress=progress)
    path, tag = _split_tag(os.fspath(src))
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "index.json")):
            raise InvalidInput("directory is not an OCI image layout (no index.json)", path=path)
        if format == "layer":
            raise InvalidInput("a directory is not a layer tar", path=path)
        kind, decompressed = "oci", None
    elif not os.path.isfile(path):
        raise NotFound("import source does not exist", path=path)
    else:
        kind, decompressed = examine(path, format, store.path,
                                     ambiguous_is_layer=parent is not None)
    try:
        if kind == "layer":
            if tag is not None:
                raise InvalidInput("a single layer has no tags", path=path)
            _new_name(store, name)
            what = f"layer {os.path.basename(path)}"
            if decompressed is not None:
                return import_layer(store, decompressed, name, parent, limits=limits,
                                    progress=progress, what=what)
            with open(path, "rb") as f:
                return import_layer(store, f, name, parent, limits=limits, progress=progress,
                                    what=what)
        if parent is not None:
            raise InvalidInput("parent applies to single layer imports; an image brings its own "
                               "base layers")
        layers.check_name(name)
        if os.path.isdir(path):
            source = DirSource(path)
        else:
            source = TarSource(path, fileobj=decompressed, label=path)
        try:
            try:
                img = read_docker(source, tag) if kind == "docker" else read_oci(source, tag)
            except InvalidInput as exc:
                if format != "auto" or tag is not None or os.path.isdir(path):
                    raise
                raise InvalidInput(f"{exc.message} (read as an image archive; if "
                                   f"{os.path.basename(path)} is a layer tar, import it "
                                   "with --format layer)", path=exc.filename) from None
            return import_chain(store, img, name, progress, limits)
        finally:
            source.close()
    finally:
        if decompressed is not None:
            decompressed.close()


def _new_name(store, name: str) -> None:
    if store.exists(name):
        from ..errors import AlreadyExists
        raise AlreadyExists(f"a tree named {name!r} already exists")
    layers.check_name(name)


def export_tar(store, name: str, out, parent: str | None = None) -> str:
    """Write ``name`` as a full tar (or the layer from ``parent``); returns the
    sha256 digest of the tar written."""
    from .layer_out import write_diff, write_full
    if parent is None:
        return write_full(store, name, out)
    return write_diff(store, parent, name, out)


def export_image(store, name: str, out, format: str = "oci", tag: str | None = None,
                 compression: str = "gzip") -> dict:
    from .image_out import export_image as _export
    return _export(store, name, out, format=format, tag=tag, compression=compression)
