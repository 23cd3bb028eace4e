"""The CLI starts light: ``blockstore --version`` and ``--help`` load no
storage layer (they come with the first command that opens the store), and
the default store path is platformdirs' without importing it."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import platformdirs

# Runs the CLI in a fresh interpreter, then prints which heavy modules it loaded.
_CODE = """
import json, sys
sys.argv = ["blockstore"] + sys.argv[1:]
from blockstore.cli import main
try:
    main()
except SystemExit:
    pass
heavy = ("blockstore.txn", "blockstore.pool", "blockstore.btree", "blockstore.catalog",
         "blockstore.api.store", "lmdb", "platformdirs")
print(json.dumps([m for m in heavy if m in sys.modules]), file=sys.stderr)
"""


def _loaded(*args) -> list[str]:
    p = subprocess.run([sys.executable, "-c", _CODE, *args], capture_output=True, text=True,
                       timeout=120, env={k: v for k, v in os.environ.items()
                                         if k != "BLOCKSTORE_STORE"})
    return json.loads(p.stderr.strip().splitlines()[-1])


def test_version_and_help_load_no_storage_layer():
    assert _loaded("--version") == []
    assert _loaded("--help") == []


def test_ls_loads_them(tmp_path):
    assert "blockstore.api.store" in _loaded("--store", str(tmp_path / "s"), "ls")


def test_the_default_store_path_is_platformdirs(monkeypatch):
    from blockstore.api.location import default_store_path
    monkeypatch.delenv("BLOCKSTORE_STORE", raising=False)
    for xdg in (None, "/srv/data", "  "):
        if xdg is None:
            monkeypatch.delenv("XDG_DATA_HOME", raising=False)
        else:
            monkeypatch.setenv("XDG_DATA_HOME", xdg)
        assert default_store_path() == os.path.join(platformdirs.user_data_dir("blockstore"),
                                                    "store")


def test_the_command_table_names_every_command_of_every_module():
    import importlib
    import pkgutil

    import blockstore.cli as cli
    found = {}
    for info in pkgutil.iter_modules(cli.__path__):
        module = importlib.import_module(f"blockstore.cli.{info.name}")
        for cmd in getattr(module, "COMMANDS", []):
            found[cmd.name] = info.name
    assert found == cli.COMMAND_MODULES


def test_ls_loads_only_the_tree_commands(tmp_path):
    code = _CODE.replace('heavy = (', 'heavy = ("blockstore.cli.fusecmd", "blockstore.cli.remotecmd", '
                                      '"blockstore.cli.tools", "blockstore.oci", "blockstore.fuse", ')
    p = subprocess.run([sys.executable, "-c", code, "--store", str(tmp_path / "s"), "ls"],
                       capture_output=True, text=True, timeout=120)
    loaded = json.loads(p.stderr.strip().splitlines()[-1])
    assert not [m for m in loaded if m.startswith(("blockstore.cli.", "blockstore.oci",
                                                  "blockstore.fuse"))], loaded
