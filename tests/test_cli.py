"""The CLI in-process (click's CliRunner): every command, its output, its
--json shape (from docs/CLI.md) and its exit codes.  Every test that
changes the store ends with `blockstore check` ok."""
from __future__ import annotations

import json
import os
import re

import pytest
from click.testing import CliRunner

from blockstore import Store
from blockstore.cli import main

import cli_shapes


def js(result, shape: str):
    doc = json.loads(result.stdout)
    cli_shapes.check(doc, shape)
    return doc


@pytest.fixture
def src(tmp_path):
    d = tmp_path / "src"
    (d / "etc").mkdir(parents=True)
    (d / "etc" / "app.conf").write_text("v=1\n")
    (d / "README").write_text("hello\n")
    (d / "big").write_bytes(os.urandom(3 * 4096 + 17))
    os.symlink("etc/app.conf", d / "link")
    return d


def test_shapes_are_documented():
    s = cli_shapes.shapes()
    for name in ("tree", "commit", "info", "usage", "change", "entry", "du", "df", "check",
                 "problem", "gc", "init", "volume", "volume-inspect", "mount"):
        assert name in s


def test_quick_start_sequence(bs, src, tmp_path):
    """The six commands of docs/CLI.md's quick start, with their outputs."""
    assert bs("import", src, "app-v1").stdout == "app-v1\n"
    assert bs("clone", "app-v1", "work").stdout == "work\n"
    conf = tmp_path / "app.conf"
    conf.write_text("v=2\n")
    assert bs("cp", conf, "work:/etc/app.conf").stdout == ""
    out = bs("commit", "work", "app-v2").stdout.splitlines()
    assert out == ["app-v2 (parent app-v1): 0 added, 1 changed, 0 deleted"]
    bs("export", "app-v2", tmp_path / "out")      # directory export always works
    assert (tmp_path / "out" / "etc" / "app.conf").read_text() == "v=2\n"
    du = bs("du").stdout.splitlines()
    assert du[0].split() == ["NAME", "KIND", "LOGICAL", "REFERENCED", "EXCLUSIVE", "SHARED",
                             "FILES", "LABELS"]
    assert [l.split()[0] for l in du[1:]] == ["app-v1", "app-v2", "work"]


def test_init(bs):
    d = js(bs("init", "--block-size", "8K", "--dedup", "--json"), "init")
    assert d["block_size"] == 8192 and d["dedup"] is True and d["checksum"] == "sha256"
    bs("init", code=4)                              # already a store
    assert "already exists" in bs("init", code=4).stderr
    assert "dedup on, checksum sha256" in CliRunner().invoke(main, ["--store", bs.store + "2", "init",
                                                                    "--dedup"]).stdout
    d = json.loads(CliRunner().invoke(main, ["--store", bs.store + "3", "--json", "init"]).stdout)
    assert d["dedup"] is False and d["checksum"] == "xxh3-128"


def test_init_checksum_choice(bs):
    d = js(bs("init", "--checksum", "sha256", "--json"), "init")
    assert d["dedup"] is False and d["checksum"] == "sha256"
    with Store.open(bs.store) as s:                 # fixed at creation
        assert s.env.checksum == "sha256"
    r = CliRunner().invoke(main, ["--store", bs.store + "2", "init", "--dedup",
                                  "--checksum", "xxh3-128"])
    assert r.exit_code == 9 and "dedup needs the sha256 checksum" in r.output   # InvalidInput
    assert not os.path.exists(bs.store + "2")        # refused before any file was made


def test_init_bad_block_size_is_usage_error(bs):
    r = bs("init", "--block-size", "lots", code=2)
    assert "not a size" in r.stderr


