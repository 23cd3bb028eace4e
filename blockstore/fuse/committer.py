"""Group commit for a mount: every store call runs on one thread holding a batch.

Why one thread: a store batch (``Store.batch()``) is one LMDB write
transaction that only its own thread sees; so every store call of the mount,
reads included, runs on the ``StoreThread`` in submission order, and each
FUSE request sees every change made before it (read-your-writes).

When the batch is committed (one fdatasync + one LMDB sync for all of it):

* ``sync()``: fsync/fsyncdir (the reply waits for the commit: durability);
* ``COMMIT_INTERVAL`` (50 ms) after the batch's first change;
* when it holds ``MAX_BYTES`` (32 MiB) of written data or ``MAX_OPS`` (1024)
  changes;
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
lock: other writers of the store wait up to ``COMMIT_INTERVAL``.

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
import queue
import threading
import time

import trio

from ..api.writers import GRACE

log = logging.getLogger("blockstore.fuse")

COMMIT_INTERVAL = 0.05
MAX_BYTES = 32 << 20
MAX_OPS = 1024

_STOP = object()


class StoreThread:
    """Runs callables on one thread that owns the mount's group-commit batch.

    ``registration`` (``blockstore.api.writers.Registration`` or None) is told
    when the batch gets uncommitted changes and after every commit."""

    def __init__(self, store, registration=None, *, interval: float = COMMIT_INTERVAL,
                 max_bytes: int = MAX_BYTES, max_ops: int = MAX_OPS,
                 save_state=None, restore_state=None):
        self.store = store
        self.reg = registration
        self.save_state = save_state or (lambda: None)
        self.restore_state = restore_state or (lambda state: None)
        self._state0 = None             # save_state() at the start of the open batch
        self.interval, self.max_bytes, self.max_ops = interval, max_bytes, max_ops
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._cm = None                 # the open Store.batch() context, or None
        self._deadline = 0.0
        self._hold_until = 0.0          # no new batch before this (after a requested commit)
        self._redo: list = []
        self._bytes = 0
        self._commit_error: BaseException | None = None   # last commit failed with this
        self._lost: BaseException | None = None           # changes dropped: next sync says EIO
        self._thread = threading.Thread(target=self._run, name="blockstore-store", daemon=True)
        self.commits = 0

    # -- trio side -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    async def _submit(self, kind, fn, redo=None, nbytes=0):
        token = trio.lowlevel.current_trio_token()
        ev = trio.Event()
        box: list = []

        def done(ok, value):
            box.append((ok, value))
            token.run_sync_soon(ev.set)
        self._q.put((kind, fn, redo, nbytes, done))
        with trio.CancelScope(shield=True):    # the call runs anyway: answer only after it
            await ev.wait()
        ok, value = box[0]
        if ok:
            return value
        raise value

    async def read(self, fn, *args, **kw):
        """fn(*args) on the store thread; it must not change the store."""
        return await self._submit("read", lambda: fn(*args, **kw))

    async def write(self, fn, *args, redo=None, nbytes: int = 0, **kw):
        """fn(*args) as one change in the batch; ``redo`` (default: the same call)
        replays it after an abort; ``nbytes``: data bytes it writes."""
        call = lambda: fn(*args, **kw)                              # noqa: E731
        return await self._submit("write", call, redo or call, nbytes)

    async def mark(self, fn, *args, **kw):
        """fn(*args), a call that changes state ``save_state`` covers (open/release)
        and maybe the store (an orphan freed at release): inside an open batch it
        joins it and is logged for replay; otherwise it runs on its own (without
        opening a batch: any store change it makes commits by itself)."""
        call = lambda: fn(*args, **kw)                              # noqa: E731
        return await self._submit("mark", call, call, 0)

    async def sync(self) -> None:
        """Commit now; raises the commit's error (or EIO once after lost changes)."""
        await self._submit("sync", None)

    def request_commit(self) -> None:
        """Commit as soon as the calls queued before this one are done (any thread,
        signal handlers included; does not wait)."""
        self._q.put(("commit", None, None, 0, None))

    def stop(self, timeout: float = 60.0) -> None:
        """Commit what is left and end the thread (call after serving stopped)."""
        if self._thread.is_alive():
            self._q.put((_STOP, None, None, 0, None))
            self._thread.join(timeout)

    # -- the store thread --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                timeout = None if self._cm is None else max(0.0, self._deadline - time.monotonic())
                try:
                    job = self._q.get(timeout=timeout)
                except queue.Empty:
                    self._commit("age")
                    continue
                kind, fn, redo, nbytes, done = job
                if kind is _STOP:
                    self._commit("unmount")
                    return
                if kind == "commit":
                    self._commit("request")
                    self._hold_until = time.monotonic() + GRACE
                elif kind == "sync":
                    err = self._commit("fsync")
                    if err is None and self._lost is not None:
                        self._lost, err = None, OSError(errno.EIO, "uncommitted changes were lost "
                                                                   "after a failed commit; see the log")
                    done(err is None, err)
                elif kind == "read" or (kind == "mark" and self._cm is None):
                    self._answer(done, fn)
                else:
                    self._change(fn, redo, nbytes, done)
                if self._cm is not None and (time.monotonic() >= self._deadline
                                             or len(self._redo) >= self.max_ops
                                             or self._bytes >= self.max_bytes):
                    self._commit("limit")
            except BaseException:                   # noqa: BLE001 -- keep serving
                log.exception("store thread")

    @staticmethod
    def _answer(done, fn) -> None:
        try:
            res = fn()
        except BaseException as exc:                # noqa: BLE001 -- answered to the caller
            done(False, exc)
        else:
            done(True, res)

    def _open(self) -> None:
        self._state0 = self.save_state()
        cm = self.store.batch()
        cm.__enter__()          # waits for the store's writer lock
        self._cm = cm
        self._deadline = time.monotonic() + self.interval
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

    def _change(self, fn, redo, nbytes, done) -> None:
        if (self._commit_error is not None and nbytes
                and self._bytes + nbytes > self.max_bytes):
            done(False, self._commit_error)
            return
        if self._cm is None:
            wait = self._hold_until - time.monotonic()
            if wait > 0:
                time.sleep(wait)        # let the process that asked for the commit write
            try:
                self._open()
            except BaseException as exc:            # noqa: BLE001
                done(False, exc)
                return
        try:
            res = fn()
        except BaseException as exc:                # noqa: BLE001
            # The failed call may have half-changed the batch: abort, replay the rest.
            redo_log, b = self._redo, self._bytes
            self._abort(exc)
            if redo_log:
                self._replay(redo_log, b)
            elif self.reg is not None:
                self.reg.committed()
            done(False, exc)
            return
        self._redo.append(redo)
        self._bytes += nbytes
        done(True, res)

    def _commit(self, why: str) -> BaseException | None:
        """Commit the open batch (if any); None or the commit's error."""
        if self._cm is None:
            if self.reg is not None and why in ("request", "fsync"):
                self.reg.committed()                # answer a flush request: nothing to commit
            return None
        cm, redo, nbytes = self._cm, self._redo, self._bytes
        self._cm, self._redo, self._bytes = None, [], 0
        try:
            cm.__exit__(None, None, None)
        except BaseException as exc:                # noqa: BLE001
            log.error("commit (%s) of %d changes failed: %s; keeping them in memory",
                      why, len(redo), exc)
            self._commit_error = exc
            self._replay(redo, nbytes)
            return exc
        self._commit_error = None
        self.commits += 1
        if self.reg is not None:
            self.reg.committed()
        return None
