"""blockstore.private_files.private_dir with parents / tighten, private_path and
private_subdir (the snapshotter's root, mount points, staging area and
socket directory): 0700, ours, never reached through a planted symlink, and
a user's shared directory refused rather than chmod-ed."""
from __future__ import annotations

import os
import stat

import pytest

from blockstore.errors import PermissionDenied
from blockstore.private_files import private_dir, private_path, private_subdir


def test_creates_missing_parents_0700_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        d = private_path(str(tmp_path / "a" / "b" / "c"))
    finally:
        os.umask(old)
    assert d == str(tmp_path / "a" / "b" / "c")
    for p in ("a", "a/b", "a/b/c"):
        st = os.lstat(tmp_path / p)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700, p
    with private_dir(str(tmp_path / "x" / "y"), parents=True) as pd:
        pd.write_atomic("f", b"1")
    assert (tmp_path / "x" / "y" / "f").read_bytes() == b"1"


def test_without_parents_a_missing_parent_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        private_dir(str(tmp_path / "no" / "dir"))
    assert not (tmp_path / "no").exists()


def test_refuses_a_planted_symlink(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    os.symlink(target, tmp_path / "run")
    with pytest.raises(PermissionDenied, match="symbolic link"):
        private_path(str(tmp_path / "run"))
    with pytest.raises(PermissionDenied, match="symbolic link"):
        private_subdir(str(tmp_path / "run"), "mnt")
    os.mkdir(tmp_path / "base", 0o700)
    os.symlink(target, tmp_path / "base" / "mnt")
    with pytest.raises(PermissionDenied, match="symbolic link"):
        private_subdir(str(tmp_path / "base"), "mnt")
    assert os.listdir(target) == []


def test_tightens_its_own_but_not_a_shared_directory(tmp_path):
    d = tmp_path / "root"
    d.mkdir()
    os.chmod(d, 0o755)
    private_path(str(d))
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    s = tmp_path / "shared"
    s.mkdir()
    os.chmod(s, 0o1777)
    with pytest.raises(PermissionDenied, match="writable"):
        private_path(str(s), tighten=False)
    with pytest.raises(PermissionDenied, match="writable"):
        private_path(str(s))                 # writable by others: never taken
    assert stat.S_IMODE(os.stat(s).st_mode) == 0o1777
    r = tmp_path / "readable"
    r.mkdir()
    os.chmod(r, 0o755)
    with pytest.raises(PermissionDenied, match="0700"):
        private_path(str(r), tighten=False)  # a socket's directory: refused, not chmod-ed
    assert stat.S_IMODE(os.stat(r).st_mode) == 0o755


def test_refuses_a_directory_owned_by_someone_else(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    d = tmp_path / "theirs"
    d.mkdir(mode=0o700)
    os.chown(d, 1, 1)
    with pytest.raises(PermissionDenied, match="owned by uid 1"):
        private_path(str(d))
    with pytest.raises(PermissionDenied, match="owned by uid 1"):
        private_path(str(d / "below"))
    assert not (d / "below").exists()
