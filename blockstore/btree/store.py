"""Node storage, node refcounts and shadowing (Rodeh's lazy refcounts).

Nodes live in LMDB database ``nodes`` keyed by a u64 id drawn from a counter
that never goes back, so a committed node is immutable and may be cached by
id for the life of the process.  A node's refcount is the number of
references to it: from a parent node, or from a catalog entry holding it as
a root.  Counts are stored in ``noderc`` only where they differ from 1.

Rules (each answers one of the hazards of docs/ARCHITECTURE.md §5):

* ``writable(id)`` returns a node the caller may change.  It is the same node
  only if it was created by this transaction *and* is referenced once;
  otherwise it is a copy under a new id ("shadow").  Shadowing a shared node
  increments its children (internal) or the pool blocks of its values
  (leaf) and drops one reference from the original; shadowing an unshared
  node moves its references to the copy and deletes the original.
* ``dec(id)`` to zero does not free recursively: the node goes on the GC
  queue (``gcq``); ``gc_step`` frees queued nodes in bounded steps,
  decrementing their children, so removing any tree costs what it owned
  exclusively and can be resumed after a crash.

Costs: a cached node is one dict lookup; an uncached one is one LMDB get and
a crc32 + decode.  Refcount changes of a transaction are kept in memory and
written once at commit, with the dirty nodes, except the decrements of a
freed internal node's children that this transaction has not counted yet:
those go straight to ``noderc`` (one cursor seek each, ``_dec_ids``).
Freeing a shadowed internal node costs one such update per child, which is
most of removing a clone that changed a few keys (with its commit, whose
size is the number of ``noderc`` pages touched; see ``ID_LEVEL_SHIFT``).
"""
from __future__ import annotations

import struct

from .. import txn as txnmod
from ..errors import Corruption
from ..txn import Txn, WriteTxn, from_u64, u64
from . import values
from .node import Node, decode, encode

NODES = txnmod.register_db("nodes")
NODERC = txnmod.register_db("noderc")
GCQ = txnmod.register_db("gcq")
_NEXT = b"btree.next_node"
_RC = struct.Struct(">I")
_ID = struct.Struct(">Q")           # node id keys (txn.u64)
CACHE_MAX = 200_000
# A node id is a never-reused counter value (< 2**56) with the node's level
# in the top byte, so the records of internal nodes sort together in
# ``nodes`` and ``noderc``, apart from the leaves and grouped by level.
# Shadowing or freeing an internal node touches the counts of all its
# children; the children of an upper node (and of its siblings) then share a
# few LMDB pages instead of one page each, which is what makes the commit of
# a clone's removal small.  Stores written before this have level-0 ids for
# every node; ids stay unique either way (one counter), and nothing reads
# the level from an id.
ID_LEVEL_SHIFT = 56


