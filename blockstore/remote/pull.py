"""pull: make a remote snapshot (and its ancestors) local, eagerly or lazily.

A pull first builds each missing snapshot of the chain from its item
stream in one write transaction (``Store.build_snapshot``): blocks the
local ancestors already hold (same SHA-256) are shared, every other block
is allocated absent.  A lazy pull stops there: reads fetch blocks on first
use.  An eager pull (and ``fill``) then fetches the absent blocks through a
pipeline (``fill``): parallel ranged GETs, each range verified against the
blocks' SHA-256 and written by the thread that received it, recorded in a
few write transactions.  A failed eager pull removes the snapshots it made,
so a retry starts clean; one killed midway is completed by the next pull.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import io
import mmap
import threading

import zstandard

from .. import errors
from ..api.treestream import (BlockFiller, SnapshotReader, absent_of, apply_delta, build_snapshot, canonical,
                              decode_items, delta_parent, encode_items, Item)
from . import layout
from .client import Remote
from .fetch import coalesce, parse_source, source

MAX_TREE_BYTES = 4 << 30          # an item stream larger than this is refused
FILL_RANGE = 8 << 20              # an eager fill's ranged GETs: up to a whole pack each
RECORD_BLOCKS = 1 << 16           # blocks recorded per write txn (256 MiB at 4 KiB)


def content_of(store, name: str) -> str:
    """The content id of a local snapshot: SHA-256 of its canonical item stream."""
    with SnapshotReader(store, name) as rd:
        items = [Item(it.key, it.payload, None, rd.digests(*it.run) if it.run else None)
                 for it in rd.items()]
    h = hashlib.sha256()
    for part in encode_items(canonical(items)):
        h.update(part)
    return h.hexdigest()


def _tree_raw(rm: Remote, content: str, name: str = "") -> bytes:
    """The uncompressed bytes of tree object ``content`` (a full stream or a delta)."""
    raw = rm.objects.get(layout.tree_key(content))
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)) as r:
            data = r.read(MAX_TREE_BYTES + 1)
    except zstandard.ZstdError as exc:
        raise errors.Corruption(f"the tree object of {name!r} does not decompress: {exc}") from None
    if len(data) > MAX_TREE_BYTES:
        raise errors.InvalidInput(f"the tree object of {name!r} is over {MAX_TREE_BYTES} bytes")
    return data


def _tree_items(rm: Remote, content: str, name: str, depth: int = 0) -> list[Item]:
    """The items of tree ``content``: a full stream, or a delta applied to its
    parent's items (fetched the same way); checked against the content id."""
    if depth > 512:
        raise errors.Corruption(f"the tree of {name!r} is a chain of more than 512 deltas")
    data = _tree_raw(rm, content, name)
    parent = delta_parent(data)
    if parent is None:
        items = decode_items(data)
        full = data
    else:
        items = apply_delta(data, _tree_items(rm, parent, name, depth + 1))
        full = b"".join(encode_items(items))
    if hashlib.sha256(full).hexdigest() != content:
        raise errors.Corruption(f"the tree object of {name!r} does not match its SHA-256")
    return items


def _tree(rm: Remote, m: dict) -> list[Item]:
    return _tree_items(rm, m["tree"], m["name"])


def _local_blocks(store, names: list[str]) -> dict[bytes, int]:
    out: dict[bytes, int] = {}
    for n in names:
        if not store.exists(n) or store.info(n).kind != "snapshot":
            continue
        with SnapshotReader(store, n) as rd:
            for it in rd.items():
                if it.run:
                    s, k = it.run
                    for i, d in enumerate(rd.digests(s, k)):
                        out.setdefault(d, s + i)
    return out


