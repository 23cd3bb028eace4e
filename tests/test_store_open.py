"""Opening a store: what may create one, and damaged metadata refused with a
message (never re-created empty over its pool, never a signal death or an
internal error).  The damaged-store runs go through the CLI in a subprocess
bounded in time and memory (``_bounded``)."""
from __future__ import annotations

import hashlib
import os
import random
import shutil
import struct

import pytest

from blockstore import Store
from blockstore import errors as E

from _bounded import clean_end, cli

CORRUPTION = E.Corruption.exit_code
NOT_FOUND = E.NotFound.exit_code


def _build(path) -> dict:
    """A store with two snapshots and a clone: inline files, multi-block files."""
    rng = random.Random(5)
    files = {}
    with Store.open(path) as s:
        s.create("c")
        with s.fs("c") as fs:
            fs.makedirs("/etc/app")
            for i in range(60):
                data = rng.randbytes(rng.choice((30, 700, 5000, 40000)))
                fs.write_bytes(f"/etc/app/f{i}", data)
                files[f"/etc/app/f{i}"] = data
        s.commit("c", "base")
        with s.fs("c") as fs:
            fs.write_bytes("/new", b"x" * 9000)
        s.commit("c", "top")
    return files


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    path = tmp_path_factory.mktemp("pristine") / "store"
    files = _build(path)
    return path, files


def _copy(pristine, tmp_path):
    dst = tmp_path / "store"
    shutil.copytree(pristine[0], dst)
    return dst


def _stderr(r) -> str:
    return r.stderr.decode(errors="replace")


def _restore_meta_and_check(pristine, store) -> None:
    """Put the undamaged metadata back: the store must then pass check --scrub
    (nothing was written over its pool while the metadata was damaged)."""
    shutil.rmtree(store / "meta")
    shutil.copytree(pristine[0] / "meta", store / "meta")
    r = cli(store, "check", "--scrub")
    assert r.returncode == 0, (r.stdout, r.stderr)


# -- item 3: a store with a pool but no metadata is damaged, never new ---------------

@pytest.mark.parametrize("how", ["empty", "missing"])
def test_lost_metadata_is_refused_not_recreated(pristine, tmp_path, how):
    store = _copy(pristine, tmp_path)
    mdb = store / "meta" / "data.mdb"
    if how == "empty":
        os.truncate(mdb, 0)
    else:
        os.unlink(mdb)
    pool_before = _digest(store / "pool.data")
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(100_000))
    for args in (["ls"], ["check"], ["import", src, "new"], ["cat", "base:/etc/app/f1"]):
        r = cli(store, *args)
        assert not clean_end(r, (CORRUPTION,)), (args, clean_end(r, (CORRUPTION,)))
        assert "data.mdb" in _stderr(r) and "pool" in _stderr(r), (args, _stderr(r))
    assert _digest(store / "pool.data") == pool_before      # nothing written over the pool
    assert (how == "empty") == mdb.exists() and (not mdb.exists() or mdb.stat().st_size == 0)
    _restore_meta_and_check(pristine, store)


def test_check_names_the_damage(pristine, tmp_path):
    store = _copy(pristine, tmp_path)
    os.truncate(store / "meta" / "data.mdb", 0)
    r = cli(store, "check")
    assert r.returncode == CORRUPTION
    assert "problem:" in r.stdout.decode() and "data.mdb" in r.stdout.decode(), r.stdout
    _restore_meta_and_check(pristine, store)


def test_creation_only_in_an_empty_or_absent_directory(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(empty, "init").returncode == 0
    assert cli(tmp_path / "absent" / "deeper", "init").returncode == 0
    for made in (empty, tmp_path / "absent" / "deeper"):
        assert cli(made, "check").returncode == 0
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "pool.data").write_bytes(b"\1" * 8192)
    r = cli(busy, "init")
    assert r.returncode in (CORRUPTION, E.NotAStore.exit_code), _stderr(r)
    assert not (busy / "meta").exists()


# -- item 4: truncated or flipped LMDB metadata ------------------------------------------

