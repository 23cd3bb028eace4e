"""What changed in some trees since the last look, as the inodes and
directory entries a cache of them (the kernel's, for a FUSE mount) must drop.

A *view* is a read transaction plus the committed root of every watched
tree in it.  ``poll()`` opens a new view and diffs each tree's root against
the *base* view (the last state the cache is known to reflect), then makes
the new view the base.  The base's read transaction is kept open until the
next poll, so its nodes stay readable even after a later commit freed them
(the diff reads each side through its own transaction; node ids are never
reused).  Costs: per poll one read transaction and one catalog lookup per
tree; per change, O(difference x depth) like ``Store.diff``.  The open base
delays the reuse of blocks freed meanwhile by one poll interval
(docs/ARCHITECTURE.md §5), except after own commits (below).

Own commits: changes this process made went through the cache, which
already reflects them.  ``own_commit(txn_id)``, called right after such a
commit, opens a view at once; if that view is exactly the commit (nobody
else committed in between) it becomes the next base, so later changes by
others are diffed against what the cache saw, and nothing is reported for
the own commit itself; when every commit since the base was an own commit
(a mount writing alone), that view becomes the base at once (unless a poll
is running), so the base does not hold back the reuse of what those commits
freed: a FUSE mount overwriting a file alone needs about one batch of
extra pool space, not two.  Between two bases, a diff is skipped when every
commit in between was an own commit, and otherwise reported whole (own
changes included: a spurious drop costs a re-read).  What can be missed:
if another process commits in the microseconds between an own commit and
its view, an entry created by this process and removed by the other (or
the reverse) nets out of the diff; the cache's own timeouts bound that.

Threads: ``poll`` runs on a thread holding no batch (else its view would
be the batch); ``own_commit`` on the committing thread after the commit.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from .. import catalog, failpoints
from ..btree.store import NodeStore
from ..errors import NotFound
from ..fs import diff as fsdiff


@dataclass
class Changed:
    """What a cache of one tree must drop (local inode numbers)."""
    attrs: set[int] = field(default_factory=set)     # inode record changed (or gone)
    data: set[int] = field(default_factory=set)      # content (extents, inline data) changed
    entries: set[tuple[int, bytes]] = field(default_factory=set)   # (dir, name) added/removed/moved

    def __bool__(self) -> bool:
        return bool(self.attrs or self.data or self.entries)


def _changed(ns_old: NodeStore, old: int, new: int, ns_new: NodeStore) -> Changed:
    """Every differing item counts (fs.diff.delta, not .visible): a cache holds
    ctimes and must drop what it holds even when a user would see no change."""
    d = fsdiff.delta(ns_old, old, new, ns_new)
    return Changed(set(d.attrs), set(d.data), {(ino, name) for ino, name, _, _ in d.entries})


class _View:
    __slots__ = ("cm", "rt", "roots")

    def __init__(self, env, names):
        self.cm = env.read()
        self.rt = self.cm.__enter__()
        self.roots: dict[str, int] = {}
        try:
            for n in names:
                try:
                    self.roots[n] = catalog.get(self.rt, n).root
                except NotFound:
                    pass                # removed (mounts refuse that): nothing to drop
        except BaseException:
            self.close()
            raise

    @property
    def id(self) -> int:
        return self.rt.id()

    def close(self) -> None:
        cm, self.cm = self.cm, None
        if cm is not None:
            cm.__exit__(None, None, None)


class TreeWatch:
    def __init__(self, store, names):
        self.env = store.env
        self.names = list(names)
        self._base: _View | None = None         # the state the cache is known to reflect
        self._lock = threading.Lock()           # guards _base (swaps), _pending, _own, _polling
        self._polling = False                   # poll() is running: it owns _base
        self._pending: _View | None = None      # view right after the last own commit
        self._own: set[int] = set()             # txn ids of own commits not yet passed

    def start(self) -> None:
        """Take the base state now: what the cache will be shown from here on is
        this state or newer, so every commit after it is in the next poll's diff.
        A watcher must start before anything it serves is read (a mount: before
        the kernel can send a request); without a base the first poll takes its
        state as the base and misses a commit made between a reply and that poll."""
        view = _View(self.env, self.names)
        with self._lock:
            old, self._base = self._base, view
        if old is not None:
            old.close()

    def own_commit(self, txn_id: int | None) -> None:
        """This process just committed ``txn_id`` through the cache."""
        if txn_id is None:
            return
        view = _View(self.env, self.names)
        done = []
        with self._lock:
            self._own.add(txn_id)
            base = self._base
            if (view.id == txn_id and not self._polling and base is not None
                    and all(i in self._own for i in range(base.id + 1, txn_id + 1))):
                # Only own commits since the base: the cache reflects this view,
                # which becomes the base now (not at the next poll), so what
                # those commits freed is reusable from the next write on.
                done += [base, self._pending]
                self._base, self._pending = view, None
                self._own = {i for i in self._own if i > txn_id}
            elif view.id == txn_id:
                done.append(self._pending)
                self._pending = view
            else:
                done.append(view)
        for v in done:
            if v is not None:
                v.close()

    def poll(self) -> dict[str, Changed]:
        """{tree name: Changed} for what others changed since the cache's last known state."""
        if failpoints.ACTIVE:
            failpoints.hit("treewatch.before_poll")
        new = _View(self.env, self.names)
        with self._lock:
            pending, self._pending = self._pending, None
            own = set(self._own)
            base = self._base
            self._polling = True            # _base is poll's until it is done
        out: dict[str, Changed] = {}
        try:
            if pending is not None:
                if base is not None and pending.id <= base.id:
                    pending.close()                 # older than what was diffed already
                else:
                    if base is not None:
                        self._diff_into(out, base, pending, own)
                        base.close()
                    base = self._base = pending
            if base is not None:
                self._diff_into(out, base, new, own)
        finally:
            if base is not None:
                base.close()
            with self._lock:
                self._base = new
                self._polling = False
        with self._lock:
            self._own = {i for i in self._own if i > new.id}
        return out

    @staticmethod
    def _diff_into(out: dict, a: _View, b: _View, own: set[int]) -> None:
        if all(i in own for i in range(a.id + 1, b.id + 1)):
            return                                  # nothing but own commits in between
        ns_a, ns_b = NodeStore.of(a.rt), NodeStore.of(b.rt)
        for n, root in b.roots.items():
            before = a.roots.get(n)
            if before is not None and before != root:
                ch = _changed(ns_a, before, root, ns_b)
                if ch:
                    prev = out.setdefault(n, Changed())
                    prev.attrs |= ch.attrs
                    prev.data |= ch.data
                    prev.entries |= ch.entries

    def close(self) -> None:
        for v in (self._base, self._pending):
            if v is not None:
                v.close()
        self._base = self._pending = None
