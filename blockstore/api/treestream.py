"""A snapshot as a stream of its items with blocks named by SHA-256, and back.

What a remote tier needs from the store (docs/REMOTE-FORMAT.md §4), through
the API only:

* ``SnapshotReader(store, name)``: the snapshot's B-tree items in key order
  (``items``: key, plain payload, and for a value that owns blocks the run),
  the SHA-256 of a run's blocks (``digests``: from ``pool.absent`` for blocks
  not fetched yet, from ``pool.sums`` when the store's checksum is SHA-256,
  else read and hashed) and its bytes (``read``).  One read transaction and
  a pin for the reader's life keep every block from reuse.
* ``encode_items``/``decode_items``: the item stream's byte format.
* ``build_snapshot``: a new snapshot from such a stream in one write
  transaction; each block is either an existing local block with that
  SHA-256 (a reference, ``local``) or a new absent block (``pool.absent``)
  that a fetcher fills later.  The caller fills or leaves them absent.

Items, not B-tree nodes, are the unit: node ids and pool block numbers are
local, the fs items (FORMAT.md §4) and the block contents are not, so an
item stream rebuilds the same tree (inode numbers, generations, directory
indexes, xattrs) on any store.  A value that owns a run becomes its list of
block digests; a rebuilt EXTENT may be split into several (the local pool
may place the run in pieces): the file's bytes are the same.
"""
from __future__ import annotations

import operator
import struct
import time
from typing import Iterable, Iterator, NamedTuple

from .. import catalog
from ..btree import bulk, values
from ..btree import tree as bt
from ..btree.store import NodeStore
from ..catalog import TreeRecord
from ..errors import AlreadyExists, Corruption, InvalidInput, Unsupported
from ..fs import stream as fsstream
from ..pool import HOLE

DIGEST = 32
MAGIC = b"BSITEMS1"
_HEAD = struct.Struct(">HBI")          # key length, tag, payload length
_N = struct.Struct(">I")
_DIGEST = struct.Struct(f"{DIGEST}s")
_FIRST = operator.itemgetter(0)


class Item(NamedTuple):
    key: bytes
    payload: bytes
    run: tuple[int, int] | None         # local (start, n) of a value owning blocks
    digests: list | None = None         # SHA-256 of each block of the run (streams)


