"""One owner per concept (issue 17), checked on the source:

* the fs item format (``blockstore/fs/items.py``: keys, inode records,
  extents) is imported only inside ``blockstore/fs/``; everything else goes
  through fs functions (``fs.check``, ``fs.usage``, ``fs.diff``, FileTree);
* only txn, catalog, fs and api open write transactions (``.transact(``,
  ``env.write(``): the interfaces go through the Store; inside api, only
  the modules that own a kind of change (``API_WRITERS``) do;
* no module reaches another's private names (``x._name`` where ``_name``
  is not defined in the module itself, or ``from m import _name``).
"""
from __future__ import annotations

import ast
import os

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "blockstore")

# Modules exempt while a change moves them (none now; the bulk import writer
# moved to fs/build.py).
FS_ITEMS_PENDING_MOVE: set[str] = set()
PRIVATE_PENDING: tuple[str, ...] = ()
# Private names of the standard library that a subclass or a wrapper relies on:
# tarfile's sparse-member state and its stream class (oci/tarread.py).
STDLIB_PRIVATE = {"_sparse_structs", "_block", "_Stream", "_exit", "_replace", "_asdict",
                  "_fields", "_make", "_getframe"}


def _modules(root: str):
    for dirpath, _, files in os.walk(root):
        for f in sorted(files):
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                with open(path, encoding="utf-8") as fh:
                    yield os.path.relpath(path, root), ast.parse(fh.read(), path)


def _imports_fs_items(rel: str, tree: ast.AST) -> list[int]:
    """Lines of ``rel`` that import blockstore.fs.items (or names from it)."""
    pkg = rel.replace(os.sep, "/").split("/")[:-1]          # the module's package, under blockstore
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[:len(pkg) - (node.level - 1)] if node.level > 1 else pkg
                mod = "/".join(base + (node.module.split(".") if node.module else []))
            else:
                mod = (node.module or "").replace("blockstore.", "", 1).replace(".", "/")
            if mod == "fs/items" or (mod == "fs" and any(a.name == "items" for a in node.names)):
                hits.append(node.lineno)
        elif isinstance(node, ast.Import):
            if any(a.name == "blockstore.fs.items" for a in node.names):
                hits.append(node.lineno)
    return hits


def fs_items_outside_fs(root: str = ROOT) -> list[str]:
    out = []
    for rel, tree in _modules(root):
        if rel.startswith("fs" + os.sep) or rel in FS_ITEMS_PENDING_MOVE:
            continue
        out += [f"{rel}:{line}" for line in _imports_fs_items(rel, tree)]
    return out


def test_the_fs_item_format_is_used_only_inside_fs():
    assert fs_items_outside_fs() == []


def test_the_fs_items_check_sees_each_form_of_import(tmp_path):
    (tmp_path / "api").mkdir()
    (tmp_path / "fs").mkdir()
    (tmp_path / "api" / "a.py").write_text("from ..fs import items as I\n")
    (tmp_path / "api" / "b.py").write_text("from ..fs.items import Inode\n")
    (tmp_path / "c.py").write_text("import blockstore.fs.items\nfrom blockstore.fs import items\n")
    (tmp_path / "api" / "ok.py").write_text("from ..fs.tree import ROOT_INO\nfrom ..fs import usage\n")
    (tmp_path / "fs" / "ok.py").write_text("from . import items\n")
    assert sorted(fs_items_outside_fs(str(tmp_path))) == ["api/a.py:1", "api/b.py:1", "c.py:1", "c.py:2"]


WRITERS = ("txn.py", "catalog/", "fs/", "api/")


def write_transactions_outside_owners(root: str = ROOT) -> list[str]:
    out = []
    for rel, tree in _modules(root):
        if rel.replace(os.sep, "/").startswith(WRITERS):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                f = node.func
                if f.attr == "transact" or (f.attr == "write" and isinstance(f.value, (ast.Attribute, ast.Name))
                                            and (getattr(f.value, "attr", None) or getattr(f.value, "id", None)) == "env"):
                    out.append(f"{rel}:{node.lineno}: {ast.unparse(node.func)}")
    return out


def test_only_txn_catalog_fs_and_api_open_write_transactions():
    assert write_transactions_outside_owners() == []


def test_the_write_transaction_check_sees_both_forms(tmp_path):
    (tmp_path / "cli").mkdir()
    (tmp_path / "api").mkdir()
    (tmp_path / "cli" / "bad.py").write_text("def f(store):\n    store.env.transact(len)\n"
                                            "    with store.env.write() as w:\n        pass\n")
    (tmp_path / "api" / "ok.py").write_text("def f(env):\n    env.transact(len)\n")
    assert [o.split(": ")[0] for o in write_transactions_outside_owners(str(tmp_path))] == \
        ["cli/bad.py:2", "cli/bad.py:3"]


def _defined_private(tree: ast.AST) -> set[str]:
    names = set()
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(n.name)
        elif isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store):
            names.add(n.attr)
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            names.add(n.id)
        elif isinstance(n, ast.arg):
            names.add(n.arg)
    return {x for x in names if x.startswith("_")}


def private_access_across_modules(root: str = ROOT) -> list[str]:
    out = []
    for rel, tree in _modules(root):
        if rel.replace(os.sep, "/").startswith(PRIVATE_PENDING) or rel.endswith("_pb2.py"):
            continue
        mine = _defined_private(tree)
        for n in ast.walk(tree):
            if isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__") \
                    and n.attr not in mine and n.attr not in STDLIB_PRIVATE:
                out.append(f"{rel}:{n.lineno}: {ast.unparse(n)}")
            elif isinstance(n, ast.ImportFrom):
                out += [f"{rel}:{n.lineno}: from {n.module} import {a.name}" for a in n.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    return out


def test_no_module_reaches_another_modules_private_names():
    assert private_access_across_modules() == []


def test_the_private_name_check_sees_attributes_and_imports(tmp_path):
    (tmp_path / "a.py").write_text("from .b import _helper\n\ndef f(x):\n    return x._secret\n")
    (tmp_path / "ok.py").write_text("class C:\n    def __init__(self):\n        self._mine = 1\n\n"
                                    "    def same(self, other):\n        return other._mine\n")
    assert sorted(o.split(": ", 1)[1] for o in private_access_across_modules(str(tmp_path))) == \
        ["from b import _helper", "x._secret"]


# api modules that open write transactions: the store (tree records, settings),
# staging (working clones, and ``staging.editing`` for the import writers),
# treeview (POSIX changes), transfer (directory import into a working clone in
# one batch), treestream (a pulled snapshot built in one transaction) and
# bulkimport (the transactions and checkpoints of fs/build.py's bulk build).
API_WRITERS = {"store.py", "staging.py", "treeview.py", "transfer.py", "treestream.py",
               "bulkimport.py"}


def api_modules_opening_write_transactions(root: str = ROOT) -> set[str]:
    out = set()
    for rel, tree in _modules(root):
        parts = rel.replace(os.sep, "/").split("/")
        if parts[0] != "api":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    (node.func.attr == "transact" or (node.func.attr == "write" and
                                                      ast.unparse(node.func.value).endswith("env"))):
                out.add(parts[-1])
    return out


def test_inside_api_only_the_owning_modules_open_write_transactions():
    assert api_modules_opening_write_transactions() <= API_WRITERS
