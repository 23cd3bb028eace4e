"""``Store.usage`` is exact, checked against brute force over random histories.

A seeded random history (import, clone, write, overwrite, truncate, hard
links, large xattrs, commit, remove, gc; dedup on and off) builds a store.
Then for every tree T:

* exclusive == the pool bytes freed when T is removed and gc runs, measured
  with ``df()`` on a byte copy of the store (the original is not touched);
* referenced == bytes of the distinct pool blocks named by T's items (a full
  scan of T's key range);
* shared == referenced - exclusive;
* logical == sum of the sizes of T's regular files and symlinks (each inode
  once, hard links included once), from an os-like walk.

More histories: BLOCKSTORE_USAGE_SEEDS=200 pytest tests/test_usage.py
"""
from __future__ import annotations

import os
import random
import shutil
import stat as S
import tempfile

import pytest

from blockstore import Store
from blockstore import catalog
from blockstore.btree import tree as bt
from blockstore.btree import values
from blockstore.btree.store import NodeStore

BS = 4096


def _content(rnd: random.Random) -> bytes:
    kind = rnd.choice(["small", "blocks", "zeros", "repeat", "mixed"])
    if kind == "small":
        return rnd.randbytes(rnd.randrange(0, 960))
    if kind == "blocks":
        return rnd.randbytes(rnd.randrange(1, 6) * BS + rnd.randrange(0, BS))
    if kind == "zeros":
        return bytes(rnd.randrange(1, 4) * BS)
    if kind == "repeat":                # identical blocks: dedup shares them when on
        return (b"R" * BS) * rnd.randrange(1, 4)
    return rnd.randbytes(BS) + bytes(BS) + b"R" * BS + rnd.randbytes(rnd.randrange(1, 500))


def _make_host_tree(rnd: random.Random, root: str) -> None:
    os.makedirs(root)
    for i in range(rnd.randrange(3, 8)):
        sub = os.path.join(root, f"d{i % 3}")
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"f{i}"), "wb") as fh:
            fh.write(_content(rnd))
    with open(os.path.join(root, "always"), "wb") as fh:     # at least 3 blocks to share
        fh.write(rnd.randbytes(3 * BS))
    os.symlink("d0", os.path.join(root, "link"))


def _mutate(rnd: random.Random, fs) -> None:
    """A few random changes to a writable tree."""
    files = [os.path.join(d, f) for d, _, fs_ in fs.walk("/") for f in fs_
             if S.S_ISREG(fs.lstat(os.path.join(d, f)).st_mode)]
    for _ in range(rnd.randrange(1, 5)):
        op = rnd.choice(["write", "overwrite", "truncate", "new", "link", "unlink", "xattr"])
        if op == "new" or not files:
            p = f"/n{rnd.randrange(1000)}"
            fs.write_bytes(p, _content(rnd))
            files.append(p)
            continue
        p = rnd.choice(files)
        if op == "write":
            with fs.open(p, "r+b") as fh:
                fh.seek(rnd.randrange(0, 6 * BS))
                fh.write(rnd.randbytes(rnd.choice([1, 100, BS, 2 * BS + 7])))
        elif op == "overwrite":
            fs.write_bytes(p, _content(rnd))
        elif op == "truncate":
            fs.truncate(p, rnd.randrange(0, 8 * BS))
        elif op == "link":
            q = f"/h{rnd.randrange(1000)}"
            if not fs.exists(q):
                fs.link(p, q)
                files.append(q)
        elif op == "unlink":
            fs.unlink(p)
            files.remove(p)
        else:                           # large xattr values live in pool blocks
            fs.setxattr(p, "user.big", rnd.randbytes(rnd.choice([10, 5000, 20000])))


def build_history(store, rnd: random.Random, work: str) -> None:
    base = os.path.join(work, "src")
    _make_host_tree(rnd, base)
    store.import_dir(base, "img")
    snaps, clones, n = ["img"], [], 0
    for _ in range(rnd.randrange(6, 12)):
        n += 1
        op = rnd.choice(["clone", "clone", "mutate", "mutate", "mutate", "commit", "remove",
                         "volume", "gc"])
        if op == "clone" and not snaps:
            op = "commit"
        if op == "clone" or (op in ("mutate", "commit") and not clones):
            name = f"c{n}"
            store.clone(rnd.choice(snaps), name) if snaps else store.create(name)
            clones.append(name)
        elif op == "mutate":
            with store.fs(rnd.choice(clones)) as fs:
                _mutate(rnd, fs)
        elif op == "commit":
            name = f"s{n}"
            store.commit(rnd.choice(clones), name)
            snaps.append(name)
        elif op == "volume":
            name = f"v{n}"
            store.volume_create(name)
            with store.fs(name) as fs:
                _mutate(rnd, fs)
            clones.append(name)
        elif op == "remove" and len(clones) + len(snaps) > 2:
            victim = rnd.choice(clones + snaps)
            store.remove(victim, force=True)
            (clones if victim in clones else snaps).remove(victim)
        elif op == "gc":
            store.gc()
    if not snaps:
        store.commit(clones[0], "last")
        snaps.append("last")
    # End with a clone that shares its snapshot's blocks and owns a few of its own.
    store.clone(snaps[-1], "final")
    with store.fs("final") as fs:
        fs.write_bytes("/own", rnd.randbytes(2 * BS))


