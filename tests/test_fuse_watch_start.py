"""A mount's tree watcher takes its base state before the mount serves a
request.  Otherwise a commit made after the kernel cached an answer but
before the watcher's first poll becomes that poll's base and is never
invalidated: the mount shows the old state for as long as the kernel keeps
it (a negative entry, a listing).  The first poll is delayed here by a
failpoint in the daemon (served in the foreground of a child process), so
the commit always lands in that window."""
from __future__ import annotations

import os
import textwrap

from blockstore import Store

from _fuse_helpers import needs_fuse, served_by_child, until

pytestmark = needs_fuse

FRESH = 3.0


# Serves tree "c" of the store (argv[2]) at argv[1] in the foreground, the
# watcher's first poll held back by 1.5 s.
SLOW_FIRST_POLL = textwrap.dedent("""
    import sys, time
    from blockstore import failpoints
    from blockstore.fuse import mount
    first = []
    def slow_first(name):
        if not first:
            first.append(1)
            time.sleep(1.5)
    failpoints.set("treewatch.before_poll", slow_first)
    mount(sys.argv[2], "c", sys.argv[1], foreground=True)
""")


def test_a_commit_before_the_watchers_first_poll_is_seen(tmp_path):
    sp = tmp_path / "store"
    with Store.open(sp) as s:
        s.create("c")
        with s.fs("c") as fs:
            fs.makedirs("/d")
            fs.write_bytes("/d/a", b"a")
    env = dict(os.environ, BLOCKSTORE_FUSE_SERVER="0")
    with served_by_child(SLOW_FIRST_POLL, str(sp), env=env) as mnt:
        assert not os.path.exists(os.path.join(mnt, "d", "late"))   # a negative entry
        assert sorted(os.listdir(os.path.join(mnt, "d"))) == ["a"]  # a cached listing
        with Store.open(sp) as s:
            with s.fs("c") as fs:
                fs.write_bytes("/d/late", b"l")                    # before the first poll
        until(lambda: os.path.exists(os.path.join(mnt, "d", "late")), FRESH)
        until(lambda: sorted(os.listdir(os.path.join(mnt, "d"))) == ["a", "late"], FRESH)