def test_import_clone_commit_json(bs, src):
    t = js(bs("import", src, "base", "--label", "os=test", "--json"), "tree")
    assert t["kind"] == "snapshot" and t["labels"] == {"os": "test"} and t["parent"] is None
    c = js(bs("clone", "base", "w", "--tmpfs", "/tmp", "--json"), "tree")
    assert c["kind"] == "clone" and c["parent"] == "base"
    assert c["mounts"] == [{"type": "tmpfs", "source": None, "target": "/tmp", "readonly": False}]
    bs("cp", src / "README", "w:/etc/")
    m = js(bs("commit", "w", "v2", "--json"), "commit")
    assert m["parent"] == "base"
    assert m["summary"] == {"added": 2, "changed": 2, "deleted": 0}
    d = js(bs("diff", "base", "v2", "--json"), "list[change]")
    # the clone made its tmpfs mount point /tmp: that is a change too
    assert [(c["kind"], c["path"]) for c in d] == [("C", "/"), ("C", "/etc"),
                                                    ("A", "/etc/README"), ("A", "/tmp")]
    assert bs("diff", "base", "v2").stdout == "C /\nC /etc\nA /etc/README\nA /tmp\n"
    assert bs("diff", "v2", "base").stdout == "C /\nC /etc\nD /etc/README\nD /tmp\n"


def test_import_on_parent_and_layer_needs_oci(bs, src, tmp_path):
    bs("import", src, "base")
    (src / "README").unlink()
    (src / "new").write_text("n")
    rec = js(bs("import", src, "next", "--parent", "base", "--json"), "tree")
    assert rec["parent"] == "base"
    lines = bs("diff", "base", "next").stdout.splitlines()
    assert "D /README" in lines and "A /new" in lines
    bs("import", tmp_path / "missing", "x", code=3)
    bs("import", src, "base", code=4)
    bs("import", src, "bad//name", code=9)


def test_ls_lineage_view_and_filters(bs, src):
    bs("import", src, "base")
    bs("clone", "base", "w1")
    bs("commit", "w1", "s1")
    bs("clone", "s1", "w2")
    bs("volume", "create", "data")
    bs("label", "s1", "release=1")
    lines = bs("ls").stdout.splitlines()
    names = [re.match(r"^(.*?)\s+(snapshot|clone|volume)\s", l).group(1) for l in lines[1:]]
    assert names[0] == "base"
    assert any(n.endswith("── s1") for n in names) and any("── w2" in n for n in names)
    assert names.index("base") < [i for i, n in enumerate(names) if "s1" in n][0] \
        < [i for i, n in enumerate(names) if "w2" in n][0]
    assert "│" in bs("ls").stdout or "└──" in bs("ls").stdout
    all_ = js(bs("ls", "--json"), "list[tree]")
    assert sorted(t["name"] for t in all_) == ["base", "data", "s1", "w1", "w2"]
    snaps = js(bs("--json", "ls", "--kind", "snapshot"), "list[tree]")
    assert sorted(t["name"] for t in snaps) == ["base", "s1"]
    f = js(bs("ls", "--filter", "label=release=1", "--json"), "list[tree]")
    assert [t["name"] for t in f] == ["s1"]
    assert [t["name"] for t in js(bs("ls", "--filter", "release=1", "--json"), "list[tree]")] \
        == ["s1"]
    bs("ls", "--filter", "nonsense", code=2)
    bs("ls", "--kind", "bogus", code=2)


def test_info(bs, src):
    bs("import", src, "base")
    bs("clone", "base", "w")
    d = js(bs("info", "base", "--json"), "info")
    assert d["dependents"] == ["w"] and d["lineage"] == ["base"]
    assert d["usage"]["logical"] >= 3 * 4096 + 17
    w = js(bs("info", "w", "--json"), "info")
    assert w["lineage"] == ["w", "base"]
    text = bs("info", "w").stdout
    assert "lineage:" in text and "w <- base" in text
    exact = bs("info", "base", "--bytes").stdout
    assert f"logical:    {d['usage']['logical']}" in exact
    bs("info", "nope", code=3)


def test_rm(bs, src):
    bs("import", src, "base")
    bs("clone", "base", "w")
    r = bs("rm", "base", code=5)                    # has dependents
    assert r.stderr.startswith("blockstore: ") and len(r.stderr.splitlines()) == 1
    r = bs("rm", "nope", "w", code=3)               # every name tried, first failure's code
    assert r.stdout == "w\n"
    bs("clone", "base", "w2")
    bs("rm", "--force", "base")
    assert js(bs("info", "w2", "--json"), "info")["parent"] is None
    assert bs("cat", "w2:/README").stdout == "hello\n"
    bs("-q", "rm", "w2")


