"""A store is private (issue 15 item 2): its directory, meta/ and every file
in them are readable by the owner only (0700 / 0600) whatever the umask,
since small files are stored inline in the metadata.  An existing store with
looser modes is reported by check and fixed by check --repair."""
from __future__ import annotations

import os
import stat

import pytest

from blockstore import Store

from _bounded import cli

CORRUPTION = 8


def _modes(path) -> dict:
    out = {".": stat.S_IMODE(os.stat(path).st_mode)}
    for dirpath, dirs, files in os.walk(path):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, path)] = stat.S_IMODE(os.lstat(p).st_mode)
    return out


def _assert_private(path) -> None:
    modes = _modes(path)
    loose = {k: oct(m) for k, m in modes.items() if m & 0o077}
    assert not loose, f"readable by others: {loose}"
    for k in (".", "meta", "meta/data.mdb", "meta/lock.mdb", "pool.data"):
        assert k in modes, k


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_api_creates_a_private_store(tmp_path, umask022):
    path = tmp_path / "s"
    with Store.open(path) as s:
        s.create("c")
        with s.fs("c") as fs:
            fs.write_bytes("/secret", b"root only")
            fs.write_bytes("/big", os.urandom(100_000))
    _assert_private(path)
    with Store.open(path, create=False) as s:
        assert s.check().ok


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_cli_creates_a_private_store(tmp_path, umask):
    path = tmp_path / "s"
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x" * 100)
    old = os.umask(umask)
    try:
        assert cli(path, "import", src, "base").returncode == 0
    finally:
        os.umask(old)
    _assert_private(path)
    assert cli(path, "check").returncode == 0


def test_check_reports_and_repair_fixes_loose_modes(tmp_path):
    path = tmp_path / "s"
    with Store.open(path) as s:
        s.create("c")
        with s.fs("c") as fs:
            fs.write_bytes("/big", os.urandom(100_000))
    os.chmod(path, 0o755)
    os.chmod(path / "meta", 0o755)
    os.chmod(path / "meta" / "data.mdb", 0o644)
    os.chmod(path / "pool.data", 0o640)
    r = cli(path, "check")
    out = r.stdout.decode()
    assert r.returncode == CORRUPTION, (r.stdout, r.stderr)
    assert "permissions" in out and "meta/data.mdb" in out and "pool.data" in out, out
    with Store.open(path, create=False) as s:
        rep = s.check()
        assert not rep.ok and {p.kind for p in rep.problems} == {"permissions"}
    r = cli(path, "check", "--repair")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "repaired" in r.stdout.decode()
    _assert_private(path)
    assert cli(path, "check").returncode == 0
