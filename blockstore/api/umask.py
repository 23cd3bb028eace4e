"""The process umask, read without changing it (for os-like creation modes).

``os.umask`` can only be read by setting it, which races with other threads
creating files; Linux (4.7+) shows it in /proc/self/status ("Umask:").
Fallback: set and restore it under a lock (a thread creating a host file in
that instant may see the temporary value 0o077: stricter, never looser).
Cost: one small procfs read per call (~10 us).
"""
from __future__ import annotations

import os
import threading

_lock = threading.Lock()


def current() -> int:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _lock:
        old = os.umask(0o077)
        os.umask(old)
    return old


def apply(mode: int) -> int:
    """``mode`` (permission and special bits) masked by the umask, as open(2)/mkdir(2) do."""
    return mode & ~current() & 0o7777
