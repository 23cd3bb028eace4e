"""The remote tier: share snapshots through an S3-compatible object store.

An interface above the API (docs/ARCHITECTURE.md §2): it talks to the
store only through ``blockstore.api`` (``api/treestream.py`` for items and
blocks, ``api/remotes.py`` for the configuration) and supplies the pool's
block fetcher (``pool/lazy.py``) by injection.  Layout on the remote:
docs/REMOTE-FORMAT.md.
"""
from __future__ import annotations

from ..api import remotes as _remotes


class _Tier:
    """What the API calls (``Store.push``/``pull``/``fill``/``remote_gc``)."""

    def push(self, store, names, remote=None, progress=None, threads=8):
        from .push import push
        return push(store, names, remote, progress, threads)

    def pull(self, store, name, remote=None, lazy=False, progress=None, threads=8):
        from .pull import pull
        return pull(store, name, remote, lazy=lazy, progress=progress, threads=threads)

    def fill(self, store, name, progress=None, threads=8):
        from .pull import fill
        return fill(store, name, progress, threads)

    def gc(self, store, remote=None, grace=None, dry_run=False):
        from .client import GRACE_SECONDS
        from .gc import gc
        return gc(store.path, remote, GRACE_SECONDS if grace is None else grace, dry_run)

    def rm_snapshot(self, store, name, remote=None):
        from .remove import remove_snapshot
        return remove_snapshot(store.path, name, remote)

    def snapshots(self, store, remote=None):
        from .client import Remote
        return Remote(store.path, remote).snapshot_names()

    def fetcher_for(self, store):
        from .fetch import RemoteFetcher
        return RemoteFetcher(store.path)


_remotes.register_tier(_Tier())