class _Cache:
    """Process-wide cache of committed (immutable) nodes, FIFO eviction."""

    def __init__(self):
        self.nodes: dict[int, Node] = {}

    def get(self, nid):
        return self.nodes.get(nid)

    def add(self, node: Node) -> None:
        d = self.nodes
        if len(d) >= CACHE_MAX:
            for k in list(d)[: CACHE_MAX // 4]:
                d.pop(k, None)        # another thread may evict the same keys
        d[node.id] = node


class NodeStore:
    """Access to nodes within one transaction; get one with ``NodeStore.of(txn)``."""

    def __init__(self, txn: Txn, cached: bool = True):
        self.txn = txn
        self.t = txn.t
        self.nodes_db = txn.db(NODES)
        self.rc_db = txn.db(NODERC)
        self.gcq_db = txn.db(GCQ)
        # check() passes cached=False so that it reads (and verifies) what is on disk.
        self.cache = txn.env.caches.setdefault("btree.nodes", _Cache()) if cached else _Cache()
        self.dirty: dict[int, Node] = {}     # created by this txn, not yet written
        self.rcs: dict[int, int] = {}        # refcount overlay of this txn
        self.deleted: set[int] = set()       # committed nodes deleted by this txn
        self.persisted: set[int] = set()     # new nodes already written (bulk): never cached
        self.next_id = None
        self._rc_cur = None                  # write txns: cursor on noderc (_dec_ids)
        self._freeing: list[int] | None = None   # inside gc_step: nodes freed next
        if txn.write:
            txn.before_commit.append(self._flush)
            txn.after_commit.append(self._publish)
        self._written: list[Node] = []

    @classmethod
    def of(cls, txn: Txn) -> "NodeStore":
        ns = txn.local.get("btree")
        if ns is None:
            ns = txn.local["btree"] = cls(txn)
        return ns

    # -- reading ---------------------------------------------------------
    def get(self, nid: int) -> Node:
        n = self.dirty.get(nid)
        if n is not None:
            return n
        n = self.cache.get(nid)
        if n is not None and nid not in self.deleted:
            return n
        raw = self.t.get(u64(nid), db=self.nodes_db)
        if raw is None or nid in self.deleted:
            raise Corruption(f"B-tree node {nid} is missing")
        n = decode(nid, raw)
        if nid not in self.persisted:       # an uncommitted id may be reused after an abort
            self.cache.add(n)
        return n

    def rc(self, nid: int) -> int:
        c = self.rcs.get(nid)
        if c is not None:
            return c
        raw = self.t.get(u64(nid), db=self.rc_db)
        return 1 if raw is None else _RC.unpack(raw)[0]

    # -- writing ---------------------------------------------------------
    def _alloc_id(self, level: int) -> int:
        """A fresh id for a node of ``level``: the next counter value with the
        level in the top byte (see ``ID_LEVEL_SHIFT``)."""
        if self.next_id is None:
            self.next_id = self.txn.meta_int(_NEXT, 1)
        seq = self.next_id
        self.next_id += 1
        return seq | (level << ID_LEVEL_SHIFT)

    def new(self, level: int, keys: list, vals: list) -> Node:
        n = Node(self._alloc_id(level), level, keys, vals)
        self.dirty[n.id] = n
        self.rcs[n.id] = 1
        return n

    def persist(self, node: Node) -> None:
        """Write a new node now and stop tracking it as dirty (bulk builds: keeps
        memory bounded).  Its count stays in the overlay; a later change in this
        transaction shadows it like any committed node."""
        if not self.t.put(u64(node.id), encode(node), db=self.nodes_db):
            raise Corruption(f"LMDB refused to store node {node.id}")
        self.dirty.pop(node.id, None)
        self.persisted.add(node.id)

    def inc(self, nid: int, by: int = 1) -> None:
        self.rcs[nid] = self.rc(nid) + by

    def dec(self, nid: int) -> None:
        """Drop one reference; at zero the node is queued for incremental freeing."""
        c = self.rc(nid) - 1
        if c < 0:
            raise Corruption(f"B-tree node {nid} refcount would go below zero")
        self.rcs[nid] = c
        if c == 0:
            if nid in self.dirty:
                # Never written: free it (and its references) right away.
                self._free(self.dirty[nid])
            elif self._freeing is not None:
                self._freeing.append(nid)     # gc_step frees it in this step or queues it
            else:
                self.t.put(u64(nid), b"", db=self.gcq_db)

    def _inc_children(self, node: Node) -> None:
        if node.level:
            for c in node.vals:
                self.inc(c)
        else:
            blocks = self.txn.blocks
            for start, n in values.runs(node.vals):
                blocks.inc(start, n)

    def _dec_children(self, node: Node) -> None:
        if node.level:
            self._dec_ids(node.vals)
        else:
            blocks = self.txn.blocks
            for start, n in values.runs(node.vals):
                blocks.dec(start, n)

    def _rc_cursor(self):
        cur = self._rc_cur
        if cur is None:
            cur = self._rc_cur = self.t.cursor(db=self.rc_db)
        return cur

    def _dec_ids(self, ids) -> None:
        """``dec`` of every id in ``ids``: the children of a freed internal node.

        Freeing a shadowed node touches every child, and its children are
        nearly always shared (the count drops from n to n-1 >= 1), so this is
        the per-child cost of removing a clone.  A child whose count this
        transaction has not changed yet is updated in ``noderc`` directly, with
        one cursor seek and a delete or put (no overlay entry, no
        second lookup at flush); children are usually adjacent ids, so the
        seek mostly stays on the cursor's page.  A child already in the
        overlay, or reaching zero, takes the ``dec`` path.  Consistent with
        ``rc()``: a count lives in the overlay if it is there, else in LMDB."""
        rcs = self.rcs
        cur = self._rc_cursor()
        pack, unpack = _ID.pack, _RC.unpack
        for c in ids:
            if c not in rcs and cur.set_key(pack(c)):
                n = unpack(cur.value())[0] - 1
                if n > 1:
                    cur.put(pack(c), _RC.pack(n))
                    continue
                if n == 1:
                    cur.delete()              # counts of 1 are not stored
                    continue
            self.dec(c)

    def _drop(self, nid: int) -> None:
        """Delete a node record whose references have been moved or released."""
        if self.dirty.pop(nid, None) is None:
            self.deleted.add(nid)
        self.rcs[nid] = 0

    def _free(self, node: Node) -> None:
        self._drop(node.id)
        self._dec_children(node)

    def discard(self, node: Node) -> None:
        """Forget a writable node whose entries were moved elsewhere (merge, collapse)."""
        self._drop(node.id)

    def writable(self, nid: int) -> Node:
        """A node the caller may change in place; see the module rules."""
        n = self.dirty.get(nid)
        if n is not None and self.rcs.get(nid) == 1:
            return n                # ours alone already: the common case of a batch
        c = self.rc(nid)
        if n is not None and c == 1:
            return n
        old = self.get(nid)
        new = old.copy(self._alloc_id(old.level))
        self.dirty[new.id] = new
        self.rcs[new.id] = 1
        if c > 1:
            self._inc_children(old)
            self.rcs[nid] = c - 1
        else:
            self._drop(nid)
        return new

    def gc_step(self, budget: int, drop: tuple[int, ...] = ()) -> int:
        """Free up to ``budget`` queued nodes; returns how many were freed.

        ``drop``: node ids (tree roots) to ``dec`` first, inside the step.
        Nodes that reach zero during the step are freed next (depth first,
        from memory) instead of going through ``gcq``; whatever the budget
        leaves over is queued before returning, so a committed step never
        loses a zero-count node.  Removing a clone that changed a few keys
        thus never touches ``gcq``."""
        done = 0
        cur = self.t.cursor(db=self.gcq_db)
        stack = self._freeing = []
        try:
            for nid in drop:
                self.dec(nid)
            while done < budget:
                if stack:
                    nid = stack.pop()
                elif cur.first():
                    nid = from_u64(cur.key())
                    cur.delete()
                else:
                    break
                self._free(self.get(nid))
                done += 1
        finally:
            self._freeing = None
        for nid in stack:
            self.t.put(u64(nid), b"", db=self.gcq_db)
        return done

    def gc_pending(self) -> int:
        return self.t.stat(self.gcq_db)["entries"]

    def _flush(self, _txn: WriteTxn) -> None:
        t = self.t
        for nid in self.deleted:
            t.delete(u64(nid), db=self.nodes_db)
        for nid, node in self.dirty.items():
            if not t.put(u64(nid), encode(node), db=self.nodes_db):
                    raise Corruption(f"LMDB refused to store node {nid}")
        for nid, c in self.rcs.items():
            if c == 1:
                t.delete(u64(nid), db=self.rc_db)
            elif c == 0:
                t.delete(u64(nid), db=self.rc_db)
            else:
                t.put(u64(nid), _RC.pack(c), db=self.rc_db)
        if self.next_id is not None:
            self.txn.meta_put_int(_NEXT, self.next_id)
        self._written = list(self.dirty.values())
        self.dirty.clear()
        self.rcs.clear()
        self.deleted.clear()

    def _publish(self) -> None:
        """After the commit: written nodes are now immutable; cache them."""
        for n in self._written:
            self.cache.add(n)
        self._written = []