class SnapshotReader:
    """Read one snapshot's items and blocks; close it (or use ``with``)."""

    def __init__(self, store, name: str):
        self.store = store
        self.name = name
        self._cm = store.env.read()
        self.r = self._cm.__enter__()
        try:
            self.record = catalog.get(self.r, name)
            if self.record.kind != "snapshot":
                raise InvalidInput(f"{name!r} is a {self.record.kind}; only snapshots are pushed "
                                   f"(blockstore commit it first)")
        except BaseException:
            self.close()
            raise
        self.blocks = self.r.blocks
        self.bs = store.block_size

    def close(self) -> None:
        if self._cm is not None:
            cm, self._cm = self._cm, None
            cm.__exit__(None, None, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def items(self) -> Iterator[Item]:
        ns = NodeStore.of(self.r)
        for k, v in bt.iterate(ns, self.record.root):
            run = values.refs(v)
            yield Item(bytes(k), bytes(values.payload(v)), tuple(run) if run else None)

    def digests(self, start: int, n: int) -> list[bytes]:
        """SHA-256 of blocks [start, start+n)."""
        blocks = self.blocks
        have = {b: d for b, d, _ in blocks.absent_range(start, n)} if blocks.absent_count() else {}
        if len(have) == n:
            return [have[start + i] for i in range(n)]
        if blocks.checksum == "sha256":
            sums = blocks.digests(start, n)
            if all(s is not None or start + i in have for i, s in enumerate(sums)):
                return [have.get(start + i) or bytes(sums[i]) for i in range(n)]
        from ..native import sha256_many
        if not have:
            data = self.read(start, n)
            d = sha256_many(data, self.bs)
            return [bytes(d[i * DIGEST:(i + 1) * DIGEST]) for i in range(n)]
        # partly absent: only the present blocks are read (absent ones are not fetched)
        out: list = [have.get(start + i) for i in range(n)]
        i = 0
        while i < n:
            if out[i] is not None:
                i += 1
                continue
            j = i
            while j < n and out[j] is None:
                j += 1
            d = sha256_many(self.blocks.read(start + i, j - i), self.bs)
            for k in range(i, j):
                out[k] = bytes(d[(k - i) * DIGEST:(k - i + 1) * DIGEST])
            i = j
        return out

    def read(self, start: int, n: int) -> bytes:
        """The bytes of blocks [start, start+n) (absent ones are fetched); the
        last run ``digests`` read is not read twice."""
        last = self._last
        if last is not None and last[0] == start and last[1] == n:
            return last[2]
        data = self.blocks.read(start, n)
        self._last = (start, n, data)
        return data

    _last = None


def canonical(items: Iterable[Item]) -> Iterator[Item]:
    """Items with digests, EXTENTs of one file that continue each other merged:
    the same stream whatever pieces the pool placed a file's blocks in."""
    prev = None
    for it in items:
        if prev is not None and it.digests is not None and prev.digests is not None:
            if not prev.payload and not it.payload and \
                    fsstream.continues_extent(prev.key, len(prev.digests), it.key):
                prev = Item(prev.key, prev.payload, None, prev.digests + it.digests)
                continue
        if prev is not None:
            yield prev
        prev = it
    if prev is not None:
        yield prev


def encode_items(items: Iterable[Item]) -> Iterator[bytes]:
    """The item stream: MAGIC, then per item key length u16, tag u8 (0 plain,
    1 owns blocks), payload length u32, key, payload, and for tag 1 the block
    count u32 and the 32-byte digests."""
    yield MAGIC
    for it in items:
        tag = 0 if it.digests is None else 1
        parts = [_HEAD.pack(len(it.key), tag, len(it.payload)), it.key, it.payload]
        if tag:
            parts.append(_N.pack(len(it.digests)))
            parts.extend(it.digests)
        yield b"".join(parts)


def decode_items(data: bytes, allow_delete: bool = False) -> list[Item]:
    """The items of a stream (``encode_items``), checked for shape and key order.
    ``allow_delete``: tag 2 (a deletion in a delta) gives an Item with run (-1, -1)."""
    mv = memoryview(data)
    if bytes(mv[:len(MAGIC)]) != MAGIC:
        raise Corruption("tree metadata does not start with the item stream marker")
    pos, out, last = len(MAGIC), [], b""
    end = len(mv)
    try:
        while pos < end:
            klen, tag, plen = _HEAD.unpack_from(mv, pos)
            pos += _HEAD.size
            key = bytes(mv[pos:pos + klen])
            pos += klen
            payload = bytes(mv[pos:pos + plen])
            pos += plen
            digests = None
            if tag == 1:
                (n,) = _N.unpack_from(mv, pos)
                pos += _N.size
                if n == 0 or pos + n * DIGEST > end:
                    raise Corruption("tree metadata item with a bad block count")
                # one bytes object per digest, split at C speed (a slice per digest
                # cost about 4x more: the item streams of large trees hold millions)
                digests = list(map(_FIRST, _DIGEST.iter_unpack(mv[pos:pos + n * DIGEST])))
                pos += n * DIGEST
            elif tag == 2 and allow_delete and plen == 0:
                if pos > end or len(key) != klen:
                    raise Corruption("tree metadata is truncated")
                if key <= last and out:
                    raise Corruption("tree metadata items are not in key order")
                last = key
                out.append(Item(key, b"", (-1, -1), None))
                continue
            elif tag != 0:
                raise Corruption(f"tree metadata item with unknown tag {tag}")
            if pos > end or len(key) != klen or len(payload) != plen:
                raise Corruption("tree metadata is truncated")
            if key <= last and out:
                raise Corruption("tree metadata items are not in key order")
            last = key
            out.append(Item(key, payload, None, digests))
    except struct.error:
        raise Corruption("tree metadata is truncated") from None
    return out


DELTA_MAGIC = b"BSDELTA1"


def encode_delta(parent_id: str, parent: list[Item], child: list[Item]) -> bytes:
    """``child`` (canonical items) as the difference from ``parent`` (canonical
    items of the tree whose content id is ``parent_id``): DELTA_MAGIC, the
    parent's id (64 hex digits), then the items that are new or changed
    (as in ``encode_items``) and, tag 2 with no payload, the keys deleted."""
    old = {it.key: it for it in parent}
    recs = []                     # (key, encoded record), one stream in key order
    keys = set()
    for it in child:
        keys.add(it.key)
        o = old.get(it.key)
        if o is None or o.payload != it.payload or o.digests != it.digests:
            recs.append((it.key, b"".join(list(encode_items([it]))[1:])))
    for k in set(old) - keys:
        recs.append((k, _HEAD.pack(len(k), 2, 0) + k))
    recs.sort(key=lambda r: r[0])
    return b"".join([DELTA_MAGIC, parent_id.encode()] + [r for _, r in recs])


def delta_parent(data: bytes) -> str | None:
    """The parent id of a delta stream, None for a full one."""
    if bytes(data[:len(DELTA_MAGIC)]) == DELTA_MAGIC:
        return bytes(data[len(DELTA_MAGIC):len(DELTA_MAGIC) + 64]).decode("ascii", "replace")
    return None


def apply_delta(data: bytes, parent: list[Item]) -> list[Item]:
    """The child's items from a delta stream and the parent's items."""
    body = MAGIC + bytes(data[len(DELTA_MAGIC) + 64:])
    changes, deleted = [], set()
    for it in decode_items(body, allow_delete=True):
        if it.run == (-1, -1):
            deleted.add(it.key)
        else:
            changes.append(it)
    merged = {it.key: it for it in parent if it.key not in deleted}
    for it in changes:
        merged[it.key] = it
    return [merged[k] for k in sorted(merged)]


def build_snapshot(store, name: str, items: list[Item], *, parent: str | None, labels: dict,
                   created: int | None, local: dict[bytes, int], source,
                   absent_out: list | None = None) -> tuple[TreeRecord, int]:
    """Snapshot ``name`` from ``items`` (digests set) in one write transaction.
    ``absent_out``: a list that receives (run start, [sha256...]) of every run of
    absent blocks made (what a fill must fetch, without reading them back).
    ``local``: SHA-256 → a live local block with those bytes (referenced, not
    copied); every other block becomes absent with ``source`` to fetch from
    (a string, or a function of the SHA-256 giving one).
    Returns the record and the number of absent blocks made."""
    from ..txn import FORMAT_ABSENT
    bs_ok = store.block_size

    def work(w):
        if catalog.exists(w, name):
            raise AlreadyExists(f"a tree named {name!r} already exists")
        if absent_out is not None:
            absent_out.clear()              # a rerun (the map grown) starts again
        blocks = w.blocks
        known = dict(local)
        nabsent = 0
        # a block of ``known`` must still be live in this txn (it came from a read view)
        for b in set(known.values()):
            if blocks.refcount(b) == 0:
                raise Corruption(f"local block {b} meant for sharing is no longer in use")

        def runs_for(digests: list[bytes]) -> list[tuple[int, int]]:
            nonlocal nabsent
            out: list[list[int]] = []
            i = 0
            if len(digests) > 1 and known.keys().isdisjoint(digests) \
                    and len(set(digests)) == len(digests):
                # all new and distinct (an eager pull's common case): the loop below
                # would make them one chunk; set operations find that at C speed
                w.env.require_format(w, FORMAT_ABSENT)
                src = source if isinstance(source, str) else [source(d) for d in digests]
                for s, k in blocks.reserve_absent(digests, src):
                    run = digests[i:i + k]
                    known.update(zip(run, range(s, s + k)))
                    out.append([s, k])
                    if absent_out is not None:
                        absent_out.append((s, run))
                    i += k
                    nabsent += k
            while i < len(digests):
                b = known.get(digests[i])
                if b is not None:
                    j = i + 1
                    while j < len(digests) and known.get(digests[j]) == b + (j - i):
                        j += 1
                    blocks.inc(b, j - i)
                    out.append([b, j - i])
                    i = j
                    continue
                j, chunk = i + 1, {digests[i]}
                while j < len(digests) and digests[j] not in known and digests[j] not in chunk:
                    chunk.add(digests[j])
                    j += 1
                w.env.require_format(w, FORMAT_ABSENT)
                src = source if isinstance(source, str) else [source(d) for d in digests[i:j]]
                for s, k in blocks.reserve_absent(digests[i:j], src):
                    for x in range(k):
                        known.setdefault(digests[i + x], s + x)
                    out.append([s, k])
                    if absent_out is not None:
                        absent_out.append((s, digests[i:i + k]))
                    i += k
                    nabsent += k
            return [(s, k) for s, k in out]

        def values_of() -> Iterator[tuple[bytes, bytes]]:
            for it in items:
                if it.digests is None:
                    yield it.key, values.plain(it.payload)
                    continue
                runs = runs_for(it.digests)
                if fsstream.is_extent(it.key):
                    for key, s, k in fsstream.extent_pieces(it.key, runs):
                        if s != HOLE:
                            yield key, values.blockref(s, k, it.payload)
                elif len(runs) == 1:
                    yield it.key, values.blockref(runs[0][0], runs[0][1], it.payload)
                else:
                    raise Unsupported("a large xattr value's blocks could not be placed in one run")
        ns = NodeStore.of(w)
        if bs_ok != blocks.block_size:
            raise InvalidInput("block size mismatch")
        root = bulk.build(ns, values_of())
        rec = TreeRecord(name=name, kind="snapshot", root=root,
                         parent=parent if parent and catalog.exists(w, parent) else None,
                         labels=dict(labels), created=created or time.time_ns())
        catalog.add(w, rec)
        return rec, nabsent
    return store.env.transact(work)


def absent_of(store, name: str, sources: bool = True) -> list[tuple[int, bytes, str | None]]:
    """(block, sha256, source) of every absent block the tree ``name`` references
    (``sources`` False: source None, not decoded)."""
    out = []
    with store.env.read() as r:
        if not r.blocks.absent_count():
            return out
        rec = catalog.get(r, name)
        seen = set()
        for _, v in bt.iterate(NodeStore.of(r), rec.root):
            run = values.refs(v)
            if run:
                got = (r.blocks.absent_range(run[0], run[1]) if sources else
                       [(b, d, None) for b, d in r.blocks.absent_digests(run[0], run[1]).items()])
                for m in got:
                    if m[0] not in seen:
                        seen.add(m[0])
                        out.append(m)
    out.sort()
    return out


class BlockFiller:
    """Fill absent blocks in bulk (an eager pull): ``write`` verifies and
    writes blocks, from any number of threads at once, with no write txn;
    ``record`` records what was written in one write transaction (the data
    file synced first), so a pull of N blocks costs a few commits, not one
    per batch.  Each ``write`` runs under a read transaction of its own that
    keeps its blocks from reuse while their bytes are written (a block no
    longer absent with that SHA-256 is skipped).  Blocks written but not
    recorded when the process dies stay absent (fetched again by the next
    fill: same bytes, verified again)."""

    def __init__(self, store):
        self._store = store

    def write(self, runs) -> list:
        """``runs``: [(start block, [sha256...], buffer)]; Corruption on any
        mismatch (nothing of the call written).  Returns what ``record`` takes."""
        with self._store.env.snapshot() as rt:
            return rt.blocks.write_absent_verified(runs)

    def record(self, written: list) -> int:
        if not written:
            return 0
        return self._store.env.transact(lambda w: w.blocks.record_written(written))

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
