"""Writing outside the store: planted symlinks on the host side are never
followed (a file replaces a symlink at the destination's last component; a
directory never replaces a non-directory; directory export works through
dir fds, so a symlink swapped in during the export leads nowhere); a failed
export removes what it wrote; file capabilities survive a directory
export; a closed pipe on stdout ends the CLI quietly with status 141."""
from __future__ import annotations

import os
import resource
import signal
import stat as S
import subprocess
import sys
import tarfile

import pytest
from click.testing import CliRunner

from blockstore import Store
from blockstore.cli import main
from blockstore.errors import InvalidInput
from blockstore.oci import export_image, export_tar

BIN = os.path.join(os.path.dirname(sys.executable), "blockstore")
ROOT = os.geteuid() == 0


def _tree(store, name="t"):
    store.create(name + "-w")
    with store.fs(name + "-w") as t:
        t.makedirs("/etc/sub")
        t.write_bytes("/etc/passwd", b"tree passwd\n")
        t.write_bytes("/etc/sub/conf", b"tree conf\n")
        t.write_bytes("/big", os.urandom(1 << 20) * 3)
    store.snapshot(name + "-w", name)
    store.remove(name + "-w")


def _victim(tmp_path):
    v = tmp_path / "victim"
    v.mkdir()
    (v / "passwd").write_bytes(b"victim\n")
    return v


def _cp(path, *args):
    return CliRunner().invoke(main, ["--store", path, "cp", *args])


# -- cp onto planted symlinks -------------------------------------------------------------

def test_cp_dir_onto_symlink_refused(store, tmp_path):
    _tree(store)
    victim = _victim(tmp_path)
    host = tmp_path / "host"
    host.mkdir()
    os.symlink(victim, host / "etc")
    r = _cp(store.path, "t:/etc", str(host))
    assert r.exit_code != 0, r.output
    assert "cannot overwrite non-directory" in r.output
    assert sorted(os.listdir(victim)) == ["passwd"]
    assert (victim / "passwd").read_bytes() == b"victim\n"


def test_cp_dir_onto_symlink_deeper_refused(store, tmp_path):
    """A symlink planted below an existing destination directory is no way out either."""
    _tree(store)
    victim = _victim(tmp_path)
    host = tmp_path / "host"
    (host / "etc").mkdir(parents=True)
    os.symlink(victim, host / "etc" / "sub")
    r = _cp(store.path, "t:/etc", str(host))
    assert r.exit_code != 0 and "cannot overwrite non-directory" in r.output, r.output
    assert sorted(os.listdir(victim)) == ["passwd"]


def test_cp_file_replaces_symlink_not_its_target(store, tmp_path):
    _tree(store)
    victim = _victim(tmp_path)
    host = tmp_path / "host"
    host.mkdir()
    os.symlink(victim / "passwd", host / "passwd")
    r = _cp(store.path, "t:/etc/passwd", str(host / "passwd"))
    assert r.exit_code == 0, r.output
    assert (victim / "passwd").read_bytes() == b"victim\n"
    assert not os.path.islink(host / "passwd")
    assert (host / "passwd").read_bytes() == b"tree passwd\n"
    # the same into a tree: a symlink in the tree is replaced, its target kept
    store.create("c")
    with store.fs("c") as t:
        t.write_bytes("/target", b"keep")
        t.symlink("/target", "/link")
    r = _cp(store.path, str(host / "passwd"), "c:/link")
    assert r.exit_code == 0, r.output
    with store.fs("c") as t:
        assert t.read_bytes("/target") == b"keep"
        assert not t.islink("/link") and t.read_bytes("/link") == b"tree passwd\n"


# -- export outputs --------------------------------------------------------------------

@pytest.mark.parametrize("how", ["tar", "layer", "docker"])
def test_export_onto_symlink_replaces_the_link(store, tmp_path, how):
    _tree(store)
    victim = _victim(tmp_path)
    out = tmp_path / "link.tar"
    os.symlink(victim / "passwd", out)
    if how == "tar":
        export_tar(store, "t", str(out))
    elif how == "layer":
        store.create("empty")
        store.snapshot("empty", "e")
        export_tar(store, "t", str(out), parent="e")
    else:
        export_image(store, "t", str(out), format="docker")
    assert (victim / "passwd").read_bytes() == b"victim\n"
    assert not os.path.islink(out)
    with tarfile.open(out) as tf:
        assert tf.getnames()
    assert sorted(os.listdir(tmp_path)) == ["link.tar", "store", "victim"]   # no temp files


