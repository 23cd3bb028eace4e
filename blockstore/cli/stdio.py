"""``-`` as a file operand: ``import -`` reads stdin, ``export ... -`` writes
stdout (send | receive between stores, like ``zfs send | zfs recv``).

stdin is spooled into an unnamed file (O_TMPFILE, falling back to a 0600
O_EXCL file unlinked at once) in the store's own directory before the
import reads it: the importer needs a seekable file to tell an image
archive from a layer tar, and the copy lives on the store's file system,
owned by the product, and disappears with the process.  Cost: one extra
write and read of the stream.  A tar is never written to a terminal.

A sender that fails part-way (``export ... - | import -``) leaves a stream
that ends early.  Compressed streams carry their own end check; an
uncompressed tar must end with its end-of-archive marker (two zero
blocks), and an empty stream is refused, so a broken send never becomes a
snapshot of part of a tree.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile

from ..errors import InvalidInput

STDIO = "-"
CHUNK = 1 << 20
TAR_END = 1024                                   # two 512-byte zero blocks
_COMPRESSED = (b"\x1f\x8b", b"\x28\xb5\x2f\xfd")    # gzip, zstd (self-checking)


@contextlib.contextmanager
def stdin_spooled(store_dir: str):
    """Yield a path that reads what stdin held (/proc/self/fd/N of the spool)."""
    src = sys.stdin.buffer
    if src.isatty():
        raise InvalidInput("`-` reads a tar from stdin, which is a terminal; pipe one in "
                           "(`blockstore export NAME - | blockstore import - NAME`)")
    with tempfile.TemporaryFile(dir=store_dir, prefix=".stdin-") as spool:
        shutil.copyfileobj(src, spool, CHUNK)
        spool.flush()
        _check_complete(spool)
        yield f"/proc/self/fd/{spool.fileno()}"


def _check_complete(spool) -> None:
    size = spool.seek(0, os.SEEK_END)
    if size == 0:
        raise InvalidInput("stdin was empty: nothing to import (did the sending command fail?)")
    spool.seek(0)
    head = spool.read(4)
    if head.startswith(_COMPRESSED):
        return
    spool.seek(max(size - TAR_END, 0))
    if size < TAR_END or spool.read(TAR_END).strip(b"\0"):
        raise InvalidInput("the tar on stdin ends without its end-of-archive marker: the "
                           "sending command stopped early; nothing was imported")


@contextlib.contextmanager
def stdout_binary():
    """The binary stdout (refused when it is a terminal), flushed at the end."""
    out = sys.stdout.buffer
    if out.isatty():
        raise InvalidInput("refusing to write a tar to a terminal; redirect stdout "
                           "(`> FILE` or `| blockstore import - NAME`)")
    yield out
    out.flush()
