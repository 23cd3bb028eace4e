"""The CLI as a new user expects it (issue 16, "should fix"): error hints
written for the error at hand, ``--json`` honoured or refused by every
command, ``-`` for stdin/stdout in import and export (send | receive
between two stores), ``rename``, ``prune``, an ``ls`` that hides image
layers and fits 100 columns, a one-line ``commit``, and the API's class
docstrings and diff letters.  FUSE options: tests/test_fuse_dev_suid.py."""
from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile

import pytest
from click.testing import CliRunner

from blockstore import Store
from blockstore.api.treeview import TreeView
from blockstore.cli import main

import cli_shapes
import oci_ref

BIN = os.path.join(os.path.dirname(sys.executable), "blockstore")


@pytest.fixture
def src(tmp_path):
    d = tmp_path / "src"
    (d / "etc").mkdir(parents=True)
    (d / "etc" / "app.conf").write_text("v=1\n")
    (d / "etc" / "old.conf").write_text("old\n")
    (d / "README").write_text("hello\n")
    (d / "big").write_bytes(os.urandom(3 * 4096 + 17))
    os.symlink("etc/app.conf", d / "link")
    return d


def stderr_line(r) -> str:
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("blockstore: "), r.stderr
    return lines[0]


# -- error hints ----------------------------------------------------------------------------
def test_error_hints_fit_the_error(bs, src, tmp_path):
    bs("init")
    line = stderr_line(bs("init", code=4))
    assert "blockstore rm" not in line          # rm removes trees, not stores
    assert "--store" in line
    bs("import", src, "base")
    line = stderr_line(bs("clone", "base", "bad name", code=9))
    assert line.endswith("see `blockstore clone --help`"), line
    line = stderr_line(bs("volume", "create", "bad name", code=9))
    assert line.endswith("see `blockstore volume create --help`"), line
    line = stderr_line(bs("export", "base", tmp_path / "x", "--from", "base",
                          "--format", "dir", code=9))
    assert line.endswith("see `blockstore export --help`"), line
    line = stderr_line(bs("import", tmp_path / "no-such-dir", "x", code=3))
    assert "blockstore ls" not in line and "`-` reads stdin" in line   # a host path
    bs("clone", "base", "w")
    line = stderr_line(bs("rm", "base", code=5))
    assert "force" in line                      # rm does have --force


def test_hint_of_the_error_follows_its_path_and_names_the_command():
    from blockstore import errors as E
    from blockstore.cli import errors as CE
    assert CE.message(E.Busy("it is taken; unmount it", path="/m")) == \
        "blockstore: it is taken: /m; unmount it"
    assert CE.message(E.InvalidInput("bad"), "volume create") == \
        "blockstore: bad; see `blockstore volume create --help`"
    assert CE.message(E.NotFound("gone", path="/x")).startswith("blockstore: gone: /x; ")


# -- --json everywhere ---------------------------------------------------------------------
def test_json_is_honoured_or_refused_by_every_command(bs, src, tmp_path):
    bs("import", src, "base")
    bs("clone", "base", "w")
    bs("volume", "create", "vol")
    (tmp_path / "new.txt").write_text("new\n")

    def both(*args):
        """The global and the per-command flag give the same JSON document."""
        a = json.loads(bs("--json", *args).stdout)
        return a

    doc = both("cp", tmp_path / "new.txt", "w:/new.txt")
    cli_shapes.check(doc, "copy")
    assert doc["bytes"] == 4
    doc = json.loads(bs("export", "base", tmp_path / "out", "--json").stdout)
    cli_shapes.check(doc, "export")
    assert doc["format"] == "dir" and doc["name"] == "base"
    doc = both("rename", "w", "w2")
    cli_shapes.check(doc, "tree")
    doc = both("rm", "w2")
    cli_shapes.check(doc, "removed")
    assert doc["removed"] == ["w2"]
    doc = json.loads(bs("volume", "rm", "vol", "--json").stdout)
    cli_shapes.check(doc, "removed")
    doc = both("prune", "--dry-run")
    cli_shapes.check(doc, "prune")
    # commands whose output is not a document refuse --json with a usage error (2)
    refusing = {"cat": ("base:/README",), "completion": ("bash",), "bench": ("--help",),
                "stress": ("--help",), "snapshotter serve": ("--address", "x")}
    for cmd, args in refusing.items():
        r = bs("--json", *cmd.split(), *args, code=2)
        assert "--json" in r.stderr, (cmd, r.stderr)
    # and every other command has the flag (so it prints a document)
    import click

    from blockstore.cli.context import takes_json

    def leaves(group, prefix=()):
        for name, cmd in group.commands.items():
            if isinstance(cmd, click.Group):
                yield from leaves(cmd, prefix + (name,))
            else:
                yield " ".join(prefix + (name,)), cmd
    for name in main.list_commands(None):   # every command module loaded
        main.get_command(None, name)
    for name, cmd in leaves(main):
        assert takes_json(cmd) != (name in refusing), name


