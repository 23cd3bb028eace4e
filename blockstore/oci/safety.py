"""Rules for hostile archives: every layer tar is hostile until proven otherwise.

Contract (each rule has a test in tests/test_oci_hostile.py):

* entry and hard-link names are relative paths; an absolute name or a ``..``
  component is refused (``.`` components and repeated slashes are dropped);
* a name component is 1..255 bytes without NUL;
* a path is resolved component by component WITHOUT following symlinks:
  an entry whose parent path crosses a symlink is refused (no write through
  a symlink, wherever the symlink points);
* a hard link must name a non-directory that exists in the tree when the
  link entry is applied (earlier in this layer or in a lower layer);
* a regular file may claim at most ``max_file_size`` bytes;
* device nodes are refused when the caller disallows them;
* a name repeated in one layer is refused unless both are directories
  (``dir/`` twice merges attributes): docker lets the later entry win, but a
  duplicate is a classic way to smuggle content past a scanner that reads
  the first one, so blockstore refuses it.

Every refusal is an ``InvalidInput`` whose message names the entry; the
importer rolls the partial import back.
"""
from __future__ import annotations

import os

from ..errors import InvalidInput

NAME_MAX = 255
DEFAULT_MAX_FILE_SIZE = 1 << 42          # 4 TiB logical (sparse files cost nothing)


class Limits:
    """What a caller allows a layer to contain."""

    def __init__(self, allow_devices: bool = True, max_file_size: int = DEFAULT_MAX_FILE_SIZE):
        self.allow_devices = allow_devices
        self.max_file_size = max_file_size


def refuse(entry: str, why: str) -> InvalidInput:
    return InvalidInput(f"refused layer entry {entry!r}: {why}", path=entry)


def split_path(name: str, entry: str | None = None) -> tuple[bytes, ...]:
    """Components of an archive path; refuses absolute paths and ``..``."""
    entry = name if entry is None else entry
    raw = os.fsencode(name)
    if b"\0" in raw:
        raise refuse(entry, "NUL byte in name")
    if raw.startswith(b"/"):
        raise refuse(entry, "absolute path")
    parts = tuple(p for p in raw.split(b"/") if p not in (b"", b"."))
    for p in parts:
        if p == b"..":
            raise refuse(entry, "'..' in path")
        if len(p) > NAME_MAX:
            raise refuse(entry, f"name component longer than {NAME_MAX} bytes")
    return parts
