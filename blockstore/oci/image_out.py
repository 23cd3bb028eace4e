"""Export a snapshot's chain as an OCI image layout (directory) or a
``docker save`` tarball, one layer per snapshot of its lineage.

The lineage (``store.lineage(name)``, base first) gives the layers: the
base as a full tar, every later snapshot as the diff layer from its parent
(cost proportional to each difference); a snapshot whose root equals its
parent's (the user-named top of an import) adds no layer.  Layers are
uncompressed tars (media type ``application/vnd.oci.image.layer.v1.tar``),
so each layer's digest is its diff_id.  The image config carries the
``config`` section recorded at import (label ``oci.config``), if any.

Layers are written to temporary files next to the output and renamed (or,
for the docker tarball, copied into it): never held in memory.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile

from ..api.hostout import remove_contents, replace_file
from ..errors import InvalidInput
from .image_in import LABEL_CONFIG, REF_NAME, _arch
from .layer_out import write_diff, write_full

LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def _dump(doc) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _chain(store, name: str) -> list[str]:
    trees = list(reversed(store.lineage(name)))
    out, prev_root = [], None
    for t in trees:
        root = store.info(t).root
        if root != prev_root:
            out.append(t)
        prev_root = root
    return out


def _write_layout(store, name: str, root: str, ref: str) -> dict:
    blobs = os.path.join(root, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    def put(data: bytes, media: str) -> dict:
        h = hashlib.sha256(data).hexdigest()
        with replace_file(os.path.join(blobs, h)) as f:
            f.write(data)
        return {"mediaType": media, "digest": "sha256:" + h, "size": len(data)}
    layers, diff_ids, history = [], [], []
    prev = None
    for t in _chain(store, name):
        fd, tmp = tempfile.mkstemp(dir=blobs, prefix=".layer-")
        try:
            with os.fdopen(fd, "wb") as f:
                digest = write_full(store, t, f) if prev is None else write_diff(store, prev, t, f)
            size = os.path.getsize(tmp)
            os.replace(tmp, os.path.join(blobs, digest[7:]))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        layers.append({"mediaType": LAYER_TYPE, "digest": digest, "size": size})
        diff_ids.append(digest)
        history.append({"created_by": f"blockstore snapshot {t}"})
        prev = t
    labels = store.info(name).labels
    try:
        cfg_section = json.loads(labels.get(LABEL_CONFIG, "{}"))
    except ValueError:
        cfg_section = {}
    config = {"architecture": _arch(), "os": "linux", "config": cfg_section,
              "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": history}
    cdesc = put(_dump(config), CONFIG_TYPE)
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": cdesc,
                "layers": layers}
    mdesc = put(_dump(manifest), MANIFEST_TYPE)
    mdesc["annotations"] = {REF_NAME: ref}
    index = {"schemaVersion": 2, "manifests": [mdesc]}
    with replace_file(os.path.join(root, "index.json")) as f:
        f.write(_dump(index))
    with replace_file(os.path.join(root, "oci-layout")) as f:
        f.write(_dump({"imageLayoutVersion": "1.0.0"}))
    return {"manifest": mdesc["digest"], "config": cdesc["digest"], "layers": diff_ids,
            "config_doc": config}


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


def export_image(store, name: str, out, format: str = "oci", tag: str | None = None) -> dict:
    """Write the image; returns {"manifest", "config", "layers": [digests]}."""
    out = os.fspath(out)
    if format == "oci":
        if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
            raise InvalidInput("OCI layout destination must not exist or be empty", path=out)
        made = not os.path.exists(out)
        try:
            res = _write_layout(store, name, out, tag or "latest")
        except BaseException:
            _remove_written(out, made)
            raise
        res.pop("config_doc")
        return res
    if format != "docker":
        raise InvalidInput(f"unknown image format {format!r} (oci or docker)")
    repo_tag = tag or "blockstore/image:latest"
    if ":" not in repo_tag.rsplit("/", 1)[-1]:
        repo_tag += ":latest"
    tmp = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(out)), prefix=".oci-export-")
    try:
        res = _write_layout(store, name, tmp, repo_tag)
        cfg_hex = res["config"][7:]
        manifest = [{"Config": f"{cfg_hex}.json", "RepoTags": [repo_tag],
                     "Layers": [f"{d[7:]}.tar" for d in res["layers"]]}]
        blobs = os.path.join(tmp, "blobs", "sha256")
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
                add(f"{d[7:]}.tar", os.path.join(blobs, d[7:]))
            add(f"{cfg_hex}.json", os.path.join(blobs, cfg_hex))
            mpath = os.path.join(tmp, "manifest.json")
            with open(mpath, "wb") as f:
                f.write(_dump(manifest))
            add("manifest.json", mpath)
        res.pop("config_doc")
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
