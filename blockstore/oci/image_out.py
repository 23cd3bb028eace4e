"""Export a snapshot's chain as an OCI image layout (directory) or a
``docker save`` tarball, one layer per snapshot of its lineage.

The lineage (``store.lineage(name)``, base first) gives the layers; a
snapshot whose files equal its parent's (the user-named top of an import,
a commit of an unchanged clone) adds no layer.  Each layer is either

* the blob it was imported from (``blobs``), byte for byte: same digest,
  same diff ID, same media type -- when the snapshot is that image layer
  (label ``oci.chain_id``) on exactly the layers exported below it (the
  chain ID of the layers written so far plus its diff ID is its own); or
* written from the tree (``layer_out``: the base as a full tar, later
  snapshots as the diff from their parent, cost proportional to each
  difference) and compressed: ``compression`` "gzip" (default, level 6,
  no name or time in the header: the same tree gives the same blob),
  "zstd" (level 3) or "none".  A snapshot exported so gets the labels
  ``oci.chain_id`` and ``oci.diff_id`` of that layer (its files are what the
  chain ID names, whatever its parents become), so importing the export
  again reuses it instead of making a copy.

The config is the image's as imported (label ``image.config``, carried into
clones and commits): unchanged when the layers are the imported ones,
otherwise with ``rootfs.diff_ids`` of the layers written and one
``history`` entry added per layer made in the store (``created_by``
"blockstore commit NAME").  The manifest is the imported one (label
``oci.manifest``) when config and layers are unchanged, so an imported
image round-trips digest-identical, as ``skopeo copy`` does.

Layers are written to temporary files next to the output and renamed (or,
for the docker tarball, copied into it): never held in memory.
"""
from __future__ import annotations

import datetime
import gzip
import hashlib
import json
import os
import shutil
import tarfile
import tempfile

from ..api import layers
from ..api.hostout import remove_contents, replace_file
from ..errors import InvalidInput
from . import blobs
from .chain import LABEL_CHAIN, LABEL_DIFF, chain_id
from .image_in import LABEL_CONFIG, LABEL_CONFIG_OLD, LABEL_MANIFEST, REF_NAME, arch
from .layer_out import write_diff, write_full

LAYER_TYPES = {"none": "application/vnd.oci.image.layer.v1.tar",
               "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
               "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
COMPRESSIONS = tuple(LAYER_TYPES)
GZIP_LEVEL = 6
ZSTD_LEVEL = 3


def _dump(doc) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _chain(store, name: str) -> list[str]:
    """The snapshots of name's lineage that add a layer: not one whose files equal
    its parent's (the named top of an import, a commit of an unchanged clone)."""
    return layers.adding_layers(store, list(reversed(store.lineage(name))))


class _HashWriter:
    def __init__(self, out):
        self.out, self.h, self.n = out, hashlib.sha256(), 0

    def write(self, b) -> int:
        self.h.update(b)
        self.n += len(b)
        return self.out.write(b)

    def flush(self) -> None:
        pass

    def digest(self) -> str:
        return "sha256:" + self.h.hexdigest()


def _compressed(f, compression: str):
    """(writer the tar goes to, finish()) writing ``compression`` of it to f."""
    if compression == "gzip":
        gz = gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=GZIP_LEVEL, mtime=0)
        return gz, gz.close
    if compression == "zstd":
        import zstandard
        zw = zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(f, closefd=False)
        return zw, zw.close
    return f, lambda: None


