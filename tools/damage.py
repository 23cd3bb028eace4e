#!/usr/bin/env python3
"""Seeded corruption injection for tests (the store must be CLOSED by everyone).

Each function injects exactly one kind of fault, the one a given check is
meant to find, and returns a description of what it did.  They edit the
metadata through a raw ``Env`` write transaction -- bypassing every rule of
the B-tree, the pool and the filesystem -- or the data file directly.

    python tools/damage.py STORE flip-data [--block B] [--seed S]
    python tools/damage.py STORE flip-value DB [--seed S]      # nodes, noderc, pool.*, catalog
    python tools/damage.py STORE truncate-data BLOCKS
    python tools/damage.py STORE KIND [--seed S]               # one of TARGETED below

Targeted faults (``TARGETED``), each with the problem kind check reports:

    node-checksum     a bit flipped in a stored node          -> node-damaged
    node-refcount     a node's stored count changed           -> node-refcount
    node-leak         a valid node stored but unreachable     -> node-leak
    block-refcount    an owned block given count 2            -> block-refcount
    block-leak        a block allocated, referenced by nothing -> block-leak
    block-double-owned a referenced block put back on the free list -> block-double-owned
    dedup-mismatch    a dedup entry given a wrong digest      -> dedup-mismatch
    catalog-dangling  a catalog root set to a missing node    -> node-missing
    fs-nlink          a file's nlink changed                  -> fs (nlink)
    fs-dirent-no-index a directory index item deleted          -> fs (no matching index item)
    fs-overlap        an extent moved onto its predecessor    -> fs (overlapping extents)
"""
from __future__ import annotations

import argparse
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from blockstore import catalog  # noqa: E402
from blockstore.btree import values  # noqa: E402
from blockstore.btree.node import decode, encode  # noqa: E402
from blockstore.btree.store import NODERC, NODES  # noqa: E402
from blockstore.fs import items as I  # noqa: E402
from blockstore.txn import DATA_FILE, Env, u64  # noqa: E402

RAW_DBS = ("nodes", "noderc", "catalog", "pool.meta", "pool.free", "pool.pending",
           "pool.shared", "pool.dedup", "pool.dedup_rev", "pool.pending_rev")


def _flip(buf: bytes, rng: random.Random) -> tuple[bytes, int]:
    b = bytearray(buf)
    bit = rng.randrange(len(b) * 8)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b), bit


def _env(store) -> Env:
    return Env(os.fspath(store), create=False)


def _walk_nodes(t, nodes_db, root):
    """(node) of every node under root, depth first."""
    stack, seen = [root], set()
    while stack:
        nid = stack.pop()
        if not nid or nid in seen:
            continue
        seen.add(nid)
        n = decode(nid, t.get(u64(nid), db=nodes_db))
        yield n
        if n.level:
            stack.extend(n.vals)


def _tree_root(w, tree: str) -> int:
    return catalog.get(w, tree).root


def _referenced_blocks(w, tree: str) -> list[int]:
    out = []
    for n in _walk_nodes(w.t, w.db(NODES), _tree_root(w, tree)):
        if n.level == 0:
            for v in n.vals:
                r = values.refs(v)
                if r is not None:
                    out.extend(range(r[0], r[0] + r[1]))
    return sorted(set(out))


# ---------------------------------------------------------------- raw damage
def flip_data(store, seed: int = 0, block: int | None = None) -> str:
    """Flip one bit in the data file, inside ``block`` (default: a random block
    referenced by some tree)."""
    rng = random.Random(seed)
    env = _env(store)
    try:
        if block is None:
            with env.read() as r:
                blocks = sorted({b for rec in catalog.records(r) for b in _referenced_blocks(r, rec.name)})
            block = rng.choice(blocks)
        bs = env.block_size
    finally:
        env.close()
    path = os.path.join(os.fspath(store), DATA_FILE)
    with open(path, "r+b") as f:
        f.seek(block * bs)
        buf, bit = _flip(f.read(bs), rng)
        f.seek(block * bs)
        f.write(buf)
    return f"flipped bit {bit} of block {block}"


