"""Running a mount: checks, the mount lock, daemonizing, clean shutdown.

Lifecycle of ``mount(store, name, dir)``:

1. the caller checks the mount point (exists, a directory, empty, not a
   mount) and asks the user's mount server (``mountserver.py``, pre-imported)
   to fork a daemon in a new session; without a server it starts
   ``python -m blockstore.fuse`` and a server for the next mounts (never a
   fork of the caller: it may hold the store open, and an LMDB environment
   must not cross a fork); then it waits on a pipe until the daemon reports
   "mounted" or the error that stopped it (re-raised in the caller with its
   class, so exit codes and errno survive);
2. the child opens the store, takes the tree's mount lock
   (``STORE/fuse/KEY.lock``, KEY a fixed-length hash of the tree name
   (``api/treekeys.py``), an flock held for the life of the mount: a
   second mount of the same tree fails with Busy; a SIGKILLed daemon's lock
   goes with it), records itself in the runtime registry (by mount point:
   ``RUNTIME/fuse/H.json``, H a hash of the mount point's real path; RUNTIME
   as in ``blockstore.private_files``: a
   directory of ours, mode 0700, written without following planted paths),
   registers as the writer of the trees it may change
   (``STORE/writers/KEY.<pid>``, ``blockstore.api.writers``; SIGUSR1 =
   commit now), mounts with pyfuse3 and serves requests; store calls run
   inline on the trio thread, which groups changes into batches
   (``committer.py``: committed at fsync, after 50 ms, at 128 MiB/1024
   changes, on SIGUSR1);
3. it stops when the file system is unmounted (``umount``: umount2(2) as
   root, else ``fusermount3 -u``; it returns once the daemon has exited) or
   on SIGTERM/SIGINT/SIGHUP (it unmounts itself), then commits the last
   batch, closes the tree and the store and removes its lock, writer and
   registry files.

After SIGKILL the kernel keeps a dead mount ("Transport endpoint is not
connected"): ``umount`` detaches it (``fusermount3 -u``, else ``umount
-l``).  The store is consistent (LMDB drops the uncommitted batch); what was
fsync'ed, committed by the 50 ms bound or captured by a ``Store.commit`` is
there, the last < 50 ms of unsynced changes may be lost.
"""
from __future__ import annotations

import argparse
import errno as _errno
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time

from .. import errors
from .. import private_files
from ..api.treekeys import tree_key
from . import options as mount_options

log = logging.getLogger("blockstore.fuse")

READY_TIMEOUT = 60.0


# -- the runtime registry: mount point -> daemon ------------------------------------------
def _registry_dir() -> private_files.PrivateDir:
    """RUNTIME/fuse, checked (PermissionDenied when someone else controls it)."""
    return private_files.runtime_dir("fuse")


def _registry_name(mountpoint: str) -> str:
    return hashlib.sha256(os.path.realpath(mountpoint).encode()).hexdigest()[:24] + ".json"


def runtime_dir() -> str:
    """The path of RUNTIME/fuse (checked as ``_registry_dir``): the mount
    server's socket lives there.  Once checked, the directory is this user's
    and closed to others, so nobody else can plant a name in it."""
    d = _registry_dir()
    try:
        return d.path
    finally:
        d.close()


def registered(mountpoint: str) -> dict | None:
    """{pid, store, name, mountpoint} of the daemon last serving mountpoint, or None
    (also when the runtime directory is not safe to read)."""
    try:
        with _registry_dir() as d:
            return json.loads(d.read(_registry_name(mountpoint)))
    except (OSError, ValueError):
        return None


def _unregister(mountpoint: str) -> None:
    try:
        with _registry_dir() as d:
            d.unlink(_registry_name(mountpoint))
    except OSError:
        pass


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours is not serving anything
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# -- checks -----------------------------------------------------------------------------------
def check_mountpoint(mountpoint: str) -> str:
    """The absolute mount point, or an error saying what is wrong with it."""
    mp = os.path.abspath(mountpoint)
    try:
        st = os.stat(mp)
    except FileNotFoundError:
        raise errors.NotFound("mount point does not exist; create the directory first (mkdir)",
                         path=mp) from None
    except OSError as exc:
        if exc.errno == _errno.ENOTCONN:
            raise errors.Busy("a dead mount is left at the mount point (its daemon was killed); "
                         "run `blockstore umount` on it first", path=mp) from None
        raise
    if not os.path.isdir(mp) or not (st.st_mode & 0o170000 == 0o040000):
        raise errors.NotADirectory("mount point is not a directory", path=mp)
    if os.path.ismount(mp):
        raise errors.Busy("something is already mounted there; unmount it (`blockstore umount`) "
                     "or choose another mount point", path=mp)
    if os.listdir(mp):
        raise errors.InvalidInput("mount point is not an empty directory; mount on an empty one",
                             path=mp)
    return mp


