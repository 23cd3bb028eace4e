"""push: upload snapshots (and their ancestors) that the remote lacks.

Per snapshot, ancestors first: stream its items, name every block by
SHA-256, pack the blocks no pack of the remote holds (nor this push so far)
into ~8 MiB packs uploaded by a thread pool (pack, then its index), then one
bundle of those indexes (a reader's shortcut), then the tree object, then
the manifest: last, and only if no manifest of that name exists.  A killed push leaves packs and maybe a tree object that no
manifest names; a re-push finds them in the index (content-addressed names,
the same blocks) and skips them.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import itertools
import time

import zstandard

from .. import errors
from ..api.treestream import Item, SnapshotReader, canonical, encode_delta, encode_items
from . import layout
from .client import Remote


def _chain(store, names: list[str]) -> list[str]:
    order: list[str] = []
    for n in names:
        rec = store.info(n)
        if rec.kind != "snapshot":
            raise errors.InvalidInput(f"{n!r} is a {rec.kind}; push snapshots (blockstore commit "
                                      f"{n} NAME makes one)")
        for a in reversed(store.lineage(n)):
            try:
                if store.info(a).kind == "snapshot" and a not in order:
                    order.append(a)
            except errors.NotFound:
                continue
    return order


class _Uploads:
    """Packs sealed and uploaded on a thread pool (join, index and hash there,
    not on the thread reading the snapshot); at most 2 x threads packs are
    held at once."""

    def __init__(self, remote: Remote, threads: int):
        self.remote = remote
        self.ex = cf.ThreadPoolExecutor(threads, thread_name_prefix="blockstore-push")
        self.threads = threads
        self.futures: list[tuple[cf.Future, layout.PackBuilder]] = []
        self.packs = 0

    def _pack(self, pb: layout.PackBuilder) -> str:
        h, data, idx = pb.seal()
        pb.parts = []                        # the blocks may go once sealed
        pb.index = idx                       # for the push's bundle of indexes
        obj = self.remote.objects
        # A pack a push may rely on (reachable, or young: a killed push's) is not sent
        # again; an old unreachable one is, which renews its age against gc.
        if layout.idx_key(h) not in self.remote.trusted:
            obj.put(layout.pack_key(h), data)
            obj.put(layout.idx_key(h), idx)       # the index last: a block is listed once its pack is whole
        return h

    def submit_pack(self, pb: layout.PackBuilder) -> None:
        live = [f for f, _ in self.futures if not f.done()]
        if len(live) >= 2 * self.threads:
            cf.wait(live, return_when=cf.FIRST_COMPLETED)
        self._raise_failed()
        self.futures.append((self.ex.submit(self._pack, pb), pb))
        self.packs += 1

    def _raise_failed(self) -> None:
        for f, _ in self.futures:
            if f.done() and f.exception() is not None:
                raise f.exception()

    def wait(self) -> list[tuple[str, layout.PackBuilder]]:
        """Wait for every pack submitted; returns (name, builder) of each, once."""
        out = [(f.result(), pb) for f, pb in self.futures]
        self.futures = []
        return out

    def close(self) -> None:
        self.ex.shutdown(wait=True, cancel_futures=True)


def push(store, names, remote: str | None = None, progress=None, threads: int = 8) -> dict:
    """Push snapshots ``names`` and their ancestors; returns counts."""
    names = [names] if isinstance(names, str) else list(names)
    rm = Remote(store.path, remote)
    order = _chain(store, names)
    have = rm.load_index(for_push=True)
    bs = store.block_size
    stats = {"remote": rm.name, "snapshots": [], "skipped": [], "blocks": 0, "new_blocks": 0,
             "bytes_sent": 0, "packs": 0}
    up = _Uploads(rm, threads)
    t0 = time.monotonic()
    done: dict[str, tuple[str, list[Item]]] = {}     # name -> (content id, canonical items)

    def say(msg: str) -> None:
        if progress:
            progress(msg)
    try:
        for name in order:
            existing = rm.manifest(name)
            pb = layout.PackBuilder(bs)
            fresh: set[bytes] = set()           # packed by this push, not yet uploaded

            items: list[Item] = []
            nblocks = 0
            with SnapshotReader(store, name) as rd:
                rec = rd.record
                for it in rd.items():
                    if it.run is None:
                        items.append(it)
                        continue
                    s, n = it.run
                    digs = rd.digests(s, n)
                    nblocks += n
                    if existing is None:
                        if have.keys().isdisjoint(digs) and fresh.isdisjoint(digs) \
                                and len(set(digs)) == len(digs):
                            new = range(len(digs))   # all new and distinct: set operations at C speed
                            fresh.update(digs)
                        else:
                            new = []            # blocks of the run no pack holds yet
                            for i, d in enumerate(digs):
                                if d not in have and d not in fresh:
                                    fresh.add(d)
                                    new.append(i)
                        stats["new_blocks"] += len(new)
                        mv = memoryview(rd.read(s, n)) if new else None
                        a = 0
                        while a < len(new):     # consecutive new blocks: one view each
                            b = len(new) if isinstance(new, range) else a + 1
                            while b < len(new) and new[b] == new[b - 1] + 1:
                                b += 1
                            i, k = new[a], b - a
                            while k:
                                got = pb.add_run(digs[i:i + k], mv[i * bs:(i + k) * bs])
                                i, k = i + got, k - got
                                if pb.size >= layout.PACK_TARGET:
                                    up.submit_pack(pb)
                                    pb = layout.PackBuilder(bs)
                                    say(f"push {name}: {up.packs} packs, "
                                        f"{rm.objects.sent / 2**20:.1f} MiB sent")
                            a = b
                    items.append(Item(it.key, it.payload, None, digs))
            items = list(canonical(items))
            stream = b"".join(encode_items(items))
            content = hashlib.sha256(stream).hexdigest()
            done[name] = (content, items)
            stats["blocks"] += nblocks
            if existing is not None:
                if existing["tree"] != content:
                    raise errors.AlreadyExists(
                        f"remote {rm.name!r} has a different snapshot named {name!r}")
                stats["skipped"].append(name)
                continue
            if pb.entries:
                up.submit_pack(pb)
            indexes = []
            for h, sealed in up.wait():
                indexes.append(sealed.index)
                if sealed.entries:
                    ds, offs, lens = zip(*sealed.entries)
                    have.update(zip(ds, zip(itertools.repeat(h), offs, lens)))
                    fresh.difference_update(ds)
            packs = sorted({have[d][0] for it in items if it.digests for d in it.digests})
            if indexes:
                # the indexes of this snapshot's packs in one object, after the packs
                # and their own indexes: a reader GETs one object, not one per pack
                bname, bundle = layout.encode_bundle(indexes)
                rm.objects.put(layout.bundle_key(bname), bundle)
            if not rm.objects.exists(layout.tree_key(content)):
                # a child of a snapshot pushed (or found) in this run is stored as its
                # difference from it, when that is smaller: a new layer sends its own
                # items, not again every block digest of the base
                body = stream
                if rec.parent in done:
                    pid, pitems = done[rec.parent]
                    delta = encode_delta(pid, pitems, items)
                    if len(delta) < len(stream) // 2:
                        body = delta
                rm.objects.put(layout.tree_key(content), zstandard.ZstdCompressor(level=3).compress(body))
            chain = [a for a in store.lineage(name)[1:]]
            manifest = {"format": layout.FORMAT, "name": name, "parent": rec.parent, "chain": chain,
                        "block_size": bs, "labels": rec.labels, "created": rec.created,
                        "tree": content, "packs": packs, "blocks": nblocks,
                        "bytes": nblocks * bs}
            try:
                rm.objects.put(layout.manifest_key(name), layout.encode_manifest(manifest), exclusive=True)
            except errors.AlreadyExists:
                other = rm.manifest(name)
                if other is None or other["tree"] != content:
                    raise errors.AlreadyExists(
                        f"remote {rm.name!r} got a different snapshot named {name!r} meanwhile") from None
            stats["snapshots"].append(name)
            say(f"push {name}: done ({stats['new_blocks']} new blocks, "
                f"{rm.objects.sent / 2**20:.1f} MiB sent)")
    finally:
        up.close()
    stats["bytes_sent"] = rm.objects.sent
    stats["packs"] = up.packs
    stats["seconds"] = round(time.monotonic() - t0, 3)
    return stats
