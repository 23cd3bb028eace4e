"""Named failpoints (as in etcd-io/bbolt and FreeBSD's fail(9)).

Production code marks the stages of a commit with::

    if failpoints.ACTIVE:
        failpoints.hit("commit.after_lmdb")

which costs one global load and a branch when no failpoint is set.  A test
sets an action for a name; ``hit`` then calls it.  Typical actions:

* ``raise_`` -- raise ``FailpointError`` (an in-process failure: the txn layer
  aborts the LMDB transaction as for any exception);
* ``exit_`` -- ``os._exit`` at once (a simulated process crash: no cleanup,
  no LMDB commit, the OS drops the process's locks and its reader slots);
* any callable (e.g. ``testing.crashfs.CrashDataFile.crash`` to drop or tear
  the writes not yet fdatasync'ed before exiting).

``set_counter(fn)`` installs one action called at EVERY failpoint with the
name (used for "crash at the k-th failpoint hit").

Names used by blockstore (all listed in ``POINTS``):

==========================  ===================================================
commit.before_hooks         WriteTxn._commit entered, nothing flushed yet
commit.after_flush          B-tree nodes put into the LMDB txn, data not synced
commit.after_datasync       pool data fdatasync'ed, LMDB not committed
commit.after_lmdb           LMDB committed (durable), after-commit hooks not run
commit.before_after_hooks   same instant, just before the after-commit hooks
pool.after_pwrite           a pool data write reached the page cache (or was queued
                            for the background writer), not synced
pool.before_pread           a pool data read that may wait for the disk (not
                            an RWF_NOWAIT one): a slow-disk stand-in
pool.before_nowait_pread    a page-cache-only (RWF_NOWAIT) pool read: an action
                            that raises BlockingIOError stands for a miss (on a
                            fast device the kernel's readahead can complete
                            before RWF_NOWAIT looks, so a real miss is not
                            reliable)
remote.before_put           an object is about to be uploaded to a remote
treewatch.before_poll       a tree watcher's poll, before it takes the new state
==========================  ===================================================

Thread safety: set/clear from the test's main thread before the workload runs.

A product module (the txn and pool layers mark their stages here), importing
nothing of blockstore, so any layer may use it.
"""
from __future__ import annotations

import os
from typing import Callable

ACTIVE = False

# The stages of a write where a crash test stops the process.
CRASH_POINTS = (
    "commit.before_hooks",
    "commit.after_flush",
    "commit.after_datasync",
    "commit.after_lmdb",
    "commit.before_after_hooks",
    "pool.after_pwrite",
)
POINTS = CRASH_POINTS + (
    "pool.before_pread",
    "pool.before_nowait_pread",
    "remote.before_put",
    "treewatch.before_poll",
)

_actions: dict[str, Callable[[str], None]] = {}
_every: Callable[[str], None] | None = None
hits: dict[str, int] = {}


class FailpointError(RuntimeError):
    """Raised by the ``raise_`` action: an injected failure at a named point."""


def _update() -> None:
    global ACTIVE
    ACTIVE = bool(_actions) or _every is not None or _counting


_counting = False


def set(name: str, action: Callable[[str], None]) -> None:  # noqa: A001 - fail(9) vocabulary
    if name not in POINTS:
        raise ValueError(f"unknown failpoint {name!r}; one of {', '.join(POINTS)}")
    _actions[name] = action
    _update()


def set_counter(action: Callable[[str], None] | None) -> None:
    """Call ``action(name)`` at every failpoint (None removes it)."""
    global _every
    _every = action
    _update()


def count(on: bool = True) -> None:
    """Count hits per name in ``hits`` (without any action)."""
    global _counting
    _counting = on
    _update()


def clear() -> None:
    global _every, _counting
    _actions.clear()
    _every = None
    _counting = False
    hits.clear()
    _update()


def hit(name: str) -> None:
    """Called by production code only when ACTIVE."""
    hits[name] = hits.get(name, 0) + 1
    if _every is not None:
        _every(name)
    act = _actions.get(name)
    if act is not None:
        act(name)


def raise_(name: str) -> None:
    raise FailpointError(f"failpoint {name}")


def exit_(name: str) -> None:
    os._exit(77)
