"""The kernel's page cache of a mount (blockstore/fuse/adapter.py, "Caches").

Own writes keep the file's cached pages (write-through: they hold what was
written), so an overwrite neither drops the file's cache nor allocates new
pages for every request.  Files the watcher cannot follow (a host directory
bound into the tree, a volume shown at two places of one mount) still lose
their pages once their mtime or size is seen to change, as they did under
the kernel's automatic invalidation."""
from __future__ import annotations

import os
import time

from blockstore import Store

from _fuse_helpers import (Mounted, cached_bytes, check_ok, needs_fuse, until, while_caches_kept,
                           write_synced)

pytestmark = needs_fuse

MiB = 1 << 20
ATTR = 0.2          # attribute timeout of these mounts: a stat after it asks the daemon
# Of an 8 MiB file's pages, at least this many must stay cached.  Not all: this VM's
# kernel runs DAMON proactive reclaim, which pages out a few pages of any file now and
# then (perf: __remove_mapping <- damon_pa_apply_scheme).  Dropping them at every
# write (the kernel's auto_inval_data) leaves at most the last 1 MiB write.
KEPT = 6 * MiB


def _until_reads(fd, path, want: bytes, limit: float = 5.0) -> None:
    """Until a read through fd gives ``want``; each try stats first (which asks
    the daemon once the attributes timed out)."""
    def fresh() -> bool:
        os.stat(path)
        return os.pread(fd, len(want), 0) == want
    until(fresh, limit)


def test_own_overwrites_keep_the_files_pages(tmp_path):
    sp = tmp_path / "store"
    with Store.open(sp) as s:
        s.create("c")
    m = Mounted(sp, "c", attr_timeout=ATTR)
    try:
        f = m.p("big")

        def kept() -> tuple[int, int]:
            write_synced(f, b"a" * (8 * MiB))
            written = cached_bytes(f)               # written pages stay, across close
            fd = os.open(f, os.O_WRONLY)
            try:
                for i in range(4):                  # 1 MiB overwrites, attributes refetched
                    os.pwrite(fd, bytes([ord("b") + i]) * MiB, i * MiB)
                    time.sleep(ATTR)
                    os.stat(f)
            finally:
                os.close(fd)
            return written, cached_bytes(f)
        # A drop_caches meanwhile (a cold benchmark) evicts the pages: retried.
        written, overwritten = while_caches_kept(kept)
        assert written >= KEPT and overwritten >= KEPT
        with open(f, "rb") as r:
            assert r.read() == b"".join(bytes([ord("b") + i]) * MiB for i in range(4)) \
                + b"a" * (4 * MiB)
        with Store.open(sp) as s:                   # and that is what the store holds
            assert s.fs("c").read_bytes("/big")[:MiB] == b"b" * MiB
    finally:
        m.close()
    check_ok(sp)


def _cached_file_sees(sp, place: tuple, change) -> None:
    """Mount tree "c" of ``sp``, cache the pages of the file at ``place`` through an
    open fd, ``change(m)`` it behind that place (same size, a later mtime), and
    expect reads through the fd to show the change once the attributes are refetched."""
    m = Mounted(sp, "c", attr_timeout=ATTR)
    try:
        path = m.p(*place)
        fd = os.open(path, os.O_RDONLY)
        try:
            assert os.pread(fd, 10000, 0) == b"1" * 10000     # now cached
            time.sleep(0.05)                                 # a later mtime
            change(m)
            _until_reads(fd, path, b"2" * 10000)
        finally:
            os.close(fd)
    finally:
        m.close()
    check_ok(sp)


def test_a_host_file_changed_underneath_loses_its_pages(tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "f").write_bytes(b"1" * 10000)
    sp = tmp_path / "store"
    with Store.open(sp) as s:
        s.create("c", mounts=[{"type": "bind", "source": str(host), "target": "/h"}])
    _cached_file_sees(sp, ("h", "f"), lambda m: (host / "f").write_bytes(b"2" * 10000))


def test_a_volume_at_two_places_shows_writes_made_through_the_other(tmp_path):
    sp = tmp_path / "store"
    with Store.open(sp) as s:
        s.volume_create("vol")
        s.create("c", mounts=[{"type": "volume", "source": "vol", "target": "/a"},
                              {"type": "volume", "source": "vol", "target": "/b"}])
        with s.fs("vol") as fs:
            fs.write_bytes("/f", b"1" * 10000)
    # written through /a, read through /b: the same volume at two places
    _cached_file_sees(sp, ("b", "f"),
                      lambda m: write_synced(m.p("a", "f"), b"2" * 10000, offset=0))
