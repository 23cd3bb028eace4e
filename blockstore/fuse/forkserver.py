"""A pre-imported mount starter: mounts without a new interpreter each.

``daemon.spawn`` starts ``python -m blockstore.fuse`` per mount, paying an
interpreter start and the import of pyfuse3, trio and the store (several
hundred ms, more on a loaded machine) before the mount is live.  A program
that mounts often (the containerd snapshotter: one mount per container and
per unpacked layer) starts one ``ForkServer`` instead: a child process that
imports all of that once, then, per request, forks a daemon that runs
``daemon.run`` exactly as ``python -m blockstore.fuse`` would.  The caller
waits on the same "mounted"/error pipe as with ``spawn``, so errors come
back with their class.

Fork safety (ARCHITECTURE.md §7): the server never opens a store and runs
no threads, so a fork copies no LMDB environment and no lock held by a
thread; each daemon opens the store itself after the fork.  Each daemon is
double-forked into its own session: it outlives the fork server and the
program that asked for it (a restart of the caller leaves mounts
serving), and the fork server reaps only the short-lived middle child.

Protocol: an AF_UNIX SOCK_SEQPACKET pair; a request is one JSON message
{store, name, mountpoint, opts} carrying two descriptors (the write end of
the ready pipe, the daemon's log file).  End of file on the socket (the
caller exited or closed it) stops the fork server.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading

from . import daemon

_MAX_REQUEST = 1 << 16


class ForkServer:
    """The caller's handle: ``spawn()`` has ``daemon.spawn``'s contract (the
    returned pid is the daemon's, from its registry entry)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._sock = None
        self._proc = None

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "blockstore.fuse.forkserver", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, close_fds=True)
        theirs.close()
        self._sock = ours

    def spawn(self, store_path: str, name: str, mountpoint: str, **opts) -> int:
        mp = daemon.check_mountpoint(mountpoint)
        logdir = daemon.log_dir(store_path)
        req = json.dumps({"store": os.path.abspath(store_path), "name": name,
                          "mountpoint": mp, "opts": opts}).encode()
        r, w = os.pipe()
        try:
            logfd = os.open(daemon.log_path(logdir, name),
                            os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                with self._lock:
                    for attempt in (0, 1):
                        if self._proc is None or self._proc.poll() is not None:
                            self._start()
                        try:
                            socket.send_fds(self._sock, [req], [w, logfd])
                            break
                        except OSError:            # the server died: start a new one
                            self._proc = None
                            if attempt:
                                raise
            finally:
                os.close(logfd)
        finally:
            os.close(w)

        def no_wait(timeout=None):
            return None
        daemon.await_ready(r, no_wait, logdir)
        reg = daemon.registered(mp)
        return reg["pid"] if reg else 0

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            if self._proc is not None:
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
                self._proc = None


# -- the fork server process ------------------------------------------------------------------
def _preimport() -> None:
    """What every daemon needs before it can mount (daemon.serve's imports)."""
    import pyfuse3  # noqa: F401
    import trio  # noqa: F401

    from .. import native  # noqa: F401
    from ..api import mountlock, store, writers  # noqa: F401
    from . import adapter  # noqa: F401


def _child(sock: socket.socket, req: dict, ready_fd: int, log_fd: int) -> None:
    """In the forked middle child: become a session leader, fork the daemon, exit."""
    os.setsid()
    if os.fork() != 0:
        os._exit(0)
    try:
        sock.close()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        code = daemon.run(req["store"], req["name"], req["mountpoint"], ready_fd, req["opts"])
    except BaseException:                              # noqa: BLE001
        import traceback
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(fd: int) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # the caller's Ctrl-C is the caller's
    _preimport()
    sock = socket.socket(fileno=fd)
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, _MAX_REQUEST, 2)
        except InterruptedError:
            continue
        if not msg:
            return 0
        if len(fds) != 2:
            for f in fds:
                os.close(f)
            continue
        ready_fd, log_fd = fds
        try:
            req = json.loads(msg)
            pid = os.fork()
        except Exception as exc:                       # noqa: BLE001
            os.write(ready_fd, b"error " + json.dumps(
                {"cls": "BlockstoreError", "msg": f"fork server: {exc}", "path": None}).encode())
            os.close(ready_fd)
            os.close(log_fd)
            continue
        if pid == 0:
            _child(sock, req, ready_fd, log_fd)
        os.close(ready_fd)
        os.close(log_fd)
        os.waitpid(pid, 0)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
