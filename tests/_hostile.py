"""Run a hostile import as the CLI does, with its memory and time bounded, and
check that it was refused and left the store unchanged.  Not a test module.

Memory: ``RLIMIT_DATA`` of ``MEM_LIMIT`` in the child.  ``RLIMIT_AS`` cannot
be used: the store's LMDB environment reserves 1 TiB of address space at
open (a shared file mapping, no memory), so any address-space limit a store
can open under bounds nothing.  ``RLIMIT_DATA`` counts the heap and every
private writable mapping, i.e. all memory Python objects and buffers take.
"""
from __future__ import annotations

import os
import re
import resource
import subprocess
import sys

from blockstore import Store

BIN = os.path.join(os.path.dirname(sys.executable), "blockstore")
MEM_LIMIT = 1 << 30
TIMEOUT = 60
ERR_MAX = 2000          # a refusal is one line, whatever the archive holds


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (MEM_LIMIT, MEM_LIMIT))


def run(store, *args, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """The CLI on store under the memory limit; bytes out/err."""
    return subprocess.run([BIN, "--store", str(store), *map(str, args)], capture_output=True,
                          timeout=timeout, preexec_fn=_limit)


def state(store) -> list[str]:
    with Store.open(store) as s:
        return sorted(r.name for r in s.list())


def refused(store, args, match: str, code: int = 9) -> str:
    """Run ``blockstore import *args`` and assert: exit code, one short line
    on stderr matching ``match``, store unchanged (no ``@importing`` clone,
    ``check`` ok).  Returns stderr."""
    before = state(store)
    r = run(store, "import", *args)
    err = r.stderr.decode("utf-8", "replace")
    assert len(r.stderr) < ERR_MAX, f"stderr of {len(r.stderr)} bytes: {err[:300]}..."
    assert r.returncode == code, f"exit {r.returncode}: {err}"
    assert re.search(match, err), err
    with Store.open(store) as s:
        names = sorted(t.name for t in s.list())
        assert names == before
        assert not [n for n in names if "@importing" in n]
        report = s.check()
        assert report.ok, str(report)
    return err
