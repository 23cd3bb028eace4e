"""Fresh import of a host directory: the api's entry to ``fs/build.py``.

The tree is bulk-built by ``fs.build.TreeBuilder`` in the working clone of
``Store.staging`` (staging.py), inside its batch: at each checkpoint the
builder's root becomes the clone's (what only the previous root held is
freed in that transaction) and the batch is committed, so memory stays
bounded; at the end the clone becomes the snapshot.  On any error or
interrupt the clone is removed and its space given back, so the snapshot
appears complete or not at all.  A small import is one durable commit.
"""
from __future__ import annotations

from .. import catalog
from ..btree.store import NodeStore
from ..catalog import REMOVE_GC_BUDGET, TreeRecord
from ..fs.build import TreeBuilder


def _set_root(w, work: str, root: int) -> None:
    """Make root (owned by the caller) the working clone's, dropping its previous
    root: what only that held (a checkpoint's spine, the empty tree staging
    made) is freed in this transaction."""
    rec = catalog.get(w, work)
    old, rec.root = rec.root, root
    catalog.put(w, rec)
    if old:
        NodeStore.of(w).gc_step(REMOVE_GC_BUDGET, drop=(old,))


def bulk_import(store, src: str, name: str, labels, progress) -> TreeRecord:
    """Import src as a new snapshot through a working clone (see the module docstring)."""
    from .staging import staging
    env = store.env

    def txn():
        with env.write() as w:          # joins the batch: stays open after the block
            return w

    def checkpoint(root: int) -> NodeStore:
        _set_root(txn(), st.work, root)
        env.sync()
        return NodeStore.of(txn())

    with staging(store, name, None) as st:
        w = txn()
        root = TreeBuilder(NodeStore.of(w), checkpoint, progress).run(src)
        _set_root(txn(), st.work, root)
        st.commit(labels)
    return st.record
