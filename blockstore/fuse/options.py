"""Mount options: the one place they are parsed and checked.

``parse(opts)`` takes the options of ``blockstore.fuse.mount`` as Python
values or as the strings of ``blockstore mount -o KEY=VALUE`` (a bare ``-o
KEY`` is True) and returns them typed, or raises ``InvalidInput`` naming the
first bad option (unknown name, wrong type, NaN/infinite or out of range).
Both the caller and the daemon call it, so a bad option never starts a
daemon and a daemon never runs with an unchecked one.
"""
from __future__ import annotations

import math

from ..errors import InvalidInput

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")

MAX_SECONDS = 86400.0 * 365        # timeouts and intervals: finite and at most a year
MAX_TASKS = 65536                  # concurrent requests (each a trio task)
MAX_READ_AHEAD_KB = 1 << 20        # 1 GiB readahead window


def _bool(key, v):
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in _TRUE + _FALSE:
        return v.lower() in _TRUE
    raise InvalidInput(f"mount option {key}: expected on/off (true/false, yes/no), not {v!r}")


def _seconds(lo_open: bool):
    def conv(key, v):
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise InvalidInput(f"mount option {key}: expected seconds, not {v!r}")
        try:
            f = float(v)
        except (ValueError, OverflowError):
            raise InvalidInput(f"mount option {key}: expected seconds, not {v!r}") from None
        if not math.isfinite(f) or f < 0 or (lo_open and f == 0) or f > MAX_SECONDS:
            lo = "> 0" if lo_open else ">= 0"
            raise InvalidInput(f"mount option {key}: must be a finite number of seconds "
                               f"{lo} and at most {MAX_SECONDS:.0f} (a year), not {v!r}")
        return f
    return conv


def _int(lo: int, hi: int, what: str):
    def conv(key, v):
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise InvalidInput(f"mount option {key}: expected {what}, not {v!r}")
        try:
            n = int(v, 10) if isinstance(v, str) else int(v)
        except (ValueError, OverflowError):
            raise InvalidInput(f"mount option {key}: expected {what}, not {v!r}") from None
        if isinstance(v, float) and n != v:
            raise InvalidInput(f"mount option {key}: expected {what}, not {v!r}")
        if not lo <= n <= hi:
            raise InvalidInput(f"mount option {key}: must be {lo}..{hi}, not {v!r}")
        return n
    return conv


def _optional(conv):
    def opt(key, v):
        return None if v is None else conv(key, v)
    return opt


# name -> converter; defaults live in daemon.serve's signature
OPTIONS = {
    "readonly": _bool,
    "allow_other": _optional(_bool),           # None: when root
    "debug": _bool,
    "write_behind": _bool,
    "dev": _bool,                              # root only (checked by the daemon)
    "suid": _bool,
    "verify_reads": _bool,                     # as Store.open(verify_reads=True)
    "attr_timeout": _optional(_seconds(lo_open=False)),   # None: per tree kind (adapter)
    "commit_interval": _optional(_seconds(lo_open=True)),
    "max_tasks": _int(1, MAX_TASKS, "a number of concurrent requests"),
    "read_ahead_kb": _optional(_int(0, MAX_READ_AHEAD_KB, "KiB")),   # 0/None: kernel's
}


def parse(opts: dict) -> dict:
    """The options typed; InvalidInput naming the first bad one."""
    out = {}
    for key, value in opts.items():
        conv = OPTIONS.get(key)
        if conv is None:
            raise InvalidInput(f"unknown mount option {key!r}; known: "
                               f"{', '.join(sorted(OPTIONS))}")
        out[key] = conv(key, value)
    return out
