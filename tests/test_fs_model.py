"""Filesystem state machine: random POSIX operations on the clones of one
store, mirrored on real host directories (one per live clone; a frozen copy
per snapshot), plus clone / commit / remove of trees.

After every step every live tree equals its host model (type, content,
permission bits, nlink, hard-link groups, symlink targets, user xattrs;
times are not compared) and ``store.check().ok``.  When the host operation
raises OSError(errno E), the store operation must raise an OSError with the
same errno; when the host succeeds, the store must too.

Open handles: a file opened on both sides stays open across steps, may be
unlinked, renamed over, truncated, written and read through the handle, and
is closed later (the store must then free the orphan).

Default run: the conftest "default" profile (30 examples) with short
programs; ``--hypothesis-profile=soak`` runs 1000 examples of longer ones.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from blockstore import Store
from blockstore.errors import Busy, ReadOnly

from _fs_tree import copy_host_tree, describe_host, describe_store

NAMES = ["a", "b", "c"]
PATHS = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(lambda p: "/" + "/".join(p))
TARGETS = st.lists(st.sampled_from(NAMES + ["."]), min_size=1, max_size=3).map("/".join)
MODES = st.sampled_from([0o644, 0o600, 0o755, 0o700, 0o4755, 0o1777, 0o000])
XNAMES = st.sampled_from(["user.x", "user.y"])
OFFSETS = st.sampled_from([0, 1, 100, 959, 960, 961, 4095, 4096, 5000, 9000, 20000])
# Small pieces repeated: covers inline (< 960 B), the 960 boundary and multi-block data
# without tripping Hypothesis' large-example health check.
DATA = st.tuples(st.binary(min_size=1, max_size=40), st.sampled_from([1, 3, 25, 24, 103, 300])
                 ).map(lambda t: (t[0] * t[1])[:12000])
SIZES = st.sampled_from([0, 1, 500, 960, 961, 4096, 4097, 10000, 70000])
PICK = st.integers(0, 15)
BS = 4096


class FsModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="bs-fsmodel-")
        self.old_umask = os.umask(0)        # store ops ignore umask; so must the host's
        self.n = 0
        self.host: dict[str, str] = {}      # tree -> host directory (clone: live; snapshot: frozen)
        self.kind: dict[str, str] = {}
        self.parent: dict[str, str | None] = {}
        self.fs: dict[str, object] = {}     # clone -> its TreeView (kept open: handles live on it)
        self.handles: list[tuple[str, object, object]] = []   # (clone, host file, store file)

    @initialize()
    def open_store(self):
        self.store = Store.open(os.path.join(self.dir, "store"), block_size=BS)
        self._new_empty_clone()

    def teardown(self):
        for _, hf, sf in self.handles:
            hf.close()
            sf.close()
        if hasattr(self, "store"):
            self.store.close()
        os.umask(self.old_umask)
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers ----------------------------------------------------------------------
    def _name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def _new_empty_clone(self) -> None:
        name = self._name("c")
        self.store.create(name)
        self.host[name] = os.path.join(self.dir, "host", name)
        os.makedirs(self.host[name])
        self.kind[name], self.parent[name] = "clone", None
        self.fs[name] = self.store.fs(name)

    def _trees(self, kind: str | None = None) -> list[str]:
        return sorted(t for t in self.host if kind is None or self.kind[t] == kind)

    def _pick(self, i: int, kind: str | None = None) -> str:
        trees = self._trees(kind)
        return trees[i % len(trees)]

    def _hp(self, tree: str, path: str) -> str:
        return self.host[tree] + path

    def both(self, host_fn, store_fn):
        """Run host_fn; the store op must fail with the same errno or succeed alike."""
        try:
            h = host_fn()
        except OSError as e:
            with pytest.raises(OSError) as ei:
                store_fn()
            assert ei.value.errno == e.errno, (
                f"host raised {errno.errorcode[e.errno]}, store raised "
                f"{errno.errorcode.get(ei.value.errno)}: {ei.value!r}")
            return False, None, None
        return True, h, store_fn()

    def has_clone(self) -> bool:
        return bool(self._trees("clone"))

    def has_snapshot(self) -> bool:
        return bool(self._trees("snapshot"))

    # -- file operations on clones ------------------------------------------------------
    @precondition(has_clone)
    @rule(i=PICK, path=PATHS, mode=st.sampled_from(["wb", "xb", "ab"]), data=DATA)
    def create_write(self, i, path, mode, data):
        t = self._pick(i, "clone")

        def host():
            with open(self._hp(t, path), mode) as fh:
                fh.write(data)

        def store():
            with self.fs[t].open(path, mode) as fh:
                fh.write(data)
        self.both(host, store)

    @precondition(has_clone)
    @rule(i=PICK, path=PATHS, off=OFFSETS, data=DATA)
    def write_at(self, i, path, off, data):
        """Write at an offset (past EOF leaves a hole) through a fresh r+b handle."""
        t = self._pick(i, "clone")

        def host():
            with open(self._hp(t, path), "r+b", buffering=0) as fh:
                fh.seek(off)
                fh.write(data)

        def store():
            with self.fs[t].open(path, "r+b", buffering=0) as fh:
                fh.seek(off)
                fh.write(data)
        self.both(host, store)

    @precondition(has_clone)
    @rule(i=PICK, path=PATHS, size=SIZES)
    def truncate(self, i, path, size):
        t = self._pick(i, "clone")
        self.both(lambda: os.truncate(self._hp(t, path), size),
                  lambda: self.fs[t].truncate(path, size))

    @precondition(has_clone)
    @rule(i=PICK, path=PATHS, mode=MODES)
    def mkdir(self, i, path, mode):
        t = self._pick(i, "clone")
        self.both(lambda: os.mkdir(self._hp(t, path), mode), lambda: self.fs[t].mkdir(path, mode))

    @precondition(has_clone)
    @rule(i=PICK, path=PATHS)
    def rmdir(self, i, path):
        t = self._pick(i, "clone")
        self.both(lambda: os.rmdir(self._hp(t, path)), lambda: self.fs[t].rmdir(path))

    @precondition(has_clone)
    @rule(i=PICK, path=PATHS)
    def unlink(self, i, path):
        t = self._pick(i, "clone")
        self.both(lambda: os.unlink(self._hp(t, path)), lambda: self.fs[t].unlink(path))

    @precondition(has_clone)
    @rule(i=PICK, src=PATHS, dst=PATHS)
    def rename(self, i, src, dst):
        t = self._pick(i, "clone")
        self.both(lambda: os.rename(self._hp(t, src), self._hp(t, dst)),
                  lambda: self.fs[t].rename(src, dst))

    @precondition(has_clone)
    @rule(i=PICK, src=PATHS, dst=PATHS)
    def link(self, i, src, dst):
        # link(2) semantics: a symlink source is linked itself, not followed.
        t = self._pick(i, "clone")
        self.both(lambda: os.link(self._hp(t, src), self._hp(t, dst), follow_symlinks=False),
                  lambda: self.fs[t].link(src, dst))

    @precondition(has_clone)
    @rule(i=PICK, dest=TARGETS, path=PATHS)
    def symlink(self, i, dest, path):
        t = self._pick(i, "clone")
        self.both(lambda: os.symlink(dest, self._hp(t, path)),
                  lambda: self.fs[t].symlink(dest, path))

    @precondition(has_clone)
    @rule(i=PICK, path=PATHS, mode=MODES)
    def chmod(self, i, path, mode):
        t = self._pick(i, "clone")
        self.both(lambda: os.chmod(self._hp(t, path), mode), lambda: self.fs[t].chmod(path, mode))

    @precondition(has_clone)
    @rule(i=PICK, path=PATHS, name=XNAMES, value=st.binary(max_size=60), flags=st.sampled_from([0, 1, 2]))
    def setxattr(self, i, path, name, value, flags):
        t = self._pick(i, "clone")
        self.both(lambda: os.setxattr(self._hp(t, path), name, value, flags),
                  lambda: self.fs[t].setxattr(path, name, value, flags))

    @precondition(has_clone)
    @rule(i=PICK, path=PATHS, name=XNAMES)
    def removexattr(self, i, path, name):
        t = self._pick(i, "clone")
        self.both(lambda: os.removexattr(self._hp(t, path), name),
                  lambda: self.fs[t].removexattr(path, name))

    @precondition(has_clone)
    @rule(i=PICK, path=PATHS)
    def read_back(self, i, path):
        t = self._pick(i, "clone")

        def host():
            with open(self._hp(t, path), "rb") as fh:
                return fh.read()
        ok, h, s = self.both(host, lambda: self.fs[t].read_bytes(path))
        assert h == s

    # -- open handles (unlink while open) -------------------------------------------------
    @precondition(lambda self: self.has_clone() and len(self.handles) < 4)
    @rule(i=PICK, path=PATHS)
    def open_handle(self, i, path):
        t = self._pick(i, "clone")
        ok, h, s = self.both(lambda: open(self._hp(t, path), "r+b", buffering=0),
                             lambda: self.fs[t].open(path, "r+b", buffering=0))
        if ok:
            self.handles.append((t, h, s))

    @precondition(lambda self: self.handles)
    @rule(j=PICK, off=OFFSETS, data=DATA)
    def handle_write(self, j, off, data):
        _, h, s = self.handles[j % len(self.handles)]
        h.seek(off)
        s.seek(off)
        assert s.write(data) == h.write(data)
        assert s.tell() == h.tell()

    @precondition(lambda self: self.handles)
    @rule(j=PICK, off=OFFSETS, n=st.sampled_from([1, 100, 5000, 100000]))
    def handle_read(self, j, off, n):
        _, h, s = self.handles[j % len(self.handles)]
        h.seek(off)
        s.seek(off)
        assert s.read(n) == h.read(n)
        assert s.seek(0, os.SEEK_END) == h.seek(0, os.SEEK_END)

    @precondition(lambda self: self.handles)
    @rule(j=PICK, size=SIZES)
    def handle_truncate(self, j, size):
        _, h, s = self.handles[j % len(self.handles)]
        assert s.truncate(size) == h.truncate(size)

    @precondition(lambda self: self.handles)
    @rule(j=PICK)
    def close_handle(self, j):
        _, h, s = self.handles.pop(j % len(self.handles))
        h.close()
        s.close()

    # -- trees ----------------------------------------------------------------------------
    @precondition(has_clone)
    @rule(i=PICK)
    def commit(self, i):
        t = self._pick(i, "clone")
        name = self._name("s")
        self.store.commit(t, name)
        self.host[name] = os.path.join(self.dir, "host", name)
        copy_host_tree(self.host[t], self.host[name])
        self.kind[name], self.parent[name] = "snapshot", self.parent[t]

    @precondition(has_snapshot)
    @rule(i=PICK)
    def clone(self, i):
        src = self._pick(i, "snapshot")
        name = self._name("c")
        self.store.clone(src, name)
        self.host[name] = os.path.join(self.dir, "host", name)
        copy_host_tree(self.host[src], self.host[name])
        self.kind[name], self.parent[name] = "clone", src
        self.fs[name] = self.store.fs(name)

    @precondition(lambda self: len(self.host) < 8)
    @rule()
    def new_empty_clone(self):
        self._new_empty_clone()

    @precondition(lambda self: len(self.host) > 1)
    @rule(i=PICK, force=st.booleans())
    def remove(self, i, force):
        t = self._pick(i)
        deps = [d for d, p in self.parent.items() if p == t]
        if deps and not force:
            with pytest.raises(Busy) as ei:
                self.store.remove(t)
            assert ei.value.errno == errno.EBUSY
            return
        for h in [h for h in self.handles if h[0] == t]:
            self.handles.remove(h)
            h[1].close()
            h[2].close()
        if t in self.fs:
            self.fs.pop(t).close()
        self.store.remove(t, force=force)
        for d in deps:
            self.parent[d] = self.parent[t]
        del self.parent[t], self.kind[t]
        shutil.rmtree(self.host.pop(t))

    @precondition(has_snapshot)
    @rule(i=PICK, path=PATHS)
    def snapshot_write_refused(self, i, path):
        t = self._pick(i, "snapshot")
        with self.store.fs(t) as fs:
            for op in (lambda: fs.write_bytes(path, b"x"), lambda: fs.mkdir(path),
                       lambda: fs.unlink(path), lambda: fs.chmod(path, 0o600)):
                try:
                    op()
                except ReadOnly as e:
                    assert e.errno == errno.EROFS and isinstance(e, PermissionError)
                except OSError as e:
                    # Resolving the path may fail first (ENOENT...), never succeed.
                    assert e.errno != 0
                else:
                    raise AssertionError("a snapshot was changed")

    @rule()
    def gc(self):
        self.store.gc()

    # -- invariants -------------------------------------------------------------------
    @invariant()
    def trees_equal_model(self):
        if not hasattr(self, "store"):
            return
        assert sorted(r.name for r in self.store.list()) == self._trees()
        for t in self._trees():
            want = describe_host(self.host[t])
            if t in self.fs:
                got = describe_store(self.fs[t])
            else:
                with self.store.fs(t) as fs:
                    got = describe_store(fs)
            assert not want.diff(got), f"tree {t} ({self.kind[t]}):\n" + "\n".join(want.diff(got))
            assert self.store.info(t).parent == self.parent[t]

    @invariant()
    def store_checks(self):
        if not hasattr(self, "store"):
            return
        report = self.store.check()
        assert report.ok, report.problems


# Short programs by default; the soak profile (max_examples >= 100) runs longer ones.
FsModel.TestCase.settings = settings(
    settings(), stateful_step_count=50 if settings().max_examples < 100 else 100)
TestFsModel = FsModel.TestCase