def test_label(bs, src):
    bs("import", src, "base")
    assert bs("label", "base", "a=1", "b=2").stdout == "a=1\nb=2\n"
    d = js(bs("label", "base", "a=", "--json"), "tree")
    assert d["labels"] == {"b": "2"}
    bs("label", "base", "noequals", code=2)
    bs("label", "nope", "a=1", code=3)


def test_cp_files_cat(bs, src, tmp_path):
    bs("import", src, "base")
    bs("clone", "base", "w")
    # host dir -> tree (into an existing dir), tree -> host, tree -> tree
    bs("cp", src / "etc", "w:/opt")
    bs("cp", "-a", src, "w:/copy")
    assert bs("cat", "w:/copy/big").stdout_bytes == (src / "big").read_bytes()
    assert bs("cat", "w:/opt/app.conf").stdout == "v=1\n"
    entries = js(bs("files", "w:/copy", "--json"), "list[entry]")
    by = {e["name"]: e for e in entries}
    assert by["link"]["type"] == "symlink" and by["link"]["target"] == "etc/app.conf"
    assert by["big"]["size"] == 3 * 4096 + 17 and by["etc"]["type"] == "dir"
    mtime = os.stat(src / "big").st_mtime_ns
    st = os.stat(src / "big")
    assert by["big"]["mode"] == f"{st.st_mode & 0o7777:04o}"
    out = tmp_path / "back"
    bs("cp", "-a", "w:/copy", out)
    assert (out / "big").read_bytes() == (src / "big").read_bytes()
    assert os.readlink(out / "link") == "etc/app.conf"
    assert os.stat(out / "big").st_mtime_ns == mtime        # -a kept times both ways
    bs("cp", "w:/copy/README", "w:/README2")
    assert bs("cat", "w:/README2").stdout == "hello\n"
    listing = bs("files", "w").stdout
    assert "README2" in listing and "copy" in listing
    one = js(bs("files", "w:/copy/link", "--json"), "list[entry]")
    assert [e["name"] for e in one] == ["link"]
    # errors by category
    bs("cp", src / "README", "base:/x", code=6)              # snapshot: read-only
    bs("cp", "w:/nope", tmp_path / "n", code=3)
    bs("cp", src / "README", tmp_path / "h", code=9)          # no tree side
    bs("cat", "w:/etc", code=9)                              # a directory
    bs("cat", "w:/nope", code=3)
    bs("cat", "justaname", code=9)
    bs("cp", src / "etc", "w:/README2", code=9)               # dir onto a file


def test_du_shows_labels_like_ls(bs, src):
    """containerd's snapshots are store trees named containerd.<hash>.<r>:
    du shows their keys (labels) as ls does, in the table and in --json."""
    bs("import", src, "base")
    name = "containerd." + "0123abcd" * 4 + ".5eed5eed"      # as records.tree_name makes them
    bs("clone", "base", name)
    bs("label", name, "blockstore.containerd.namespace=default",
       "blockstore.containerd.key=default/7/c1", "blockstore.containerd.kind=active",
       "blockstore.containerd.parent=default/3/sha256:" + "ab" * 32)
    out = bs("du").stdout.splitlines()
    assert out[0].split()[-1] == "LABELS", out[0]
    row = [line for line in out if line.startswith("containerd.0123")]
    assert len(row) == 1 and "blockstore.containerd.key=default/7/c1" in row[0], out
    by = {r["name"]: r for r in js(bs("du", "--json"), "list[du]")}
    assert by[name]["labels"]["blockstore.containerd.key"] == "default/7/c1"
    assert all(len(line) <= 140 for line in out), out


