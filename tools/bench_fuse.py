#!/usr/bin/env python3
"""FUSE mount vs a minimal pyfuse3 passthrough of ext4, and clone vs overlayfs copy-up.

Figures (one run, ratios against baselines measured in the same run):

* ``seq_write_ratio`` / ``seq_read_ratio``: sequential 1 MiB writes (then
  close) and reads of a 1 GiB file (256 MiB with --quick) through the
  blockstore mount ÷ the same through ``_passthrough_fuse.py`` over a host
  directory (goals >= 0.7).  Blockstore writes are group-committed (durable
  within 50 ms, at fsync at once); the passthrough's only reach the page cache.
  Reads start with the mount's page cache of the file dropped (both sides):
  they measure the adapters, not the kernel's cache.  Both mounts get the
  same kernel readahead window (blockstore's daemon sets 1 MiB when root;
  the passthrough's is set to match), reported as ``read_ahead_kb``.
  Each side first lays out the file (unmeasured); the measured writes
  overwrite it, as fio does.  Writing a new file instead would measure the
  machine more than the adapters: a guest kernel that reports freed pages
  to its host makes the passthrough's page cache, freed at each unlink,
  cost a hypervisor fault per page when touched again, while the pool's
  data file keeps its cached pages and reuses them.
  Five rounds (``--rounds N``) alternate which side goes first; each
  figure is the median of its rounds (``*_rounds`` list them all).  Five,
  not three: where freed memory goes back to the host at once
  (/sys/module/page_reporting), a round whose page-cache pages come from
  memory just given back runs 2-4x slower on either side at random, and
  with three rounds two such rounds of one side can decide the median
  (docs/BENCHMARKS.md).
* ``seq_write_fsync_ratio`` (no goal): the same overwrite rounds ending in
  fsync (as ``dd conv=fsync``), so that both sides wait for the disk.
* ``*_write_cpu_s_per_gib``: CPU seconds the daemon (all threads, user +
  system) spends per GiB of sequential writes: steadier than throughput on
  a machine whose disk and memory speed move 2-4x between minutes.
* ``store_write_ms_per_mib`` / ``store_commit_ms_per_mib`` (no goal): the
  store's own share of a FUSE write, in-process and without FUSE: 1 MiB
  overwrites of a 256 MiB file through ``TreeView.write_at`` (what the daemon
  calls per write request) in batches of ``committer.MAX_BYTES`` as the
  daemon commits them;
  the time of the calls, and of the commits, per MiB (median of 3 rounds).
* ``small_files_ratio``: create (100 B) + stat + unlink of 10k files (2k
  with --quick), blockstore ops/s ÷ passthrough ops/s (goal >= 0.5).
* ``cpu_per_gib_ratio``: the daemon CPU per GiB written, blockstore ÷
  passthrough (goal <= 1.5).
* a container root file system through the mount vs kernel overlayfs:
  ``walk_warm_ratio``, ``tar_warm_ratio``, ``tar_cold_ratio``,
  ``chroot_python_ratio``, ``small_files_write_ratio``, ``mount_ms``,
  ``umount_ms`` (``bench_fuse_tree.py`` says what each measures).
* ``halt_poll_ns`` (no goal): how long this guest's idle vCPUs poll before
  they halt (cpuidle-haltpoll; None without it), set for the run with
  ``--halt-poll-ns``: with 0, FUSE round trips between CPUs cost a wake-up
  from halt on each side, which moves ``tar_cold_ratio`` and
  ``small_files_write_ratio`` most.  ``fuse_wake_here`` (no goal): the same
  for the fuse module's ``wake_here`` parameter, which some kernels (not
  mainline Linux) carry; ``--fuse-wake-here Y|N``.
* ``clone_write_ms`` / ``clone_write_bytes`` vs ``overlay_write_ms`` /
  ``overlay_write_bytes``: one 4 KiB write (+fsync) into a 1 GiB file of a
  mounted clone, vs the same through kernel overlayfs (copy-up of the
  file); space is pool bytes used (clone) and the upper dir's blocks (overlay).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import _benchutil as bu
import bench_fuse_tree
from _benchutil import MiB, log, median

GiB = 1024 * MiB

HERE = os.path.dirname(os.path.abspath(__file__))
HELP = __doc__.split("\n")[0]


def add_args(parser) -> None:
    parser.add_argument("--rounds", type=int, default=None,
                        help="overwrite rounds per side (default 5; 1 with --tiny): more "
                             "rounds show the steady state after the first overwrites")
    parser.add_argument("--halt-poll-ns", type=int, default=None, metavar="NS",
                        help="the guest's idle polling (cpuidle-haltpoll guest_halt_poll_ns) for "
                             "this run, restored at the end (root; the kernel's default is 200000)")
    parser.add_argument("--fuse-wake-here", choices=("Y", "N"), default=None,
                        help="the fuse module's wake_here parameter for this run, restored at "
                             "the end (root; a parameter of some kernels, not of mainline Linux)")


# Host settings that move the FUSE round trip's cost, recorded in every run's
# JSON (None where the kernel has no such file) and settable for one run
# (the option of the same name): JSON key -> sysfs file.
HOST_SETTINGS = {
    # How long an idle vCPU polls before it halts (cpuidle-haltpoll).  At 0
    # every FUSE round trip between two CPUs pays a halted vCPU's wake-up on
    # each side (docs/BENCHMARKS.md).
    "halt_poll_ns": "/sys/module/haltpoll/parameters/guest_halt_poll_ns",
    # Not in mainline Linux: a fuse module parameter some kernels carry that
    # changes where a request's waiter is woken; "Y" shortens each round trip.
    "fuse_wake_here": "/sys/module/fuse/parameters/wake_here",
}


def _setting(path: str):
    """The value in a sysfs parameter file (int when it is one), None without it."""
    try:
        with open(path) as f:
            v = f.read().strip()
    except OSError:
        return None
    try:
        return int(v)
    except ValueError:
        return v


def _set_setting(path: str, value) -> None:
    with open(path, "w") as f:
        f.write(str(value))


def run(args):
    before = {k: _setting(path) for k, path in HOST_SETTINGS.items()}
    want = {k: getattr(args, k, None) for k in HOST_SETTINGS}
    want = {k: v for k, v in want.items() if v is not None}
    for k in want:
        if before[k] is None:
            raise SystemExit(f"--{k.replace('_', '-')}: {HOST_SETTINGS[k]} is not here")
    changed = []
    try:
        for k, v in want.items():
            _set_setting(HOST_SETTINGS[k], v)
            changed.append(k)
        rep, text = _run(args)
    finally:
        for k in changed:
            _set_setting(HOST_SETTINGS[k], before[k])
    for k in HOST_SETTINGS:
        rep.extra[k] = want.get(k, before[k])
    return rep, text


def _wait_mounted(mp: str, proc=None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.ismount(mp):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"passthrough exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{mp} did not get mounted")
        time.sleep(0.05)


def _same_read_ahead(ours: str, theirs: str) -> dict:
    from blockstore.fuse.daemon import READ_AHEAD_KB, read_ahead, set_read_ahead
    kb = None
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:              # the daemon sets it once serving
        kb = read_ahead(ours)
        if kb is None or kb == READ_AHEAD_KB:
            break
        time.sleep(0.02)
    if kb:
        set_read_ahead(theirs, kb)
    return {"blockstore": read_ahead(ours), "passthrough": read_ahead(theirs)}


def _seq_write(path: str, total: int, chunk: bytes, overwrite: bool = False,
               fsync: bool = False) -> float:
    """Write ``total`` bytes from the start; ``overwrite``: into the existing file
    (as fio does after laying its file out), else into a new or truncated one;
    ``fsync``: the time includes an fsync at the end (as ``dd conv=fsync``)."""
    t0 = time.perf_counter()
    flags = os.O_WRONLY if overwrite else os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, 0o644)
    try:
        for off in range(0, total, len(chunk)):
            os.write(fd, chunk)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    return total / (time.perf_counter() - t0)


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) process ``pid`` has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _seq_read(path: str) -> float:
    """Read through the file system, not from the mount's page cache: its pages
    (kept across opens on blockstore trees) are dropped first, on both sides."""
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    t0 = time.perf_counter()
    n = 0
    try:
        while True:
            b = os.read(fd, MiB)
            if not b:
                break
            n += len(b)
    finally:
        os.close(fd)
    return n / (time.perf_counter() - t0)


def _store_write_cost(store_path: str, chunk: bytes, total: int) -> tuple[float, float]:
    """(write, commit) seconds per MiB of 1 MiB overwrites through TreeView.write_at
    in batches of committer.MAX_BYTES, in this process (median of 3 rounds)."""
    from blockstore import Store
    from blockstore.fuse.committer import MAX_BYTES
    per_batch = max(1, MAX_BYTES // len(chunk))
    with Store.open(store_path) as s:
        s.create("inproc")
        with s.fs("inproc") as tfs:
            with tfs.open("/big", "wb") as fh:
                for _ in range(total // len(chunk)):
                    fh.write(chunk)
            ino = tfs.stat("/big").st_ino
            rounds = []
            for _ in range(3):
                tw = tc = 0.0
                off = 0
                while off < total:
                    with s.batch():
                        t0 = time.perf_counter()
                        for _ in range(per_batch):
                            if off >= total:
                                break
                            tfs.write_at(ino, off, chunk)
                            off += len(chunk)
                        t1 = time.perf_counter()
                    tc += time.perf_counter() - t1
                    tw += t1 - t0
                rounds.append((tw * MiB / total, tc * MiB / total))
        s.remove("inproc")
    return median([r[0] for r in rounds]), median([r[1] for r in rounds])


def _small_files(d: str, n: int) -> float:
    os.makedirs(d, exist_ok=True)
    payload = b"x" * 100
    t0 = time.perf_counter()
    for i in range(n):
        p = f"{d}/f{i}"
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, payload)
        os.close(fd)
        os.stat(p)
    for i in range(n):
        os.unlink(f"{d}/f{i}")
    return n / (time.perf_counter() - t0)


def _write_4k(path: str, off: int) -> float:
    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, b"W" * 4096, off)
        os.fsync(fd)
    finally:
        os.close(fd)
    return (time.perf_counter() - t0) * 1000


def _du(path: str) -> int:
    total = 0
    for root, dirs, files in os.walk(path):
        for f in files:
            total += os.lstat(os.path.join(root, f)).st_blocks * 512
    return total


def _run(args):
    from blockstore import Store
    from blockstore.fuse import mount, umount

    big = (16 if args.tiny else 256 if args.quick else 1024) * MiB
    rounds = args.rounds or (1 if args.tiny else 5)
    nfiles = 300 if args.tiny else 2000 if args.quick else 10000
    rep = bu.Report("fuse")
    rep.extra.update({"file_bytes": big, "small_files": nfiles, "quick": bool(args.quick)})
    chunk = os.urandom(MiB)
    with bu.scratch_dir(args.dir) as d:
        rep.extra["scratch"] = bu.disk_usage(d)
        host, pt, bm = (os.path.join(d, n) for n in ("host", "pt", "bm"))
        for p in (host, pt, bm):
            os.mkdir(p)
        sp = os.path.join(d, "store")
        with Store.open(sp) as s:
            s.create("c")
        proc = subprocess.Popen([sys.executable, os.path.join(HERE, "_passthrough_fuse.py"), host, pt])
        mounted = []
        try:
            _wait_mounted(pt, proc)
            mounted.append(pt)
            daemon_pid = mount(sp, "c", bm)         # the daemon's pid, once it serves
            mounted.append(bm)
            # Same kernel readahead on both mounts (blockstore's daemon sets 1 MiB as
            # root), so the ratios compare the adapters, not the kernel settings.
            rep.extra["read_ahead_kb"] = _same_read_ahead(bm, pt)
            # -- sequential write / read --------------------------------------------------
            sides = {"passthrough": (pt, proc.pid), "blockstore": (bm, daemon_pid)}
            log(f"laying out a {big // MiB} MiB file on each side (unmeasured)")
            for root, _ in sides.values():
                _seq_write(f"{root}/big", big, chunk)
            res = {label: {"w": [], "r": [], "cpu": []} for label in sides}
            for i in range(rounds):
                # Alternate who goes first: a VM's disk and memory change regime
                # within seconds; each side gets the same share of early and late slots.
                order = list(sides) if i % 2 == 0 else list(reversed(sides))
                for label in order:
                    root, pid = sides[label]
                    log(f"round {i + 1}/{rounds} {label}: sequential write and read of {big // MiB} MiB")
                    c0 = _cpu_s(pid)
                    res[label]["w"].append(_seq_write(f"{root}/big", big, chunk, overwrite=True))
                    res[label]["cpu"].append((_cpu_s(pid) - c0) * GiB / big)
                    res[label]["r"].append(_seq_read(f"{root}/big"))
            # The same overwrite ending in fsync: both sides then wait for the disk.
            for i in range(rounds):
                order = list(sides) if i % 2 == 0 else list(reversed(sides))
                for label in order:
                    log(f"round {i + 1}/{rounds} {label}: overwrite + fsync")
                    res[label].setdefault("ws", []).append(
                        _seq_write(f"{sides[label][0]}/big", big, chunk, overwrite=True, fsync=True))
            for label, (root, _) in sides.items():
                os.unlink(f"{root}/big")
                log(f"{label}: {nfiles} small files")
                res[label]["f"] = _small_files(f"{root}/small", nfiles)
            P, B = res["passthrough"], res["blockstore"]
            pw, bw = median(P["w"]), median(B["w"])
            pr, br = median(P["r"]), median(B["r"])
            rep.add("passthrough_write_gbps", pw / bu.GB, "GB/s")
            rep.add("blockstore_write_gbps", bw / bu.GB, "GB/s")
            rep.add("seq_write_ratio", bw / pw, "x", 0.7, ">=",
                    note=f"median of {rounds} interleaved rounds")
            rep.add("passthrough_read_gbps", pr / bu.GB, "GB/s")
            rep.add("blockstore_read_gbps", br / bu.GB, "GB/s")
            rep.add("seq_read_ratio", br / pr, "x", 0.7, ">=",
                    note=f"median of {rounds} interleaved rounds")
            rep.add("passthrough_write_cpu_s_per_gib", median(P["cpu"]), "s",
                    note="daemon CPU (all threads, user+sys) per GiB written")
            rep.add("blockstore_write_cpu_s_per_gib", median(B["cpu"]), "s",
                    note="same, hashing and commits included")
            if median(P["cpu"]) > 0:
                rep.add("cpu_per_gib_ratio", median(B["cpu"]) / median(P["cpu"]), "x", 1.5, "<=",
                        note="daemon CPU per GiB written, blockstore / passthrough")
            rep.extra["write_ratio_rounds"] = [round(b / p, 3) for b, p in zip(B["w"], P["w"])]
            rep.extra["read_ratio_rounds"] = [round(b / p, 3) for b, p in zip(B["r"], P["r"])]
            rep.extra["write_gbps_rounds"] = {k: [round(x / bu.GB, 3) for x in v["w"]]
                                              for k, v in res.items()}
            rep.add("seq_write_fsync_ratio", median(B["ws"]) / median(P["ws"]), "x",
                    note="the same overwrite ending in fsync, both sides (no goal)")
            rep.extra["write_fsync_gbps"] = {k: round(median(v["ws"]) / bu.GB, 3)
                                             for k, v in res.items()}
            sw, sc = _store_write_cost(os.path.join(d, "inproc-store"), chunk, min(big, 256 * MiB))
            rep.add("store_write_ms_per_mib", sw * 1e3, "ms",
                    note="TreeView.write_at of 1 MiB in-process, no FUSE (the daemon's store call)")
            rep.add("store_commit_ms_per_mib", sc * 1e3, "ms",
                    note="the commits of those writes in committer.MAX_BYTES batches, per MiB")
            pf, bf = P["f"], B["f"]
            rep.add("passthrough_small_ops", pf, "files/s")
            rep.add("blockstore_small_ops", bf, "files/s")
            rep.add("small_files_ratio", bf / pf, "x", 0.5, ">=")
            umount(bm)
            mounted.remove(bm)
            # -- a container root file system: the mount vs overlayfs ----------------------
            bench_fuse_tree.run(rep, d, sp, args, mounted)
            # -- one 4 KiB write into a big file: clone vs overlayfs copy-up ------------------
            log(f"preparing a {big // MiB} MiB file in a snapshot and in an overlay lower dir")
            with Store.open(sp) as s:
                s.create("base")
                with s.fs("base").open("/big", "wb") as fh:
                    for _ in range(big // MiB):
                        fh.write(chunk)
                s.commit("base", "img")
                s.clone("img", "c2")
                before = s.df().used_bytes
            mount(sp, "c2", bm)
            mounted.append(bm)
            cms = _write_4k(f"{bm}/big", big // 2 + 100)
            umount(bm)
            mounted.remove(bm)
            with Store.open(sp) as s:
                cbytes = s.df().used_bytes - before
                assert s.check().ok
            rep.add("clone_write_ms", cms, "ms")
            rep.add("clone_write_bytes", cbytes, "B")
            lower, upper, work, ov = (os.path.join(d, n) for n in ("lower", "upper", "work", "ov"))
            for p in (lower, upper, work, ov):
                os.mkdir(p)
            _seq_write(f"{lower}/big", big, chunk)
            os.sync()
            r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                                f"lowerdir={lower},upperdir={upper},workdir={work}", ov],
                               capture_output=True, text=True)
            if r.returncode != 0:
                rep.extra["overlay_error"] = r.stderr.strip()
                log("overlayfs mount failed:", r.stderr.strip())
            else:
                mounted.append(ov)
                oms = _write_4k(f"{ov}/big", big // 2 + 100)
                os.sync()
                rep.add("overlay_write_ms", oms, "ms")
                rep.add("overlay_write_bytes", _du(upper), "B")
                rep.add("clone_vs_overlay_time", oms / cms, "x")
        finally:
            for mp in reversed(mounted):
                subprocess.run(["umount", "-l", mp] if mp.endswith(("/ov", "/ovm")) else
                               ["fusermount3", "-u", "-z", mp], capture_output=True)
            if proc.poll() is None:
                subprocess.run(["fusermount3", "-u", "-z", pt], capture_output=True)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    text = ("blockstore writes are group-committed (one store commit per 50 ms / 128 MiB, or at "
            "fsync); the passthrough's stay in the page cache.")
    return rep, text
