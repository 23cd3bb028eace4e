"""The first ranges of an eager pull, fetched while its tree is being built.

An eager pull builds the snapshot (one write transaction, all on the
calling thread) before it knows which local block each fetched block goes
to, so its fill cannot start earlier.  The pack ranges it will ask for do
not depend on those block numbers, only on the order of the blocks and the
remote's index: ``Prefetch`` GETs the first few of them meanwhile, into
buffers of their own, and the fill takes a range from here instead of
fetching it again.  Nothing here is verified or written: the fill verifies
every block against its SHA-256 before it enters the pool, as for a range
it fetched itself.  Memory: at most ``limit`` ranges are held at once.
"""
from __future__ import annotations

import concurrent.futures as cf
import mmap
import threading
from typing import Callable

from . import layout
from .objects import ObjectStore


def fill_buffer(size: int) -> mmap.mmap:
    """A buffer for a fetched range: page-aligned (the pool writes it with
    O_DIRECT), private anonymous memory with transparent huge pages asked for
    (a fresh 8 MiB of 4 KiB shared-memory pages cost several times the copy
    into it in page faults)."""
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
    try:
        buf.madvise(mmap.MADV_HUGEPAGE)
    except (AttributeError, OSError):
        pass                        # no THP here: 4 KiB pages, still aligned
    return buf


class Prefetch:
    def __init__(self, objects: ObjectStore, plan: Callable[[], list[tuple[str, int, int]]],
                 limit: int, threads: int):
        """``plan``: the ranges (pack, begin, end) the fill will request, in its
        order (called on a thread of this object: it may wait for the index)."""
        self._objects = objects
        self._lock = threading.Lock()
        self._closed = False
        self._got: dict[tuple[str, int, int], cf.Future] = {}
        self._ex = cf.ThreadPoolExecutor(threads, thread_name_prefix="blockstore-prefetch")
        self._ready = self._ex.submit(self._start, plan, limit)

    def _start(self, plan, limit: int) -> None:
        for h, a, e in plan()[:limit]:
            with self._lock:
                if self._closed:
                    return
                self._got[(h, a, e)] = self._ex.submit(self._get, h, a, e)

    def _get(self, h: str, a: int, e: int) -> mmap.mmap:
        buf = fill_buffer(e - a)
        self._objects.get_range_into(layout.pack_key(h), a, memoryview(buf))
        return buf

    def take(self, h: str, a: int, e: int) -> mmap.mmap | None:
        """The bytes of [a, e) of pack ``h`` if that range was prefetched (waiting
        for its GET if it is in flight), handed over once; None otherwise, also
        when its GET failed (the fill fetches it again and sees the error)."""
        try:
            self._ready.result()
        except Exception:
            return None
        with self._lock:
            f = self._got.pop((h, a, e), None)
        if f is None:
            return None
        try:
            return f.result()
        except Exception:
            return None

    def close(self) -> None:
        """Cancel what has not started, wait for GETs in flight, drop what was not taken."""
        with self._lock:
            self._closed = True
        self._ex.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._got.clear()