def brute_referenced(store, name: str) -> int:
    """Bytes of distinct pool blocks named by any item of the tree (full scan)."""
    blocks = set()
    with store.env.read() as r:
        for _, v in bt.iterate(NodeStore.of(r), catalog.get(r, name).root):
            ref = values.refs(v)
            if ref is not None:
                blocks.update(range(ref[0], ref[0] + ref[1]))
    return len(blocks) * store.block_size


def brute_logical(store, name: str) -> tuple[int, int]:
    """(sum of sizes of regular files and symlinks, number of them), one per inode."""
    seen = {}
    with store.fs(name) as fs:
        for d, dirs, files in fs.walk("/"):
            for f in files:
                st = fs.lstat(os.path.join(d, f))
                if S.S_ISREG(st.st_mode) or S.S_ISLNK(st.st_mode):
                    seen[st.st_ino] = st.st_size
    return sum(seen.values()), len(seen)


def freed_by_removing(store_path: str, name: str, scratch: str) -> int:
    """Pool bytes freed by remove(name, force) + gc, measured on a copy of the store."""
    copy = os.path.join(scratch, "copy")
    shutil.copytree(store_path, copy)
    try:
        with Store.open(copy, create=False) as c:
            before = c.df()
            c.remove(name, force=True)
            c.gc()
            after = c.df()
            assert after.pending_bytes == 0
            assert c.check().ok
            return before.used_bytes - after.used_bytes
    finally:
        shutil.rmtree(copy)


@pytest.mark.parametrize("dedup", [False, True])
@pytest.mark.parametrize("seed", range(int(os.environ.get("BLOCKSTORE_USAGE_SEEDS", "4"))))
def test_usage_matches_brute_force(tmp_path, seed, dedup):
    rnd = random.Random(seed * 1000 + dedup)
    path = str(tmp_path / "store")
    with Store.open(path, dedup=dedup) as store:
        build_history(store, rnd, str(tmp_path))
        assert store.check().ok
        names = [r.name for r in store.list()]
        got = {n: store.usage(n) for n in names}
        for n in names:
            u = got[n]
            assert u.referenced == brute_referenced(store, n), n
            assert (u.logical, u.files) == brute_logical(store, n), n
            assert u.shared == u.referenced - u.exclusive and 0 <= u.exclusive <= u.referenced
        final_parent = store.info("final").parent
        store.sync()
    scratch = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        for n in names:
            assert got[n].exclusive == freed_by_removing(path, n, scratch), n
    finally:
        shutil.rmtree(scratch)
    # "final" shares all of its snapshot's blocks and owns exactly the two it wrote.
    assert got["final"].exclusive == 2 * BS
    assert got["final"].shared == got[final_parent].referenced


def test_usage_of_identical_clones_and_after_divergence(tmp_path):
    """A fresh clone owns nothing; writes make exactly the new blocks exclusive and
    the snapshot's replaced blocks exclusive to the snapshot."""
    with Store.open(tmp_path / "s") as store:
        store.create("c")
        with store.fs("c") as fs:
            fs.write_bytes("/f", os.urandom(10 * BS))
        store.commit("c", "s1")
        store.remove("c")
        store.clone("s1", "a")
        assert store.usage("a").exclusive == 0 and store.usage("a").referenced == 10 * BS
        assert store.usage("s1").exclusive == 0          # a shares everything
        with store.fs("a") as fs:
            with fs.open("/f", "r+b") as fh:
                fh.seek(3 * BS)
                fh.write(os.urandom(2 * BS))
        ua, us = store.usage("a"), store.usage("s1")
        assert (ua.exclusive, ua.shared, ua.referenced) == (2 * BS, 8 * BS, 10 * BS)
        assert (us.exclusive, us.shared, us.referenced) == (2 * BS, 8 * BS, 10 * BS)
        assert store.check().ok
