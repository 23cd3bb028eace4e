"""Who owns a piece of unfinished work: a process identity that survives pid reuse.

``current()`` is this process as {"host", "boot", "pid", "start"}: the host
name, the kernel's boot id (/proc/sys/kernel/random/boot_id), the pid and the
process start time (field 22 of /proc/PID/stat, clock ticks since boot).
``state(owner)`` tells whether that process still runs:

* "alive"   -- same host and boot, and /proc/PID/stat shows the same start
               time (a reused pid has another one);
* "gone"    -- same host, and another boot, or no such pid, or another start
               time;
* "unknown" -- another host (a store on shared storage): this machine cannot
               tell, so the work is left alone.

Cost: two small /proc reads per call.
"""
from __future__ import annotations

import os

_BOOT_ID = "/proc/sys/kernel/random/boot_id"


def _boot_id() -> str:
    try:
        with open(_BOOT_ID) as f:
            return f.read().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> int | None:
    """Field 22 (starttime) of /proc/PID/stat, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'
    fields = raw[raw.rfind(b")") + 2:].split()
    try:
        return int(fields[19])          # fields[0] is field 3 (state)
    except (IndexError, ValueError):
        return None


def current() -> dict:
    pid = os.getpid()
    return {"host": _host(), "boot": _boot_id(), "pid": pid,
            "start": _start_time(pid) or 0}


def state(owner: dict | None) -> str:
    """"alive", "gone" or "unknown" (see the module docstring); None (no owner
    recorded) is "unknown"."""
    if not owner or not isinstance(owner, dict):
        return "unknown"
    try:
        host, boot = owner.get("host"), owner.get("boot")
        pid, start = int(owner.get("pid")), int(owner.get("start"))
    except (TypeError, ValueError):
        return "unknown"
    if host != _host() or not start:
        return "unknown"                 # start 0: /proc was unreadable for the owner
    if boot != _boot_id():
        return "gone"
    return "alive" if _start_time(pid) == start else "gone"


def describe(owner: dict | None) -> str:
    if not owner or not isinstance(owner, dict):
        return "no owner recorded"
    return f"process {owner.get('pid')} on {owner.get('host')}"


def _host() -> str:
    """This host's name (what socket.gethostname says on Linux, without loading
    the socket module at every CLI start)."""
    return os.uname().nodename