def test_du_df_gc(bs, src):
    bs("import", src, "base")
    bs("clone", "base", "w")
    bs("cp", src / "big", "w:/big2")
    rows = js(bs("du", "--json"), "list[du]")
    by = {r["name"]: r for r in rows}
    assert by["w"]["exclusive"] >= 4 * 4096 and by["base"]["exclusive"] == 0
    assert by["w"]["shared"] == by["w"]["referenced"] - by["w"]["exclusive"]
    one = js(bs("du", "w", "--json"), "list[du]")
    assert [r["name"] for r in one] == ["w"]
    assert "KiB" in bs("du", "w").stdout
    assert str(by["w"]["exclusive"]) in bs("du", "w", "--bytes").stdout
    df = js(bs("df", "--json"), "df")
    assert df["trees"] == 2 and df["used_bytes"] >= by["w"]["exclusive"]
    assert df["checksum"] == "xxh3-128"
    assert "used:" in bs("df").stdout and "checksum:" in bs("df").stdout
    bs("rm", "w")
    g = js(bs("gc", "--json"), "gc")
    assert g["block_size"] == 4096
    assert js(bs("df", "--json"), "df")["used_bytes"] < df["used_bytes"]
    assert bs("gc").stdout.startswith("freed ")


def test_check_json_and_text(bs, src):
    bs("import", src, "base")
    d = js(bs("check", "--json"), "check")
    assert d["ok"] is True and d["problems"] == []
    assert bs("check", "--scrub").stdout.startswith("ok")
    assert js(bs("check", "--repair", "--json"), "check")["ok"]


def test_volumes(bs, src, tmp_path):
    v = js(bs("volume", "create", "data", "--label", "x=1", "--json"), "tree")
    assert v["kind"] == "volume"
    bs("import", src, "base")
    host = tmp_path / "host"
    host.mkdir()
    bs("clone", "base", "w", "--volume", "data:/data", "--bind", f"{host}:/host:ro")
    bs("cp", src / "README", "w:/data/r")                    # lands in the volume
    assert bs("cat", "data:/r").stdout == "hello\n"
    bs("cp", src / "README", "w:/host/x", code=6)            # read-only bind
    ls = js(bs("volume", "ls", "--json"), "list[volume]")
    assert [(x["name"], x["mounted_by"]) for x in ls] == [("data", ["w"])]
    assert "data" in bs("volume", "ls").stdout
    ins = js(bs("volume", "inspect", "data", "--json"), "volume-inspect")
    assert ins["usage"]["files"] == 1
    w = js(bs("info", "w", "--json"), "info")
    assert {"type": "volume", "source": "data", "target": "/data", "readonly": False} \
        in w["mounts"]
    bs("volume", "inspect", "base", code=9)
    bs("volume", "rm", "data", code=5)                       # mounted by w
    bs("volume", "rm", "base", code=9)                       # not a volume
    bs("volume", "rm", "--force", "data")
    bs("clone", "base", "w2", "--volume", "nope:/d", code=3)
    bs("clone", "base", "w3", "--bind", f"{tmp_path}/none:/d", code=3)
    bs("clone", "base", "w4", "--volume", "garbage", code=9)


def test_export_dir_and_tar_paths(bs, src, tmp_path):
    bs("import", src, "base")
    out = tmp_path / "out"
    assert bs("export", "base", out).stdout == f"{out}\n"
    assert (out / "big").read_bytes() == (src / "big").read_bytes()
    assert os.readlink(out / "link") == "etc/app.conf"
    bs("export", "base", out / "x", "--format", "dir", "--from", "base", code=9)
    bs("export", "nope", tmp_path / "n", code=3)


def _has(module: str, attr: str) -> bool:
    try:
        import importlib
        return hasattr(importlib.import_module(module), attr)
    except ImportError:
        return False


