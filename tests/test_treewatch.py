"""api/treewatch.py: what a cache of a tree must drop after others changed it."""
from __future__ import annotations

from blockstore.api.treewatch import TreeWatch


def _own(store, fn):
    """Run fn() as this process's own batch and report the commit like a mount does."""
    with store.batch():
        fn()
        tid = store.env.batch_txn_id()
    return tid


def test_others_changes_are_reported_as_inodes_and_entries(store):
    store.create("c")
    fs = store.fs("c")
    fs.write_bytes("/a", b"1")
    fs.mkdir("/d")
    w = TreeWatch(store, ["c"])
    try:
        assert w.poll() == {}
        ino_a = fs.stat("/a").st_ino
        fs.write_bytes("/a", b"22")                 # "someone else": not reported as own
        fs.write_bytes("/d/new", b"n")
        ch = w.poll()["c"]
        assert ino_a in ch.data and ino_a in ch.attrs
        assert (fs.stat("/d").st_ino, b"new") in ch.entries
        assert w.poll() == {}                       # reported once
        fs.close()
    finally:
        w.close()
    assert store.check().ok


def test_own_commits_are_not_reported_but_what_others_did_after_them_is(store):
    store.create("c")
    fs = store.fs("c")
    w = TreeWatch(store, ["c"])
    try:
        w.poll()
        w.own_commit(_own(store, lambda: fs.write_bytes("/mine", b"m")))
        assert w.poll() == {}                       # the cache saw it go through
        w.own_commit(_own(store, lambda: fs.write_bytes("/x", b"x")))
        fs.unlink("/x")                             # another writer removes what we made,
        ch = w.poll()["c"]                          # between two polls: must not net out
        assert (1, b"x") in ch.entries
        other = store.fs("c")
        other.write_bytes("/y", b"y")               # others first, then own: reported
        w.own_commit(_own(store, lambda: fs.write_bytes("/z", b"z")))
        ch = w.poll()["c"]
        assert (1, b"y") in ch.entries
        other.close()
        fs.close()
    finally:
        w.close()
    assert store.check().ok


def test_the_old_view_stays_readable_after_its_nodes_were_freed(store):
    store.create("c")
    fs = store.fs("c")
    for i in range(300):
        fs.write_bytes(f"/f{i}", b"x" * 100)
    w = TreeWatch(store, ["c"])
    try:
        w.poll()
        for i in range(0, 300, 2):
            fs.unlink(f"/f{i}")
        store.gc()                                  # frees the old tree's nodes for others
        ch = w.poll()["c"]
        assert {(1, f"f{i}".encode()) for i in range(0, 300, 2)} <= ch.entries
        fs.close()
    finally:
        w.close()
    assert store.check().ok


def test_after_own_commits_only_the_base_moves_at_once(store):
    """A mount writing alone: its commit's view becomes the base without waiting
    for a poll, so the watcher holds back no frees of the commits before it."""
    store.create("c")
    fs = store.fs("c")
    w = TreeWatch(store, ["c"])
    try:
        w.poll()
        for i in range(3):
            tid = _own(store, lambda: fs.write_bytes("/f", bytes([i]) * 9000))
            w.own_commit(tid)
            assert store.env.oldest_reader() == tid     # not the previous poll's view
        fs.write_bytes("/other", b"o")                  # someone else...
        tid = _own(store, lambda: fs.write_bytes("/g", b"g"))
        w.own_commit(tid)                                # ...so the base must wait for poll
        assert store.env.oldest_reader() < tid
        ch = w.poll()["c"]
        assert (1, b"other") in ch.entries
        fs.close()
    finally:
        w.close()
    assert store.check().ok
