"""Transactions: the only way to change a store.

One ``Env`` per open store per process owns the LMDB environment (sync and
metasync on), its table of named databases and the data pool.  Every change
runs inside one ``WriteTxn`` = one LMDB write transaction:

* commit order: upper layers' ``before_commit`` hooks (the B-tree flushes its
  dirty nodes), then ``fdatasync`` of the data file if blocks were written,
  then the LMDB commit (which fsyncs).  Data is durable before the metadata
  that points at it (docs/ARCHITECTURE.md §5, §6).
* group commit: inside ``env.batch()`` every ``env.write()`` joins one
  transaction, committed (one fdatasync + one LMDB sync) when the batch
  ends or at ``env.sync()``.  Outside a batch each ``write()`` is durable on
  return.
* deferred frees: at the start of each write transaction, blocks freed by
  transactions that every live reader already sees are released to the free
  map (``Pool.release_pending``); stale reader slots of dead processes are
  cleared first (``reader_check``).
* the map is sized far beyond need (address space only); if LMDB still
  reports MapFullError, ``transact`` grows the map and reruns the work.
* opening: a store is created only in an absent or empty directory; a pool
  without valid metadata, or a data.mdb shorter than its own header says
  (which LMDB would map past its end: SIGBUS), is Corruption before LMDB
  maps anything (``storefiles``).  Inside every transaction, LMDB's
  corruption errors and unpacking a stored value of the wrong size are
  raised as Corruption (``damage_is_corruption``).

Locking: one writer per store at a time.  Threads of a process serialize on
``Env.lock``; processes serialize on LMDB's writer mutex (a second writer
waits; a SIGKILLed writer's mutex is recovered at once).  Readers never
block and are never blocked.  An Env must not be used after ``fork``: the
child gets ``Busy``; py-lmdb cannot open the same store again in a forked
child either, so worker processes are started with ``spawn`` or as
subprocesses (see ``_after_fork_in_child``).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import stat
import struct
import threading
import time
import weakref
from typing import Callable, Iterator, TypeVar

import lmdb

from . import storefiles
from .errors import (BlockstoreError, Busy, Corruption, FormatTooNew, InvalidInput, NoSpace,
                     NotAStore, NotFound, PermissionDenied)
from .pool import BlockReader, BlockWriter, DataFile, Pool, PoolDbs
from .pool.dbs import TOTAL_BLOCKS, Meta
from .pool.sums import ALGORITHMS as CHECKSUMS, default_algorithm
from .storefiles import DATA_FILE, META_DIR, META_FILE, RESERVE_FILE
from . import failpoints

# Format 2 = pool.sums may hold XXH3-128 digests (meta b"checksum").
# Format 3 = the catalog's reverse index (catalog/links.py) exists and is kept
# by every write, and pool.absent may hold blocks of lazily pulled snapshots
# (an older blockstore would read them as zeros): a blockstore that does not
# know both must not open the store.  Older stores are upgraded when this
# blockstore opens them (``_upgrade``).
FORMAT_VERSION = 3
FORMAT_ABSENT = 3
RESERVE_BYTES = 4 * 1024 * 1024
DEFAULT_BLOCK_SIZE = 4 * 1024
MIN_BLOCK_SIZE = 4 * 1024
MAX_BLOCK_SIZE = 1024 * 1024
INITIAL_MAP_SIZE = 1 << 40          # address space, not disk
MAX_DBS = 32

_U64 = struct.Struct(">Q")
T = TypeVar("T")

# Named databases of the layers above the pool; registered at import time so
# that every one is opened when the environment opens (LMDB cannot open a
# database while this thread holds a write transaction).
_DB_NAMES: list[str] = ["meta"]


# Upgrades registered by upper layers (``register_upgrade``): (version, fn);
# fn(t, dbs) brings a store of an older format to ``version`` inside the raw
# LMDB write transaction t that opens it (dbs: database name -> handle).
_UPGRADES: list[tuple[int, object]] = []


def register_upgrade(version: int, fn) -> None:
    _UPGRADES.append((version, fn))


def register_db(name: str) -> str:
    if name not in _DB_NAMES:
        _DB_NAMES.append(name)
    return name


def u64(n: int) -> bytes:
    return _U64.pack(n)


def from_u64(b) -> int:
    return _U64.unpack(b)[0]


class Txn:
    """What both read and write transactions offer the layers above."""

    write = False

    def __init__(self, env: "Env", t: lmdb.Transaction):
        self.env = env
        self.t = t
        # Verified reads (Store.open(verify_reads=True)): the pool view checks every block
        # read in this txn against pool.sums; off, this is the pool itself (zero cost).
        view = env.pool.verifying(t) if env.verify_reads else env.pool
        # Absent blocks (a lazily pulled snapshot): reads fetch them first.  One get
        # per txn; only another writer adds absent blocks, never during this txn
        # (a txn that adds some, Store.build_snapshot, does not read them).
        if env.pool.absent.count(t):
            view = env.pool.lazy_view(t, view)
        # The only door to blocks for the layers above: the pool bound to this txn.
        self.blocks = (BlockWriter if self.write else BlockReader)(env.pool, t, view)
        self.local: dict = {}   # per-transaction state of upper layers (e.g. the node store)

    def db(self, name: str):
        return self.env.dbs[name]

    def id(self) -> int:
        return self.t.id()

    def meta_int(self, key: bytes, default: int = 0) -> int:
        v = self.t.get(key, db=self.env.dbs["meta"])
        return default if v is None else from_u64(v)


class ReadTxn(Txn):
    """A consistent, never-blocking view of the store as of its start."""


class WriteTxn(Txn):
    write = True

    def __init__(self, env: "Env", t: lmdb.Transaction):
        super().__init__(env, t)
        self.before_commit: list[Callable[["WriteTxn"], None]] = []
        self.after_commit: list[Callable[[], None]] = []

    def meta_put(self, key: bytes, value: bytes) -> None:
        self.t.put(key, value, db=self.env.dbs["meta"])

    def meta_put_int(self, key: bytes, value: int) -> None:
        self.t.put(key, u64(value), db=self.env.dbs["meta"])

    def put(self, db: str, key: bytes, value: bytes) -> None:
        # put() returns False instead of raising in a few LMDB modes (append,
        # nooverwrite); never let that pass silently.
        if not self.t.put(key, value, db=self.env.dbs[db]):
            raise Corruption(f"LMDB refused a put into {db!r}")

    def _commit(self) -> None:
        fp = failpoints.ACTIVE          # named crash points for tests; one branch when off
        if fp:
            failpoints.hit("commit.before_hooks")
        for hook in self.before_commit:
            hook(self)
        self.env.pool.flush_pending(self.t)     # digests hashed in the background
        if fp:
            failpoints.hit("commit.after_flush")
        self.env.pool.sync()
        if fp:
            failpoints.hit("commit.after_datasync")
        self.t.commit()
        if fp:
            failpoints.hit("commit.after_lmdb")
            failpoints.hit("commit.before_after_hooks")
        for hook in self.after_commit:
            hook()


_ENVS: "weakref.WeakSet[Env]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked child shares the parent's LMDB lock table (reader slots) but not
    its fcntl locks.  Closing the inherited environment or aborting inherited
    read transactions would clear the *parent's* reader slots (LMDB matches
    them by the pid recorded at open), unpinning blocks the parent still reads.
    So the child keeps those objects alive forever and never touches them;
    any use of the Env in the child raises Busy (``_check_pid``)."""
    for env in list(_ENVS):
        keep = [env.env, *env._live_reads]
        if env._batch is not None:
            keep.append(env._batch.t)
        for obj in keep:
            # One reference that is never dropped, not even at interpreter exit.
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))