def _iso(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")


def _kept_blob(store, rec, prev_chain):
    """The imported blob of layer snapshot rec, if it applies on the layers so far."""
    cid, diff_id = rec.labels.get(LABEL_CHAIN), rec.labels.get(LABEL_DIFF)
    if not cid or not diff_id or chain_id(prev_chain, diff_id) != cid:
        return None
    with layers.reading(store, rec.name) as tree:
        return blobs.meta_of(tree)


def _write_blob(store, name: str, meta: dict, f) -> None:
    with layers.reading(store, name) as tree:
        blobs.write_out(tree, meta, f)


def _base_config(labels: dict) -> tuple[dict, str | None]:
    """(config document, its exact text or None) the image was imported with."""
    raw = labels.get(LABEL_CONFIG)
    if raw is not None:
        try:
            doc = json.loads(raw)
            if isinstance(doc, dict):
                return doc, raw
        except ValueError:
            pass
    try:
        section = json.loads(labels.get(LABEL_CONFIG_OLD, "{}"))
    except ValueError:
        section = {}
    return {"config": section if isinstance(section, dict) else {}}, None


def _config(labels: dict, diff_ids: list, made: list) -> bytes:
    """The config blob: as imported while the layers are, else updated (see module doc).
    ``made``: (index, record) of the layers written from the tree."""
    base, raw = _base_config(labels)
    rootfs = base.get("rootfs") if isinstance(base.get("rootfs"), dict) else {}
    base_ids = rootfs.get("diff_ids") if isinstance(rootfs.get("diff_ids"), list) else []
    if raw is not None and base_ids == diff_ids:
        return raw.encode()
    cfg = dict(base)
    cfg.setdefault("architecture", arch())
    cfg.setdefault("os", "linux")
    cfg.setdefault("config", {})
    cfg["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    history = base.get("history") if isinstance(base.get("history"), list) else []
    history = [h for h in history if isinstance(h, dict)]
    layered = [h for h in history if not h.get("empty_layer")]
    k = len(base_ids)
    if not (diff_ids[:k] == base_ids and len(layered) == k):
        history, k = [], 0                  # the imported history no longer describes them
    made_at = dict(made)
    for i in range(k, len(diff_ids)):
        rec = made_at.get(i)
        if rec is None:
            history.append({"created_by": "blockstore layer"})
            continue
        history.append({"created": _iso(rec.created), "created_by": f"blockstore commit {rec.name}"})
    cfg["history"] = history
    if made:
        cfg["created"] = _iso(made[-1][1].created)
    return _dump(cfg)


def _write_layout(store, name: str, root: str, ref: str, compression: str) -> dict:
    if compression not in COMPRESSIONS:
        raise InvalidInput(f"unknown layer compression {compression!r} "
                           f"({', '.join(COMPRESSIONS)})")
    blobs_dir = os.path.join(root, "blobs", "sha256")
    os.makedirs(blobs_dir, exist_ok=True)

    def put(data: bytes, media: str) -> dict:
        h = hashlib.sha256(data).hexdigest()
        with replace_file(os.path.join(blobs_dir, h)) as f:
            f.write(data)
        return {"mediaType": media, "digest": "sha256:" + h, "size": len(data)}
    layers, diff_ids, made = [], [], []
    prev, prev_chain = None, None
    for t in _chain(store, name):
        rec = store.info(t)
        meta = _kept_blob(store, rec, prev_chain)
        fd, tmp = tempfile.mkstemp(dir=blobs_dir, prefix=".layer-")
        try:
            with os.fdopen(fd, "wb") as f:
                hw = _HashWriter(f)
                if meta is not None:
                    _write_blob(store, t, meta, hw)
                    diff_id, media = rec.labels[LABEL_DIFF], LAYER_TYPES[meta["compression"]]
                else:
                    w, finish = _compressed(hw, compression)
                    diff_id = (write_full(store, t, w) if prev is None
                               else write_diff(store, prev, t, w))
                    finish()
                    media = LAYER_TYPES[compression]
                    made.append((len(diff_ids), rec))
            digest = hw.digest()
            os.replace(tmp, os.path.join(blobs_dir, digest[7:]))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        layers.append({"mediaType": media, "digest": digest, "size": hw.n})
        diff_ids.append(diff_id)
        prev, prev_chain = t, chain_id(prev_chain, diff_id)
        if meta is None and rec.kind == "snapshot" and LABEL_CHAIN not in rec.labels:
            # the layer's identity, so that importing this export reuses t (image_in)
            store.label(t, **{LABEL_CHAIN: prev_chain, LABEL_DIFF: diff_id})
    labels = store.info(name).labels
    cfg_bytes = _config(labels, diff_ids, made)
    cdesc = put(cfg_bytes, CONFIG_TYPE)
    manifest_raw = _kept_manifest(labels, cdesc, layers)
    if manifest_raw is None:
        manifest_raw = _dump({"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": cdesc,
                              "layers": layers})
        mtype = MANIFEST_TYPE
    else:
        mtype = json.loads(manifest_raw).get("mediaType") or MANIFEST_TYPE
    mdesc = put(manifest_raw, mtype)
    mdesc["annotations"] = {REF_NAME: ref}
    index = {"schemaVersion": 2, "manifests": [mdesc]}
    with replace_file(os.path.join(root, "index.json")) as f:
        f.write(_dump(index))
    with replace_file(os.path.join(root, "oci-layout")) as f:
        f.write(_dump({"imageLayoutVersion": "1.0.0"}))
    return {"manifest": mdesc["digest"], "config": cdesc["digest"],
            "layers": [d["digest"] for d in layers], "diff_ids": diff_ids}


def _remove_written(out: str, made: bool) -> None:
    """A failed layout export removes what it wrote (``out`` too if it made it)."""
    try:
        fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        remove_contents(fd)
        if made:
            os.rmdir(out)
    except OSError:
        pass                               # the original error is the one to report
    finally:
        os.close(fd)


def _kept_manifest(labels: dict, cdesc: dict, layers: list) -> bytes | None:
    """The imported manifest, if it describes exactly this config and these layers."""
    raw = labels.get(LABEL_MANIFEST)
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
        same = (doc["config"]["digest"] == cdesc["digest"]
                and [d["digest"] for d in doc["layers"]] == [d["digest"] for d in layers])
    except (ValueError, KeyError, TypeError):
        return None
    return raw.encode() if same else None


def export_image(store, name: str, out, format: str = "oci", tag: str | None = None,
                 compression: str = "gzip") -> dict:
    """Write the image; returns {"manifest", "config", "layers": [blob digests],
    "diff_ids": [...]}.  ``compression`` applies to layers written from the
    tree (imported layers keep their blobs)."""
    out = os.fspath(out)
    if format == "oci":
        if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
            raise InvalidInput("OCI layout destination must not exist or be empty", path=out)
        made = not os.path.exists(out)
        try:
            res = _write_layout(store, name, out, tag or "latest", compression)
        except BaseException:
            _remove_written(out, made)
            raise
        return res
    if format != "docker":
        raise InvalidInput(f"unknown image format {format!r} (oci or docker)")
    repo_tag = tag or "blockstore/image:latest"
    if ":" not in repo_tag.rsplit("/", 1)[-1]:
        repo_tag += ":latest"
    tmp = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(out)), prefix=".oci-export-")
    try:
        res = _write_layout(store, name, tmp, repo_tag, compression)
        cfg_hex = res["config"][7:]
        manifest = [{"Config": f"{cfg_hex}.json", "RepoTags": [repo_tag],
                     "Layers": [f"{d[7:]}.tar" for d in res["layers"]]}]
        blobs_dir = os.path.join(tmp, "blobs", "sha256")
        with replace_file(out) as fo, \
                tarfile.open(fileobj=fo, mode="w", format=tarfile.PAX_FORMAT) as tf:
            def add(arc: str, path: str) -> None:
                ti = tf.gettarinfo(path, arc)
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = ""
                ti.mtime = 0
                ti.mode = 0o644
                with open(path, "rb") as f:
                    tf.addfile(ti, f)
            for d in dict.fromkeys(res["layers"]):
                add(f"{d[7:]}.tar", os.path.join(blobs_dir, d[7:]))
            add(f"{cfg_hex}.json", os.path.join(blobs_dir, cfg_hex))
            mpath = os.path.join(tmp, "manifest.json")
            with open(mpath, "wb") as f:
                f.write(_dump(manifest))
            add("manifest.json", mpath)
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
