"""Worker processes for test_fs_concurrency (run as scripts: a fresh
interpreter per process, never a fork of the test process).

    python _fs_workers.py reader STORE SECONDS   -> prints "ok FILES SNAPSHOTS" or "BAD ..."
    python _fs_workers.py holder STORE SNAPSHOT PATH
        opens PATH in SNAPSHOT, reads half, prints "ready"; waits for a line on
        stdin; reads the rest; prints "ok SHA256" of all bytes read.

Content is deterministic: file i of snapshot generation k is ``content(k, i)``,
so a reader can verify any snapshot it finds without talking to the writer.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time

FILES = 6


def content(gen: int, i: int) -> bytes:
    """~(20..90) KiB of bytes unique to (gen, i): several blocks per file."""
    seed = hashlib.sha256(f"{gen}:{i}".encode()).digest()
    n = 20 * 1024 + (seed[0] * 277) % (70 * 1024)
    reps = n // len(seed) + 1
    return (hashlib.sha512(seed).digest() * (reps // 2 + 1))[:n // 2] + (seed * reps)[:n - n // 2]


def reader(store_path: str, seconds: float) -> int:
    from blockstore import Store
    from blockstore.errors import NotFound
    checked, snaps, bad = 0, set(), []
    deadline = time.monotonic() + seconds
    with Store.open(store_path, create=False) as s:
        while time.monotonic() < deadline:
            for rec in s.list(kind="snapshot"):
                if not rec.name.startswith("gen"):
                    continue
                gen = int(rec.name[3:])
                try:
                    fs = s.fs(rec.name)
                except NotFound:
                    continue                    # removed between list and open: fine
                with fs:
                    # The TreeView pins the root: from here on every read must succeed.
                    for i in range(FILES):
                        got = fs.read_bytes(f"/f{i}")
                        if got != content(gen, i):
                            bad.append(f"{rec.name}/f{i}")
                        checked += 1
                snaps.add(rec.name)
    if bad:
        print("BAD", *bad[:10], flush=True)
        return 1
    print("ok", checked, len(snaps), flush=True)
    return 0


def holder(store_path: str, snap: str, path: str) -> int:
    from blockstore import Store
    with Store.open(store_path, create=False) as s:
        with s.fs(snap) as fs, fs.open(path, "rb", buffering=0) as fh:
            size = fs.stat(path).st_size
            first = fh.read(size // 2)
            print("ready", flush=True)
            sys.stdin.readline()
            rest = b""
            while chunk := fh.read(65536):
                rest += chunk
            print("ok", hashlib.sha256(first + rest).hexdigest(), flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    role = sys.argv[1]
    if role == "reader":
        sys.exit(reader(sys.argv[2], float(sys.argv[3])))
    if role == "holder":
        sys.exit(holder(sys.argv[2], sys.argv[3], sys.argv[4]))
    sys.exit(f"unknown role {role}")