os.register_at_fork(after_in_child=_after_fork_in_child)


def _creation_params(block_size, dedup, checksum) -> tuple[int, str]:
    """The block size and checksum a new store gets; InvalidInput if they are not allowed."""
    bs = DEFAULT_BLOCK_SIZE if block_size is None else int(block_size)
    if bs < MIN_BLOCK_SIZE or bs > MAX_BLOCK_SIZE or bs & (bs - 1):
        raise InvalidInput(f"block size must be a power of two from "
                           f"{MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}, not {bs}")
    cs = default_algorithm(bool(dedup)) if checksum is None else checksum
    if cs not in CHECKSUMS:
        raise InvalidInput(f"checksum must be one of {', '.join(CHECKSUMS)}, not {cs!r}")
    if dedup and cs != "sha256":
        raise InvalidInput(f"dedup needs the sha256 checksum, not {cs}")
    return bs, cs


# Store settings: persisted in the meta table as SETTING_PREFIX + name -> u64.
#   verify_reads  every data block read is checked against its recorded checksum
SETTINGS: dict[str, type] = {"verify_reads": bool}
_SETTING_PREFIX = b"setting."


def _required(t, meta_db, key: bytes, path: str):
    """A record every store has in its meta table; Corruption when it is missing."""
    v = t.get(key, db=meta_db)
    if v is None:
        raise Corruption(f"store metadata has no {key.decode()} record", path=path)
    return v


def _read_settings(t, meta_db) -> dict:
    out = {}
    for name, kind in SETTINGS.items():
        v = t.get(_SETTING_PREFIX + name.encode(), db=meta_db)
        out[name] = kind(from_u64(v)) if v is not None else kind()
    return out


