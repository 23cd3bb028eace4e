"""The FUSE mounts that serve containerd's active and view snapshots.

Each served tree is mounted by ``blockstore.fuse`` at ``ROOT/mnt/NAME``
(NAME = the tree's store name) and handed to containerd as a bind mount of
that directory.  Daemons come from the user's pre-imported mount server
(``blockstore.fuse.mountserver``, through ``daemon.spawn``: tens of ms per
mount instead of an interpreter start); they run in their own sessions, so they
outlive a restart (or SIGKILL) of the snapshotter: running containers keep
their root file systems, and a restarted snapshotter finds each mount by
its directory (``ensure`` re-mounts what is gone, and first detaches a dead
mount left by a killed daemon).

``release`` unmounts; when the mount is still bound elsewhere (a container
or a client that has not unmounted yet), the kernel keeps the FUSE
connection and its daemon alive after our unmount, so the tree cannot be
removed yet: ``release`` says so and the caller retires the tree.
"""
from __future__ import annotations

import errno
import logging
import os
import time

from .. import errors
from ..fuse import daemon as fused
from ..private_files import private_subdir

log = logging.getLogger("blockstore.snapshotter")

RELEASE_WAIT = 2.0          # seconds to wait for a daemon to finish after its unmount


class FuseMounts:
    def __init__(self, store_path: str, root: str):
        self.store_path = store_path
        self.dir = private_subdir(root, "mnt")

    def close(self) -> None:
        """Nothing to stop: the mounts (and the user's mount server) keep serving."""

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def _state(self, mp: str) -> str:
        """'live' (mounted, daemon alive), 'dead' (a killed daemon's mount),
        'none' (nothing mounted)."""
        try:
            os.stat(mp)
        except FileNotFoundError:
            return "none"
        except OSError as exc:
            if exc.errno == errno.ENOTCONN:                 # its daemon was killed
                return "dead"
            raise
        if not os.path.ismount(mp):
            return "none"
        reg = fused.registered(mp)
        return "live" if reg and fused.process_alive(reg["pid"]) else "dead"

    def ensure(self, name: str, readonly: bool, read_ahead_kb: int | None = None) -> str:
        """The mount point of ``name``, mounting it if it is not live
        (``read_ahead_kb``: its kernel readahead window; None: the daemon's default)."""
        mp = self.path(name)
        state = self._state(mp)
        if state == "live":
            return mp
        if state == "dead":
            log.warning("detaching the dead mount of %s at %s", name, mp)
            fused.unmount(mp, lazy=True)
        try:
            os.mkdir(mp, 0o755)
        except FileExistsError:
            pass
        opts = {} if read_ahead_kb is None else {"read_ahead_kb": read_ahead_kb}
        fused.spawn(self.store_path, name, mp, readonly=readonly, allow_other=True, **opts)
        return mp

    def is_mounted(self, name: str) -> bool:
        return self._state(self.path(name)) != "none"

    def forget(self, name: str) -> None:
        """Drop what the mounts of a removed tree left: its daemon's log."""
        try:
            os.unlink(fused.log_path(self.store_path, name))
        except OSError:
            pass

    def detach(self, name: str) -> int | None:
        """Detach the mount of ``name`` from its mount point now (a lazy
        unmount: no wait for open files or for the daemon); returns the
        daemon's pid, which exits once nothing else holds the mount."""
        mp = self.path(name)
        if self._state(mp) == "none":
            return None
        reg = fused.registered(mp)
        fused.unmount(mp, lazy=True)
        return reg["pid"] if reg and fused.process_alive(reg["pid"]) else None

    def finish(self, name: str, pid: int | None) -> bool:
        """After ``detach``: wait (up to RELEASE_WAIT) for daemon ``pid`` to
        exit and remove the mount point; False when it still serves (the
        mount is bound elsewhere)."""
        if pid is not None:
            deadline = time.monotonic() + RELEASE_WAIT
            while fused.process_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.005)
            if fused.process_alive(pid):
                return False
        try:
            os.rmdir(self.path(name))
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove the mount point %s: %s", self.path(name), exc)
        return True

    def release(self, name: str) -> bool:
        """Unmount ``name``; True when nothing serves it any more (the tree can
        be removed), False when its daemon lives on (bound elsewhere)."""
        mp = self.path(name)
        state = self._state(mp)
        if state != "none":
            reg = fused.registered(mp)
            try:
                fused.unmount(mp, timeout=RELEASE_WAIT)
            except errors.Busy:
                fused.unmount(mp, lazy=True)        # files open there: detach now
            if reg and fused.process_alive(reg["pid"]):
                deadline = time.monotonic() + RELEASE_WAIT
                while fused.process_alive(reg["pid"]) and time.monotonic() < deadline:
                    time.sleep(0.01)
                if fused.process_alive(reg["pid"]):
                    return False
        try:
            os.rmdir(mp)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove the mount point %s: %s", mp, exc)
        return True