def test_truncated_metadata_is_corruption_not_sigbus(pristine, tmp_path):
    store = _copy(pristine, tmp_path)
    mdb = store / "meta" / "data.mdb"
    size = mdb.stat().st_size
    for keep in (size // 2 // 4096 * 4096, 3 * 4096, 4096 + 100):
        os.truncate(mdb, keep)
        for args in (["ls"], ["check"], ["cat", "base:/etc/app/f1"]):
            r = cli(store, *args)
            assert not clean_end(r, (CORRUPTION,)), (keep, args, clean_end(r, (CORRUPTION,)))
            assert "data.mdb" in _stderr(r), _stderr(r)
    _restore_meta_and_check(pristine, store)


def test_missing_meta_record_is_corruption(pristine, tmp_path):
    """A record every store has (here the block size), gone from the meta table
    (a flipped key byte does that): Corruption naming it, not a TypeError."""
    import lmdb
    store = _copy(pristine, tmp_path)
    env = lmdb.open(str(store / "meta"), max_dbs=32)
    with env.begin(write=True) as t:
        assert t.delete(b"block_size", db=env.open_db(b"meta", txn=t))
    env.close()
    for args in (["ls"], ["check"]):
        r = cli(store, *args)
        assert not clean_end(r, (CORRUPTION,)), (args, clean_end(r, (CORRUPTION,)))
        assert "block_size" in _stderr(r), _stderr(r)
    _restore_meta_and_check(pristine, store)


def _used_bytes(mdb) -> int:
    """Bytes of data.mdb that LMDB uses (pages up to the newest meta's last page)."""
    raw = open(mdb, "rb").read(2 * 4096 + 4096)
    psize = struct.unpack_from("<I", raw, 16 + 24)[0]
    metas = [struct.unpack_from("<QQ", raw, i * psize + 136) for i in (0, 1)]
    last_pg, _ = max(metas, key=lambda m: m[1])
    return (last_pg + 1) * psize


def _unwritten_tail(store) -> None:
    """One LMDB transaction on the store's metadata that stores a value of
    overflow pages and deletes it again: the pages it took at the end of the
    file are freed in the same transaction, so LMDB never writes them (its
    page flush skips them) while the meta page's last page counts them.  The
    store's content is unchanged: a healthy store whose data.mdb ends before
    (last page + 1) x page size."""
    import lmdb
    env = lmdb.open(str(store / "meta"), max_dbs=32)
    with env.begin(write=True) as t:
        db = env.open_db(b"meta", txn=t)
        t.put(b"scratch", os.urandom(200_000), db=db)
        assert t.delete(b"scratch", db=db)
    env.close()


def test_metadata_shorter_than_its_last_page_but_healthy_opens(pristine, tmp_path):
    store = _copy(pristine, tmp_path)
    mdb = store / "meta" / "data.mdb"
    _unwritten_tail(store)
    assert mdb.stat().st_size < _used_bytes(mdb), "the tail was written after all"
    with Store.open(store, create=False) as s:
        assert s.check().ok
        assert s.fs("base").read_bytes("/etc/app/f3") == pristine[1]["/etc/app/f3"]
    r = cli(store, "check")
    assert r.returncode == 0, (r.stdout, r.stderr)


def test_short_metadata_cut_into_used_pages_is_still_refused(pristine, tmp_path):
    """The same healthy short file, then cut to half: pages in use are gone."""
    store = _copy(pristine, tmp_path)
    mdb = store / "meta" / "data.mdb"
    _unwritten_tail(store)
    os.truncate(mdb, mdb.stat().st_size // 2 // 4096 * 4096)
    r = cli(store, "check")
    assert not clean_end(r, (CORRUPTION,)), clean_end(r, (CORRUPTION,))
    assert "data.mdb" in _stderr(r) and "truncated" in _stderr(r), _stderr(r)


def test_random_byte_flips_end_in_ok_or_corruption(pristine, tmp_path):
    """Seeded: each round flips one byte of a fresh copy's data.mdb and runs
    check (which opens the store and reads all of it); it must exit 0 or with
    the Corruption code, never by a signal or with an internal error."""
    rng = random.Random(1234)
    used = _used_bytes(pristine[0] / "meta" / "data.mdb")
    bad = []
    for i in range(40):
        store = tmp_path / f"s{i}"
        shutil.copytree(pristine[0], store)
        mdb = store / "meta" / "data.mdb"
        off = rng.randrange(used)
        with open(mdb, "r+b") as f:
            f.seek(off)
            b = f.read(1)[0]
            f.seek(off)
            f.write(bytes([b ^ (1 << rng.randrange(8))]))
        why = clean_end(cli(store, "check"), (0, CORRUPTION))
        if why:
            bad.append(f"round {i}, byte {off}: {why}")
        shutil.rmtree(store)
    assert not bad, "\n".join(bad)


# -- issue 16: read-only commands do not create a store -----------------------------------

@pytest.mark.parametrize("args", [["ls"], ["check"], ["df"], ["du"], ["info", "x"],
                                  ["cat", "x:/y"], ["files", "x"], ["diff", "a", "b"],
                                  ["gc"]])
def test_read_only_commands_do_not_create_a_store(tmp_path, args):
    store = tmp_path / "typo"
    r = cli(store, *args)
    assert r.returncode == NOT_FOUND, (args, r.returncode, _stderr(r))
    assert f"no store at {store}" in _stderr(r), _stderr(r)
    assert not store.exists()


def test_writing_commands_still_create_a_store(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("hello")
    store = tmp_path / "new"
    assert cli(store, "import", src, "base").returncode == 0
    r = cli(store, "cat", "base:/f")
    assert r.returncode == 0 and r.stdout == b"hello"
    assert cli(store, "check").returncode == 0
    assert cli(tmp_path / "vol", "volume", "create", "v").returncode == 0
    assert cli(tmp_path / "vol", "check").returncode == 0


def test_closed_store_raises_blockstore_error(tmp_path):
    s = Store.open(tmp_path / "s")
    s.create("c")
    s.close()
    for call in (lambda: s.list(), lambda: s.info("c"), lambda: s.create("d"),
                 lambda: s.fs("c"), lambda: s.check(), lambda: s.trees.list()):
        with pytest.raises(E.BlockstoreError) as ei:
            call()
        assert "closed" in str(ei.value)
    with Store.open(tmp_path / "s", create=False) as again:
        assert [r.name for r in again.list()] == ["c"]
        assert again.check().ok


def test_closed_store_while_another_handle_is_open(tmp_path):
    a = Store.open(tmp_path / "s")
    b = Store.open(tmp_path / "s")
    a.close()
    with pytest.raises(E.BlockstoreError, match="closed"):
        a.list()
    b.create("c")
    assert b.check().ok
    b.close()


# -- item 12: permission problems are reported as such ---------------------------------------

@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="acting as another user needs root and setpriv")
@pytest.mark.parametrize("modes", ["private", "readable"])
def test_other_users_store_gives_a_permission_error(tmp_path, modes):
    """The store belongs to uid 12345; the CLI runs without the capabilities that
    let root ignore permissions.  "readable": every file readable by all,
    writable by the owner only (a read-only store for everyone else)."""
    store = tmp_path / "store"
    _build(store)
    for dirpath, dirs, files in os.walk(store):
        os.chown(dirpath, 12345, 12345)
        os.chmod(dirpath, 0o755 if modes == "readable" else 0o700)
        for f in files:
            os.chown(os.path.join(dirpath, f), 12345, 12345)
            os.chmod(os.path.join(dirpath, f), 0o644 if modes == "readable" else 0o600)
    os.chmod(tmp_path, 0o755)
    for args in (["ls"], ["check"], ["import", tmp_path, "x"]):
        r = cli(store, *args, other_user=True)
        err = _stderr(r)
        assert r.returncode == E.PermissionDenied.exit_code, (args, r.returncode, err)
        assert "init" not in err and "ermission denied" in err, err
        assert "snapshots never change" not in err, err
    for dirpath, dirs, files in os.walk(store):
        os.chown(dirpath, 0, 0)
        for f in files:
            os.chown(os.path.join(dirpath, f), 0, 0)
    assert cli(store, "check", "--repair").returncode == 0      # the loose modes of "readable"
    assert cli(store, "check").returncode == 0


# -- item 12: a full disk during a bulk import is a full disk ---------------------------------

@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_bulk_import_on_a_full_disk_says_so(tmpfs, tmp_path):
    small = tmpfs("16m")
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"f{i}").write_bytes(os.urandom(4 << 20))
    r = cli(small / "s", "import", src, "big")
    err = _stderr(r)
    assert r.returncode == E.NoSpace.exit_code, err
    assert "metadata map" not in err and ("full" in err or "no space" in err.lower()), err
    assert cli(small / "s", "check").returncode == 0
