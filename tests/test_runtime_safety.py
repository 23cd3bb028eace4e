"""Files the product writes outside the store (the mount registry, daemon
logs, lock and writer files): a hostile local user who pre-creates the
runtime directory or plants symlinks must not make a root process write
through them (issue 15, item 1)."""
from __future__ import annotations

import hashlib
import os
import shutil
import stat

import pytest

from blockstore import errors as E

from _fuse_helpers import needs_fuse, needs_root, public_dir, run_as

NOBODY = 65534
SECRET = b"root-only secret\n"


def _victim(tmp_path):
    v = tmp_path / "victim"
    v.write_bytes(SECRET)
    v.chmod(0o600)
    return v


def _hostile_dir(d, victim, leaves, mode=0o777, owner=NOBODY):
    """What a local user can prepare: the directory, symlinks to the victim."""
    d.mkdir(parents=True, exist_ok=True)
    for leaf in leaves:
        os.symlink(victim, d / leaf)
    os.chown(d, owner, owner)
    d.chmod(mode)


def _mount_refused_or_safe(sp, mnt):
    """Mount; a refusal is fine (returns the error), a mount is unmounted again."""
    from blockstore.fuse import mount, umount
    try:
        mount(sp, "c", mnt)
    except E.BlockstoreError as exc:
        return exc
    try:
        umount(mnt)
    except E.Busy:
        umount(mnt, lazy=True)          # something scanning /tmp had it open
    return None


@needs_fuse
@needs_root
@pytest.mark.parametrize("mode", [0o777, 0o700])
def test_planted_registry_dir_is_refused_and_the_victim_untouched(sp, tmp_path, monkeypatch,
                                                                   mode):
    """The issue's attack: the runtime dir pre-created by uid 65534 (world-writable,
    or private to that user), ``KEY.json.tmp`` and ``KEY.json`` symlinks to a root
    0600 file; a root mount must neither write through them nor trust the dir."""
    victim = _victim(tmp_path)
    base = tmp_path / "xdg"
    base.mkdir()
    base.chmod(0o755)
    pub = public_dir()
    try:
        mnt = os.path.join(pub, "mnt")
        os.mkdir(mnt)
        key = hashlib.sha256(os.path.realpath(mnt).encode()).hexdigest()[:24]
        leaves = [key + ".json.tmp", key + ".json"]
        # every name a version of the product used for its runtime directory
        _hostile_dir(base / f"blockstore-fuse-{os.getuid()}", victim, leaves, mode)
        _hostile_dir(base / "blockstore", victim, [], mode)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
        err = _mount_refused_or_safe(sp, mnt)
        assert victim.read_bytes() == SECRET, "the mount wrote through a planted symlink"
        assert victim.stat().st_mode & 0o777 == 0o600
        assert err is not None and "owned by uid 65534" in str(err), err
        assert not os.path.ismount(mnt)
    finally:
        shutil.rmtree(pub, ignore_errors=True)


@needs_fuse
def test_group_or_world_writable_own_runtime_dir_is_refused(sp, tmp_path, monkeypatch):
    """Our own directory but writable by others: anyone could have planted files."""
    base = tmp_path / "xdg"
    base.mkdir()
    d = base / "blockstore"
    d.mkdir()
    d.chmod(0o777)
    pub = public_dir()
    try:
        mnt = os.path.join(pub, "mnt")
        os.mkdir(mnt)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
        err = _mount_refused_or_safe(sp, mnt)
        assert isinstance(err, E.PermissionDenied) and "writable" in str(err), err
        assert not os.path.ismount(mnt)
    finally:
        shutil.rmtree(pub, ignore_errors=True)


def test_runtime_dir_is_created_private_whatever_the_umask(tmp_path, monkeypatch):
    from blockstore import private_files as PF
    base = tmp_path / "xdg"
    base.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    old = os.umask(0)
    try:
        with PF.runtime_dir("fuse") as d:
            d.write_atomic("x.json", b"{}")
            assert d.read("x.json") == b"{}"
    finally:
        os.umask(old)
    for p in (base / "blockstore", base / "blockstore" / "fuse"):
        st = os.lstat(p)
        assert stat.S_ISDIR(st.st_mode) and st.st_mode & 0o777 == 0o700
        assert st.st_uid == os.geteuid()
    assert os.stat(base / "blockstore" / "fuse" / "x.json").st_mode & 0o777 == 0o600


