"""One layer -> one snapshot: apply it in a working clone of the parent, verify, commit.

``import_layer`` is atomic from the caller's view: it writes through
``Store.staging`` (api/staging.py), so on any error (hostile entry, damaged
stream, digest mismatch, interrupt) the working clone is removed with its
space and no snapshot appears; a killed import's clone is found and removed
by the store's next writer.  Cost: the
layer's size (each byte is read, hashed and written once) plus O(1) for
the clone and the snapshot.
"""
from __future__ import annotations

import hashlib

from ..errors import InvalidInput
from . import blobs, safety
from .compress import open_stream
from .layer_in import apply_stream

LABEL_CHAIN = "oci.chain_id"
LABEL_DIFF = "oci.diff_id"
LABEL_DIGEST = "oci.digest"


class Hashing:
    """A reader that hashes (sha256) and counts what passes through."""

    def __init__(self, inner):
        self.inner = inner
        self.h = hashlib.sha256()
        self.n = 0

    def read(self, n: int = -1) -> bytes:
        b = self.inner.read(n)
        self.h.update(b)
        self.n += len(b)
        return b

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    def digest(self) -> str:
        return "sha256:" + self.h.hexdigest()


def chain_id(prev: str | None, diff_id: str) -> str:
    """OCI ChainID: DiffID of the first layer, then sha256(prev + " " + DiffID)."""
    if prev is None:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{prev} {diff_id}".encode()).hexdigest()


def import_layer(store, raw, name: str, parent: str | None, *, limits: safety.Limits | None = None,
                 digest: str | None = None, diff_id: str | None = None,
                 labels: dict | None = None, progress=None, what: str = "layer",
                 reopen=None, record_diff_id: bool = True):
    """Apply the layer read from binary reader ``raw`` onto ``parent`` (or an empty
    tree) and commit it as snapshot ``name``; returns its record.  ``digest``
    (of the bytes as stored) and ``diff_id`` (of the uncompressed tar) are
    verified when given.  ``reopen``: a function opening the blob again; the
    snapshot then keeps the blob (``blobs.keep``) and records its digest.
    ``record_diff_id=False`` with none of those: the layer is not hashed at
    all and the snapshot gets no ``oci.diff_id`` label (a tar made here, from
    a directory, whose digest nobody asks for)."""
    limits = limits or safety.Limits()
    hashed = record_diff_id or digest is not None or diff_id is not None or reopen is not None
    with store.staging(name, parent) as st:
        hraw = Hashing(raw) if hashed else raw
        stream, _ = open_stream(hraw)
        hdec = Hashing(stream) if hashed else stream
        apply_stream(st, hdec, limits, progress, what)
        if not hashed:
            while stream.read(1 << 20):           # the tar's trailing zero blocks
                pass
            return st.commit(dict(labels or {}))
        hdec.drain()
        hraw.drain()
        if digest is not None and hraw.digest() != digest:
            raise InvalidInput(f"{what}: digest mismatch: expected {digest}, "
                               f"got {hraw.digest()}")
        if diff_id is not None and hdec.digest() != diff_id:
            raise InvalidInput(f"{what}: diff_id mismatch: expected {diff_id}, "
                               f"got {hdec.digest()}")
        if reopen is not None:
            with reopen() as again:
                blobs.keep(st, again, hraw.digest())
        lab = dict(labels or {})
        lab.setdefault(LABEL_DIFF, hdec.digest())
        if reopen is not None:
            lab.setdefault(LABEL_DIGEST, hraw.digest())
        return st.commit(lab)
