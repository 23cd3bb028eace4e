"""Shared helpers of the benchmark tools (tools/bench*.py).

* timing: ``time.perf_counter_ns``, medians, warm-up handled by callers;
* ``Metric``: one reported figure with its unit and optional goal;
* ``Report``: the result of one bench run, rendered as a table (stdout) or
  as exactly one JSON object (stdout); progress goes to stderr via ``log``;
* ``scratch_dir``: a temporary directory on the same disk as the repository
  (or under ``--dir``), removed at the end;
* ``drop_caches``: cold reads, and no ext4 recently-deleted penalty.

Speed is never asserted here: goals are reported as pass/fail, not raised.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Iterator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GB = 1e9            # throughput figures are decimal GB/s
MiB = 1 << 20


def log(*parts: Any) -> None:
    """Progress line on stderr (stdout is reserved for the table or the JSON)."""
    print("[bench]", *parts, file=sys.stderr, flush=True)


def now_ns() -> int:
    return time.perf_counter_ns()


def timed(fn: Callable[[], Any]) -> tuple[int, Any]:
    """(elapsed ns, result) of one call."""
    t0 = time.perf_counter_ns()
    r = fn()
    return time.perf_counter_ns() - t0, r


def median(xs) -> float:
    return float(statistics.median(xs))


def ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


@contextlib.contextmanager
def stopwatch(acc: list) -> Iterator[None]:
    """Append the elapsed ns of the block to ``acc``."""
    t0 = time.perf_counter_ns()
    try:
        yield
    finally:
        acc.append(time.perf_counter_ns() - t0)


# ----------------------------------------------------------------- metrics
@dataclasses.dataclass
class Metric:
    key: str
    value: float
    unit: str = ""
    goal: float | None = None
    cmp: str = ""          # "<=" or ">=" (with goal)
    note: str = ""

    @property
    def passed(self) -> bool | None:
        if self.goal is None:
            return None
        return self.value <= self.goal if self.cmp == "<=" else self.value >= self.goal


@dataclasses.dataclass
class Report:
    bench: str
    metrics: list[Metric] = dataclasses.field(default_factory=list)
    extra: dict = dataclasses.field(default_factory=dict)     # non-metric JSON keys

    def add(self, key: str, value: float, unit: str = "", goal: float | None = None,
            cmp: str = "", note: str = "") -> Metric:
        m = Metric(key, float(value), unit, goal, cmp, note)
        self.metrics = [x for x in self.metrics if x.key != key] + [m]
        return m

    def to_json(self) -> dict:
        out: dict = {"bench": self.bench}
        out.update({m.key: _round(m.value) for m in self.metrics})
        out["goals"] = {m.key: {"goal": f"{m.cmp} {m.goal:g}", "pass": m.passed}
                        for m in self.metrics if m.goal is not None}
        out.update(self.extra)
        return out

    def table(self) -> str:
        rows = [("name", "value", "unit", "goal", "result")]
        for m in self.metrics:
            goal = "" if m.goal is None else f"{m.cmp} {m.goal:g}"
            res = "" if m.passed is None else ("pass" if m.passed else "FAIL")
            rows.append((m.key, _fmt(m.value), m.unit, goal, res))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = []
        for j, r in enumerate(rows):
            lines.append("  ".join(c.ljust(w) if i != 1 else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(r, widths))).rstrip())
            if j == 0:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)


def _round(v: float) -> float:
    if v == 0 or v != v or v in (float("inf"), float("-inf")):
        return v
    return float(f"{v:.4g}")


def _fmt(v) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:.0f}"
    if abs(v) < 0.001:
        return f"{v:.3e}"
    return f"{v:.4g}"


def format_rows(rows: list[dict], cols: list[str]) -> str:
    """A small text table of dict rows (used for sub-tables such as block sizes)."""
    cells = [cols] + [[_fmt(r[c]) for c in cols]
                      for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells)


def cpu_steal() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs from /proc/stat: the difference of two
    readings gives the share of CPU time the hypervisor gave to other guests."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    return (vals[7] if len(vals) > 7 else 0), sum(vals)


def environment() -> dict:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def emit(report: Report, as_json: bool, extra_text: str = "") -> None:
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), sort_keys=False) + "\n")
    else:
        sys.stdout.write(report.table() + "\n")
        if extra_text:
            sys.stdout.write("\n" + extra_text + "\n")
    sys.stdout.flush()


# ----------------------------------------------------------------- scratch space
def drop_caches() -> bool:
    """sync, then drop the page cache, dentries and inodes (root only; False
    otherwise, nothing done).  Besides making reads cold, it ends a trap for
    baselines that create files: ext4 allocates no inode deleted in the last
    60 s (360 s while its inode table block is dirty) and checks each such
    inode it passes in the buffer cache (``recently_deleted``), so for minutes
    after an ``rm -rf`` creating files there costs several times more; with
    the buffer cache dropped the check finds nothing.  A bench that times
    copies into ext4 therefore removes its copies only after its last round
    (or drops the caches before the next one)."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
        return True
    except OSError:
        return False


def _device(path: str) -> int:
    return os.stat(path).st_dev


@contextlib.contextmanager
def scratch_dir(parent: str | None = None, prefix: str = "blockstore-bench-") -> Iterator[str]:
    """A fresh directory on the repository's disk (or under ``parent``), removed afterwards."""
    if parent is None:
        tmp = tempfile.gettempdir()
        parent = tmp if _device(tmp) == _device(REPO) else REPO
    os.makedirs(parent, exist_ok=True)
    path = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def disk_usage(path: str) -> dict:
    st = shutil.disk_usage(path)
    return {"path": path, "free_gb": round(st.free / GB, 1),
            "same_device_as_repo": _device(path) == _device(REPO)}
