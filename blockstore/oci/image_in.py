"""Image import: a docker-save tarball or an OCI image layout (directory or tar)
as a chain of snapshots, one per layer, each named by its OCI ChainID
(``sha256:<hex>``).  A layer whose ChainID snapshot exists is reused, not
read again (a second image sharing base layers costs nothing for them); so
is a snapshot labelled with that ChainID (a layer made in the store and
exported: image_out labels it).
The top snapshot is then snapshotted again (O(1)) under the user's name.

Verified: every blob's sha256 against its descriptor digest (OCI) or file
name (docker), its length against the descriptor's ``size`` when given (a
layer blob is read no further than that), every uncompressed layer against
the config's ``diff_ids``, manifest and config documents against their
digests.  On any error every snapshot this import created is removed
again: the store is unchanged.

Choosing an image: ``PATH:TAG`` picks the manifest whose
``org.opencontainers.image.ref.name`` is TAG (OCI), or whose ``RepoTags``
contain TAG (docker; ``name:tag`` or just ``tag``); without a tag the
archive must hold exactly one image.
"""
from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from typing import Callable

from ..errors import AlreadyExists, InvalidInput, NotFound
from . import safety
from .chain import LABEL_CHAIN, LABEL_DIGEST, LABEL_DIFF, chain_id, import_layer
from .sources import blob_path, field, read_json

REF_NAME = "org.opencontainers.image.ref.name"
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
LABEL_CONFIG = "image.config"          # the image config document as imported (carried)
LABEL_CONFIG_OLD = "oci.config"        # stores made before: the "config" section only
LABEL_MANIFEST = "oci.manifest"        # the manifest as imported (this image only)
CONFIG_LABEL_MAX = 64 * 1024


@dataclass
class LayerRef:
    diff_id: str
    digest: str | None
    open: Callable
    what: str
    size: int | None = None


class Sized:
    """A reader that refuses to give more than ``size`` bytes, or to end before
    (a blob must be exactly as long as its descriptor says)."""

    def __init__(self, inner, size: int, what: str):
        self.inner, self.left, self.what, self.size = inner, size, what, size

    def read(self, n: int = -1) -> bytes:
        want = self.left + 1 if n is None or n < 0 else min(n, self.left + 1)
        b = self.inner.read(want)
        self.left -= len(b)
        if self.left < 0:
            raise InvalidInput(f"{self.what}: longer than its descriptor's size {self.size}")
        if not b and self.left > 0 and want > 0:
            raise InvalidInput(f"{self.what}: {self.size - self.left} bytes, shorter than its "
                               f"descriptor's size {self.size}")
        return b

    def readable(self) -> bool:
        return True


def _size(desc, where: str) -> int | None:
    v = desc.get("size") if isinstance(desc, dict) else None
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise InvalidInput(f"malformed {where}: size {v!r} is not a byte count")
    return v


@dataclass
class Image:
    layers: list
    config: dict
    raw_config: bytes = b""
    raw_manifest: bytes = b""


def _verify(raw: bytes, digest: str, what: str) -> None:
    got = "sha256:" + hashlib.sha256(raw).hexdigest()
    if got != digest:
        raise InvalidInput(f"{what}: digest mismatch: expected {digest}, got {got}")


def arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def _blob_json(src, desc, where: str, with_raw: bool = False):
    digest = field(desc, "digest", str, where)
    rel = blob_path(digest, where)
    doc, raw = read_json(src, rel)
    size = _size(desc, where)
    if size is not None and len(raw) != size:
        raise InvalidInput(f"{where} {digest}: {len(raw)} bytes, but its descriptor says {size}")
    _verify(raw, digest, f"{where} {digest}")
    return (doc, raw) if with_raw else doc


def _diff_ids(config, where: str) -> list[str]:
    rootfs = field(config, "rootfs", dict, where)
    ids = field(rootfs, "diff_ids", list, where + " rootfs")
    for d in ids:
        blob_path(d, where + " diff_ids")
    return ids


def read_oci(src, tag: str | None) -> Image:
    index, _ = read_json(src, "index.json")
    mans = field(index, "manifests", list, "index.json")
    if tag is not None:
        hits = [m for m in mans if isinstance(m, dict)
                and (m.get("annotations") or {}).get(REF_NAME) == tag]
        if not hits:
            names = sorted({(m.get("annotations") or {}).get(REF_NAME, "?")
                            for m in mans if isinstance(m, dict)})
            raise NotFound(f"no image tagged {tag!r} in the layout (has: {', '.join(names)})",
                           path=src.label)
        mans = hits
    if len(mans) != 1:
        raise InvalidInput(f"the layout holds {len(mans)} images: choose one with PATH:TAG",
                           path=src.label)
    desc = mans[0]
    doc, raw_man = _blob_json(src, desc, "index.json manifest", with_raw=True)
    for _ in range(4):                          # nested indexes: choose this platform
        if doc.get("mediaType") not in INDEX_TYPES and "manifests" not in doc:
            break
        subs = field(doc, "manifests", list, "image index")
        pick = [m for m in subs if isinstance(m, dict) and (m.get("platform") or {}).get(
            "architecture") == arch() and (m.get("platform") or {}).get("os", "linux") == "linux"]
        if len(subs) == 1:
            pick = subs
        if not pick:
            raise NotFound(f"no image for linux/{arch()} in the image index", path=src.label)
        doc, raw_man = _blob_json(src, pick[0], "image index manifest", with_raw=True)
    config, raw_cfg = _blob_json(src, field(doc, "config", dict, "manifest"), "manifest config",
                                 with_raw=True)
    ids = _diff_ids(config, "image config")
    descs = field(doc, "layers", list, "manifest")
    if len(descs) != len(ids):
        raise InvalidInput(f"malformed manifest: {len(descs)} layers but {len(ids)} diff_ids")
    layers = []
    for i, (d, diff_id) in enumerate(zip(descs, ids)):
        digest = field(d, "digest", str, f"manifest layer {i}")
        rel = blob_path(digest, f"manifest layer {i}")
        layers.append(LayerRef(diff_id, digest, lambda rel=rel: src.open(rel),
                               f"layer {i} ({digest[:19]})", _size(d, f"manifest layer {i}")))
    return Image(layers, config, raw_cfg, raw_man)


