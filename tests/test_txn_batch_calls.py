"""Calls into this thread's open batch (``Env.transact`` / ``Env.in_view``
inside ``Store.batch()``) behave as the ``write()`` / ``read()`` blocks they
stand for: they see and join the batch, damaged metadata still surfaces as
Corruption, other errors pass unchanged, and a failed change leaves the
store as it was once the batch is left with the error."""
from __future__ import annotations

import struct
import threading

import pytest

from blockstore.errors import Corruption


def test_in_batch_calls_join_the_batch(store):
    store.create("t")
    tv = store.fs("t")
    env = store.env
    with store.batch():
        tv.mkdir("/a")
        assert env.transact(lambda w: w is env._batch)
        assert env.in_view(lambda r: r is env._batch)
        assert tv.isdir("/a")                      # read through in_view: the batch's view
        seen = []
        t = threading.Thread(target=lambda: seen.append(env.in_view(lambda r: r is env._batch)))
        t.start()
        t.join()
        assert seen == [False]                     # another thread: a snapshot, not our batch
    tv.close()
    assert store.fs("t").isdir("/a")


@pytest.mark.parametrize("call", ["transact", "in_view"])
def test_damage_inside_a_batch_is_corruption(store, call):
    env = store.env

    def unpack_fails(txn):
        struct.unpack("<Q", b"short")              # a stored value of the wrong size

    def pack_fails(txn):
        struct.pack("<B", 300)                     # not damage: passes unchanged

    with pytest.raises(Corruption, match="wrong size"):
        with store.batch():
            getattr(env, call)(unpack_fails)
    with pytest.raises(struct.error):
        with store.batch():
            getattr(env, call)(pack_fails)
    with pytest.raises(Corruption, match="wrong size"):
        getattr(env, call)(unpack_fails)           # outside a batch: the same


def test_failed_batch_leaves_the_store_unchanged(store):
    store.create("t")
    tv = store.fs("t")
    with pytest.raises(ValueError):
        with store.batch():
            tv.mkdir("/gone")
            raise ValueError("abort the batch")
    assert not tv.exists("/gone")
    tv.close()
