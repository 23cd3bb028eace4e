"""remote gc: delete objects no manifest reaches, once older than the grace period.

Safe while other hosts push (docs/REMOTE-FORMAT.md §5): a push uploads
packs and the tree object before its manifest, and trusts an unreachable
pack only while it is younger than half the grace period; gc deletes an
unreachable object only when it is older than the whole grace period.
"""
from __future__ import annotations

import time

from . import layout as L
from .client import GRACE_SECONDS, Remote


def gc(store_path: str, remote: str | None = None, grace: float = GRACE_SECONDS,
       dry_run: bool = False) -> dict:
    rm = Remote(store_path, remote)
    objs = rm.objects.list("packs/") + rm.objects.list("trees/")
    manifests = rm.manifests()
    keep = set()
    for m in manifests.values():
        keep.add(L.tree_key(m["tree"]))
        for h in m["packs"]:
            keep.add(L.pack_key(h))
            keep.add(L.idx_key(h))
    now = time.time()
    doomed = [o for o in objs if o.key not in keep and now - o.mtime >= grace]
    # an index goes before its pack: a reader never finds a block whose pack is gone
    doomed.sort(key=lambda o: not o.key.endswith(".idx"))
    if not dry_run:
        for o in doomed:
            rm.objects.delete(o.key)
    return {"remote": rm.name, "manifests": len(manifests), "objects": len(objs),
            "deleted": [o.key for o in doomed], "deleted_bytes": sum(o.size for o in doomed)}
