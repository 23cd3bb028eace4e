"""Staging: the one way an import becomes a snapshot, and its recovery.

    with store.staging("app-v2", parent="app-v1") as st:
        ...write into the working clone st.work (inside one batch; call
        store.env.sync() every so often to commit what is written so far)...
        st.commit(labels)        # the working clone becomes snapshot "app-v2"

Directory import onto a parent (transfer.py) and layer import (oci/chain.py)
both write through this context:

* ``staging(...)`` opens ``store.batch()`` and creates in it the working clone
  ``NAME@importing-xxxxxxxx`` (of ``parent``, or empty), together with an entry
  in the catalog's staging registry naming its owner (this process: host, boot
  id, pid, start time; see owner.py), then runs the body in the same batch:
  chunked commits (``env.sync()``) keep memory bounded.  The clone becomes
  durable with the first chunk; an import that needs no chunk commit is one
  durable commit (creation, data, snapshot), and a crash before it leaves
  nothing to sweep.
* ``st.commit(labels)`` turns the working clone into the snapshot in one
  transaction (the clone's root reference moves to the snapshot: O(1); the
  snapshot's parent is ``parent``).
* On any error or interrupt (SIGINT, and SIGTERM/SIGHUP in the CLI), or a body
  that ends without ``commit``: the batch is aborted, the working clone
  removed and gc run (with trim), so the blocks its committed chunks took are
  back in the pool, and their disk space in the file system, when the call
  returns.  No snapshot appears.
* A process killed before its rollback (SIGKILL, power loss) leaves the clone.
  ``check`` reports it (a finding, not corruption); the store's next writer
  (``Store`` methods that change trees) removes the clones whose owner process
  is gone; ``gc`` also removes clones without a registry entry (made by an
  older blockstore) or with an unreadable one.  A clone owned by a process on
  another host (a store on shared storage) is only reported.

Costs: creating and committing are O(1) transactions; the writer's sweep is
one read of the staging registry (empty unless imports run or were killed)
per ``Store`` handle; rollback frees what the import wrote.
"""
from __future__ import annotations

import contextlib
import os
import time
import uuid

from .. import catalog
from ..btree import tree as bt
from ..btree.store import NodeStore
from ..catalog import TreeRecord
from ..fs import source
from ..fs.tree import FileTree
from . import owner

MARK = "@importing-"
LABEL = catalog.IMPORTING_LABEL         # "blockstore.importing"
# An import into a working clone commits its batch every this many bytes
# written or entries applied (directory import: transfer.py; layer import:
# layers.py), so memory stays bounded whatever the import's size.
COMMIT_BYTES = 256 * 1024 * 1024
COMMIT_ITEMS = 20000


@contextlib.contextmanager
def editing(store, name: str):
    """A ``FileTree`` on tree ``name`` inside a write transaction (the caller's
    batch, if any); its new root goes into the tree's record when the block
    ends without an error (an error aborts the transaction: nothing stored)."""
    with store.env.write() as w:
        rec = catalog.get(w, name)
        fst = FileTree(NodeStore.of(w), rec.root, time.time_ns)
        yield fst
        if fst.root != rec.root:
            rec.root = fst.root
            catalog.put(w, rec)


