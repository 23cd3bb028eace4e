"""The catalog's reverse index: which records name a tree (FORMAT.md §5.1).

A catalog record names other trees in two ways: its ``parent`` (lineage) and
the ``source`` of its volume mount specs.  Removing or renaming a tree must
find every record that names it, and an import's working clones must be
found by their label; without an index each of these is a scan of every
record.  Three LMDB databases mirror those fields:

    catalog.children   parent name | 0x00 | child name    -> empty
    catalog.mounters   volume name | 0x00 | clone name    -> empty (one per clone,
                                                             whatever its targets)
    catalog.importing  tree name                           -> empty: the record
                                                             carries IMPORTING_LABEL

Names never hold a NUL byte, so ``name | 0x00`` is an exact key prefix, and
a name is at most 255 bytes (ASCII), so every key fits LMDB's 511 bytes.

Contract: ``update(txn, name, old_raw, new_doc)`` is called by every change of
a record (``catalog.put``/``delete``), in the same transaction, so the index
is exactly what the records say; ``check`` verifies that and ``repair``
rebuilds it (``rebuild``), as does the upgrade of a format-2 store.
Costs: a query is one cursor seek plus one step per result; an update is a
comparison of the old and new fields, and one put or delete per link that
changed (none when only the root changed).
"""
from __future__ import annotations

import json

from .. import txn as txnmod

CHILDREN = txnmod.register_db("catalog.children")
MOUNTERS = txnmod.register_db("catalog.mounters")
IMPORTING = txnmod.register_db("catalog.importing")
DBS = (CHILDREN, MOUNTERS, IMPORTING)
# The label api/staging.py puts on the working clone of an import.
IMPORTING_LABEL = "blockstore.importing"


def links(doc: dict | None) -> set[tuple[str, bytes]]:
    """(database, key) of every index entry the record ``doc`` (its JSON fields) owns."""
    if not doc:
        return set()
    name = doc["name"].encode()
    out = set()
    parent = doc.get("parent")
    if parent:
        out.add((CHILDREN, parent.encode() + b"\x00" + name))
    for m in doc.get("mounts") or ():
        if isinstance(m, dict) and m.get("type") == "volume" and m.get("source"):
            out.add((MOUNTERS, str(m["source"]).encode() + b"\x00" + name))
    if IMPORTING_LABEL in (doc.get("labels") or {}):
        out.add((IMPORTING, name))
    return out


def update(t, dbs, old_raw, new_doc: dict | None) -> None:
    """Make the index follow a record changing from ``old_raw`` (its stored bytes, or
    None) to ``new_doc`` (its fields, or None when deleted).  ``t``: a raw LMDB
    write transaction; ``dbs``: database name -> handle."""
    old = links(json.loads(bytes(old_raw))) if old_raw is not None else set()
    new = links(new_doc)
    if old == new:
        return
    for db, key in old - new:
        t.delete(key, db=dbs[db])
    for db, key in new - old:
        t.put(key, b"", db=dbs[db])


def _names_under(t, db, target: str) -> list[str]:
    prefix = target.encode() + b"\x00"
    cur = t.cursor(db=db)
    out = []
    if not cur.set_range(prefix):
        return out
    for k in cur.iternext(keys=True, values=False):
        k = bytes(k)
        if not k.startswith(prefix):
            break
        out.append(k[len(prefix):].decode())
    return out


def children(txn, name: str) -> list[str]:
    """Names of the records whose parent is ``name``, in name order."""
    return _names_under(txn.t, txn.db(CHILDREN), name)


def mounters(txn, name: str) -> list[str]:
    """Names of the clones mounting volume ``name``, in name order."""
    return _names_under(txn.t, txn.db(MOUNTERS), name)


def importing(txn) -> list[str]:
    """Names of the records labelled ``IMPORTING_LABEL``."""
    return [bytes(k).decode() for k in txn.t.cursor(db=txn.db(IMPORTING)).iternext(values=False)]


def expected(t, catalog_db) -> dict[str, set[bytes]]:
    """What the index must hold, derived from every record: database -> keys."""
    out: dict[str, set[bytes]] = {db: set() for db in DBS}
    for _, raw in t.cursor(db=catalog_db):
        try:
            doc = json.loads(bytes(raw))
        except ValueError:
            continue                       # check reports undecodable records
        for db, key in links(doc):
            out[db].add(key)
    return out


def stored(t, dbs) -> dict[str, set[bytes]]:
    return {db: {bytes(k) for k in t.cursor(db=dbs[db]).iternext(values=False)} for db in DBS}


def rebuild(t, dbs, catalog_db) -> int:
    """Rewrite the index from the records (repair, format upgrade); O(records).
    Returns the number of entries written."""
    want = expected(t, catalog_db)
    for db in DBS:
        t.drop(dbs[db], delete=False)
    n = 0
    for db, keys in want.items():
        for key in keys:
            t.put(key, b"", db=dbs[db])
            n += 1
    return n


def _upgrade_to_3(t, dbs) -> None:
    """Format 2 → 3: build the index of a store written without it."""
    rebuild(t, dbs, dbs["catalog"])


txnmod.register_upgrade(3, _upgrade_to_3)
