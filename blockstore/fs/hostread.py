"""Reading a host directory tree for import: extended attributes and the data
regions of a file.  Host-side only (no store access); used by the bulk
builder (build.py) and the incremental importer (api/transfer.py).

Costs: ``xattrs`` one listxattr plus one getxattr per attribute (a path, or
an open file descriptor, which spares the path walk); ``data_segments`` two
lseeks per data region.
"""
from __future__ import annotations

import errno
import os


def xattrs(path) -> dict[bytes, bytes]:
    """The extended attributes of ``path`` (not followed if a symlink) or of an
    open file descriptor; {} where the file system has none."""
    follow = isinstance(path, int)          # an fd: nothing to follow
    try:
        names = os.listxattr(path, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return {}
        raise
    out = {}
    for n in names:
        try:
            out[os.fsencode(n)] = os.getxattr(path, n, follow_symlinks=follow)
        except OSError:
            continue
    return out


def data_segments(fd: int, size: int):
    """(offset, length) of the data regions of a file (holes skipped)."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return
            yield pos, size - pos          # no SEEK_DATA support: all data
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, min(end, size) - start
        pos = end
