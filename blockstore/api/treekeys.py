"""File names for per-tree state files (mount locks, writer files, daemon logs).

A tree name may be 255 characters long and contain ``/``, so it cannot be
used in a file name as it is (NAME_MAX is 255 bytes, and escaping ``/``
makes it longer).  ``tree_key(name)`` is a fixed-length stand-in: the first
32 hex digits (128 bits) of the SHA-256 of the UTF-8 name.  Every process
derives the same key from the same name, so lookups by name need no table.
"""
from __future__ import annotations

import hashlib

KEY_LEN = 32


def tree_key(name: str) -> str:
    """The fixed-length file-name key of tree ``name``."""
    return hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:KEY_LEN]
