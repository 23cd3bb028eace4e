"""A container root file system through the mount vs kernel overlayfs (part of
``bench.py fuse``).

The tree: the host's python3 with the libraries it and its stdlib
extensions link (ldd), its stdlib (/usr/lib/python3.X) and, unless
--tiny, /usr/lib/python3 and /usr/share/doc, copied into one directory
of the scratch disk.  It is imported as a snapshot and cloned; the clone
is mounted (``blockstore.fuse.mount``, defaults) and the copy is the
lower directory of an overlayfs mount (empty upper) on the same disk.
Every figure is blockstore ÷ overlayfs (lower is better except where
noted), medians of rounds that alternate which side goes first:

* ``walk_warm_ratio``: ``find ROOT -printf '%s %T@ %m\\n'`` (an lstat per
  entry) with everything in the caches;
* ``tar_warm_ratio`` / ``tar_cold_ratio``: ``tar -cf - . | cat``, reading
  every file's data (GNU tar skips data when the archive is /dev/null), warm,
  and after ``drop_caches`` (root; which also drops the store's own pages,
  and every other process's: tests that prove a warm kernel cache retry when
  a drop happens meanwhile, ``tests/_fuse_helpers.while_caches_kept``);
* ``tar_cold_daemon_cpu_s`` / ``tar_cold_daemon_busy`` (no goal): the
  daemon's CPU per cold tar, and that ÷ the tar's wall time;
  ``tar_cold_store_cached_ratio`` (no goal): the cold tar with the store's
  pool and LMDB files read back into the page cache after ``drop_caches``
  (the FUSE side still cold), ÷ overlayfs's cold tar: what the ratio is
  without the store's own disk reads; ``tar_cold_one_cpu_ratio`` (no goal):
  the cold tar with the daemon and tar (and overlayfs's tar) held on one CPU,
  so the mount's round trips wake no other CPU;
* ``snapshot_walk_warm_ratio`` / ``snapshot_tar_warm_ratio`` (no goal): the
  same two through a read-only mount of the snapshot (no open requests);
* ``chroot_python_ratio``: 20 × ``chroot ROOT python3 -c 'import json,
  sqlite3, email, http.client, asyncio'``;
* ``small_files_write_ratio``: ``cp -a`` of the stdlib from the host copy
  into a new directory of the tree, then ``sync`` (the copies are removed
  after the last round: see ``cp`` below);
* ``tar_cold_fuse_overlayfs_ratio`` / ``small_files_write_fuse_overlayfs_ratio``
  (no goal): the cold tar and the ``cp -a`` through fuse-overlayfs (the
  overlay of rootless container engines, a FUSE file system in C) over the
  same lower directory, ÷ overlayfs, in the same interleaved rounds: what
  FUSE's round trips alone cost on this host, with no Python and no store
  behind them (skipped without the ``fuse-overlayfs`` program);
* ``mount_ms`` / ``umount_ms``: ``blockstore.fuse.mount`` of the clone
  until it returns, and ``blockstore.fuse.umount`` (medians; the first
  listing of the root in between is unmeasured); ``overlay_mount_ms`` the
  same for overlayfs.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time

from _benchutil import drop_caches, log, median

IMPORTS = "import json, sqlite3, email, http.client, asyncio"


def _libs(paths) -> set[str]:
    out = set()
    for p in paths:
        r = subprocess.run(["ldd", p], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            parts = line.split()
            for tok in parts:
                if tok.startswith("/"):
                    out.add(tok)
    return out


def _copy_file(src: str, root: str) -> None:
    dst = root + src
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copy2(src, dst)


def build_tree(root: str, tiny: bool) -> dict:
    """The python3 root file system under ``root``; {entries, bytes, stdlib}."""
    py = os.path.realpath(sys.executable if not os.path.exists("/usr/bin/python3")
                          else "/usr/bin/python3")
    ver = subprocess.run([py, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    stdlib = f"/usr/lib/python{ver}"
    os.makedirs(root + "/usr/bin")
    shutil.copy2(py, root + "/usr/bin/python3")
    for sub in ("lib", "lib64", "bin"):
        if os.path.islink("/" + sub):             # merged /usr: lib -> usr/lib
            target = os.readlink("/" + sub)
            os.makedirs(os.path.join(root, sub if target.startswith("/") else "",
                                     target.lstrip("/")), exist_ok=True)
            os.symlink(target, os.path.join(root, sub))
    for lib in _libs([py] + glob.glob(f"{stdlib}/lib-dynload/*.so")):
        _copy_file(os.path.realpath(lib), root)
        if os.path.realpath(lib) != lib:          # the soname link too
            dst = root + lib
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if not os.path.lexists(dst):
                os.symlink(os.path.realpath(lib), dst)
    dirs = [stdlib] + ([] if tiny else ["/usr/lib/python3", "/usr/share/doc"])
    for d in dirs:
        if os.path.isdir(d):
            os.makedirs(os.path.dirname(root + d), exist_ok=True)
            subprocess.run(["cp", "-a", d, root + d], check=True)
    os.makedirs(root + "/dev", exist_ok=True)
    os.makedirs(root + "/tmp", mode=0o1777, exist_ok=True)
    n = size = 0
    for dp, dn, fn in os.walk(root):
        n += len(dn) + len(fn)
        for f in fn:
            size += os.lstat(os.path.join(dp, f)).st_size
    return {"entries": n, "bytes": size, "stdlib": stdlib}


def _sh(cmd: str, cwd: str | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True, cwd=cwd, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) process ``pid`` has used."""
    with open(f"/proc/{pid}/stat") as f:
        x = f.read().rsplit(")", 1)[1].split()
    return (int(x[11]) + int(x[12])) / os.sysconf("SC_CLK_TCK")


