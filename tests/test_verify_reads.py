"""Verified reads (issue 15 item 5): a block whose data was damaged is never
returned.  On: a store setting (persisted), a CLI flag, a mount option, or
``Store.open(verify_reads=True)``; a mismatch is Corruption (API), exit code 8
(CLI) and EIO (FUSE).  Off (the default), the read returns what the disk
holds and only scrub finds it."""
from __future__ import annotations

import errno
import os

import pytest

from blockstore import Store
from blockstore import errors as E

from _bounded import clean_end, cli
from _fuse_helpers import HAVE_FUSE, Mounted, needs_root

BS = 4096
CORRUPTION = E.Corruption.exit_code


def _damaged(path, setting: bool | None = None) -> bytes:
    """A snapshot 't' holding /f (16 blocks, the only data in the pool) and
    /small (inline); then one byte of the pool's block 1 flipped."""
    data = os.urandom(16 * BS)
    with Store.open(path) as s:
        if setting is not None:
            s.configure(verify_reads=setting)
        s.create("c")
        with s.fs("c") as fs:
            fs.write_bytes("/f", data)
            fs.write_bytes("/small", b"tiny")
        s.commit("c", "t")
    with open(os.path.join(path, "pool.data"), "r+b") as f:
        f.seek(BS + 123)
        b = f.read(1)
        f.seek(BS + 123)
        f.write(bytes([b[0] ^ 0x10]))
    return data


def _scrub_finds_it(path) -> None:
    """The store is sound but for the flipped data byte, which scrub finds."""
    with Store.open(path, create=False) as s:
        assert s.check().ok, str(s.check())
        rep = s.check(scrub=True)
        assert not rep.ok and any(p.kind == "block-checksum" for p in rep.problems), str(rep)


def test_setting_is_persisted_and_verifies_reads(tmp_path):
    path = tmp_path / "s"
    data = _damaged(path, setting=True)
    with Store.open(path, create=False) as s:
        assert s.settings["verify_reads"] is True
        with s.fs("t") as fs:
            with pytest.raises(E.Corruption, match="block 1 "):
                fs.read_bytes("/f")
            assert fs.read_bytes("/small") == b"tiny"        # inline: no pool block
        s.configure(verify_reads=False)
        with s.fs("t") as fs:
            assert fs.read_bytes("/f") != data              # off: the damage is returned
    with Store.open(path, create=False) as s:
        assert s.settings["verify_reads"] is False
    _scrub_finds_it(path)


def test_open_option_verifies_reads(tmp_path):
    path = tmp_path / "s"
    _damaged(path)
    with Store.open(path, create=False, verify_reads=True) as s:
        assert s.settings["verify_reads"] is False        # the handle's choice, not the store's
        with s.fs("t") as fs, pytest.raises(E.Corruption):
            fs.read_bytes("/f")
    _scrub_finds_it(path)


def test_cli_flag_and_setting(tmp_path):
    path = tmp_path / "s"
    data = _damaged(path)
    r = cli(path, "cat", "t:/f")
    assert r.returncode == 0 and r.stdout != data          # the default returns the damage
    r = cli(path, "--verify-reads", "cat", "t:/f")
    assert not clean_end(r, (CORRUPTION,)), clean_end(r, (CORRUPTION,))
    assert b"checksum" in r.stderr and b"block 1" in r.stderr, r.stderr
    export = tmp_path / "out"
    r = cli(path, "--verify-reads", "export", "t", export)
    assert r.returncode == CORRUPTION, r.stderr
    r = cli(path, "config")
    assert r.returncode == 0 and b"verify_reads" in r.stdout and b"off" in r.stdout, r.stdout
    assert cli(path, "config", "verify_reads=on").returncode == 0
    r = cli(path, "cat", "t:/f")
    assert r.returncode == CORRUPTION, r.stderr
    r = cli(path, "--json", "config")
    assert r.returncode == 0 and b'"verify_reads": true' in r.stdout, r.stdout
    assert cli(path, "config", "verify_reads=maybe").returncode == 2
    assert cli(path, "config", "no_such=on").returncode == 2
    _scrub_finds_it(path)


def test_init_option_sets_it(tmp_path):
    path = tmp_path / "s"
    assert cli(path, "init", "--verify-reads").returncode == 0
    with Store.open(path, create=False) as s:
        assert s.settings["verify_reads"] is True
        assert s.check().ok


def _read_errno(p) -> int:
    try:
        with open(p, "rb") as f:
            f.read()
    except OSError as exc:
        return exc.errno
    return 0


@pytest.mark.skipif(not HAVE_FUSE, reason="needs /dev/fuse and fusermount3")
@needs_root
@pytest.mark.parametrize("how", ["option", "setting"])
def test_fuse_read_of_a_damaged_block_is_eio(tmp_path, how):
    path = tmp_path / "s"
    _damaged(path, setting=True if how == "setting" else None)
    plain = Mounted(path, "t")
    try:
        assert _read_errno(plain.p("f")) == (errno.EIO if how == "setting" else 0)
    finally:
        plain.close()
    if how == "option":
        mt = Mounted(path, "t", verify_reads=True)
        try:
            assert _read_errno(mt.p("f")) == errno.EIO
            with open(mt.p("small"), "rb") as f:
                assert f.read() == b"tiny"
        finally:
            mt.close()
    _scrub_finds_it(path)


@pytest.mark.skipif(not HAVE_FUSE, reason="needs /dev/fuse and fusermount3")
@needs_root
def test_cli_mount_with_the_global_flag_answers_eio(tmp_path):
    import shutil

    from _fuse_helpers import public_dir
    path = tmp_path / "s"
    _damaged(path)
    base = public_dir()
    mnt = os.path.join(base, "mnt")
    os.mkdir(mnt)
    try:
        r = cli(path, "--verify-reads", "mount", "t", mnt)
        assert r.returncode == 0, r.stderr
        try:
            assert _read_errno(os.path.join(mnt, "f")) == errno.EIO
        finally:
            assert cli(path, "umount", mnt).returncode == 0
    finally:
        shutil.rmtree(base, ignore_errors=True)
    _scrub_finds_it(path)
