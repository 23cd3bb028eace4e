"""Blocks only through the txn layer (docs/ARCHITECTURE.md §2.3).

Every pool operation that needs the LMDB transaction is reached through the
transaction's ``blocks`` (pool/txnblocks.py: the pool bound to that
transaction); no module above txn hands a raw transaction to the pool or
to one of its tables.  The check is syntactic: a call whose receiver names
a pool (``pool.dec(t, ...)``, ``env.pool.absent.count(w.t)``) with a raw
transaction among its arguments (``t`` or ``<anything>.t``), in any product
module outside ``blockstore/pool/`` and ``blockstore/txn.py``.
"""
from __future__ import annotations

import ast
import os

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "blockstore")


def _names_pool(expr: ast.expr) -> bool:
    while isinstance(expr, (ast.Attribute, ast.Call, ast.Subscript)):
        if isinstance(expr, ast.Attribute) and expr.attr == "pool":
            return True
        expr = expr.func if isinstance(expr, ast.Call) else expr.value
    return isinstance(expr, ast.Name) and expr.id == "pool"


def _raw_txn(arg: ast.expr) -> bool:
    return (isinstance(arg, ast.Name) and arg.id == "t") or \
        (isinstance(arg, ast.Attribute) and arg.attr == "t")


def _offenders(root: str) -> list[str]:
    out = []
    for dirpath, _, files in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == "pool" or rel_dir.startswith("pool" + os.sep):
            continue
        for f in files:
            if not f.endswith(".py") or (rel_dir == "." and f == "txn.py"):
                continue
            path = os.path.join(dirpath, f)
            with open(path, encoding="utf-8") as fh:
                tree = ast.parse(fh.read(), path)
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and _names_pool(node.func.value)
                        and any(_raw_txn(a) for a in list(node.args) + [k.value for k in node.keywords])):
                    out.append(f"{os.path.relpath(path, root)}:{node.lineno}: {ast.unparse(node)}")
    return out


def test_no_module_above_txn_hands_the_pool_a_raw_transaction():
    assert _offenders(ROOT) == []


def test_the_check_sees_a_raw_transaction_handed_to_the_pool(tmp_path):
    (tmp_path / "fs").mkdir()
    (tmp_path / "fs" / "bad.py").write_text(
        "def f(w, ns, s, n):\n"
        "    w.env.pool.dec(w.t, s, n)\n"
        "    ns.txn.pool.absent.count(ns.t)\n"
        "    w.blocks.dec(s, n)\n")
    (tmp_path / "pool").mkdir()
    (tmp_path / "pool" / "ok.py").write_text("def g(pool, t):\n    pool.dec(t, 0, 1)\n")
    assert [o.split(":")[1] for o in _offenders(str(tmp_path))] == ["2", "3"]
