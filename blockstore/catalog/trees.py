"""Named trees: open a store's environment, create, snapshot, clone, remove,
rename, relabel and list trees, and run gc and check over them.

This is the catalog's handle on one store (``blockstore.api.Store`` builds
on it).  Every method is one atomic transaction, durable on return, unless
called inside ``with trees.batch():`` (group commit: durable at the end of
the batch or at ``sync()``).

Costs: ``snapshot``/``clone`` O(1) (one refcount increment and one catalog
record); ``remove`` O(1) now plus, in ``gc``, what the tree owned
exclusively.
"""
from __future__ import annotations

import contextlib
import os
import threading

from . import table as catalog
from .table import TreeRecord
from ..btree import tree as bt
from ..btree.store import NodeStore
from ..errors import InvalidInput
from ..txn import Env

REMOVE_GC_BUDGET = 256          # nodes a removal frees in its own transaction; gc frees the rest


def drop(w, rec: TreeRecord) -> int:
    """Delete the record of tree ``rec`` in write txn ``w``; the first
    ``REMOVE_GC_BUDGET`` nodes it owned alone are freed now (all of them for a
    clone that changed little), the rest by ``gc``.  The blocks freed are
    deferred (pool/pending.py: older readers may still read them) and marked
    to be trimmed when released (``Pool.trim_when_released``), so that a
    following ``gc`` has no commit to make for them.  Returns the nodes freed now."""
    catalog.delete(w, rec.name)
    freed = NodeStore.of(w).gc_step(REMOVE_GC_BUDGET, drop=(rec.root,) if rec.root else ())
    w.blocks.trim_when_released()
    return freed

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


class Trees:
    """The trees of one store (see the module docstring)."""


    def __init__(self, env: Env, verify_reads: bool = False):
        self._env = env
        self._closed = False
        self._verify_reads = bool(verify_reads)
        if verify_reads:
            env.verify_reads += 1

    @classmethod
    def open(cls, path: str, create: bool = True, *, block_size: int | None = None,
             dedup: bool | None = None, checksum: str | None = None,
             verify_reads: bool = False, data_file: type | None = None) -> "Trees":
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
    def path(self) -> str:
        """The store's directory (also once this handle is closed)."""
        return self._env.path

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
        """Drop the tree.  The first ``REMOVE_GC_BUDGET`` nodes it owned alone are
        freed in the same transaction (all of them for a clone that changed little);
        the rest wait for ``gc``.  Returns the number of nodes freed now."""
        return self.env.transact(lambda w: drop(w, catalog.get(w, name)))

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

    def gc(self, budget: int = 2000, trim: bool = False) -> dict:
        from .gc import collect
        return collect(self.env, budget, trim)

    def check(self, repair: bool = False, scrub: bool = False):
        from .check import check
        return check(self.env, repair=repair, scrub=scrub)

    def stats(self):
        with self.env.read() as r:
            return r.blocks.stats()
