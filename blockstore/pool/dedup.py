"""Dedup index: ``pool.dedup`` (sha256 -> block) and its mirror ``pool.dedup_rev``.

Contract: every entry points at a live block whose content has that SHA-256,
and the two tables mirror each other exactly.  The hazard (docs/ARCHITECTURE.md
§5) is an entry outliving its block: new data would then be "deduplicated"
onto whatever reuses the block.  So ``remove_blocks`` is called in the same
txn as a block's last reference dies (Pool.dec), before the block can reach
the free map.

Costs: ``lookup`` is one LMDB get; ``add`` two puts; ``remove_blocks`` is
O(log N + k) for k entries in the range (a range scan of dedup_rev, so a
freed run costs nothing for blocks that were never indexed).  The caller
holds the LMDB write txn ``t`` (any txn for queries).
"""
from __future__ import annotations

from typing import Iterator

from .dbs import PoolDbs, pack_u64, unpack_u64

DIGEST_SIZE = 32


class DedupIndex:
    def __init__(self, dbs: PoolDbs):
        self.db = dbs.dedup
        self.rev = dbs.dedup_rev

    def lookup(self, t, digest: bytes) -> int | None:
        v = t.get(digest, db=self.db)
        return None if v is None else unpack_u64(v)[0]

    def add(self, t, digest: bytes, block: int) -> None:
        b = pack_u64(block)
        t.put(digest, b, db=self.db)
        t.put(b, digest, db=self.rev)

    def remove_blocks(self, t, start: int, n: int) -> int:
        """Drop the entries of every block in [start, start+n); returns how many."""
        end = start + n
        cur = t.cursor(db=self.rev)
        todo = []
        if cur.set_range(pack_u64(start)):
            for k, h in cur:
                b = unpack_u64(k)[0]
                if b >= end:
                    break
                todo.append((k, bytes(h)))
        for k, h in todo:
            t.delete(k, db=self.rev)
            if t.get(h, db=self.db) == k:
                t.delete(h, db=self.db)
        return len(todo)

    def remove_entry(self, t, digest: bytes, block: int) -> None:
        """Drop one (digest, block) pair from whichever table holds it (repair)."""
        b = pack_u64(block)
        if t.get(digest, db=self.db) == b:
            t.delete(digest, db=self.db)
        if t.get(b, db=self.rev) == digest:
            t.delete(b, db=self.rev)

    def entries(self, t) -> Iterator[tuple[bytes, int]]:
        for k, v in t.cursor(db=self.db):
            yield bytes(k), unpack_u64(v)[0]

    def rev_entries(self, t) -> Iterator[tuple[int, bytes]]:
        for k, v in t.cursor(db=self.rev):
            yield unpack_u64(k)[0], bytes(v)

    def count(self, t) -> int:
        return t.stat(self.db)["entries"]
