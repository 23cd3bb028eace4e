"""The object store as the remote tier uses it: get, ranged get, put (never
over an existing object), list, delete; S3 through boto3.

Every call has bounded time (connect and read timeouts, few retries), and
failures become ``Unreachable`` (network, timeouts, 5xx) or ``NotFound``.
``sent``/``received`` count the payload bytes of puts and gets.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from http.client import HTTPException

from .. import errors
from .. import failpoints


@dataclass
class ObjectInfo:
    key: str
    size: int
    mtime: float            # seconds since the epoch (the store's clock)


_clients: dict = {}
_clients_lock = threading.Lock()


def _client(endpoint, timeout, attempts, cfg):
    """One boto3 client per endpoint, settings and credentials, for the process:
    making one loads the service model (~1 s); clients are thread-safe."""
    import os

    import boto3
    key = (endpoint, timeout, attempts, os.environ.get("AWS_ACCESS_KEY_ID"),
           os.environ.get("AWS_SECRET_ACCESS_KEY"), os.environ.get("AWS_PROFILE"))
    with _clients_lock:
        c = _clients.get(key)
        if c is None:
            c = _clients[key] = boto3.session.Session().client("s3", endpoint_url=endpoint,
                                                               config=cfg)
            # a bytes body is sent as it is, in one piece: botocore would wrap it in
            # a BytesIO that http.client then copies out and sends 16 KiB at a time
            # (a Python loop and a copy per 16 KiB sent); bytes can be sent again as
            # they are when a request is retried
            from botocore.handlers import convert_body_to_file_like_object
            c.meta.events.unregister("before-parameter-build.s3.PutObject",
                                     convert_body_to_file_like_object)
        return c


def _read_into(body, mv: memoryview) -> int:
    """Read a response body (botocore's StreamingBody) into ``mv`` until it is
    full or the body ends; returns the bytes read.

    Where the response allows (no content encoding to undo) the bytes go from
    the socket straight into ``mv`` (http.client's ``readinto``, under
    urllib3's response): urllib3's own ``readinto`` reads each piece into a
    new bytes object and copies it over, a second pass over every byte
    received and an allocation as large as the read.  The connection goes
    back to urllib3's pool once the response is read to its end, as urllib3
    itself does."""
    from botocore.response import StreamingBody
    raw = getattr(body, "_raw_stream", None)
    fp = getattr(raw, "_fp", None)
    headers = getattr(raw, "headers", None)
    # a subclass (botocore's checksum-validating body) checks what it reads: kept
    direct = (type(body) is StreamingBody and fp is not None and hasattr(fp, "readinto")
              and hasattr(raw, "release_conn") and headers is not None
              and not headers.get("content-encoding"))
    read = fp.readinto if direct else body.readinto
    got, length = 0, mv.nbytes
    while got < length:
        n = read(mv[got:])
        if not n:
            break
        got += n
    if direct and fp.isclosed():
        raw.release_conn()
    return got


class ObjectStore:
    def __init__(self, bucket: str, prefix: str, endpoint: str | None, *,
                 timeout: float = 10.0, attempts: int = 3):
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise errors.Unsupported("remotes need boto3 (pip install 'blockstore[remote]')") from None
        self.bucket = bucket
        self.prefix = prefix + "/" if prefix else ""
        self.timeout = timeout
        # Every body goes with its CRC32 (botocore's default checksum, a signed
        # header), which the server checks before it stores the object, and
        # unsigned: botocore would otherwise sign the SHA-256 of each body sent over
        # plain http, a pass over every byte at ~0.6 s/GiB of CPU next to ~0.2 for
        # the CRC32.  Corruption on the way is refused either way; a signed body
        # would add proof against tampering, which plain http does not give reads
        # anyway (responses are never signed: a pull checks every block's SHA-256).
        cfg = Config(connect_timeout=min(timeout, 5), read_timeout=timeout,
                     retries={"max_attempts": attempts, "mode": "standard"},
                     max_pool_connections=32, s3={"payload_signing_enabled": False})
        self.client = _client(endpoint, timeout, attempts, cfg)
        self._lock = threading.Lock()
        self.sent = 0
        self.received = 0
        self.puts = 0

    def _fail(self, exc, key: str):
        from botocore.exceptions import BotoCoreError, ClientError
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in ("NoSuchKey", "404", "NotFound") or status == 404:
                return errors.NotFound(f"remote object {self.prefix}{key} does not exist")
            if code in ("PreconditionFailed",) or status == 412:
                return errors.AlreadyExists(f"remote object {self.prefix}{key} exists")
            if status in (401, 403):
                return errors.PermissionDenied(f"the remote refused access to {self.bucket}: {code} "
                                               f"(check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
            return errors.Unreachable(f"remote {self.bucket}: {code or status}: {exc}")
        if isinstance(exc, BotoCoreError):
            return errors.Unreachable(f"remote {self.bucket} unreachable: {exc}")
        return exc

    def get(self, key: str) -> bytes:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except Exception as exc:
            raise self._fail(exc, key) from None
        with self._lock:
            self.received += len(body)
        return body

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key,
                                          Range=f"bytes={offset}-{offset + length - 1}")["Body"].read()
        except Exception as exc:
            raise self._fail(exc, key) from None
        with self._lock:
            self.received += len(body)
        if len(body) != length:
            raise errors.Corruption(f"remote object {self.prefix}{key} is shorter than its index says")
        return body

    def get_range_into(self, key: str, offset: int, buf) -> None:
        """Fill ``buf`` (a writable buffer) with the object's bytes from ``offset``."""
        mv = memoryview(buf).cast("B")
        length = mv.nbytes
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key,
                                          Range=f"bytes={offset}-{offset + length - 1}")["Body"]
        except Exception as exc:
            raise self._fail(exc, key) from None
        try:
            got = _read_into(body, mv)
        except Exception as exc:
            body.close()                      # a connection left midway is not reused
            if isinstance(exc, (OSError, HTTPException)):
                raise errors.Unreachable(f"remote {self.bucket}: reading {self.prefix}{key}: "
                                         f"{exc}") from None
            raise self._fail(exc, key) from None
        with self._lock:
            self.received += got
        if got != length:
            body.close()
            raise errors.Corruption(f"remote object {self.prefix}{key} is shorter than its index says")

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
            return True
        except Exception as exc:
            e = self._fail(exc, key)
            if isinstance(e, errors.NotFound):
                return False
            raise e from None

    def put(self, key: str, data: bytes, *, exclusive: bool = False) -> None:
        """Upload ``data``; ``exclusive``: fail with AlreadyExists if the key exists
        (a conditional put where the server supports it, plus a check before)."""
        if failpoints.ACTIVE:
            failpoints.hit("remote.before_put")
        kw = {"IfNoneMatch": "*"} if exclusive else {}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data, **kw)
        except Exception as exc:
            raise self._fail(exc, key) from None
        with self._lock:
            self.sent += len(data)
            self.puts += 1

    def list(self, sub: str) -> list[ObjectInfo]:
        out = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + sub)
            for page in pages:
                for o in page.get("Contents", []):
                    out.append(ObjectInfo(o["Key"][len(self.prefix):], o["Size"],
                                          o["LastModified"].timestamp()))
        except Exception as exc:
            raise self._fail(exc, sub) from None
        return out

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)
        except Exception as exc:
            raise self._fail(exc, key) from None
