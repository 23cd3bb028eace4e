"""Store check: the catalog's invariants (nodes, blocks, records, index:
``catalog.check``) plus each tree's filesystem invariants (``fs.check``),
trees sharing a root checked once.

Working clones of imports whose process is gone are reported as findings
(``report.findings``, not problems: the store is sound, they only hold space
and keep their parent from being removed; see staging.py).

Problems name the tree and, where it can be found, the path.
"""
from __future__ import annotations

from .. import catalog
from ..btree.store import NodeStore
from ..catalog import CheckReport, check as catalog_check
from ..fs.check import check_tree, paths_of_blocks
from .staging import LABEL as STAGING_LABEL, leftovers


def check_store(store, repair: bool = False, scrub: bool = False) -> CheckReport:
    report = catalog_check(store.env, repair=repair, scrub=scrub)
    with store.env.read() as r:
        ns = NodeStore.of(r)
        seen: dict[int, str] = {}
        for rec in catalog.records(r):
            if rec.root in seen or not rec.root:
                continue
            if rec.labels.get(STAGING_LABEL):
                continue    # an unfinished import: a bulk import commits partial trees
                            # (the catalog check above covers its nodes and blocks)
            seen[rec.root] = rec.name
            if not report.ok and any(p.kind == "node-damaged" and p.tree == rec.name
                                     for p in report.problems):
                continue
            try:
                check_tree(ns, rec.root, lambda msg, tree=rec.name:
                           report.add("fs", msg, tree, repairable=False))
            except Exception as exc:        # a damaged tree must not stop the check
                report.add("fs", f"cannot scan the tree: {exc}", rec.name, repairable=False)
        _name_damaged_files(r, ns, report)
        for name, why, removable in leftovers(r):
            report.note("staging-left", f"working clone of an unfinished import: {why}; "
                        + ("`blockstore gc` removes it" if removable
                           else "remove it with `blockstore rm` once that import is over"),
                        name, repairable=removable)
    return report


def _name_damaged_files(r, ns, report) -> None:
    """Fill in the file path of problems that name a pool block and a tree.
    Cost: one scan of the extents of each such tree."""
    wanted: dict[str, list] = {}
    for p in report.problems:
        if p.block is not None and p.tree is not None and p.path is None:
            wanted.setdefault(p.tree, []).append(p)
    for tree, probs in wanted.items():
        try:
            rec = catalog.get(r, tree)
        except Exception:
            continue
        for block, path in paths_of_blocks(ns, rec.root, [p.block for p in probs]).items():
            for p in probs:
                if p.block == block and p.path is None:
                    p.path = path