def test_symlinked_runtime_dir_is_refused(tmp_path, monkeypatch):
    """A symlink in place of the directory (to a dir we own) is not followed."""
    from blockstore import private_files as PF
    base = tmp_path / "xdg"
    base.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    os.symlink(elsewhere, base / "blockstore")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    with pytest.raises(E.PermissionDenied, match="symbolic link"):
        PF.runtime_dir("fuse")
    assert os.listdir(elsewhere) == []


def test_write_atomic_never_follows_planted_names(tmp_path):
    """Planted symlinks at the final name and at any temporary-looking name are
    replaced, never written through; no fixed temporary name is used."""
    from blockstore import private_files as PF
    victim = _victim(tmp_path)
    d = tmp_path / "priv"
    with PF.private_dir(str(d)) as pd:
        for leaf in ("state.json", "state.json.tmp", ".state.json.tmp", "state.json.new"):
            os.symlink(victim, d / leaf)
        pd.write_atomic("state.json", b"new")
        assert pd.read("state.json") == b"new"
    assert victim.read_bytes() == SECRET
    assert not os.path.islink(d / "state.json")
    assert sorted(os.listdir(d)) == sorted(
        ["state.json", "state.json.tmp", ".state.json.tmp", "state.json.new"])


def test_read_does_not_follow_a_planted_symlink(tmp_path):
    from blockstore import private_files as PF
    victim = _victim(tmp_path)
    with PF.private_dir(str(tmp_path / "priv")) as pd:
        os.symlink(victim, tmp_path / "priv" / "x.json")
        with pytest.raises(OSError):
            pd.read("x.json")


@needs_root
def test_root_without_xdg_uses_run_else_a_per_uid_dir(tmp_path, monkeypatch):
    from blockstore import private_files as PF
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert PF.runtime_base() == ("/run/blockstore" if os.access("/run", os.W_OK)
                                 else f"/tmp/blockstore-{os.geteuid()}")


@needs_root
def test_other_user_without_xdg_gets_a_per_uid_dir_in_tmp():
    """Run as uid 65534 (no XDG_RUNTIME_DIR): /tmp/blockstore-65534, 0700, its own."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # blockstore's package __init__ needs the venv (not readable by that uid): load
    # the package without it; private_files needs only the standard library.
    code = ("import sys, os, types; os.environ.pop('XDG_RUNTIME_DIR', None)\n"
            f"pkg = types.ModuleType('blockstore'); pkg.__path__ = [{root!r} + '/blockstore']\n"
            "sys.modules['blockstore'] = pkg\n"
            "from blockstore import private_files as PF\n"
            "with PF.runtime_dir('t') as d: print(PF.runtime_base())\n")
    d = f"/tmp/blockstore-{NOBODY}"
    existed = os.path.exists(d)
    try:
        r = run_as(NOBODY, code)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == d
        st = os.lstat(d)
        assert st.st_uid == NOBODY and st.st_mode & 0o777 == 0o700
    finally:
        if not existed:
            shutil.rmtree(d, ignore_errors=True)


@needs_fuse
def test_mounts_are_nosuid_nodev_default_permissions(sp):
    """The security model's mount rules, as the kernel reports them."""
    from _fuse_helpers import Mounted
    m = Mounted(sp, "c")
    try:
        with open("/proc/self/mounts") as f:
            opts = [line.split()[3].split(",") for line in f if line.split()[1] == m.mnt]
        assert opts, "not in /proc/self/mounts"
        assert {"nosuid", "nodev", "default_permissions"} <= set(opts[-1]), opts[-1]
    finally:
        m.close()


@needs_fuse
def test_daemon_log_is_not_written_through_a_planted_symlink(sp, tmp_path):
    """STORE/fuse/KEY.log planted as a symlink to a victim: the mount is refused
    and the victim keeps its content."""
    from blockstore.api.treekeys import tree_key
    victim = _victim(tmp_path)
    os.makedirs(sp / "fuse", exist_ok=True)
    for leaf in ("c.log", tree_key("c") + ".log"):     # the name used before, and now
        os.symlink(victim, sp / "fuse" / leaf)
    pub = public_dir()
    try:
        mnt = os.path.join(pub, "mnt")
        os.mkdir(mnt)
        err = _mount_refused_or_safe(sp, mnt)
        assert victim.read_bytes() == SECRET
        assert err is not None
    finally:
        shutil.rmtree(pub, ignore_errors=True)
