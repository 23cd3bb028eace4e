"""A tree changed underneath a mount (blockstore/fuse/watch.py): the kernel's
attribute, entry and page caches are dropped for what changed, long before
any timeout.  Mounts use a 30 s attribute/entry timeout so that only the
invalidation can explain fresh answers."""
from __future__ import annotations

import os

from blockstore import Store

from _fuse_helpers import Mounted, check_ok, needs_fuse
from _fuse_helpers import until as _until
from _fuse_helpers import write_synced as _write

pytestmark = needs_fuse

TIMEOUT = 30.0


def test_changes_made_through_the_library_reach_the_mount(tmp_path):
    sp = tmp_path / "store"
    with Store.open(sp) as s:
        s.create("c")
    m = Mounted(sp, "c", attr_timeout=TIMEOUT)
    try:
        _write(m.p("f"), b"A" * 10000)
        _write(m.p("victim"), b"v")
        os.mkdir(m.p("d"))
        fd = os.open(m.p("f"), os.O_RDONLY)
        try:
            assert os.pread(fd, 10000, 0) == b"A" * 10000      # now in the page cache
            assert os.stat(m.p("f")).st_size == 10000           # attributes cached for 30 s
            assert os.path.exists(m.p("victim")) and not os.path.exists(m.p("d", "new"))
            with Store.open(sp) as s:
                fs = s.fs("c")
                fs.write_bytes("/f", b"B" * 20000)
                fs.unlink("/victim")
                fs.write_bytes("/d/new", b"n")
                fs.close()
            took = _until(lambda: (os.pread(fd, 20000, 0) == b"B" * 20000
                                   and os.stat(m.p("f")).st_size == 20000
                                   and not os.path.exists(m.p("victim"))
                                   and os.path.exists(m.p("d", "new"))), 5.0)
            assert took < 2.0
        finally:
            os.close(fd)
    finally:
        m.close()
    check_ok(sp)


def test_a_volume_shared_by_two_mounts_shows_each_others_writes(tmp_path):
    sp = tmp_path / "store"
    with Store.open(sp) as s:
        s.volume_create("vol")
        s.create("a", mounts=[{"type": "volume", "source": "vol", "target": "/v"}])
        s.create("b", mounts=[{"type": "volume", "source": "vol", "target": "/v"}])
    ma = Mounted(sp, "a", attr_timeout=TIMEOUT)
    mb = Mounted(sp, "b", attr_timeout=TIMEOUT)
    try:
        _write(ma.p("v", "shared"), b"1" * 5000)
        _until(lambda: os.path.exists(mb.p("v", "shared")), 5.0)
        fd = os.open(mb.p("v", "shared"), os.O_RDONLY)
        try:
            assert os.pread(fd, 5000, 0) == b"1" * 5000
            assert os.stat(mb.p("v", "shared")).st_size == 5000
            _write(ma.p("v", "shared"), b"2" * 7000)        # truncate + rewrite through mount a
            took = _until(lambda: (os.stat(mb.p("v", "shared")).st_size == 7000
                                   and os.pread(fd, 7000, 0) == b"2" * 7000), 5.0)
            assert took < 2.0
        finally:
            os.close(fd)
        os.unlink(mb.p("v", "shared"))
        _until(lambda: not os.path.exists(ma.p("v", "shared")), 2.0)
    finally:
        ma.close()
        mb.close()
    check_ok(sp)
