"""Group commit for a mount: store calls run inline on the trio thread, which
owns the mount's batch.

Why inline: a store batch (``Store.batch()``) is one LMDB write transaction
that only the thread that opened it sees, so every store call of the mount
that must see uncommitted changes runs on one thread.  That thread is the
trio thread itself: a hand-off to another thread (a round trip through a
queue + trio token, or ``trio.to_thread``) costs about 0.1 ms per request,
more than a whole 128 KiB read from the page cache.  Calls are synchronous, so each FUSE request
runs to completion and sees every change answered before it
(read-your-writes; the one write the adapter may hold back after answering
it is stored before any other request runs, and by ``before_commit`` at the
start of every commit: see "Write-behind" in ``adapter.py``); the cost is
that a request's store work stalls the others while it runs.  What may
block for long does not run inline:

* data reads of a clean mount (no uncommitted batch) that miss the page
  cache go to a worker thread with their own read transaction (the adapter
  tries ``RWF_NOWAIT`` first; see ``Adapter.read``);
* host I/O of bind/tmpfs mounts runs in worker threads (``adapter.py``).
Metadata reads (LMDB pages, mmap'ed) and writes into the page cache run
inline; so does a commit's fdatasync (the mount's writers wait for it as
they would on a kernel filesystem's journal commit).

When the batch is committed (one fdatasync + one LMDB sync for all of it):

* ``sync()``: fsync/fsyncdir (the reply waits for the commit: durability);
* ``COMMIT_INTERVAL`` (50 ms) after the batch's first change (``run``, a
  trio task, sleeps until then);
* when it holds ``MAX_BYTES`` (128 MiB) of written data or ``MAX_OPS`` (1024)
  changes.  A commit's cost is mostly fixed, whatever its size (the wait
  for the last checksums, the data fdatasync of what writeback has not
  reached yet, ~25 LMDB page writes and two syncs), so the byte bound is
  set above what the 50 ms bound lets a fast writer gather (100 MiB at
  2 GB/s) and a streaming writer's batches end by age; the bound is also
  the written data the redo log may hold in memory;
* ``request_commit()``: SIGUSR1 from another process's ``Store.open``,
  ``Store.commit`` etc. (``blockstore.api.writers``); the next batch then
  waits ``writers.GRACE`` (0.2 s) so that the requester gets the writer lock;
* ``stop()``: unmount.
Closing a file does not commit (like a kernel page cache before writeback).
So other processes see a mount's changes once committed: within 50 ms of
the first uncommitted change (plus the LMDB writer lock wait), or at once
after an fsync or a commit/snapshot of the tree.  SIGKILL of the daemon
loses at most the uncommitted batch (< 50 ms of changes); everything
fsync'ed, or captured by a commit, is there.

A batch is opened only by a change: reads while nothing is uncommitted run
in their own read transaction, so an idle or read-only mount holds no LMDB
writer lock.  While a batch is open this process holds the store's writer
lock: other writers of the store wait up to ``COMMIT_INTERVAL``.  Opening a
batch waits (inline) for that lock while another process holds it.

Failed changes.  An operation that raises inside the batch may have changed
part of the transaction (CoW shadowing, refcounts) before failing; a batch
cannot roll back one operation.  So every change's callable is kept (the
redo log, bounded by MAX_OPS/MAX_BYTES) and on an error the batch is
aborted and the redo log is replayed into a fresh batch (same order, same
starting state, hence same inode numbers), then the error is answered.
State outside the store that changes act on (which inodes are open: an
unlink of an open file keeps the inode) is saved when a batch opens
(``save_state``) and restored before a replay (``restore_state``); opens and
releases during the batch are logged too (``mark``), so the replay sees what
the original calls saw.
Cost: the replay, only on failing changes (rare: the kernel answers most
EEXIST/ENOENT from its dentry cache).  Caveat: if another process changed the
same tree between the abort and the replay (it only can while this process
briefly drops the writer lock), replayed changes apply to that newer state.

Failed commits (ENOSPC or EIO at fdatasync/LMDB commit): the store keeps its
last committed state (LMDB aborts); the redo log is replayed into a new
batch so the mount keeps showing what its clients wrote, the request that
asked for the commit (fsync) gets the error, and later commits retry.  While
the last commit failed, writes of data beyond MAX_BYTES are refused with that
error (backpressure instead of unbounded memory).  If the replay fails too,
the uncommitted changes are lost: logged, and the next fsync answers EIO.
"""
from __future__ import annotations

