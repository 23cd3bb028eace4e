"""Run the CLI on a hostile or damaged store in a subprocess, bounded in time
and memory, and classify how it ended.

The address-space limit is the LMDB map (reserved address space, not memory:
``txn.INITIAL_MAP_SIZE``) plus ``MEMORY_BOUND``: the process may map the store
but cannot allocate more than that on top of it.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys

from blockstore.txn import INITIAL_MAP_SIZE

MEMORY_BOUND = 1 << 30
BIN = os.path.join(os.path.dirname(sys.executable), "blockstore")


def _limit():
    lim = INITIAL_MAP_SIZE + MEMORY_BOUND
    resource.setrlimit(resource.RLIMIT_AS, (lim, lim))


# Root without the capabilities that bypass file permissions: a store owned by
# another uid is then another user's store (the interpreter stays readable).
AS_OTHER_USER = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


def cli(store, *args, timeout: float = 120, other_user: bool = False,
        env: dict | None = None) -> subprocess.CompletedProcess:
    """``blockstore --store STORE ARGS...`` under RLIMIT_AS and a timeout
    (``other_user``: without permission-bypassing capabilities, root only)."""
    full_env = dict(os.environ, **(env or {}))
    full_env.pop("BLOCKSTORE_DEBUG", None)
    argv = [BIN, "--store", str(store), *map(str, args)]
    return subprocess.run(AS_OTHER_USER + argv if other_user else argv, capture_output=True,
                          timeout=timeout, preexec_fn=_limit, env=full_env)


def clean_end(r: subprocess.CompletedProcess, codes=(0,)) -> str:
    """'' when the process ended with one of ``codes`` and a one-line error (if
    any) that is not an internal error; else what went wrong."""
    err = r.stderr.decode(errors="replace")
    if r.returncode < 0:
        return f"killed by signal {-r.returncode}; stderr: {err[-500:]!r}"
    if r.returncode not in codes:
        return f"exit code {r.returncode}, expected one of {codes}; stderr: {err[-500:]!r}"
    if "Traceback" in err or "internal error" in err:
        return f"internal error (exit {r.returncode}): {err[-500:]!r}"
    return ""
