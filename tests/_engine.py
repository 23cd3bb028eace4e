"""The key-value/blob engine the tests build on: a catalog ``Trees`` handle plus
keys and values in a tree, blobs in pool blocks, and the tree diff.

Not part of the product (nothing in ``blockstore`` stores raw keys): the
B-tree, pool and crash tests and tools/bench_engine.py use it to exercise the
layers under the filesystem.  Every method is one atomic transaction.

Costs: ``put``/``get``/``delete`` O(depth); ``diff`` O(difference x depth).
Values up to ``MAX_INLINE`` bytes live in the tree; ``put_blob`` stores
bytes of any size in pool blocks (zero blocks not stored, dedup when on)
under keys ``key + 0x00 + u64 block index``.
"""
from __future__ import annotations

import struct
from typing import Iterator

from blockstore import catalog
from blockstore.btree import tree as bt
from blockstore.btree import values
from blockstore.btree.diff import diff as tree_diff
from blockstore.btree.node import MAX_VALUE
from blockstore.btree.store import NodeStore
from blockstore.catalog import REMOVE_GC_BUDGET, Trees  # noqa: F401 (tests read the budget here)
from blockstore.errors import InvalidInput, ReadOnly
from blockstore.pool import HOLE

MAX_INLINE = MAX_VALUE - 16
_IDX = struct.Struct(">Q")


class Engine(Trees):
    """Trees plus keys, values and blobs in them (see the module docstring)."""

    # -- keys and values -----------------------------------------------------
    def _mutate(self, name: str, fn):
        """Run fn(ns, root) -> (new_root, result) on a writable tree and store the new root."""
        def work(w):
            rec = catalog.get(w, name)
            if not rec.writable:
                raise ReadOnly(f"{name!r} is a snapshot and cannot be changed; clone it first")
            root, result = fn(NodeStore.of(w), rec.root)
            if root != rec.root:
                rec.root = root
                catalog.put(w, rec)
            return result
        return self.env.transact(work)

    def put(self, name: str, key: bytes, value: bytes) -> None:
        if len(value) > MAX_INLINE:
            raise InvalidInput(f"value of {len(value)} bytes exceeds {MAX_INLINE}; use put_blob")
        self._mutate(name, lambda ns, root: (bt.insert(ns, root, key, values.plain(value)), None))

    def put_many(self, name: str, items) -> None:
        self._mutate(name, lambda ns, root: (
            bt.put_many(ns, root, ((k, values.plain(v)) for k, v in items)), None))

    def delete(self, name: str, key: bytes) -> bool:
        """Remove a key; True if it existed."""
        def fn(ns, root):
            root, old = bt.delete(ns, root, key)
            return root, old is not None
        return self._mutate(name, fn)

    def get(self, name: str, key: bytes, view=None) -> bytes | None:
        with self._read(view) as r:
            v = bt.lookup(NodeStore.of(r), catalog.get(r, name).root, key)
            return None if v is None else values.payload(v)

    def items(self, name: str, lo: bytes = b"", hi: bytes | None = None,
              view=None) -> list[tuple[bytes, bytes]]:
        with self._read(view) as r:
            ns = NodeStore.of(r)
            return [(bytes(k), values.payload(v))
                    for k, v in bt.iterate(ns, catalog.get(r, name).root, lo, hi)]

    def count(self, name: str, view=None) -> int:
        with self._read(view) as r:
            return sum(1 for _ in bt.iterate(NodeStore.of(r), catalog.get(r, name).root))

    # -- blobs in pool blocks ------------------------------------------------
    def put_blob(self, name: str, key: bytes, data: bytes) -> None:
        """Store ``data`` in pool blocks under ``key`` (replacing any blob there).
        The last block is zero-padded; the length is kept in the index entry."""
        bs = self.block_size
        if b"\x00" in key:
            raise InvalidInput("blob keys must not contain NUL bytes")

        def fn(ns, root):
            root = bt.delete_range(ns, root, key + b"\x00", key + b"\x01")
            # No copy of the whole blocks (the pool writes synchronously); only a
            # partial last block is copied to be zero-padded.
            mv = memoryview(data).cast("B")
            whole = len(mv) - len(mv) % bs
            # bytes cannot change under us: the pool may hash them in the background.
            runs = ns.txn.blocks.write(mv[:whole], isinstance(data, bytes)) if whole else []
            if whole < len(mv):
                runs += ns.txn.blocks.write(bytes(mv[whole:]) + bytes(-len(mv) % bs))
            idx = 0
            for start, n in runs:
                if start != HOLE:
                    root = bt.insert(ns, root, key + b"\x00" + _IDX.pack(idx),
                                     values.blockref(start, n))
                idx += n
            root = bt.insert(ns, root, key + b"\x00" + b"\xff" * 8,
                             values.plain(_IDX.pack(len(data))))
            return root, None
        self._mutate(name, fn)

    def get_blob(self, name: str, key: bytes, view=None) -> bytes | None:
        bs = self.block_size
        with self._read(view) as r:
            ns = NodeStore.of(r)
            root = catalog.get(r, name).root
            size_v = bt.lookup(ns, root, key + b"\x00" + b"\xff" * 8)
            if size_v is None:
                return None
            size = _IDX.unpack(values.payload(size_v))[0]
            out = bytearray(size + (-size % bs))
            for k, v in bt.iterate(ns, root, key + b"\x00", key + b"\x00" + b"\xff" * 8):
                idx = _IDX.unpack(k[len(key) + 1:])[0]
                start, n = values.refs(v)
                out[idx * bs:(idx + n) * bs] = r.blocks.read(start, n)
            return bytes(out[:size])

    def delete_blob(self, name: str, key: bytes) -> None:
        self._mutate(name, lambda ns, root: (
            bt.delete_range(ns, root, key + b"\x00", key + b"\x01"), None))

    # -- whole-store operations -------------------------------------------------
    def diff(self, a: str, b: str, view=None) -> Iterator[tuple[bytes, bytes | None, bytes | None]]:
        """(key, value in a, value in b) for every key whose stored value differs
        (payloads; None where absent); O(difference x depth)."""
        with self._read(view) as r:
            ns = NodeStore.of(r)
            ra, rb = catalog.get(r, a).root, catalog.get(r, b).root
            pl = values.payload
            return [(bytes(k), None if x is None else pl(x), None if y is None else pl(y))
                    for k, x, y in tree_diff(ns, ra, rb)]
