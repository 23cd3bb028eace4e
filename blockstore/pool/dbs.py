"""The pool's LMDB named databases, their key/value encodings and its counters.

The pool does not own the environment or any transaction: the txn layer opens
the environment and passes a raw ``lmdb.Transaction`` into every pool call
that touches metadata; the pool never commits or aborts.  Nothing here is
cached across transactions (an aborted transaction must leave no trace).

Every key is big-endian fixed width, so LMDB order is numeric order.

=============== ====================================== ==========================
database        key                                    value
=============== ====================================== ==========================
pool.meta       counter name (ascii)                   u64
pool.free       start u64                              n u64      (coalesced)
pool.pending    freeing txn id u64, start u64          n u64
pool.pending_rev start u64                             n u64, txn id u64 (mirror)
pool.shared     start u64                              n u64, count u64 (>= 2)
pool.dedup      sha256 (32 bytes)                      block u64
pool.dedup_rev  block u64                              sha256 (mirror)
pool.sums       start u64                              checksum of each block of
                                                       the run (xxh3-128: 16 bytes
                                                       each, sha256: 32; disjoint
                                                       runs, sums.py)
pool.trimmed    start u64                              n u64  (free blocks whose
                                                       disk space was given back:
                                                       trimmed.py)
pool.absent     block u64                              sha256 (32 bytes), source
                                                       (absent.py)
=============== ====================================== ==========================

Cost: one LMDB get/put per counter access.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, fields

import lmdb

from .. import errors

U64 = struct.Struct(">Q")
U64x2 = struct.Struct(">QQ")

pack_u64 = U64.pack
unpack_u64 = U64.unpack
pack_u64x2 = U64x2.pack
unpack_u64x2 = U64x2.unpack


def u64(value: bytes) -> int:
    return U64.unpack(value)[0]


@dataclass
class PoolDbs:
    """Handles of the pool's named databases (all names prefixed ``pool.``)."""

    meta: object
    free: object
    pending: object
    shared: object
    dedup: object
    dedup_rev: object
    pending_rev: object  # block-indexed mirror of ``pending`` (liveness checks in O(log n))
    sums: object         # per-block checksums of written runs (sums.py)
    trimmed: object      # free runs punched out of the data file (trimmed.py)
    absent: object       # blocks of lazily pulled snapshots not fetched yet (absent.py)

    @classmethod
    def open(cls, env: lmdb.Environment, txn: lmdb.Transaction | None = None) -> "PoolDbs":
        """Open (creating when missing) every pool database.

        With ``txn`` (a write txn) the handles are created inside it and become
        durable with its commit; without, each ``open_db`` runs its own write
        txn, so the calling thread must not hold a write txn then.
        """
        handles = {}
        for f in fields(cls):
            name = ("pool." + f.name).encode()
            handles[f.name] = env.open_db(name, txn=txn, create=True)
        return cls(**handles)


# Counters kept in pool.meta.  Every one is maintained incrementally by the
# code that changes the tables and recomputed by self_check() / rebuild().
TOTAL_BLOCKS = b"total_blocks"        # blocks the pool manages (committed size)
FREE_BLOCKS = b"free_blocks"          # sum of n over pool.free
PENDING_BLOCKS = b"pending_blocks"    # sum of n over pool.pending
SHARED_BLOCKS = b"shared_blocks"      # sum of n over pool.shared
SHARED_EXTRA = b"shared_extra_refs"   # sum of n * (count - 1) over pool.shared
DEDUP_HITS = b"dedup_hits"            # cumulative blocks not written thanks to dedup
ZERO_BLOCKS = b"zero_blocks"          # cumulative zero blocks not stored
HINT = b"alloc_hint"                  # next-fit allocation cursor
BLOCK_SIZE = b"block_size"            # fixed at the first write
TRIMMED_BLOCKS = b"trimmed_blocks"    # sum of n over pool.trimmed
# Not a counter: the id of the write txn whose deferred frees are trimmed when
# released (pending.py, Pool.trim_when_released); 0 or absent: none.
TRIM_ON_RELEASE = b"trim_on_release"

COUNTERS = (TOTAL_BLOCKS, FREE_BLOCKS, PENDING_BLOCKS, SHARED_BLOCKS,
            SHARED_EXTRA, DEDUP_HITS, ZERO_BLOCKS, HINT)


class Meta:
    """Named u64 counters in ``pool.meta`` (absent reads as 0)."""

    __slots__ = ("db",)

    def __init__(self, db):
        self.db = db

    def get(self, t, name: bytes) -> int:
        v = t.get(name, db=self.db)
        if v is None:
            return 0
        if len(v) != 8:
            raise errors.Corruption(f"pool.meta {name.decode()} has a {len(v)}-byte value, expected 8")
        return U64.unpack(v)[0]

    def set(self, t, name: bytes, value: int) -> None:
        if value < 0:
            raise errors.Corruption(f"pool.meta {name.decode()} would become negative ({value})")
        t.put(name, U64.pack(value), db=self.db)

    def add(self, t, name: bytes, delta: int) -> int:
        if not delta:
            return self.get(t, name)
        v = self.get(t, name) + delta
        self.set(t, name, v)
        return v