# -- send | receive ------------------------------------------------------------------------
def _sh(cmd: str, **env) -> subprocess.CompletedProcess:
    r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True,
                       timeout=120, env=dict(os.environ, **env))
    assert r.returncode == 0, (cmd, r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    return r


@pytest.mark.skipif(not os.path.exists(BIN), reason="console script not installed")
def test_export_to_stdout_import_from_stdin_between_two_stores(src, tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    for s in (a, b):
        _sh(f"{BIN} --store {s} import {src} base")
    conf = tmp_path / "app.conf"
    conf.write_text("v=2\n")
    _sh(f"{BIN} --store {a} clone base w && {BIN} --store {a} cp {conf} w:/etc/app.conf && "
        f"{BIN} --store {a} commit w v2")
    with Store.open(a) as s, s.fs("w") as fs:
        fs.unlink("/etc/old.conf")
    _sh(f"{BIN} --store {a} commit w v3")
    # the change base -> v3 as a layer on stdout, applied onto base in the other store
    r = _sh(f"{BIN} --store {a} export v3 --from base - | "
            f"{BIN} --store {b} import - v3 --parent base")
    assert r.stdout.decode() == "v3\n"
    # a whole tree as a tar through a pipe
    _sh(f"{BIN} --store {a} export v2 - | {BIN} --store {b} import - v2-full")
    # an image archive (`docker save` form) through a pipe: a chain of layers there
    _sh(f"{BIN} --store {a} export v2 --format docker - | {BIN} --store {b} import - v2-img")
    with Store.open(a) as sa:
        want = {n: _tree(sa, n) for n in ("v2", "v3")}
    with Store.open(b) as sb:
        assert _tree(sb, "v3") == want["v3"]
        assert _tree(sb, "v2-full") == want["v2"]
        assert _tree(sb, "v2-img") == want["v2"] and sb.info("v2-img").parent is not None
        assert sb.info("v3").parent == "base"
        assert sb.check().ok
    assert "/etc/old.conf" not in want["v3"] and want["v3"]["/etc/app.conf"] == b"v=2\n"
    # a broken send never becomes a snapshot: an empty or cut stream is refused
    for cut in ("head -c 0", "head -c 20000"):
        r = subprocess.run(["bash", "-c", f"{BIN} --store {a} export v2 - | {cut} | "
                            f"{BIN} --store {b} import - broken"], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 9 and ("empty" in r.stderr or "end-of-archive" in r.stderr), r
    with Store.open(b) as sb:
        assert not sb.exists("broken")
    # `-` for a directory export is refused (a directory cannot go to stdout)
    r = subprocess.run([BIN, "--store", str(a), "export", "v2", "-", "--format", "dir"],
                       capture_output=True, text=True)
    assert r.returncode == 9 and r.stdout == "", r


def _tree(store, name) -> dict:
    """path -> file content (symlinks: their target) of every non-directory."""
    out = {}
    with store.fs(name) as fs:
        for root, dirs, files in fs.walk("/"):
            for f in files:
                p = root.rstrip("/") + "/" + f
                if stat.S_ISLNK(fs.lstat(p).st_mode):
                    out[p] = fs.readlink(p).encode()
                else:
                    with fs.open(p, "rb") as fh:
                        out[p] = fh.read()
    return out


# -- rename, prune, ls, commit ------------------------------------------------------------
def test_rename(bs, src):
    bs("import", src, "base")
    bs("clone", "base", "w")
    assert bs("rename", "base", "base-v1").stdout == "base-v1\n"
    assert json.loads(bs("info", "w", "--json").stdout)["parent"] == "base-v1"
    bs("rename", "w", "base-v1", code=4)
    bs("rename", "nope", "x", code=3)


def _docker_archive(path, layers: list[bytes], tag="img:latest"):
    """A `docker save` tarball of the given layer tars."""
    diff_ids = ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                      "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
    rels = [f"{d[7:]}/layer.tar" for d in diff_ids]
    man = json.dumps([{"Config": cfg_name, "RepoTags": [tag], "Layers": rels}]).encode()
    with tarfile.open(path, "w") as t:
        for name, data in [("manifest.json", man), (cfg_name, cfg)] + list(zip(rels, layers)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return str(path)


@pytest.fixture
def images(tmp_path):
    base = oci_ref.layer([("etc", "d"), ("etc/os-release", "f", "debian\n")])
    app1 = oci_ref.layer([("srv", "d"), ("srv/app", "f", "one\n")])
    app2 = oci_ref.layer([("srv", "d"), ("srv/app", "f", "two\n")])
    return (_docker_archive(tmp_path / "img1.tar", [base, app1], "img1:latest"),
            _docker_archive(tmp_path / "img2.tar", [base, app2], "img2:latest"))


def _names(bs, *args):
    return sorted(d["name"] for d in json.loads(bs("ls", "--json", *args).stdout))


def test_ls_hides_image_layers_and_fits_100_columns(bs, src, images, tmp_path):
    pytest.importorskip("blockstore.oci")
    bs("import", images[0], "img1")
    bs("import", src, "a-directory-snapshot-with-a-rather-long-name-for-its-purpose")
    bs("label", "img1", "org.opencontainers.image.description=" + "x" * 120, "team=core")
    bs("clone", "img1", "container-1")
    assert _names(bs) == ["a-directory-snapshot-with-a-rather-long-name-for-its-purpose",
                          "container-1", "img1"]
    every = _names(bs, "--all")
    layers = [n for n in every if n.startswith("sha256:")]
    assert len(layers) == 2 and len(every) == 5
    for args in ((), ("--all",)):
        out = bs("ls", *args).stdout.splitlines()
        assert len(out) == (4 if not args else 6)
        for line in out:
            assert len(line) <= 100, (len(line), line)
    text = bs("ls").stdout
    assert "sha256:" not in text and "img1" in text and "container-1" in text
    # an image of 40 layers: --all draws a deep chain, still in 100 columns
    deep = [oci_ref.layer([(f"f{i}", "f", str(i))]) for i in range(40)]
    bs("import", _docker_archive(tmp_path / "deep.tar", deep, "deep:1"), "deep")
    out = bs("ls", "--all").stdout.splitlines()
    assert len(out) == 1 + 5 + 41 and max(map(len, out)) <= 100, max(out, key=len)
    assert any(l.startswith("…") and " deep " in l for l in out)


def test_prune_removes_layers_nothing_keeps(bs, src, images):
    pytest.importorskip("blockstore.oci")
    bs("import", images[0], "img1")
    bs("import", images[1], "img2")
    bs("import", src, "plain")                    # a named snapshot: its name keeps it
    layers = [n for n in _names(bs, "--all") if n.startswith("sha256:")]
    assert len(layers) == 3                       # base shared, two app layers
    assert json.loads(bs("prune", "--json").stdout)["removed"] == []
    bs("rm", "img1")
    plan = json.loads(bs("prune", "--dry-run", "--json").stdout)
    assert plan["dry_run"] is True and len(plan["removed"]) == 1      # img1's app layer
    assert _names(bs, "--all") == sorted(layers + ["img2", "plain"])  # nothing removed
    out = bs("prune").stdout.splitlines()
    assert out == plan["removed"]
    bs("rm", "img2")
    # a user label keeps a layer (and so its parents)
    left = [n for n in _names(bs, "--all") if n.startswith("sha256:")]
    top = [n for n in left if json.loads(bs("info", n, "--json").stdout)["dependents"] == []]
    assert len(top) == 1
    bs("label", top[0], "keep=yes")
    assert json.loads(bs("prune", "--json").stdout)["removed"] == []
    bs("label", top[0], "keep=")
    removed = json.loads(bs("prune", "--json").stdout)["removed"]
    assert removed[0] == top[0] and len(removed) == 2     # the top first, then its parent
    assert _names(bs, "--all") == ["plain"]


def test_commit_prints_one_line(bs, src, tmp_path):
    bs("import", src, "base")
    bs("clone", "base", "w")
    for i in range(5):
        (tmp_path / f"f{i}").write_text(str(i))
        bs("cp", tmp_path / f"f{i}", f"w:/f{i}")
    bs("cp", tmp_path / "f0", "w:/etc/app.conf")
    out = bs("commit", "w", "v2").stdout
    assert out.count("\n") == 1, out
    assert out.startswith("v2 ") and "base" in out
    # as `diff` counts them: the root directory changed too
    assert out == "v2 (parent base): 5 added, 2 changed, 0 deleted\n"
    doc = json.loads(bs("commit", "w", "v3", "--json").stdout)
    cli_shapes.check(doc, "commit")
    assert doc["parent"] == "base"              # a clone's commits all have its parent
    assert doc["summary"] == {"added": 5, "changed": 2, "deleted": 0}


# -- the API --------------------------------------------------------------------------------
def test_store_and_treeview_have_class_docstrings():
    for cls in (Store, TreeView):
        doc = cls.__dict__.get("__doc__")
        assert doc and len(doc.split()) > 20, cls


def test_diff_kinds_are_the_same_letters_in_api_and_cli(bs, src, tmp_path):
    bs("import", src, "base")
    bs("clone", "base", "w")
    (tmp_path / "n").write_text("n")
    bs("cp", tmp_path / "n", "w:/n")
    bs("cp", tmp_path / "n", "w:/README")
    bs("commit", "w", "v2")
    cli = json.loads(bs("diff", "base", "v2", "--json").stdout)
    with Store.open(bs.store) as s:
        api = s.diff("base", "v2")
    assert [(c["kind"], c["path"]) for c in cli] == [(c.kind, c.path) for c in api]
    assert {c.kind for c in api} == {"A", "C"}


def test_layer_label_is_the_one_oci_sets():
    oci_chain = pytest.importorskip("blockstore.oci.chain")
    from blockstore.api import prune
    assert prune.LAYER_LABEL == oci_chain.LABEL_CHAIN
    assert all(l.startswith(prune.IMPORT_LABEL_PREFIX) for l in
               (oci_chain.LABEL_CHAIN, oci_chain.LABEL_DIFF, oci_chain.LABEL_DIGEST))
