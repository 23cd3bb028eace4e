"""A clone's mount specs: what serves each path of its TreeView.

Specs are stored in the clone's catalog record as dicts::

    {"type": "volume", "source": VOLUME_NAME, "target": "/data", "readonly": False}
    {"type": "bind",   "source": HOST_DIR,    "target": "/src",  "readonly": True}
    {"type": "tmpfs",  "target": "/tmp"}

A path at or below a target is served by that mount (longest target
wins): a volume by its own TreeView (shared live by every clone that mounts
it), a bind by ``HostDir`` on the host directory, a tmpfs by ``HostDir`` on
a private directory in /dev/shm (memory) removed when the TreeView closes.
Renames and hard links across mounts raise CrossDevice (EXDEV), as on Linux.
"""
from __future__ import annotations

import os
import stat as statmod
import tempfile

from ..errors import InvalidInput, NotFound, ReadOnly
from ..fs import paths
from . import hostout


def normalize_target(target: str) -> str:
    parts = paths.components(target)
    if not parts or b".." in parts:
        raise InvalidInput(f"mount target must be an absolute path below / without '..': {target!r}")
    return "/" + "/".join(os.fsdecode(p) for p in parts)


def parse_spec(kind: str, text: str) -> dict:
    """CLI-style specs: volume "VOL:/path[:ro]", bind "HOSTDIR:/path[:ro]", tmpfs "/path"."""
    if kind == "tmpfs":
        return {"type": "tmpfs", "target": normalize_target(text), "readonly": False}
    parts = text.rsplit(":", 2) if text.endswith((":ro", ":rw")) else text.rsplit(":", 1)
    if len(parts) < 2:
        raise InvalidInput(f"{kind} spec must be SOURCE:/path[:ro], not {text!r}")
    ro = len(parts) == 3 and parts[2] == "ro"
    src, target = parts[0], parts[1]
    if kind == "bind":
        src = os.path.abspath(src)
        if not os.path.isdir(src):
            raise NotFound("bind source is not a directory", path=src)
    return {"type": kind, "source": src, "target": normalize_target(target), "readonly": ro}


class MountTable:
    def __init__(self, owner, specs: list[dict]):
        self.owner = owner
        self.specs = sorted(specs, key=lambda m: -len(m["target"]))
        self._served: dict[str, object] = {}

    @classmethod
    def for_tree(cls, tfs, rec) -> "MountTable":
        return cls(tfs, list(rec.mounts or []))

    def _server(self, spec):
        t = spec["target"]
        srv = self._served.get(t)
        if srv is None:
            if spec["type"] == "volume":
                srv = self.owner.store.fs(spec["source"])
                if spec.get("readonly"):
                    srv = ReadOnlyView(srv)
            elif spec["type"] == "bind":
                srv = HostDir(spec["source"], spec.get("readonly", False))
            else:
                base = "/dev/shm" if os.path.isdir("/dev/shm") else None
                srv = HostDir(tempfile.mkdtemp(prefix="blockstore-tmpfs-", dir=base), False,
                              remove_on_close=True)
            self._served[t] = srv
        return srv

    def route(self, path):
        if not self.specs:
            return self.owner, path
        parts = [os.fsdecode(p) for p in paths.components(path)]
        norm = "/" + "/".join(parts)
        for spec in self.specs:
            t = spec["target"]
            if norm == t or norm.startswith(t + "/"):
                rest = norm[len(t):] or "/"
                return self._server(spec), rest if not isinstance(path, bytes) else os.fsencode(rest)
        return self.owner, path

    def close(self) -> None:
        for srv in self._served.values():
            srv.close()
        self._served.clear()


class ReadOnlyView:
    """A volume mounted read-only: reads pass through, changes raise ReadOnly."""

    _WRITES = {"mkdir", "makedirs", "rmdir", "unlink", "remove", "rename", "replace", "symlink",
               "link", "mknod", "_setattr_path", "chmod", "chown", "utime", "truncate",
               "setxattr", "removexattr", "write_bytes", "write_text"}

    def __init__(self, inner):
        self._inner = inner

    @property
    def inner(self):
        """The volume's own (writable) TreeView."""
        return self._inner

    def __getattr__(self, name):
        if name in self._WRITES:
            def refuse(*a, **k):
                raise ReadOnly("this volume is mounted read-only here")
            return refuse
        return getattr(self._inner, name)

    def open(self, path, mode="r", *args, **kw):
        if set(mode) & set("wax+"):
            raise ReadOnly("this volume is mounted read-only here")
        return self._inner.open(path, mode, *args, **kw)


