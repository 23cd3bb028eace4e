"""Which trees nothing keeps: image layer snapshots left behind (``Store.prune``).

An image import makes one snapshot per layer, named by the layer's chain ID
and labelled ``oci.chain_id`` with that same name, and snapshots the top
one under the name the user gave (``blockstore.oci``).  Removing the image
leaves its layers.  Like ``docker image prune``, a layer snapshot is
*unkept* when:

* it is a layer snapshot (kind snapshot, ``labels["oci.chain_id"] == name``:
  its name is generated, so no name keeps it);
* it has no label other than the ``oci.*`` ones the import set (a user
  label keeps it);
* no tree depends on it: none has it as parent (an image or a clone built
  on it), no clone mounts it.

Removing an unkept layer can make its parent unkept; ``unkept`` follows the
chain, children before parents.  Trees with user-given names are never
pruned.  Cost: one catalog scan, O(trees).
"""
from __future__ import annotations

# The label blockstore.oci puts on every layer snapshot (blockstore.oci.chain.LABEL_CHAIN;
# a test keeps the two equal).
LAYER_LABEL = "oci.chain_id"
IMPORT_LABEL_PREFIX = "oci."


def is_layer(rec) -> bool:
    """A layer snapshot of an image: named by its chain ID (ls hides these)."""
    return rec.kind == "snapshot" and rec.labels.get(LAYER_LABEL) == rec.name


def unkept(records) -> list[str]:
    """Names of the layer snapshots nothing keeps, in a removable order
    (each before its parent)."""
    recs = {r.name: r for r in records}
    users: dict[str, int] = {}
    for r in recs.values():
        for used in _uses(r):
            users[used] = users.get(used, 0) + 1
    out: list[str] = []
    todo = [n for n, r in recs.items() if _prunable(r) and not users.get(n)]
    todo.sort()
    while todo:
        name = todo.pop(0)
        out.append(name)
        for used in _uses(recs[name]):
            users[used] -= 1
            if not users[used] and used in recs and _prunable(recs[used]) and used not in out:
                todo.append(used)
    return out


def _uses(rec) -> list[str]:
    """The trees rec keeps: its parent and the volumes it mounts."""
    out = [rec.parent] if rec.parent else []
    out += [m["source"] for m in rec.mounts or [] if m.get("type") == "volume"]
    return out


def _prunable(rec) -> bool:
    return is_layer(rec) and all(k.startswith(IMPORT_LABEL_PREFIX) for k in rec.labels)
