"""The engine facade: named copy-on-write trees of keys and values.

This is the storage engine the filesystem layer and the public ``Store``
build on.  It combines the catalog (names, kinds, roots), the B-tree and
the pool.  Every method is one atomic transaction, durable on return,
unless called inside ``with engine.batch():`` (group commit: durable at
the end of the batch or at ``sync()``).

Costs: ``snapshot``/``clone`` O(1) (one refcount increment and one catalog
record); ``put``/``get``/``delete`` O(depth); ``remove`` O(1) now plus, in
``gc``, what the tree owned exclusively; ``diff`` O(difference x depth).

Values up to ``MAX_INLINE`` bytes live in the tree; ``put_blob`` stores
bytes of any size in pool blocks (zero blocks not stored, dedup when on)
under keys ``key + 0x00 + u64 block index``.
"""
from __future__ import annotations

import contextlib
import os
import struct
import threading
from typing import Iterator

from . import catalog
from .btree import tree as bt
from .btree import values
from .btree.diff import diff as tree_diff
from .btree.node import MAX_VALUE
from .btree.store import NodeStore
from .catalog import TreeRecord
from .errors import InvalidInput, ReadOnly
from .pool import HOLE
from .txn import Env

MAX_INLINE = MAX_VALUE - 16
REMOVE_GC_BUDGET = 256
_IDX = struct.Struct(">Q")

_open_envs: dict[str, list] = {}          # realpath -> [Env, users]
_open_lock = threading.Lock()


def _acquire_env(path: str, **opts) -> Env:
    """One Env per store per process (LMDB refuses a second open)."""
    real = os.path.realpath(path)
    with _open_lock:
        ent = _open_envs.get(real)
        if ent is not None and ent[0].pid == os.getpid():
            ent[1] += 1
            return ent[0]
        env = Env(path, **opts)
        _open_envs[real] = [env, 1]
        return env


def _release_env(env: Env) -> None:
    real = os.path.realpath(env.path)
    with _open_lock:
        ent = _open_envs.get(real)
        if ent is None or ent[0] is not env:
            return
        ent[1] -= 1
        if ent[1] == 0:
            del _open_envs[real]
            env.close()


def remove_tree(w, name: str) -> int:
    """Drop tree ``name`` in write txn ``w``: the one way a tree is removed (the
    api's dependents rule is checked by its caller).  The first
    ``REMOVE_GC_BUDGET`` nodes it owned alone are freed in this transaction (all
    of them for a clone that changed little), the rest wait for ``gc``.  The
    blocks freed are deferred (pool/pending.py: older readers may still read
    them) and marked to be trimmed when released (``Pool.trim_when_released``),
    so that a following ``gc`` has no commit to make for them.  Returns the
    number of nodes freed now."""
    rec = catalog.get(w, name)
    catalog.delete(w, name)
    freed = NodeStore.of(w).gc_step(REMOVE_GC_BUDGET, drop=(rec.root,) if rec.root else ())
    w.pool.trim_when_released(w.t)
    return freed


