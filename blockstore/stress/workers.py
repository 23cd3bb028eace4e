"""The processes of a stress run (started with the ``spawn`` method, never fork).

Writer ``w`` (its own ``random.Random(seed, w)``):
  owns one clone at a time (``c-w<w>-<n>``, mounting the shared volume
  ``vol<w % volumes>`` at ``/shared``) and its snapshots ``s-w<w>-<n>``; keeps a
  model ``{path: bytes}`` of the clone and of its own directory
  ``/shared/w<w>`` in the volume (writers share volumes, never files), and
  checks every read and every diff against it.  Operations: write, pwrite,
  truncate, unlink, rename, read, commit (with manifest), clone (switch to a
  new clone of one of its snapshots, remove the old clone), remove (oldest
  snapshot, force), vol_write, vol_read, diff, gc.
Reader ``r``: picks a random stress snapshot (its TreeView pins it, so a
  concurrent remove cannot change what it reads), checks the manifest
  against the label, the file set against the manifest and every file's
  SHA-256.

Each worker appends every operation to an op log and writes a JSON result
(counts, latencies, and on divergence or error the seed, worker, operation
number, message and the last operations of the log) to ``<outdir>/<role><i>.json``.
"""
from __future__ import annotations

import json
import os
import random
import time
import traceback

from . import content

FILES_PER_WRITER = 24
DIRS = ("/d0", "/d1", "/d2/sub")
KEEP_SNAPS = 4
LOG_TAIL = 300


class Divergence(AssertionError):
    """A read disagreed with the model or the manifest."""


class _Worker:
    def __init__(self, role, idx, store_path, seed, deadline, outdir):
        self.role, self.idx = role, idx
        self.store_path, self.seed, self.deadline, self.outdir = store_path, seed, deadline, outdir
        self.rng = random.Random(f"{seed}/{role}/{idx}")
        self.lat: dict[str, list[float]] = {}
        self.log: list[str] = []
        self.result = {"role": role, "idx": idx, "seed": seed, "ok": True}

    def timed(self, op, fn, *args):
        self.log.append(f"{len(self.log)} {op} {' '.join(map(_fmt, args))}"[:300])
        t0 = time.perf_counter()
        r = fn(*args)
        self.lat.setdefault(op, []).append((time.perf_counter() - t0) * 1000)
        return r

    def main(self):
        from blockstore import Store
        store = Store.open(self.store_path, create=False)
        try:
            self.setup(store)
            while time.time() < self.deadline:
                self.step(store)
        except Exception as exc:
            self.result.update(ok=False, kind="divergence" if isinstance(exc, Divergence) else "error",
                               message=f"{type(exc).__name__}: {exc}",
                               traceback=traceback.format_exc()[-4000:], op_number=len(self.log) - 1)
            logpath = os.path.join(self.outdir, f"{self.role}{self.idx}.oplog")
            with open(logpath, "w") as f:
                f.write("\n".join(self.log) + "\n")
            self.result["oplog"] = logpath
            self.result["oplog_tail"] = self.log[-40:]
        finally:
            try:
                self.teardown(store)
            finally:
                store.close()
        self.result["latencies_ms"] = self.lat
        self.result["ops"] = len(self.log)
        tmp = os.path.join(self.outdir, f".{self.role}{self.idx}.json")
        with open(tmp, "w") as f:
            json.dump(self.result, f)
        os.replace(tmp, os.path.join(self.outdir, f"{self.role}{self.idx}.json"))

    def setup(self, store):
        pass

    def teardown(self, store):
        pass


def _fmt(x) -> str:
    if isinstance(x, (bytes, bytearray)):
        return f"<{len(x)} bytes sha256 {content.sha(x)[:16]}>"
    if callable(x):
        return getattr(x, "desc", getattr(x, "__name__", "?"))
    return str(x)


def _expect(cond, msg):
    if not cond:
        raise Divergence(msg)


