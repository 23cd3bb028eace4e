"""Processes sharing one store: deferred block reuse under an old reader
(docs/ARCHITECTURE.md §5), concurrent writers, a SIGKILLed reader, opening twice,
fork, and what opening a bad store raises."""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import zlib

import lmdb
import pytest

import _workers as W
from _engine import Engine
from blockstore.errors import Busy, Corruption, FormatTooNew, NotAStore, NotFound

BS = W.BS


def _spawn(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, W.WORKERS_PY, *map(str, args)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _expect(proc: subprocess.Popen, want: str = "ready") -> str:
    line = proc.stdout.readline().decode()
    if not line.startswith(want):
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"worker said {line!r}, expected {want!r}:\n{err.decode()[-3000:]}")
    return line


def _tell(proc: subprocess.Popen, msg: str) -> None:
    proc.stdin.write(msg.encode() + b"\n")
    proc.stdin.flush()


def _finish(proc: subprocess.Popen, timeout: float = 60) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"worker failed (rc {proc.returncode}):\n{err.decode()[-3000:]}"
    return out.decode()


def _pattern_blob(seed: int, nblocks: int) -> bytes:
    return b"".join(W.block_pattern(seed, i) for i in range(nblocks))


# ============================================================ deferred reuse
@pytest.mark.timeout(120)
def test_freed_blocks_not_reused_while_an_older_reader_lives(tmp_path):
    store = str(tmp_path / "store")
    seed, nb = 0xB10C, 2048                       # 8 MiB blob, one pattern per block
    e = Engine.open(store, block_size=BS, dedup=False)
    try:
        e.create("victim")
        e.put_blob("victim", b"big", _pattern_blob(seed, nb))
        e.create("filler")
        # Fill the pool, so that any reuse of the victim's blocks would be
        # immediate: the only reusable space will be what the victim frees.
        free = e.stats().free_blocks
        e.put_blob("filler", b"fill", b"\x5a" * (free * BS))
        assert e.stats().free_blocks == 0
        total_before = e.stats().total_blocks

        reader = _spawn("view-reader", store, "victim", "big", seed, nb)
        _expect(reader)                             # view open, a quarter read

        e.remove("victim")
        e.gc()
        st = e.stats()
        assert st.pending_blocks >= nb, st          # freed, but the reader still sees them
        # Overwrite heavily: with reuse not deferred these would land on the victim's blocks.
        for i in range(6):
            e.put_blob("filler", b"new%d" % i, _pattern_blob(0xBAD0 + i, 512))
            e.gc()
        st = e.stats()
        assert st.pending_blocks >= nb, f"pending released under a live older reader: {st}"
        assert st.total_blocks > total_before, st   # had to grow instead of reusing

        _tell(reader, "go")
        out = _finish(reader)
        assert out.strip().endswith("done"), out

        # The reader is gone: the next write transaction releases its blocks ...
        e.gc()
        st = e.stats()
        assert st.pending_blocks == 0, st
        # ... and they are reused: writing exactly the free space does not grow the pool,
        # nor do repeated rewrite + gc rounds.
        total = st.total_blocks
        e.put_blob("filler", b"reuse", b"\x77" * (st.free_blocks * BS))
        assert e.stats().total_blocks == total and e.stats().free_blocks == 0
        for i in range(4):
            e.delete_blob("filler", b"reuse")
            e.gc()
            st = e.stats()
            e.put_blob("filler", b"reuse", bytes([i + 1]) * (st.free_blocks * BS))
            assert e.stats().total_blocks == total, e.stats()
        rep = e.check(scrub=True)
        assert rep.ok, str(rep)
    finally:
        e.close()


