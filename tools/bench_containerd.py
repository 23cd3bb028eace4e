"""containerd benchmark: blockstore vs containerd's overlayfs and native snapshotters.

One private containerd (own config, root, state and socket in the scratch
directory) runs all three snapshotters on the same two images, built with
umoci (gzip layers) from a Debian bookworm root made by mmdebstrap (cached
under ~/.cache/blockstore-tests):

  debian  a real Debian image: one layer, the minbase root (as Debian's
          official images are made) plus busybox;  --tiny: the tests' small
          root (busybox, base-files, tzdata)
  big     that layer plus one with busybox applet links and /data/big, a
          random file of 256 MiB (--quick 64 MiB, --tiny 8 MiB)

Per snapshotter S (keys S_...):

  unpack_s          `ctr image import --snapshotter S` of the debian image,
                    its content already in containerd (so: the unpack only)
  run_s             median `ctr run --rm` of the debian image, /bin/true
  containers_10_x   disk space of the debian image plus 10 containers made
                    from it (`ctr containers create`), / the image alone
  unpack_big_layer_s  the big image afterwards: only its /data/big layer unpacks
  write_4k_ms       time of a 4 KiB write of random bytes (dd conv=notrunc)
                    into /data/big from inside a container of the big image,
                    measured there with busybox `time` (10 ms resolution)
  write_4k_bytes    disk space that write added (snapshotter directory
                    for overlayfs/native; pool blocks in use for blockstore),
                    measured between the container's creation and its end
  combined_unpack_s the big image unpacked whole (both layers, another
                    namespace): what unpack_s measured before the two images
                    were split

and for blockstore with the fast path, in a namespace of its own whose
content is imported first: `blockstore import` of the image (not timed), then

  blockstore_fast_floor_s     `ctr image import --no-unpack` into that
                    namespace: containerd 1.6's import streams and hashes every
                    blob of the tar whatever it holds, so no snapshotter's
                    `ctr image import` goes below it
  blockstore_fast_register_s  `blockstore snapshotter register` of it
  blockstore_fast_unpack_s    `ctr image import --snapshotter blockstore`

Ratios (blockstore / overlayfs) with the goals of issue 19:

  run_ratio                  run_s, <= 1.5
  unpack_ratio               unpack_s of the debian image, <= 2
  fast_path_unpack_ratio     (register + import) / overlayfs unpack_s, <= 0.2
  fast_path_floor_ratio      floor / overlayfs unpack_s (the least any
                             `ctr image import` takes)
  fast_path_beyond_floor_ratio  the fast path with the floor taken from both
  fast_path_bytes_added      pool bytes the fast path added, 0
  fast_path_image_ratio      `blockstore snapshotter register --image REF` /
                             overlayfs unpack_s: register makes the image in
                             containerd from the manifest and config the store
                             recorded, in a namespace where containerd has
                             nothing of it, so no `ctr image import` (and no
                             floor) at all; a `ctr run` of it follows (not
                             timed) as a check  (blockstore_fast_register_image_s)
  fast_path_image_bytes_added  pool bytes that added, 0
  containers_10_x            blockstore's, <= 1.05
  write_4k_blocks            blocks the 4 KiB write added, <= 2
  combined_unpack_ratio      combined_unpack_s: the unpack_ratio of the one
                             image the bench used before (no goal of its own)
  combined_fast_path_*       the fast path keys for the big image

Needs root, FUSE, containerd, ctr, runc, umoci and mmdebstrap (or the
cached root file systems).  BENCH_SNAPSHOTTER_LOG=info logs every call of the
snapshotter with its milliseconds (snapshotter.log in the scratch directory).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import _benchutil as bu
from _benchutil import log

HELP = __doc__.split("\n")[0]
MiB = 1 << 20
SNAPSHOTTERS = ("overlayfs", "native", "blockstore")
CACHE = os.path.expanduser("~/.cache/blockstore-tests")
# a real Debian image's root: minbase, as Debian's official images are made
# (debuerreotype), plus busybox for `time` in the 4 KiB write; --tiny uses
# the small root of the tests (busybox, base-files, tzdata)
ROOTFS = {"minbase": ("debian-bookworm-minbase-busybox.tar",
                      ["--variant=minbase", "--include=busybox"]),
          "extract": ("debian-bookworm-extract-busybox-tzdata.tar",
                      ["--variant=extract", "--include=busybox,base-files,tzdata"])}
IMAGE = "local/bench:debian"
IMAGE_BIG = "local/bench:big"
CONFIG = """version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[proxy_plugins]
  [proxy_plugins.blockstore]
    type = "snapshot"
    address = "{d}/run/snapshotter.sock"