def fill(store, name: str, progress=None, threads: int = 8, remote: str | None = None,
         index: tuple[str, dict] | None = None, made: list | None = None) -> dict:
    """Fetch every absent block of tree ``name``; returns counts.

    A pipeline: ``threads`` ranged GETs (up to a whole pack each) run at
    once, and the thread that received a range verifies its blocks and
    writes them into the pool (``BlockFiller.write``: hashing and pwrite
    release the GIL); a recorder thread records the written blocks in
    batches of up to RECORD_BLOCKS blocks, one write transaction (one data
    sync) each, while this one keeps ranges in flight.  Bytes that fail
    their SHA-256 are never written (Corruption).  Killed midway, the blocks
    not yet recorded stay absent: the next fill fetches only those.

    ``index`` (remote name, SHA-256 -> location) and ``made`` (the absent
    runs ``build_snapshot`` made): an eager pull's, which plans its requests
    in one pass over the blocks instead of reading them back."""
    bs = store.block_size
    stats = {"blocks": 0, "bytes_received": 0}
    by_src: dict[str, list] = {}          # remote -> requests (pack, begin, end, runs)
    rest: set | None = None               # blocks to plan from their recorded source
    if made is not None and index is not None:
        rname, where = index
        reqs, rest = _plan_made(made, where, bs)
        by_src[rname] = reqs
        stats["blocks"] = sum(len(ds) for _, ds in made)
    missing = absent_of(store, name) if rest is None or rest else []
    if rest is not None:
        missing = [m for m in missing if m[0] in rest]
    else:
        stats["blocks"] = len(missing)
    todo: dict[str, list] = {}
    for b, d, src in missing:
        rname, loc = parse_source(src)
        todo.setdefault(remote or rname, []).append((b, d, loc))
    remotes = {n: Remote(store.path, n) for n in set(by_src) | set(todo)}
    for n, blocks in todo.items():
        by_src.setdefault(n, []).extend(_plan(remotes[n], blocks, bs))
    if not any(by_src.values()):
        return stats
    with BlockFiller(store) as filler, \
            cf.ThreadPoolExecutor(threads, thread_name_prefix="blockstore-fill") as ex:
        try:
            for n, reqs in by_src.items():
                if reqs:
                    stats["bytes_received"] += _fill_from(remotes[n], reqs, filler, ex, threads,
                                                          name, progress)
        except BaseException:
            ex.shutdown(wait=True, cancel_futures=True)
            raise
    return stats


