"""Mount input (issue 15, item 12): the longest valid tree name mounts; bad
``-o`` options are refused before any daemon starts, naming the option,
with the exit code for bad input."""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from blockstore import Store
from blockstore import errors as E
from blockstore.cli import main

from _fuse_helpers import Mounted, check_ok, needs_fuse, public_dir

pytestmark = needs_fuse

LONG = "n" * 255                    # the longest valid tree name
LONG_SLASHES = "a/" * 127 + "b"     # 255 characters; each '/' used to become 3 in file names


@pytest.fixture
def sp(tmp_path):
    path = tmp_path / "store"
    with Store.open(path) as s:
        s.create("c")
        s.create(LONG)
        s.create(LONG_SLASHES)
    return path


@pytest.fixture
def mnt():
    base = public_dir()
    d = os.path.join(base, "mnt")
    os.mkdir(d)
    yield d
    if os.path.ismount(d):
        from blockstore.fuse import umount
        try:
            umount(d)
        except E.Busy:
            umount(d, lazy=True)        # something scanning /tmp had it open
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("name", [LONG, LONG_SLASHES], ids=["plain", "slashes"])
def test_a_255_character_clone_name_mounts(sp, name):
    m = Mounted(sp, name)
    try:
        with open(m.p("hello"), "w") as f:
            f.write("hi\n")
            f.flush()
            os.fsync(f.fileno())
        with Store.open(sp) as s:
            from blockstore.api import mountlock
            assert mountlock.in_use(s.path, name)           # the lock is found by name
            with pytest.raises(E.Busy):
                s.remove(name, force=True)
            assert s.fs(name).read_bytes("/hello") == b"hi\n"
    finally:
        m.close()
    with Store.open(sp) as s:
        s.remove(name)                                      # not busy once unmounted
    check_ok(sp)


BAD = [
    ("unknown_opt", "unknown_opt"),
    ("commit_interval=nan", "commit_interval"),
    ("commit_interval=-1", "commit_interval"),
    ("commit_interval=inf", "commit_interval"),
    ("max_tasks=0", "max_tasks"),
    ("max_tasks=2.5", "max_tasks"),
    ("read_ahead_kb=abc", "read_ahead_kb"),
    ("read_ahead_kb=-4", "read_ahead_kb"),
    ("attr_timeout=1e400", "attr_timeout"),
    ("attr_timeout=-1", "attr_timeout"),
    ("readonly=maybe", "readonly"),
    ("write_behind=2", "write_behind"),
]


@pytest.mark.parametrize("opt,named", BAD, ids=[b[0] for b in BAD])
def test_bad_mount_option_is_refused_before_the_daemon(sp, mnt, opt, named):
    r = CliRunner().invoke(main, ["--store", str(sp), "mount", "c", mnt, "-o", opt])
    assert r.exit_code == E.InvalidInput.exit_code, (r.exit_code, r.output)
    assert named in r.stderr and "daemon" not in r.stderr, r.stderr
    assert not os.path.ismount(mnt)
    assert not os.path.exists(os.path.join(sp, "fuse")), "a daemon was started"


LIB_BAD = [{"max_tasks": 0}, {"commit_interval": float("nan")}, {"attr_timeout": float("inf")},
           {"bogus": 1}, {"read_ahead_kb": "abc"}, {"debug": "yes please"},
           {"max_tasks": True}]


@pytest.mark.parametrize("opts", LIB_BAD, ids=[repr(o) for o in LIB_BAD])
def test_bad_mount_option_is_refused_by_the_library(sp, mnt, opts):
    from blockstore.fuse import mount
    with pytest.raises(E.InvalidInput, match=next(iter(opts))):
        mount(sp, "c", mnt, **opts)
    assert not os.path.ismount(mnt)


@pytest.mark.parametrize("opts", LIB_BAD[:6], ids=[repr(o) for o in LIB_BAD[:6]])
def test_bad_mount_option_is_refused_in_the_foreground(sp, mnt, opts):
    """foreground=True would serve in the calling process: run it in a child with
    a time limit, so that an accepted option cannot hang the test run."""
    code = ("import sys\n"
            "from blockstore.fuse import mount\n"
            "from blockstore.errors import InvalidInput\n"
            f"opts = {{k: (float(v) if isinstance(v, str) and v in ('nan', 'inf') else v) "
            f"for k, v in {_portable(opts)!r}.items()}}\n"
            "try:\n"
            f"    mount({str(sp)!r}, 'c', {mnt!r}, foreground=True, **opts)\n"
            "except InvalidInput as exc:\n"
            "    print('refused:', exc); sys.exit(9)\n")
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=60)
    finally:
        if os.path.ismount(mnt):
            subprocess.run(["fusermount3", "-u", "-z", mnt], capture_output=True)
    assert r.returncode == 9 and next(iter(opts)) in r.stdout, (r.returncode, r.stdout, r.stderr)


def _portable(opts):
    """NaN/inf as strings (repr of a float NaN is not valid Python source)."""
    return {k: (repr(v) if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in opts.items()}


def test_good_mount_options_are_accepted(sp, mnt):
    r = CliRunner().invoke(main, ["--store", str(sp), "mount", "c", mnt, "-o", "readonly",
                                  "-o", "commit_interval=0.2", "-o", "max_tasks=4",
                                  "-o", "read_ahead_kb=0", "-o", "attr_timeout=2",
                                  "-o", "write_behind=off"])
    assert r.exit_code == 0, r.output
    assert os.path.ismount(mnt)
    with pytest.raises(OSError):
        open(os.path.join(mnt, "x"), "w").close()           # readonly took effect
