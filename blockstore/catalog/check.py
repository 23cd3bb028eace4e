"""check (fsck) and repair: every invariant of docs/ARCHITECTURE.md §4 that the engine owns.

What is verified, in one read transaction (a consistent view; writers go on):

* catalog: every record decodes, names a known kind and a root that exists;
  the reverse index (links.py) holds exactly what the records say
  (repair rebuilds it);
* nodes: checksum and shape (keys strictly sorted, children one level down,
  every child's keys within its separators, size within the node limit);
* node refcounts: the stored count of every node equals its references
  (catalog roots + parent nodes + nodes still in the GC queue); every stored
  node is reachable; no count is kept for a node that does not exist;
* blocks: every block is exactly one of free, pending-free, owned once or
  shared with its exact count, where the expected count is the number of
  distinct live leaves whose values reference it;
* the pool's own tables (``Pool.self_check``): ranges in bounds and disjoint,
  dedup index mirrored and pointing at live blocks, pool.sums well formed;
  dedup entries always match their block's SHA-256; with ``scrub`` every
  referenced block is read and matches the checksum recorded when it was
  written (pool.sums, in the store's algorithm: XXH3-128, or SHA-256 with
  dedup and in older stores; the dedup digest for blocks older than
  pool.sums; blocks with neither are counted in
  ``stats['scrub_unverifiable_blocks']``).

``repair=True`` then rewrites, in one write transaction, what can be
derived from the trees: node refcounts, leaked nodes (deleted), block
states (leaked blocks freed, wrong counts fixed, dead dedup entries
dropped).  What cannot be derived (a missing or corrupt node, a catalog
record pointing nowhere) is reported as not repairable, except a catalog
record whose root node is missing (the entry is removed: the tree is gone)
and a dedup entry whose digest does not match its block (dropped).

Cost: O(nodes + blocks referenced) time; memory O(nodes).
"""
from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass, field

from .. import storefiles
from . import links as catalog_links
from . import table as catalog
from ..btree import values
from ..btree.node import node_limit
from ..btree.store import NODERC, NODES, NodeStore
from ..errors import Corruption
from ..txn import Env, from_u64, u64


@dataclass
class Problem:
    kind: str           # e.g. "node-refcount", "block-leak", "node-checksum"
    message: str
    tree: str | None = None
    repairable: bool = True
    block: int | None = None     # the pool block concerned, when there is one
    path: str | None = None      # the file that holds it (filled in by the fs check)

    def __str__(self) -> str:
        where = f" [tree {self.tree}" + (f", file {self.path}" if self.path else "") + "]" \
            if self.tree else ""
        return f"{self.kind}: {self.message}{where}"


@dataclass
class CheckReport:
    problems: list[Problem] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    # Worth knowing but not damage (``ok`` ignores them): e.g. the staging clone of
    # an import whose process was killed (api/staging.py).
    findings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind, message, tree=None, repairable=True, block=None):
        self.problems.append(Problem(kind, message, tree, repairable, block))

    def note(self, kind, message, tree=None, repairable=True):
        """A finding: reported, but the store is still ok."""
        self.findings.append(Problem(kind, message, tree, repairable))

    def __str__(self) -> str:
        if self.ok:
            return "ok"
        return "\n".join(str(p) for p in self.problems)


class _Walk:
    """One pass over every reachable node, counting references."""

    def __init__(self, ns: NodeStore, report: CheckReport):
        self.ns = ns
        self.report = report
        self.refs: dict[int, int] = {}        # node id -> expected count
        self.bounds: dict[int, tuple] = {}    # node id -> (level, first key, last key) or None if bad
        self.owner: dict[int, str] = {}
        self.block_refs: list[tuple[int, int]] = []
        self.block_tree: list[str | None] = []  # tree that first reached each block_refs entry

    def visit(self, nid: int, tree: str | None):
        """Count one reference to nid; walk it the first time.  Returns its bounds."""
        self.refs[nid] = self.refs.get(nid, 0) + 1
        if nid in self.bounds:
            return self.bounds[nid]
        self.owner[nid] = tree
        try:
            node = self.ns.get(nid)
        except Corruption as exc:
            self.report.add("node-damaged", str(exc), tree, repairable=False)
            self.bounds[nid] = None
            return None
        self.bounds[nid] = None        # guards against cycles
        self.bounds[nid] = b = self._check_node(node, tree)
        return b

    def _check_node(self, node, tree):
        keys, rep = node.keys, self.report
        if not keys:
            rep.add("node-shape", f"node {node.id} is empty", tree, repairable=False)
            return None
        if node.nbytes > node_limit(node.level):
            rep.add("node-shape", f"node {node.id} has {node.nbytes} bytes, over "
                    f"{node_limit(node.level)}",
                    tree, repairable=False)
        if any(keys[i] >= keys[i + 1] for i in range(len(keys) - 1)):
            rep.add("node-shape", f"node {node.id} keys are not strictly sorted", tree,
                    repairable=False)
        if node.level == 0:
            for v in node.vals:
                r = values.refs(v) if v else None
                if r is not None:
                    self.block_refs.append(r)
                    self.block_tree.append(tree)
            return (0, keys[0], keys[-1])
        last = None
        for i, child in enumerate(node.vals):
            cb = self.visit(child, tree)
            if cb is None:
                continue
            lvl, lo, hi = cb
            if lvl != node.level - 1:
                rep.add("node-shape", f"node {node.id} (level {node.level}) has child {child} "
                        f"at level {lvl}: leaves are not at one depth", tree, repairable=False)
            if lo < keys[i] or (i + 1 < len(keys) and hi >= keys[i + 1]):
                rep.add("node-shape", f"child {child} of node {node.id} has keys outside "
                        f"its separators", tree, repairable=False)
            last = hi
        return (node.level, keys[0], last if last is not None else keys[-1])