"""


def add_args(p) -> None:
    p.add_argument("--runs", type=int, default=None, help="`ctr run` repetitions per snapshotter")


def _sh(*cmd, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stdout[-1000:]}{r.stderr[-2000:]}")
    return r


def _rootfs_tar(kind: str) -> str:
    name, opts = ROOTFS[kind]
    path = os.path.join(CACHE, name)
    if not os.path.exists(path):
        os.makedirs(CACHE, exist_ok=True)
        tmp = path[:-4] + f".{os.getpid()}.tmp.tar"
        _sh("mmdebstrap", "--quiet", *opts, "--mode=root",
            '--aptopt=Acquire::Check-Valid-Until "false"', "bookworm", tmp)
        os.replace(tmp, path)
    return path


def _image(d: str, big: int, rootfs_kind: str) -> None:
    """Two images in two OCI layouts, tars beside them: ``debian.tar``, the
    Debian root alone (one gzip layer as umoci makes it: a real image), and
    ``big.tar``, that layer plus one holding the busybox applet links and
    /data/big (``big`` bytes of random data) for the 4 KiB write."""
    L, B = os.path.join(d, "layout"), os.path.join(d, "bundle")
    _sh("umoci", "init", "--layout", L)
    _sh("umoci", "new", "--image", f"{L}:img")
    _sh("umoci", "config", "--image", f"{L}:img", "--os", "linux", "--architecture", "amd64")
    _sh("umoci", "unpack", "--image", f"{L}:img", B)
    rootfs = os.path.join(B, "rootfs")
    _sh("tar", "-C", rootfs, "--numeric-owner", "-xpf", _rootfs_tar(rootfs_kind))
    _sh("umoci", "repack", "--refresh-bundle", "--image", f"{L}:img", B)
    LD = os.path.join(d, "layout-debian")
    shutil.copytree(L, LD, symlinks=True)
    _sh("umoci", "tag", "--image", f"{LD}:img", "debian")
    _sh("umoci", "rm", "--image", f"{LD}:img")
    for applet in ("sh", "true", "dd", "time", "sync"):
        p = os.path.join(rootfs, "bin", applet)
        if not os.path.lexists(p):
            os.symlink("busybox", p)
    for sub in ("proc", "sys", "dev", "run", "tmp", "data"):
        os.makedirs(os.path.join(rootfs, sub), exist_ok=True)
    with open(os.path.join(rootfs, "data", "big"), "wb") as f:
        for _ in range(big // MiB):
            f.write(os.urandom(MiB))
    _sh("umoci", "repack", "--image", f"{L}:img", B)
    _sh("umoci", "tag", "--image", f"{L}:img", "big")
    _sh("umoci", "rm", "--image", f"{L}:img")
    _sh("umoci", "gc", "--layout", L)
    _sh("tar", "-C", LD, "-cf", os.path.join(d, "debian.tar"), ".")
    _sh("tar", "-C", L, "-cf", os.path.join(d, "big.tar"), ".")


def _du(path: str) -> int:
    """Bytes of disk a directory tree takes (each inode once, one file system)."""
    if not os.path.exists(path):
        return 0
    out = subprocess.run(["du", "-sx", "--block-size=1", path], capture_output=True,
                         text=True).stdout.split()
    return int(out[0]) if out else 0


class _Env:
    def __init__(self, d: str):
        self.d = d
        self.store = os.path.join(d, "store")
        os.makedirs(os.path.join(d, "run"), mode=0o700)
        with open(os.path.join(d, "config.toml"), "w") as f:
            f.write(CONFIG.format(d=d))
        self.sock = os.path.join(d, "containerd.sock")
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        exe = [sys.executable, "-c", "from blockstore.cli import main; main()"]
        log_f = open(os.path.join(self.d, "snapshotter.log"), "ab")
        self.procs.append(subprocess.Popen(
            exe + ["--store", self.store, "snapshotter", "serve", "--address",
                   os.path.join(self.d, "run", "snapshotter.sock"),
                   "--root", os.path.join(self.d, "snaproot"), "--log-level",
                   os.environ.get("BENCH_SNAPSHOTTER_LOG", "warning")],
            stdout=log_f, stderr=log_f, stdin=subprocess.DEVNULL))
        self.procs.append(subprocess.Popen(
            ["containerd", "--config", os.path.join(self.d, "config.toml")],
            stdout=log_f, stderr=log_f, stdin=subprocess.DEVNULL))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.ctr("version", check=False).returncode == 0 and \
                    os.path.exists(os.path.join(self.d, "run", "snapshotter.sock")):
                return
            time.sleep(0.1)
        raise RuntimeError("containerd or the snapshotter did not start")

    def ctr(self, *args, check=True, timeout=600, ns="bench") -> subprocess.CompletedProcess:
        r = subprocess.run(["ctr", "-a", self.sock, "-n", ns, *args], capture_output=True,
                           text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)}: {r.stdout[-500:]}{r.stderr[-1500:]}")
        return r

    def space(self, sn: str) -> int:
        if sn == "blockstore":
            from blockstore import Store
            with Store.open(self.store, create=False) as s:
                df = s.df()
                return df.used_bytes + df.metadata_bytes
        return _du(os.path.join(self.d, "root", f"io.containerd.snapshotter.v1.{sn}"))

    def pool_used(self) -> int:
        from blockstore import Store
        with Store.open(self.store, create=False) as s:
            return s.df().used_bytes

    def stop(self) -> None:
        for c in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("tasks", "rm", "-f", c, check=False)
            self.ctr("containers", "rm", c, check=False)
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
        mnt = os.path.join(self.d, "snaproot", "mnt")
        if os.path.isdir(mnt):
            for name in os.listdir(mnt):
                subprocess.run(["umount", "-l", os.path.join(mnt, name)], capture_output=True)
        for sub in ("root", "state"):
            subprocess.run(f"umount -R -l {self.d}/{sub}/* >/dev/null 2>&1", shell=True)
        time.sleep(1)


def _settle(env: _Env, sn: str, timeout: float = 20.0) -> None:
    """containerd removes snapshots in the background (its gc): wait until the
    snapshotter's space stops changing, so the next measurement is its own."""
    last, stable_since = env.space(sn), time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and time.monotonic() - stable_since < 1.5:
        time.sleep(0.25)
        cur = env.space(sn)
        if cur != last:
            last, stable_since = cur, time.monotonic()