def _pin(pid: int, cpus: set[int]) -> set[int]:
    """Every thread of process ``pid`` allowed on ``cpus`` only; returns the set
    its main thread had."""
    before = os.sched_getaffinity(pid)
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:
            pass                                # a thread that ended meanwhile
    return before


def _load() -> float:
    return os.getloadavg()[0]


def _interleaved(rounds: int, sides: dict, fn) -> dict:
    """{label: [fn(root) per round]}, alternating which side goes first."""
    out = {k: [] for k in sides}
    for i in range(rounds):
        order = list(sides) if i % 2 == 0 else list(reversed(sides))
        for label in order:
            out[label].append(fn(sides[label]))
    return out


def _ratio(rep, key, res, goal, note) -> None:
    b, o = median(res["blockstore"]), median(res["overlay"])
    rep.add(key, b / o, "x", goal, "<=",
            note=f"{note}: blockstore {b:.3f} s vs overlayfs {o:.3f} s (medians)")
    rep.extra[key + "_rounds"] = {k: [round(x, 4) for x in v] for k, v in res.items()}


FUSE_OVERLAYFS = "fuse-overlayfs"


def _reference(rep, key, res, what) -> None:
    """fuse-overlayfs ÷ overlayfs from rounds that had fuse-overlayfs as a side."""
    if FUSE_OVERLAYFS not in res:
        return
    f, o, b = (median(res[k]) for k in (FUSE_OVERLAYFS, "overlay", "blockstore"))
    rep.add(key, f / o, "x", note=f"{what} through fuse-overlayfs: {f:.3f} s vs overlayfs "
                                  f"{o:.3f} s (medians; blockstore {b:.3f} s, "
                                  f"{b / f:.2f}x fuse-overlayfs)")


def _mount_fuse_overlayfs(rep, root: str, d: str) -> str | None:
    """fuse-overlayfs over ``root`` (empty upper) at D/fovm; None (and why in
    ``rep.extra``) without the program or when it fails."""
    exe = shutil.which(FUSE_OVERLAYFS)
    if exe is None or os.geteuid() != 0:
        rep.extra["fuse_overlayfs_error"] = "not installed" if exe is None else "needs root"
        return None
    upper, work, mp = (os.path.join(d, n) for n in ("fovu", "fovw", "fovm"))
    for p in (upper, work, mp):
        os.mkdir(p)
    r = subprocess.run([exe, "-o", f"lowerdir={root},upperdir={upper},workdir={work}", mp],
                       capture_output=True, text=True)
    if r.returncode != 0 or not os.path.ismount(mp):
        rep.extra["fuse_overlayfs_error"] = (r.stderr.strip() or "not mounted")[-500:]
        return None
    v = subprocess.run([exe, "--version"], capture_output=True, text=True)
    rep.extra["fuse_overlayfs_version"] = next(          # "fuse-overlayfs: version 1.10"
        (ln.split()[-1] for ln in v.stdout.splitlines() if ln.startswith(FUSE_OVERLAYFS)), None)
    return mp