def _refuse_unreadable(path: str) -> None:
    """PermissionDenied when this process cannot use the store at ``path`` (LMDB
    needs to read and write meta/ even to read; readers take a lock slot), or
    cannot reach where it would be."""
    eff = os.access in os.supports_effective_ids
    anc = path
    while not os.path.lexists(anc) and os.path.dirname(anc) != anc:
        anc = os.path.dirname(anc)          # also when a parent may not be searched
    checks = [(anc, os.X_OK)] if anc != path else []
    checks += [(path, os.R_OK | os.X_OK),
               (os.path.join(path, META_DIR), os.R_OK | os.W_OK | os.X_OK),
               (os.path.join(path, META_DIR, META_FILE), os.R_OK | os.W_OK),
               (os.path.join(path, DATA_FILE), os.R_OK | os.W_OK)]
    for p, mode in checks:
        if not os.path.lexists(p) or os.access(p, mode, effective_ids=eff):
            continue
        try:
            st = os.stat(p)
            who = f"owned by uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}"
        except OSError:
            who = "not accessible"
        raise PermissionDenied(f"permission denied: {p} ({who}); run as the store's "
                               f"owner, or have it grant you access")


def _metadata_lost(path: str, what: str) -> Corruption:
    meta = os.path.join(path, META_DIR, META_FILE)
    data = os.path.join(path, DATA_FILE)
    try:
        held = f"{os.path.getsize(data)} bytes"
    except OSError:
        held = "present"
    return Corruption(f"store metadata {meta} {what}, but the store's pool {data} is there "
                      f"({held}): the metadata of its trees is lost; refusing to open it as a "
                      f"new store (that would overwrite the pool); restore meta/ from a backup "
                      f"or move the directory away")


# LMDB's answers to pages that do not hold what they should.
LMDB_DAMAGE = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError,
               lmdb.VersionMismatchError, lmdb.BadTxnError, lmdb.IncompatibleError)


@contextlib.contextmanager
def damage_is_corruption(path: str):
    """Raise Corruption (with a message) for what damaged metadata makes a read
    fail with: LMDB's corruption errors, and ``struct.error`` from unpacking a
    stored value of the wrong size (decoding by upper layers runs inside
    the transaction).  Packing errors (a value out of range) are not damage
    and pass unchanged."""
    try:
        yield
    except (*LMDB_DAMAGE, struct.error) as exc:
        raise _as_corruption(exc, path)


def _as_corruption(exc: BaseException, path: str) -> BaseException:
    """What to raise for ``exc`` caught in a transaction: the Corruption it
    means (see ``damage_is_corruption``), chained to it, or ``exc`` itself."""
    if isinstance(exc, LMDB_DAMAGE):
        err = Corruption(f"store metadata is damaged: {exc}", path=path)
    elif isinstance(exc, struct.error) and "unpack" in str(exc):
        err = Corruption(f"store metadata is damaged: a stored value has the wrong size "
                         f"({exc})", path=path)
    else:
        return exc
    err.__cause__ = exc
    return err


def _lmdb_error(exc: lmdb.Error, path: str) -> BlockstoreError:
    """The blockstore error for an LMDB failure at open."""
    text = str(exc)
    if isinstance(exc, LMDB_DAMAGE):
        return Corruption(f"store metadata is damaged: {text}", path=path)
    if "Permission denied" in text or "Read-only file system" in text:
        return PermissionDenied(f"cannot open store metadata: {text}; run as the store's "
                                f"owner, or have it grant you access")
    return NotAStore(f"cannot open store metadata: {text}", path=path)


class _FillRecorder:
    """Commits the absent blocks a read filled (pool/lazy.py) on a thread of its own,
    so a reader never waits for the writer lock; ``close`` records what is queued."""

    def __init__(self, env: "Env"):
        self.env = env
        self._items: list = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, items) -> None:
        with self._cond:
            self._items.extend(items)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="blockstore-fill-record",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def _take(self) -> list:
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait()
            items, self._items = self._items, []
            return items

    def _record(self, items) -> None:
        pool = self.env.pool
        self.env.transact(lambda w: pool.commit_filled(w.t, items))

    def _run(self) -> None:
        while True:
            items = self._take()
            if not items:
                return
            try:
                self._record(items)
            except Exception:       # not recorded: the blocks are fetched again later
                self.env.pool.fills.forget(items)

    def flush(self) -> None:
        """Record what is queued now, in the calling thread (which must hold no batch
        of another thread's); what the thread is recording meanwhile lands by itself."""
        with self._cond:
            items, self._items = self._items, []
        if items:
            self._record(items)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(30)
        with self._cond:
            items, self._items = self._items, []
        if items:
            with contextlib.suppress(Exception):
                self._record(items)


