"""The daemon's request loop (patched pyfuse3, third_party/pyfuse3): queued
requests are read without waiting, and after each request the loop polls the
device for a bounded time before it sleeps (``daemon.REQUEST_SPIN_US``).

What must hold: back-to-back requests, requests after gaps longer than the
polling window and concurrent clients are all answered; an idle mount costs
no CPU (the polling ends); a bad window is refused."""
from __future__ import annotations

import os
import threading
import time

import pytest

from _fuse_helpers import Mounted, check_ok, needs_fuse

pytestmark = needs_fuse


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_set_request_spin_refuses_a_negative_window():
    import pyfuse3
    with pytest.raises(ValueError):
        pyfuse3.set_request_spin(-1)


def test_bursts_gaps_and_concurrent_clients_are_answered_and_idle_costs_nothing(sp):
    m = Mounted(sp, "c")
    try:
        # Back-to-back, as cp -a sends them: create, write, utimes, setxattr per file.
        os.mkdir(m.p("d"))
        for i in range(200):
            p = m.p("d", f"f{i}")
            with open(p, "wb") as f:
                f.write(b"%d" % i * 50)
            os.utime(p, ns=(i, i))
            os.setxattr(p, b"user.n", b"%d" % i)
        for i in range(200):
            p = m.p("d", f"f{i}")
            with open(p, "rb") as f:
                assert f.read() == b"%d" % i * 50
            assert os.stat(p).st_mtime_ns == i
            assert os.getxattr(p, b"user.n") == b"%d" % i
        # Requests after gaps far longer than the polling window: each one finds
        # the daemon asleep in trio's epoll and must still be read.
        for i in range(5):
            time.sleep(0.01)
            assert os.getxattr(m.p("d", "f1"), b"user.n") == b"1"
        # Concurrent clients: several requests queued at once, read by the loop
        # without waiting, some by a second loop task.
        errors = []

        def client(k):
            try:
                for j in range(100):
                    p = m.p("d", f"c{k}-{j}")
                    with open(p, "wb") as f:
                        f.write(b"x" * (j + 1))
                    assert os.stat(p).st_size == j + 1
                    assert sorted(os.listxattr(p)) == []
            except Exception as exc:            # noqa: BLE001 -- reported below
                errors.append(exc)
        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        assert len(os.listdir(m.p("d"))) == 200 + 400
        # Idle: the polling after the last request ends; the daemon sleeps.
        time.sleep(0.3)                 # the commit of the last batch (50 ms) is done
        c0 = _cpu_s(m.pid)
        time.sleep(1.0)
        assert _cpu_s(m.pid) - c0 < 0.1, "an idle mount kept using CPU"
        m.umount()
        check_ok(sp)
    finally:
        m.close()
