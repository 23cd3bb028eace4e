"""Fetching blocks by SHA-256 from remotes: the pool's BlockFetcher, and the
bulk fetch of eager pulls and fills.

Blocks are located through the remote's pack indexes and fetched by ranged
GETs, neighbouring blocks of one pack coalesced into one request, requests
run in parallel.  Every block is verified against its SHA-256 by the pool
before it is stored (``Pool.fetch_absent``, ``Pool.write_verified``); this module
only moves bytes.
"""
from __future__ import annotations

import concurrent.futures as cf
import threading
from typing import Sequence

from .. import errors
from .client import Remote

LAZY_TIMEOUT = 10.0        # seconds a lazy read waits for the remote before EIO
GAP = 64 << 10             # blocks this close in one pack are fetched by one request


def coalesce(locs: list[tuple[int, str, int, int]], max_range: int | None = None
            ) -> list[tuple[str, int, int, list]]:
    """(i, pack, off, len) -> (pack, start, end, [(i, off, len)]) coalesced into
    requests of at most ``max_range`` bytes (default MAX_RANGE)."""
    limit = MAX_RANGE if max_range is None else max_range
    out: list = []
    for i, h, off, n in sorted(locs, key=lambda x: (x[1], x[2])):
        if out and out[-1][0] == h and off - out[-1][2] <= GAP \
                and off + n - out[-1][1] <= limit:
            out[-1][2] = max(out[-1][2], off + n)
            out[-1][3].append((i, off, n))
        else:
            out.append([h, off, off + n, [(i, off, n)]])
    return out


def source(remote: str, loc: tuple[str, int, int] | None) -> str:
    """The ``pool.absent`` source of a block: the remote's name and, when known,
    where the block is (pack, offset, length), so a read needs no index."""
    return remote if loc is None else f"{remote}\0{loc[0]}:{loc[1]}:{loc[2]}"


def parse_source(src: str) -> tuple[str, tuple[str, int, int] | None]:
    name, _, loc = src.partition("\0")
    if not loc:
        return name, None
    try:
        h, off, n = loc.split(":")
        return name, (h, int(off), int(n))
    except ValueError:
        return name, None


MAX_RANGE = 1 << 20        # ranges are split at this size, so one pack is fetched in parallel


def fetch_blocks(remote: Remote, digests: Sequence[bytes], ex: cf.Executor,
                 where: Sequence | None = None) -> list[bytes]:
    """The bytes of each digest (unverified), fetched from ``remote``; ``where``:
    known (pack, offset, length) per digest (None: look it up in the index)."""
    locs = []
    for i, d in enumerate(digests):
        loc = where[i] if where is not None and where[i] is not None else remote.locate(d)
        if loc is None:
            raise errors.NotFound(f"remote {remote.name!r} holds no block {d.hex()[:16]}...")
        locs.append((i, *loc))
    out: list[bytes | None] = [None] * len(digests)

    def one(r):
        h, a, b, parts = r
        data = remote.objects.get_range(f"packs/{h}.pack", a, b - a)
        for i, off, n in parts:
            out[i] = memoryview(data)[off - a:off - a + n]     # no copy per block
    for f in [ex.submit(one, r) for r in coalesce(locs)]:
        f.result()
    return out


class RemoteFetcher:
    """The pool's BlockFetcher (pool/lazy.py) for one store: sources are remote names."""

    def __init__(self, store_path: str, timeout: float = LAZY_TIMEOUT):
        self.store_path = store_path
        self.timeout = timeout
        self._remotes: dict[str, Remote] = {}
        self._lock = threading.Lock()
        self._ex = cf.ThreadPoolExecutor(8, thread_name_prefix="blockstore-fetch")

    def _remote(self, name: str) -> Remote:
        with self._lock:
            r = self._remotes.get(name)
            if r is None:
                r = self._remotes[name] = Remote(self.store_path, name)
            return r

    def fetch(self, wants: Sequence[tuple[bytes, str]]) -> list[bytes]:
        by_src: dict[str, list[int]] = {}
        where = []
        for i, (_, src) in enumerate(wants):
            name, loc = parse_source(src)
            where.append(loc)
            by_src.setdefault(name, []).append(i)
        out: list[bytes | None] = [None] * len(wants)

        def run():
            for src, idx in by_src.items():
                got = fetch_blocks(self._remote(src), [wants[i][0] for i in idx], self._ex,
                                   [where[i] for i in idx])
                for i, data in zip(idx, got):
                    out[i] = data
        # the whole fetch, whatever retries the client makes, within the timeout
        worker = cf.ThreadPoolExecutor(1)
        fut = worker.submit(run)
        try:
            fut.result(self.timeout)
        except cf.TimeoutError:
            raise errors.Unreachable(f"remote did not deliver {len(wants)} blocks within "
                                     f"{self.timeout:.0f} s") from None
        except (errors.Unreachable, errors.Corruption):
            raise
        except errors.BlockstoreError as exc:
            # a remote removed from the config, a block gone from it, access refused:
            # to the reader, the data cannot be had (EIO), whatever the cause
            raise errors.Unreachable(f"a block of a lazily pulled snapshot cannot be fetched: "
                                     f"{exc}") from None
        finally:
            worker.shutdown(wait=False)
        return out