def count_runs(runs: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """Sweep (start, n) references into disjoint (start, n, count) segments."""
    events: dict[int, int] = {}
    for s, n in runs:
        events[s] = events.get(s, 0) + 1
        events[s + n] = events.get(s + n, 0) - 1
    out, level, prev = [], 0, None
    for pos in sorted(events):
        if level > 0 and prev is not None and pos > prev:
            if out and out[-1][0] + out[-1][1] == prev and out[-1][2] == level:
                s, n, c = out[-1]
                out[-1] = (s, n + pos - prev, c)
            else:
                out.append((prev, pos - prev, level))
        level += events[pos]
        prev = pos
    return out


def _block_states(blocks, total):
    """Disjoint (start, n, state, count) from the pool tables; state in free/pending/shared."""
    segs = [(s, n, "free", 0) for s, n in blocks.free_runs()]
    segs += [(s, n, "pending", 0) for _, s, n in blocks.pending_runs()]
    segs += [(s, n, "shared", c) for s, n, c in blocks.shared_runs()]
    segs.sort()
    return segs


def _compare_blocks(expected, segs, total, report, owner_of_block):
    """Walk expected (start, n, count) against table segments; report each disagreement."""
    # Per-block comparison over the union of boundaries; both lists are sorted and disjoint
    # (the pool's self_check reports overlaps separately).
    points = {0, total}
    for s, n, _ in expected:
        points.update((s, s + n))
    for s, n, _, _ in segs:
        points.update((s, s + n))
    points = sorted(p for p in points if 0 <= p <= max(total, p))
    ei = si = 0
    for a, b in zip(points, points[1:]):
        while ei < len(expected) and expected[ei][0] + expected[ei][1] <= a:
            ei += 1
        while si < len(segs) and segs[si][0] + segs[si][1] <= a:
            si += 1
        want = expected[ei][2] if ei < len(expected) and expected[ei][0] <= a else 0
        state, have = "owned", 1
        if si < len(segs) and segs[si][0] <= a:
            state, have = segs[si][2], segs[si][3]
        if a >= total:
            if want:
                report.add("block-out-of-pool", f"blocks {a}..{b - 1} are referenced but lie "
                           f"beyond the pool's {total} blocks", owner_of_block(a), repairable=False)
            continue
        if want == 0 and state == "owned":
            report.add("block-leak", f"blocks {a}..{b - 1} are allocated but nothing references them")
        elif want > 0 and state in ("free", "pending"):
            report.add("block-double-owned" if state == "free" else "block-pending-in-use",
                       f"blocks {a}..{b - 1} are {state} but referenced {want} time(s)",
                       owner_of_block(a))
        elif want > 0 and have != want:
            report.add("block-refcount", f"blocks {a}..{b - 1} have count {have}, expected {want}",
                       owner_of_block(a))


def check(env: Env, repair: bool = False, scrub: bool = False) -> CheckReport:
    report = CheckReport()
    with env.read() as r:
        _check_view(r, report, scrub)
    _check_modes(env.path, report)
    if repair and report.problems:
        if any(not p.repairable for p in report.problems):
            report.repaired.append("some problems cannot be repaired (see the report); "
                                   "repairing the rest")
        if any(p.kind == "permissions" for p in report.problems):
            report.repaired.extend(storefiles.tighten(env.path))
        env.transact(lambda w: _repair(w, report))
        after = CheckReport()
        with env.read() as r:
            _check_view(r, after, scrub)
        _check_modes(env.path, after)
        after.repaired = report.repaired
        after.stats["problems_before_repair"] = len(report.problems)
        return after
    return report


def _check_modes(path: str, report: CheckReport) -> None:
    """Store files and directories that others may read (small files live inline
    in the metadata): one repairable problem each."""
    for rel, mode, want in storefiles.loose_modes(path):
        report.add("permissions", f"{rel} has mode {mode:04o}, readable or writable by other "
                   f"users (a store is {want:04o}; repair sets it)")


def _check_view(r, report: CheckReport, scrub: bool) -> _Walk:
    ns = NodeStore(r, cached=False)
    t, blocks = r.t, r.blocks      # raw reads (read_raw): problems are reported, not raised
    walk = _Walk(ns, report)
    trees = 0
    dangling = []           # catalog records whose root node does not exist
    for rec in catalog.records(r):
        trees += 1
        if rec.kind not in catalog.KINDS:
            report.add("catalog", f"tree {rec.name!r} has unknown kind {rec.kind!r}", rec.name,
                       repairable=False)
        if rec.root and t.get(u64(rec.root), db=r.db(NODES)) is None:
            dangling.append(rec.name)
            report.add("node-missing", f"the root node {rec.root} of tree {rec.name!r} is missing "
                       f"(repair removes the catalog entry)", rec.name)
            continue
        if rec.root:
            walk.visit(rec.root, rec.name)
    report._dangling = dangling
    _check_index(r, report)
    for _, pid, root in catalog.pins(r):
        if root:
            walk.visit(root, f"(pin of process {pid})")
    # Nodes whose count reached zero but are not freed yet still hold their references.
    queued = [from_u64(k) for k, _ in t.cursor(db=r.db("gcq"))]
    for nid in queued:
        walk.refs[nid] = walk.refs.get(nid, 0)     # the queue itself holds no count
        if nid not in walk.bounds:
            walk.bounds[nid] = None
            try:
                node = ns.get(nid)
            except Corruption as exc:
                report.add("node-damaged", str(exc), repairable=False)
                continue
            walk.bounds[nid] = walk._check_node(node, None)
    walk.queued = set(queued)
    # Stored nodes and stored counts against the walk.
    stored = 0
    for k, _ in t.cursor(db=r.db(NODES)):
        nid = from_u64(k)
        stored += 1
        if nid not in walk.refs:
            report.add("node-leak", f"node {nid} is stored but unreachable")
    for k, raw in t.cursor(db=r.db(NODERC)):
        nid = from_u64(k)
        if nid not in walk.refs:
            report.add("node-refcount", f"a count is stored for node {nid}, which is unreachable")
    for nid, want in walk.refs.items():
        have = ns.rc(nid) if nid not in walk.queued else 0
        if nid in walk.queued and ns.t.get(u64(nid), db=r.db(NODERC)) is not None:
            have = -1
        if have != want:
            report.add("node-refcount", f"node {nid} has count {have}, expected {want}",
                       walk.owner.get(nid))
        if t.get(u64(nid), db=r.db(NODES)) is None:
            report.add("node-missing", f"node {nid} is referenced but missing",
                       walk.owner.get(nid), repairable=False)
    # Blocks.
    expected = count_runs(walk.block_refs)
    total = blocks.total_blocks()
    segs = _block_states(blocks, total)

    def owner_of_block(_b):
        return None
    _compare_blocks(expected, segs, total, report, owner_of_block)
    for msg in blocks.self_check():
        report.add("pool", msg)
    bs = blocks.block_size
    bad_dedup = report._bad_dedup = []
    for digest, block in blocks.dedup_entries():
        if blocks.refcount(block) == 0:
            continue                     # self_check reports dead dedup entries
        if hashlib.sha256(blocks.read_raw(block, 1)).digest() != digest:
            report.add("dedup-mismatch", f"dedup entry for block {block} does not match its content")
            bad_dedup.append(block)
    if scrub:
        _scrub(r, walk, report)
    report.stats.update(trees=trees, nodes=stored, reachable_nodes=len(walk.refs),
                        gc_queue=len(queued), referenced_blocks=sum(n for _, n, _ in expected),
                        block_size=bs, total_blocks=total)
    report._expected_blocks = expected
    report._walk_refs = walk.refs
    report._queued = walk.queued
    return walk


SCRUB_READ_BLOCKS = 256     # blocks read and hashed per step (bounded memory)


def _scrub(r, walk: _Walk, report: CheckReport) -> None:
    """Read every referenced block and verify it against its recorded checksum.

    The digest is the one pool.sums recorded when the block was written (in
    the store's algorithm, ``pool.checksum``), or for blocks written before
    pool.sums existed the dedup index's (SHA-256); a block with neither is
    unverifiable (counted, not reported).  A mismatch is a ``block-checksum``
    problem naming the block and the first tree found to reference it.
    Cost: one read + one checksum call per 256 blocks, one pool.sums range
    scan per step.
    """
    blocks = r.blocks
    ds = blocks.digest_size
    dedup = None                      # built on first need (old stores only)
    verified = unverifiable = 0
    bad: list[int] = []
    for s, n, _ in count_runs(walk.block_refs):
        for cs in range(s, s + n, SCRUB_READ_BLOCKS):
            cn = min(SCRUB_READ_BLOCKS, s + n - cs)
            try:
                data = blocks.read_raw(cs, cn)
            except Corruption as exc:
                report.add("block-unreadable", str(exc), repairable=False)
                continue
            want = blocks.digests(cs, cn)
            got = blocks.hash_blocks(data)
            for i, d in enumerate(want):
                if d is None:
                    if dedup is None:
                        dedup = {b: h for h, b in blocks.dedup_entries()}
                    # SHA-256, as ``got``: only sha256 stores can have dedup entries
                    # (Env refuses dedup with any other checksum).
                    d = dedup.get(cs + i)
                    if d is None:
                        unverifiable += 1
                        continue
                verified += 1
                if got[i * ds:(i + 1) * ds] != d:
                    bad.append(cs + i)
    owner: dict[int, str | None] = {}
    if bad:                           # one pass over the references names a tree per bad block
        for (s, n), tree in zip(walk.block_refs, walk.block_tree):
            for k in range(bisect.bisect_left(bad, s), bisect.bisect_left(bad, s + n)):
                owner.setdefault(bad[k], tree)
    for b in bad:
        report.add("block-checksum", f"block {b} does not match its {blocks.checksum} checksum", owner.get(b),
                   repairable=False, block=b)
    report.stats.update(scrub_verified_blocks=verified, scrub_unverifiable_blocks=unverifiable)


def _check_index(r, report: CheckReport) -> None:
    """The catalog's reverse index (links.py) holds exactly what the
    records say.  O(trees) time and memory."""
    want = catalog_links.expected(r.t, r.db(catalog.CATALOG))
    have = catalog_links.stored(r.t, r.env.dbs)
    report._index_bad = False
    for db in catalog_links.DBS:
        missing, stale = want[db] - have[db], have[db] - want[db]
        if missing or stale:
            report._index_bad = True
            eg = sorted(missing or stale)[0].replace(b"\x00", b" -> ").decode(errors="replace")
            report.add("catalog-index", f"{db} has {len(missing)} entries missing and "
                       f"{len(stale)} stale (e.g. {eg!r}); repair rebuilds it")


def _repair(w, report: CheckReport) -> None:
    """Rewrite derived state from the walk: node counts, leaked nodes, block states;
    drop catalog entries whose root is missing and dedup entries that do not
    match their block (the block itself stays: trees may reference it)."""
    t = w.t
    for name in getattr(report, "_dangling", []):
        catalog.delete(w, name)
        report.repaired.append(f"removed catalog entry {name!r}: its root node is missing")
    for block in getattr(report, "_bad_dedup", []):
        w.blocks.forget_dedup(block, 1)
        report.repaired.append(f"dropped the dedup entry of block {block}: wrong digest")
    if getattr(report, "_index_bad", False):
        n = catalog_links.rebuild(w.t, w.env.dbs, w.db(catalog.CATALOG))
        report.repaired.append(f"rebuilt the catalog's reverse index ({n} entries)")
    refs = report._walk_refs
    queued = report._queued
    nodes_db, rc_db = w.db(NODES), w.db(NODERC)
    for k, _ in list(t.cursor(db=nodes_db)):
        nid = from_u64(k)
        if nid not in refs:
            t.delete(k, db=nodes_db)
            report.repaired.append(f"deleted leaked node {nid}")
    for k, _ in list(t.cursor(db=rc_db)):
        t.delete(k, db=rc_db)
    for nid, c in refs.items():
        if nid in queued:
            continue
        if c != 1:
            t.put(u64(nid), c.to_bytes(4, "big"), db=rc_db)
    for msg in w.blocks.rebuild(report._expected_blocks):
        report.repaired.append(msg)
    report.repaired.append("node refcounts rewritten from the trees")
