"""The pool as one transaction sees it: the only door to blocks above the txn layer.

Every ``Pool`` method that takes a raw LMDB transaction is called here (or
inside pool/ and txn.py), bound to the transaction that owns this object;
the layers above (btree, fs, catalog, api) hold a ``txn.blocks`` and never
the LMDB transaction's pool.  ``BlockReader`` is what a read (or write)
transaction offers: reads through the transaction's view of the pool
(verified when the store asks for it, fetching absent blocks of a lazily
pulled snapshot), digests, refcounts and the pool's census.
``BlockWriter`` adds what only a write transaction may do: write new
blocks, take and drop references, trim, repair.

Cost: one small object per transaction; every method is one call into the
pool (no copies, no caching).
"""
from __future__ import annotations

from typing import Iterator

from .pool import Pool, PoolStats


class BlockReader:
    """Reads and introspection of the pool, bound to one transaction ``t``.

    ``view`` is the pool as the transaction reads it (the pool itself, or
    its verifying and/or absent-fetching view)."""

    __slots__ = ("_pool", "_t", "_view", "block_size")

    def __init__(self, pool: Pool, t, view=None):
        self._pool = pool
        self._t = t
        self._view = pool if view is None else view
        self.block_size = pool.block_size

    # ---------------------------------------------------------------- bytes
    def read(self, start: int, n: int) -> bytes:
        """The bytes of n blocks from ``start`` (a HOLE run reads as zeros)."""
        return self._view.read(start, n)

    def readinto(self, start: int, offset: int, buf, nowait: bool = False) -> None:
        """Fill ``buf`` from byte ``offset`` of the run at ``start`` (Pool.readinto)."""
        self._view.readinto(start, offset, buf, nowait=nowait)

    def read_raw(self, start: int, n: int) -> bytes:
        """The bytes as stored: never verified, never fetched (for the checker,
        which reports damage rather than raising on it)."""
        return self._pool.read(start, n)

    # ---------------------------------------------------------------- checksums
    @property
    def checksum(self) -> str:
        """The algorithm of the pool's per-block checksums (pool.sums)."""
        return self._pool.checksum

    @property
    def digest_size(self) -> int:
        return self._pool.digest_size

    def hash_blocks(self, data) -> bytes:
        """The concatenated ``checksum`` digests of each block of ``data``."""
        return self._pool.sums.hash(data, self.block_size)

    def digests(self, start: int, n: int) -> list[bytes | None]:
        """The recorded digest of each block of [start, start+n) (None: none kept)."""
        return self._pool.digests(self._t, start, n)

    # ---------------------------------------------------------------- absent blocks
    def absent_count(self) -> int:
        """Blocks reserved but not fetched yet (a lazily pulled snapshot's)."""
        return self._pool.absent.count(self._t)

    def absent_range(self, start: int, n: int):
        """(block, sha256, source) of each absent block of [start, start+n)."""
        return self._pool.absent.range(self._t, start, n)

    def absent_digests(self, start: int, n: int) -> dict[int, bytes]:
        """{block: sha256} of the absent blocks of [start, start+n) (no sources)."""
        return self._pool.absent.digests(self._t, start, n)

    def write_absent_verified(self, runs) -> list:
        """Verify and write the bytes of absent blocks without a write txn, this
        (read) transaction keeping them from reuse meanwhile; record them later
        with ``BlockWriter.record_written`` (Pool.write_verified)."""
        return self._pool.write_verified(self._t, runs)

    # ---------------------------------------------------------------- census
    def refcount(self, block: int) -> int:
        """0 if free, pending or outside the pool, else 1 or the shared count."""
        return self._pool.refcount(self._t, block)

    def free_runs(self) -> Iterator[tuple[int, int]]:
        return self._pool.free_runs(self._t)

    def pending_runs(self) -> Iterator[tuple[int, int, int]]:
        return self._pool.pending_runs(self._t)

    def shared_runs(self) -> Iterator[tuple[int, int, int]]:
        return self._pool.shared_runs(self._t)

    def dedup_entries(self) -> Iterator[tuple[bytes, int]]:
        return self._pool.dedup_entries(self._t)

    def total_blocks(self) -> int:
        return self._pool.total_blocks(self._t)

    def pending_blocks(self) -> int:
        return self._pool.pending_blocks(self._t)

    def untrimmed_free_blocks(self) -> int:
        return self._pool.untrimmed_free_blocks(self._t)

    def stats(self) -> PoolStats:
        return self._pool.stats(self._t)

    def releasable_pending(self, limit_txnid: int) -> int:
        """Pending blocks no reader older than ``limit_txnid`` holds (Pool.releasable_pending)."""
        return self._pool.releasable_pending(self._t, limit_txnid)

    def trimmed_count(self) -> int:
        """Free blocks whose disk space was given back (pool.trimmed)."""
        return self._pool.trimmed_count(self._t)

    def self_check(self, *, verify_data: bool = False) -> list[str]:
        """The pool's metadata invariants (Pool.self_check)."""
        return self._pool.self_check(self._t, verify_data=verify_data)


class BlockWriter(BlockReader):
    """A write transaction's blocks: everything of BlockReader, plus changes."""

    __slots__ = ()

    def write(self, data, owned: bool = False) -> list[tuple[int, int]]:
        """Store whole blocks (``data``: bytes-like, or a list of pieces of whole
        blocks); returns runs (start or HOLE, n) covering them (Pool.write)."""
        return self._pool.write(self._t, data, owned)

    def inc(self, start: int, n: int) -> None:
        """One more reference to each block of the run (HOLE runs are ignored)."""
        self._pool.inc(self._t, start, n)

    def dec(self, start: int, n: int) -> None:
        """One reference fewer; blocks reaching none are freed (pending until no
        reader can see them)."""
        self._pool.dec(self._t, start, n)

    def release_pending(self, limit_txnid: int) -> int:
        """Free the blocks freed in txns W <= limit_txnid (never the current one)."""
        return self._pool.release_pending(self._t, limit_txnid)

    def written(self, runs) -> None:
        """Wait until the blocks of ``runs`` are written: a buffer handed to
        ``write`` with ``owned`` may then be reused (Pool.written)."""
        self._pool.written(runs)

    def trim(self) -> int:
        """Give free blocks' disk space back to the file system (Pool.trim)."""
        return self._pool.trim(self._t)

    def trim_when_released(self) -> None:
        """The frees this transaction deferred are trimmed when a later write
        releases them (Pool.trim_when_released: a removal's blocks)."""
        self._pool.trim_when_released(self._t)

    def reserve_absent(self, digests, source: str) -> list[tuple[int, int]]:
        """Runs of new blocks that stay absent until filled (Pool.reserve_absent)."""
        return self._pool.reserve_absent(self._t, digests, source)

    def record_written(self, written) -> int:
        """Record blocks ``write_absent_verified`` wrote (Pool.record_written)."""
        return self._pool.record_written(self._t, written)

    def forget_dedup(self, start: int, n: int) -> None:
        """Drop the dedup index entries of the blocks of [start, start+n) (repair)."""
        self._pool.index.remove_blocks(self._t, start, n)

    def rebuild(self, refs: list[tuple[int, int, int]]) -> list[str]:
        """Repair the pool's tables from every referenced run (Pool.rebuild)."""
        return self._pool.rebuild(self._t, refs)
