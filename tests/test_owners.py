"""One owner per concept (issue 17), checked on the source:

* the fs item format (``blockstore/fs/items.py``: keys, inode records,
  extents) is imported only inside ``blockstore/fs/``; everything else goes
  through fs functions (``fs.check``, ``fs.usage``, ``fs.diff``, FileTree);
"""
from __future__ import annotations

import ast
import os

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "blockstore")

# Modules another change moves into fs/ (api/bulkimport.py becomes fs/build.py).
FS_ITEMS_PENDING_MOVE = {"api/bulkimport.py"}


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
