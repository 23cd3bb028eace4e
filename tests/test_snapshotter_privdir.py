"""blockstore.snapshotter.privdir: the snapshotter's directories are 0700,
ours, and never reached through a planted symlink."""
from __future__ import annotations

import os
import stat

import pytest

from blockstore.errors import InvalidInput, PermissionDenied
from blockstore.snapshotter.privdir import private_dir, private_subdir


def test_creates_0700_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        d = private_dir(str(tmp_path / "a" / "b"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "a").st_mode) == 0o700


def test_refuses_a_planted_symlink(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    os.symlink(target, tmp_path / "run")
    with pytest.raises(InvalidInput):
        private_dir(str(tmp_path / "run"))
    with pytest.raises(InvalidInput):
        private_subdir(str(tmp_path / "run"), "mnt")
    assert os.listdir(target) == []


def test_tightens_its_own_but_not_a_shared_directory(tmp_path):
    d = tmp_path / "root"
    d.mkdir(mode=0o777)
    os.chmod(d, 0o777)
    private_dir(str(d))
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    s = tmp_path / "shared"
    s.mkdir()
    os.chmod(s, 0o1777)
    with pytest.raises(PermissionDenied):
        private_dir(str(s), tighten=False)
    assert stat.S_IMODE(os.stat(s).st_mode) == 0o1777


def test_refuses_a_directory_owned_by_someone_else(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    d = tmp_path / "theirs"
    d.mkdir()
    os.chown(d, 1, 1)
    with pytest.raises(PermissionDenied):
        private_dir(str(d))
