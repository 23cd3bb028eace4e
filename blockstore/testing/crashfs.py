"""A data file that can forget what was not fdatasync'ed: power-loss simulation.

Like SQLite's crash VFS (src/test6.c) and LevelDB's FaultInjectionTestEnv,
``CrashDataFile`` is the real ``DataFile`` (same file, same syscalls) that
additionally remembers, for every ``pwrite`` since the last ``fdatasync``, the
bytes it overwrote, and the file size at the last sync.  ``crash()`` then
rewrites the file as a power cut could have left it:

* ``drop``  -- every unsynced write is undone (old bytes back);
* ``tear``  -- every unsynced write keeps a random subset of its 512-byte
  sectors, the others revert (a write torn by the power cut);
* ``mixed`` -- each unsynced write independently kept, dropped or torn;
* ``keep``  -- nothing reverted (the page cache reached the disk).

and an unsynced growth of the file is cut back to the synced size.  The
result is fsync'ed, so a subsequent reopen sees exactly the simulated disk.

What this does NOT simulate: loss or reordering inside LMDB (LMDB commits
with fsync and its own double-buffered meta pages; we trust it), lost
directory entries, or a kernel that lies about fdatasync.

A test opens a store with it by ``Trees.open(path, data_file=CrashDataFile)``
(or the test helper ``Engine``, a ``Trees``)
(the txn layer's ``Env`` takes the class that opens its data file); each
instance registers itself in ``OPEN`` so a failpoint action can crash them.

Writes queued for the background writer (``pwrite_later``) are recorded when
queued and have all landed before ``crash()`` rewrites the file.

Cost: one extra pread per pwrite and memory for the overwritten bytes until
the next fdatasync -- test use only.
"""
from __future__ import annotations

import os
import random

from ..pool.datafile import DataFile

SECTOR = 512
MODES = ("drop", "tear", "mixed", "keep")
OPEN: list["CrashDataFile"] = []


class SimulatedCrash(BaseException):
    """Raised at a failpoint to abandon the work in progress (in-process crash).

    A BaseException so that no ``except Exception`` in the store swallows it;
    the txn layer aborts the LMDB transaction on its way out."""


class CrashDataFile(DataFile):
    def __init__(self, path, block_size, *, create):
        super().__init__(path, block_size, create=create)
        self.unsynced: list[tuple[int, bytes, bytes]] = []   # (offset, old, new)
        self.synced_size = os.fstat(self.fd).st_size
        self.crashes = 0
        OPEN.append(self)

    def pwritev(self, start_block: int, buffers) -> None:
        self._record(start_block * self.block_size,
                     b"".join(bytes(memoryview(b).cast("B")) for b in buffers))
        super().pwritev(start_block, buffers)

    def pwrite_later(self, start_block: int, data, digest=None):
        self._record(start_block * self.block_size, bytes(memoryview(data).cast("B")))
        return super().pwrite_later(start_block, data, digest)

    def _record(self, off: int, new: bytes) -> None:
        # Queued writes of the range land first, so `old` is what the file holds
        # when this write lands (queued writes run in order).
        self.settle(off, off + len(new))
        old = os.pread(self.fd, len(new), off)
        old += bytes(len(new) - len(old))          # beyond EOF reads as zeros after growth
        self.unsynced.append((off, old, new))

    def fdatasync(self) -> None:
        super().fdatasync()
        self.unsynced.clear()
        self.synced_size = os.fstat(self.fd).st_size

    def crash(self, mode: str = "mixed", rng: random.Random | None = None) -> dict:
        """Rewrite the file as a power cut could leave it; returns what was done."""
        if mode not in MODES:
            raise ValueError(f"crash mode must be one of {MODES}")
        rng = rng or random.Random()
        self.settle_all()                          # queued writes reach the file first
        stats = {"writes": len(self.unsynced), "dropped": 0, "torn": 0, "kept": 0}
        # Undo newest first so that overlapping writes end with the oldest synced bytes.
        for off, old, new in reversed(self.unsynced):
            how = mode if mode != "mixed" else rng.choice(("drop", "tear", "keep"))
            if how == "keep":
                stats["kept"] += 1
                continue
            if how == "drop":
                os.pwrite(self.fd, old, off)
                stats["dropped"] += 1
                continue
            stats["torn"] += 1
            for s in range(0, len(new), SECTOR):
                if rng.random() < 0.5:
                    os.pwrite(self.fd, old[s:s + SECTOR], off + s)
        if os.fstat(self.fd).st_size > self.synced_size:
            os.ftruncate(self.fd, self.synced_size)
        os.fsync(self.fd)
        self.unsynced.clear()
        self.crashes += 1
        return stats

    def close(self) -> None:
        if self in OPEN:
            OPEN.remove(self)
        super().close()


def crash_all(mode: str = "mixed", rng: random.Random | None = None) -> list[dict]:
    return [f.crash(mode, rng) for f in list(OPEN)]
