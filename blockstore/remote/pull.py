"""pull: make a remote snapshot (and its ancestors) local, eagerly or lazily.

A pull first builds each missing snapshot of the chain from its item
stream in one write transaction (``Store.build_snapshot``): blocks the
local ancestors already hold (same SHA-256) are shared, every other block
is allocated absent.  A lazy pull stops there: reads fetch blocks on first
use.  An eager pull (and ``fill``) then fetches the absent blocks in
batches, verifies each against its SHA-256 and stores it.  A failed eager
pull removes the snapshots it made, so a retry starts clean.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import io

import zstandard

from .. import errors
from ..api.treestream import (SnapshotReader, absent_of, apply_delta, build_snapshot, canonical,
                              decode_items, delta_parent, encode_items, fill_blocks, Item)
from . import layout as L
from .client import Remote
from .fetch import fetch_blocks, parse_source, source

MAX_TREE_BYTES = 4 << 30          # an item stream larger than this is refused
FILL_BATCH = 8192                 # blocks fetched and stored per transaction (32 MiB at 4 KiB)


def content_of(store, name: str) -> str:
    """The content id of a local snapshot: SHA-256 of its canonical item stream."""
    with SnapshotReader(store, name) as rd:
        items = [Item(it.key, it.payload, None, rd.digests(*it.run) if it.run else None)
                 for it in rd.items()]
    h = hashlib.sha256()
    for part in encode_items(canonical(items)):
        h.update(part)
    return h.hexdigest()


def _tree_items(rm: Remote, content: str, name: str, depth: int = 0) -> list[Item]:
    """The items of tree ``content``: a full stream, or a delta applied to its
    parent's items (fetched the same way); checked against the content id."""
    if depth > 512:
        raise errors.Corruption(f"the tree of {name!r} is a chain of more than 512 deltas")
    raw = rm.objects.get(L.tree_key(content))
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)) as r:
            data = r.read(MAX_TREE_BYTES + 1)
    except zstandard.ZstdError as exc:
        raise errors.Corruption(f"the tree object of {name!r} does not decompress: {exc}") from None
    if len(data) > MAX_TREE_BYTES:
        raise errors.InvalidInput(f"the tree object of {name!r} is over {MAX_TREE_BYTES} bytes")
    parent = delta_parent(data)
    if parent is None:
        items = decode_items(data)
        full = data
    else:
        items = apply_delta(data, _tree_items(rm, parent, name, depth + 1))
        full = b"".join(encode_items(items))
    if hashlib.sha256(full).hexdigest() != content:
        raise errors.Corruption(f"the tree object of {name!r} does not match its SHA-256")
    return items


def _tree(rm: Remote, m: dict) -> list[Item]:
    return _tree_items(rm, m["tree"], m["name"])


def _local_blocks(store, names: list[str]) -> dict[bytes, int]:
    out: dict[bytes, int] = {}
    for n in names:
        if not store.exists(n) or store.info(n).kind != "snapshot":
            continue
        with SnapshotReader(store, n) as rd:
            for it in rd.items():
                if it.run:
                    s, k = it.run
                    for i, d in enumerate(rd.digests(s, k)):
                        out.setdefault(d, s + i)
    return out


def fill(store, name: str, progress=None, threads: int = 8, remote: str | None = None) -> dict:
    """Fetch every absent block of tree ``name``; returns counts."""
    missing = absent_of(store, name)
    stats = {"blocks": len(missing), "bytes_received": 0}
    by_src: dict[str, list] = {}
    for b, d, src in missing:
        name, loc = parse_source(src)
        by_src.setdefault(remote or name, []).append((b, d, loc))
    # batches on one pool (this one stored while the next downloads), their ranges on another
    with cf.ThreadPoolExecutor(2, thread_name_prefix="blockstore-fill") as bex, \
            cf.ThreadPoolExecutor(threads, thread_name_prefix="blockstore-fetch") as ex:
        for src, todo in by_src.items():
            rm = Remote(store.path, src)
            done = 0
            nxt = None
            for i in range(0, len(todo), FILL_BATCH):
                batch = todo[i:i + FILL_BATCH]
                fut = nxt if nxt is not None else bex.submit(
                    fetch_blocks, rm, [x[1] for x in batch], ex, [x[2] for x in batch])
                nb = todo[i + FILL_BATCH:i + 2 * FILL_BATCH]
                # the next batch downloads while this one is stored
                nxt = bex.submit(fetch_blocks, rm, [x[1] for x in nb], ex,
                                [x[2] for x in nb]) if nb else None
                datas = fut.result()
                fill_blocks(store, [(b, d, data) for (b, d, _), data in zip(batch, datas)])
                done += len(batch)
                if progress:
                    progress(f"pull {name}: {done}/{len(todo)} blocks, "
                             f"{rm.objects.received / 2**20:.1f} MiB received")
            stats["bytes_received"] += rm.objects.received
    return stats


def pull(store, name: str, remote: str | None = None, *, lazy: bool = False,
         progress=None, threads: int = 8) -> dict:
    rm = Remote(store.path, remote)
    m = rm.manifest(name)
    if m is None:
        raise errors.NotFound(f"remote {rm.name!r} has no snapshot {name!r}")
    if m["block_size"] != store.block_size:
        raise errors.InvalidInput(f"remote snapshot {name!r} has {m['block_size']}-byte blocks; "
                                  f"this store has {store.block_size}-byte blocks")
    chain = [name] + list(m["chain"])
    stats = {"remote": rm.name, "snapshots": [], "present": [], "absent_blocks": 0,
             "bytes_received": 0}
    made: list[str] = []
    index = None          # the remote's block index, loaded when a tree is built
    try:
        for n in reversed(chain):
            mm = m if n == name else rm.manifest(n)
            if mm is None:
                if n == name:
                    raise errors.NotFound(f"remote {rm.name!r} has no snapshot {n!r}")
                continue                   # an ancestor never pushed: lineage stops here
            if store.exists(n):
                if store.info(n).kind != "snapshot" or content_of(store, n) != mm["tree"]:
                    raise errors.AlreadyExists(
                        f"a different tree named {n!r} exists here; remove or rename it to pull")
                stats["present"].append(n)
                continue
            items = _tree(rm, mm)
            local = _local_blocks(store, [a for a in mm["chain"]])
            index = index if index is not None else rm.load_index()
            _, nabsent = build_snapshot(store, n, items, parent=mm.get("parent"),
                                        labels=mm.get("labels") or {}, created=mm.get("created"),
                                        local=local,
                                        source=lambda d: source(rm.name, index.get(d)))
            made.append(n)
            stats["snapshots"].append(n)
            stats["absent_blocks"] += nabsent
            if progress:
                progress(f"pull {n}: tree built, {nabsent} blocks to fetch")
        if not lazy:
            for n in made:
                stats["bytes_received"] += fill(store, n, progress, threads)["bytes_received"]
    except BaseException:
        if not lazy:
            for n in reversed(made):
                try:
                    store.remove(n, force=True)
                except errors.BlockstoreError:
                    pass
        raise
    stats["bytes_received"] += rm.objects.received
    return stats
