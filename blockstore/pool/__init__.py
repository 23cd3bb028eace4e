"""Layer 2, pool: data file(s) of fixed-size blocks and their allocator.

Public contract (see pool.py for what the caller must hold, and each module
for its costs):

* ``PoolDbs``  -- the pool's LMDB named databases (dbs.py);
* ``DataFile`` -- one file of fixed-size blocks (datafile.py);
* ``Pool``     -- write / inc / dec / release_pending / sync / read plus
  introspection, self_check and rebuild (pool.py, check.py);
* ``HOLE``     -- run start meaning "zero blocks, not stored";
* ``BlockReader`` / ``BlockWriter`` -- the pool bound to one transaction
  (txnblocks.py): what the txn layer hands the layers above as ``txn.blocks``.

Internals, one concept per module: runs.py (run maps and interval math),
allocator.py (free extents, growth), pending.py (deferred frees),
refcounts.py (shared run-length counts), dedup.py (SHA-256 index),
sums.py (per-block checksums: XXH3-128, or SHA-256 with dedup).
"""
from .datafile import DataFile
from .dbs import PoolDbs
from .pool import HOLE, Pool, PoolStats
from .txnblocks import BlockReader, BlockWriter

__all__ = ["HOLE", "BlockReader", "BlockWriter", "DataFile", "Pool", "PoolDbs", "PoolStats"]
