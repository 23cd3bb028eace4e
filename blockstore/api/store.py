"""``Store``: the public facade of blockstore.

    with blockstore.Store.open("/var/lib/mystore") as store:
        store.import_dir("/srv/rootfs", "base")          # -> snapshot "base"
        store.clone("base", "web")                        # writable clone, O(1)
        with store.fs("web").open("/etc/motd", "w") as f:
            f.write("hello\\n")
        store.commit("web", "web-v1")                     # -> snapshot, O(1)
        for change in store.diff("base", "web-v1"):
            print(change)                                 # C /etc/motd

Kinds: a *snapshot* is read-only; a *clone* is writable and made from a
snapshot (or empty); a *volume* is writable, has no image lineage, outlives
the clones that mount it and can be snapshotted and cloned like any tree.

Removal rule (like ``zfs destroy`` without ``-R``): a snapshot that is the
parent of other trees cannot be removed unless ``force=True``; with force
its dependents keep all their data (trees share blocks by reference count,
not by a chain) and are re-parented to the removed snapshot's own parent.
A volume mounted by a clone cannot be removed until that clone is removed
or ``force=True``.  Removing a clone never removes its volumes.

Every method is atomic and durable on return, except inside
``with store.batch():`` (group commit: durable at the end of the block).
"""
from __future__ import annotations

import os
import threading
import time

from .. import catalog
from ..btree.store import NodeStore
from ..catalog import TreeRecord
from ..catalog import CheckReport  # noqa: F401 (the type Store.check returns)
from ..catalog import Trees
from ..errors import Busy, InvalidInput, NotFound, PermissionDenied
from ..txn import SETTINGS  # noqa: F401 (the names Store.configure takes)
from ..fs import source
from ..fs.tree import FileTree
from . import mounts as mount_specs
from . import mountlock, writers
from .treeview import TreeView


def _make_mount_points(fst: FileTree, mounts) -> None:
    """Create the directories the mount specs' targets name (mode 0755) where missing."""
    from ..fs import paths
    for m in mounts or []:
        cur = 1
        for part in paths.components(m["target"]):
            found = fst.lookup(cur, part)
            cur = found[0] if found else fst.create(cur, part, 0o40755).ino


from .location import default_store_path  # noqa: E402,F401 (part of this module's API)


