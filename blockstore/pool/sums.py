"""Per-block checksums: ``pool.sums`` (start block -> digests of a run).

The algorithm is the store's, fixed when it is created (``ALGORITHMS``):
``xxh3-128`` (16-byte digests, non-cryptographic, >10 GB/s) by default, or
``sha256`` (32 bytes) -- always with dedup, whose index needs SHA-256 and
whose digests the pool then reuses here, and for stores created before the
choice existed.  D below is the store's digest size.

Contract:

* ``pool.sums`` is a run map of DISJOINT entries: key = u64 start block,
  value = the concatenated D-byte digests of blocks
  [start, start + len(value) // D).  The entry covering a block holds the
  digest of the content last written to it by ``Pool.write``.
* ``put_run`` (called by ``Pool.write`` for every run it writes, in the same
  txn) first cuts [start, start+n) out of the entries that overlap it (the
  parts outside are re-put: the head keeps its key, the tail is keyed at
  start+n), then puts the new digests in chunks of at most ``CHUNK`` blocks.
  Chunking bounds the cost of a later cut (at most two partial chunks of
  CHUNK * D bytes are rewritten, whatever the size of the original write)
  and keeps a value on one LMDB overflow page: CHUNK = 4064 // D blocks
  (127 SHA-256 or 254 XXH3-128 digests, 4064 bytes).
* Entries of blocks that became free are NOT dropped when the block dies:
  they are stale but harmless (only referenced blocks are verified, and the
  next write of the block replaces its entry).  No entry may reach beyond
  ``total_blocks`` (self_check reports it; rebuild drops it).
* A block with no entry (written before pool.sums existed) has no digest:
  scrub counts it as unverifiable, never as corrupt.

Why disjoint rather than "largest start that covers b wins" over overlapping
entries: dropping every entry whose start lies in a rewritten run would also
drop the digests of that entry's blocks beyond the run, which are still
live; an older, stale entry could then answer for them (false corruption).

Costs: ``put_run`` of n blocks: O(log N) cursor steps + one delete per
entry inside the run + ceil(n / CHUNK) puts; ``digests`` of n blocks:
O(log N + n / CHUNK).  The caller holds the LMDB txn ``t`` (the write txn
for ``put_run``/``drop``).

Hashing later (``put_later``): a writer that hands over a buffer it will
never change again may have its digests computed on a background thread
(one per process, the native hash with the GIL released) while it goes on;
they are put into the same txn ``t`` by ``flush(t)``, which the txn layer
calls before every commit, and before any read of ``pool.sums`` through
``t``, so nothing that reads the table, nor what is committed, can tell the
difference.  Pending digests of a txn that was aborted are dropped at the
next ``flush`` of a write txn (one write txn at a time per process: Env.lock).
The buffers waiting to be hashed are bounded: past ``LATER_MAX_BYTES`` the
writer puts all but the newest at once (a long import is one txn).
Cost: the write returns without waiting for the hash (for SHA-256 about
0.5 ms per MiB per core); the commit waits for the hashes not done yet.  ``put_computed`` takes digests
another thread computes (the data file's background writer hashes what it
writes, see ``Pool.write``) under the same rules.
"""
from __future__ import annotations

import threading
from typing import Iterator, NamedTuple

from blockstore.native import sha256_many, xxh128_many

from . import background
from . import runs as run_ops
from .dbs import PoolDbs, pack_u64, unpack_u64

# name -> (batch hash(data, block_size) -> concatenated digests, digest size)
ALGORITHMS = {
    "sha256": (sha256_many, 32),        # 2 threads from 1 MiB, ~1.7 GB/s per core
    "xxh3-128": (xxh128_many, 16),      # calling thread, >10 GB/s
}
ENTRY_BYTES = 4064     # an entry's value at most: one LMDB overflow page (4096 - header)
LATER_MAX_BYTES = 16 << 20      # data held for background hashing, at most (then put early)
GROUP_BYTES = 4 << 20           # buffers handed to the hashing thread together


class _Group:
    """Buffers hashed by one background job, in order; ``result(i)``: digests of buffer i.
    Not started: whoever needs a result first hashes the whole group itself."""

    __slots__ = ("t", "block_size", "buffers", "nbytes", "fut", "digests", "lock")

    def __init__(self, t, block_size: int):
        self.t = t                          # the write txn of every buffer in it
        self.block_size = block_size
        self.buffers: list = []
        self.nbytes = 0
        self.fut = None
        self.digests: list[bytes] | None = None
        self.lock = threading.Lock()

    def start(self, hash_fn) -> None:
        bufs, bs = self.buffers, self.block_size
        self.fut = background.executor("sums").submit(lambda: [hash_fn(b, bs) for b in bufs])

    def result(self, hash_fn, i: int) -> bytes:
        with self.lock:
            if self.digests is None:
                if self.fut is None:
                    self.digests = [hash_fn(b, self.block_size) for b in self.buffers]
                else:
                    self.digests = self.fut.result()
                self.buffers = []           # hashed: the data may go
            return self.digests[i]