def _import(env: _Env, sn: str, tag: str, ns: str = "bench") -> tuple[float, int]:
    """(seconds, snapshotter bytes added) of `ctr image import --snapshotter sn`
    of image ``tag`` (its content already in containerd: the unpack only)."""
    space0 = env.space(sn)
    t0 = time.perf_counter()
    env.ctr("image", "import", "--snapshotter", sn, "--base-name", "local/bench",
            os.path.join(env.d, f"{tag}.tar"), ns=ns)
    return time.perf_counter() - t0, env.space(sn) - space0


def _one(env: _Env, sn: str, runs: int, true_cmd: list[str]) -> dict:
    out: dict = {}
    out["unpack_s"], image_space = _import(env, sn, "debian")
    lat = []
    for i in range(runs):
        t0 = time.perf_counter()
        env.ctr("run", "--rm", "--snapshotter", sn, IMAGE, f"{sn}-t{i}", *true_cmd)
        lat.append(time.perf_counter() - t0)
    out["run_s"] = bu.median(lat)
    before = env.space(sn)
    for i in range(10):
        env.ctr("containers", "create", "--snapshotter", sn, IMAGE, f"{sn}-c{i}")
    ten = env.space(sn) - before
    out["image_bytes"] = image_space
    out["containers_10_bytes"] = ten
    out["containers_10_x"] = (image_space + ten) / image_space if image_space else float("nan")
    for i in range(10):
        env.ctr("containers", "rm", f"{sn}-c{i}")
    # the big image: its Debian layer is there, so only the /data/big layer unpacks
    out["unpack_big_layer_s"], _ = _import(env, sn, "big")
    _settle(env, sn)
    # 4 KiB of random bytes into the middle of /data/big, timed inside the
    # container; space measured around the write only (the container exists
    # before).  busybox has no sub-second clock in sh; `time` resolves 10 ms,
    # enough to tell an in-place block write from a copy of the whole file.
    script = ("time sh -c 'dd if=/dev/urandom of=/data/big bs=4096 count=1 seek=1000 "
              "conv=notrunc 2>/dev/null' 2>&1; sync")
    env.ctr("containers", "create", "--snapshotter", sn, IMAGE_BIG, f"{sn}-w", "--", "sh", "-c",
            script)
    before = env.pool_used() if sn == "blockstore" else env.space(sn)
    r = env.ctr("tasks", "start", f"{sn}-w")
    m = re.search(r"real\s+(\d+)m\s*([\d.]+)s", r.stdout)
    out["write_4k_ms"] = (int(m.group(1)) * 60 + float(m.group(2))) * 1000 if m else float("nan")
    if sn == "blockstore":
        out["write_4k_bytes"] = env.pool_used() - before
    else:
        out["write_4k_bytes"] = env.space(sn) - before
    env.ctr("tasks", "rm", "-f", f"{sn}-w", check=False)
    env.ctr("containers", "rm", f"{sn}-w")
    # the old figure: the big image unpacked whole (both layers), in a namespace
    # of its own where no layer is there yet
    out["combined_unpack_s"], _ = _import(env, sn, "big", ns="bench-combined")
    log(f"{sn}: {out}")
    return out


