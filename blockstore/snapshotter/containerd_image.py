"""Make a store image a containerd image without its layers' bytes
(``blockstore snapshotter register IMAGE --image REF``).

``blockstore import`` keeps an image's manifest and config as labels of its
tree, byte for byte (``oci.manifest``, ``image.config``).  Once ``register``
has recorded the layers in containerd (``register.py``), what containerd
still needs to run the image is those two documents in its content store
and an image record naming the manifest: ``ctr run`` reads the config's
``rootfs.diff_ids``, derives the chain IDs and finds the top one as a
committed snapshot, so it never asks for a layer blob (none is written).
This replaces ``ctr image import`` of the image tar, which streams and
hashes every blob of the tar, layers included, whatever containerd holds.

Written like containerd's unpacker leaves them: the config labelled
``containerd.io/gc.ref.snapshot.<snapshotter>`` = the top chain ID (the
image then holds its snapshots against containerd's gc), the manifest
labelled ``containerd.io/gc.ref.content.config`` = the config's digest;
both under the caller's lease until the image refers to them.  A blob
containerd already has only gets those labels; an image of that name is
pointed at this manifest.

Refused (InvalidInput, nothing written): an image without a recorded
manifest, a config not kept whole (over the import's label limit), a
manifest whose config digest or whose layers' chain IDs are not the
store's.  Costs: three or four RPCs; the two documents are a few KiB.
"""
from __future__ import annotations

import hashlib
import json

import grpc

from .. import errors

LABEL_MANIFEST = "oci.manifest"          # blockstore.oci.image_in.LABEL_MANIFEST
LABEL_CONFIG = "image.config"            # blockstore.oci.image_in.LABEL_CONFIG
GC_SNAPSHOT = "containerd.io/gc.ref.snapshot."
GC_CONFIG = "containerd.io/gc.ref.content.config"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_ids(diff_ids: list[str]) -> list[str]:
    """The OCI chain IDs of layers with these diff IDs, bottom up (the rule of
    blockstore.oci.chain.chain_id: ChainID(n) = SHA-256 of "ChainID(n-1) DiffID(n)")."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else _digest(f"{out[-1]} {d}".encode()))
    return out


def documents(store, name: str, chain: list[str]) -> tuple[bytes, dict, bytes]:
    """(manifest bytes, manifest, config bytes) of store image ``name`` whose
    layers are ``chain``; InvalidInput when containerd could not use them."""
    labels = store.info(name).labels
    raw_manifest, raw_config = labels.get(LABEL_MANIFEST), labels.get(LABEL_CONFIG)
    if not raw_manifest or not raw_config:
        raise errors.InvalidInput(f"{name!r} has no manifest and config recorded by "
                                  "`blockstore import`: no containerd image can be made of it")
    manifest_b, config_b = raw_manifest.encode(), raw_config.encode()
    try:
        manifest, config = json.loads(manifest_b), json.loads(config_b)
        cfg_desc = manifest["config"]
        diff_ids = list(config["rootfs"]["diff_ids"])
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.InvalidInput(f"the manifest or config recorded for {name!r} is not an "
                                  f"OCI image's: {exc}") from None
    if not isinstance(cfg_desc, dict) or cfg_desc.get("digest") != _digest(config_b):
        raise errors.InvalidInput(f"the config recorded for {name!r} is not the one its manifest "
                                  "names (a config over the import's label limit keeps only its "
                                  "run-time settings): use `ctr image import`")
    if chain_ids(diff_ids) != chain:
        raise errors.InvalidInput(f"the layers of {name!r}'s config are not its layers in the "
                                  "store")
    return manifest_b, manifest, config_b


def create(channel, md_lease: list, md: list, store, name: str, chain: list[str], ref: str,
           snapshotter: str, timeout: float, address: str) -> str:
    """Write image ``name``'s config and manifest into containerd (under the lease
    of ``md_lease``) and point image ``ref`` at them; "created" or "updated"."""
    from google.protobuf import field_mask_pb2
    from .proto import content_pb2 as cpb, content_pb2_grpc as cpbg
    from .proto import images_pb2 as ipb, images_pb2_grpc as ipbg
    from .register import rpc_error
    manifest_b, manifest, config_b = documents(store, name, chain)
    content = cpbg.ContentStub(channel)
    cfg_digest = _digest(config_b)
    for data, digest, labels in (
            (config_b, cfg_digest, {GC_SNAPSHOT + snapshotter: chain[-1]}),
            (manifest_b, _digest(manifest_b), {GC_CONFIG: cfg_digest})):
        req = cpb.WriteContentRequest(action=cpb.COMMIT, ref=f"blockstore-register-{digest}",
                                      total=len(data), expected=digest, data=data, labels=labels)
        try:
            for _ in content.Write(iter([req]), metadata=md_lease, timeout=timeout):
                pass
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise rpc_error(exc, f"writing {digest} into containerd's content store",
                             address) from None
            try:
                content.Update(cpb.UpdateRequest(
                    info=cpb.Info(digest=digest, labels=labels),
                    update_mask=field_mask_pb2.FieldMask(paths=[f"labels.{k}" for k in labels])),
                    metadata=md_lease, timeout=timeout)
            except grpc.RpcError as exc2:
                raise rpc_error(exc2, f"labelling {digest} in containerd's content store",
                             address) from None
    target = ipb.Descriptor(media_type=manifest.get("mediaType") or OCI_MANIFEST,
                            digest=_digest(manifest_b), size=len(manifest_b))
    images = ipbg.ImagesStub(channel)
    image = ipb.Image(name=ref, target=target)
    try:
        images.Create(ipb.CreateImageRequest(image=image), metadata=md, timeout=timeout)
        return "created"
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise rpc_error(exc, f"creating image {ref!r} in containerd", address) from None
    try:
        images.Update(ipb.UpdateImageRequest(
            image=image, update_mask=field_mask_pb2.FieldMask(paths=["target"])),
            metadata=md, timeout=timeout)
    except grpc.RpcError as exc:
        raise rpc_error(exc, f"updating image {ref!r} in containerd", address) from None
    return "updated"
