"""Test helpers for the containerd snapshotter: run `blockstore snapshotter
serve` as a real process, a private containerd, and cleanup of the FUSE
mounts both leave behind."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

HAVE_FUSE = os.path.exists("/dev/fuse") and shutil.which("fusermount3") is not None
try:
    import grpc  # noqa: F401
    HAVE_GRPC = True
except ImportError:
    HAVE_GRPC = False
needs_fuse_root = pytest.mark.skipif(
    not HAVE_FUSE or os.geteuid() != 0 or not HAVE_GRPC,
    reason="needs root, /dev/fuse, fusermount3 and grpcio (the containerd extra)")
needs_containerd = pytest.mark.skipif(
    not (shutil.which("containerd") and shutil.which("ctr") and shutil.which("runc")),
    reason="needs containerd, ctr and runc (make setup installs them)")

BLOCKSTORE = [sys.executable, "-m", "blockstore.cli"]


def cli(*args, store=None, check=True, **kw):
    env = dict(os.environ)
    if store is not None:
        env["BLOCKSTORE_STORE"] = str(store)
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "blockstore"), *args],
                          env=env, check=check, capture_output=True, text=True, **kw)


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Server:
    """`blockstore snapshotter serve` on ``store``; its log in ``self.log``."""

    def __init__(self, store, base: str):
        self.store = str(store)
        self.base = base
        self.sock = os.path.join(base, "run", "snapshotter.sock")
        self.root = os.path.join(base, "snaproot")
        self.logpath = os.path.join(base, "snapshotter.log")
        self.proc = None

    def start(self) -> "Server":
        env = dict(os.environ, BLOCKSTORE_STORE=self.store)
        seen = len(self.log())
        logf = open(self.logpath, "ab")
        exe = os.path.join(os.path.dirname(sys.executable), "blockstore")
        self.proc = subprocess.Popen([exe, "snapshotter", "serve", "--address", self.sock,
                                      "--root", self.root], env=env, stdout=logf, stderr=logf,
                                     stdin=subprocess.DEVNULL)
        logf.close()
        wait_for(lambda: self.proc.poll() is not None or
                 "serving containerd" in self.log()[seen:], 60, "the snapshotter to listen")
        assert self.proc.poll() is None, self.log()
        return self

    def log(self) -> str:
        try:
            with open(self.logpath, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)
        self.proc = None

    def unmount_all(self) -> None:
        """Unmount every FUSE mount under the root (they outlive the server by
        design) and wait for their daemons, so the store can be checked."""
        mnt = os.path.join(self.root, "mnt")
        if not os.path.isdir(mnt):
            return
        from blockstore.fuse import daemon
        pids = []
        for name in os.listdir(mnt):
            mp = os.path.join(mnt, name)
            reg = daemon.registered(mp)
            if reg:
                pids.append(reg["pid"])
            subprocess.run(["umount", "-l", mp], capture_output=True)
        for pid in pids:
            wait_for(lambda: not daemon.process_alive(pid), 30, f"mount daemon {pid}")


def private_base(prefix: str) -> str:
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(d, 0o700)
    return d


def check_store(path) -> None:
    import blockstore
    with blockstore.Store.open(str(path), create=False) as s:
        report = s.check()
    assert report.ok, f"store check failed:\n{report}"


CONTAINERD_CONFIG = """version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{base}/containerd.sock"
[ttrpc]
  address = "{base}/containerd.sock.ttrpc"
[proxy_plugins]
  [proxy_plugins.blockstore]
    type = "snapshot"
    address = "{snapshotter_sock}"
