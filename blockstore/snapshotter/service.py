"""containerd's snapshotter semantics on top of the Store API.

``Snapshotter`` is what the gRPC server (``server.py``) calls: one method
per RPC, taking the namespace first, returning plain values and raising
blockstore errors (the server turns them into gRPC codes in one place).
Trees and labels are laid out as ``records.py`` says; active and view
snapshots are served by FUSE mounts (``fusemounts.py``).

Rules containerd relies on (its conformance suite checks them):

* keys are unique per namespace across all kinds; a removed key is
  reusable at once;
* Prepare/View of an existing key, Commit to an existing name:
  AlreadyExists; a parent must exist (NotFound) and be committed
  (InvalidInput);
* Commit needs an active snapshot (Busy otherwise), captures every write
  that completed before it (``Store.commit`` asks the FUSE mount to commit
  its batch first), and the key is gone afterwards;
* Remove refuses a snapshot that has children (Busy, "cannot remove");
  a mounted one is unmounted first: retired (one durable label: hidden
  from every RPC, its key free at once) and its mount detached (a lazy
  unmount), then answered; a reaper thread waits for the mount's daemon
  to exit and removes the tree, outside the lock, so the answer waits for
  neither (a mount still bound elsewhere keeps its daemon: the tree stays
  retired until the periodic ``cleanup`` finds it unserved);
* Prepare with the label ``containerd.io/snapshot.ref`` = a chain ID that
  the store already holds as an imported layer (``blockstore import``
  names layer snapshots by chain ID and labels them ``oci.chain_id``)
  records that layer as a committed snapshot under the chain ID and
  answers AlreadyExists: containerd then skips unpacking it (the fast
  path; O(1): a store snapshot of the imported one).

A Prepare on a parent whose spare is ready claims it (one label change,
its mount already live: ``spares.py``); each Prepare of an active
snapshot on a parent then has the next spare made in the background.

Unpacks (containerd's ``extract-`` keys) are not served by FUSE: they get
an overlay mount on a staging directory and are imported as a layer at
Commit (``staging.py``).

All changes run under one lock: each RPC sees the effects of the ones
answered before it.  Cost of an RPC: O(1) store calls, plus one pass over
the store's tree records for Remove (children), List and Cleanup.
"""
from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
import time

from .. import errors
from ..api import writers
from ..private_files import private_subdir
from . import records
from . import staging
from . import warm
from .fusemounts import FuseMounts
from .spares import Spares

log = logging.getLogger("blockstore.snapshotter")

LABEL_SNAPSHOT_REF = "containerd.io/snapshot.ref"
LABEL_OCI_CHAIN = "oci.chain_id"        # blockstore.oci.chain.LABEL_CHAIN
# The kernel readahead window of the mounts while the store holds blocks a lazy
# pull left remote: the kernel's own default.  The mount daemon's larger window
# (1 MiB) would fetch from the remote, per page fault of a program, what it
# never reads; sequential readers still get the pool's own read-ahead.
LAZY_READ_AHEAD_KB = 128