class Writer(_Worker):
    def __init__(self, *a, volumes=2):
        super().__init__("writer", *a)
        self.volume = f"vol{self.idx % volumes}"
        self.files: dict[str, bytes] = {}
        self.vfiles: dict[str, bytes] = {}
        self.snaps: list[tuple[str, dict]] = []      # (name, model at commit)
        self.n = 0
        self.fs = None

    def _name(self, kind):
        self.n += 1
        return f"{kind}-w{self.idx}-{self.n}"

    def setup(self, store):
        self.bs = store.block_size
        self.vdir = f"/shared/w{self.idx}"
        self.snaps.append(("base", self._base_model(store)))
        self.switch(store, "base")
        self.fs.makedirs(self.vdir, exist_ok=True)

    def _base_model(self, store):
        with store.fs("base") as fs:
            man = json.loads(fs.read_bytes(content.MANIFEST))
            return {p: fs.read_bytes(p) for p in man}

    def switch(self, store, snap):
        """A new clone of snap (with the volume mounted) replaces the current clone."""
        model = dict(next(m for n, m in self.snaps if n == snap))
        name = self._name("c")
        mounts = [{"type": "volume", "source": self.volume, "target": "/shared"}]
        self.timed("clone", store.clone, snap, name, mounts)
        old = self.fs
        self.fs, self.files, self.clone = store.fs(name), model, name
        if old is not None:
            old.close()
            self.timed("remove", store.remove, old.name)
        for d in DIRS:
            self.fs.makedirs(d, exist_ok=True)

    def teardown(self, store):
        if self.fs is not None:
            self.fs.close()

    def _path(self):
        return f"{self.rng.choice(DIRS)}/f{self.rng.randrange(FILES_PER_WRITER)}"

    def step(self, store):
        rng, fs = self.rng, self.fs
        r = rng.random()
        if r < 0.22:
            p, d = self._path(), content.gen_data(rng, self.bs)
            self.timed("write", fs.write_bytes, p, d)
            self.files[p] = d
        elif r < 0.30 and self.files:
            p = rng.choice(sorted(self.files))
            old = self.files[p]
            off = rng.randint(0, len(old))
            d = rng.randbytes(rng.choice((1, 100, self.bs, rng.randint(1, 3 * self.bs))))

            def pwrite():
                with fs.open(p, "r+b") as f:
                    f.seek(off)
                    f.write(d)
            pwrite.desc = f"{p} at {off}: {_fmt(d)}"
            self.timed("pwrite", pwrite)
            self.files[p] = old[:off] + d + old[off + len(d):]
        elif r < 0.34 and self.files:
            p = rng.choice(sorted(self.files))
            n = rng.randint(0, len(self.files[p]) + 2 * self.bs)
            self.timed("truncate", fs.truncate, p, n)
            old = self.files[p]
            self.files[p] = old[:n] + bytes(max(0, n - len(old)))
        elif r < 0.38 and self.files:
            p = rng.choice(sorted(self.files))
            self.timed("unlink", fs.unlink, p)
            del self.files[p]
        elif r < 0.42 and self.files:
            a, b = rng.choice(sorted(self.files)), self._path()
            self.timed("rename", fs.rename, a, b)
            self.files[b] = self.files.pop(a)
        elif r < 0.60:
            self.read_one(fs, self.files, "read")
        elif r < 0.67:
            self.commit(store)
        elif r < 0.70:
            self.switch(store, rng.choice([n for n, _ in self.snaps]))
        elif r < 0.73 and len(self.snaps) > KEEP_SNAPS:
            name, _ = self.snaps.pop(1 if self.snaps[0][0] == "base" else 0)
            self.timed("remove", store.remove, name, True)
        elif r < 0.83:
            p, d = f"{self.vdir}/v{rng.randrange(8)}", content.gen_data(rng, self.bs)
            self.timed("vol_write", fs.write_bytes, p, d)
            self.vfiles[p] = d
        elif r < 0.92:
            self.read_one(fs, self.vfiles, "vol_read")
        elif r < 0.97 and len(self.snaps) >= 2:
            self.diff(store)
        else:
            self.timed("gc", store.gc)

    def read_one(self, fs, model, op):
        if not model:
            return
        p = self.rng.choice(sorted(model))
        got = self.timed(op, fs.read_bytes, p)
        _expect(got == model[p], f"{op} {self.clone}:{p}: {len(got)} bytes sha {content.sha(got)[:16]}, "
                                 f"model {len(model[p])} bytes sha {content.sha(model[p])[:16]}")

    def commit(self, store):
        name = self._name("s")
        man = content.manifest_bytes(self.files)

        def do():
            self.fs.write_bytes(content.MANIFEST, man)
            store.commit(self.clone, name, labels={content.LABEL: "1", "manifest": content.sha(man)})
        do.desc = f"{self.clone} -> {name} manifest {_fmt(man)}"
        self.timed("commit", do)
        self.snaps.append((name, dict(self.files)))

    def diff(self, store):
        (a, ma), (b, mb) = self.rng.sample(self.snaps, 2)
        changes = self.timed("diff", store.diff, a, b)
        got = {c.path: c.kind for c in changes}

        def reported(p):
            # a file added or deleted with its whole directory is reported as the directory
            while p and p not in got:
                p = p.rsplit("/", 1)[0]
            return got.get(p)
        for p in set(ma) | set(mb):
            want = "A" if p not in ma else "D" if p not in mb else "C" if ma[p] != mb[p] else None
            if want is not None:
                _expect(reported(p) == want, f"diff {a} {b}: {p} reported {reported(p)}, model {want}")
            elif p in got and got[p] != "C":
                raise Divergence(f"diff {a} {b}: unchanged {p} reported {got[p]}")


class Reader(_Worker):
    def __init__(self, *a):
        super().__init__("reader", *a)

    def step(self, store):
        from blockstore.errors import NotFound
        snaps = [r.name for r in store.list(kind="snapshot", label={content.LABEL: "1"})]
        if not snaps:
            time.sleep(0.01)
            return
        name = self.rng.choice(snaps)
        try:
            fs = store.fs(name)
        except NotFound:
            self.lat.setdefault("vanished", []).append(0.0)
            return                       # removed between list and open: not a divergence
        with fs:
            run = lambda: self.verify(store, fs, name)  # noqa: E731
            run.desc = name
            self.timed("verify", run)

    def verify(self, store, fs, name):
        from blockstore.errors import NotFound
        man = fs.read_bytes(content.MANIFEST)
        label = None
        if self.rng.random() < 0.5:
            try:
                label = fs.store.info(name).labels.get("manifest")
            except NotFound:
                pass      # removed since it was opened: the pinned content is still checked

        if label is not None:
            _expect(content.sha(man) == label, f"snapshot {name}: manifest does not match its label")
        want = json.loads(man)
        have = set()
        for top, _dirs, files in fs.walk("/"):
            for f in files:
                have.add((top.rstrip("/") + "/" + f))
        have.discard(content.MANIFEST)
        _expect(have == set(want), f"snapshot {name}: files {sorted(have ^ set(want))[:5]} "
                                   f"differ from its manifest")
        for p, h in want.items():
            got = self.timed("snap_read", fs.read_bytes, p)
            _expect(content.sha(got) == h, f"snapshot {name}:{p}: content does not match the manifest")


def writer_main(idx, store_path, seed, deadline, outdir, volumes):
    Writer(idx, store_path, seed, deadline, outdir, volumes=volumes).main()


def reader_main(idx, store_path, seed, deadline, outdir):
    Reader(idx, store_path, seed, deadline, outdir).main()
