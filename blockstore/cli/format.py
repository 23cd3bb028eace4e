"""Output formatting for the CLI: sizes, times, tables, JSON, lineage trees.

Rules (docs/CLI.md): stdout carries only results; sizes are KiB/MiB/GiB
(binary, one decimal) unless ``--bytes``; times are local ISO 8601 with
seconds; ``--json`` prints exactly one JSON document.  Pure functions, no
store access.
"""
from __future__ import annotations

import datetime as _dt
import json
import stat

import click

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def size(n: int, exact: bool = False) -> str:
    """``1536 -> '1.5 KiB'``; with exact, the plain byte count."""
    if exact:
        return str(n)
    v, unit = float(n), 0
    while v >= 1024 and unit < len(_UNITS) - 1:
        v /= 1024
        unit += 1
    if unit == 0:
        return f"{n} B"
    return f"{v:.1f} {_UNITS[unit]}"


def parse_size(text: str) -> int:
    """``'4096'``, ``'4K'``, ``'64KiB'``, ``'1M'`` -> bytes (powers of 1024)."""
    t = text.strip().upper().replace("IB", "").replace("B", "")
    mult = 1
    if t and t[-1] in "KMGT":
        mult = 1024 ** ("KMGT".index(t[-1]) + 1)
        t = t[:-1]
    if not t.isdigit():
        raise click.BadParameter(f"not a size: {text!r} (try 4096, 4K or 64KiB)")
    return int(t) * mult


def time_ns(ns: int | float | None) -> str | None:
    """Nanoseconds since the epoch -> local ISO 8601, e.g. 2026-11-30T14:03:07+01:00."""
    if ns is None:
        return None
    return _dt.datetime.fromtimestamp(ns / 1e9).astimezone().isoformat(timespec="seconds")


def time_short(ns: int | float | None) -> str:
    """Local time to the second without the offset, for narrow tables:
    ``2026-11-30T14:03:07`` (``--json`` has the full form)."""
    if ns is None:
        return "-"
    return _dt.datetime.fromtimestamp(ns / 1e9).isoformat(timespec="seconds")


def short_layer(name: str) -> str:
    """A chain-ID name as docker shows image IDs: ``sha256:`` and 12 hex digits
    (keeps any tree-drawing prefix)."""
    head, sep, hexpart = name.rpartition("sha256:")
    return f"{head}sha256:{hexpart[:12]}" if sep else name


_DRAWING = " │├└─"


def cut(text: str, width: int) -> str:
    """text, or shortened to width with ``…``: a lineage cell (``│   └── name``)
    loses the left of its drawing first, so the name stays whole while it can;
    other text keeps its first width-1 characters."""
    if len(text) <= width:
        return text
    name = text.lstrip(_DRAWING)
    drawing = text[:len(text) - len(name)]
    if drawing and len(name) < width - 1:
        return "…" + drawing[len(drawing) - (width - 1 - len(name)):] + name
    return name[:max(width - 1, 0)] + "…" if len(name) > width else name


def fit(rows: list[list[str]], header: list[str], width: int, cuts) -> list:
    """Cut cells so that ``table(rows, header)`` lines fit ``width`` columns.
    ``cuts``: (column, narrowest) steps, tried in order until the lines fit;
    each narrows its column down to at most ``narrowest`` characters."""
    n = len(header)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(n)]
    for col, floor in cuts:
        over = sum(widths) + 2 * (n - 1) - width
        if over <= 0:
            break
        widths[col] = max(min(floor, widths[col]), widths[col] - over, len(header[col]))
    return [[cut(c, widths[i]) for i, c in enumerate(r)] for r in rows]


def mode_string(mode: int) -> str:
    """``ls -l`` style: ``drwxr-xr-x``."""
    return stat.filemode(mode)


def table(rows: list[list[str]], header: list[str] | None = None,
          right: set[int] = frozenset()) -> str:
    """Columns separated by two spaces; columns in ``right`` are right-aligned."""
    allrows = ([header] if header else []) + rows
    if not allrows:
        return ""
    widths = [max(len(r[i]) for r in allrows) for i in range(len(allrows[0]))]
    out = []
    for r in allrows:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths))]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def emit_json(doc) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))


def record(rec) -> dict:
    """A TreeRecord as the documented JSON object (see docs/CLI.md, "tree")."""
    return {"name": rec.name, "kind": rec.kind, "parent": rec.parent,
            "created": time_ns(rec.created), "labels": dict(rec.labels),
            "uuid": rec.uuid, "mounts": [mount(m) for m in rec.mounts or []]}


def mount(m: dict) -> dict:
    """A mount spec as the documented JSON object (tmpfs: source null)."""
    return {"type": m["type"], "source": m.get("source"), "target": m["target"],
            "readonly": bool(m.get("readonly"))}


LABEL_TEXT_MAX = 40


def labels_text(labels: dict) -> str:
    """KEY=VALUE,... with values over LABEL_TEXT_MAX characters cut (an image's
    config is kilobytes of JSON); `blockstore label NAME` and --json show them whole."""
    def cut(v: str) -> str:
        return v if len(v) <= LABEL_TEXT_MAX else v[:LABEL_TEXT_MAX - 3] + "..."
    return ",".join(f"{k}={cut(v)}" for k, v in sorted(labels.items()))


def lineage_rows(records: list) -> list[tuple[str, object]]:
    """Records in lineage order with a tree-drawing prefix: parents above
    children (siblings by creation time), roots are trees without a parent
    in the list.  Returns [(prefixed name, record)].  Cost: O(n log n)."""
    names = {r.name for r in records}
    children: dict[str | None, list] = {}
    for r in records:
        p = r.parent if r.parent in names else None
        children.setdefault(p, []).append(r)
    for lst in children.values():
        lst.sort(key=lambda r: (r.created, r.name))
    out: list[tuple[str, object]] = []

    seen: set[str] = set()

    def walk(rec) -> None:
        """rec and its descendants, parents first (an explicit stack: lineages
        of any length)."""
        stack = [(rec, "", True, True)]
        while stack:
            r, prefix, last, top = stack.pop()
            if r.name in seen:
                continue                   # parent cycles: each tree once
            seen.add(r.name)
            label = r.name if top else prefix + ("└── " if last else "├── ") + r.name
            out.append((label, r))
            kids = children.get(r.name, [])
            sub = "" if top else prefix + ("    " if last else "│   ")
            for i in range(len(kids) - 1, -1, -1):
                stack.append((kids[i], sub, i == len(kids) - 1, False))

    for r in children.get(None, []):
        walk(r)
    for r in sorted(records, key=lambda r: r.name):   # parent cycles: never lose a tree
        if r.name not in seen:
            walk(r)
    return out
