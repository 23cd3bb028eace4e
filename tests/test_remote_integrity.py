"""A body sent to the remote carries its CRC32, which the server checks: a
byte changed on the way is refused, not stored (blockstore/remote/objects.py).
Against the real S3 server of the test session (tests/_s3.py)."""
from __future__ import annotations

import io
import os

import pytest

from blockstore import errors
from blockstore.remote.objects import ObjectStore


def _sent_headers(objs: ObjectStore, seen: list, flip: bool):
    def before_send(request, **_):
        seen.append(dict(request.headers))
        if flip:
            stream = hasattr(request.body, "getvalue")
            body = bytearray(request.body.getvalue() if stream else request.body)
            body[len(body) // 2] ^= 0x01
            request.body = io.BytesIO(bytes(body)) if stream else bytes(body)
    objs.client.meta.events.register("before-send.s3.PutObject", before_send)
    return before_send


def test_put_sends_a_crc32_not_a_payload_sha256(s3):
    objs = ObjectStore(s3.bucket, "integrity", s3.endpoint)
    seen: list = []
    hook = _sent_headers(objs, seen, flip=False)
    try:
        data = os.urandom(1 << 20)
        objs.put("packs/x.pack", data)
    finally:
        objs.client.meta.events.unregister("before-send.s3.PutObject", hook)
    assert objs.get("packs/x.pack") == data
    h = {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in seen[-1].items()}
    assert h.get("x-amz-content-sha256") == "UNSIGNED-PAYLOAD"
    assert "x-amz-checksum-crc32" in h
    assert "x-amz-checksum-crc32" in h["authorization"]      # the checksum itself is signed


def test_a_body_changed_on_the_way_is_refused(s3):
    objs = ObjectStore(s3.bucket, "integrity", s3.endpoint, attempts=1)
    seen: list = []
    hook = _sent_headers(objs, seen, flip=True)
    try:
        with pytest.raises(errors.BlockstoreError):
            objs.put("packs/y.pack", os.urandom(1 << 20))
    finally:
        objs.client.meta.events.unregister("before-send.s3.PutObject", hook)
    with pytest.raises(errors.NotFound):
        objs.get("packs/y.pack")
