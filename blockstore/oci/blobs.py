"""Original layer blobs: kept at import, written out again at export.

A tree holds file contents, not the tar (let alone the compressed tar) it
was made from, and a tar regenerated from the files is a different blob:
other header layout, other compressor.  So an image layer imported from a
blob keeps that blob in its snapshot (``fs.source``: beside the files, in
the same B-tree, freed with the last tree holding it) and exports it again
byte for byte: same digest, same diff ID -- the round trip ``skopeo copy``
gives, and what containerd's content store does.

Stored form: a compressed blob (gzip, zstd) as it is; an uncompressed tar
compressed with zstd (level ``ZSTD_LEVEL``), decompressed again on export.
Cost: the compressed size of each imported layer in pool space, on top of
its files (gzip layers are typically a third to a half of the files they
hold), one more read of each layer blob at import (from the page cache, as
the layer was just read; plus zstd compression for an uncompressed tar),
and at export a copy instead of a tar regeneration.  Layers made in the store (commits) have no blob: they are
written from the tree diff (``layer_out``) and compressed.

Meta (SOURCE_META, JSON): digest and size of the blob, its compression
(``none``/``gzip``/``zstd``), how it is stored (``raw``/``zstd``).
"""
from __future__ import annotations

import hashlib
import json

from ..api.layers import PIECE, SourceWriter
from ..errors import Corruption, InvalidInput
from .compress import detect

ZSTD_LEVEL = 3


def keep(st, raw, digest: str) -> dict:
    """Store the blob read from binary reader ``raw`` as the source of staging
    import ``st``'s working clone (``api.layers.SourceWriter``); it must hash to
    ``digest`` (what the layer was verified against).  Runs in the staging
    batch; returns the meta."""
    head = raw.read(PIECE)
    comp = detect(head)
    h = hashlib.sha256(head)
    size = len(head)
    stored = "raw" if comp != "none" else "zstd"

    def chunks():
        nonlocal size
        yield head
        while True:
            b = raw.read(PIECE)
            if not b:
                return
            h.update(b)
            size += len(b)
            yield b
    pieces = chunks()
    if stored == "zstd":
        import zstandard
        cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        co = cctx.compressobj()

        def packed():
            for b in chunks():
                out = co.compress(b)
                if out:
                    yield out
            yield co.flush()
        pieces = packed()
    writer = SourceWriter(st)
    stored_size = 0
    for p in pieces:
        writer.write(p)
        stored_size += len(p)
    writer.close()
    got = "sha256:" + h.hexdigest()
    if got != digest:
        raise InvalidInput(f"layer blob changed while it was imported: expected {digest}, "
                           f"got {got}")
    meta = {"digest": digest, "size": size, "compression": comp, "stored": stored,
            "stored_size": stored_size}
    writer.put_meta(json.dumps(meta, sort_keys=True).encode())
    return meta


def meta_of(tree) -> dict | None:
    """The meta of the blob kept by a tree (``api.layers.TreeReader``), or None."""
    raw = tree.source_meta()
    if raw is None:
        return None
    try:
        m = json.loads(raw)
    except ValueError:
        return None
    return m if isinstance(m, dict) and "digest" in m and "stored" in m else None


def write_out(tree, meta: dict, out) -> None:
    """Write the blob kept by a tree (``api.layers.TreeReader``) to ``out`` (binary
    writer), verifying its digest and size."""
    h = hashlib.sha256()
    n = 0
    pieces = tree.source(meta["stored_size"])
    if meta["stored"] == "zstd":
        import zstandard
        do = zstandard.ZstdDecompressor().decompressobj()
        pieces = (do.decompress(p) for p in pieces)
    for p in pieces:
        if p:
            h.update(p)
            n += len(p)
            out.write(p)
    got = "sha256:" + h.hexdigest()
    if got != meta["digest"] or n != meta["size"]:
        raise Corruption(f"stored layer blob {meta['digest']} reads back as {got} ({n} bytes)")
