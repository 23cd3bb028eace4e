"""Absent blocks: allocated and referenced, whose bytes are not local yet.

A lazily pulled snapshot (docs/REMOTE-FORMAT.md §6) has every block it
needs allocated and referenced like any other, but the bytes of some are
still only on a remote.  ``pool.absent`` names each such block with the
SHA-256 its bytes must have and the source (a remote's name) to fetch them
from.  Reads through a transaction's pool view (``lazy.LazyReads``) fetch
them on first use; a bulk fill writes verified bytes
(``Pool.write_verified``) and ``Pool.record_written`` drops the entry; a
block whose count reaches 0 loses its entry in the same
transaction (``Pool.dec``), so an entry always names a live block.

=============== ====================== =====================================
database        key                    value
=============== ====================== =====================================
pool.absent     block u64be            sha256 (32 bytes) | source (utf-8, opaque
                                       to the pool: the fetcher's locator)
=============== ====================== =====================================

Counter ``absent_blocks`` (pool.meta): entries in the table; one get tells
a transaction whether any read can need a fetch.
Cost: one cursor seek per read range that is checked.
"""
from __future__ import annotations

import itertools
import operator
from typing import Iterator

from .dbs import Meta, PoolDbs, pack_u64, u64

ABSENT_BLOCKS = b"absent_blocks"
DIGEST = 32
_DIGEST_OF = operator.itemgetter(slice(0, DIGEST))    # an entry's value -> its SHA-256


class Absent:
    __slots__ = ("db", "meta")

    def __init__(self, dbs: PoolDbs, meta: Meta):
        self.db = dbs.absent
        self.meta = meta

    def count(self, t) -> int:
        return self.meta.get(t, ABSENT_BLOCKS)

    def add(self, t, start: int, digests: list[bytes], source) -> None:
        """Blocks [start, start+len(digests)) are absent with these SHA-256 digests;
        ``source``: one string for all, or one per block (opaque to the pool: what
        the fetcher needs to find the block, e.g. a remote and a place in it).
        One ``putmulti`` call for the run (an eager pull adds one entry per block
        it fetches: the per-block put calls were a large part of its CPU)."""
        if not set(map(len, digests)) <= {DIGEST}:
            raise ValueError("absent blocks are named by a 32-byte SHA-256")
        if isinstance(source, str):
            tail = source.encode()
            # at C speed (``bytes`` digests, the common case): one value per block
            vals = (list(map(operator.add, digests, itertools.repeat(tail)))
                    if all(map(bytes.__instancecheck__, digests)) else
                    [bytes(d) + tail for d in digests])
        else:
            vals = [bytes(d) + src.encode() for d, src in zip(digests, source)]
        items = zip(map(pack_u64, range(start, start + len(digests))), vals)
        _, added = t.cursor(db=self.db).putmulti(items, overwrite=False)
        if added != len(digests):
            raise ValueError(f"a block of {start}..{start + len(digests) - 1} is already absent")
        self.meta.add(t, ABSENT_BLOCKS, len(digests))

    def matching(self, t, start: int, digests) -> list[tuple[int, int]]:
        """The sub-runs [i, j) of blocks start.. that are absent with these
        digests.  The common case (every block still absent as it was made):
        one cursor walk over the run's entries, values only, compared at C
        speed; otherwise one ``getmulti`` call for the run."""
        n = len(digests)
        if n == 0:
            return []
        want = digests if isinstance(digests, list) else list(digests)
        cur = t.cursor(db=self.db)
        if cur.set_key(pack_u64(start)):
            vals = list(itertools.islice(cur.iternext(keys=False), n))
            # n entries from ``start`` whose last key is start+n-1: keys are distinct
            # and increasing, so they are exactly start..start+n-1
            if len(vals) == n and u64(cur.key()) == start + n - 1 \
                    and list(map(_DIGEST_OF, vals)) == want:
                return [(0, n)]
        got = cur.getmulti(list(map(pack_u64, range(start, start + n))))
        have = {u64(k): bytes(v[:DIGEST]) for k, v in got}
        out, i = [], 0
        while i < n:
            if have.get(start + i) != digests[i]:
                i += 1
                continue
            j = i + 1
            while j < n and have.get(start + j) == digests[j]:
                j += 1
            out.append((i, j))
            i = j
        return out

    def take_matching(self, t, start: int, digests) -> list[tuple[int, int]]:
        """``matching``, and drop the entries of those blocks (one positioned
        cursor delete per block, no key search)."""
        runs = self.matching(t, start, digests)
        cur = t.cursor(db=self.db)
        dropped = 0
        for i, j in runs:
            if not cur.set_key(pack_u64(start + i)):
                raise ValueError(f"block {start + i} is not absent")
            for _ in range(j - i):
                cur.delete()
            dropped += j - i
        if dropped:
            self.meta.add(t, ABSENT_BLOCKS, -dropped)
        return runs

    def range(self, t, start: int, n: int) -> list[tuple[int, bytes, str]]:
        """(block, digest, source) of the absent blocks in [start, start+n)."""
        return [(b, bytes(v[:DIGEST]), bytes(v[DIGEST:]).decode())
                for b, v in self._entries(t, start, n)]

    def digests(self, t, start: int, n: int) -> dict[int, bytes]:
        """{block: sha256} of the absent blocks in [start, start+n) (``range``
        without decoding the sources: what a bulk fill checks per block)."""
        return {b: bytes(v[:DIGEST]) for b, v in self._entries(t, start, n)}

    def _entries(self, t, start: int, n: int):
        """(block, raw value) of the absent blocks in [start, start+n): one cursor pass."""
        end = start + n
        cur = t.cursor(db=self.db)
        if not cur.set_range(pack_u64(start)):
            return
        for k, v in cur:
            b = u64(k)
            if b >= end:
                return
            yield b, v

    def following(self, t, start: int, limit: int) -> list[tuple[int, bytes, str]]:
        """Absent blocks start, start+1, ... while consecutive, at most ``limit``."""
        out = []
        cur = t.cursor(db=self.db)
        if not cur.set_key(pack_u64(start)):
            return out
        b = start
        for k, v in cur:
            if u64(k) != b or len(out) >= limit:
                break
            out.append((b, bytes(v[:DIGEST]), bytes(v[DIGEST:]).decode()))
            b += 1
        return out

    def remove(self, t, start: int, n: int) -> int:
        """Drop the entries of [start, start+n); returns how many there were."""
        gone = [b for b, _, _ in self.range(t, start, n)]
        for b in gone:
            t.delete(pack_u64(b), db=self.db)
        if gone:
            self.meta.add(t, ABSENT_BLOCKS, -len(gone))
        return len(gone)

    def drop(self, t, blocks: list[int]) -> None:
        """Drop the entries of ``blocks``, each known to exist."""
        for b in blocks:
            t.delete(pack_u64(b), db=self.db)
        if blocks:
            self.meta.add(t, ABSENT_BLOCKS, -len(blocks))

    def entries(self, t) -> Iterator[tuple[int, bytes, str]]:
        for k, v in t.cursor(db=self.db):
            yield u64(k), bytes(v[:DIGEST]), bytes(v[DIGEST:]).decode()
