"""The layer order of docs/ARCHITECTURE.md §2, enforced with import-linter.

The contracts are in pyproject.toml ([tool.importlinter]): a ``layers``
contract (native -> pool -> txn -> btree -> fs -> catalog -> api ->
interfaces: no module imports a layer above its own), interfaces import
only the api (never catalog, btree, fs, txn, pool, ...), and the product
does not import the test kit.  ``test_contracts_hold`` runs ``lint-imports``
on the tree as it is; ``test_a_wrong_way_import_breaks_them`` plants
wrong-way imports in a copy of the package and checks that the same
command fails on each, naming it (so a contract that checks nothing, e.g.
a misspelt layer, is caught).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINT = os.path.join(os.path.dirname(sys.executable), "lint-imports")


def _lint(cwd: str, pythonpath: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=pythonpath)
    return subprocess.run([LINT, "--no-cache", os.path.join(cwd, "pyproject.toml")], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


def test_contracts_hold():
    assert os.path.exists(LINT), "lint-imports is missing: `make setup` installs import-linter"
    r = _lint(ROOT, ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "BROKEN" not in r.stdout and " KEPT" in r.stdout, r.stdout


@pytest.mark.parametrize("module, plant, contract", [
    ("pool/allocator.py", "from ..cli import main", "layers"),
    ("txn.py", "from .api import Store", "layers"),
    ("oci/layer_in.py", "from ..fs import items", "interfaces import only the api"),
    ("cli/trees.py", "from .. import catalog", "interfaces import only the api"),
    ("api/store.py", "from ..testing import crashfs", "the product does not import the test kit"),
])
def test_a_wrong_way_import_breaks_them(tmp_path, module, plant, contract):
    copy = tmp_path / "src"
    shutil.copytree(os.path.join(ROOT, "blockstore"), copy / "blockstore",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"))
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), copy / "pyproject.toml")
    ok = _lint(str(copy), str(copy))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    path = copy / "blockstore" / module
    path.write_text(path.read_text() + f"\n{plant}  # planted\n")
    r = _lint(str(copy), str(copy))
    assert r.returncode != 0, r.stdout
    broken = r.stdout[r.stdout.index("Broken contracts"):]
    assert contract in broken, r.stdout
    assert "blockstore." + module[:-3].replace("/", ".") in broken, r.stdout