class Snapshotter:
    def __init__(self, store, root: str):
        self.store = store
        self.mounts = FuseMounts(store.path, root)
        self.staging_dir = private_subdir(root, "staging")
        self.empty_dir = private_subdir(root, "empty")
        self.lock = threading.RLock()
        self.index: dict[tuple[str, str], str] = {}     # (namespace, key) -> tree name
        self.retired: set[str] = set()
        self.counters = {"prepare_unpacked": 0, "prepare_fast_path": 0}
        self.reaping: set[str] = set()          # retired trees the reaper is on
        self.spares = Spares()
        self._reap_queue: queue.SimpleQueue = queue.SimpleQueue()
        # spares are made by a thread of their own: never queued behind a removal
        # (an unpack's staging directory takes seconds), which would leave the
        # next Prepares without one
        self._spare_queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closing = False
        self._load()
        self._threads = [
            threading.Thread(target=self._reaper, args=(q,), name=name, daemon=True)
            for q, name in ((self._reap_queue, "reaper"), (self._spare_queue, "spares"))]
        for t in self._threads:
            t.start()

    def close(self, timeout: float = 60.0) -> None:
        """Stop the background threads before the store is closed: the work each
        is doing finishes (a removal, a spare), what is still queued is dropped
        (the next start's periodic cleanup redoes removals).  A store closed
        under a thread's open transaction would leave that thread failing and
        the close waiting on LMDB."""
        self._closing = True
        for q in (self._reap_queue, self._spare_queue):
            q.put(None)
        for t in self._threads:
            t.join(timeout)
            if t.is_alive():
                log.error("the %s thread did not stop within %.0f s", t.name, timeout)

    # -- state -------------------------------------------------------------------------
    def _load(self) -> None:
        for rec in self.store.list():
            if not records.is_ours(rec):
                continue
            if records.L_RETIRED in rec.labels or records.L_SPARE in rec.labels:    # spares: not re-adopted
                self.retired.add(rec.name)
            else:
                self.index[(rec.labels[records.L_NS], rec.labels[records.L_KEY])] = rec.name
        live = set(self.index.values())
        for name in os.listdir(self.staging_dir):      # left by a kill mid-unpack
            if name not in live:
                shutil.rmtree(os.path.join(self.staging_dir, name), ignore_errors=True)
        log.info("%d containerd snapshots, %d retired trees in %s",
                 len(self.index), len(self.retired), self.store.path)

    def _get(self, ns: str, key: str):
        name = self.index.get((ns, key))
        if name is None:
            raise errors.NotFound(f"snapshot {key!r} does not exist")
        try:
            return self.store.info(name)
        except errors.NotFound:                  # removed behind our back (blockstore rm)
            del self.index[(ns, key)]
            raise errors.NotFound(f"snapshot {key!r} does not exist") from None

    def _records(self, ns: str):
        for rec in self.store.list():
            if records.is_live(rec) and rec.labels[records.L_NS] == ns:
                yield rec

    def _staging(self, name: str) -> str:
        return os.path.join(self.staging_dir, name)

    def _staged_mounts(self, rec) -> list[dict]:
        """An overlay mount whose upperdir is a plain directory: containerd's
        applier writes the layer there without mounting it (staging.py)."""
        d = self._staging(rec.name)
        if not os.path.isdir(os.path.join(d, "upper")):
            since = staging.prepare_upper(os.path.join(d, "upper"))
            with open(os.path.join(d, "since"), "w") as f:
                f.write(str(since))
        os.makedirs(os.path.join(d, "work"), mode=0o755, exist_ok=True)
        parent_key = rec.labels.get(records.L_PARENT, "")
        if parent_key:
            prec = self._get(rec.labels[records.L_NS], parent_key)
            lower = self.mounts.ensure(prec.name, readonly=True, read_ahead_kb=self._read_ahead())
        else:
            lower = self.empty_dir
        return [{"type": "overlay", "source": "overlay", "target": "",
                 "options": [f"workdir={d}/work", f"upperdir={d}/upper", f"lowerdir={lower}"]}]

    def _discard_staging(self, name: str) -> None:
        """Remove tree ``name``'s staging directory (a layer's worth of files)
        in the background: renamed aside now (O(1)), deleted by the reaper; a
        restart deletes what is left (``_load``)."""
        d = self._staging(name)
        gone = f"{d}.gone-{os.urandom(4).hex()}"
        try:
            os.rename(d, gone)
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("moving the staging directory %s aside: %s", d, exc)
            gone = d
        self._reap_queue.put(lambda: shutil.rmtree(gone, ignore_errors=True))

    def _release_parent(self, rec) -> None:
        """Unmount the read-only mount of a staged snapshot's parent when no
        other staged snapshot still uses it."""
        parent_key = rec.labels.get(records.L_PARENT, "")
        ns = rec.labels[records.L_NS]
        if not parent_key or (ns, parent_key) not in self.index:
            return
        for other in self._records(ns):
            if other.name != rec.name and records.L_STAGED in other.labels and \
                    other.labels.get(records.L_PARENT) == parent_key:
                return
        try:
            self.mounts.release(self.index[(ns, parent_key)])
        except OSError as exc:
            log.warning("unmounting the parent %r: %s", parent_key, exc)

    def _mounts_of(self, rec) -> list[dict]:
        if records.L_STAGED in rec.labels:
            return self._staged_mounts(rec)
        kind = rec.labels[records.L_KIND]
        mp = self.mounts.ensure(rec.name, readonly=kind != "active",
                                read_ahead_kb=self._read_ahead())
        return [{"type": "bind", "source": mp, "target": "",
                 "options": ["rbind", "rw" if kind == "active" else "ro"]}]

    def _read_ahead(self) -> int | None:
        """The readahead window for a new mount (the caller holds the lock)."""
        return LAZY_READ_AHEAD_KB if self.store.absent_blocks() else None

    def _drop(self, name: str) -> None:
        """Unmount and remove tree ``name``; if a mount of it lives on elsewhere,
        retire it (hidden; removed by a later reap)."""
        self._discard_staging(name)
        try:
            released = self.mounts.release(name)
        except OSError as exc:          # its mount point is unusable: nothing serves it there
            log.warning("releasing the mount of %s: %s", name, exc)
            released = True
        if released:
            try:
                self.store.remove(name, force=True)
                self.retired.discard(name)
                self.mounts.forget(name)
                return
            except errors.Busy:
                pass                                  # still served: retire
            except errors.NotFound:
                self.retired.discard(name)
                return
        self.store.label(name, **{records.L_RETIRED: "1"})
        self.retired.add(name)
        log.info("retired %s: its mount is still in use elsewhere", name)

    # -- RPCs ----------------------------------------------------------------------------
    def create(self, ns: str, kind: str, key: str, parent: str, labels: dict) -> list[dict]:
        """Prepare (kind "active") or View (kind "view")."""
        records.check_key(key)
        labels = records.check_user_labels(labels)
        with self.lock:
            if parent:
                prec = self._get(ns, parent)
                if prec.labels[records.L_KIND] != "committed":
                    raise errors.InvalidInput(f"parent {parent!r} is not a committed snapshot")
            target = labels.get(LABEL_SNAPSHOT_REF)
            if kind == "active" and target:
                self._fast_path(ns, target, parent, labels)
            if (ns, key) in self.index:
                raise errors.AlreadyExists(f"snapshot {key!r} already exists")
            lab = {**labels, **records.own_labels(ns, key, kind, parent)}
            staged = kind == "active" and staging.is_unpack_key(key)
            if kind == "active" and parent and not staged:
                self._spare_queue.put(lambda: self._make_spare(ns, parent, prec.name))
                spare = self.spares.take(prec.name)
                if spare is not None:
                    out = self._claim(spare, ns, key, lab)
                    if out is not None:
                        return out
            name = records.tree_name(ns, key)
            if staged:
                lab[records.L_STAGED] = "1"
            if parent:
                self.store.clone(prec.name, name, labels=lab)
            else:
                self.store.create(name, kind="clone", labels=lab)
            self.index[(ns, key)] = name
            try:
                out = self._mounts_of(self.store.info(name))
            except BaseException:
                del self.index[(ns, key)]
                self._drop(name)
                raise
            if kind == "active":
                self.counters["prepare_unpacked"] += 1
            return out

    def _claim(self, spare: str, ns: str, key: str, lab: dict) -> list[dict] | None:
        """Make spare ``spare`` the active snapshot ``key`` (labels ``lab``) and
        return its mounts; None (and the spare dropped) if it cannot serve."""
        try:
            lab = {**lab, records.L_SPARE: None, records.L_CREATED: str(time.time_ns())}
            rec = self.store.label(spare, **lab)
        except errors.NotFound:
            return None
        self.index[(ns, key)] = spare
        try:
            out = self._mounts_of(rec)          # live already: a check; else mounted now
        except BaseException:
            del self.index[(ns, key)]
            self._drop(spare)
            raise
        self.counters["prepare_unpacked"] += 1
        return out

    def _make_spare(self, ns: str, parent_key: str, parent: str) -> None:
        """Background: a mounted clone of ``parent`` for the next Prepare on it."""
        with self.lock:
            if self.index.get((ns, parent_key)) != parent or not self.spares.wanted(parent):
                return
            name = records.tree_name(ns, "(spare)")
            lab = {**records.own_labels(ns, "(spare)", "active", parent_key), records.L_SPARE: "1"}
            self.store.clone(parent, name, labels=lab)
            self.spares.making.add(parent)
            read_ahead = self._read_ahead()
        try:
            # the slow part: outside the lock
            self.mounts.ensure(name, readonly=False, read_ahead_kb=read_ahead)
        except BaseException:
            with self.lock:
                self.spares.making.discard(parent)
                self._retire(name)
            raise
        with self.lock:
            self.spares.making.discard(parent)
            if self.index.get((ns, parent_key)) != parent:
                self._retire(name)                        # the parent went meanwhile
                return
            for old in self.spares.add(parent, name):
                self._retire(old)
            mp = self.mounts.path(name)
        # not for a lazily pulled store: the reads would fetch what no container asked for
        if read_ahead is None:
            # outside the lock, after the spare is ready: a Prepare meanwhile claims
            # it (and reads beside the warming); a retire meanwhile detaches it
            # (the reads fail and are skipped)
            t0 = time.perf_counter()
            n = warm.warm(mp)
            log.info("spare %s warmed: %d bytes read in %.1f ms", name, n,
                     (time.perf_counter() - t0) * 1000)

    def _retire(self, name: str) -> None:
        """Hide tree ``name`` (one durable label), detach its mount and let the
        reaper remove it.  The caller holds the lock."""
        self.store.label(name, **{records.L_RETIRED: "1"})
        self.retired.add(name)
        self.reaping.add(name)
        try:
            pid = self.mounts.detach(name)
        except OSError as exc:          # its mount point is unusable: nothing serves it there
            log.warning("detaching the mount of %s: %s", name, exc)
            pid = None
        self._reap_queue.put(lambda: self._reap(name, pid))

    def _fast_path(self, ns: str, target: str, parent: str, labels: dict) -> None:
        """Raise AlreadyExists when layer ``target`` (a chain ID) is here already."""
        name = self.index.get((ns, target))
        if name is not None:
            lab = self.store.info(name).labels
            # containerd then looks the layer up by ref label *and* parent
            if lab[records.L_KIND] == "committed" and lab.get(records.L_PARENT, "") == parent:
                raise errors.AlreadyExists(f"target snapshot {target!r} already exists")
            return
        try:
            src = self.store.info(target)
        except (errors.NotFound, errors.InvalidInput):
            log.info("layer %s is not in the store: containerd unpacks it", target)
            return
        if src.kind != "snapshot" or src.labels.get(LABEL_OCI_CHAIN) != target:
            log.info("tree %s is not an imported layer snapshot (kind %s, %s=%r): not used",
                     target, src.kind, LABEL_OCI_CHAIN, src.labels.get(LABEL_OCI_CHAIN))
            return
        name = records.tree_name(ns, target)
        lab = {**labels, **records.own_labels(ns, target, "committed", parent)}
        self.store.snapshot(target, name, labels=lab)
        self.index[(ns, target)] = name
        self.counters["prepare_fast_path"] += 1
        log.info("fast path: layer %s is in the store; containerd skips its unpack", target)
        raise errors.AlreadyExists(f"target snapshot {target!r} already exists")

    def mounts_for(self, ns: str, key: str) -> list[dict]:
        with self.lock:
            return self._mounts_of(self._get(ns, key))

    def commit(self, ns: str, name: str, key: str, labels: dict) -> None:
        records.check_key(name, "name")
        labels = records.check_user_labels(labels)
        with self.lock:
            rec = self._get(ns, key)
            if rec.labels[records.L_KIND] != "active":
                raise errors.Busy(f"snapshot {key!r} is not active; only active snapshots commit")
            if (ns, name) in self.index:
                raise errors.AlreadyExists(f"snapshot {name!r} already exists")
            new = records.tree_name(ns, name)
            lab = {**labels, **records.own_labels(ns, name, "committed", rec.labels.get(records.L_PARENT, ""))}
            if records.L_STAGED in rec.labels:
                self._commit_staged(rec, new, lab)
            else:
                self.store.commit(rec.name, new, labels=lab)   # flushes the mount's batch first
            self.index[(ns, name)] = new
            del self.index[(ns, key)]
            if records.L_STAGED in rec.labels:
                self._release_parent(rec)
            self._drop(rec.name)

    def _commit_staged(self, rec, new: str, lab: dict) -> None:
        """Import the staging directory as a layer onto the parent: snapshot ``new``."""
        from ..oci.chain import import_layer
        parent_key = rec.labels.get(records.L_PARENT, "")
        parent = self._get(rec.labels[records.L_NS], parent_key).name if parent_key else None
        d = self._staging(rec.name)
        upper = os.path.join(d, "upper")
        if not os.path.isdir(upper):                  # a Commit without a Mounts call
            staging.prepare_upper(upper)
        try:
            with open(os.path.join(d, "since")) as f:
                since = int(f.read())
        except (OSError, ValueError):
            since = 0
        if parent is None and staging.plain_tree(upper):
            # A layer over nothing, with nothing of overlayfs in it: the directory is
            # the layer's tree; imported as one (fs.build's bulk path) it skips making
            # and parsing a tar of it.  Its root gets what a parentless snapshot's
            # root has (containerd never applies a layer's entry for it).
            os.chmod(upper, 0o755)
            os.utime(upper)
            self.store.import_dir(upper, new, labels=lab)
            log.info("layer %s imported as a directory", new)
            return
        lower = self.mounts.ensure(parent, readonly=True) if parent else None
        # Not hashed: containerd's applier checked the layer's digest, and
        # containerd sees only its own labels (no oci.diff_id to record).
        with staging.layer_stream(upper, lower, since) as raw:
            import_layer(self.store, raw, new, parent, labels=lab,
                         what=f"layer of {rec.labels[records.L_KEY]!r}", record_diff_id=False)

    def remove(self, ns: str, key: str) -> None:
        with self.lock:
            rec = self._get(ns, key)
            for other in self._records(ns):
                if other.labels.get(records.L_PARENT) == key:
                    raise errors.Busy(f"cannot remove snapshot {key!r}: it has children "
                                 f"({other.labels[records.L_KEY]!r}); remove them first")
            spare = self.spares.drop(rec.name)
            if spare is not None:
                self._retire(spare)
            del self.index[(ns, key)]
            if records.L_STAGED in rec.labels or not self.mounts.is_mounted(rec.name):
                if records.L_STAGED in rec.labels:
                    self._release_parent(rec)
                self._drop(rec.name)
                return
            self._retire(rec.name)

    def _reaper(self, work_queue: queue.SimpleQueue) -> None:
        """Run the background work that RPCs queue on ``work_queue``, in order
        (the reaper: removing what ``remove`` retired and the staging
        directories of finished unpacks; the spares thread: making spares)."""
        while True:
            work = work_queue.get()
            if work is None:
                return                                     # close()
            if self._closing:
                continue                                   # dropped: see close()
            try:
                work()
            except Exception:                              # noqa: BLE001
                log.exception("background removal (the periodic cleanup retries)")

    def _reap(self, name: str, pid: int | None) -> None:
        try:
            self._reap_retired(name, pid)
        finally:
            with self.lock:
                self.reaping.discard(name)

    def _reap_retired(self, name: str, pid: int | None) -> None:
        # The wait runs without the lock: a retired tree is in no index, so no
        # RPC touches its mount point meanwhile (``cleanup`` skips ``reaping``).
        if not self.mounts.finish(name, pid):
            log.info("retired %s: its mount is still in use elsewhere", name)
            return
        with self.lock:
            try:
                self.store.remove(name, force=True)
            except errors.Busy:
                return                                     # served again: cleanup retries
            except errors.NotFound:
                pass
            self.retired.discard(name)
            self.mounts.forget(name)

    def stat(self, ns: str, key: str) -> dict:
        with self.lock:
            return records.info(self._get(ns, key))

    def update(self, ns: str, info: dict, paths: list[str]) -> dict:
        with self.lock:
            rec = self._get(ns, info["name"])
            old = records.user_labels(rec)
            new_labels = dict(info.get("labels") or {})
            if not paths:
                result = new_labels
            else:
                result = dict(old)
                for p in paths:
                    if p == "labels":
                        result = dict(new_labels)
                    elif p.startswith("labels."):
                        k = p[len("labels."):]
                        if k in new_labels:
                            result[k] = new_labels[k]
                        else:
                            result.pop(k, None)
                    else:
                        raise errors.InvalidInput(f"cannot update field {p!r} of snapshot "
                                             f"{info['name']!r}: only labels can change")
            records.check_user_labels(result)
            change = {k: None for k in old if k not in result}
            change.update(result)
            change[records.L_UPDATED] = str(time.time_ns())
            return records.info(self.store.label(rec.name, **change))

    def list(self, ns: str, filters) -> list[dict]:
        from .filters import matches
        with self.lock:
            return [i for i in map(records.info, self._records(ns)) if matches(i, filters)]

    def usage(self, ns: str, key: str) -> tuple[int, int]:
        """(bytes, inodes): the bytes only this snapshot holds (what removing it
        frees; for an active snapshot, its changes) and its number of files."""
        with self.lock:
            rec = self._get(ns, key)
        writers.flush(self.store.path, [rec.name])      # writes a mount holds in its batch
        u = self.store.usage(rec.name)
        return u.exclusive, u.files

    def cleanup(self, ns: str) -> None:
        """Remove retired trees whose mounts have ended."""
        with self.lock:
            for name in sorted(self.retired - self.reaping):
                if not self.mounts.is_mounted(name) or self.mounts.release(name):
                    try:
                        self.store.remove(name, force=True)
                        self.retired.discard(name)
                        self.mounts.forget(name)
                    except errors.NotFound:
                        self.retired.discard(name)
                    except errors.Busy:
                        pass
