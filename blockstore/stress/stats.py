"""Latency percentiles (nearest rank) per operation; all times in milliseconds."""
from __future__ import annotations

import math


def percentile(sorted_ms: list[float], p: float) -> float:
    if not sorted_ms:
        return 0.0
    k = max(0, min(len(sorted_ms) - 1, math.ceil(p / 100 * len(sorted_ms)) - 1))
    return sorted_ms[k]


def summarize(lat: dict[str, list[float]], elapsed: float) -> dict:
    out = {}
    for op, xs in sorted(lat.items()):
        xs = sorted(xs)
        out[op] = {"count": len(xs), "ops_per_s": round(len(xs) / elapsed, 1) if elapsed else 0,
                   "p50_ms": round(percentile(xs, 50), 3), "p90_ms": round(percentile(xs, 90), 3),
                   "p99_ms": round(percentile(xs, 99), 3), "max_ms": round(xs[-1], 3) if xs else 0}
    return out


def format_table(summary: dict) -> str:
    lines = [f"{'operation':<12} {'count':>8} {'ops/s':>8} {'p50 ms':>9} {'p90 ms':>9} "
             f"{'p99 ms':>9} {'max ms':>9}"]
    for op, s in summary.items():
        lines.append(f"{op:<12} {s['count']:>8} {s['ops_per_s']:>8} {s['p50_ms']:>9} "
                     f"{s['p90_ms']:>9} {s['p99_ms']:>9} {s['max_ms']:>9}")
    return "\n".join(lines)