class Engine:
    def __init__(self, env: Env, verify_reads: bool = False):
        self._env = env
        self._closed = False
        self._verify_reads = bool(verify_reads)
        if verify_reads:
            env.verify_reads += 1

    @classmethod
    def open(cls, path: str, create: bool = True, *, block_size: int | None = None,
             dedup: bool | None = None, checksum: str | None = None,
             verify_reads: bool = False, data_file: type | None = None) -> "Engine":
        """``verify_reads``: every data block read is checked against the checksum
        recorded when it was written (errors.Corruption naming the block on a
        mismatch).  The Env is shared by every handle of the store in this
        process, so reads are verified for all of them while one such handle is open.
        ``checksum``: per-block checksum of a new store ("xxh3-128", the default
        without dedup, or "sha256"); see ``Env``.  ``data_file``: the class that
        opens the data file when this opens the store's Env (``Env``)."""
        opts = {} if data_file is None else {"data_file": data_file}
        env = _acquire_env(path, create=create, block_size=block_size, dedup=dedup,
                           checksum=checksum, **opts)
        return cls(env, verify_reads)

    @property
    def env(self) -> Env:
        """The store's environment; InvalidInput once this handle is closed."""
        if self._closed:
            raise InvalidInput("the store is closed", path=self._env.path)
        return self._env

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._verify_reads:
                self._env.verify_reads -= 1
            _release_env(self._env)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def block_size(self) -> int:
        return self.env.block_size

    @property
    def checksum(self) -> str:
        """The store's per-block checksum: "xxh3-128" or "sha256" (fixed at creation)."""
        return self.env.checksum

    # -- transactions ------------------------------------------------------
    def batch(self):
        """Group commit: the calls inside share one durable commit."""
        return self.env.batch()

    def sync(self) -> None:
        self.env.sync()

    @contextlib.contextmanager
    def reader(self):
        """A consistent read view: ``with e.reader() as r: e.get(..., view=r)``."""
        with self.env.read() as r:
            yield r

    def _read(self, view):
        return contextlib.nullcontext(view) if view is not None else self.env.read()

    # -- trees -------------------------------------------------------------
    def create(self, name: str, kind: str = "volume", labels: dict | None = None,
               parent: str | None = None) -> TreeRecord:
        """A new empty tree."""
        rec = TreeRecord(name=name, kind=kind, labels=dict(labels or {}), parent=parent)
        return self.env.transact(lambda w: catalog.add(w, rec))

    def _copy(self, src: str, name: str, kind: str, labels, parent_of) -> TreeRecord:
        def work(w):
            s = catalog.get(w, src)
            lab = {**catalog.carried_labels(s.labels), **(labels or {})}
            rec = TreeRecord(name=name, kind=kind, labels=lab,
                             parent=parent_of(s), root=s.root)
            catalog.add(w, rec)
            bt.share(NodeStore.of(w), s.root)
            return rec
        return self.env.transact(work)

    def snapshot(self, src: str, name: str, labels: dict | None = None) -> TreeRecord:
        """Freeze ``src`` (any kind) as a read-only snapshot: O(1).  Like clone(),
        it inherits src's image labels (``catalog.carried_labels``).  The
        snapshot's parent is src's parent if src is a clone made from a
        snapshot (the lineage of images), else src itself when it is a snapshot."""
        return self._copy(src, name, "snapshot", labels,
                          lambda s: s.name if s.kind == "snapshot" else s.parent)

    def clone(self, src: str, name: str, kind: str = "clone",
              labels: dict | None = None) -> TreeRecord:
        """A writable tree sharing everything with ``src``: O(1)."""
        if kind == "snapshot":
            raise InvalidInput("a clone is writable; use snapshot() for a read-only copy")
        return self._copy(src, name, kind, labels,
                          lambda s: s.name if s.kind == "snapshot" else s.parent)

    def remove(self, name: str) -> int:
        """Drop the tree (``remove_tree``, one transaction).  Returns the number of
        nodes freed now."""
        return self.env.transact(lambda w: remove_tree(w, name))

    def rename(self, old: str, new: str) -> TreeRecord:
        """Rename a tree; children and mounts that name it follow (catalog.rename)."""
        return self.env.transact(lambda w: catalog.rename(w, old, new))

    def set_labels(self, name: str, labels: dict) -> TreeRecord:
        def work(w):
            rec = catalog.get(w, name)
            rec.labels.update({k: v for k, v in labels.items() if v is not None})
            for k in [k for k, v in labels.items() if v is None]:
                rec.labels.pop(k, None)
            catalog.put(w, rec)
            return rec
        return self.env.transact(work)

    def info(self, name: str, view=None) -> TreeRecord:
        with self._read(view) as r:
            return catalog.get(r, name)

    def list(self, kind: str | None = None, view=None) -> list[TreeRecord]:
        with self._read(view) as r:
            return [rec for rec in catalog.records(r) if kind is None or rec.kind == kind]

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
            runs = ns.txn.pool.write(ns.t, mv[:whole], isinstance(data, bytes)) if whole else []
            if whole < len(mv):
                runs += ns.txn.pool.write(ns.t, bytes(mv[whole:]) + bytes(-len(mv) % bs))
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
                out[idx * bs:(idx + n) * bs] = r.pool.read(start, n)
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

    def gc(self, budget: int = 2000, trim: bool = False) -> dict:
        from .gc import collect
        return collect(self.env, budget, trim)

    def check(self, repair: bool = False, scrub: bool = False):
        from .check import check
        return check(self.env, repair=repair, scrub=scrub)

    def stats(self):
        with self.env.read() as r:
            return r.pool.stats(r.t)