"""


class Containerd:
    """A private containerd (own config, root, state and socket under ``base``;
    never the system one) whose proxy plugin "blockstore" is ``server``."""

    def __init__(self, base: str, snapshotter_sock: str):
        self.base = os.path.join(base, "containerd")
        os.makedirs(self.base, mode=0o700, exist_ok=True)
        self.sock = os.path.join(self.base, "containerd.sock")
        self.config = os.path.join(self.base, "config.toml")
        with open(self.config, "w") as f:
            f.write(CONTAINERD_CONFIG.format(base=self.base, snapshotter_sock=snapshotter_sock))
        self.logpath = os.path.join(self.base, "containerd.log")
        self.proc = None

    def start(self) -> "Containerd":
        logf = open(self.logpath, "ab")
        self.proc = subprocess.Popen(["containerd", "--config", self.config], stdout=logf,
                                     stderr=logf, stdin=subprocess.DEVNULL)
        logf.close()
        wait_for(lambda: self.proc.poll() is not None or
                 self.ctr("version", check=False).returncode == 0, 60, "containerd")
        assert self.proc.poll() is None, open(self.logpath).read()[-4000:]
        return self

    def ctr(self, *args, check=True, timeout=300) -> subprocess.CompletedProcess:
        res = subprocess.run(["ctr", "-a", self.sock, "-n", "default", *args],
                             capture_output=True, text=True, timeout=timeout)
        if check:
            assert res.returncode == 0, f"ctr {' '.join(args)}: {res.stdout}{res.stderr}"
        return res

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def build_image(workdir: str, rootfs_tar: str) -> tuple[str, str]:
    """An OCI image made with umoci from a real Debian root file system (the
    tar of tests/test_oci_images.py) plus a layer with /bin/sh and a few
    applets (busybox links) and test data under /data.  Returns (the image
    tar for `ctr image import`, the OCI layout directory)."""
    def sh(*cmd):
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, f"{cmd}: {r.stderr[-2000:]}"
    L, B = os.path.join(workdir, "layout"), os.path.join(workdir, "bundle")
    sh("umoci", "init", "--layout", L)
    sh("umoci", "new", "--image", f"{L}:img")
    sh("umoci", "config", "--image", f"{L}:img", "--os", "linux", "--architecture", "amd64")
    sh("umoci", "unpack", "--image", f"{L}:img", B)
    rootfs = os.path.join(B, "rootfs")
    sh("tar", "-C", rootfs, "--numeric-owner", "-xpf", rootfs_tar)
    sh("umoci", "repack", "--refresh-bundle", "--image", f"{L}:img", B)   # layer 1: Debian
    for applet in ("sh", "cat", "ls", "mv", "rm", "mkdir", "true", "echo", "dd", "stat", "sync",
                   "wc", "sha256sum", "head"):
        p = os.path.join(rootfs, "bin", applet)
        if not os.path.lexists(p):
            os.symlink("busybox", p)
    for d in ("proc", "sys", "dev", "run", "tmp", "data/dir"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    with open(os.path.join(rootfs, "data/lower.txt"), "w") as f:
        f.write("from the image\n")
    with open(os.path.join(rootfs, "data/gone.txt"), "w") as f:
        f.write("deleted by the container\n")
    with open(os.path.join(rootfs, "data/dir/file"), "w") as f:
        f.write("in a directory\n")
    sh("umoci", "repack", "--image", f"{L}:img", B)                       # layer 2: tools, data
    tar = os.path.join(workdir, "img.tar")
    sh("tar", "-C", L, "-cf", tar, ".")
    return tar, L


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """A private OCI registry on 127.0.0.1 (Debian's docker-registry), so that
    images reach containerd by `ctr image pull`: the unpacker path that labels
    each layer's Prepare with its chain ID (containerd.io/snapshot.ref)."""

    def __init__(self, base: str):
        self.base = os.path.join(base, "registry")
        os.makedirs(self.base, mode=0o700, exist_ok=True)
        self.port = free_port()
        self.config = os.path.join(self.base, "config.yml")
        with open(self.config, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                    f"    rootdirectory: {self.base}/data\nhttp:\n  addr: 127.0.0.1:{self.port}\n")
        self.proc = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "Registry":
        import socket
        logf = open(os.path.join(self.base, "registry.log"), "ab")
        self.proc = subprocess.Popen(["docker-registry", "serve", self.config], stdout=logf,
                                     stderr=logf, stdin=subprocess.DEVNULL)
        logf.close()

        def up():
            if self.proc.poll() is not None:
                return True
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                return False
        wait_for(up, 30, "the registry")
        assert self.proc.poll() is None
        return self

    def push(self, layout: str, tag: str, ref: str) -> None:
        r = subprocess.run(["skopeo", "copy", "-q", "--format", "oci", "--dest-tls-verify=false",
                            f"oci:{layout}:{tag}", f"docker://{self.host}/{ref}"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None


GOCODE = "/usr/share/gocode"
HERE = os.path.dirname(os.path.abspath(__file__))


def go_build(src: str, gopath: str, pkg: str, test: bool = False) -> str:
    """Build the Go file ``src`` (under tests/containerd) as package ``pkg``
    offline in GOPATH mode against Debian's Go sources; the binary's path."""
    if not os.path.isdir(os.path.join(GOCODE, "src/github.com/containerd/containerd")):
        pytest.fail("the containerd Go sources are missing: make setup installs "
                    "golang-github-containerd-containerd-dev")
    d = os.path.join(gopath, "src", pkg)
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(HERE, "containerd", src), d)
    out = os.path.join(gopath, pkg + (".test" if test else ""))
    env = dict(os.environ, GO111MODULE="off", GOPATH=f"{gopath}:{GOCODE}", GOPROXY="off",
               GOFLAGS="")
    env.setdefault("GOCACHE", os.path.join(os.path.expanduser("~"), ".cache", "go-build"))
    cmd = ["go", "test", "-c", "-o", out, "."] if test else ["go", "build", "-o", out, "."]
    res = subprocess.run(cmd, cwd=d, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    return out