class Staging:
    """One import in progress: ``work`` is the working clone, ``name`` the snapshot
    it becomes, ``record`` that snapshot's record once ``commit`` ran."""

    def __init__(self, store, name: str, parent: str | None):
        self.store = store
        self.name = name
        self.parent = parent
        self.work = f"{name}{MARK}{uuid.uuid4().hex[:8]}"
        self.record: TreeRecord | None = None

    def _create(self) -> None:
        me = owner.current()

        def work(w):
            if self.parent is not None:
                src = catalog.get(w, self.parent)
                rec = TreeRecord(name=self.work, kind="clone", root=src.root,
                                 parent=src.name if src.kind == "snapshot" else src.parent,
                                 labels={LABEL: "1"})
                catalog.add(w, rec)
                bt.share(NodeStore.of(w), src.root)
                fst = FileTree(NodeStore.of(w), rec.root, time.time_ns)
                if source.detach_copy(fst, clone=True):    # the layer below's blob is not ours
                    rec.root = fst.root
                    catalog.put(w, rec)
            else:
                rec = catalog.add(w, TreeRecord(name=self.work, kind="clone", labels={LABEL: "1"}))
                fst = FileTree(NodeStore.of(w), 0, time.time_ns)
                fst.mkfs(0o755, os.getuid(), os.getgid())
                rec.root = fst.root
                catalog.put(w, rec)
            catalog.add_staging(w, self.work, me)
        self.store.env.transact(work)

    def commit(self, labels: dict | None = None) -> TreeRecord:
        """Make the working clone the snapshot ``name`` (one transaction, O(1))."""
        def work(w):
            cur = catalog.get(w, self.work)
            rec = TreeRecord(name=self.name, kind="snapshot", root=cur.root,
                             parent=self.parent, labels=dict(labels or {}))
            catalog.add(w, rec)                   # refuses a taken name before any change
            catalog.delete(w, self.work)          # and its registry entry: rec has its root
            return rec
        self.record = self.store.env.transact(work)
        return self.record

    def rollback(self) -> None:
        """Remove the working clone and give its space back (gc).  A second
        interrupt while this runs does not stop it (the first one is on its way
        up); any other failure leaves the clone to the next writer or gc."""
        for _ in range(3):
            try:
                self._drop()
                return
            except KeyboardInterrupt:
                continue
            except Exception:
                return

    def _drop(self) -> None:
        env = self.store.env
        with env.read() as r:
            there = catalog.exists(r, self.work)
        if not there:
            return
        env.transact(lambda w: _remove(w, self.work))
        if env.batch_txn_id() is None:           # inside a caller's batch: it decides
            from ..catalog import collect
            collect(env, trim=True)


@contextlib.contextmanager
def staging(store, name: str, parent: str | None = None):
    """See the module docstring."""
    st = Staging(store, name, parent)
    try:
        with store.batch():
            st._create()            # durable with the first chunk: one commit for a small import
            yield st
    except BaseException:
        st.rollback()
        raise
    if st.record is None:
        st.rollback()


def _remove(w, name: str) -> bool:
    """Drop a staging clone in write txn w (its first nodes freed now, the rest by gc)."""
    if not catalog.exists(w, name):
        catalog.remove_staging(w, name)          # a stale entry (the tree went another way)
        return False
    catalog.drop(w, catalog.get(w, name))
    return True


def leftovers(r) -> list[tuple[str, str, bool]]:
    """(clone, why, removable) of every staging clone no live process owns, in read txn r:
    registry entries whose owner is gone, unreadable or on another host, and
    clones labelled as importing that have no entry (an older blockstore's).
    ``removable``: what ``sweep(legacy=True)`` (gc) removes.  O(registry entries +
    trees labelled as importing), through the catalog's reverse index."""
    out = []
    entries = dict(catalog.staging_entries(r))
    for name, o in entries.items():
        st = owner.state(o)
        if st == "alive" or not catalog.exists(r, name):
            continue
        if o is None:
            out.append((name, "its owner record is unreadable", True))
        elif st == "gone":
            out.append((name, f"its owner ({owner.describe(o)}) is gone", True))
        else:
            out.append((name, f"owned by {owner.describe(o)}: cannot tell from here "
                              f"whether it still runs", False))
    for n in catalog.importing(r):         # the index: no scan of the catalog
        if MARK in n and n not in entries and catalog.get(r, n).labels.get(LABEL):
            out.append((n, "no owner recorded (an older blockstore's import)", True))
    return sorted(out)


def sweep(store, legacy: bool = False) -> list[str]:
    """Remove the staging clones whose owner process is gone; with ``legacy`` also
    those without a (readable) owner record.  Returns the names removed."""
    env = store.env
    with env.read() as r:
        if legacy:
            cands = [n for n, _, ok in leftovers(r) if ok]
        else:
            cands = [n for n, o in catalog.staging_entries(r) if o and owner.state(o) == "gone"]
    if not cands:
        return []

    def work(w):
        done = []
        for n in cands:
            o = catalog.staging_owner(w, n)
            if o is not None and owner.state(o) != "gone":
                continue
            if o is None and not legacy:
                continue
            if _remove(w, n):
                done.append(n)
        return done
    return env.transact(work)