def read_docker(src, tag: str | None) -> Image:
    man, _ = read_json(src, "manifest.json")
    if not isinstance(man, list) or not man:
        raise InvalidInput("malformed manifest.json: expected a non-empty list", path=src.label)
    if tag is not None:
        hits = [e for e in man if isinstance(e, dict) and any(
            t == tag or t.rsplit(":", 1)[-1] == tag for t in (e.get("RepoTags") or [])
            if isinstance(t, str))]
        if not hits:
            raise NotFound(f"no image tagged {tag!r} in manifest.json", path=src.label)
        man = hits[:1]
    if len(man) != 1:
        raise InvalidInput(f"the archive holds {len(man)} images: choose one with PATH:TAG",
                           path=src.label)
    ent = man[0]
    cfg_rel = field(ent, "Config", str, "manifest.json")
    config, raw = read_json(src, cfg_rel)
    base = cfg_rel.rsplit("/", 1)[-1].removesuffix(".json")
    if len(base) == 64 and all(c in "0123456789abcdef" for c in base):
        _verify(raw, "sha256:" + base, f"config {cfg_rel}")
    ids = _diff_ids(config, cfg_rel)
    rels = field(ent, "Layers", list, "manifest.json")
    if len(rels) != len(ids):
        raise InvalidInput(f"malformed manifest.json: {len(rels)} layers but {len(ids)} diff_ids")
    layers = []
    for i, (rel, diff_id) in enumerate(zip(rels, ids)):
        if not isinstance(rel, str):
            raise InvalidInput(f"malformed manifest.json: layer {i} is not a path")
        safety.split_path(rel, rel)
        digest = None
        if rel.startswith("blobs/sha256/"):
            digest = "sha256:" + rel.rsplit("/", 1)[-1]
            blob_path(digest, f"manifest.json layer {i}")
        layers.append(LayerRef(diff_id, digest, lambda rel=rel: src.open(rel),
                               f"layer {i} ({rel})"))
    return Image(layers, config, raw)


def image_labels(img: Image) -> dict:
    """The image's config (carried into clones and commits) and manifest, as
    imported (exact bytes: exported again unchanged while the layers are).
    A config above CONFIG_LABEL_MAX keeps only its run-time settings."""
    labels = {}
    try:
        raw_cfg = img.raw_config.decode()
    except UnicodeDecodeError:
        raw_cfg = ""
    if not raw_cfg or len(raw_cfg) > CONFIG_LABEL_MAX:
        short = {k: img.config[k] for k in ("architecture", "os", "variant", "config")
                 if k in img.config}
        raw_cfg = json.dumps(short, sort_keys=True, separators=(",", ":"))
    labels[LABEL_CONFIG] = raw_cfg
    if img.raw_manifest and len(img.raw_manifest) <= CONFIG_LABEL_MAX:
        try:
            labels[LABEL_MANIFEST] = img.raw_manifest.decode()
        except UnicodeDecodeError:
            pass
    return labels


def import_chain(store, img: Image, name: str, progress=None, limits=None):
    """Import (or reuse) every layer's ChainID snapshot; the top one is snapshotted
    as ``name``.  Rolls back the snapshots it created on error."""
    if store.exists(name):
        raise AlreadyExists(f"a tree named {name!r} already exists")
    created = []
    prev_chain, prev_name = None, None
    try:
        for ref in img.layers:
            cid = chain_id(prev_chain, ref.diff_id)
            if store.exists(cid):
                rec = store.info(cid)
                if rec.kind != "snapshot" or rec.labels.get(LABEL_CHAIN) != cid:
                    raise AlreadyExists(f"tree {cid!r} exists but is not that image layer")
            elif (same := store.list(kind="snapshot", label={LABEL_CHAIN: cid})):
                prev_chain, prev_name = cid, same[0].name   # a layer exported from the store
                continue
            else:
                labels = {LABEL_CHAIN: cid, LABEL_DIFF: ref.diff_id}
                if ref.digest:
                    labels[LABEL_DIGEST] = ref.digest
                with ref.open() as f:
                    raw = f if ref.size is None else Sized(f, ref.size, ref.what)
                    import_layer(store, raw, cid, prev_name, limits=limits, digest=ref.digest,
                                 diff_id=ref.diff_id, labels=labels, progress=progress,
                                 what=ref.what, reopen=ref.open)
                created.append(cid)
            prev_chain, prev_name = cid, cid
        labels = image_labels(img)
        if prev_name is None:
            with store.staging(name) as st:
                return st.commit(labels)
        return store.trees.snapshot(prev_name, name, labels=labels)
    except BaseException:
        for cid in reversed(created):
            try:
                store.remove(cid, force=True)
            except Exception:
                pass
        if created:
            try:
                store.gc(trim=False)        # their space back now, not at the next gc
            except Exception:
                pass
        raise