def flip_value(store, db: str, seed: int = 0) -> str:
    """Flip one bit in the value of a random key of named database ``db``."""
    if db not in RAW_DBS:
        raise SystemExit(f"db must be one of {', '.join(RAW_DBS)}")
    rng = random.Random(seed)
    env = _env(store)
    try:
        with env.write() as w:
            handle = env.pool.dbs.__dict__[db[5:]] if db.startswith("pool.") else w.db(db)
            items = [(bytes(k), bytes(v)) for k, v in w.t.cursor(db=handle) if len(v)]
            if not items:
                raise SystemExit(f"{db} has no non-empty values")
            k, v = rng.choice(items)
            nv, bit = _flip(v, rng)
            w.t.put(k, nv, db=handle)
    finally:
        env.close()
    return f"flipped bit {bit} of the value of key {k.hex()} in {db}"


def truncate_data(store, blocks: int) -> str:
    path = os.path.join(os.fspath(store), DATA_FILE)
    env = _env(store)
    bs = env.block_size
    env.close()
    size = os.path.getsize(path)
    os.truncate(path, max(0, size - blocks * bs))
    return f"cut {blocks} blocks off the data file"


# ---------------------------------------------------------------- targeted damage
def _leaf_edit(store, tree: str, pick, edit) -> str:
    """Find the first leaf item of ``tree`` with pick(key, value) true and replace
    the leaf by edit(keys, vals, i) -> message, re-encoded with a valid checksum."""
    env = _env(store)
    try:
        with env.write() as w:
            ndb = w.db(NODES)
            for n in _walk_nodes(w.t, ndb, _tree_root(w, tree)):
                if n.level:
                    continue
                for i, (k, v) in enumerate(zip(n.keys, n.vals)):
                    if pick(bytes(k), bytes(v)):
                        keys, vals = [bytes(x) for x in n.keys], [bytes(x) for x in n.vals]
                        msg = edit(keys, vals, i)
                        n.keys, n.vals = keys, vals
                        n.recount()
                        w.t.put(u64(n.id), encode(n), db=ndb)
                        return msg + f" (node {n.id} of tree {tree})"
            raise SystemExit(f"no matching item in tree {tree}")
    finally:
        env.close()


def fs_nlink(store, tree: str, seed: int = 0) -> str:
    def pick(k, v):
        ino, typ, _ = I.split(k)
        return typ == I.INODE and ino != I.ROOT_INO and \
            I.Inode.unpack(ino, values.payload(v)).is_reg

    def edit(keys, vals, i):
        ino = I.split(keys[i])[0]
        node = I.Inode.unpack(ino, values.payload(vals[i]))
        node.nlink += 1
        vals[i] = values.plain(node.pack())
        return f"nlink of inode {ino} set to {node.nlink}"
    return _leaf_edit(store, tree, pick, edit)


def fs_dirent_no_index(store, tree: str, seed: int = 0) -> str:
    def edit(keys, vals, i):
        del keys[i], vals[i]
        return "deleted a DIR_INDEX item"
    return _leaf_edit(store, tree, lambda k, v: I.split(k)[1] == I.DIR_INDEX, edit)


def fs_overlap(store, tree: str, seed: int = 0) -> str:
    """Move the second extent of a file onto the first one's last block."""
    state = {}

    def pick(k, v):
        ino, typ, _ = I.split(k)
        if typ != I.EXTENT:
            return False
        if state.get("ino") == ino and I.extent_fblock(k) >= state["end"]:
            return True
        r = values.refs(v)
        state.update(ino=ino, end=I.extent_fblock(k) + r[1])
        return False

    def edit(keys, vals, i):
        ino = I.split(keys[i])[0]
        keys[i] = I.extent_key(ino, state["end"] - 1)
        return f"extent of inode {ino} moved to file block {state['end'] - 1}"
    return _leaf_edit(store, tree, pick, edit)


def _one_tx(store, fn) -> str:
    env = _env(store)
    try:
        with env.write() as w:
            return fn(w)
    finally:
        env.close()


def node_checksum(store, tree: str, seed: int = 0) -> str:
    rng = random.Random(seed)

    def fn(w):
        nodes = list(_walk_nodes(w.t, w.db(NODES), _tree_root(w, tree)))
        n = rng.choice(nodes)
        raw = bytes(w.t.get(u64(n.id), db=w.db(NODES)))
        raw2, bit = _flip(raw[8:], rng)            # past the header: the crc must catch it
        w.t.put(u64(n.id), raw[:8] + raw2, db=w.db(NODES))
        return f"flipped bit {bit} of node {n.id}"
    return _one_tx(store, fn)


