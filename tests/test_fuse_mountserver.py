"""Mounts come from the user's pre-imported mount server (blockstore/fuse/
mountserver.py): a fork, not an interpreter start; errors keep their class,
and the runtime directory holding the server's socket is the user's own (a
planted one is refused)."""
from __future__ import annotations

import os
import time

import pytest

from blockstore import Store
from blockstore import errors as E
from blockstore.fuse import daemon, mountserver

from _fuse_helpers import Mounted, check_ok, needs_fuse


def _cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().decode().split("\0")


def _gone(pid: int) -> bool:
    """Exited (gone, or a zombie its new parent has not reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _server_up(limit: float = 60.0) -> None:
    """Start the server if needed and wait until it answers."""
    path = mountserver.socket_path()
    if not os.path.exists(path):
        mountserver.start_in_background()
    t0 = time.monotonic()
    while not os.path.exists(path):
        assert time.monotonic() - t0 < limit, "the mount server did not start"
        time.sleep(0.05)


@needs_fuse
def test_a_mount_is_a_fork_of_the_pre_imported_server(tmp_path):
    sp = tmp_path / "store"
    with Store.open(sp) as s:
        s.create("c")
    _server_up()
    m = Mounted(sp, "c")
    try:
        assert "blockstore.fuse.mountserver" in _cmdline(m.pid)   # not `-m blockstore.fuse`
        with open(m.p("f"), "wb") as f:
            f.write(b"x")
        with pytest.raises(E.NotFound):                 # the class survives the server
            Mounted(sp, "no-such-tree")
    finally:
        m.close()
    assert _gone(m.pid)                                 # umount waited for the daemon
    with Store.open(sp) as s:
        assert s.fs("c").read_bytes("/f") == b"x"
    check_ok(sp)


@needs_fuse
def test_without_the_server_a_mount_starts_its_own_interpreter(tmp_path, monkeypatch):
    sp = tmp_path / "store"
    with Store.open(sp) as s:
        s.create("c")
    monkeypatch.setenv("BLOCKSTORE_FUSE_SERVER", "0")
    m = Mounted(sp, "c")
    try:
        assert "blockstore.fuse" in _cmdline(m.pid)
        assert "blockstore.fuse.mountserver" not in _cmdline(m.pid)
    finally:
        m.close()


def test_a_planted_runtime_directory_is_refused(tmp_path, monkeypatch):
    """The server's socket lives in the fuse runtime directory (private_files):
    a planted symlink or a directory others may write is refused."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    d = tmp_path / "blockstore"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    d.symlink_to(elsewhere)                             # a symlink to a fine-looking dir
    with pytest.raises(E.PermissionDenied):
        daemon.runtime_dir()
    d.unlink()
    d.mkdir(mode=0o700)
    os.chmod(d, 0o777)                                  # writable by others
    with pytest.raises(E.PermissionDenied):
        daemon.runtime_dir()
    os.chmod(d, 0o700)
    assert daemon.runtime_dir() == str(d / "fuse")
    (d / "fuse").rmdir()
    assert daemon.runtime_dir() == str(d / "fuse")      # created 0700
    assert (d / "fuse").stat().st_mode & 0o777 == 0o700
