"""Entry points: detect what ``src`` is and dispatch (see the package docstring)."""
from __future__ import annotations

import os
import tarfile

from ..errors import InvalidInput, NotFound
from . import safety
from .chain import import_layer
from .compress import detect
from .image_in import import_chain, read_docker, read_oci
from .sources import DirSource, TarSource

SNIFF_MEMBERS = 4096


def _split_tag(src: str) -> tuple[str, str | None]:
    if os.path.exists(src) or ":" not in src:
        return src, None
    path, tag = src.rsplit(":", 1)
    if not os.path.exists(path):
        raise NotFound("import source does not exist", path=src)
    return path, tag


def _sniff_tar(path: str) -> str:
    """'docker', 'oci' or 'layer': looks for the top-level files of an image
    archive among the first SNIFF_MEMBERS headers (data is skipped, not read)."""
    names = set()
    try:
        with tarfile.open(path, "r:") as tf:
            for _ in range(SNIFF_MEMBERS):
                m = tf.next()
                if m is None:
                    break
                tf.members.clear()
                names.add(m.name.lstrip("./") if m.name.startswith("./") else m.name)
    except tarfile.TarError:
        return "layer"                  # the strict layer reader reports the damage
    if "manifest.json" in names:
        return "docker"
    if "index.json" in names and "oci-layout" in names:
        return "oci"
    return "layer"


def kind_of(src) -> tuple[str, str | None, str | None]:
    """(kind, path, tag) with kind in oci-dir, oci-tar, docker, layer."""
    if hasattr(src, "read"):
        return "layer", None, None
    path, tag = _split_tag(os.fspath(src))
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "index.json")):
            raise InvalidInput("directory is not an OCI image layout (no index.json)", path=path)
        return "oci-dir", path, tag
    if not os.path.isfile(path):
        raise NotFound("import source does not exist", path=path)
    with open(path, "rb") as f:
        head = f.read(4)
    if detect(head) != "none":
        return "layer", path, tag
    k = _sniff_tar(path)
    return {"docker": "docker", "oci": "oci-tar", "layer": "layer"}[k], path, tag


def import_image(store, src, name: str, parent: str | None = None, progress=None,
                 allow_devices: bool = True, max_file_size: int = safety.DEFAULT_MAX_FILE_SIZE):
    """Import an image (chain of snapshots) or a single layer; returns ``name``'s record."""
    limits = safety.Limits(allow_devices, max_file_size)
    kind, path, tag = kind_of(src)
    if kind == "layer":
        if tag is not None:
            raise InvalidInput("a single layer has no tags", path=path)
        if store.exists(name):
            from ..errors import AlreadyExists
            raise AlreadyExists(f"a tree named {name!r} already exists")
        from .. import catalog
        catalog.check_name(name)
        if path is None:
            return import_layer(store, src, name, parent, limits=limits, progress=progress)
        with open(path, "rb") as f:
            return import_layer(store, f, name, parent, limits=limits, progress=progress,
                                what=f"layer {os.path.basename(path)}")
    if parent is not None:
        raise InvalidInput("parent applies to single layer imports; an image brings its own "
                           "base layers")
    from .. import catalog
    catalog.check_name(name)
    source = DirSource(path) if kind == "oci-dir" else TarSource(path)
    try:
        img = read_docker(source, tag) if kind == "docker" else read_oci(source, tag)
        return import_chain(store, img, name, progress, limits)
    finally:
        source.close()


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