@pytest.mark.skipif(not _has("blockstore.oci", "export_tar"), reason="no OCI interop")
def test_export_layer_and_import_it_back(bs, src, tmp_path):
    """export --from writes a layer; importing it onto the parent gives the child again."""
    import tarfile
    bs("import", src, "base")
    bs("clone", "base", "w")
    bs("cp", src / "README", "w:/etc/README")
    bs("commit", "w", "v2")
    layer = tmp_path / "layer.tar"
    assert bs("export", "v2", layer, "--from", "base").stdout == f"{layer}\n"
    with tarfile.open(layer) as t:
        names = {m.name.lstrip("./").rstrip("/") for m in t.getmembers()}
    assert "etc/README" in names and "big" not in names
    bs("import", layer, "v2-again", "--parent", "base")
    # a tar carries no atime/ctime, so diff may list /etc and /etc/README as C
    # (inode attributes); what a tar does carry must be identical:
    same = lambda a, b, p: js(bs("files", f"{a}:{p}", "--json"), "list[entry]") == \
        js(bs("files", f"{b}:{p}", "--json"), "list[entry]")  # noqa: E731
    assert {l[2:] for l in bs("diff", "v2", "v2-again").stdout.splitlines()} <= \
        {"/etc", "/etc/README"}
    assert same("v2", "v2-again", "/") and same("v2", "v2-again", "/etc")
    assert bs("cat", "v2-again:/etc/README").stdout == "hello\n"
    full = tmp_path / "full.tar"
    bs("export", "v2", full)
    bs("import", full, "flat")                      # a full tar is a layer on nothing
    assert same("v2", "flat", "/etc")
    assert bs("cat", "flat:/big").stdout_bytes == (src / "big").read_bytes()


def test_mount_umount_unsupported_without_adapter(bs, src, tmp_path, monkeypatch):
    """No FUSE adapter installed -> exit 12 (Unsupported) with a one-line message."""
    import sys
    monkeypatch.setitem(sys.modules, "blockstore.fuse", None)    # import fails: not installed
    bs("import", src, "base")
    r = bs("mount", "base", tmp_path / "m", code=12)
    assert "not supported" in r.stderr and len(r.stderr.splitlines()) == 1
    bs("umount", tmp_path / "m", code=12)


def test_version_help_usage():
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and "blockstore" in r.stdout
    assert CliRunner().invoke(main, ["--help"]).exit_code == 0
    assert CliRunner().invoke(main, ["nosuchcommand"]).exit_code == 2
    assert CliRunner().invoke(main, ["clone", "onlyone"]).exit_code == 2


def test_not_a_store(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = CliRunner().invoke(main, ["--store", str(f), "ls"])
    assert r.exit_code == 10 and r.stderr.startswith("blockstore: ")
    d = tmp_path / "d"
    d.mkdir()
    (d / "junk").write_text("x")
    assert CliRunner().invoke(main, ["--store", str(d), "ls"]).exit_code == 10


def test_store_from_env(tmp_path, src):
    store = tmp_path / "envstore"
    r = CliRunner(env={"BLOCKSTORE_STORE": str(store)}).invoke(main, ["import", str(src), "b"])
    assert r.exit_code == 0 and os.path.isdir(store)
    r = CliRunner().invoke(main, ["--store", str(store), "check", "--json"])
    assert json.loads(r.stdout)["ok"]


def test_completion_lists_tree_names(bs, src):
    from click.shell_completion import ShellComplete
    bs("import", src, "base")
    bs("clone", "base", "web")
    comp = ShellComplete(main, {}, "blockstore", "_BLOCKSTORE_COMPLETE")
    names = [c.value for c in comp.get_completions(["--store", bs.store, "info"], "")]
    assert sorted(names) == ["base", "web"]
    assert [c.value for c in comp.get_completions(["--store", bs.store, "clone"], "b")] == ["base"]
    locs = [c.value for c in comp.get_completions(["--store", bs.store, "cat"], "w")]
    assert "web:/" in locs
    for shell in ("bash", "zsh", "fish"):
        r = CliRunner().invoke(main, ["completion", shell])
        assert r.exit_code == 0 and "_BLOCKSTORE_COMPLETE" in r.stdout


def test_bench_passthrough(bs):
    r = bs("bench", "--help")
    assert "engine" in r.stdout or r.stdout == ""       # tools/bench.py's own help
    bs("bench", "no-such-bench", code=2)                # bench.py's usage error code