def test_export_dir_symlink_swapped_in_during_export(store, tmp_path):
    """An attacker who can write to the destination replaces a directory the
    export just made by a symlink: the export keeps writing into the directory
    it made (dir fds, O_NOFOLLOW), never into the symlink's target, and stops
    with an error when it finds its directory moved."""
    _tree(store)
    victim = _victim(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o1777)
    moved = tmp_path / "moved"

    def progress(path, nbytes):
        if path.endswith("/etc/passwd") and not moved.exists():
            os.rename(out / "etc", moved)
            os.symlink(victim, out / "etc")
    with pytest.raises(InvalidInput, match="moved"):
        store.export_dir("t", str(out), progress=progress)
    assert sorted(os.listdir(victim)) == ["passwd"]
    assert (victim / "passwd").read_bytes() == b"victim\n"
    assert (moved / "passwd").read_bytes() == b"tree passwd\n"
    assert (moved / "sub" / "conf").read_bytes() == b"tree conf\n"
    assert os.listdir(out) == []           # what the failed export made in out is gone


def _limited_cli(store_path, *args, fsize=1 << 20):
    """Run the CLI with RLIMIT_FSIZE: writing past fsize fails with EFBIG
    (Python ignores SIGXFSZ), a real failure in the middle of an export."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return subprocess.run([BIN, "--store", store_path, *args], preexec_fn=limit,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("fmt", ["tar", "docker", "dir", "oci"])
def test_failed_export_removes_what_it_wrote(store, tmp_path, fmt):
    _tree(store)
    path = store.path
    store.close()
    out = tmp_path / ("out.tar" if fmt in ("tar", "docker") else "out")
    r = _limited_cli(path, "export", "t", str(out), "--format", fmt)
    assert r.returncode != 0 and "File too large" in r.stderr, r.stderr
    assert sorted(os.listdir(tmp_path)) == ["store"], os.listdir(tmp_path)
    if fmt in ("dir", "oci"):              # an existing empty destination stays, empty
        out.mkdir()
        r = _limited_cli(path, "export", "t", str(out), "--format", fmt)
        assert r.returncode != 0 and "File too large" in r.stderr, r.stderr
        assert os.listdir(out) == []


# -- file capabilities (issue 16) ------------------------------------------------------

# security.capability v2 for cap_net_raw+ep: magic|effective, permitted bit 13, inheritable 0
CAP_NET_RAW_EP = (0x02000001).to_bytes(4, "little") + (1 << 13).to_bytes(4, "little") \
    + bytes(12)


@pytest.mark.skipif(not ROOT, reason="setting security.capability needs root")
def test_export_dir_keeps_file_capabilities(store, tmp_path):
    store.create("w")
    with store.fs("w") as t:
        t.makedirs("/usr/bin")
        t.write_bytes("/usr/bin/ping", b"\x7fELF fake ping")
        t.chmod("/usr/bin/ping", 0o755)
        t.chown("/usr/bin/ping", 0, 0)
        t.setxattr("/usr/bin/ping", "security.capability", CAP_NET_RAW_EP)
    out = tmp_path / "out"
    store.export_dir("w", str(out))
    ping = out / "usr" / "bin" / "ping"
    assert os.getxattr(ping, "security.capability") == CAP_NET_RAW_EP
    assert S.S_IMODE(os.stat(ping).st_mode) == 0o755


# -- broken pipe (issue 16) ------------------------------------------------------------

def _pipe_to_closed_reader(args):
    p = subprocess.Popen([BIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.read(10)
    p.stdout.close()                       # like `| head -c 10`
    err = p.stderr.read()
    p.stderr.close()
    return p.wait(timeout=60), err


def test_broken_pipe_exits_quietly(store, tmp_path):
    _tree(store)
    many = tmp_path / "many"
    many.mkdir()
    for i in range(3000):                  # ~150 KB of diff lines: more than a pipe holds
        (many / f"a-file-with-a-rather-long-name-{i:05d}").write_bytes(b"x")
    store.import_dir(str(many), "many")
    path = store.path
    store.close()
    for args in (["cat", "t:/big"], ["diff", "t", "many"]):
        code, err = _pipe_to_closed_reader(["--store", path, *args])
        assert err == b"" and code == 128 + signal.SIGPIPE, (args, code, err)
    Store.open(path).close()