def run(rep, d: str, sp: str, args, mounted: list[str]) -> None:
    """Adds the keys above to ``rep``.  ``mounted``: the caller's list of live mount
    points, kept current here (the caller detaches what is left on an error)."""
    from blockstore import Store
    from blockstore.fuse import mount, umount

    tiny = bool(args.tiny)
    rounds = 1 if tiny else 3 if args.quick else 5
    runs = 2 if tiny else 20                    # chroot python starts per round
    root = os.path.join(d, "tree")
    log("building the python3 root file system")
    info = build_tree(root, tiny)
    rep.extra["tree"] = {k: v for k, v in info.items()}
    with Store.open(sp) as s:
        s.import_dir(root, "rootfs")
        s.clone("rootfs", "ct")
    bt, ov, upper, work = (os.path.join(d, n) for n in ("bt", "ovm", "ovu", "ovw"))
    for p in (bt, ov, upper, work):
        os.mkdir(p)
    r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={root},upperdir={upper},workdir={work}", ov],
                       capture_output=True, text=True)
    if r.returncode != 0:
        rep.extra["tree_overlay_error"] = r.stderr.strip()
        log("overlayfs mount failed:", r.stderr.strip())
        return
    mounted.append(ov)
    pid = mount(sp, "ct", bt)
    mounted.append(bt)
    sides = {"blockstore": bt, "overlay": ov}
    fov = _mount_fuse_overlayfs(rep, root, d)
    if fov:
        mounted.append(fov)
    with_ref = dict(sides, **({FUSE_OVERLAYFS: fov} if fov else {}))
    loads = [_load()]

    log("warm walk (find + lstat of every entry)")
    walk = "find . -printf '%s %T@ %m\\n' > /dev/null"
    for mp in sides.values():
        _sh(walk, mp)
    _ratio(rep, "walk_warm_ratio", _interleaved(rounds, sides, lambda mp: _sh(walk, mp)),
           1.5, f"find + lstat of {info['entries']} entries, warm")
    loads.append(_load())

    log("warm tar with data")
    tar = "tar -cf - . | cat > /dev/null"
    for mp in sides.values():
        _sh(tar, mp)
    _ratio(rep, "tar_warm_ratio", _interleaved(rounds, sides, lambda mp: _sh(tar, mp)),
           1.5, f"tar of {info['bytes'] >> 20} MiB with data, warm")
    loads.append(_load())

    log("the same warm walk and tar through a mount of the snapshot (read-only)")
    bs = os.path.join(d, "bs")
    os.mkdir(bs)
    mount(sp, "rootfs", bs)
    mounted.append(bs)
    snap = {"blockstore": bs, "overlay": ov}
    for mp in snap.values():
        _sh(walk, mp)
        _sh(tar, mp)
    for key, cmd in (("snapshot_walk_warm_ratio", walk), ("snapshot_tar_warm_ratio", tar)):
        res = _interleaved(rounds, snap, lambda mp: _sh(cmd, mp))
        b, o = median(res["blockstore"]), median(res["overlay"])
        rep.add(key, b / o, "x", note=f"a snapshot mount: {b:.3f} s vs overlayfs {o:.3f} s")
        rep.extra[key + "_rounds"] = {k: [round(x, 4) for x in v] for k, v in res.items()}
    umount(bs)
    mounted.remove(bs)
    loads.append(_load())

    if os.geteuid() == 0:
        log("cold tar with data (drop_caches before each)")

        cpu = []            # (daemon CPU s, wall s) of each blockstore cold tar

        def cold(mp):
            drop_caches()
            if mp != bt or not pid:
                return _sh(tar, mp)
            c0 = _cpu_s(pid)
            t = _sh(tar, mp)
            cpu.append((_cpu_s(pid) - c0, t))
            return t
        res = _interleaved(rounds, with_ref, cold)
        _ratio(rep, "tar_cold_ratio", res, 2.0, "tar with data after drop_caches")
        _reference(rep, "tar_cold_fuse_overlayfs_ratio", res, "the cold tar")
        loads.append(_load())
        if cpu:
            rep.add("tar_cold_daemon_cpu_s", median([x for x, _ in cpu]), "s",
                    note="daemon CPU (all threads, user + system) per cold tar (median)")
            rep.add("tar_cold_daemon_busy", median([x / t for x, t in cpu]), "",
                    note="that CPU / the cold tar's wall time: near 1 = the daemon's work "
                         "bounds the tar, low = waits (round trips, disk)")

        def store_cached(mp):
            drop_caches()
            if mp == bt:                # the store's own files back in the page cache
                for f in ("pool.data", os.path.join("meta", "data.mdb")):
                    _sh(f"cat {os.path.join(sp, f)} > /dev/null")
            return _sh(tar, mp)
        res2 = _interleaved(rounds, sides, store_cached)
        b, o = median(res2["blockstore"]), median(res2["overlay"])
        rep.add("tar_cold_store_cached_ratio", b / o, "x",
                note=f"the cold tar with the store's pool and metadata read back into the "
                     f"page cache after drop_caches (what is left without its disk reads): "
                     f"{b:.3f} s vs overlayfs {o:.3f} s (medians)")
        rep.extra["tar_cold_store_cached_ratio_rounds"] = {
            k: [round(x, 4) for x in v] for k, v in res2.items()}
        loads.append(_load())

        if pid and len(os.sched_getaffinity(0)) > 1:
            # Every process of both sides on one CPU: no request or reply of the
            # mount wakes another CPU (in a VM each such wake-up is an interrupt to
            # a halted vCPU), so the difference to tar_cold_ratio is what the
            # daemon's round trips pay for crossing CPUs.
            cpu = max(os.sched_getaffinity(0))
            spread = _pin(pid, {cpu})

            def cold_one_cpu(mp):
                drop_caches()
                return _sh(f"taskset -c {cpu} sh -c '{tar}'", mp)
            try:
                res3 = _interleaved(rounds, sides, cold_one_cpu)
            finally:
                _pin(pid, spread)
            b, o = median(res3["blockstore"]), median(res3["overlay"])
            rep.add("tar_cold_one_cpu_ratio", b / o, "x",
                    note=f"the cold tar with the daemon and tar on one CPU (both sides): "
                         f"{b:.3f} s vs overlayfs {o:.3f} s (medians)")
            rep.extra["tar_cold_one_cpu_ratio_rounds"] = {
                k: [round(x, 4) for x in v] for k, v in res3.items()}
            loads.append(_load())

        log(f"chroot python3 imports x{runs}")
        chroot = f"for i in $(seq {runs}); do chroot . /usr/bin/python3 -c '{IMPORTS}'; done"
        for mp in sides.values():
            _sh(chroot.replace("seq 20", "seq 1"), mp)
        _ratio(rep, "chroot_python_ratio",
               _interleaved(rounds, sides, lambda mp: _sh(chroot, mp)), 1.3,
               f"{runs} x chroot python3 -c '{IMPORTS}'")
        loads.append(_load())

    log("small files: cp -a of the stdlib + sync")
    src = root + info["stdlib"]
    nfiles = sum(len(fn) for _, _, fn in os.walk(src))
    seq = iter(range(1000))
    # Every round copies into a new directory, and the copies are removed only
    # after the last round: after an ``rm -rf`` ext4 creates files several times
    # slower for minutes (``_benchutil.drop_caches``), which would slow the
    # overlayfs and fuse-overlayfs sides, whose files are ext4 inodes, and not
    # the store's.
    copies = []

    def cp(mp):
        dst = os.path.join(mp, f"cp{next(seq)}")
        t = _sh(f"cp -a {src} {dst} && sync -f {dst}")
        copies.append(dst)
        return t
    res = _interleaved(rounds, with_ref, cp)
    for dst in copies:
        shutil.rmtree(dst)
    for mp in with_ref.values():
        _sh(f"sync -f {mp}")
    _ratio(rep, "small_files_write_ratio", res, 3.0,
           f"cp -a of {nfiles} files ({sum(os.lstat(os.path.join(p, f)).st_size for p, _, fs in os.walk(src) for f in fs) >> 20} MiB) + sync")
    _reference(rep, "small_files_write_fuse_overlayfs_ratio", res, "cp -a + sync")
    loads.append(_load())
    if fov:
        subprocess.run(["fusermount3", "-u", fov], check=True)
        mounted.remove(fov)

    log("mount / umount")
    umount(bt)
    mounted.remove(bt)
    mts, uts, omts = [], [], []
    mount(sp, "ct", bt)                         # the first may start the mount server
    umount(bt)
    from blockstore.fuse import mountserver
    deadline = time.monotonic() + 30
    while (mountserver.enabled() and not os.path.exists(mountserver.socket_path())
           and time.monotonic() < deadline):
        time.sleep(0.05)
    for _ in range(rounds * 4):
        t0 = time.perf_counter()
        mount(sp, "ct", bt)
        t1 = time.perf_counter()
        mounted.append(bt)
        os.listdir(bt)
        t2 = time.perf_counter()
        umount(bt)
        t3 = time.perf_counter()
        mounted.remove(bt)
        mts.append((t1 - t0) * 1e3)
        uts.append((t3 - t2) * 1e3)
    subprocess.run(["umount", ov], check=True)
    mounted.remove(ov)
    for _ in range(rounds * 4):
        t0 = time.perf_counter()
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={root},upperdir={upper},workdir={work}", ov], check=True)
        omts.append((time.perf_counter() - t0) * 1e3)
        subprocess.run(["umount", ov], check=True)
    rep.add("mount_ms", median(mts), "ms", 50, "<=",
            note="blockstore.fuse.mount() of the clone until it returns (median)")
    rep.add("umount_ms", median(uts), "ms", 50, "<=",
            note="blockstore.fuse.umount() until the daemon is gone (median)")
    rep.add("overlay_mount_ms", median(omts), "ms", note="mount(8) of the overlay, for scale")
    rep.extra["mount_ms_rounds"] = [round(x, 1) for x in mts]
    rep.extra["umount_ms_rounds"] = [round(x, 1) for x in uts]
    loads.append(_load())
    rep.extra["tree_loadavg_1min"] = [round(x, 2) for x in loads]
