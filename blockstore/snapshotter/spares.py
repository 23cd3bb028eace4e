"""Spare containers: a mounted clone of an image, made before it is asked for.

Starting a container's FUSE mount costs a mount daemon's start (tens of
ms), most of a Prepare.  After a Prepare of an active snapshot on a
committed parent, the snapshotter makes one *spare* in the background: a
clone of that parent, mounted read-write, labelled ``L_SPARE`` and in no
index (no RPC sees it).  The next Prepare on the same parent *claims* it:
one label change gives it its key, namespace and labels, and its mount is
already live.  A clone of a committed snapshot made earlier is the same
tree as one made now (the parent cannot change), so a claimed spare is
indistinguishable from a fresh clone; its containerd creation time is the
claim's (``records.L_CREATED``).  Once ready, a spare's mount is warmed
(``warm.py``): the lookups and reads of a container's start are done
through it beforehand, so they hit the kernel's caches.

At most ``LIMIT`` parents keep a spare (the most recently used); one is
dropped (retired, then unmounted and removed in the background) when its
parent is removed, when it is evicted, and at a restart (a spare is never
re-adopted).  Costs: one mount daemon and one tree per spare, no data.
"""
from __future__ import annotations

from collections import OrderedDict

LIMIT = 4


class Spares:
    """Which spare serves which parent (store tree names); the caller holds its lock."""

    def __init__(self, limit: int = LIMIT):
        self.limit = limit
        self.ready: OrderedDict[str, str] = OrderedDict()     # parent tree -> spare tree
        self.making: set[str] = set()                        # parents whose spare is on its way

    def take(self, parent: str) -> str | None:
        return self.ready.pop(parent, None)

    def wanted(self, parent: str) -> bool:
        return parent not in self.ready and parent not in self.making

    def add(self, parent: str, spare: str) -> list[str]:
        """Keep ``spare`` for ``parent``; returns the spares evicted (oldest first)."""
        self.ready[parent] = spare
        self.ready.move_to_end(parent)
        out = []
        while len(self.ready) > self.limit:
            out.append(self.ready.popitem(last=False)[1])
        return out

    def drop(self, parent: str) -> str | None:
        """The spare of ``parent`` (removed): no longer kept."""
        return self.ready.pop(parent, None)