# ============================================================ two writers
@pytest.mark.timeout(120)
def test_two_writer_processes_lose_nothing(tmp_path):
    store = str(tmp_path / "store")
    ntx = 120
    with Engine.open(store, block_size=BS) as e:
        for t in ("shared", "ta", "tb"):
            e.create(t)
    a = _spawn("writer", store, "A", ntx, "shared,ta")
    b = _spawn("writer", store, "B", ntx, "shared,tb")
    _expect(a)
    _expect(b)
    _tell(a, "go")
    _tell(b, "go")
    _finish(a)
    _finish(b)
    with Engine.open(store, create=False) as e:
        for tag, trees in (("A", ("shared", "ta")), ("B", ("shared", "tb"))):
            pat = zlib.crc32(tag.encode())
            for i in range(ntx):
                t = trees[i % 2]
                if i % 10 == 9:
                    got = e.get_blob(t, b"%s-blob%05d" % (tag.encode(), i))
                    assert got == W.block_pattern(pat, i) * 2, (tag, i, t)
                elif i % 25 != 24:
                    assert e.get(t, b"%s%05d" % (tag.encode(), i)) == b"v%d" % i, (tag, i, t)
        assert sum(1 for k, _ in e.items("shared") if b"\x00" not in k) == \
            2 * sum(1 for i in range(0, ntx, 2) if i % 10 != 9 and i % 25 != 24)
        rep = e.check(scrub=True)
        assert rep.ok, str(rep)


@pytest.mark.timeout(60)
def test_second_writer_waits_for_the_first(tmp_path):
    store = str(tmp_path / "store")
    with Engine.open(store, block_size=BS) as e:
        e.create("t")
    holder = _spawn("lock-holder", store, "t", 0.6)
    _expect(holder)                                 # inside its batch: holds the writer lock
    second = _spawn("timed-put", store, "t")
    _expect(second)
    _tell(second, "go")
    out2 = _finish(second)
    out1 = _finish(holder)
    commit_start = float(out1.split()[1])
    put_start, put_end = map(float, out2.split()[1:3])
    assert put_end >= commit_start, (out1, out2)    # it waited for the first writer
    with Engine.open(store, create=False) as e:
        assert e.get("t", b"holder") == b"1" and e.get("t", b"holder2") == b"2"
        assert e.get("t", b"second") == b"2"
        assert e.check().ok


# ============================================================ killed reader
@pytest.mark.timeout(60)
def test_sigkilled_reader_does_not_wedge_gc(tmp_path):
    store = str(tmp_path / "store")
    nb = 64
    e = Engine.open(store, block_size=BS, dedup=False)
    try:
        e.create("t")
        e.put_blob("t", b"b", _pattern_blob(7, nb))
        reader = _spawn("hold-reader", store, "t", "b")
        _expect(reader)
        e.remove("t")
        e.gc()
        e.create("w")
        e.put("w", b"k", b"v")
        assert e.stats().pending_blocks >= nb       # the live reader pins them
        reader.send_signal(signal.SIGKILL)
        reader.wait()
        reader.stdin.close()
        reader.stdout.close()
        reader.stderr.close()
        # Its reader slot is stale now; reader_check must clear it.
        e.put("w", b"k2", b"v2")
        e.gc()
        st = e.stats()
        assert st.pending_blocks == 0, st
        assert e.env.oldest_reader() is None
        rep = e.check()
        assert rep.ok, str(rep)
    finally:
        e.close()


# ============================================================ open twice, fork
def test_open_twice_in_one_process_shares_the_environment(tmp_path):
    store = tmp_path / "store"
    e1 = Engine.open(str(store), block_size=BS)
    os.symlink(store, tmp_path / "link")
    e2 = Engine.open(str(tmp_path / "link"))         # another spelling of the same store
    e3 = Engine.open(str(store) + "/")
    try:
        assert e2.env is e1.env and e3.env is e1.env
        e1.create("t")
        e2.put("t", b"a", b"1")
        e3.put_blob("t", b"b", b"z" * (BS + 1))
        assert e1.get("t", b"a") == b"1"
        e1.close()
        e1.close()                                  # idempotent, does not drop e2's use
        assert e2.get_blob("t", b"b") == b"z" * (BS + 1)
        e2.put("t", b"c", b"3")
        assert e3.check().ok
    finally:
        e1.close()
        e2.close()
        e3.close()
    with Engine.open(str(store), create=False) as e:
        assert e.get("t", b"c") == b"3"


