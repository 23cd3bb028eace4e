"""Seeded file contents and snapshot manifests for the stress workload.

A manifest is the JSON ``{path: sha256 hex}`` of every regular file a writer
put into a tree, written as ``/.manifest`` into the clone just before it is
committed; the snapshot's label ``manifest`` holds the SHA-256 of that file.
Snapshots are immutable, so any process can verify any snapshot against its
own manifest, forever, without knowing the writer's model.
"""
from __future__ import annotations

import hashlib
import json
import random

MANIFEST = "/.manifest"
LABEL = "stress"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def gen_data(rng: random.Random, bs: int) -> bytes:
    """Contents that exercise every extent kind: empty, inline, partial and
    whole blocks, zero blocks (holes), repeated blocks (dedup), random bytes."""
    r = rng.random()
    if r < 0.1:
        return b""
    if r < 0.35:
        return rng.randbytes(rng.randint(1, 200))                # inline
    if r < 0.55:
        return rng.randbytes(rng.randint(201, bs * 2))          # partial blocks
    parts = []
    for _ in range(rng.randint(1, 12)):
        x = rng.random()
        if x < 0.2:
            parts.append(bytes(bs))                             # hole
        elif x < 0.4:
            parts.append(bytes([rng.randrange(4)]) * bs)        # likely duplicate
        else:
            parts.append(rng.randbytes(bs))
    tail = rng.choice((0, 0, 1, rng.randrange(bs)))
    return b"".join(parts) + rng.randbytes(tail)


def manifest_bytes(files: dict[str, bytes]) -> bytes:
    return json.dumps({p: sha(d) for p, d in sorted(files.items())},
                      sort_keys=True, separators=(",", ":")).encode()
