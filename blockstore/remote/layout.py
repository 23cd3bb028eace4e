"""The objects of a remote (docs/REMOTE-FORMAT.md): names and encodings.

    PREFIX/packs/H.pack        blocks, concatenated; H = SHA-256 of its index
    PREFIX/packs/H.idx         the pack's index: which block is where
    PREFIX/indexes/H.idxs      the indexes of the packs one push sealed, in one
                               object (a reader's shortcut); H = SHA-256 of it
    PREFIX/trees/H.items.zst   a snapshot's item stream, zstd; H = SHA-256 of
                               the uncompressed stream (the tree's content id)
    PREFIX/snapshots/N.json    the manifest of snapshot N (N percent-encoded)
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import json
import operator
import struct
import urllib.parse

from .. import errors

FORMAT = 1
IDX_MAGIC = b"BSIDX001"
BUNDLE_MAGIC = b"BSIDXS01"
_BUNDLE_HEAD = struct.Struct(">8sI")      # magic, indexes
_BUNDLE_LEN = struct.Struct(">I")         # each index: its length, then its bytes
_IDX_HEAD = struct.Struct(">8sIQI")       # magic, block size, pack size, entries
_IDX_ENTRY = struct.Struct(">32sQI")      # sha256, offset, length
PACK_TARGET = 8 << 20                     # a pack is sealed at this size (MiB-sized objects)


def pack_key(h: str) -> str:
    return f"packs/{h}.pack"


def idx_key(h: str) -> str:
    return f"packs/{h}.idx"


def bundle_key(h: str) -> str:
    return f"indexes/{h}.idxs"


def tree_key(h: str) -> str:
    return f"trees/{h}.items.zst"


def manifest_key(name: str) -> str:
    return "snapshots/" + urllib.parse.quote(name, safe="") + ".json"


def name_of_manifest_key(key: str) -> str:
    return urllib.parse.unquote(key[len("snapshots/"):-len(".json")])


def encode_index(block_size: int, pack_size: int, entries: list[tuple[bytes, int, int]]) -> bytes:
    head = _IDX_HEAD.pack(IDX_MAGIC, block_size, pack_size, len(entries))
    return head + b"".join(itertools.starmap(_IDX_ENTRY.pack, entries))


_IDX_CHUNK = 2048                         # entries one cached Struct unpacks (a full 8 MiB pack)


@functools.lru_cache(maxsize=8)
def _entries_struct(k: int) -> struct.Struct:
    """A Struct of ``k`` index entries in a row: one unpack call yields them flat,
    and the columns are strided slices of it (no tuple per entry)."""
    return struct.Struct(_IDX_ENTRY.format[0] + _IDX_ENTRY.format[1:] * k)


def decode_index(data: bytes) -> tuple[int, int, list[tuple[bytes, int, int]]]:
    bs, size, ds, offs, lens = decode_index_columns(data)
    return bs, size, list(zip(ds, offs, lens))


def decode_index_columns(data: bytes) -> tuple[int, int, tuple, tuple, tuple]:
    """``decode_index`` as columns: (block size, pack size, digests, offsets,
    lengths), one transposition of the entries (what a reader's index of
    every block is built from, at C speed)."""
    try:
        magic, bs, size, n = _IDX_HEAD.unpack_from(data, 0)
        if magic != IDX_MAGIC or len(data) != _IDX_HEAD.size + n * _IDX_ENTRY.size:
            raise ValueError
        flat: list = []
        for at in range(0, n, _IDX_CHUNK):
            k = min(_IDX_CHUNK, n - at)
            flat += _entries_struct(k).unpack_from(data, _IDX_HEAD.size + at * _IDX_ENTRY.size)
    except (struct.error, ValueError):
        raise errors.Corruption("a pack index on the remote is malformed") from None
    if not flat:
        return bs, size, (), (), ()
    ds, offs, lens = tuple(flat[0::3]), tuple(flat[1::3]), tuple(flat[2::3])
    if max(map(operator.add, offs, lens)) > size:
        raise errors.Corruption("a pack index points past the end of its pack")
    return bs, size, ds, offs, lens


def encode_bundle(indexes: list[bytes]) -> tuple[str, bytes]:
    """(name, bytes) of the bundle of pack indexes ``indexes``."""
    out = [_BUNDLE_HEAD.pack(BUNDLE_MAGIC, len(indexes))]
    for idx in indexes:
        out += [_BUNDLE_LEN.pack(len(idx)), idx]
    data = b"".join(out)
    return hashlib.sha256(data).hexdigest(), data


def decode_bundle(data: bytes) -> dict[str, bytes]:
    """pack name -> index bytes of the indexes a bundle holds.  Each name is the
    SHA-256 of the index bytes (how packs are named, §2), so a damaged entry
    names no pack; a malformed bundle gives what it holds before the damage:
    a bundle only spares a reader the per-pack index GETs."""
    out: dict[str, bytes] = {}
    if len(data) < _BUNDLE_HEAD.size:
        return out
    magic, n = _BUNDLE_HEAD.unpack_from(data, 0)
    if magic != BUNDLE_MAGIC:
        return out
    mv, pos = memoryview(data), _BUNDLE_HEAD.size
    for _ in range(n):
        if pos + _BUNDLE_LEN.size > len(data):
            break
        ln = _BUNDLE_LEN.unpack_from(data, pos)[0]
        pos += _BUNDLE_LEN.size
        if pos + ln > len(data):
            break
        idx = bytes(mv[pos:pos + ln])
        out[hashlib.sha256(idx).hexdigest()] = idx
        pos += ln
    return out


class PackBuilder:
    """Blocks collected for one pack; ``seal`` gives (hash, pack bytes, index bytes)."""

    def __init__(self, block_size: int):
        self.bs = block_size
        self.parts: list[bytes] = []
        self.entries: list[tuple[bytes, int, int]] = []
        self.size = 0

    def add(self, digest: bytes, data: bytes) -> None:
        self.entries.append((digest, self.size, len(data)))
        self.parts.append(data)
        self.size += len(data)

    def add_run(self, digests, data) -> int:
        """Add blocks from the front of ``data`` (one ``block_size`` block per
        digest) until the pack reaches PACK_TARGET; returns how many were added.
        The same packs as ``add`` one block at a time, without a call per block."""
        room = -(-(PACK_TARGET - self.size) // self.bs)
        k = min(len(digests), max(1, room))
        off = self.size
        self.entries.extend(zip(digests[:k], range(off, off + k * self.bs, self.bs),
                                itertools.repeat(self.bs, k)))
        self.parts.append(data[:k * self.bs])
        self.size += k * self.bs
        return k

    def seal(self) -> tuple[str, bytes, bytes]:
        """The pack's name, bytes and index.  The name is the SHA-256 of the
        index, which lists the SHA-256 of every block, its offset and the pack's
        size: it names the pack's content as surely as a hash of the bytes,
        without hashing them a second time."""
        data = b"".join(self.parts)
        idx = encode_index(self.bs, len(data), self.entries)
        return hashlib.sha256(idx).hexdigest(), data, idx


def encode_manifest(m: dict) -> bytes:
    return json.dumps(m, sort_keys=True, indent=1).encode()


def decode_manifest(data: bytes, name: str) -> dict:
    try:
        m = json.loads(data)
        if m.get("format") != FORMAT:
            raise errors.FormatTooNew(f"remote snapshot {name!r} has manifest format "
                                      f"{m.get('format')}; upgrade blockstore")
        for k in ("name", "tree", "packs", "block_size", "chain"):
            if k not in m:
                raise ValueError(k)
        if m["name"] != name:
            raise ValueError("name")
    except (ValueError, AttributeError, TypeError) as exc:
        raise errors.Corruption(f"the manifest of remote snapshot {name!r} is malformed ({exc})") from None
    return m