def node_refcount(store, tree: str, seed: int = 0) -> str:
    def fn(w):
        root = _tree_root(w, tree)
        raw = w.t.get(u64(root), db=w.db(NODERC))
        c = 1 if raw is None else int.from_bytes(raw, "big")
        w.t.put(u64(root), (c + 3).to_bytes(4, "big"), db=w.db(NODERC))
        return f"count of node {root} set to {c + 3}"
    return _one_tx(store, fn)


def node_leak(store, tree: str = "", seed: int = 0) -> str:
    def fn(w):
        from blockstore.btree.node import Node
        nid = w.meta_int(b"btree.next_node", 1)
        w.meta_put_int(b"btree.next_node", nid + 1)
        w.t.put(u64(nid), encode(Node(nid, 0, [b"leaked"], [values.plain(b"x")])), db=w.db(NODES))
        return f"stored unreachable node {nid}"
    return _one_tx(store, fn)


def block_refcount(store, tree: str, seed: int = 0) -> str:
    def fn(w):
        b = random.Random(seed).choice(_referenced_blocks(w, tree))
        w.env.pool.refs.adjust(w.t, b, 1, 1)   # the pool's table itself, past its checks
        return f"block {b} given one reference too many"
    return _one_tx(store, fn)


def block_leak(store, tree: str = "", seed: int = 0) -> str:
    def fn(w):
        runs = w.blocks.write(random.Random(seed).randbytes(w.blocks.block_size))
        return f"allocated unreferenced block {runs[0][0]}"
    return _one_tx(store, fn)


def block_double_owned(store, tree: str, seed: int = 0) -> str:
    env = _env(store)
    try:
        with env.write() as w:
            blocks = [b for b in _referenced_blocks(w, tree) if w.blocks.refcount(b) == 1]
            b = random.Random(seed).choice(blocks)
            w.blocks.dec(b, 1)              # -> pending under this txn
            tid = w.t.id()
        with env.write() as w:
            w.blocks.release_pending(tid)    # -> free while still referenced
        return f"referenced block {b} put on the free list"
    finally:
        env.close()


def dedup_mismatch(store, tree: str, seed: int = 0) -> str:
    def fn(w):
        entries = list(w.blocks.dedup_entries())
        if not entries:
            raise SystemExit("no dedup entries (is dedup on?)")
        digest, b = random.Random(seed).choice(entries)
        w.blocks.forget_dedup(b, 1)
        w.env.pool.index.add(w.t, bytes(32 - len(b"damage")) + b"damage", b)
        return f"dedup entry of block {b} given a wrong digest"
    return _one_tx(store, fn)


def catalog_dangling(store, tree: str, seed: int = 0) -> str:
    def fn(w):
        rec = catalog.get(w, tree)
        missing = w.meta_int(b"btree.next_node", 1) + 1000
        old, rec.root = rec.root, missing
        catalog.put(w, rec)
        return f"root of {tree} changed from {old} to missing node {missing}"
    return _one_tx(store, fn)


TARGETED = {
    "node-checksum": node_checksum, "node-refcount": node_refcount, "node-leak": node_leak,
    "block-refcount": block_refcount, "block-leak": block_leak,
    "block-double-owned": block_double_owned, "dedup-mismatch": dedup_mismatch,
    "catalog-dangling": catalog_dangling, "fs-nlink": fs_nlink,
    "fs-dirent-no-index": fs_dirent_no_index, "fs-overlap": fs_overlap,
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="inject seeded corruption into a closed store")
    ap.add_argument("store")
    ap.add_argument("what", choices=["flip-data", "flip-value", "truncate-data", *TARGETED])
    ap.add_argument("arg", nargs="?", help="DB for flip-value, BLOCKS for truncate-data")
    ap.add_argument("--tree", default=None, help="tree for the targeted faults")
    ap.add_argument("--block", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.what == "flip-data":
        msg = flip_data(a.store, a.seed, a.block)
    elif a.what == "flip-value":
        msg = flip_value(a.store, a.arg, a.seed)
    elif a.what == "truncate-data":
        msg = truncate_data(a.store, int(a.arg))
    else:
        msg = TARGETED[a.what](a.store, a.tree or "", a.seed)
    print(msg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
