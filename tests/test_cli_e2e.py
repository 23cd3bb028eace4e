"""The installed `blockstore` console script end to end, as subprocesses:
the quick start of docs/CLI.md, clean stdout for pipes, exit codes, and
(where /dev/fuse and the FUSE adapter are usable) mount/umount."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

BIN = os.path.join(os.path.dirname(sys.executable), "blockstore")
pytestmark = pytest.mark.skipif(not os.path.exists(BIN), reason="console script not installed")


def bs(store, *args, code=0, input=None):
    r = subprocess.run([BIN, "--store", str(store), *map(str, args)], capture_output=True,
                       text=True, timeout=120, input=input)
    assert r.returncode == code, (args, r.returncode, r.stdout, r.stderr)
    return r


@pytest.fixture
def store(tmp_path):
    s = tmp_path / "store"
    yield s
    assert json.loads(bs(s, "check", "--json").stdout)["ok"]


def test_quick_start(store, tmp_path):
    app = tmp_path / "myapp"
    (app / "etc").mkdir(parents=True)
    (app / "etc" / "app.conf").write_text("v=1\n")
    (app / "bin").mkdir()
    (app / "bin" / "tool").write_bytes(os.urandom(50000))
    conf = tmp_path / "app.conf"
    conf.write_text("v=2\n")
    bs(store, "import", app, "app-v1")
    bs(store, "clone", "app-v1", "work")
    bs(store, "cp", conf, "work:/etc/app.conf")
    r = bs(store, "commit", "work", "app-v2")
    assert r.stdout.splitlines() == ["app-v2 (parent app-v1): 0 added, 1 changed, 0 deleted"]
    assert r.stderr == ""                       # no progress when stderr is not a terminal
    layer = tmp_path / "layer.tar"
    try:
        import blockstore.oci.layer_out  # noqa: F401
        has_layers = True
    except ImportError:
        has_layers = False
    r = bs(store, "export", "app-v2", layer, "--from", "app-v1", code=0 if has_layers else 12)
    if has_layers:
        import tarfile
        with tarfile.open(layer) as t:
            names = [m.name.lstrip("./") for m in t.getmembers()]
        assert "etc/app.conf" in names and "bin/tool" not in names
    du = bs(store, "du", "--json")
    rows = {d["name"]: d for d in json.loads(du.stdout)}
    assert rows["app-v1"]["logical"] == 50000 + 4 and du.stderr == ""


def test_pipes_and_exit_codes(store, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "x").write_bytes(b"\0" * 10 + b"\xff\xfe")
    bs(store, "import", d, "base")
    r = subprocess.run([BIN, "--store", str(store), "cat", "base:/x"], capture_output=True)
    assert r.returncode == 0 and r.stdout == (d / "x").read_bytes()
    r = subprocess.run([BIN, "--store", str(store), "--json", "ls"], capture_output=True)
    assert json.loads(r.stdout)[0]["name"] == "base"
    r = bs(store, "info", "ghost", code=3)
    assert r.stdout == "" and r.stderr.startswith("blockstore: no tree named 'ghost'; ")
    bs(store, "frobnicate", code=2)
    env = dict(os.environ, BLOCKSTORE_STORE=str(store))
    r = subprocess.run([BIN, "ls", "-q"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == ""
    r = subprocess.run([BIN, "ls"], env=env, capture_output=True, text=True)
    assert "base" in r.stdout


def _fuse_usable() -> bool:
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse") or not shutil.which("fusermount3"):
        return False
    try:
        import blockstore.fuse as f
        return hasattr(f, "mount") and hasattr(f, "umount")
    except ImportError:
        return False


@pytest.mark.skipif(not _fuse_usable(), reason="needs root, /dev/fuse and blockstore.fuse")
def test_mount_umount(store, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "hello").write_text("hi\n")
    bs(store, "import", d, "base")
    bs(store, "clone", "base", "w")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    bs(store, "mount", "w", mnt)
    try:
        assert (mnt / "hello").read_text() == "hi\n"
        (mnt / "new").write_text("from fuse\n")
    finally:
        bs(store, "umount", mnt)
    assert bs(store, "cat", "w:/new").stdout == "from fuse\n"


def test_demo_succeeds_and_fails_loudly(tmp_path):
    """`make demo` (tools/demo.py): exit 0 with a transcript; non-zero on a failure
    (here: a --store path that is a plain file, so the first command fails)."""
    demo = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "tools", "demo.py")
    r = subprocess.run([sys.executable, demo, "--store", str(tmp_path / "s")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for cmd in ("import", "clone", "cp", "commit", "diff", "export", "du", "df", "check"):
        assert f"$ blockstore {cmd} " in r.stdout or f"$ blockstore {cmd}\n" in r.stdout
    assert r.stdout.rstrip().endswith("# demo ok")
    bad = tmp_path / "notastore"
    bad.write_text("x")
    r = subprocess.run([sys.executable, demo, "--store", str(bad)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 10 and "failed with exit code 10" in r.stderr


def test_progress_goes_to_a_terminal_stderr_only(store, tmp_path):
    """With stderr a terminal, import/export/cp/check/gc draw progress there;
    stdout still carries exactly the result."""
    import pty
    d = tmp_path / "d"
    d.mkdir()
    for i in range(200):
        (d / f"f{i}").write_bytes(os.urandom(5000))
    master, slave = pty.openpty()
    try:
        def run(*args):
            r = subprocess.run([BIN, "--store", str(store), *map(str, args)], stdout=subprocess.PIPE,
                               stderr=slave, timeout=120)
            assert r.returncode == 0
            return r.stdout
        assert run("import", d, "base") == b"base\n"
        assert run("export", "base", tmp_path / "out") == f"{tmp_path / 'out'}\n".encode()
        assert run("clone", "base", "w") == b"w\n"
        assert run("cp", d, "w:/x") == b""
        assert run("check").startswith(b"ok")
        assert run("gc").startswith(b"freed")
        os.set_blocking(master, False)
        drawn = b""
        try:
            while True:
                chunk = os.read(master, 65536)
                if not chunk:
                    break
                drawn += chunk
        except (BlockingIOError, OSError):
            pass
        assert b"\x1b[" in drawn              # rich drew (and cleared) its progress there
    finally:
        os.close(master)
        os.close(slave)
