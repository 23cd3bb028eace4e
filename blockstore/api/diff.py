"""What changed between two trees, as paths (like ``docker diff``).

Built on ``fs.diff`` (the engine's tree diff, so the cost is proportional
to the difference: subtrees the two trees share are skipped by node id;
what counts as a change is decided there: content and metadata a user can
see, not ctimes or block pointers).  Changed items map to changes: a
directory entry that appears is ``A`` (added), one that disappears ``D``
(deleted; entries below a deleted directory are not listed again), an inode
whose attributes, content or xattrs differ ``C`` (changed, at each of its
paths).  The letters are docker diff's, and the CLI prints them as they are.
A rename is a ``D`` of the old path and an ``A`` of the new one.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from .. import catalog
from ..btree.store import NodeStore
from ..fs import diff as fsdiff
from ..fs.tree import FileTree

_TYPES = {0o040000: "dir", 0o100000: "file", 0o120000: "symlink", 0o020000: "char",
          0o060000: "block", 0o010000: "fifo", 0o140000: "socket"}


@dataclass(frozen=True, order=True)
class Change:
    path: str
    kind: str        # "A" (added), "C" (changed) or "D" (deleted)
    type: str        # file, dir, symlink, char, block, fifo, socket

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"


def _type(fst: FileTree, ino: int) -> str:
    try:
        return _TYPES.get(fst.inode(ino).mode & 0o170000, "file")
    except Exception:
        return "file"


def _join(fst: FileTree, parent: int, name: bytes) -> str | None:
    base = fst.path_of(parent)
    if base is None:
        return None
    return os.fsdecode(base.rstrip(b"/") + b"/" + name)


def diff_trees(store, a: str, b: str) -> list[Change]:
    with store.env.read() as r:
        ns = NodeStore.of(r)
        ra, rb = catalog.get(r, a).root, catalog.get(r, b).root
        fa, fb = FileTree(ns, ra, time.time_ns), FileTree(ns, rb, time.time_ns)
        entries, modified = fsdiff.visible(fa, fb, fsdiff.delta(ns, ra, rb))
        added, deleted = [], []
        for dir_a, dir_b, name, ca, cb in entries:
            if ca is not None:
                deleted.append((dir_a, name, ca[0]))
            if cb is not None:
                added.append((dir_b, name, cb[0]))
        out: dict[str, Change] = {}
        gone_dirs = []
        for parent, name, child in deleted:
            p = _join(fa, parent, name)
            if p is not None:
                t = _type(fa, child)
                out[p] = Change(p, "D", t)
                if t == "dir":
                    gone_dirs.append(p + "/")
        for parent, name, child in added:
            p = _join(fb, parent, name)
            if p is not None:
                out[p] = Change(p, "A" if p not in out else "C", _type(fb, child))
        for ino in modified:                   # inodes of b (fs.diff.visible)
            if ino == 1:
                links = [(0, None)]
            else:
                links = fb.parents(ino)            # a changed file changed at every path
            for parent, name in links:
                p = "/" if name is None else _join(fb, parent, name)
                if p is not None and p not in out:
                    out[p] = Change(p, "C", _type(fb, ino))
        return sorted(c for c in out.values()
                      if not (c.kind == "D" and any(c.path.startswith(g) for g in gone_dirs)))
