"""JSON shapes of the CLI, read from docs/CLI.md (```json-shape NAME blocks),
and a checker: tests validate every --json output against the documentation."""
from __future__ import annotations

import json
import pathlib
import re

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "CLI.md"
_BLOCK = re.compile(r"```json-shape ([\w-]+)\n(.*?)```", re.S)
_PRIM = {"str": str, "int": int, "bool": bool, "dict": dict, "list": list}


def shapes() -> dict[str, dict]:
    return {m.group(1): json.loads(m.group(2)) for m in _BLOCK.finditer(DOC.read_text())}


def check(value, spec: str, where: str = "$") -> None:
    """Raise AssertionError unless value matches spec ('str|null', 'list[tree]', 'tree', ...)."""
    errors = []
    for alt in spec.split("|"):
        try:
            _one(value, alt.strip(), where)
            return
        except AssertionError as exc:
            errors.append(str(exc))
    raise AssertionError(" / ".join(errors))


def _one(value, t: str, where: str) -> None:
    if t == "null":
        assert value is None, f"{where}: {value!r} is not null"
    elif t in _PRIM:
        ok = isinstance(value, _PRIM[t]) and not (t == "int" and isinstance(value, bool))
        assert ok, f"{where}: {value!r} is not {t}"
    elif t.startswith("list[") and t.endswith("]"):
        assert isinstance(value, list), f"{where}: {value!r} is not a list"
        for i, v in enumerate(value):
            check(v, t[5:-1], f"{where}[{i}]")
    else:
        shape = shapes()[t]
        assert isinstance(value, dict), f"{where}: {value!r} is not an object ({t})"
        assert set(value) == set(shape), \
            f"{where}: keys {sorted(value)} != documented {t} keys {sorted(shape)}"
        for k, sub in shape.items():
            check(value[k], sub, f"{where}.{k}")