def _in_child(fn) -> int:
    """Run fn in a forked child; its exit code (0 = fn returned, 1 = it raised)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = fn() or 0
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_engine_used_after_fork_raises_busy(tmp_path):
    store = str(tmp_path / "store")
    e = Engine.open(store, block_size=BS)
    try:
        e.create("t")
        e.put("t", b"a", b"1")

        def child_uses_parent_handle():
            for call in (lambda: e.put("t", b"child", b"x"), lambda: e.get("t", b"a"),
                         lambda: e.gc(), lambda: e.reader().__enter__()):
                try:
                    call()
                except Busy:
                    continue
                except BaseException as exc:
                    print(f"child: {type(exc).__name__}: {exc}", file=sys.stderr)
                    return 2
                return 3                            # no error at all
            return 0

        assert _in_child(child_uses_parent_handle) == 0
        assert e.get("t", b"child") is None          # nothing leaked from the child
        e.put("t", b"b", b"2")                       # the parent's handle still works
        assert e.check().ok
    finally:
        e.close()


def test_forked_child_cannot_reopen_the_store_and_says_busy(tmp_path):
    """py-lmdb refuses to open, in a forked child, an environment its parent has
    open (txn.py documents: start workers with spawn or as subprocesses).  The
    child gets Busy with that advice -- not NotAStore -- and the parent is unharmed."""
    store = str(tmp_path / "store")
    e = Engine.open(store, block_size=BS)
    try:
        e.create("t")
        e.put("t", b"a", b"1")

        def child_reopens():
            try:
                Engine.open(store, create=False)
            except Busy as exc:
                return 0 if "spawn" in str(exc) else 4
            return 3

        with e.reader() as r:
            assert _in_child(child_reopens) == 0
            assert e.env.oldest_reader() is not None      # our view is still pinned
            assert e.get("t", b"a", view=r) == b"1"
        e.put("t", b"after", b"1")
        assert e.check().ok
    finally:
        e.close()


@pytest.mark.timeout(120)
def test_forked_child_exiting_does_not_unpin_the_parents_reader(tmp_path):
    """A library user forks while holding a read view; the child exits normally.
    The parent's view must still pin its blocks (docs/ARCHITECTURE.md §5)."""
    store = str(tmp_path / "store")
    seed, nb = 0xF0F0, 512
    e = Engine.open(store, block_size=BS, dedup=False)
    try:
        e.create("victim")
        e.put_blob("victim", b"big", _pattern_blob(seed, nb))
        e.create("filler")
        e.put_blob("filler", b"fill", b"\x5a" * (e.stats().free_blocks * BS))
        worker = _spawn("fork-exit-reader", store, "victim", "big", seed, nb)
        _expect(worker)
        e.remove("victim")
        e.gc()
        for i in range(3):
            e.put_blob("filler", b"new%d" % i, _pattern_blob(0xBAD0 + i, nb // 2))
            e.gc()
        _tell(worker, "go")
        _finish(worker)
    finally:
        e.close()


def test_forked_child_leaving_a_batch_does_not_commit_the_parents_txn(tmp_path):
    """Fork inside ``with engine.batch()``; the parent commits and goes on; the
    child then leaves the block.  The child must not commit (or abort) the
    inherited write transaction: that would rewrite the store as of the old
    batch under the parent's later commits."""
    store = str(tmp_path / "store")
    parent = os.getpid()
    rfd, wfd = os.pipe()
    e = Engine.open(store, block_size=BS)
    try:
        e.create("t")
        pid = None
        try:
            with e.batch():
                e.put("t", b"in-batch", b"1")
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    os.read(rfd, 1)         # until the parent committed more
        except Busy:
            if os.getpid() != parent:
                os._exit(0)                 # told it may not use the store: fine
            raise
        finally:
            if os.getpid() != parent:
                os._exit(0 if sys.exc_info()[0] is None else 1)
        for i in range(20):
            e.put("t", b"after%02d" % i, b"x" * 50)
        e.put_blob("t", b"blob", _pattern_blob(11, 8))
        os.write(wfd, b"g")
        _, status = os.waitpid(pid, 0)
        # 0: left the block without touching the parent's txn (or got Busy).
        # Today the child re-commits the inherited txn: LMDB asserts
        # 'pglast <= env->me_pglast' in mdb_freelist_save and SIGABRTs it.
        assert os.waitstatus_to_exitcode(status) == 0, os.waitstatus_to_exitcode(status)
    finally:
        e.close()
        os.close(rfd)
        os.close(wfd)
    with Engine.open(store, create=False) as e:
        assert e.get("t", b"in-batch") == b"1"
        missing = [i for i in range(20) if e.get("t", b"after%02d" % i) != b"x" * 50]
        assert not missing, f"commits lost after the child left the batch: {missing}"
        assert e.get_blob("t", b"blob") == _pattern_blob(11, 8)
        rep = e.check()
        assert rep.ok, str(rep)


# ============================================================ bad input
def test_non_empty_directory_is_not_a_store(tmp_path):
    d = tmp_path / "notastore"
    d.mkdir()
    (d / "somefile").write_text("hello")
    with pytest.raises(NotAStore):
        Engine.open(str(d))
    with pytest.raises(NotAStore):
        Engine.open(str(d), create=False)
    assert sorted(os.listdir(d)) == ["somefile"]     # nothing created in it
    with pytest.raises(NotFound, match="no store at"):       # absent: not found (issue 16)
        Engine.open(str(tmp_path / "missing"), create=False)
    assert not (tmp_path / "missing").exists()


def test_regular_file_is_not_a_store(tmp_path):
    f = tmp_path / "file"
    f.write_text("hello")
    with pytest.raises(NotAStore):
        Engine.open(str(f))
    with pytest.raises(NotAStore):
        Engine.open(str(f), create=False)


def _meta_env(store):
    return lmdb.open(os.path.join(store, "meta"), max_dbs=64, subdir=True)


def test_newer_format_raises_format_too_new(tmp_path):
    store = str(tmp_path / "store")
    with Engine.open(store, block_size=BS) as e:
        e.create("t")
        e.put("t", b"a", b"1")
    env = _meta_env(store)
    with env.begin(write=True) as t:
        meta = env.open_db(b"meta", txn=t)
        assert struct.unpack(">Q", t.get(b"format", db=meta))[0] == 3     # the current format
        t.put(b"format", struct.pack(">Q", 99), db=meta)
    env.close()
    with pytest.raises(FormatTooNew):
        Engine.open(store, create=False)
    with pytest.raises(FormatTooNew):
        Engine.open(store)
    # The failed opens left nothing open behind: fix the record in this same
    # process (py-lmdb refuses an environment open twice) and open again.
    env = _meta_env(store)
    with env.begin(write=True) as t:
        t.put(b"format", struct.pack(">Q", 3), db=env.open_db(b"meta", txn=t))
    env.close()
    with Engine.open(store, create=False) as e:
        assert e.get("t", b"a") == b"1"


def test_truncated_data_file_raises_corruption_at_open(tmp_path):
    store = str(tmp_path / "store")
    with Engine.open(store, block_size=BS) as e:
        e.create("t")
        e.put_blob("t", b"b", _pattern_blob(3, 16))
        committed = e.stats().total_blocks
    data = os.path.join(store, "pool.data")
    assert os.path.getsize(data) >= committed * BS
    os.truncate(data, (committed - 1) * BS)
    with pytest.raises(Corruption):
        Engine.open(store, create=False)
    os.truncate(data, 8 * BS)                         # even below the blocks in use
    with pytest.raises(Corruption):
        Engine.open(store, create=False)
    with pytest.raises(Corruption):
        Engine.open(store)


def test_flipped_node_bytes_raise_corruption_and_check_reports_it(tmp_path):
    store = str(tmp_path / "store")
    with Engine.open(store, block_size=BS) as e:
        e.create("t")
        e.put("t", b"a", b"1")
        e.put("t", b"b", b"2")
        assert e.check().ok
    env = _meta_env(store)
    with env.begin(write=True) as t:
        cat = env.open_db(b"catalog", txn=t)
        root = json.loads(bytes(t.get(b"t", db=cat)))["root"]
        nodes = env.open_db(b"nodes", txn=t)
        raw = bytearray(t.get(struct.pack(">Q", root), db=nodes))
        raw[len(raw) // 2] ^= 0x5A
        t.put(struct.pack(">Q", root), bytes(raw), db=nodes)
    env.close()
    # A fresh process: its node cache is cold.
    proc = _spawn("corrupt-read", store, "t", "a")
    out = _finish(proc)
    assert "get: Corruption" in out, out
    assert "check ok=False" in out and "node-damaged" in out, out
    # And in this process, after every handle was closed (the cache went with its Env).
    with Engine.open(store, create=False) as e:
        with pytest.raises(Corruption):
            e.get("t", b"a")
        rep = e.check()
        assert not rep.ok
        assert any(p.kind == "node-damaged" for p in rep.problems), str(rep)