import errno
import logging
import time

import trio

from ..api.writers import GRACE

log = logging.getLogger("blockstore.fuse")

COMMIT_INTERVAL = 0.05
MAX_BYTES = 128 << 20
MAX_OPS = 1024


class Batcher:
    """The mount's group-commit batch, driven from the trio thread.

    Every method runs on the thread that runs trio (``stop`` after trio has
    returned, on the same thread).  ``registration``
    (``blockstore.api.writers.Registration`` or None) is told when the batch
    gets uncommitted changes and after every commit."""

    def __init__(self, store, registration=None, *, interval: float = COMMIT_INTERVAL,
                 max_bytes: int = MAX_BYTES, max_ops: int = MAX_OPS,
                 save_state=None, restore_state=None, on_commit=None):
        self.store = store
        self.on_commit = on_commit or (lambda txn_id: None)   # told each commit's LMDB txn id
        # Called at the start of every commit (may call write_now; must not raise).
        self.before_commit = lambda: None
        self.reg = registration
        self.save_state = save_state or (lambda: None)
        self.restore_state = restore_state or (lambda state: None)
        self._state0 = None             # save_state() at the start of the open batch
        self.interval, self.max_bytes, self.max_ops = interval, max_bytes, max_ops
        self._cm = None                 # the open Store.batch() context, or None
        self._deadline = 0.0            # time.monotonic() at which the open batch commits
        self._hold_until = 0.0          # no new batch before this (after a requested commit)
        self._opened: trio.Event | None = None    # set when a batch opens (wakes ``run``)
        self._redo: list = []
        self._bytes = 0
        self._commit_error: BaseException | None = None   # last commit failed with this
        self._lost: BaseException | None = None           # changes dropped: next sync says EIO
        self.commits = 0

    @property
    def failing(self) -> bool:
        """The last commit failed (changes are kept in memory until one succeeds)."""
        return self._commit_error is not None

    @property
    def clean(self) -> bool:
        """Nothing uncommitted: a fresh read transaction (any thread) sees all changes."""
        return self._cm is None

    # -- calls from request handlers -------------------------------------------------------
    async def write(self, fn, *args, redo=None, nbytes: int = 0, **kw):
        """fn(*args) as one change in the batch; ``redo`` (default: the same call)
        replays it after an abort; ``nbytes``: data bytes it writes."""
        if (self._commit_error is not None and nbytes
                and self._bytes + nbytes > self.max_bytes):
            raise self._commit_error        # backpressure while commits fail
        while self._cm is None and time.monotonic() < self._hold_until:
            await trio.sleep(self._hold_until - time.monotonic())  # the requester writes first
        return self.write_now(fn, *args, redo=redo, nbytes=nbytes, **kw)

    def write_now(self, fn, *args, redo=None, nbytes: int = 0, **kw):
        """``write`` without the hold after a requested commit: for a change that
        was answered already (the adapter's write-behind), into the open batch."""
        call = lambda: fn(*args, **kw)                              # noqa: E731
        res = self._change(call, redo or call, nbytes)
        self._commit_if_full()
        return res

    def mark(self, fn, *args, **kw):
        """fn(*args), a call that changes state ``save_state`` covers (open/release)
        and maybe the store (an orphan freed at release): inside an open batch it
        joins it and is logged for replay; otherwise it runs on its own (without
        opening a batch: any store change it makes commits by itself)."""
        call = lambda: fn(*args, **kw)                              # noqa: E731
        if self._cm is None:
            return call()
        return self._change(call, call, 0)

    def sync(self) -> None:
        """Commit now; raises the commit's error (or EIO once after lost changes)."""
        err = self._commit("fsync")
        if err is None and self._lost is not None:
            self._lost, err = None, OSError(errno.EIO, "uncommitted changes were lost "
                                                       "after a failed commit; see the log")
        if err is not None:
            raise err

    def request_commit(self) -> None:
        """Commit now for another process (SIGUSR1) and let it write before our next batch."""
        self._commit("request")
        self._hold_until = time.monotonic() + GRACE

    async def run(self) -> None:
        """The age bound: commits each batch ``interval`` after it opened (a trio task)."""
        while True:
            if self._cm is None:
                self._opened = trio.Event()
                await self._opened.wait()
            wait = self._deadline - time.monotonic()
            if wait > 0:
                await trio.sleep(wait)
            elif self._cm is not None:
                self._commit("age")

    def stop(self) -> None:
        """Commit what is left (after serving stopped)."""
        self._commit("unmount")

    # -- the batch ---------------------------------------------------------------------------
    def _commit_if_full(self) -> None:
        if self._cm is not None and (len(self._redo) >= self.max_ops
                                     or self._bytes >= self.max_bytes
                                     or time.monotonic() >= self._deadline):
            self._commit("limit")

    def _open(self) -> None:
        self._state0 = self.save_state()
        cm = self.store.batch()
        cm.__enter__()          # waits for the store's writer lock
        self._cm = cm
        self._deadline = time.monotonic() + self.interval
        if self._opened is not None:
            self._opened.set()
        if self.reg is not None:
            # After taking the lock: a flusher that holds it sees "clean" and does not wait.
            self.reg.opened()

    def _abort(self, exc: BaseException) -> None:
        cm, self._cm = self._cm, None
        try:
            cm.__exit__(type(exc), exc, exc.__traceback__)
        except BaseException:                       # noqa: BLE001
            log.exception("aborting the batch")

    def _replay(self, redo: list, nbytes: int) -> bool:
        """Re-apply ``redo`` in a fresh batch; False (batch aborted, changes lost) on failure."""
        self._redo, self._bytes = [], 0
        try:
            self.restore_state(self._state0)
            self._open()
            for fn in redo:
                fn()
        except BaseException as exc:                # noqa: BLE001
            if self._cm is not None:
                self._abort(exc)
            log.error("replaying %d uncommitted changes failed (%s): they are lost", len(redo), exc)
            self._lost = exc
            if self.reg is not None:
                self.reg.committed()                # nothing uncommitted any more
            return False
        self._redo, self._bytes = redo, nbytes
        return True

    def _change(self, fn, redo, nbytes):
        if self._cm is None:
            self._open()
        try:
            res = fn()
        except BaseException as exc:
            # The failed call may have half-changed the batch: abort, replay the rest.
            redo_log, b = self._redo, self._bytes
            self._abort(exc)
            if redo_log:
                self._replay(redo_log, b)
            elif self.reg is not None:
                self.reg.committed()
            raise
        self._redo.append(redo)
        self._bytes += nbytes
        return res

    def _commit(self, why: str) -> BaseException | None:
        """Commit the open batch (if any); None or the commit's error.
        ``before_commit`` runs first: it adds changes already answered."""
        self.before_commit()
        if self._cm is None:
            if self.reg is not None and why in ("request", "fsync"):
                self.reg.committed()                # answer a flush request: nothing to commit
            return None
        cm, redo, nbytes = self._cm, self._redo, self._bytes
        self._redo, self._bytes = [], 0
        txn_id = self.store.batch_txn_id()
        try:
            cm.__exit__(None, None, None)
        except BaseException as exc:                # noqa: BLE001
            self._cm = None
            log.error("commit (%s) of %d changes failed: %s; keeping them in memory",
                      why, len(redo), exc)
            self._commit_error = exc
            self._replay(redo, nbytes)
            return exc
        self._cm = None                 # only now: `clean` means committed
        self._commit_error = None
        self.commits += 1
        self.on_commit(txn_id)
        if self.reg is not None:
            self.reg.committed()
        return None
