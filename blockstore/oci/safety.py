"""Rules for hostile archives: every layer tar is hostile until proven otherwise.

Contract (each rule has a test in tests/test_oci_hostile.py):

* entry and hard-link names are relative paths; an absolute name or a ``..``
  component is refused (``.`` components and repeated slashes are dropped);
* a name component is 1..255 bytes without NUL; an entry name or link
  target is at most ``PATH_MAX`` bytes (GNU long names and PAX ``path``
  records included: a longer one is refused before it is read);
* a PAX extended header is at most ``PAX_MAX`` bytes (global headers:
  ``PAX_MAX`` in all), a member has at most ``EXT_MAX`` extended headers
  and a sparse map at most ``SPARSE_MAX`` regions, each region inside the
  file's size and after the one before: the memory a header costs is
  bounded whatever the archive says;
* numeric fields fit what the store keeps: uid/gid and device numbers in
  0..2^32-1, times (s) within a signed 64-bit count of ns, sizes >= 0;
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

Every refusal is an ``InvalidInput`` whose message names the entry (through
``show``: at most ``SHOW_MAX`` characters of it, so a hostile name cannot
flood a terminal or a log); the importer rolls the partial import back.
"""
from __future__ import annotations

import os

from ..errors import InvalidInput

NAME_MAX = 255
PATH_MAX = 4096                          # Linux PATH_MAX: no longer name can be used anyway
PAX_MAX = 1 << 20                        # one PAX header (xattrs included)
EXT_MAX = 8                              # extended headers (PAX, GNU long names) per member
SPARSE_MAX = 1 << 16                     # regions in one sparse map
ID_MAX = (1 << 32) - 1                   # uid, gid, device major/minor
TIME_MAX = (1 << 63) // 1_000_000_000 - 1  # seconds whose ns fit a signed 64-bit field
DEFAULT_MAX_FILE_SIZE = 1 << 42          # 4 TiB logical (sparse files cost nothing)
SHOW_MAX = 200


class Limits:
    """What a caller allows a layer to contain."""

    def __init__(self, allow_devices: bool = True, max_file_size: int = DEFAULT_MAX_FILE_SIZE):
        self.allow_devices = allow_devices
        self.max_file_size = max_file_size


def cut(name) -> str:
    """An entry name cut to SHOW_MAX characters (the cut said, with the full
    length), for the path an error carries."""
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if name is None:
        return "?"
    if len(name) <= SHOW_MAX:
        return name
    return f"{name[:SHOW_MAX]}... ({len(os.fsencode(name))} bytes)"


def show(name) -> str:
    """An entry name for messages: quoted, cut to SHOW_MAX characters (the
    cut is said, with the full length), whatever its length."""
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if name is None:
        return "?"
    if len(name) <= SHOW_MAX:
        return repr(name)
    return f"{name[:SHOW_MAX]!r}... ({len(os.fsencode(name))} bytes)"


def refuse(entry, why: str, kind: str = "layer entry") -> InvalidInput:
    """The refusal of one archive entry (its name shown through ``show``)."""
    return InvalidInput(f"refused {kind} {show(entry)}: {why}", path=cut(entry))


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
