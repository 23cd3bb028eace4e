"""The catalog: named trees and the root reference each one holds.

Every tree is one record in LMDB database ``catalog`` keyed by its name:

    kind     "snapshot" (read-only), "clone" (writable, made from a snapshot
             or empty) or "volume" (writable, no image lineage)
    root     root node id of its B-tree (0 = empty); the record owns exactly
             one reference to it
    parent   name of the snapshot it was cloned or committed from, or None
    created  ns since the epoch; labels {str: str}; uuid; mounts (clones)
             (labels under ``image.`` are inherited by copies: carried_labels)

Contract: a record is changed only inside a write transaction, and a root
is replaced only together with the B-tree mutation that produced it, so a
crash leaves either the old root or the new one, never a mixture.
Every put and delete keeps the reverse index (links.py: children,
volume mounters, import working clones) in step, so finding the records
that name a tree never scans the catalog.
Cost: every call is O(1) LMDB operations (O(log trees) inside LMDB) except
``records`` (O(trees)); ``rename`` and the queries O(records they return).
"""
from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field

from . import links
from .. import txn as txnmod
from ..errors import AlreadyExists, Corruption, InvalidInput, NotFound

CATALOG = txnmod.register_db("catalog")
# Labels that describe a tree's content as an image (its config: command,
# environment, history...) travel with the content: a clone or snapshot of a
# tree starts with the source's labels under this prefix (labels given to the
# copy win).  Other labels (names, layer identities) belong to one record.
CARRIED_PREFIX = "image."
CARRIED_LEGACY = ("oci.config",)      # what stores made before the prefix used
KINDS = ("snapshot", "clone", "volume")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._@+:/-]{0,254}")


@dataclass
class TreeRecord:
    name: str
    kind: str
    root: int = 0
    parent: str | None = None
    created: int = field(default_factory=time.time_ns)
    labels: dict = field(default_factory=dict)
    uuid: str = field(default_factory=lambda: uuid.uuid4().hex)
    mounts: list = field(default_factory=list)

    @property
    def writable(self) -> bool:
        return self.kind != "snapshot"

    def encode(self) -> bytes:
        # Same bytes as json.dumps(asdict(self)): the instance dict holds exactly the
        # fields, and dumps reads it without asdict's deep copy (~3 us instead of ~12).
        return json.dumps(vars(self), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw) -> "TreeRecord":
        """The record; Corruption when the stored bytes are not one."""
        try:
            return cls(**json.loads(bytes(raw)))
        except (ValueError, TypeError) as exc:     # JSON/UTF-8 errors, missing or extra fields
            raise Corruption(f"a catalog record is damaged ({exc}): "
                             f"{bytes(raw)[:80]!r}") from None


def carried_labels(labels: dict) -> dict:
    """The labels a copy of a tree inherits (see CARRIED_PREFIX)."""
    return {k: v for k, v in labels.items()
            if k.startswith(CARRIED_PREFIX) or k in CARRIED_LEGACY}


