"""Kernel cache invalidation for a mount: trees changed underneath it.

A served writable tree can change without going through this mount:
another process writes the clone through the library or the CLI, another
mount shares a volume.  ``Watcher.run`` (a trio task) polls
``api.treewatch.TreeWatch`` every ``POLL`` seconds in a worker thread and
tells the kernel to drop what changed: attributes (``invalidate_inode``
attr_only), page cache of files whose content changed and the cached
listing of directories whose entries changed (``invalidate_inode``), and
directory entries added, removed or moved (``invalidate_entry``).  Own
commits are reported to the TreeWatch by the batcher and cost nothing.

The base state is taken when the Watcher is made, before the mount serves
a request (``TreeWatch.start``), so a commit landing between a cached answer
and the first poll is in the first diff.

So a change made elsewhere is seen through the mount within its commit
(50 ms for another mount's batch) plus ``POLL``; a file kept open across
the change reads the new data afterwards.  Invalidations run in a worker
thread: they may block until a related request in flight is answered
(pyfuse3's documentation), which the trio thread does meanwhile.
"""
from __future__ import annotations

import errno
import logging

import pyfuse3
import trio

from ..api.treewatch import TreeWatch

log = logging.getLogger("blockstore.fuse")

POLL = 0.1


class Watcher:
    def __init__(self, store, trees: dict[str, list[int]], join, poll: float = POLL):
        """``trees``: {tree name: indexes of the servers showing it};
        ``join(k, ino)``: the FUSE inode of local inode ino of server k."""
        self.trees = trees
        self.join = join
        self.poll = poll
        self.watch = TreeWatch(store, trees)
        # The base state before the mount serves anything (TreeWatch.start): a
        # commit between the first replies and the first poll is then seen.
        self.watch.start()

    def own_commit(self, txn_id) -> None:
        self.watch.own_commit(txn_id)

    async def run(self) -> None:
        try:
            while True:
                try:
                    changed = await trio.to_thread.run_sync(self.watch.poll)
                    if changed:
                        await trio.to_thread.run_sync(self._invalidate, changed)
                except Exception:                   # noqa: BLE001 -- the mount keeps serving
                    log.exception("cache invalidation: polling the trees failed")
                    self.watch.close()              # start over from a fresh view
                await trio.sleep(self.poll)
        finally:
            self.watch.close()

    def _invalidate(self, changed) -> None:
        for name, ch in changed.items():
            # A directory whose entries changed is invalidated whole: its listing,
            # which the kernel keeps (FOPEN_CACHE_DIR), lives in its page cache,
            # and an added name the kernel never looked up has no entry to drop.
            full = ch.data | {d for d, _ in ch.entries}
            for k in self.trees[name]:
                for ino in full:
                    quietly(pyfuse3.invalidate_inode, self.join(k, ino), False)
                for ino in ch.attrs - full:
                    quietly(pyfuse3.invalidate_inode, self.join(k, ino), True)
                for d, entry in ch.entries:
                    quietly(pyfuse3.invalidate_entry, self.join(k, d), entry)


def quietly(fn, *args) -> None:
    try:
        fn(*args)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOSYS):   # not cached: nothing to drop
            log.warning("%s%r: %s", fn.__name__, args, exc)
