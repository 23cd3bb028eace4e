"""Flush hook for processes that hold changes of a tree in an uncommitted batch.

A process that groups many changes of tree NAME into one store transaction
(the FUSE daemon does: ``store.batch()`` committed every few tens of ms, see
``blockstore/fuse/committer.py``) registers as a *writer* of NAME.  Before
``Store.commit``/``snapshot``/``export_dir``/``diff`` read a tree from
another process, ``flush`` asks every live writer of it to commit and waits,
so a snapshot captures every change that a writer had already reported as
done to its own clients.

Protocol (files only, no import of any interface layer):

* ``STORE/writers/<KEY>.<pid>``: one file per writer process and tree
  (KEY: the tree name's fixed-length key, ``treekeys.tree_key``), created
  under a new temporary name (``O_EXCL|O_NOFOLLOW``), ``flock``-ed
  exclusively by the writer for its whole life, then renamed into place.  A file whose lock can
  be taken belongs to a dead writer (SIGKILL) and is removed by whoever sees
  it (no pid-reuse hazard: liveness is the lock, not the pid).
* content: one fixed-length line ``<seq> <state> <seq>`` (seq zero-padded,
  state ``open`` = uncommitted changes exist, ``clean`` = none; the seq is
  written twice so that a torn read is detected and re-read), then the tree
  name (for messages; written once).  The writer bumps seq
  after every commit (and when asked to flush while clean).
* ``flush``: for every live writer in state ``open``: remember seq, send
  ``SIGUSR1``, wait until seq changes.  A writer must handle SIGUSR1 (commit
  at once, then ``committed()``) before it first reports ``open``.

A batch holds the store's LMDB writer lock, so any process that wants to
write (``Store.open`` does, once) would wait for the batch's end; hence
``Store.open`` calls ``flush_all`` first, and a writer that committed on
request holds back its next batch for ``GRACE`` (0.2 s) so that the
requester gets the lock (it is not fair) -- a writer keeping changes
uncommitted for long (a big commit interval) never blocks other processes
for longer than a flush.

Waiting is bounded (``FLUSH_TIMEOUT``, 5 s): a writer that does not answer
in time (stopped, hung on I/O) makes ``flush`` raise ``Busy`` instead of
letting a commit silently miss changes the writer reported as done.
Costs: one directory listing per flush; per live open writer one signal and
a poll every 2 ms until it has committed (its commit time).
"""
from __future__ import annotations

import errno
import fcntl
import os
import signal
import time

from ..errors import Busy
from .treekeys import tree_key

WRITERS_DIR = "writers"
FLUSH_TIMEOUT = 5.0
GRACE = 0.2         # seconds a writer waits after a requested commit before its next batch
_POLL = 0.002


def _line(seq: int, state: str) -> bytes:
    return f"{seq:020d} {state:<5} {seq:020d}\n".encode()


_LINE_LEN = len(_line(0, "clean"))


class Registration:
    """This process as a writer of some trees (one file per tree).

    Not thread-safe: call ``opened``/``committed`` from the one thread that
    owns the batch.  Each call is one ``pwrite`` per tree (no fsync: the
    files only matter while this process lives)."""

    def __init__(self, store_path: str, names):
        self.dir = os.path.join(os.path.abspath(store_path), WRITERS_DIR)
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.seq = 0
        self.state = "clean"
        self._files: list[tuple[str, int]] = []
        try:
            for name in dict.fromkeys(names):
                path = os.path.join(self.dir, f"{tree_key(name)}.{os.getpid()}")
                tmp = f"{path}.new-{os.urandom(4).hex()}"
                fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.pwrite(fd, _line(0, "clean") + name.encode("utf-8", "surrogateescape"), 0)
                os.rename(tmp, path)       # same inode: the lock comes along
                self._files.append((path, fd))
        except BaseException:
            self.close()
            raise

    def _write(self) -> None:
        line = _line(self.seq, self.state)
        for _, fd in self._files:
            os.pwrite(fd, line, 0)

    def opened(self) -> None:
        """Uncommitted changes exist from now on (call before the first one)."""
        if self.state != "open":
            self.state = "open"
            self._write()

    def committed(self) -> None:
        """Everything done so far is committed (also the answer to a flush when clean)."""
        self.seq += 1
        self.state = "clean"
        self._write()

    def close(self) -> None:
        files, self._files = self._files, []
        for path, fd in files:
            try:
                os.unlink(path)
            except OSError:
                pass
            os.close(fd)


