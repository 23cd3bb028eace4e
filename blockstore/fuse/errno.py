"""The one place where the FUSE adapter turns exceptions into errno values.

Blockstore errors carry their errno (``blockstore.errors``: each category's
``errno_code``, also set as the OSError's ``.errno``); host errors (bind and
tmpfs passthrough) are OSErrors with their own errno.  Anything else is a
bug in blockstore: it is logged with its traceback and reported as EIO, so a
program on the mount sees an I/O error rather than a hung request.
"""
from __future__ import annotations

import errno as _errno
import logging

from ..errors import BlockstoreError

log = logging.getLogger("blockstore.fuse")


def to_errno(exc: BaseException) -> int:
    """errno for an exception raised while serving a FUSE request."""
    if isinstance(exc, BlockstoreError):
        return exc.errno or exc.errno_code
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    log.error("unexpected error in a FUSE request: %r", exc, exc_info=exc)
    return _errno.EIO