# -- the daemon itself ------------------------------------------------------------------------
# glibc malloc settings (mallopt parameter numbers from <malloc.h>) for the daemon.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def _keep_request_buffers_in_the_heap() -> None:
    """Every FUSE write arrives as a new bytes object of up to 1 MiB, kept until
    its batch commits (the redo log).  By default glibc serves such sizes with
    mmap/munmap, or trims the heap when they are freed, so every request pays
    fresh page faults and zeroing, about 1 ms per MiB written, as much as
    the store's own work on it (docs/BENCHMARKS.md, "FUSE").
    Serve up to 4 MiB from the heap and keep up to 256 MiB of free heap.
    No-op where mallopt does not exist (not glibc)."""
    import ctypes
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 4 << 20)
    mallopt(_M_TRIM_THRESHOLD, 256 << 20)
    mallopt(_M_TOP_PAD, 64 << 20)


READ_AHEAD_KB = 1024

# How long a request thread's kept read view may stay unused, or behind the
# newest commit, before it is dropped (``Store.keep_read_views``).
VIEW_IDLE = 0.1


def mount_bdi(mountpoint: str) -> str | None:
    """The sysfs directory of the backing device info of the mount at
    ``mountpoint`` (``/sys/class/bdi/MAJ:MIN``), from /proc/self/mountinfo:
    no stat() of the mount point (the daemon must not ask itself)."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                mp = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
                if mp == mountpoint:            # (mountinfo writes a space as \040)
                    dev = fields[2]                                # last one wins: on top
        return f"/sys/class/bdi/{dev}"
    except (OSError, IndexError, UnboundLocalError):
        return None


def read_ahead(mountpoint: str) -> int | None:
    """The kernel readahead window (KiB) of the mount at ``mountpoint``, or None."""
    bdi = mount_bdi(mountpoint)
    try:
        with open(os.path.join(bdi, "read_ahead_kb")) as f:
            return int(f.read())
    except (TypeError, OSError, ValueError):
        return None


def set_read_ahead(mountpoint: str, kb: int) -> bool:
    """Set the kernel's readahead window of a live FUSE mount (default 128 KiB:
    the kernel then sends 128 KiB read requests; call after the INIT exchange,
    which resets it).  At 1 MiB, sequential reads come
    as 1 MiB requests, the size writes use, and the per-request cost is paid
    8x less often.  Needs root (sysfs); False when it could not be set."""
    bdi = mount_bdi(mountpoint)
    if bdi is None:
        return False
    try:
        with open(os.path.join(bdi, "read_ahead_kb"), "w") as f:
            f.write(str(int(kb)))
        return True
    except OSError as exc:
        log.info("read_ahead_kb of %s not set: %s", mountpoint, exc)
        return False


# After answering a request, the request loop polls the device this long for
# the next one before it sleeps (patched pyfuse3, ``set_request_spin``): a
# program that sends one request after the other (cp -a: 7 per file; a tar:
# READ, then the GETATTR of its fstat) finds the daemon awake instead of paying
# its wake-up each time.  The next request of such a program comes 50-300 us
# after a reply (the client itself must wake and run), and on a VM whose idle
# vCPUs halt at once a wake-up from halt costs more than the polling, so
# the window covers that range (docs/BENCHMARKS.md, fuse).  Adaptive per opcode
# (no polling after a request whose successor came late last time, such as the
# GETXATTR before each 1 MiB WRITE of a sequential writer, which copies its
# data meanwhile), so the CPU it costs is bounded by this per burst of requests.
REQUEST_SPIN_US = 300


def serve(store_path: str, name: str, mountpoint: str, *, ready=None, readonly: bool = False,
          attr_timeout: float | None = None, allow_other: bool | None = None, max_tasks: int = 32,
          debug: bool = False, commit_interval: float | None = None,
          read_ahead_kb: int | None = READ_AHEAD_KB, write_behind: bool = True,
          dev: bool = False, suid: bool = False, verify_reads: bool = False) -> None:
    """Mount and serve in this process until unmounted or signalled.

    ``dev``/``suid`` (root only, PermissionDenied otherwise): device nodes and
    set-id bits of the tree work (the mount is nodev,nosuid without them).
    ``ready(error_or_None)`` is called once: after the mount is live, or with
    the exception that prevented it (which is then also raised)."""
    try:                                   # direct callers too: never serve unchecked options
        o = mount_options.parse(dict(
            readonly=readonly, attr_timeout=attr_timeout, allow_other=allow_other,
            max_tasks=max_tasks, debug=debug, commit_interval=commit_interval,
            read_ahead_kb=read_ahead_kb, write_behind=write_behind, dev=dev, suid=suid,
            verify_reads=verify_reads))
    except errors.InvalidInput as exc:
        if ready:
            ready(exc)
        raise
    (readonly, attr_timeout, allow_other, max_tasks, debug, commit_interval, read_ahead_kb,
     write_behind, dev, suid, verify_reads) = (
        o[k] for k in ("readonly", "attr_timeout", "allow_other", "max_tasks", "debug",
                       "commit_interval", "read_ahead_kb", "write_behind", "dev", "suid",
                       "verify_reads"))
    import pyfuse3
    import trio

    from ..api import mountlock
    from ..api.store import Store
    from ..api.writers import Registration
    from .adapter import Adapter

    _keep_request_buffers_in_the_heap()
    store = tfs = writer = runner = rundir = None
    lock_fds: list[int] = []
    mounted = False
    reg = _registry_name(mountpoint)
    # Until trio's receiver takes over (and after it): a flush request must not kill us.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        for opt, on in (("dev", dev), ("suid", suid)):
            if on and os.geteuid() != 0:
                raise errors.PermissionDenied(f"-o {opt} needs root (the kernel honours device "
                                         f"nodes and set-id bits only in a mount root makes); "
                                         f"mount without it, or as root")
        mp = check_mountpoint(mountpoint)
        rundir = _registry_dir()                   # refused before anything is mounted
        store = Store.open(store_path, create=False, verify_reads=verify_reads)
        store.info(name)                           # NotFound for a removed tree
        lock_fds.append(mountlock.claim(store.path, name, mp))
        tfs = store.fs(name)
        ops = Adapter(store, tfs, readonly=readonly, attr_timeout=attr_timeout,
                      write_behind=write_behind)
        # Every tree served (volumes too) is in use: Store.remove/rename refuse it.
        lock_fds.extend(mountlock.use(store.path, t) for t in ops.served_trees())
        runner = ops.batcher
        if commit_interval is not None:
            runner.interval = float(commit_interval)
        if ops.writable_trees():
            writer = runner.reg = Registration(store.path, ops.writable_trees())
        options = set(pyfuse3.default_options)
        # nosuid/nodev unless root asked for dev/suid: set-uid files and device
        # nodes of a tree grant nothing on the host
        options |= {f"fsname=blockstore:{name}", "subtype=blockstore", "noatime",
                    "suid" if suid else "nosuid", "dev" if dev else "nodev"}
        if ops.readonly:
            options.add("ro")
        if allow_other if allow_other is not None else os.getuid() == 0:
            options.add("allow_other")
        if debug:
            options.add("debug")
        pyfuse3.init(ops, mp, options)
        if hasattr(pyfuse3, "set_request_spin"):     # the patched pyfuse3 (third_party/)
            pyfuse3.set_request_spin(REQUEST_SPIN_US)
        mounted = True
        rundir.write_atomic(reg, json.dumps(
            {"pid": os.getpid(), "store": store.path, "name": name, "mountpoint": mp}).encode())
    except BaseException as exc:
        if mounted:
            pyfuse3.close(unmount=True)
        if runner is not None:
            runner.stop()           # nothing to commit yet; ends a half-opened batch
        _cleanup(tfs, store, lock_fds, rundir, None, writer)
        if ready:
            ready(exc)
        raise
    if ready:
        ready(None)

    async def main():
        async with trio.open_nursery() as nursery:
            ops.nursery = nursery                      # write-behind drains (adapter)

            async def on_signal():
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as sigs:
                    async for _ in sigs:
                        log.info("signal: unmounting %s", mp)
                        pyfuse3.terminate()
                        return
            nursery.start_soon(on_signal)

            async def on_flush_request(task_status=trio.TASK_STATUS_IGNORED):
                with trio.open_signal_receiver(signal.SIGUSR1) as sigs:
                    task_status.started()
                    async for _ in sigs:
                        runner.request_commit()
            await nursery.start(on_flush_request)
            nursery.start_soon(runner.run)             # the batch's age bound
            if read_ahead_kb:
                async def tune_read_ahead():
                    # The kernel resets the window when it takes the INIT reply; any
                    # answered request (this stat, served by us) comes after that.
                    try:
                        await trio.to_thread.run_sync(os.stat, mp)
                    except OSError:
                        return                          # unmounted meanwhile
                    set_read_ahead(mp, read_ahead_kb)
                nursery.start_soon(tune_read_ahead)
            if ops.watcher is not None:
                nursery.start_soon(ops.watcher.run)    # trees changed underneath

            async def release_views():
                # Requests reuse their thread's read view while nothing was
                # committed (Store.keep_read_views); one left behind by a commit
                # pins what that commit freed, so none stays long.
                while True:
                    await trio.sleep(VIEW_IDLE)
                    store.release_read_views(idle=VIEW_IDLE)
            store.keep_read_views(True)
            nursery.start_soon(release_views)
            await pyfuse3.main(max_tasks=max_tasks)
            ops.nursery = None                         # a held write is stored by stop()
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        # After fusermount3 -u the kernel side is gone already; after a signal
        # we unmount here (lazily if files are still open).
        try:
            pyfuse3.close(unmount=True)
        except Exception:                          # noqa: BLE001
            subprocess.run(["fusermount3", "-u", "-z", mp], capture_output=True)
        runner.stop()                              # commits the last batch
        _cleanup(tfs, store, lock_fds, rundir, reg, writer)


def _cleanup(tfs, store, lock_fds, rundir, reg, writer=None) -> None:
    if writer is not None:
        writer.close()
    for closer in (tfs, store):
        if closer is not None:
            try:
                closer.close()
            except Exception:                      # noqa: BLE001
                log.exception("closing %r", closer)
    if rundir is not None:
        try:
            if reg:
                rundir.unlink(reg)
        except OSError:
            pass
        rundir.close()
    for fd in lock_fds:         # the mount lock first: its text is cleared before release
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)


# -- starting it in the background ------------------------------------------------------------
def log_path(store_path: str, name: str) -> str:
    """STORE/fuse/KEY.log, where the mount daemon of tree ``name`` appends its log
    (the directory made 0700 when missing; NotAStore if there is no store)."""
    if not os.path.isdir(os.path.abspath(store_path)):
        raise errors.NotAStore(path=os.path.abspath(store_path))
    logdir = os.path.join(os.path.abspath(store_path), "fuse")
    os.makedirs(logdir, mode=0o700, exist_ok=True)
    return os.path.join(logdir, tree_key(name) + ".log")


def spawn(store_path: str, name: str, mountpoint: str, **opts) -> int:
    """Start the daemon in a new session; return its pid once the mount is live.
    Errors that stop the mount are re-raised here with their class; bad options
    and an unsafe runtime directory before a daemon is started.

    The daemon comes from the user's mount server (``mountserver.py``: a
    fork of a pre-imported process, no interpreter start) when one runs;
    otherwise from ``python -m blockstore.fuse``, and a server is started
    for the next mounts."""
    from . import mountserver
    opts = mount_options.parse(opts)
    mp = check_mountpoint(mountpoint)
    _registry_dir().close()
    logpath = log_path(store_path, name)
    logdir = os.path.dirname(logpath)
    args = ["--opts", json.dumps(opts), os.path.abspath(store_path), name, mp]
    if mountserver.enabled():
        r, w = os.pipe()
        try:
            logfd = private_files.open_append(logpath)
            try:
                mountserver.request(["--ready-fd", str(w)] + args, w, logfd)
            finally:
                os.close(logfd)
            sent = True
        except mountserver.Unavailable:
            sent = False
        finally:
            os.close(w)
        if not sent:
            os.close(r)
            mountserver.start_in_background()
        else:
            # Nothing on the pipe: the server went away before it forked the daemon
            # (idle, or its code changed): mount the old way, start a new one.
            msg = _ready_message(r)
            if msg:
                _raise_unless_ok(msg, None, logdir)
                reg = registered(mp)
                return reg["pid"] if reg else 0
            mountserver.start_in_background()
    r, w = os.pipe()
    argv = [sys.executable, "-m", "blockstore.fuse", "--ready-fd", str(w)] + args
    try:
        logfd = private_files.open_append(logpath)
    except BaseException:
        os.close(r)
        os.close(w)
        raise
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logfd, stderr=logfd,
                                pass_fds=(w,), start_new_session=True, close_fds=True)
    except BaseException:
        os.close(r)
        os.close(w)
        raise
    finally:
        os.close(logfd)
    os.close(w)
    _raise_unless_ok(_ready_message(r), proc, logdir)
    return proc.pid


def _ready_message(r: int) -> str:
    """What the daemon reported on the ready pipe (read end ``r``, closed here)."""
    deadline = time.monotonic() + READY_TIMEOUT
    buf = b""
    try:
        while time.monotonic() < deadline:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            buf += chunk
    finally:
        os.close(r)
    return buf.decode(errors="replace").strip()


def _raise_unless_ok(msg: str, proc, logdir: str) -> None:
    """Nothing for "ok"; else the daemon's error with its class (``proc``: our
    child to reap, None for a daemon of the mount server)."""
    if msg == "ok":
        return
    if proc is not None:
        proc.wait(timeout=10)
    if msg.startswith("error "):
        info = json.loads(msg[6:])
        cls = getattr(errors, info["cls"], None)
        if isinstance(cls, type) and issubclass(cls, errors.BlockstoreError):
            raise cls(info["msg"], path=info.get("path"))
        raise errors.BlockstoreError(f"{info['cls']}: {info['msg']}")
    status = f" with status {proc.returncode}" if proc is not None else ""
    raise errors.BlockstoreError(f"mount daemon exited{status} without mounting; see {logdir}")


def _report_to(fd: int):
    def ready(exc):
        if exc is None:
            msg = "ok"
        else:
            msg = "error " + json.dumps({
                "cls": type(exc).__name__,
                "msg": getattr(exc, "message", None) or str(exc),
                "path": getattr(exc, "filename", None)})
        try:
            os.write(fd, msg.encode())
        finally:
            os.close(fd)
    return ready


_MNT_DETACH = 2


def _umount2(mp: str, lazy: bool) -> str | None:
    """umount2(2) directly (root: no fusermount3 to start); None when done, else
    the error text (EBUSY's says "busy"), or "" when not permitted here."""
    if os.geteuid() != 0:
        return ""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(os.fsencode(mp), _MNT_DETACH if lazy else 0) == 0:
        return None
    err = ctypes.get_errno()
    return f"{mp}: {os.strerror(err)}" if err != _errno.EPERM else ""


def _wait_gone(pid: int, timeout: float) -> None:
    """Until process ``pid`` has exited (a pidfd wakes us at once; polling
    where pidfds do not exist)."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        deadline = time.monotonic() + timeout
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.005)
        return
    try:
        import select
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


def unmount(mountpoint: str, lazy: bool = False, timeout: float = 30.0) -> None:
    """Unmount (EBUSY -> Busy while files are open, unless lazy) and wait for
    the daemon to finish closing the store (not when lazy: it keeps serving
    the files still open and exits after the last one closes)."""
    mp = os.path.abspath(mountpoint)
    reg = registered(mp)
    err = _umount2(mp, lazy)
    # EBUSY can be an access in flight (the daemon's own stat that follows the
    # mount, a walk finishing): try again for a moment before calling it busy.
    for _ in range(20):
        if not err or "busy" not in err.lower():
            break
        time.sleep(0.005)
        err = _umount2(mp, lazy)
    if err == "":
        cmd = ["fusermount3", "-u"] + (["-z"] if lazy else []) + [mp]
        res = subprocess.run(cmd, capture_output=True, text=True)
        err = None if res.returncode == 0 else res.stderr.strip()
    if err is not None:
        if "busy" in err.lower():
            raise errors.Busy(f"files are open under the mount point ({err}); close them or "
                         f"unmount lazily", path=mp)
        # Leftovers that fusermount3 refuses (e.g. mounted by another user): the kernel way.
        res2 = subprocess.run(["umount", "-l", mp], capture_output=True, text=True)
        if res2.returncode != 0:
            if not os.path.ismount(mp):
                raise errors.InvalidInput("nothing is mounted there", path=mp)
            raise errors.BlockstoreError(f"cannot unmount: {err}; {res2.stderr.strip()}", path=mp)
    if reg and reg.get("pid") and not lazy:     # lazy: the daemon lives until files close
        _wait_gone(reg["pid"], timeout)
    if reg and not (reg.get("pid") and process_alive(reg["pid"])):
        _unregister(mp)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m blockstore.fuse")
    p.add_argument("--ready-fd", type=int, default=None)
    p.add_argument("--opts", default="{}")
    p.add_argument("store")
    p.add_argument("name")
    p.add_argument("mountpoint")
    a = p.parse_args(argv)
    return run(a.store, a.name, a.mountpoint, a.ready_fd, json.loads(a.opts))


def run(store_path: str, name: str, mountpoint: str, ready_fd: int | None, opts: dict) -> int:
    """The daemon's body (``python -m blockstore.fuse`` and the mount server's
    children): serve, report readiness on ``ready_fd``; the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(message)s")
    ready = _report_to(ready_fd) if ready_fd is not None else None
    log.info("mounting tree %r of %s at %s", name, store_path, mountpoint)  # logs are by key
    try:
        serve(store_path, name, mountpoint, ready=ready, **opts)
    except errors.BlockstoreError as exc:
        log.error("%s", exc)
        return exc.exit_code
    return 0