def check_name(name: str) -> str:
    """Tree names: 1-255 characters of [A-Za-z0-9._@+:/-], not starting with
    '.', '-', '/' or ':', without '//' or ':/' (which the CLI reads as NAME:/path)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or "//" in name \
            or ":/" in name or name.endswith(("/", ":")):
        raise InvalidInput(f"invalid tree name {name!r}: use 1-255 characters of "
                           "letters, digits and ._@+:/- not starting with . - / :")
    return name


def get(txn, name: str) -> TreeRecord:
    return TreeRecord.decode(get_raw(txn, name))


def get_raw(txn, name: str) -> bytes:
    """The encoded record (what ``get`` decodes): equal bytes mean an equal record,
    so callers may cache what they derive from it keyed by these bytes."""
    raw = txn.t.get(name.encode(), db=txn.db(CATALOG))
    if raw is None:
        raise NotFound(f"no tree named {name!r}")
    return bytes(raw)


def exists(txn, name: str) -> bool:
    return txn.t.get(name.encode(), db=txn.db(CATALOG)) is not None


def put(txn, rec: TreeRecord) -> bytes:
    """Store ``rec``; returns its encoded bytes (what ``get_raw`` will return)."""
    raw = rec.encode()
    key = rec.name.encode()
    links.update(txn.t, txn.env.dbs, txn.t.get(key, db=txn.db(CATALOG)), vars(rec))
    txn.put(CATALOG, key, raw)
    return raw


def add(txn, rec: TreeRecord) -> TreeRecord:
    check_name(rec.name)
    if rec.kind not in KINDS:
        raise InvalidInput(f"unknown tree kind {rec.kind!r}; one of {', '.join(KINDS)}")
    if exists(txn, rec.name):
        raise AlreadyExists(f"a tree named {rec.name!r} already exists")
    put(txn, rec)
    return rec


def delete(txn, name: str) -> None:
    key = name.encode()
    old = txn.t.get(key, db=txn.db(CATALOG))
    if old is not None:
        links.update(txn.t, txn.env.dbs, old, None)
    txn.t.delete(key, db=txn.db(CATALOG))
    txn.t.delete(name.encode(), db=txn.db(STAGING))     # no-op unless a staging clone


def rename(txn, old: str, new: str) -> TreeRecord:
    """Move a record to a new name; other records naming it as their parent or
    mounting it as a volume follow.  O(records naming it), through the index."""
    rec = get(txn, old)
    check_name(new)
    if exists(txn, new):
        raise AlreadyExists(f"a tree named {new!r} already exists")
    owner = staging_owner(txn, old)
    delete(txn, old)
    rec.name = new
    put(txn, rec)
    if owner is not None:
        add_staging(txn, new, owner)
    for n in sorted((set(links.children(txn, old)) | set(links.mounters(txn, old))) - {old}):
        r = get(txn, n)
        changed = False
        if r.parent == old:
            r.parent, changed = new, True
        for m in r.mounts or []:
            if m.get("type") == "volume" and m.get("source") == old:
                m["source"], changed = new, True
        if changed:
            put(txn, r)
    return rec


def records(txn):
    """Every record, in name order.  O(trees): only for listing and check."""
    for _, raw in txn.t.cursor(db=txn.db(CATALOG)):
        yield TreeRecord.decode(raw)


def count(txn) -> int:
    """How many trees: O(1)."""
    return txn.t.stat(txn.db(CATALOG))["entries"]


def dependents(txn, name: str) -> list[TreeRecord]:
    """Records whose parent is ``name`` and clones mounting it as a volume, in
    name order: O(dependents) through the index."""
    names = set(links.children(txn, name)) | set(links.mounters(txn, name))
    names.discard(name)
    return [get(txn, n) for n in sorted(names)]


# -- pins: references held by open readers (file handles, exports) ------------
#
# A pin holds one reference to a root so that the tree it names stays intact
# even if its catalog record is removed and gc runs.  Key: u32 pid | u64 seq;
# value: u64 root.  Pins of processes that no longer exist are dropped by
# ``drop_dead_pins`` (the Store does so when it opens).  ``check`` counts pins
# as references, like catalog roots.
import os as _os
import struct as _struct

PINS = txnmod.register_db("pins")
_PIN = _struct.Struct(">IQ")


def add_pin(txn, root: int) -> bytes:
    seq = txn.meta_int(b"catalog.pin_seq", 0) + 1
    txn.meta_put_int(b"catalog.pin_seq", seq)
    k = _PIN.pack(_os.getpid(), seq)
    txn.put(PINS, k, txnmod.u64(root))
    return k


def remove_pin(txn, key: bytes) -> int | None:
    raw = txn.t.get(key, db=txn.db(PINS))
    if raw is None:
        return None
    txn.t.delete(key, db=txn.db(PINS))
    return txnmod.from_u64(raw)


def pins(txn):
    """(key, pid, root) of every pin."""
    for k, v in txn.t.cursor(db=txn.db(PINS)):
        pid, _ = _PIN.unpack(k)
        yield bytes(k), pid, txnmod.from_u64(v)


def _alive(pid: int) -> bool:
    try:
        _os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_pins(txn) -> list[tuple[bytes, int]]:
    return [(k, root) for k, pid, root in pins(txn) if pid != _os.getpid() and not _alive(pid)]


# -- staging: working clones of imports in progress ---------------------------
#
# An import writes into a working clone and freezes it as a snapshot at the
# end (api/staging.py).  Each such clone has an entry here, key: its name,
# value: JSON of its owner process (api/owner.py), written in the
# transaction that creates the clone and deleted with its record (``delete``),
# so a clone whose owner was killed can be found in O(entries) and removed.
STAGING = txnmod.register_db("staging")


def add_staging(txn, name: str, owner: dict) -> None:
    txn.put(STAGING, name.encode(), json.dumps(owner, sort_keys=True).encode())


def staging_owner(txn, name: str) -> dict | None:
    raw = txn.t.get(name.encode(), db=txn.db(STAGING))
    return None if raw is None else _owner(raw)


def staging_entries(txn) -> list[tuple[str, dict | None]]:
    """(clone name, owner or None when unreadable) of every entry."""
    return [(bytes(k).decode(errors="replace"), _owner(v))
            for k, v in txn.t.cursor(db=txn.db(STAGING))]


def remove_staging(txn, name: str) -> None:
    txn.t.delete(name.encode(), db=txn.db(STAGING))


def _owner(raw) -> dict | None:
    try:
        v = json.loads(bytes(raw))
    except ValueError:
        return None
    return v if isinstance(v, dict) else None
