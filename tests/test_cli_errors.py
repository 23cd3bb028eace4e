"""CLI errors: one stderr line, one exit code per category (from the class's
exit_code), docs/ERRORS.md in sync with blockstore.errors.CATEGORIES.
Real triggers for every category a store can produce on demand; the
message/code mapping itself for the rest (NoSpace, host OSErrors)."""
from __future__ import annotations

import errno
import json
import os
import pathlib

import pytest
from click.testing import CliRunner

from blockstore import errors as E
from blockstore.cli import errors as CE
from blockstore.cli import main

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "ERRORS.md"


def run(store, *args):
    return CliRunner().invoke(main, ["--store", str(store), *map(str, args)])


def one_line(r):
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("blockstore: "), r.stderr
    assert "; " in lines[0]                       # problem; what to do
    return lines[0]


def test_errors_md_matches_code():
    assert DOC.read_text() == CE.errors_markdown(), \
        "docs/ERRORS.md is stale: python -m blockstore.cli.errors > docs/ERRORS.md"


def test_every_category_documented_with_its_own_code():
    text = DOC.read_text()
    codes = [c.exit_code for c in E.CATEGORIES]
    assert len(set(codes)) == len(codes) and 0 not in codes and CE.USAGE_EXIT not in codes
    for cls in E.CATEGORIES:
        assert f"| {cls.exit_code} | `{cls.__name__}` |" in text
        assert cls in CE.HINTS and cls in CE.MEANING


@pytest.mark.parametrize("cls", E.CATEGORIES)
def test_report_uses_class_exit_code(cls, capsys):
    assert CE.report(cls("something went wrong")) == cls.exit_code
    line = capsys.readouterr().err
    assert line == f"blockstore: something went wrong; {CE.HINTS[cls]}\n"


def test_precise_conditions_share_their_category_code():
    assert CE.exit_code(E.DirectoryNotEmpty()) == E.Busy.exit_code
    assert CE.exit_code(E.PermissionDenied()) == E.ReadOnly.exit_code == 6
    assert CE.exit_code(E.NoAttribute()) == E.NotFound.exit_code
    assert CE.exit_code(E.NotAStore()) == 10


def test_host_oserrors_map_by_errno():
    assert CE.exit_code(OSError(errno.ENOSPC, "No space left on device")) == E.NoSpace.exit_code
    assert CE.exit_code(FileNotFoundError(errno.ENOENT, "nope", "/x")) == 3
    assert CE.exit_code(PermissionError(errno.EACCES, "denied")) == 6
    assert CE.exit_code(RuntimeError("bug")) == 1
    assert CE.exit_code(ModuleNotFoundError("No module named 'zstandard'")) == 12
    msg = CE.message(FileNotFoundError(errno.ENOENT, "No such file", "/x"))
    assert msg.startswith("blockstore: No such file: /x; ")
    assert "\n" not in CE.message(E.InvalidInput("two\nlines"))


def test_real_triggers_per_category(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    s = tmp_path / "store"
    assert run(s, "import", src, "base").exit_code == 0
    assert run(s, "clone", "base", "w").exit_code == 0
    cases = [
        (("info", "nope"), E.NotFound),
        (("clone", "base", "w"), E.AlreadyExists),
        (("rm", "base"), E.Busy),
        (("cp", src / "f", "base:/g"), E.ReadOnly),
        (("clone", "base", "bad name"), E.InvalidInput),
        (("mount", "--help-not-an-option"), None),          # usage error
    ]
    for args, cls in cases:
        r = run(s, *args)
        if cls is None:
            assert r.exit_code == CE.USAGE_EXIT
            continue
        assert r.exit_code == cls.exit_code, (args, r.exit_code, r.stderr)
        one_line(r)
        assert r.stdout == ""
    f = tmp_path / "plainfile"
    f.write_text("x")
    r = run(f, "ls")
    assert r.exit_code == E.NotAStore.exit_code
    one_line(r)
    assert json.loads(run(s, "check", "--json").stdout)["ok"]


def test_format_too_new(tmp_path):
    import lmdb

    from blockstore import txn
    s = tmp_path / "store"
    assert run(s, "init").exit_code == 0
    env = lmdb.open(str(s / "meta"), max_dbs=64)
    meta = env.open_db(b"meta")
    with env.begin(write=True) as t:
        t.put(b"format", txn.u64(txn.FORMAT_VERSION + 1), db=meta)
    env.close()
    r = run(s, "ls")
    assert r.exit_code == E.FormatTooNew.exit_code
    assert "newer" in one_line(r)


def test_check_exits_8_on_damaged_data(tmp_path):
    """Scrub finds blocks that no longer match their SHA-256 (dedup store)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "data").write_bytes(os.urandom(64 * 1024))
    s = tmp_path / "store"
    assert run(s, "init", "--dedup").exit_code == 0
    assert run(s, "import", src, "base").exit_code == 0
    assert run(s, "check", "--scrub").exit_code == 0
    data = s / "pool.data"
    with open(data, "r+b") as fh:
        blob = bytearray(fh.read())
        for off in range(0, len(blob), 4096):
            if any(blob[off:off + 4096]):
                blob[off] ^= 0xFF
        fh.seek(0)
        fh.write(blob)
    r = run(s, "check", "--scrub", "--json")
    assert r.exit_code == E.Corruption.exit_code
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and any(p["kind"] == "block-checksum" for p in doc["problems"])
    one_line(r)
    r = run(s, "check", "--scrub")
    assert r.exit_code == 8 and "problem: block-checksum" in r.stdout
