"""Real ``io`` file objects over files in a tree.

``RawTreeFile`` is an ``io.RawIOBase``; ``open_file`` wraps it exactly like
the builtin ``open`` does (BufferedReader / BufferedWriter / BufferedRandom,
TextIOWrapper for text modes), so callers get read, readinto, write, seek,
tell, truncate, flush, iteration and context management with the usual
semantics.

Each raw write is one transaction (durable on return unless the store is in
a batch); the buffered layer above gathers small writes into
``WRITE_BUFFER`` bytes, so sequential writes commit once per 8 MiB, and
``flush()`` / ``close()`` make everything written so far visible and
durable.  Reads of a snapshot use the root pinned by the ``TreeView`` (the
bytes never change); reads of a writable tree see its latest committed
state.
"""
from __future__ import annotations

import io
import os

from ..errors import InvalidInput, IsADirectory

WRITE_BUFFER = 8 * 1024 * 1024
READ_BUFFER = 256 * 1024         # reads larger than this bypass the buffer (one copy)


class RawTreeFile(io.RawIOBase):
    def __init__(self, tfs, ino: int, name: str, readable: bool, writable: bool, append: bool):
        super().__init__()
        self._tfs = tfs
        self._ino = ino
        self.name = name
        self._readable = readable
        self._writable = writable
        self._append = append
        self._pos = 0
        tfs.file_opened(ino)

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file.")     # as io's own files

    # -- io.RawIOBase ------------------------------------------------------------
    def readable(self) -> bool:
        return self._readable

    def writable(self) -> bool:
        return self._writable

    def seekable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        self._check_open()
        if not self._readable:
            raise io.UnsupportedOperation("file not open for reading")
        n = self._tfs.readinto_ino(self._ino, self._pos, b)   # straight into b
        self._pos += n
        return n

    def readall(self) -> bytes:
        size = self._tfs.size_ino(self._ino)
        out = self._tfs.read_ino(self._ino, self._pos, max(0, size - self._pos))
        self._pos += len(out)
        return out

    def write(self, b) -> int:
        self._check_open()
        if not self._writable:
            raise io.UnsupportedOperation("file not open for writing")
        data = bytes(b)
        self._pos = self._tfs.write_ino(self._ino, None if self._append else self._pos, data)
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._check_open()
        if whence == os.SEEK_SET:
            pos = offset
        elif whence == os.SEEK_CUR:
            pos = self._pos + offset
        elif whence == os.SEEK_END:
            pos = self._tfs.size_ino(self._ino) + offset
        elif whence in (getattr(os, "SEEK_DATA", 3), getattr(os, "SEEK_HOLE", 4)):
            pos = self._tfs.seek_data_hole(self._ino, offset, whence == getattr(os, "SEEK_DATA", 3))
        else:
            raise InvalidInput(f"invalid whence {whence}")
        if pos < 0:
            raise InvalidInput("negative seek position")
        self._pos = pos
        return pos

    def tell(self) -> int:
        return self._pos

    def truncate(self, size: int | None = None) -> int:
        self._check_open()
        if not self._writable:
            raise io.UnsupportedOperation("file not open for writing")
        size = self._pos if size is None else size
        self._tfs.truncate_ino(self._ino, size)
        return size

    def fileno(self) -> int:
        raise io.UnsupportedOperation("tree files have no OS file descriptor")

    def close(self) -> None:
        if not self.closed:
            try:
                super().close()
            finally:
                self._tfs.file_closed(self._ino)


def parse_mode(mode: str) -> tuple[bool, bool, bool, bool, bool, bool]:
    """(read, write, append, create, truncate, exclusive) and checks the mode string."""
    m = set(mode)
    if not m <= set("rwaxbt+") or len(mode) != len(m) or len(m & set("rwax")) != 1 \
            or {"b", "t"} <= m:
        raise InvalidInput(f"invalid mode {mode!r}")
    plus = "+" in m
    if "r" in m:
        return True, plus, False, False, False, False
    if "w" in m:
        return plus, True, False, True, True, False
    if "a" in m:
        return plus, True, True, True, False, False
    return plus, True, False, True, False, True        # "x"


def wrap(raw: RawTreeFile, mode: str, buffering: int, encoding, errors, newline):
    binary = "b" in mode
    if buffering == 0:
        if not binary:
            raise InvalidInput("can't have unbuffered text I/O")
        return raw
    size = buffering if buffering > 1 else (WRITE_BUFFER if raw.writable() else READ_BUFFER)
    if raw.readable() and raw.writable():
        buf = io.BufferedRandom(raw, size)
    elif raw.writable():
        buf = io.BufferedWriter(raw, size)
    else:
        buf = io.BufferedReader(raw, size)
    if binary:
        return buf
    text = io.TextIOWrapper(buf, encoding=encoding or "utf-8", errors=errors, newline=newline,
                            line_buffering=buffering == 1)
    text.mode = mode
    return text


def check_not_dir(is_dir: bool, path: str) -> None:
    if is_dir:
        raise IsADirectory("is a directory", path=path)