def _read(path: str, want_name: bool = False) -> tuple[int, str] | tuple[int, str, str] | None:
    """(seq, state) of a writer file (and the tree name if ``want_name``), or None
    if it is gone or its writer is dead."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
        else:                               # nobody holds it: the writer died
            try:
                os.unlink(path)
            except OSError:
                pass
            return None
        for _ in range(100):
            raw = os.pread(fd, _LINE_LEN, 0).decode(errors="replace").split()
            if len(raw) == 3 and raw[0] == raw[2] and raw[0].isdigit():
                if want_name:
                    name = os.pread(fd, 1024, _LINE_LEN).decode("utf-8", "surrogateescape")
                    return int(raw[0]), raw[1], name
                return int(raw[0]), raw[1]
            time.sleep(0.0005)              # torn or half-written line: read again
        return None
    finally:
        os.close(fd)


def live_writers(store_path: str, name: str) -> list[tuple[int, str]]:
    """[(pid, path)] of the live writer processes of tree ``name`` (dead ones are removed)."""
    return _live_writers(store_path, tree_key(name))


def _live_writers(store_path: str, key: str) -> list[tuple[int, str]]:
    d = os.path.join(os.path.abspath(store_path), WRITERS_DIR)
    try:
        entries = os.listdir(d)
    except FileNotFoundError:
        return []
    prefix = key + "."
    out = []
    for e in entries:
        if not e.startswith(prefix) or not e[len(prefix):].isdigit():
            continue
        path = os.path.join(d, e)
        if _read(path) is not None:
            out.append((int(e[len(prefix):]), path))
    return out


def flush(store_path: str, names, timeout: float = FLUSH_TIMEOUT) -> None:
    """Make every live writer of the trees ``names`` commit what it holds; return
    once each has (or has none to commit).  Busy after ``timeout`` seconds."""
    _flush(store_path, [tree_key(n) for n in dict.fromkeys(names)], timeout)


def _flush(store_path: str, keys, timeout: float) -> None:
    waits = []
    for key in keys:
        for pid, path in _live_writers(store_path, key):
            if pid == os.getpid():
                continue                    # our own batch: the caller's business
            st = _read(path, want_name=True)
            if st is None or st[1] != "open":
                continue
            try:
                os.kill(pid, signal.SIGUSR1)
            except ProcessLookupError:
                continue
            waits.append((st[2], pid, path, st[0]))
    deadline = time.monotonic() + timeout
    for name, pid, path, seq in waits:
        while True:
            st = _read(path)
            if st is None or st[0] != seq:
                break
            if time.monotonic() > deadline:
                raise Busy(f"process {pid} holds uncommitted changes of tree {name!r} and did "
                           f"not commit them within {timeout:g} s; retry")
            time.sleep(_POLL)


def flush_all(store_path: str, timeout: float = FLUSH_TIMEOUT) -> None:
    """``flush`` every tree that has a live writer (one listdir when there is none)."""
    d = os.path.join(os.path.abspath(store_path), WRITERS_DIR)
    try:
        entries = os.listdir(d)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return          # no writers, or a store we may not use: opening it says so
    keys = {e.rsplit(".", 1)[0] for e in entries if e.rsplit(".", 1)[-1].isdigit()}
    if keys:
        _flush(store_path, sorted(keys), timeout)
