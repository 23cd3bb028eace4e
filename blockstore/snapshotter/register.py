"""Tell containerd which image layers the store already holds, so that
``ctr image import`` / ``ctr image pull`` skip unpacking them.

containerd 1.6 unpacks an image layer by layer (``Image.Unpack`` ->
``rootfs.ApplyLayerWithOpts``): it first asks its snapshot service to
``Stat`` the layer's chain ID and skips the layer when that succeeds.  That
Stat is answered from containerd's own metadata database
(``metadata/snapshot.go``): a key containerd never created is NotFound
there without the proxy snapshotter being asked, so no snapshotter can
adopt a layer at Stat time, and the unpack Prepare that follows carries
no ``containerd.io/snapshot.ref`` label.

``register`` makes the entries containerd looks for: for each layer of a
store image, bottom up, it calls containerd's snapshot service (on
containerd's socket, in the given namespace) ``Prepare`` with the label
``containerd.io/snapshot.ref`` = the layer's chain ID and the chain ID of
the layer below as parent, exactly what containerd's own unpacker sends.
The blockstore snapshotter answers ALREADY_EXISTS from the store (its fast
path: an O(1) store snapshot of the imported layer), and containerd then
records the chain ID as a committed snapshot of that namespace.  A later
unpack of any image with those layers finds them by Stat and writes
nothing.

The snapshots are created under a containerd lease that expires after
``expire_s`` seconds: until an image refers to them (``ctr image import``
labels the image config with its top chain ID) the lease keeps
containerd's garbage collector from removing them, and afterwards,
if no image came, they are collected (the store's own layer snapshots stay).

With ``image``, the image's manifest and config go into containerd's
content store and an image record names them (``containerd_image.py``),
so the image runs without ``ctr image import``.

Costs: two RPCs per layer plus one per lease (and three or four for the
image); no layer data is read.
"""
from __future__ import annotations

import datetime
import secrets

import grpc

from .. import errors

LABEL_SNAPSHOT_REF = "containerd.io/snapshot.ref"
LABEL_OCI_CHAIN = "oci.chain_id"        # blockstore.oci.chain.LABEL_CHAIN
LABEL_GC_EXPIRE = "containerd.io/gc.expire"
NAMESPACE_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"
MAX_LAYERS = 1 << 12                     # a longer lineage is a loop or not an image


def image_layers(store, name: str) -> list[str]:
    """The chain IDs of image ``name``'s layers, bottom up: its lineage's
    snapshots that ``blockstore import`` named by their chain ID."""
    rec = store.info(name)
    chain: list[str] = []
    seen = set()
    while rec is not None:
        if rec.name in seen or len(seen) > MAX_LAYERS:
            raise errors.InvalidInput(f"the lineage of {name!r} loops or is too long")
        seen.add(rec.name)
        if rec.labels.get(LABEL_OCI_CHAIN) == rec.name and rec.kind == "snapshot":
            chain.append(rec.name)
        elif chain:
            raise errors.InvalidInput(f"tree {rec.name!r} below layer {chain[-1]!r} of {name!r} is "
                                 "not an imported layer (a snapshot named by its chain ID)")
        rec = store.info(rec.parent) if rec.parent else None
    if not chain:
        raise errors.InvalidInput(f"{name!r} has no imported image layers (import it with "
                             "`blockstore import` first)")
    chain.reverse()
    return chain


def register(store, name: str, address: str, namespace: str = "default",
             snapshotter: str = "blockstore", expire_s: float = 24 * 3600,
             timeout: float = 60.0, image: str | None = None) -> list[tuple[str, str]]:
    """Register every layer of store image ``name`` with the containerd at
    ``address``; returns (chain ID, outcome) per layer, outcome "registered"
    (containerd took it from the store) or "present" (containerd had it).
    ``image``: also make containerd image ``image`` of it, from the manifest
    and config the store recorded (``containerd_image.py``: no ``ctr image
    import`` needed); then the last pair is (``image``, "image created" or
    "image updated")."""
    from .proto import leases_pb2, leases_pb2_grpc
    from .proto import snapshots_pb2 as pb, snapshots_pb2_grpc as pbg
    from . import containerd_image
    chain = image_layers(store, name)
    if image is not None:
        containerd_image.documents(store, name, chain)      # refused before anything is written
    target = address if address.startswith("unix:") else "unix:" + address
    md = [(NAMESPACE_HEADER, namespace)]
    out = []
    with grpc.insecure_channel(target) as ch:
        sn = pbg.SnapshotsStub(ch)
        leases = leases_pb2_grpc.LeasesStub(ch)
        expire = (datetime.datetime.now(datetime.timezone.utc)
                  + datetime.timedelta(seconds=expire_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
        lease_id = f"blockstore-register-{secrets.token_hex(6)}"
        try:
            leases.Create(leases_pb2.CreateRequest(id=lease_id,
                                                   labels={LABEL_GC_EXPIRE: expire}),
                          metadata=md, timeout=timeout)
        except grpc.RpcError as exc:
            raise rpc_error(exc, "creating a containerd lease", address) from None
        md_lease = md + [(LEASE_HEADER, lease_id)]
        parent = ""
        for cid in chain:
            key = f"extract-register-{secrets.token_hex(6)} {cid}"
            try:
                sn.Prepare(pb.PrepareSnapshotRequest(snapshotter=snapshotter, key=key,
                                                     parent=parent,
                                                     labels={LABEL_SNAPSHOT_REF: cid}),
                           metadata=md_lease, timeout=timeout)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise rpc_error(exc, f"registering layer {cid}", address) from None
                out.append((cid, "present" if "target snapshot" in (exc.details() or "")
                            and "from snapshotter" not in (exc.details() or "")
                            else "registered"))
            else:
                # The snapshotter unpacks instead: not the blockstore one, or
                # the layer left the store.  Undo and say so.
                try:
                    sn.Remove(pb.RemoveSnapshotRequest(snapshotter=snapshotter, key=key),
                              metadata=md, timeout=timeout)
                except grpc.RpcError:
                    pass
                raise errors.InvalidInput(f"snapshotter {snapshotter!r} of {address} did not "
                                     f"take layer {cid} from the store: is it the "
                                     "blockstore snapshotter serving this store?")
            parent = cid
        if image is not None:
            outcome = containerd_image.create(ch, md_lease, md, store, name, chain, image,
                                              snapshotter, timeout, address)
            out.append((image, f"image {outcome}"))
    return out


def rpc_error(exc: grpc.RpcError, what: str, address: str) -> errors.BlockstoreError:
    """The blockstore error for a failed call to containerd (UNAVAILABLE: Unreachable)."""
    code, msg = exc.code(), exc.details()
    if code == grpc.StatusCode.UNAVAILABLE:
        return errors.Unreachable(f"{what}: containerd does not answer on {address}: {msg}")
    if code == grpc.StatusCode.NOT_FOUND:
        return errors.NotFound(f"{what}: {msg}")
    return errors.BlockstoreError(f"{what}: containerd answered {code.name}: {msg}")
