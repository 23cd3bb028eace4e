"""A per-user, pre-imported mount server: a mount without an interpreter start.

``daemon.spawn`` starts ``python -m blockstore.fuse`` per mount: an
interpreter start plus the import of pyfuse3, trio and every storage layer
before the mount is live (hundreds of ms, more on a loaded machine), while
opening the store and mounting take a few ms.  This server imports all of
that once and forks one daemon per request, which then runs
``daemon.main`` exactly as ``python -m blockstore.fuse`` would (its own
session, its own store handle: pyfuse3 serves one session per process).

Who uses it: ``blockstore.fuse.mount`` (so the CLI, the library and the
containerd snapshotter alike).  The first mount of a user finds no server:
it mounts the old way and starts one in the background for the next
mounts.  ``BLOCKSTORE_FUSE_SERVER=0`` in the caller's environment turns it
off.  The server exits after ``IDLE`` seconds without a request.

Identity: the socket's name carries a hash of the interpreter and of this
package's directory, so a server only ever forks the code the caller would
have run (two checkouts or venvs on one machine get two servers).  The
daemon gets the caller's environment and umask (sent with the request)
and its standard output and error go to the log file the caller opened.

Fork safety (docs/ARCHITECTURE.md §7): the server never opens a store and
runs no threads, so a fork copies no LMDB environment and no lock held by
another thread.  Each daemon is forked twice (server -> short-lived child
-> daemon in a new session), so it is nobody's child: it outlives the
server, the caller and a restart of either.

Protocol: an AF_UNIX SOCK_SEQPACKET socket in the user's runtime
directory (``daemon.runtime_dir``: 0700, owned by the user, refused if
planted); one connection per request, the server checks the peer's uid;
the request is one JSON message {argv, env, umask} carrying two
descriptors: the write end of the daemon's ready pipe and its log file.
The caller waits on the ready pipe exactly as with ``spawn``; when it
closes with nothing written (the server went away before it forked), the
caller mounts the old way.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

IDLE = 600.0
_MAX_REQUEST = 1 << 20


class Unavailable(Exception):
    """No server answers (none started yet, or it is going away)."""


def _identity() -> str:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    key = (f"{os.path.realpath(sys.executable)}\0{sys.prefix}\0{here}\0"
           f"{os.environ.get('BLOCKSTORE_PURE', '')}")
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def socket_path() -> str:
    from .daemon import runtime_dir
    return os.path.join(runtime_dir(), f"mountserver-{_identity()}.sock")


def enabled() -> bool:
    return os.environ.get("BLOCKSTORE_FUSE_SERVER", "1") != "0"


# -- the caller's side --------------------------------------------------------------------------
def request(argv: list[str], ready_w: int, log_fd: int) -> None:
    """Ask the server to start a daemon with ``argv`` (``daemon.main``'s);
    Unavailable when no server takes the request."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        try:
            s.connect(socket_path())
        except OSError as exc:
            raise Unavailable(str(exc)) from None
        umask = os.umask(0)
        os.umask(umask)
        msg = json.dumps({"argv": argv, "env": dict(os.environ), "umask": umask}).encode()
        try:
            socket.send_fds(s, [msg], [ready_w, log_fd])
        except OSError as exc:
            raise Unavailable(str(exc)) from None
    finally:
        s.close()


def start_in_background() -> None:
    """Start a server for later mounts (returns at once; a second one exits)."""
    # cwd /: the server (and every daemon it forks) must not keep the caller's
    # directory busy, which may be on a file system someone wants to unmount.
    # The package is found where the caller found it (a checkout on sys.path).
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    subprocess.Popen([sys.executable, "-m", "blockstore.fuse.mountserver"],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
                     cwd="/", env=env)


# -- the server ---------------------------------------------------------------------------------
def _preimport() -> None:
    """What every daemon imports before it can mount (``daemon.serve``'s imports)."""
    import pyfuse3  # noqa: F401
    import trio  # noqa: F401

    from ..api import mountlock, store, writers  # noqa: F401  (store loads every layer below)
    from . import adapter, daemon  # noqa: F401


def _daemon(req: dict, ready_fd: int, log_fd: int, own: list[int]) -> None:
    """In the forked child: a new session, fork the daemon, exit.  Never returns.
    ``own``: the server's descriptors (its lock, its socket), closed first: a
    daemon holding the lock would keep the next server from starting."""
    try:
        for fd in own:
            os.close(fd)
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        os.umask(int(req["umask"]))
        os.environ.clear()
        os.environ.update(req["env"])
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        from . import daemon
        argv = [str(a) for a in req["argv"]]
        i = argv.index("--ready-fd")
        argv[i + 1] = str(ready_fd)
        code = daemon.main(argv)
    except BaseException:                              # noqa: BLE001
        import traceback
        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _sources() -> dict[str, int]:
    """mtime of every imported blockstore and pyfuse3 module file: a server whose
    code changed on disk (an upgrade, a developer's edit) must not fork it."""
    out = {}
    for name, mod in list(sys.modules.items()):
        if name.split(".")[0] in ("blockstore", "pyfuse3"):
            f = getattr(mod, "__file__", None)
            if f:
                try:
                    out[f] = os.stat(f).st_mtime_ns
                except OSError:
                    out[f] = -1
    return out


def _stale(loaded: dict[str, int]) -> bool:
    for f, mtime in loaded.items():
        try:
            if os.stat(f).st_mtime_ns != mtime:
                return True
        except OSError:
            return True
    return False


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _serve_one(conn: socket.socket, own: list[int], loaded: dict[str, int]) -> bool:
    """Serve one request; False when this server must go (its code changed):
    the request is then left unanswered (the caller mounts the old way)."""
    fds: list[int] = []
    try:
        msg, fds, _flags, _addr = socket.recv_fds(conn, _MAX_REQUEST, 2)
        if _peer_uid(conn) != os.getuid() or len(fds) != 2 or not msg:
            return True
        if _stale(loaded):
            return False
        req = json.loads(msg)
        pid = os.fork()
        if pid == 0:
            conn.close()
            _daemon(req, fds[0], fds[1], own)
        os.waitpid(pid, 0)                     # the middle child exits at once
    except (OSError, ValueError, KeyError):
        pass
    finally:
        for f in fds:
            os.close(f)
        conn.close()
    return True


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.chdir("/")
    path = socket_path()
    # One server per identity: the lock is held for the server's life.
    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    for _ in range(40):                         # a stale server may be on its way out
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            time.sleep(0.05)
    else:
        return 0                                # another server serves already
    os.ftruncate(lock, 0)
    os.write(lock, b"%d\n" % os.getpid())     # who serves (for an operator's kill)
    _preimport()
    # What the imports allocated never changes: out of the collector's sight, so a
    # daemon's collections do not touch (and copy) the pages it shares with us.
    import gc
    gc.collect()
    gc.freeze()
    loaded = _sources()
    try:
        os.unlink(path)                         # a dead server's socket
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    srv.bind(path)
    os.chmod(path, 0o600)
    srv.listen(64)
    srv.settimeout(IDLE)
    mine = os.stat(path).st_ino
    try:
        while True:
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                return 0                        # idle: the next mount starts a new one
            conn.settimeout(10)
            if not _serve_one(conn, [lock, srv.fileno()], loaded):
                return 0                        # code changed: the next mount starts anew
    finally:
        try:
            if os.stat(path).st_ino == mine:
                os.unlink(path)
        except OSError:
            pass
        srv.close()


if __name__ == "__main__":
    sys.exit(main())