def _blockstore(env: _Env, *args) -> str:
    return _sh(sys.executable, "-c", "from blockstore.cli import main; main()",
               "--store", env.store, *args).stdout


def _fast_path(env: _Env, tag: str, ns: str) -> dict:
    """`blockstore import` of image ``tag`` (not timed), then register + `ctr
    image import` in namespace ``ns`` (content imported there first, as for
    the others: that import is the floor)."""
    tar = os.path.join(env.d, f"{tag}.tar")
    t0 = time.perf_counter()
    env.ctr("image", "import", "--no-unpack", "--base-name", "local/bench", tar, ns=ns)
    floor = time.perf_counter() - t0
    layout = os.path.join(env.d, "layout-debian" if tag == "debian" else "layout")
    _blockstore(env, "import", f"{layout}:{tag}", f"fast-{tag}")
    used = env.pool_used()
    t0 = time.perf_counter()
    _blockstore(env, "snapshotter", "register", f"fast-{tag}", "--containerd", env.sock,
                "--namespace", ns)
    t1 = time.perf_counter()
    env.ctr("image", "import", "--snapshotter", "blockstore", "--base-name", "local/bench", tar,
            ns=ns)
    t2 = time.perf_counter()
    out = {"floor_s": floor, "register_s": t1 - t0, "unpack_s": t2 - t1,
           "bytes_added": env.pool_used() - used}
    log(f"blockstore fast path, {tag}: {out}")
    return out


def _fast_image(env: _Env, tag: str, ns: str) -> dict | None:
    """`blockstore snapshotter register --image` of the store image ``tag``
    imported by ``_fast_path`` into namespace ``ns``, where containerd has
    nothing of it: its timing, then one `ctr run` from it (not timed, a check).
    None when the blockstore under test has no --image."""
    if "--image" not in _blockstore(env, "snapshotter", "register", "--help"):
        return None
    used = env.pool_used()
    t0 = time.perf_counter()
    _blockstore(env, "snapshotter", "register", f"fast-{tag}", "--containerd", env.sock,
                "--namespace", ns, "--image", f"local/bench:{tag}")
    took = time.perf_counter() - t0
    env.ctr("run", "--rm", "--snapshotter", "blockstore", f"local/bench:{tag}", "fast-image-check",
            "/bin/busybox", "true", ns=ns)
    out = {"register_image_s": took, "bytes_added": env.pool_used() - used}
    log(f"blockstore register --image, {tag}: {out}")
    return out