class _Computed:
    """Digests computed elsewhere (``DataFile.pwrite_later(digest=...)``): stands
    where a _Group stands; ``result`` waits for them."""

    __slots__ = ("t", "source")

    def __init__(self, t, source):
        self.t = t                          # the write txn they belong to
        self.source = source                # .result() -> the digests

    def result(self, hash_fn, i: int) -> bytes:
        return self.source.result()


class _Later(NamedTuple):
    """One buffer written to ``runs`` whose digests are still to be put."""
    runs: list
    group: "_Group | _Computed"     # hashes it (its txn: group.t)
    index: int              # its place in the group
    nbytes: int


def default_algorithm(dedup: bool) -> str:
    """The checksum of a new store: SHA-256 with dedup (the index needs it), else XXH3-128."""
    return "sha256" if dedup else "xxh3-128"


class Sums:
    def __init__(self, dbs: PoolDbs, algorithm: str = "sha256"):
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown checksum algorithm {algorithm!r}")
        self.db = dbs.sums
        self.algorithm = algorithm
        self.hash, self.digest_size = ALGORITHMS[algorithm]
        self.chunk = ENTRY_BYTES // self.digest_size    # 127 or 254 blocks per entry at most
        self._later: list[_Later] = []   # written, digests not put yet (oldest first)
        self._open_group: _Group | None = None      # collecting buffers, not handed over yet
        self._later_bytes = 0
        self._later_lock = threading.Lock()

    # ------------------------------------------------------------------ writes
    def put_later(self, t, data, block_size: int, runs) -> None:
        """Record the digests of ``data`` (never changed by the caller again), written
        to ``runs`` [(start, n)] in order, computed on the background thread.

        Buffers are handed over in groups of ``GROUP_BYTES``: one background job
        (one thread wake-up, about 0.1 ms) per group rather than per
        write.  A group still open when the digests are needed is hashed by the
        caller of ``flush``/``_put_pending``."""
        n = memoryview(data).nbytes
        start = []
        with self._later_lock:
            g = self._open_group
            if g is None or g.t is not t or g.block_size != block_size:
                if g is not None:
                    start.append(g)
                g = self._open_group = _Group(t, block_size)
            self._later.append(_Later(runs, g, len(g.buffers), n))
            g.buffers.append(data)
            g.nbytes += n
            self._later_bytes += n
            if g.nbytes >= GROUP_BYTES:
                start.append(g)
                self._open_group = None
            full = self._later_bytes > LATER_MAX_BYTES
        for g in start:
            g.start(self.hash)
        if full:
            self._put_pending(t, keep_last=True)

    def put_computed(self, t, runs, source, nbytes: int) -> None:
        """Record the digests of the blocks just written to ``runs``, which
        ``source.result()`` gives once computed elsewhere (the data file's
        background writer); put into ``t`` like those of ``put_later``."""
        with self._later_lock:
            self._later.append(_Later(runs, _Computed(t, source), 0, nbytes))
            self._later_bytes += nbytes
            full = self._later_bytes > LATER_MAX_BYTES
        if full:
            self._put_pending(t, keep_last=True)

    def flush(self, t) -> None:
        """Put every digest pending for the write txn ``t`` (waits for their hashing);
        drop those of txns that are no more (aborted)."""
        self._put_pending(t, drop_others=True)

    def _put_pending(self, t, drop_others: bool = False, keep_last: bool = False) -> None:
        if not self._later:
            return
        with self._later_lock:
            mine = [e for e in self._later if e.group.t is t]
            keep = [] if drop_others else [e for e in self._later if e.group.t is not t]
            if keep_last and mine:
                # The newest group stays (still hashing, or not handed over yet).
                last = mine[-1].group
                keep += [e for e in mine if e.group is last]
                mine = [e for e in mine if e.group is not last]
            self._later = keep
            self._later_bytes = sum(e.nbytes for e in keep)
            if any(e.group is self._open_group for e in mine):
                self._open_group = None     # hashed below: takes no more buffers
        ds = self.digest_size
        for runs, g, i, _ in mine:
            digests = g.result(self.hash, i)
            pos = 0
            for s, k in runs:
                self._put_run(t, s, digests[pos * ds:(pos + k) * ds])
                pos += k

    def put_run(self, t, start: int, digests: bytes) -> None:
        """Record the digests of the freshly written blocks [start, start + len(digests)//D)."""
        self._put_pending(t)
        self._put_run(t, start, digests)

    def _put_run(self, t, start: int, digests: bytes) -> None:
        ds, chunk = self.digest_size, self.chunk
        n = len(digests) // ds
        if n == 0:
            return
        self.cut(t, start, n)
        db = self.db
        for i in range(0, n, chunk):
            t.put(pack_u64(start + i), digests[i * ds:(i + chunk) * ds], db=db)

    def cut(self, t, start: int, n: int) -> None:
        """Remove the digests of [start, start+n) (parts of entries outside it are kept)."""
        end = start + n
        db, ds = self.db, self.digest_size
        hits = self._overlapping(t, start, end)
        for s, v in hits:
            t.delete(pack_u64(s), db=db)
        if not hits:
            return
        s0, v0 = hits[0]
        if s0 < start:
            t.put(pack_u64(s0), v0[:(start - s0) * ds], db=db)
        s1, v1 = hits[-1]
        e1 = s1 + len(v1) // ds
        if e1 > end:
            t.put(pack_u64(end), v1[(end - s1) * ds:], db=db)

    def _overlapping(self, t, start: int, end: int) -> list[tuple[int, bytes]]:
        out = []
        ds = self.digest_size
        cur = t.cursor(db=self.db)
        if not run_ops.floor(cur, start) and not cur.first():
            return out
        for k, v in cur:
            s = unpack_u64(k)[0]
            if s >= end:
                break
            if s + len(v) // ds > start:
                out.append((s, bytes(v)))
        return out

    # ------------------------------------------------------------------ queries
    def digests(self, t, start: int, n: int) -> list[bytes | None]:
        """The digest of every block of [start, start+n), None where none is kept."""
        self._put_pending(t)
        out: list[bytes | None] = [None] * n
        ds = self.digest_size
        for s, v in self._overlapping(t, start, start + n):
            e = s + len(v) // ds
            for b in range(max(s, start), min(e, start + n)):
                i = (b - s) * ds
                out[b - start] = v[i:i + ds]
        return out

    def span(self, t, start: int, n: int) -> bytes | None:
        """The digests of [start, start+n) concatenated, or None when a block has
        none.  One slice per entry (``digests`` makes one per block): the
        verified-read path compares a whole run with one bytes comparison."""
        self._put_pending(t)
        ds = self.digest_size
        parts, at = [], start
        for s, v in self._overlapping(t, start, start + n):
            if s > at:
                return None
            e = min(s + len(v) // ds, start + n)
            if e > at:
                parts.append(v[(at - s) * ds:(e - s) * ds])
                at = e
        return b"".join(parts) if at == start + n else None

    def entries(self, t) -> Iterator[tuple[int, bytes]]:
        """Every entry in block order as (start, digests)."""
        self._put_pending(t)
        for k, v in t.cursor(db=self.db):
            yield unpack_u64(k)[0], bytes(v)

    def count(self, t) -> int:
        self._put_pending(t)
        return t.stat(self.db)["entries"]

    # ------------------------------------------------------------------ checks
    def problems(self, t, total: int) -> list[tuple[int, int, str]]:
        """(key, n, sentence) for every malformed, overlapping or out-of-pool entry."""
        self._put_pending(t)
        out = []
        reach = 0
        ds = self.digest_size
        for k, v in t.cursor(db=self.db):
            if len(k) != 8:
                out.append((-1, 0, f"pool.sums key {bytes(k).hex()} is not a u64 block number."))
                continue
            s = unpack_u64(k)[0]
            if not v or len(v) % ds:
                out.append((s, 0, f"pool.sums entry at block {s} has a {len(v)}-byte value, "
                                  f"not a positive multiple of {ds} (the {self.algorithm} "
                                  f"digest size)."))
                continue
            n = len(v) // ds
            if s + n > total:
                out.append((s, n, f"pool.sums entry {run_ops.fmt_run(s, n)} reaches beyond the pool's "
                                  f"{total} blocks."))
            elif s < reach:
                out.append((s, n, f"pool.sums entry {run_ops.fmt_run(s, n)} overlaps an earlier entry "
                                  f"(which reaches block {reach - 1})."))
            reach = max(reach, s + n)
        return out

    def drop_key(self, t, key: int) -> None:
        self._put_pending(t)
        t.delete(pack_u64(key), db=self.db)