class HostDir:
    """Pass-through to a host directory (bind mounts and tmpfs)."""

    def __init__(self, root: str, readonly: bool, remove_on_close: bool = False):
        self.root = os.path.realpath(root)
        self.readonly = readonly
        self.remove_on_close = remove_on_close

    def _p(self, path) -> str:
        parts = [os.fsdecode(p) for p in paths.components(path)]
        if ".." in parts:
            raise InvalidInput("'..' is not allowed in paths under a bind mount")
        return os.path.join(self.root, *parts)

    def _w(self, path) -> str:
        if self.readonly:
            raise ReadOnly("this directory is bound read-only", path=os.fsdecode(path))
        return self._p(path)

    def close(self) -> None:
        if self.remove_on_close:
            _remove_tree(self.root)

    def stat(self, path, *, follow_symlinks=True):
        return os.stat(self._p(path), follow_symlinks=follow_symlinks)

    def lstat(self, path):
        return os.lstat(self._p(path))

    def exists(self, path):
        return os.path.lexists(self._p(path))

    def isdir(self, path):
        return os.path.isdir(self._p(path))

    def isfile(self, path):
        return os.path.isfile(self._p(path))

    def islink(self, path):
        return os.path.islink(self._p(path))

    def listdir(self, path="/"):
        return os.listdir(self._p(path))

    def scandir(self, path="/"):
        yield from os.scandir(self._p(path))

    def walk(self, top="/", topdown=True):
        """os.walk's results with paths inside the bound directory; an explicit
        stack (os.walk recurses once per level).  As os.walk: a symlink to a
        directory is listed in dirs, not descended into."""
        base = "/" + "/".join(os.fsdecode(p) for p in paths.components(top))
        stack = [(self._p(top), base, None)]
        while stack:
            host, path, listed = stack.pop()
            if listed is not None:
                yield path, listed[0], listed[1]
                continue
            try:
                with os.scandir(host) as it:
                    ents = list(it)
            except OSError:
                continue                         # as os.walk without onerror
            dirs, files, real = [], [], set()
            for e in ents:
                try:
                    is_dir = e.is_dir()
                except OSError:
                    is_dir = False
                (dirs if is_dir else files).append(e.name)
                if is_dir and not e.is_symlink():
                    real.add(e.name)
            if topdown:
                yield path, dirs, files
            else:
                stack.append((host, path, (dirs, files)))
            pre = path.rstrip("/")
            stack.extend((os.path.join(host, d), pre + "/" + d, None)
                         for d in reversed(dirs) if d in real)

    def mkdir(self, path, mode=0o777, **_):
        os.mkdir(self._w(path), mode)

    def makedirs(self, path, mode=0o777, exist_ok=False):
        """os.makedirs, one level after the other (os.makedirs recurses per level)."""
        parts = [os.fsdecode(p) for p in paths.components(path)]
        target = self._w(path)
        cur = self.root
        for i, p in enumerate(parts):
            cur = os.path.join(cur, p)
            try:
                os.mkdir(cur, mode)
            except FileExistsError:
                if (i == len(parts) - 1 and not exist_ok) or not os.path.isdir(cur):
                    raise
        if not parts and not exist_ok:
            raise FileExistsError(17, "File exists", target)

    def rmdir(self, path):
        os.rmdir(self._w(path))

    def unlink(self, path):
        os.unlink(self._w(path))

    remove = unlink

    def rename(self, src, dst, flags=0):
        if flags:
            raise InvalidInput("rename flags are not supported on bind mounts")
        os.rename(self._w(src), self._w(dst))

    replace = rename

    def symlink(self, target, path):
        os.symlink(target, self._w(path))

    def readlink(self, path):
        return os.readlink(self._p(path))

    def link(self, src, dst):
        os.link(self._w(src), self._w(dst))

    def mknod(self, path, mode=0o600 | statmod.S_IFREG, device=0):
        os.mknod(self._w(path), mode, device)

    def _setattr_path(self, path, follow, mode=None, uid=None, gid=None, size=None,
                      atime=None, mtime=None, ctime=None):
        p = self._w(path)
        if size is not None:
            os.truncate(p, size)
        if mode is not None:
            os.chmod(p, mode, follow_symlinks=follow)
        if uid is not None or gid is not None:
            os.chown(p, -1 if uid is None else uid, -1 if gid is None else gid,
                     follow_symlinks=follow)
        if atime is not None or mtime is not None:
            st = os.stat(p, follow_symlinks=follow)
            a = st.st_atime_ns if atime is None else (None if atime == "now" else atime)
            m = st.st_mtime_ns if mtime is None else (None if mtime == "now" else mtime)
            if a is None or m is None:
                os.utime(p, follow_symlinks=follow)
            else:
                os.utime(p, ns=(a, m), follow_symlinks=follow)

    def chmod(self, path, mode, *, follow_symlinks=True):
        self._setattr_path(path, follow_symlinks, mode=mode)

    def chown(self, path, uid, gid, *, follow_symlinks=True):
        self._setattr_path(path, follow_symlinks, uid=uid, gid=gid)

    def utime(self, path, times=None, *, ns=None, follow_symlinks=True):
        os.utime(self._w(path), times, ns=ns, follow_symlinks=follow_symlinks) if ns else \
            os.utime(self._w(path), times, follow_symlinks=follow_symlinks)

    def truncate(self, path, length):
        os.truncate(self._w(path), length)

    def getxattr(self, path, attribute, *, follow_symlinks=True):
        return os.getxattr(self._p(path), attribute, follow_symlinks=follow_symlinks)

    def listxattr(self, path="/", *, follow_symlinks=True):
        return os.listxattr(self._p(path), follow_symlinks=follow_symlinks)

    def setxattr(self, path, attribute, value, flags=0, *, follow_symlinks=True):
        os.setxattr(self._w(path), attribute, value, flags, follow_symlinks=follow_symlinks)

    def removexattr(self, path, attribute, *, follow_symlinks=True):
        os.removexattr(self._w(path), attribute, follow_symlinks=follow_symlinks)

    def open(self, path, mode="r", buffering=-1, encoding=None, errors=None, newline=None, *,
             perm=0o666):
        p = self._w(path) if set(mode) & set("wax+") else self._p(path)
        return open(p, mode, buffering, encoding, errors, newline,
                    opener=lambda f, fl: os.open(f, fl, perm))

    def read_bytes(self, path):
        with open(self._p(path), "rb") as fh:
            return fh.read()

    def write_bytes(self, path, data):
        with open(self._w(path), "wb") as fh:
            fh.write(data)


def _remove_tree(root: str) -> None:
    """Remove a temporary directory this process made, whatever its depth
    (shutil.rmtree recurses once per level); errors are ignored, as a
    best-effort clean-up."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        hostout.remove_contents(fd)
        os.rmdir(root)
    except OSError:
        pass
    finally:
        os.close(fd)