def run(args):
    rep = bu.Report("containerd")
    if os.geteuid() != 0 or any(shutil.which(t) is None for t in ("containerd", "ctr", "runc",
                                                                    "umoci")):
        raise SystemExit("bench containerd needs root, containerd, ctr, runc and umoci")
    big = 8 * MiB if args.tiny else 64 * MiB if args.quick else 256 * MiB
    runs = args.runs or (3 if args.quick else 10)
    with bu.scratch_dir(args.dir, prefix="blockstore-bench-ctrd-") as d:
        os.chmod(d, 0o700)
        log("building the image")
        _image(d, big, "extract" if args.tiny else "minbase")
        env = _Env(d)
        env.start()
        try:
            for tag in ("debian", "big"):
                env.ctr("image", "import", "--no-unpack", "--base-name", "local/bench",
                        os.path.join(d, f"{tag}.tar"))
                env.ctr("image", "import", "--no-unpack", "--base-name", "local/bench",
                        os.path.join(d, f"{tag}.tar"), ns="bench-combined")
            # the tests' small root has no /bin/true of its own
            true_cmd = ["/bin/busybox", "true"] if args.tiny else ["/bin/true"]
            res = {sn: _one(env, sn, runs, true_cmd) for sn in SNAPSHOTTERS}
            fast = _fast_path(env, "debian", "bench-fast")
            fast_big = _fast_path(env, "big", "bench-fast-combined")
            fast_image = _fast_image(env, "debian", "bench-fast-image")
        finally:
            env.stop()
    o, b = res["overlayfs"], res["blockstore"]
    rep.add("run_ratio", b["run_s"] / o["run_s"], "x", goal=1.5, cmp="<=",
            note="blockstore / overlayfs, median `ctr run --rm` of the Debian image")
    rep.add("unpack_ratio", b["unpack_s"] / o["unpack_s"], "x", goal=2.0, cmp="<=",
            note="the Debian image")
    _fast_keys(rep, "", fast, o["unpack_s"], goal=0.2)
    if fast_image is not None:
        rep.add("fast_path_image_ratio", fast_image["register_image_s"] / o["unpack_s"], "x",
                note="`register --image` / overlayfs unpack: the image made by register, "
                     "no `ctr image import`")
        rep.add("fast_path_image_bytes_added", fast_image["bytes_added"], "bytes", goal=0,
                cmp="<=")
        rep.add("blockstore_fast_register_image_s", fast_image["register_image_s"], "")
    rep.add("containers_10_x", b["containers_10_x"], "x", goal=1.05, cmp="<=",
            note="(image + 10 containers) / image, blockstore, the Debian image")
    rep.add("write_4k_blocks", b["write_4k_bytes"] / 4096, "blocks", goal=2, cmp="<=",
            note="into /data/big of the big image")
    rep.add("combined_unpack_ratio", b["combined_unpack_s"] / o["combined_unpack_s"], "x",
            note="the big image (Debian + /data/big) unpacked whole: the old unpack_ratio")
    _fast_keys(rep, "combined_", fast_big, o["combined_unpack_s"])
    for sn in SNAPSHOTTERS:
        for k in ("unpack_s", "run_s", "containers_10_x", "write_4k_ms", "write_4k_bytes",
                  "image_bytes", "unpack_big_layer_s", "combined_unpack_s"):
            rep.add(f"{sn}_{k}", res[sn][k], "")
    rep.extra["image_big_file_bytes"] = big
    rep.extra["environment"] = bu.environment()
    return rep, ""


def _fast_keys(rep, prefix: str, fast: dict, overlay_unpack_s: float, goal=None) -> None:
    rep.add(f"{prefix}fast_path_unpack_ratio",
            (fast["register_s"] + fast["unpack_s"]) / overlay_unpack_s, "x", goal=goal,
            cmp="<=" if goal else "",
            note="(register + ctr image import) / overlayfs unpack, layers in the store")
    rep.add(f"{prefix}fast_path_beyond_floor_ratio",
            (fast["register_s"] + fast["unpack_s"] - fast["floor_s"])
            / max(overlay_unpack_s - fast["floor_s"], 1e-9), "x",
            note="the same with the floor (reading the tar) taken from both sides")
    rep.add(f"{prefix}fast_path_bytes_added", fast["bytes_added"], "bytes", goal=0, cmp="<=")
    rep.add(f"{prefix}fast_path_floor_ratio", fast["floor_s"] / overlay_unpack_s, "x",
            note="`ctr image import --no-unpack` / overlayfs unpack: no snapshotter goes below")
    for k in ("floor_s", "register_s", "unpack_s"):
        rep.add(f"{prefix}blockstore_fast_{k}", fast[k], "")