class Store:
    """One store: named trees (snapshots, clones, volumes) over one block pool.

    Open it with ``Store.open(path)`` (a context manager; one open per store
    per process).  Trees: ``import_dir``, ``clone``, ``commit``,
    ``snapshot``, ``create``/``volume_create``, ``rename``, ``remove``,
    ``prune``, ``label``, ``info``/``list``/``lineage``/``dependents``.
    Files: ``fs(name)`` gives a ``TreeView`` (os-like, ``with`` closes it);
    ``export_dir`` writes a tree out.  Comparing and space: ``diff`` (``A``
    added, ``C`` changed, ``D`` deleted, as the CLI prints them), ``usage``,
    ``df``, ``check``, ``gc``.  Errors are ``blockstore.errors`` classes
    (each also the matching OSError).  The module docstring has an example,
    the removal rule and the durability rule.
    """

    def __init__(self, trees: Trees):
        self._trees = trees
        self.closed = False
        self._fs_lock = threading.Lock()
        self._fs: list[TreeView] = []
        self._swept = False
        self._drop_dead_pins()
        from . import remotes
        remotes.install_fetcher(self)

    # -- lifecycle -----------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike | None = None, create: bool = True, *,
             block_size: int | None = None, dedup: bool | None = None,
             checksum: str | None = None, verify_reads: bool = False) -> "Store":
        """Open (and by default create) the store at path; use as a context manager.

        A store is created only in an absent or empty directory.  Without
        ``create``: NotFound ("no store at PATH") when path does not exist,
        NotAStore when it holds no store.  A directory whose pool is there but
        whose metadata is missing, empty or damaged raises Corruption (never
        a new store over the pool); a store this process may not use raises
        PermissionDenied.  A new store is private: directories 0700, files
        0600, whatever the umask.

        ``block_size``, ``dedup`` and ``checksum`` apply to a new store and are
        fixed for its life: the per-block checksum is "xxh3-128" (default without
        dedup) or "sha256" (the only one with dedup; stores made before the
        choice existed use it).
        ``verify_reads=True``: every data block read is checked against the checksum
        recorded when it was written; a mismatch raises errors.Corruption naming the
        block (one XXH3-128 per block read at ~11 GB/s, or SHA-256 at ~1.7 GB/s per core).
        The store's ``verify_reads`` setting (``configure``) turns it on for every handle."""
        path = default_store_path() if path is None else os.fspath(path)
        if create:
            try:
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            except PermissionError as exc:
                raise PermissionDenied(f"cannot create the store: {exc.strerror}: "
                                       f"{exc.filename}; create it where you may write, or "
                                       f"as the owner of that directory") from None
        writers.flush_all(path)     # a batch holding the writer lock would block the open
        return cls(Trees.open(path, create=create, block_size=block_size, dedup=dedup,
                              checksum=checksum, verify_reads=verify_reads))

    def close(self) -> None:
        """Close the store and its open TreeView handles; idempotent.  Every method
        called afterwards (here, on those handles or on ``trees``) raises
        InvalidInput ("the store is closed")."""
        if self.closed:
            return
        for tfs in list(self._fs):
            tfs.close()
        self.closed = True
        self._trees.close()

    @property
    def trees(self) -> Trees:
        """The catalog's handle on this store's trees (``catalog.Trees``);
        InvalidInput (``the store is closed``) once the store is closed, so
        every method refuses then."""
        if self.closed:
            raise InvalidInput("the store is closed", path=self._trees.path)
        return self._trees

    @property
    def env(self):
        return self.trees.env

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def path(self) -> str:
        return self._trees.path

    @property
    def block_size(self) -> int:
        return self.env.block_size

    @property
    def settings(self) -> dict:
        """The store's persisted settings (``configure``): {"verify_reads": bool}."""
        return dict(self.env.settings)

    def configure(self, **settings) -> dict:
        """Change persisted store settings; returns them all.  InvalidInput for an
        unknown name or a value of the wrong type.

        ``verify_reads`` (bool): every data block read through the store is checked
        against the checksum recorded when it was written, as with
        ``open(verify_reads=True)``, for every process that opens the store from
        now on (and at once in this one).  Cost: docs/RELIABILITY.md."""
        out = self.settings
        for name, value in settings.items():
            out = self.env.set_setting(name, value)
        return out

    @property
    def dedup(self) -> bool:
        """Whether identical blocks are stored once (fixed when the store was made)."""
        return bool(self.env.dedup)

    @property
    def checksum(self) -> str:
        """The per-block checksum of the pool ("xxh3-128" or "sha256")."""
        return self.env.checksum

    def batch(self):
        """Group commit: everything inside is one durable transaction."""
        return self.env.batch()

    def sync(self) -> None:
        self.env.sync()

    def keep_read_views(self, on: bool = True) -> None:
        """Reads of a tree outside a batch reuse their thread's last read view
        while nothing was committed since (each still sees every commit before
        it; saves ~10 us per call).  A kept view that falls behind pins what
        later commits free, so whoever turns this on calls
        ``release_read_views`` periodically (a mount daemon: every 0.1 s).
        Off (the default) every read opens a fresh view."""
        self.env.keep_views = bool(on)
        if not on:
            self.env.release_views()

    def release_read_views(self, idle: float = 0.0) -> None:
        """Drop kept read views that are behind the newest commit or unused for
        ``idle`` seconds (0: all of them)."""
        self.env.release_views(idle)

    def batch_txn_id(self) -> int | None:
        """The transaction id this thread's open batch will commit as, or None
        outside a batch (a tree watcher compares it to skip its own commits)."""
        return self.env.batch_txn_id()

    def _drop_dead_pins(self) -> None:
        from ..btree import tree as bt

        def work(w):
            dead = catalog.dead_pins(w)
            ns = NodeStore.of(w)
            for key, root in dead:
                catalog.remove_pin(w, key)
                bt.release(ns, root)
            return len(dead)
        with self.env.read() as r:
            if not catalog.dead_pins(r):
                return
        self.env.transact(work)

    def _writer(self) -> None:
        """Called by the methods that change trees: the first one of this handle
        removes staging clones of imports whose process is gone (api/staging.py).
        Cost: one read of the staging registry per handle."""
        if self._swept:
            return
        self._swept = True
        from .staging import sweep
        sweep(self)

    def staging(self, name: str, parent: str | None = None):
        """Context for writing a new snapshot ``name`` through a working clone of
        ``parent`` (or an empty tree): ``with store.staging(n, p) as st: ...;
        st.commit(labels)``.  Rolled back (clone removed, space given back) on
        any error or interrupt; see ``blockstore.api.staging``."""
        from .staging import staging
        self._writer()
        return staging(self, name, parent)

    # -- trees -----------------------------------------------------------------------
    def _new_fs_tree(self, name: str, kind: str, labels=None, mounts=None,
                     parent: str | None = None) -> TreeRecord:
        self._writer()

        def work(w):
            rec = catalog.add(w, TreeRecord(name=name, kind=kind, labels=dict(labels or {}),
                                            mounts=list(mounts or []), parent=parent))
            fst = FileTree(NodeStore.of(w), 0, time.time_ns)
            fst.mkfs(0o755, os.getuid(), os.getgid())
            _make_mount_points(fst, rec.mounts)
            rec.root = fst.root
            catalog.put(w, rec)
            return rec
        return self.env.transact(work)

    def create(self, name: str, kind: str = "clone", labels: dict | None = None,
               mounts: list | None = None) -> TreeRecord:
        """An empty tree (a clone of nothing, or a volume); its mount points are
        created as directories."""
        if kind == "snapshot":
            raise InvalidInput("snapshots are made by import, commit or snapshot()")
        return self._new_fs_tree(name, kind, labels, self._check_mounts(mounts))

    def volume_create(self, name: str, labels: dict | None = None) -> TreeRecord:
        return self._new_fs_tree(name, "volume", labels)

    def volumes(self) -> list[TreeRecord]:
        return self.list(kind="volume")

    def volume_remove(self, name: str, force: bool = False) -> None:
        rec = self.info(name)
        if rec.kind != "volume":
            raise InvalidInput(f"{name!r} is a {rec.kind}, not a volume")
        self.remove(name, force=force)

    def _check_mounts(self, mounts) -> list[dict]:
        out = []
        for m in mounts or []:
            if isinstance(m, str):
                raise InvalidInput("mount specs are dicts; see blockstore.api.mounts.parse_spec")
            m = dict(m)
            m["target"] = mount_specs.normalize_target(m["target"])
            if m["type"] == "volume":
                if self.info(m["source"]).kind != "volume":
                    raise InvalidInput(f"{m['source']!r} is not a volume")
            elif m["type"] == "bind":
                if not os.path.isdir(m["source"]):
                    raise NotFound("bind source is not a directory", path=m["source"])
            elif m["type"] != "tmpfs":
                raise InvalidInput(f"unknown mount type {m['type']!r}")
            m.setdefault("readonly", False)
            out.append(m)
        targets = [m["target"] for m in out]
        if len(set(targets)) != len(targets):
            raise InvalidInput("two mounts at the same target")
        return out

    def clone(self, snapshot: str, name: str, mounts: list | None = None,
              labels: dict | None = None) -> TreeRecord:
        """A writable clone of a snapshot (or of a volume): O(1).  Mount points
        that do not exist in the tree are created as directories."""
        self._writer()
        mounts = self._check_mounts(mounts)
        rec = self._drop_orphans(self.trees.clone(snapshot, name, labels=labels), clone=True)
        if mounts:
            def work(w):
                r = catalog.get(w, name)
                r.mounts = mounts
                fst = FileTree(NodeStore.of(w), r.root, time.time_ns)
                _make_mount_points(fst, mounts)
                r.root = fst.root
                catalog.put(w, r)
                return r
            rec = self.env.transact(work)
        return rec

    def commit(self, clone: str, name: str, labels: dict | None = None) -> TreeRecord:
        """Freeze the clone's current state as a new snapshot; the clone stays usable.
        A process writing the clone in batches (a FUSE mount) commits first (writers.flush)."""
        self._writer()
        writers.flush(self.path, [clone])
        rec = self.info(clone)
        if rec.kind == "snapshot":
            raise InvalidInput(f"{clone!r} is a snapshot already; clone it to change it")
        return self._drop_orphans(self.trees.snapshot(clone, name, labels=labels))

    def snapshot(self, tree: str, name: str, labels: dict | None = None) -> TreeRecord:
        """A read-only snapshot of any tree (a volume backup, say): O(1)."""
        self._writer()
        writers.flush(self.path, [tree])
        return self._drop_orphans(self.trees.snapshot(tree, name, labels=labels))

    def _drop_orphans(self, rec: TreeRecord, clone: bool = False) -> TreeRecord:
        """A new tree has no open handles: free the inodes that only a handle on the
        source kept alive (unlinked while open), else the copy would hold them forever.
        A new clone also drops the source blob of an image layer (``fs.source``): it
        is not that layer, and would keep the blob after the image is removed.
        Cost: one or two lookups when there is nothing to drop (the usual case)."""
        with self.env.read() as r:
            fst = FileTree(NodeStore.of(r), catalog.get(r, rec.name).root, time.time_ns)
            if not (fst.orphans() or (clone and source.meta(fst) is not None)):
                return rec

        def work(w):
            cur = catalog.get(w, rec.name)
            fst = FileTree(NodeStore.of(w), cur.root, time.time_ns)
            source.detach_copy(fst, clone)
            cur.root = fst.root
            catalog.put(w, cur)
            return cur
        return self.env.transact(work)

    def dependents(self, name: str) -> list[TreeRecord]:
        """Trees whose parent is name, and clones mounting name (a volume), in name
        order: O(dependents), through the catalog's reverse index."""
        with self.env.read() as r:
            return catalog.dependents(r, name)

    def remove(self, name: str, force: bool = False) -> None:
        """Remove a tree; see the module docstring for the rule on dependents.
        A tree a live mount serves is Busy whatever ``force`` says."""
        mountlock.refuse_if_mounted(self.path, name, "remove")
        self._writer()

        def work(w):
            rec = catalog.get(w, name)
            deps = catalog.dependents(w, name)     # the index: no scan of the catalog
            if deps and not force:
                raise Busy(f"{name!r} has dependents ({', '.join(d.name for d in deps[:5])}"
                           f"{'...' if len(deps) > 5 else ''}); remove them first or use force")
            for d in deps:
                if d.parent == name:
                    d.parent = rec.parent
                d.mounts = [m for m in d.mounts or [] if not (
                    m.get("type") == "volume" and m.get("source") == name)]
                catalog.put(w, d)
            catalog.drop(w, rec)
        self.env.transact(work)

    def rename(self, old: str, new: str) -> TreeRecord:
        """Rename a tree; trees naming it as parent or mounting it follow.
        A tree a live mount serves is Busy (the mount knows it by name)."""
        mountlock.refuse_if_mounted(self.path, old, "rename")
        self._writer()
        return self.trees.rename(old, new)

    def prune(self, dry_run: bool = False) -> list[str]:
        """Remove the image layer snapshots nothing keeps (no dependents, no
        user label; see ``api/prune.py``), like ``docker image prune``; returns
        their names, each before its parent.  ``dry_run``: only the names.
        A layer that gained a dependent or a mount meanwhile is kept."""
        from .prune import unkept
        names = unkept(self.trees.list())
        if dry_run:
            return names
        done = []
        for n in names:
            try:
                self.remove(n)         # Busy when it gained a dependent or is mounted
            except (Busy, NotFound):
                continue               # changed since the scan: kept
            done.append(n)
        return done

    def info(self, name: str) -> TreeRecord:
        return self.trees.info(name)

    def exists(self, name: str) -> bool:
        try:
            self.info(name)
            return True
        except NotFound:
            return False

    def list(self, kind: str | None = None, parent: str | None = None,
             label: dict | str | None = None) -> list[TreeRecord]:
        """Trees, filtered by kind, parent and labels ({"k": "v"} or "k=v")."""
        if isinstance(label, str):
            k, _, v = label.partition("=")
            label = {k: v}
        out = []
        for rec in self.trees.list(kind=kind):
            if parent is not None and rec.parent != parent:
                continue
            if label and any(rec.labels.get(k) != v for k, v in label.items()):
                continue
            out.append(rec)
        return out

    def label(self, name: str, **labels) -> TreeRecord:
        """Set labels (a value of None removes the label)."""
        self._writer()
        return self.trees.set_labels(name, labels)

    def lineage(self, name: str) -> list[str]:
        """name, its parent, the parent's parent, ... up to the first tree with none."""
        out, seen = [], set()
        cur = name
        while cur and cur not in seen:
            seen.add(cur)
            out.append(cur)
            try:
                cur = self.info(cur).parent
            except NotFound:
                break
        return out

    # -- files ---------------------------------------------------------------------------
    def fs(self, name: str) -> TreeView:
        """os-like access to a tree; close it (or use ``with``) when done."""
        tfs = TreeView(self, name)
        with self._fs_lock:
            self._fs.append(tfs)
        return tfs

    def forget_fs(self, tfs: TreeView) -> None:
        with self._fs_lock:
            if tfs in self._fs:
                self._fs.remove(tfs)

    def import_dir(self, src, name: str, parent: str | None = None,
                   labels: dict | None = None, progress=None) -> TreeRecord:
        """Import a host directory as snapshot ``name`` (on top of ``parent``:
        only what differs from it is written)."""
        from .transfer import import_dir
        self._writer()
        return import_dir(self, os.fspath(src), name, parent, labels, progress)

    def export_dir(self, name: str, dst, progress=None) -> None:
        """Write a tree out to a host directory (which must not exist or be empty)."""
        from .transfer import export_dir
        writers.flush(self.path, [name])
        export_dir(self, name, os.fspath(dst), progress)

    # -- comparing and accounting ---------------------------------------------------------
    def diff(self, a: str, b: str) -> list:
        """Changes from a to b: Change(path, kind 'A'|'C'|'D', type), sorted by path.
        Cost: proportional to the difference (shared subtrees are skipped)."""
        from .diff import diff_trees
        writers.flush(self.path, [a, b])
        return diff_trees(self, a, b)

    def usage(self, name: str):
        """Usage(logical, referenced, exclusive, shared) in bytes."""
        from .usage import usage
        return usage(self, name)

    def usage_all(self, names=None) -> dict:
        """{name: Usage} of the trees named (default: all), each equal to
        ``usage(name)``, in one pass that visits every shared subtree once
        (``blockstore.api.usage_all``)."""
        from .usage_all import usage_all
        return usage_all(self, names)

    def absent_blocks(self) -> int:
        """How many blocks of the store a lazy pull left remote (fetched on first
        read); one counter read."""
        with self.env.read() as r:
            return r.blocks.absent_count()

    def df(self):
        """Pool totals: see ``blockstore.api.usage.PoolUsage``."""
        from .usage import pool_usage
        return pool_usage(self)

    def check(self, repair: bool = False, scrub: bool = False):
        """Verify every invariant (catalog and filesystem); a report with ``.ok``.
        Staging clones of killed imports are ``findings`` (not problems);
        ``repair`` removes them first."""
        from .fscheck import check_store
        from .staging import sweep
        removed = sweep(self, legacy=True) if repair else []
        rep = check_store(self, repair=repair, scrub=scrub)
        rep.repaired[:0] = [f"removed {n}, the staging clone of an import whose process is gone"
                            for n in removed]
        return rep

    def gc(self, trim: bool = True) -> dict:
        """Remove staging clones of imports whose process is gone (and those an
        older blockstore left), finish pending removals, return their space to the
        pool and, with ``trim``, the pool's free blocks to the file system
        (``blockstore.catalog.collect``)."""
        from .staging import sweep
        self._swept = True
        removed = sweep(self, legacy=True)
        out = self.trees.gc(trim=trim)
        out["staging_removed"] = removed
        return out

    # -- remotes (docs/REMOTE-FORMAT.md) ----------------------------------------------------
    def remotes(self) -> dict:
        """{name: {"url": "s3://BUCKET/PREFIX", "endpoint": URL or None}}."""
        from . import remotes
        return remotes.load(self.path)

    def remote_add(self, name: str, url: str, endpoint: str | None = None) -> dict:
        from . import remotes
        return remotes.add(self.path, name, url, endpoint)

    def remote_remove(self, name: str) -> None:
        from . import remotes
        remotes.remove(self.path, name)

    def push(self, names, remote: str | None = None, progress=None, threads: int = 8) -> dict:
        """Upload snapshots (and their ancestors) the remote lacks; returns counts
        (``bytes_sent``, ``new_blocks``, ...).  Resumable: a re-push skips what is there."""
        from . import remotes
        return remotes.tier().push(self, names, remote, progress, threads)

    def pull(self, name: str, remote: str | None = None, lazy: bool = False, progress=None,
             threads: int = 8) -> dict:
        """Make remote snapshot ``name`` (and its ancestors) local; ``lazy``: metadata
        only, blocks fetched on first read (``fill`` completes it)."""
        from . import remotes
        return remotes.tier().pull(self, name, remote, lazy, progress, threads)

    def fill(self, name: str, progress=None, threads: int = 8) -> dict:
        """Fetch every block of tree ``name`` that a lazy pull left remote."""
        from . import remotes
        return remotes.tier().fill(self, name, progress, threads)

    def remote_gc(self, remote: str | None = None, grace: float | None = None,
                  dry_run: bool = False) -> dict:
        from . import remotes
        return remotes.tier().gc(self, remote, grace, dry_run)

    def remote_rm_snapshot(self, name: str, remote: str | None = None) -> dict:
        """Delete snapshot ``name``'s manifest from the remote (not its children's:
        Busy while another remote snapshot builds on it); ``remote_gc`` then
        reclaims its packs after the grace period.  Nothing local changes."""
        from . import remotes
        return remotes.tier().rm_snapshot(self, name, remote)

    def remote_snapshots(self, remote: str | None = None) -> list[str]:
        from . import remotes
        return remotes.tier().snapshots(self, remote)

    def set_block_fetcher(self, fetcher) -> None:
        """Install who fetches absent blocks (a ``blockstore.pool.lazy.BlockFetcher``)."""
        self.env.pool.set_fetcher(fetcher)