def _plan_made(made: list, where: dict, bs: int) -> tuple[list, set]:
    """Requests for the absent runs a pull just made: consecutive blocks that lie
    one after the other in one pack are one range (up to FILL_RANGE); blocks
    the index does not list are returned apart, to go by their source.
    Cost: one index lookup (C level) and one comparison per block."""
    reqs: list = []
    rest: set = set()
    cur = None                              # [pack, begin, end, [[block, [sha], x, y]]]
    for s, ds in made:
        locs = list(map(where.get, ds))
        n, i = len(ds), 0
        while i < n:
            loc = locs[i]
            if loc is None or loc[2] != bs:
                rest.add(s + i)
                i += 1
                continue
            h, off, _ = loc
            if cur is not None and cur[0] == h and cur[2] == off and off + bs - cur[1] <= FILL_RANGE:
                room = (FILL_RANGE - (cur[2] - cur[1])) // bs
            else:
                cur = [h, off, off, []]
                reqs.append(cur)
                room = max(1, FILL_RANGE // bs)
            j, nxt, lim = i + 1, off + bs, min(n, i + room)
            while j < lim:                  # the blocks that follow in the same pack
                x = locs[j]
                if x is None or x[1] != nxt or x[0] != h or x[2] != bs:
                    break
                j += 1
                nxt += bs
            runs = cur[3]
            if runs and runs[-1][0] + len(runs[-1][1]) == s + i:
                runs[-1][1].extend(ds[i:j])
                runs[-1][3] += nxt - off
            else:
                runs.append([s + i, list(ds[i:j]), off - cur[1], nxt - cur[1]])
            cur[2] = nxt
            i = j
    return reqs, rest


def _plan(rm: Remote, todo: list, bs: int) -> list:
    """Requests for blocks [(block, sha256, location or None)]: located through
    the remote's index where the location is not known, neighbours in a pack
    coalesced (``coalesce``) into ranges of up to FILL_RANGE."""
    locs = []
    for i, (b, d, loc) in enumerate(todo):
        loc = loc if loc is not None else rm.locate(d)
        if loc is None:
            raise errors.NotFound(f"remote {rm.name!r} holds no block {d.hex()[:16]}...")
        if loc[2] != bs:
            raise errors.Corruption(f"remote {rm.name!r}: a block of pack {loc[0][:16]}... is "
                                    f"{loc[2]} bytes, not {bs}")
        locs.append((i, *loc))
    reqs = []
    for h, a, e, parts in coalesce(locs, FILL_RANGE):
        runs: list = []               # [start block, [sha256], begin, end]: one buffer slice each
        for i, off, n in parts:
            b, d, _ = todo[i]
            if runs and runs[-1][0] + len(runs[-1][1]) == b and runs[-1][3] == off - a:
                runs[-1][1].append(d)
                runs[-1][3] += n
            else:
                runs.append([b, [d], off - a, off - a + n])
        reqs.append([h, a, e, runs])
    return reqs


def fill_buffer(size: int) -> mmap.mmap:
    """A buffer for a fetched range: page-aligned (the pool writes it with
    O_DIRECT), private anonymous memory with transparent huge pages asked for
    (a fresh 8 MiB of 4 KiB shared-memory pages cost several times the copy
    into it in page faults)."""
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
    try:
        buf.madvise(mmap.MADV_HUGEPAGE)
    except (AttributeError, OSError):
        pass                        # no THP here: 4 KiB pages, still aligned
    return buf


def _fill_from(rm: Remote, reqs: list, filler: BlockFiller, ex: cf.Executor, threads: int,
               name: str, progress) -> int:
    bufs = threading.local()
    total = sum(len(r[1]) for q in reqs for r in q[3])

    def one(q):
        h, a, e, runs = q
        # each thread's buffer is mmap'd (page-aligned): the pool writes it past the
        # page cache; reused for the thread's next range once its blocks are written
        buf = getattr(bufs, "buf", None)
        if buf is None or len(buf) < e - a:
            buf = bufs.buf = fill_buffer(max(FILL_RANGE, e - a))
        data = memoryview(buf)[:e - a]
        rm.objects.get_range_into(layout.pack_key(h), a, data)
        return filler.write([(s, ds, data[x:y]) for s, ds, x, y in runs])

    todo = iter(reqs)
    live: set = set()
    pending: list = []
    npending = done = 0
    # Records run on a thread of their own, one at a time and in order, so this
    # thread keeps ranges in flight meanwhile: a record makes one LMDB call per
    # block, each releasing the GIL and waiting to take it back from the
    # fetching threads, so it takes far longer than its own CPU.  Once every
    # range is in flight a record starts whenever the recorder is idle, so what
    # is left to record when the last range lands (the pull's serial tail) is
    # small.
    recorder = cf.ThreadPoolExecutor(1, thread_name_prefix="blockstore-record")
    recording: cf.Future | None = None
    submitted = [0]

    def flush() -> None:
        nonlocal recording, pending, npending, done
        if recording is not None:
            done += recording.result()
        recording = recorder.submit(lambda w=pending, n=npending: (filler.record(w), n)[1])
        pending, npending = [], 0

    def report() -> None:
        if progress:
            progress(f"pull {name}: {done}/{total} blocks, "
                     f"{rm.objects.received / 2**20:.1f} MiB received")

    def submit() -> None:
        while len(live) < 2 * threads:
            q = next(todo, None)
            if q is None:
                return
            live.add(ex.submit(one, q))
            submitted[0] += 1
    try:
        submit()
        while live:
            finished, _ = cf.wait(live, return_when=cf.FIRST_COMPLETED)
            for f in finished:
                live.discard(f)
                w = f.result()
                pending.extend(w)
                npending += sum(len(x[1]) for x in w)
            submit()
            tail = submitted[0] == len(reqs)
            idle = recording is None or recording.done()
            if npending and (npending >= RECORD_BLOCKS or not live or (idle and tail)):
                flush()
                report()
        if recording is not None:
            done += recording.result()
            recording = None
            report()
    finally:
        recorder.shutdown(wait=True)
    return rm.objects.received


def pull(store, name: str, remote: str | None = None, *, lazy: bool = False,
         progress=None, threads: int = 8) -> dict:
    rm = Remote(store.path, remote)
    m = rm.manifest(name)
    if m is None:
        raise errors.NotFound(f"remote {rm.name!r} has no snapshot {name!r}")
    if m["block_size"] != store.block_size:
        raise errors.InvalidInput(f"remote snapshot {name!r} has {m['block_size']}-byte blocks; "
                                  f"this store has {store.block_size}-byte blocks")
    chain = [name] + list(m["chain"])
    stats = {"remote": rm.name, "snapshots": [], "present": [], "absent_blocks": 0,
             "bytes_received": 0}
    made: list[str] = []
    absent_made: dict[str, list] = {}      # name -> the absent runs its build made
    index = None          # the remote's block index, loaded when a tree is built
    # the index is loaded on a thread of its own from the first tree to build on: an
    # eager pull's build needs only the remote's name, so the index's many small GETs
    # overlap fetching, checking and building the tree (a lazy one waits for it)
    loader = cf.ThreadPoolExecutor(1, thread_name_prefix="blockstore-index")
    loading: cf.Future | None = None
    try:
        for n in reversed(chain):
            mm = m if n == name else rm.manifest(n)
            if mm is None:
                if n == name:
                    raise errors.NotFound(f"remote {rm.name!r} has no snapshot {n!r}")
                continue                   # an ancestor never pushed: lineage stops here
            if store.exists(n):
                if store.info(n).kind != "snapshot" or content_of(store, n) != mm["tree"]:
                    raise errors.AlreadyExists(
                        f"a different tree named {n!r} exists here; remove or rename it to pull")
                stats["present"].append(n)
                continue
            if loading is None:
                loading = loader.submit(rm.load_index)
            items = _tree(rm, mm)
            local = _local_blocks(store, [a for a in mm["chain"]])
            if lazy:
                index = loading.result()
            runs: list = []
            _, nabsent = build_snapshot(store, n, items, parent=mm.get("parent"),
                                        labels=mm.get("labels") or {}, created=mm.get("created"),
                                        local=local,
                                        # lazy: where each block is, so a read needs no
                                        # index; eager: the fill that follows has the
                                        # index, so the remote's name is enough (a read
                                        # of a pull killed midway looks it up once)
                                        source=(lambda d: source(rm.name, index.get(d)))
                                        if lazy else rm.name,
                                        absent_out=runs)
            absent_made[n] = runs
            made.append(n)
            stats["snapshots"].append(n)
            stats["absent_blocks"] += nabsent
            if progress:
                progress(f"pull {n}: tree built, {nabsent} blocks to fetch")
        if not lazy:
            index = loading.result() if loading is not None else None
            # every snapshot of the chain, also one already here: an eager pull that
            # was killed midway (or a lazy pull) left blocks absent; this completes it
            for n in reversed(chain):
                if n in made:
                    got = fill(store, n, progress, threads, index=(rm.name, index),
                               made=absent_made.pop(n))
                elif n in stats["present"]:
                    got = fill(store, n, progress, threads)
                else:
                    continue
                stats["bytes_received"] += got["bytes_received"]
    except BaseException:
        if not lazy:
            for n in reversed(made):
                try:
                    store.remove(n, force=True)
                except errors.BlockstoreError:
                    pass
        raise
    finally:
        loader.shutdown(wait=True, cancel_futures=True)
    stats["bytes_received"] += rm.objects.received
    return stats
