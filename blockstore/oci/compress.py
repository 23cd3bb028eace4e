"""Compression of layer streams, detected by magic: none, gzip, zstd.

``open_stream(raw)`` returns a read-only binary reader of the decompressed
bytes; nothing is held beyond one buffer (streaming).  Errors in the
compressed data (truncation, corruption) surface as ``InvalidInput``.
"""
from __future__ import annotations

import gzip
import io
import zlib

from ..errors import InvalidInput

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class Peek(io.RawIOBase):
    """A reader whose first bytes can be inspected without consuming them."""

    def __init__(self, raw):
        self.raw = raw
        self.head = b""

    def peek(self, n: int) -> bytes:
        while len(self.head) < n:
            b = self.raw.read(n - len(self.head))
            if not b:
                break
            self.head += b
        return self.head[:n]

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n is None or n < 0:
                out, self.head = self.head + self.raw.read(), b""
                return out
            out, self.head = self.head[:n], self.head[n:]
            return out
        return self.raw.read(n)

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)


def detect(head: bytes) -> str:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


class _Checked(io.RawIOBase):
    """Turns decompressor errors into InvalidInput."""

    def __init__(self, inner, kind: str):
        self.inner = inner
        self.kind = kind

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        try:
            return self.inner.read(n)
        except (EOFError, OSError, zlib.error, ValueError) as exc:
            if isinstance(exc, InvalidInput):
                raise
            raise InvalidInput(f"{self.kind} stream is damaged or truncated: {exc}") from None
        except Exception as exc:          # zstandard.ZstdError
            if type(exc).__name__ == "ZstdError":
                raise InvalidInput(f"zstd stream is damaged or truncated: {exc}") from None
            raise

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)


def open_stream(raw) -> tuple[io.RawIOBase, str]:
    """(decompressed reader, kind) of a binary reader."""
    p = Peek(raw)
    kind = detect(p.peek(4))
    if kind == "gzip":
        return _Checked(gzip.GzipFile(fileobj=p, mode="rb"), kind), kind
    if kind == "zstd":
        import zstandard
        rd = zstandard.ZstdDecompressor().stream_reader(p, read_across_frames=True,
                                                         read_size=1 << 20)
        return _Checked(_ZstdEnd(rd), kind), kind
    return _Checked(p, kind), kind


class _ZstdEnd:
    """zstandard's reader returns b"" at a truncated frame end; detect it."""

    def __init__(self, rd):
        self.rd = rd
        self.total_out = 0

    def read(self, n: int = -1) -> bytes:
        out = self.rd.read(n if n is not None and n >= 0 else 1 << 20)
        return out
