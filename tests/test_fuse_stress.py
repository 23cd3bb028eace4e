"""fio with crc32c verification and a multi-process stress through a FUSE mount."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import pytest

from blockstore import Store

from _fuse_helpers import Mounted, check_ok, needs_fuse

pytestmark = needs_fuse


@pytest.fixture
def m(tmp_path):
    sp = tmp_path / "store"
    with Store.open(sp) as s:
        s.create("c")
    mt = Mounted(sp, "c")
    yield mt
    mt.close()
    check_ok(sp)


@pytest.mark.skipif(shutil.which("fio") is None, reason="needs fio (make setup installs it)")
@pytest.mark.parametrize("rw,bs,size", [("write", "1M", "64M"), ("randwrite", "4k", "2M"),
                                         ("randwrite", "64k", "32M")])
def test_fio_verify_crc32c(m, rw, bs, size):
    res = subprocess.run(
        ["fio", f"--name={rw}-{bs}", f"--directory={m.mnt}", f"--rw={rw}", f"--bs={bs}",
         f"--size={size}", "--ioengine=psync", "--verify=crc32c", "--do_verify=1",
         "--verify_fatal=1", "--verify_state_save=0", "--fsync_on_close=1", "--output-format=json"],
        capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    job = json.loads(res.stdout[res.stdout.index("{"):])["jobs"][0]
    assert job["error"] == 0
    assert job["write"]["io_bytes"] == {"64M": 64, "2M": 2, "32M": 32}[size] << 20
    assert job["read"]["io_bytes"] == job["write"]["io_bytes"]   # the verify pass read it all


WORKER = r"""
import hashlib, json, os, random, sys, time
role, mnt, n, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
rnd = random.Random(n)
end = time.time() + secs
out = {}
if role == "writer":
    d = os.path.join(mnt, f"w{n}")
    os.mkdir(d)
    files = {}
    while time.time() < end:
        name = f"f{rnd.randrange(6)}"
        data = files.get(name, b"")
        off = rnd.randrange(0, len(data) + 1)
        chunk = rnd.randbytes(rnd.choice([1, 100, 4096, 70000, 1 << 20]))
        with open(os.path.join(d, name), "r+b" if name in files else "wb") as f:
            f.seek(off)
            f.write(chunk)
        data = data[:off] + chunk + data[off + len(chunk):]
        if rnd.random() < 0.1:
            keep = rnd.randrange(len(data) + 1)
            os.truncate(os.path.join(d, name), keep)
            data = data[:keep]
        files[name] = data
    out = {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}
elif role == "reader":
    reads = 0
    while time.time() < end:
        for root, dirs, fs in os.walk(mnt):
            for f in fs:
                try:
                    with open(os.path.join(root, f), "rb") as fh:
                        while fh.read(1 << 20):
                            pass
                    reads += 1
                except FileNotFoundError:
                    pass                  # renamed or not there any more: fine
    out = {"reads": reads}
else:
    a, b = os.path.join(mnt, "ra"), os.path.join(mnt, "rb")
    os.makedirs(os.path.join(a, "sub"))
    os.mkdir(b)
    for i in range(20):
        with open(os.path.join(a, "sub", f"r{i}"), "wb") as f:
            f.write(bytes([i]) * (i * 1000))
    moves = 0
    while time.time() < end:
        os.rename(os.path.join(a, "sub"), os.path.join(b, "sub"))
        i = rnd.randrange(20)
        os.rename(os.path.join(b, "sub", f"r{i}"), os.path.join(b, "sub", f"x{i}"))
        os.rename(os.path.join(b, "sub", f"x{i}"), os.path.join(b, "sub", f"r{i}"))
        os.rename(os.path.join(b, "sub"), os.path.join(a, "sub"))
        moves += 1
    out = {"moves": moves}
print(json.dumps(out))
"""


def test_parallel_writers_readers_renames_then_check(m):
    secs = "4"
    procs = [(role, n, subprocess.Popen([sys.executable, "-c", WORKER, role, m.mnt, str(n), secs],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
             for role, n in [("writer", 0), ("writer", 1), ("writer", 2), ("writer", 3),
                             ("reader", 10), ("reader", 11), ("renamer", 20)]]
    results = {}
    for role, n, p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, f"{role} {n}: {err}"
        results[(role, n)] = json.loads(out)
    assert all(results[("reader", n)]["reads"] > 0 for n in (10, 11))
    assert results[("renamer", 20)]["moves"] > 0
    m.umount()
    with Store.open(m.store_path, create=False) as s:
        assert s.check().ok
        fs = s.fs("c")
        for n in range(4):
            want = results[("writer", n)]
            got = {name: hashlib.sha256(fs.read_bytes(f"/w{n}/{name}")).hexdigest()
                   for name in fs.listdir(f"/w{n}")}
            assert got == want
        assert sorted(fs.listdir("/ra/sub")) == sorted(f"r{i}" for i in range(20))
        for i in range(20):
            assert fs.read_bytes(f"/ra/sub/r{i}") == bytes([i]) * (i * 1000)
        fs.close()