# Forks of this process so far, as seen in the child (a process-wide counter):
# ``Env._forked`` compares it with the count at open instead of calling getpid()
# (a system call) on every read and change.
_forks = [0]
os.register_at_fork(after_in_child=lambda: _forks.__setitem__(0, _forks[0] + 1))


class Env:
    """The open metadata environment and data pool of one store."""

    def __init__(self, path: str, *, create: bool = False, block_size: int | None = None,
                 dedup: bool | None = None, checksum: str | None = None,
                 data_file: type[DataFile] = DataFile):
        """``block_size``, ``dedup`` and ``checksum`` (per-block checksum of pool.sums:
        "xxh3-128", or "sha256"; default xxh3-128, sha256 with dedup, which
        refuses xxh3-128) apply when the store is created and are ignored after:
        they are fixed for its life (``self.block_size``/``dedup``/``checksum``).
        ``data_file``: the class that opens the data file (a test passes
        ``testing.crashfs.CrashDataFile``)."""
        self.path = os.path.abspath(path)
        self.pid = os.getpid()
        self._forks = _forks[0]
        self.lock = threading.RLock()
        self._batch: WriteTxn | None = None
        self._batch_owner: int | None = None
        self._live_reads: set = set()
        # Kept read views (``keep_views``): {thread id: (ReadTxn, last use)}.
        self._kept: dict[int, tuple[ReadTxn, float]] = {}
        self._kept_lock = threading.Lock()
        self.keep_views = False
        self.caches: dict = {}      # process-wide caches of upper layers, keyed by their name
        self.verify_reads = 0       # open handles that asked for verified reads (Trees.open)
        self.env = None
        self.pool = None
        self.closed = False
        try:
            with damage_is_corruption(self.path):
                self._open(create, block_size, dedup, checksum, data_file)
        except lmdb.Error as exc:
            self._close_quietly()
            raise _lmdb_error(exc, self.path) from None
        except BaseException:
            self._close_quietly()
            raise

    def _open(self, create, block_size, dedup, checksum, data_file) -> None:
        meta_dir = os.path.join(self.path, META_DIR)
        data_path = os.path.join(self.path, DATA_FILE)
        self._prepare_dir(meta_dir, data_path, create, block_size, dedup, checksum)
        self._open_lmdb(meta_dir)
        # Every named database is opened (created in a new store) in the same
        # write txn as the format record: one commit makes a store, none opens one.
        with self.env.begin(write=True) as t:
            self.dbs = {name: self.env.open_db(name.encode(), txn=t) for name in _DB_NAMES}
            pool_dbs = PoolDbs.open(self.env, t)
            meta = self.dbs["meta"]
            self._format_record(t, meta, data_path, create, block_size, dedup, checksum)
            self._read_format(t, meta)
        self._open_pool(pool_dbs, data_file, data_path)

    def _prepare_dir(self, meta_dir, data_path, create, block_size, dedup, checksum) -> None:
        """Refuse what is not a store (or lost its metadata); make the directories of
        a new store in an absent or empty directory."""
        mdb = os.path.join(meta_dir, META_FILE)
        if os.path.lexists(self.path) and not os.path.isdir(self.path):
            raise NotAStore("not a directory", path=self.path)
        _refuse_unreadable(self.path)
        lost = storefiles.metadata_problem(mdb)
        if lost in storefiles.NO_METADATA and os.path.lexists(data_path):
            # Either another process created the store meanwhile (the pool file is
            # made after the metadata's first commit) or its metadata is lost.
            lost = storefiles.metadata_problem(mdb)
            if lost in storefiles.NO_METADATA:
                raise _metadata_lost(self.path, lost)
        if lost in storefiles.NO_METADATA:
            # A store is created only in an absent or empty directory; one holding
            # only meta/ is a creation that crashed before its first commit.
            if not os.path.exists(self.path):
                if not create:
                    raise NotFound(f"no store at {self.path}; create one with `blockstore "
                                   f"init`, or point --store/BLOCKSTORE_STORE at a store")
            elif set(os.listdir(self.path)) - {META_DIR}:
                raise NotAStore("directory is not empty and holds no store; "
                                "refusing to create one in it", path=self.path)
            elif not create:
                raise NotAStore(path=self.path)
            _creation_params(block_size, dedup, checksum)    # refuse before making files
            try:
                storefiles.make_private_dir(self.path)
                storefiles.make_private_dir(meta_dir)
            except PermissionError as exc:
                raise PermissionDenied(f"cannot create the store: {exc.strerror}: "
                                       f"{exc.filename}; create it where you may write, or "
                                       f"as the owner of that directory") from None
        elif lost is not None:
            raise Corruption(f"store metadata {mdb} {lost}; "
                             f"restore meta/ from a backup (check --repair cannot rebuild it)")

    def _open_lmdb(self, meta_dir) -> None:
        """Open the LMDB environment."""
        try:
            self.env = lmdb.open(meta_dir, map_size=INITIAL_MAP_SIZE, max_dbs=MAX_DBS,
                                 subdir=True, sync=True, metasync=True, lock=True,
                                 readahead=False, max_readers=256, mode=storefiles.FILE_MODE)
        except lmdb.Error as exc:
            if "already open in this process" in str(exc):
                raise Busy("the store is already open in this process (a forked child "
                           "cannot open a store its parent has open: start the child "
                           "with the 'spawn' method or as a subprocess)", path=self.path) from None
            raise
        _ENVS.add(self)
        self.env.reader_check()

    def _format_record(self, t, meta, data_path, create, block_size, dedup, checksum) -> None:
        """Write the format record of a new store, refuse a newer format, upgrade an older."""
        fmt = t.get(b"format", db=meta)
        if fmt is None:
            # New store, or one whose creation crashed before this commit.
            if os.path.lexists(data_path):
                raise _metadata_lost(self.path, "has no format record")
            if not create:
                raise NotAStore("store metadata has no format record", path=self.path)
            bs, cs = _creation_params(block_size, dedup, checksum)
            t.put(b"format", u64(FORMAT_VERSION), db=meta)
            t.put(b"block_size", u64(bs), db=meta)
            t.put(b"dedup", u64(1 if dedup else 0), db=meta)
            t.put(b"checksum", cs.encode(), db=meta)
            t.put(b"created_ns", u64(time.time_ns()), db=meta)
        elif from_u64(fmt) > FORMAT_VERSION:
            raise FormatTooNew(f"store format {from_u64(fmt)} is newer than this "
                               f"blockstore's {FORMAT_VERSION}; upgrade blockstore",
                               path=self.path)
        elif from_u64(fmt) < FORMAT_VERSION:
            self._upgrade(t, from_u64(fmt))

    def _read_format(self, t, meta) -> None:
        """Read and validate block size, dedup, checksum and the settings."""
        self.block_size = from_u64(_required(t, meta, b"block_size", self.path))
        self.dedup = bool(from_u64(_required(t, meta, b"dedup", self.path)))
        cs = t.get(b"checksum", db=meta)     # none: a store of format 1 from before the choice
        if cs is None and from_u64(t.get(b"format", db=meta)) >= 2:
            raise Corruption("store metadata has no checksum record", path=self.path)
        self.checksum = "sha256" if cs is None else bytes(cs).decode("ascii", "replace")
        if self.checksum not in CHECKSUMS:
            raise FormatTooNew(f"store checksum {self.checksum!r} is unknown to this "
                               f"blockstore; upgrade blockstore", path=self.path)
        if self.dedup and self.checksum != "sha256":
            raise Corruption(f"store has dedup on with the {self.checksum} checksum "
                             f"(dedup needs sha256)", path=self.path)
        if not (MIN_BLOCK_SIZE <= self.block_size <= MAX_BLOCK_SIZE) \
                or self.block_size & (self.block_size - 1):
            raise Corruption(f"store metadata has a bad block size {self.block_size}",
                             path=self.path)
        self.settings = _read_settings(t, meta)
        if self.settings["verify_reads"]:
            self.verify_reads += 1

    def _open_pool(self, pool_dbs, data_file, data_path) -> None:
        """Open the data file (made after the format record) and the pool over it."""
        with self.env.begin() as t:
            need = self.pool_blocks_committed(pool_dbs, t)
        # The data file is created after the format record; a crash in between
        # leaves no data file and nothing in the pool that needs one.
        data = data_file(data_path, self.block_size,
                         create=need == 0 and not os.path.exists(data_path))
        self.pool = Pool(pool_dbs, data, self.block_size, self.dedup, checksum=self.checksum)
        if data.size_blocks() < need:
            raise Corruption(f"data file is truncated: {data.size_blocks()} blocks of "
                             f"{need} committed", path=data_path)
        self._reserve_path = os.path.join(self.path, RESERVE_FILE)
        self._ensure_reserve()
        self._filled = _FillRecorder(self)
        self.pool.record_filled = self._filled.add

    def flush_filled(self) -> None:
        """Record the absent blocks reads have filled so far (pool/lazy.py)."""
        self._filled.flush()

    def require_format(self, w: "WriteTxn", version: int) -> None:
        """Raise the store's format record to ``version`` in write txn ``w`` (no-op
        when it is already there): done before the first use of a feature an older
        blockstore would misread (FORMAT.md §7)."""
        meta = self.dbs["meta"]
        if from_u64(w.t.get(b"format", db=meta)) < version:
            w.t.put(b"format", u64(version), db=meta)

    def _close_quietly(self) -> None:
        """Undo a failed open: the data file and the LMDB environment, if opened."""
        _ENVS.discard(self)
        for obj in (self.pool.data if self.pool is not None else None, self.env):
            if obj is not None:
                with contextlib.suppress(Exception):
                    obj.close()
        self.closed = True

    # -- settings --------------------------------------------------------------
    def set_setting(self, name: str, value) -> dict:
        """Persist one store setting (``SETTINGS``); returns all of them.  In this
        process it applies at once; other processes see it when they next open
        the store."""
        if name not in SETTINGS:
            raise InvalidInput(f"no store setting named {name!r} (settings: "
                               f"{', '.join(sorted(SETTINGS))})")
        kind = SETTINGS[name]
        if not isinstance(value, kind):
            raise InvalidInput(f"store setting {name!r} takes a {kind.__name__}, not {value!r}")
        with self.write() as w:
            w.meta_put(_SETTING_PREFIX + name.encode(), u64(int(value)))
        old = self.settings[name]
        self.settings = dict(self.settings, **{name: value})
        if name == "verify_reads" and old != value:
            self.verify_reads += 1 if value else -1
        return dict(self.settings)

    def _upgrade(self, t, fmt: int) -> None:
        """Bring a store of format ``fmt`` to FORMAT_VERSION in the opening write
        transaction t (FORMAT.md §7): a format-1 store gets the checksum record
        its lack meant (sha256), then every registered upgrade to a later version
        runs (format 3: the catalog's reverse index is built, O(trees), once)."""
        meta = self.dbs["meta"]
        if t.get(b"checksum", db=meta) is None:
            t.put(b"checksum", b"sha256", db=meta)
        for version, fn in sorted(_UPGRADES, key=lambda u: u[0]):
            if fmt < version:
                fn(t, self.dbs)
        t.put(b"format", u64(FORMAT_VERSION), db=meta)

    # -- full disk -------------------------------------------------------------
    def _ensure_reserve(self) -> bool:
        """Create the reserve file if missing and the disk has room for twice it
        (best effort; one stat, plus one statvfs + fallocate when missing)."""
        if os.path.exists(self._reserve_path):
            return True
        try:
            st = os.statvfs(self.path)
            if st.f_bavail * st.f_frsize < 2 * RESERVE_BYTES:
                return False
            fd = os.open(self._reserve_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            finally:
                os.close(fd)
            return True
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(self._reserve_path)
            return False

    def _disk_full(self, exc: BaseException) -> bool:
        if "No space left" in str(exc):
            return True
        with contextlib.suppress(OSError):      # LMDB reports a short write as EIO
            st = os.statvfs(self.path)
            return st.f_bavail * st.f_frsize < 1024 * 1024
        return False

    @staticmethod
    def pool_blocks_committed(pool_dbs, t) -> int:
        return Meta(pool_dbs.meta).get(t, TOTAL_BLOCKS)

    # -- lifecycle -----------------------------------------------------------
    def close(self) -> None:
        if self._forked() or self.closed:
            return          # a forked child must leave the parent's environment alone
        if self._batch is not None:
            self._end_batch(commit=True)
        self.release_views()
        self._filled.close()
        self.closed = True
        self.pool.data.close()
        self.env.close()

    def _forked(self) -> bool:
        return _forks[0] != self._forks

    def _check_pid(self) -> None:
        if self.closed:
            raise InvalidInput("the store is closed", path=self.path)
        if _forks[0] != self._forks:
            raise Busy("store handle used after fork; open the store again in the child process")

    # -- readers -------------------------------------------------------------
    def _own_batch(self) -> WriteTxn | None:
        """This thread's open batch, or None.  Only the owner thread sets or
        clears its own batch, so reading the owner first needs no lock."""
        if self._batch_owner == threading.get_ident():
            return self._batch
        return None

    def in_view(self, fn: Callable[[ReadTxn], T]) -> T:
        """``fn(txn)`` in ``read()``'s view.  Inside this thread's batch it is
        called directly (no context managers: a FUSE request is a few of these
        calls, each costing about as much as the lookup it wraps)."""
        b = self._own_batch()
        if b is None:
            if self.keep_views:
                return self._in_kept_view(fn)
            with self.read() as r:
                return fn(r)
        self._check_pid()
        try:
            return fn(b)
        except (*LMDB_DAMAGE, struct.error) as exc:
            raise _as_corruption(exc, self.path)

    # -- kept read views ---------------------------------------------------------
    # A fresh read view (``read()``) costs ~10 us of setup, as much as the lookup a
    # FUSE request wraps in it.  With ``keep_views`` on (a mount daemon turns it
    # on), ``in_view`` outside a batch keeps its thread's last view and reuses it
    # while it still shows the newest committed state: LMDB's last txn id (read
    # from the shared lock file, ~2 us) is the view's own.  So every call still
    # sees everything committed before it, by any process, as with ``read()``.
    # A view that is no longer the newest pins what later commits free (LMDB
    # pages, pool blocks: see ``oldest_reader``), so it is replaced at its next
    # use and dropped by ``release_views``, which the keeper calls periodically
    # (a mount daemon: every 0.1 s) and ``close`` calls.  A view in use is taken out
    # of ``_kept`` (under ``_kept_lock``) while it runs, so ``release_views`` on
    # another thread never aborts a view under a reader.

    def _in_kept_view(self, fn):
        self._check_pid()
        me = threading.get_ident()
        with self._kept_lock:
            kept = self._kept.pop(me, None)
        rt = None
        if kept is not None:
            rt = kept[0]
            if rt.t.id() != self.env.info()["last_txnid"]:
                self._close_read(rt)
                rt = None
        if rt is None:
            rt = self._open_read()
        try:
            return fn(rt)
        except (lmdb.Error, struct.error) as exc:
            if isinstance(exc, lmdb.Error):     # the txn may be unusable: a fresh one next
                self._close_read(rt)
                rt = None
            raise _as_corruption(exc, self.path)
        finally:
            if rt is not None:      # a read txn outlives its callers' errors (NotFound, ...)
                with self._kept_lock:
                    # A nested call on this thread kept its own view meanwhile: drop
                    # that one (never leave a reader slot to the garbage collector).
                    nested = self._kept.pop(me, None)
                    self._kept[me] = (rt, time.monotonic())
                if nested is not None:
                    self._close_read(nested[0])

    def release_views(self, idle: float = 0.0) -> None:
        """Drop kept read views that are no longer the newest committed state or
        were not used for ``idle`` seconds (0: all); any thread may call it."""
        if not self._kept or self.closed:
            return
        last = self.env.info()["last_txnid"]
        now = time.monotonic()
        with self._kept_lock:
            drop = [me for me, (rt, used) in self._kept.items()
                    if not idle or rt.t.id() != last or now - used >= idle]
            views = [self._kept.pop(me)[0] for me in drop]
        for rt in views:
            self._close_read(rt)

    @contextlib.contextmanager
    def read(self) -> Iterator[ReadTxn]:
        """A snapshot view; blocks it can reach are not reused while it lives."""
        self._check_pid()
        if self._batch is not None and self._batch_owner == threading.get_ident():
            with damage_is_corruption(self.path):
                yield self._batch        # read your own uncommitted batch
            return
        with self.snapshot() as rt:
            yield rt

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[ReadTxn]:
        """A read txn of the last committed state, also on a thread that holds a
        batch.  While it lives, no block freed after that state is reused; so a
        read planned in the batch can be finished on another thread under it
        (it may be closed on any thread)."""
        self._check_pid()
        rt = self._open_read()
        try:
            with damage_is_corruption(self.path):
                yield rt
        finally:
            self._close_read(rt)

    def _open_read(self) -> ReadTxn:
        """A read txn of the last committed state, live (its blocks kept from reuse)
        until ``_close_read``."""
        t = self._begin(write=False)
        self._live_reads.add(t)
        try:
            return ReadTxn(self, t)
        except BaseException:
            self._live_reads.discard(t)
            t.abort()
            raise

    def _close_read(self, rt: ReadTxn) -> None:
        # Upper layers keep objects in rt.local that point back at rt (a cycle):
        # break it so that the LMDB txn and its reader slot go now, not at the
        # next cyclic GC (else a busy reader runs into MDB_READERS_FULL).
        rt.local.clear()
        self._live_reads.discard(rt.t)
        if not self._forked():
            rt.t.abort()
        # In a forked child the slot in the shared lock table is the parent's
        # reader: aborting here would unpin the parent's view (see _after_fork).

    def oldest_reader(self) -> int | None:
        """The txn id of the oldest live LMDB reader of any process, or None."""
        self.env.reader_check()
        oldest = None
        for line in self.env.readers().splitlines()[1:]:
            fields = line.split()
            if len(fields) == 3 and fields[2].isdigit():
                tid = int(fields[2])
                oldest = tid if oldest is None else min(oldest, tid)
        return oldest

    # -- writers -------------------------------------------------------------
    def _begin(self, write: bool) -> lmdb.Transaction:
        for _ in range(3):
            try:
                return self.env.begin(write=write)
            except lmdb.MapResizedError:
                self.env.set_mapsize(0)      # another process grew the map: adopt it
        raise Busy("could not begin a transaction: the map keeps being resized")

    def _new_write(self) -> WriteTxn:
        t = self._begin(write=True)
        w = WriteTxn(self, t)
        try:
            oldest = self.oldest_reader()
            last = t.id() - 1
            self.pool.release_pending(t, last if oldest is None else min(oldest, last))
        except BaseException:
            t.abort()
            raise
        return w

    @contextlib.contextmanager
    def write(self) -> Iterator[WriteTxn]:
        """One atomic change; durable on return unless inside ``batch()``."""
        self._check_pid()
        with self.lock, damage_is_corruption(self.path):
            if self._batch is not None and self._batch_owner == threading.get_ident():
                yield self._batch
                return
            w = self._new_write()
            try:
                yield w
                if self._forked():
                    return          # leaving the block in a forked child: the txn is the parent's
                w._commit()
                if not os.path.exists(self._reserve_path):
                    self._ensure_reserve()
            except lmdb.MapFullError:
                w.t.abort()
                self._grow_map()
                err = NoSpace("metadata map was full; it has been grown, retry")
                err.map_full = True
                raise err from None
            except lmdb.Error as exc:
                if self._forked():
                    raise
                w.t.abort()
                if not self._disk_full(exc):
                    raise
                released = os.path.exists(self._reserve_path)
                with contextlib.suppress(OSError):
                    os.unlink(self._reserve_path)
                err = NoSpace(f"the disk holding the store is full ({exc}); remove trees and "
                              f"run gc" + (" (the store's reserve was released for that)"
                                           if released else ""), path=self.path)
                err.disk_full = True
                raise err from None
            except BaseException:
                if not self._forked():
                    w.t.abort()
                raise

    def trial(self, fn: Callable[[WriteTxn], T]) -> T | None:
        """Run ``fn`` in a write transaction that is aborted afterwards, so nothing
        it changes in LMDB lasts and no durable commit is paid.  ``fn`` sees the
        store as the next write will (deferred frees every reader let go are
        released at its start, and those marked ``Pool.trim_when_released`` are
        punched then) and holds the writer lock, so work outside LMDB that needs
        exclusion from other writers (punching holes) may run in it; the tables
        say the same again at the next write, which redoes that work (punching a
        hole twice is harmless).  None, without calling ``fn``, inside this
        thread's batch (its writer lock is the batch's)."""
        self._check_pid()
        with self.lock, damage_is_corruption(self.path):
            if self._batch is not None and self._batch_owner == threading.get_ident():
                return None
            w = self._new_write()
            try:
                return fn(w)
            finally:
                if not self._forked():
                    w.t.abort()

    def transact(self, fn: Callable[[WriteTxn], T]) -> T:
        """Run ``fn`` in a write transaction and commit, rerunning it after growing
        the map if LMDB reports MapFullError.  ``fn`` must have no effects outside
        the transaction (it may run more than once).  Inside this thread's batch
        ``fn`` joins it, called directly as ``write()`` would (the batch holds
        the writer lock already; a full map there is raised, as below)."""
        if self._own_batch() is not None:
            return self.in_view(fn)
        for _ in range(4):
            try:
                with self.write() as w:
                    return fn(w)
            except NoSpace as exc:
                # Only a full map is worth a rerun (it was grown); a full pool or
                # disk stays full.
                if self._batch is not None or not getattr(exc, "map_full", False):
                    raise
        raise NoSpace("metadata map keeps filling up")

    def _grow_map(self) -> None:
        self.env.set_mapsize(self.env.info()["map_size"] * 2)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group commit: every write() of this thread inside joins one transaction."""
        self._check_pid()
        with self.lock:
            if self._batch is not None:
                yield
                return
            ok = False
            try:
                # inside the try: an interrupt (SIGINT, the CLI's SIGTERM/SIGHUP) right
                # after the txn began must still abort it, or the writer lock stays held
                self._batch = self._new_write()
                self._batch_owner = threading.get_ident()
                yield
                ok = True
            finally:
                if not self._forked():
                    self._end_batch(commit=ok)

    def batch_txn_id(self) -> int | None:
        """The LMDB txn id this thread's open batch will commit as, or None."""
        if self._batch is not None and self._batch_owner == threading.get_ident():
            return self._batch.id()
        return None

    def sync(self) -> None:
        """Make everything written so far durable (commits the open batch)."""
        with self.lock:
            if self._batch is not None:
                self._end_batch(commit=True)
                self._batch = self._new_write()
                self._batch_owner = threading.get_ident()
            else:
                self.pool.sync()
                self.env.sync(True)

    def _end_batch(self, commit: bool) -> None:
        w, self._batch, self._batch_owner = self._batch, None, None
        if w is None:
            return      # sync() committed and was interrupted before the next txn began
        if commit:
            try:
                w._commit()
            except BaseException:
                w.t.abort()
                raise
        else:
            w.t.abort()
