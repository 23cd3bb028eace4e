"""remote gc: delete objects no manifest reaches, once older than the grace period.
A bundle of pack indexes (``indexes/``) is reached through the packs it indexes.

Safe while other hosts push (docs/REMOTE-FORMAT.md §5): a push uploads
packs and the tree object before its manifest, and trusts an unreachable
pack only while it is younger than half the grace period; gc deletes an
unreachable object only when it is older than the whole grace period.
"""
from __future__ import annotations

import time

import zstandard

from ..api.treestream import DELTA_MAGIC, delta_parent
from . import layout
from .client import GRACE_SECONDS, Remote


HEAD_BYTES = 64 << 10          # read of a tree object's start, enough for its delta header


def _delta_base(rm: Remote, tree: str, sizes: dict[str, int]) -> str | None:
    """The parent tree id of tree object ``tree`` if it is a delta, else None
    (read from its start; the whole object only if that start decodes to less
    than the header)."""
    key = layout.tree_key(tree)
    size = sizes.get(key)
    if size is None:
        return None
    want = len(DELTA_MAGIC) + 64
    try:
        raw = rm.objects.get_range(key, 0, min(size, HEAD_BYTES)) if size else b""
        head = zstandard.ZstdDecompressor().decompressobj().decompress(raw)[:want]
        if len(head) < want and size > HEAD_BYTES:
            with zstandard.ZstdDecompressor().stream_reader(rm.objects.get(key)) as r:
                head = r.read(want)
    except zstandard.ZstdError:
        return None          # not a tree we can read: it names no parent to keep
    return delta_parent(head)


def gc(store_path: str, remote: str | None = None, grace: float = GRACE_SECONDS,
       dry_run: bool = False) -> dict:
    rm = Remote(store_path, remote)
    objs = rm.objects.list("packs/") + rm.objects.list("trees/")
    manifests = rm.manifests()
    keep = set()
    for m in manifests.values():
        keep.add(layout.tree_key(m["tree"]))
        for h in m["packs"]:
            keep.add(layout.pack_key(h))
            keep.add(layout.idx_key(h))
    # a tree stored as a delta needs its parent's tree object, whether or not the
    # parent's manifest is still there (removed by rm-snapshot, or while a child
    # was being pushed): follow the delta chains of every kept tree
    sizes = {o.key: o.size for o in objs}
    todo = [m["tree"] for m in manifests.values()]
    seen = set(todo)
    while todo:
        base = _delta_base(rm, todo.pop(), sizes)
        if base is not None and base not in seen and layout.tree_key(base) in sizes:
            seen.add(base)
            keep.add(layout.tree_key(base))
            todo.append(base)
    # a bundle of pack indexes is kept while it holds the index of a kept pack
    # (readers take an index from a bundle only while the pack's own is listed)
    for o in rm.objects.list("indexes/"):
        objs.append(o)
        if any(layout.pack_key(h) in keep for h in rm.bundle_indexes(o)):
            keep.add(o.key)
    now = time.time()
    doomed = [o for o in objs if o.key not in keep and now - o.mtime >= grace]
    # an index goes before its pack: a reader never finds a block whose pack is gone
    doomed.sort(key=lambda o: not o.key.endswith((".idx", ".idxs")))
    if not dry_run:
        for o in doomed:
            rm.objects.delete(o.key)
    return {"remote": rm.name, "manifests": len(manifests), "objects": len(objs),
            "deleted": [o.key for o in doomed], "deleted_bytes": sum(o.size for o in doomed)}
