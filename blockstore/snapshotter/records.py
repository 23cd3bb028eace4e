"""How a containerd snapshot is kept in the store: names and labels.

containerd names snapshots by *key*: any string (``default/7/sha256:...``,
absolute paths in the conformance suite), unique per namespace, which is
not a legal tree name in general.  Each snapshot is one store tree:

* committed -> a snapshot; active -> a clone; view -> a clone mounted
  read-only (a clone so that any number of views of one parent can each
  have their own mount);
* tree name ``containerd.<h>.<r>``: ``h`` = 32 hex digits of
  SHA-256(namespace NUL key), ``r`` = 8 random hex digits, so a key removed
  while its mount is still in use elsewhere can be reused at once under a
  new name (the old tree is *retired*: hidden, removed once unmountable);
* labels under ``blockstore.containerd.`` hold what containerd sees
  (namespace, key, kind, the parent's key, the update time, the retired
  and spare marks, a creation time); every other label is containerd's own and is returned as is.  A
  caller's label in the reserved prefix is refused (InvalidInput), so the
  two never mix.  ``blockstore ls`` shows the key in the labels.
"""
from __future__ import annotations

import hashlib
import secrets

from ..errors import InvalidInput

PREFIX = "blockstore.containerd."
L_NS = PREFIX + "namespace"
L_KEY = PREFIX + "key"
L_KIND = PREFIX + "kind"
L_PARENT = PREFIX + "parent"
L_UPDATED = PREFIX + "updated"
L_RETIRED = PREFIX + "retired"
L_STAGED = PREFIX + "staged"        # an unpack written to a staging directory (staging.py)
L_SPARE = PREFIX + "spare"          # a clone made ahead of a Prepare (spares.py)
L_CREATED = PREFIX + "created"      # containerd's creation time when not the tree's (a spare's)

KINDS = ("view", "active", "committed")     # containerd's Kind enum: 1, 2, 3
MAX_KEY = 4096
MAX_LABELS_BYTES = 64 << 10


def tree_name(namespace: str, key: str) -> str:
    """A fresh store name for (namespace, key): legal and collision-free."""
    h = hashlib.sha256(namespace.encode() + b"\0" + key.encode()).hexdigest()[:32]
    return f"containerd.{h}.{secrets.token_hex(4)}"


def check_key(key: str, what: str = "key") -> str:
    if not key:
        raise InvalidInput(f"empty snapshot {what}")
    if len(key) > MAX_KEY or "\0" in key:
        raise InvalidInput(f"snapshot {what} too long or holding NUL: {key[:80]!r}")
    return key


def check_user_labels(labels: dict) -> dict:
    """containerd's labels as given: none in the reserved prefix, bounded size."""
    labels = dict(labels or {})
    size = 0
    for k, v in labels.items():
        if k.startswith(PREFIX):
            raise InvalidInput(f"label {k!r}: the prefix {PREFIX!r} is reserved")
        size += len(k) + len(v)
    if size > MAX_LABELS_BYTES:
        raise InvalidInput(f"labels larger than {MAX_LABELS_BYTES} bytes")
    return labels


def own_labels(namespace: str, key: str, kind: str, parent_key: str) -> dict:
    lab = {L_NS: namespace, L_KEY: key, L_KIND: kind}
    if parent_key:
        lab[L_PARENT] = parent_key
    return lab


def user_labels(rec) -> dict:
    return {k: v for k, v in rec.labels.items() if not k.startswith(PREFIX)}


def is_ours(rec) -> bool:
    return L_KEY in rec.labels and L_NS in rec.labels


def is_live(rec) -> bool:
    """One of containerd's snapshots (not retired, not a spare)."""
    return is_ours(rec) and L_RETIRED not in rec.labels and L_SPARE not in rec.labels


def info(rec) -> dict:
    """The containerd Info of a store record: name (the key), parent (its key),
    kind, created/updated (ns since the epoch), labels."""
    lab = rec.labels
    created = int(lab.get(L_CREATED, rec.created))
    return {"name": lab[L_KEY], "parent": lab.get(L_PARENT, ""), "kind": lab[L_KIND],
            "created": created, "updated": int(lab.get(L_UPDATED, created)),
            "labels": user_labels(rec)}
