"""Subprocess workers and the pure in-memory model used by test_crash.py and
test_concurrency.py.

Run as ``python tests/_workers.py MODE ARGS...`` (always with sys.executable).
The model part (``Model``, ``step``, ``replay``) imports nothing from
blockstore: it is the independent oracle the crash test compares the store
against.  Only the ``run_*`` helpers and the worker modes touch the engine.

Protocol of the workers: they print ``ready`` (flushed) on stdout when they
reached the point the parent waits for, and read one line from stdin when
they must wait for the parent.
"""
from __future__ import annotations

import os
import random
import struct
import sys
import time
import zlib

BS = 4096                      # block size of every test store
KEYS = 48                      # plain keys per tree: b"k000".."k047"
BLOB_KEYS = 3                  # blob keys per tree: b"blob0".."blob2"
MAX_TREES = 10

# A few fixed block contents shared by many blobs (dedup hits, shared runs).
_DUP = [bytes([0x41 + i]) * BS for i in range(3)]
ZERO = bytes(BS)


def block_pattern(seed: int, idx: int, bs: int = BS) -> bytes:
    """A block identifying itself: 16-byte header (seed, index) repeated."""
    hdr = struct.pack(">QQ", seed & (2**64 - 1), idx)
    return hdr * (bs // 16)


def check_block(buf: bytes, seed: int, idx: int) -> bool:
    return buf == block_pattern(seed, idx, len(buf))


# ===================================================================== model
class Model:
    """trees: name -> [kind, {key: value}, {blob key: data}]; pure dicts."""

    def __init__(self):
        self.trees: dict[str, list] = {}

    def copy(self) -> "Model":
        m = Model()
        m.trees = {n: [k, dict(kv), dict(bl)] for n, (k, kv, bl) in self.trees.items()}
        return m

    def __eq__(self, other):
        return isinstance(other, Model) and self.trees == other.trees

    def apply(self, op) -> None:
        kind = op[0]
        tr = self.trees
        if kind == "create":
            tr[op[1]] = [op[2], {}, {}]
        elif kind == "put":
            tr[op[1]][1][op[2]] = op[3]
        elif kind == "put_many":
            tr[op[1]][1].update(op[2])
        elif kind == "delete":
            tr[op[1]][1].pop(op[2], None)
        elif kind == "put_blob":
            tr[op[1]][2][op[2]] = op[3]
        elif kind == "delete_blob":
            tr[op[1]][2].pop(op[2], None)
        elif kind in ("snapshot", "clone"):
            _, src, name = op[:3]
            k = "snapshot" if kind == "snapshot" else op[3]
            s = tr[src]
            tr[name] = [k, dict(s[1]), dict(s[2])]
        elif kind == "remove":
            del tr[op[1]]
        elif kind == "gc":
            pass
        else:
            raise AssertionError(op)


def _blob(rng: random.Random, i: int, j: int) -> bytes:
    nb = rng.randint(0, 9)
    parts = []
    for b in range(nb):
        r = rng.random()
        if r < 0.2:
            parts.append(ZERO)
        elif r < 0.45:
            parts.append(_DUP[rng.randrange(len(_DUP))])
        else:
            parts.append(block_pattern(i * 64 + j, b))
    tail = rng.choice([0, 0, 1, 100, BS - 1, rng.randrange(BS)])
    if tail:
        parts.append(bytes([0x61 + (i + j) % 26]) * tail)
    data = b"".join(parts)
    return data


def _gen_op(m: Model, rng: random.Random, i: int, j: int, in_batch: bool):
    writable = sorted(n for n, t in m.trees.items() if t[0] != "snapshot")
    names = sorted(m.trees)
    r = rng.random()
    if len(names) < 2 or not writable:
        return ("create", f"t{i}_{j}", rng.choice(["volume", "clone"]))
    if r < 0.30:
        t = rng.choice(writable)
        return ("put", t, b"k%03d" % rng.randrange(KEYS), rng.randbytes(rng.randrange(0, 120)))
    if r < 0.36:
        t = rng.choice(writable)
        items = {b"k%03d" % rng.randrange(KEYS): rng.randbytes(rng.randrange(0, 40))
                 for _ in range(rng.randint(1, 12))}
        return ("put_many", t, items)
    if r < 0.46:
        t = rng.choice(writable)
        keys = sorted(m.trees[t][1])
        k = rng.choice(keys) if keys and rng.random() < 0.85 else b"k%03d" % rng.randrange(KEYS)
        return ("delete", t, k)
    if r < 0.62:
        t = rng.choice(writable)
        return ("put_blob", t, b"blob%d" % rng.randrange(BLOB_KEYS), _blob(rng, i, j))
    if r < 0.66:
        t = rng.choice(writable)
        return ("delete_blob", t, b"blob%d" % rng.randrange(BLOB_KEYS))
    if r < 0.74 and len(names) < MAX_TREES:
        return ("snapshot", rng.choice(names), f"s{i}_{j}")
    if r < 0.80 and len(names) < MAX_TREES:
        return ("clone", rng.choice(names), f"c{i}_{j}", rng.choice(["clone", "volume"]))
    if r < 0.90 and (len(names) > 3 or len(names) >= MAX_TREES):
        victim = rng.choice(names)
        if victim in writable and len(writable) == 1:
            victim = rng.choice([n for n in names if n != victim])
        return ("remove", victim)
    if in_batch:
        t = rng.choice(writable)
        return ("put", t, b"k%03d" % rng.randrange(KEYS), b"b%d" % i)
    if len(names) >= MAX_TREES:
        return ("remove", rng.choice([n for n in names if n != writable[0]]))
    return ("gc",)


def step(m: Model, seed: int, i: int):
    """Generate transaction i from the model state and apply it to the model.
    Returns ("single", op) or ("batch", [ops])."""
    rng = random.Random(seed * 1_000_003 + i)
    if i == 0:
        op = ("create", "v0", "volume")
        m.apply(op)
        return ("single", op)
    if rng.random() < 0.18:
        ops = []
        for j in range(rng.randint(2, 7)):
            op = _gen_op(m, rng, i, j, True)
            m.apply(op)
            ops.append(op)
        return ("batch", ops)
    op = _gen_op(m, rng, i, 0, False)
    m.apply(op)
    return ("single", op)


def replay(seed: int, n: int) -> Model:
    """The model after transactions 0..n-1."""
    m = Model()
    for i in range(n):
        step(m, seed, i)
    return m


# ===================================================================== engine side
def run_op(e, op) -> None:
    kind = op[0]
    if kind == "create":
        e.create(op[1], kind=op[2])
    elif kind == "put":
        e.put(op[1], op[2], op[3])
    elif kind == "put_many":
        e.put_many(op[1], list(op[2].items()))
    elif kind == "delete":
        e.delete(op[1], op[2])
    elif kind == "put_blob":
        e.put_blob(op[1], op[2], op[3])
    elif kind == "delete_blob":
        e.delete_blob(op[1], op[2])
    elif kind == "snapshot":
        e.snapshot(op[1], op[2])
    elif kind == "clone":
        e.clone(op[1], op[2], kind=op[3])
    elif kind == "remove":
        e.remove(op[1])
    elif kind == "gc":
        e.gc(budget=7)          # small budget: several gc transactions per call
    else:
        raise AssertionError(op)


def run_txn(e, txn) -> None:
    how, body = txn
    if how == "single":
        run_op(e, body)
    else:
        with e.batch():
            for op in body:
                run_op(e, op)


BLOB_SIZE_SUFFIX = b"\x00" + b"\xff" * 8


def read_store(e) -> Model:
    """Everything visible in the store, in the model's shape (one read view)."""
    m = Model()
    with e.reader() as r:
        for rec in e.list(view=r):
            kv, blobs = {}, {}
            for k, v in e.items(rec.name, view=r):
                if b"\x00" not in k:
                    kv[k] = v
                elif k.endswith(BLOB_SIZE_SUFFIX):
                    bk = k[:-len(BLOB_SIZE_SUFFIX)]
                    blobs[bk] = e.get_blob(rec.name, bk, view=r)
            m.trees[rec.name] = [rec.kind, kv, blobs]
    return m


def describe_diff(have: Model, want: Model, limit: int = 8) -> str:
    out = []
    for n in sorted(set(have.trees) | set(want.trees)):
        a, b = have.trees.get(n), want.trees.get(n)
        if a is None or b is None:
            out.append(f"tree {n}: store {'absent' if a is None else 'present'}, "
                       f"model {'absent' if b is None else 'present'}")
            continue
        if a[0] != b[0]:
            out.append(f"tree {n}: kind {a[0]} vs model {b[0]}")
        for what, x, y in (("key", a[1], b[1]), ("blob", a[2], b[2])):
            for k in sorted(set(x) | set(y)):
                if x.get(k) != y.get(k):
                    xs = None if k not in x else len(x[k])
                    ys = None if k not in y else len(y[k])
                    out.append(f"tree {n} {what} {k!r}: store len {xs}, model len {ys}")
    return "; ".join(out[:limit]) + (" ..." if len(out) > limit else "")


# ===================================================================== worker modes
def _ready(msg: str = "ready") -> None:
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def _wait_parent() -> str:
    return sys.stdin.readline().strip()


def mode_crash_writer(store: str, seed: str, start: str, journal: str) -> None:
    """Run transactions start, start+1, ... forever; journal each after its commit."""
    from _engine import Engine
    seed_i, i = int(seed), int(start)
    m = replay(seed_i, i)
    e = Engine.open(store, create=False)
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    _ready()
    while True:
        txn = step(m, seed_i, i)
        run_txn(e, txn)
        os.write(fd, b"%d\n" % i)
        os.fsync(fd)
        i += 1


def mode_view_reader(store: str, tree: str, key: str, seed: str, nblocks: str) -> None:
    """Deferred reuse: hold a read view over a big blob across the parent's
    remove + gc + overwrite, then verify every block through the old view."""
    from blockstore import catalog
    from blockstore.btree import tree as bt, values
    from blockstore.btree.store import NodeStore
    from _engine import Engine
    seed_i, nb, k = int(seed), int(nblocks), key.encode()
    e = Engine.open(store, create=False)
    bad = []
    with e.reader() as r:
        # Partial read first, the way a streaming reader (FUSE, export) goes:
        # the first quarter of the blob's blocks, straight from the pool.
        ns = NodeStore.of(r)
        root = catalog.get(r, tree).root
        lo = k + b"\x00" + struct.pack(">Q", 0)
        hi = k + b"\x00" + struct.pack(">Q", nb // 4)
        seen = 0
        for ik, v in bt.iterate(ns, root, lo, hi):
            idx = struct.unpack(">Q", bytes(ik[len(k) + 1:]))[0]
            start, n = values.refs(v)
            n = min(n, nb // 4 - idx)               # runs may span far past the quarter
            data = r.blocks.read(start, n)
            for b in range(n):
                seen += 1
                if not check_block(data[b * BS:(b + 1) * BS], seed_i, idx + b):
                    bad.append(idx + b)
        if seen != nb // 4 or bad:
            print(f"partial read: {seen} blocks, bad {bad[:10]}", file=sys.stderr)
            sys.exit(3)
        _ready()
        if _wait_parent() != "go":
            sys.exit(4)
        # The tree is gone for everyone else now and its blocks freed; read it all.
        data = e.get_blob(tree, k, view=r)
        if data is None or len(data) != nb * BS:
            print(f"blob missing or short through the old view: "
                  f"{None if data is None else len(data)}", file=sys.stderr)
            sys.exit(5)
        for b in range(nb):
            if not check_block(data[b * BS:(b + 1) * BS], seed_i, b):
                bad.append(b)
    if bad:
        print(f"{len(bad)} blocks read someone else's bytes, first {bad[:10]}", file=sys.stderr)
        sys.exit(6)
    e.close()
    _ready("done")


def mode_fork_exit_reader(store: str, tree: str, key: str, seed: str, nblocks: str) -> None:
    """Hold a read view, fork a child that exits normally (interpreter shutdown,
    as a library user's child would), then verify the blob through the view
    after the parent removed the tree, ran gc and overwrote the pool."""
    from _engine import Engine
    seed_i, nb, k = int(seed), int(nblocks), key.encode()
    e = Engine.open(store, create=False)
    with e.reader() as r:
        assert e.get_blob(tree, k, view=r) is not None
        before = e.env.oldest_reader()
        pid = os.fork()
        if pid == 0:
            sys.exit(0)
        os.waitpid(pid, 0)
        print(f"reader slot before fork {before}, after the child exited "
              f"{e.env.oldest_reader()}", file=sys.stderr)
        _ready()
        if _wait_parent() != "go":
            sys.exit(4)
        data = e.get_blob(tree, k, view=r)
        bad = [b for b in range(nb)
               if not check_block(data[b * BS:(b + 1) * BS], seed_i, b)]
    if bad:
        print(f"{len(bad)} blocks read someone else's bytes, first {bad[:10]}", file=sys.stderr)
        sys.exit(6)
    _ready("done")


def mode_hold_reader(store: str, tree: str, key: str) -> None:
    """Open a read view, read a blob, report ready and hang (until SIGKILLed)."""
    from _engine import Engine
    e = Engine.open(store, create=False)
    with e.reader() as r:
        data = e.get_blob(tree, key.encode(), view=r)
        assert data
        _ready()
        while True:
            time.sleep(60)


def mode_writer(store: str, tag: str, ntx: str, trees: str) -> None:
    """Writer for the two-writers test: ntx transactions of puts (and a blob now
    and then) into each of the comma-separated trees, after a 'go' from the parent."""
    from _engine import Engine
    e = Engine.open(store, create=False)
    _ready()
    if _wait_parent() != "go":
        sys.exit(4)
    names = trees.split(",")
    for i in range(int(ntx)):
        t = names[i % len(names)]
        if i % 10 == 9:
            e.put_blob(t, b"%s-blob%05d" % (tag.encode(), i), block_pattern(zlib.crc32(tag.encode()), i) * 2)
        elif i % 25 == 24:
            e.gc()
        else:
            e.put(t, b"%s%05d" % (tag.encode(), i), b"v%d" % i)
    e.close()
    _ready("done")


def mode_lock_holder(store: str, tree: str, hold: str) -> None:
    """Hold the writer lock (an open batch) for ``hold`` seconds, then commit."""
    from _engine import Engine
    e = Engine.open(store, create=False)
    with e.batch():
        e.put(tree, b"holder", b"1")
        _ready()
        time.sleep(float(hold))
        e.put(tree, b"holder2", b"2")
        t_commit_start = time.time()
    _ready(f"committed {t_commit_start!r} {time.time()!r}")
    e.close()


def mode_timed_put(store: str, tree: str) -> None:
    from _engine import Engine
    e = Engine.open(store, create=False)
    _ready()
    if _wait_parent() != "go":
        sys.exit(4)
    t0 = time.time()
    e.put(tree, b"second", b"2")
    _ready(f"put {t0!r} {time.time()!r}")
    e.close()


def mode_kill_at(store: str, where: str) -> None:
    """SIGKILL ourselves at a named point of store creation (a failpoint)."""
    import signal

    from blockstore import txn as txnmod
    from _engine import Engine

    def die(*a, **k):
        os.kill(os.getpid(), signal.SIGKILL)

    opts = {}
    if where == "before-format":          # data.mdb exists, no format record yet
        txnmod.PoolDbs = type("P", (), {"open": staticmethod(die)})
    elif where == "before-datafile":      # format committed, pool.data not created yet
        opts["data_file"] = die
    else:
        raise AssertionError(where)
    Engine.open(store, block_size=BS, **opts)


def mode_corrupt_read(store: str, tree: str, key: str) -> None:
    """Fresh process (cold node cache): a get must raise Corruption; check must report it."""
    from _engine import Engine
    from blockstore.errors import Corruption
    e = Engine.open(store, create=False)
    try:
        v = e.get(tree, key.encode())
    except Corruption as exc:
        print(f"get: Corruption: {exc}")
    else:
        print(f"get: no error, value {v!r}")
    rep = e.check()
    print(f"check ok={rep.ok} kinds={sorted({p.kind for p in rep.problems})}")
    e.close()


MODES = {
    "crash-writer": mode_crash_writer,
    "view-reader": mode_view_reader,
    "hold-reader": mode_hold_reader,
    "fork-exit-reader": mode_fork_exit_reader,
    "writer": mode_writer,
    "lock-holder": mode_lock_holder,
    "timed-put": mode_timed_put,
    "kill-at": mode_kill_at,
    "corrupt-read": mode_corrupt_read,
}

WORKERS_PY = os.path.abspath(__file__)

if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
