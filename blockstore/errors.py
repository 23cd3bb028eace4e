"""The one error hierarchy of blockstore.

Every error raised on purpose by any layer is a ``BlockstoreError``.  Each
category carries, in exactly one place (its class attributes):

* ``errno``     -- what the FUSE adapter returns and what the OSError carries;
* ``exit_code`` -- what the CLI exits with (documented in docs/ERRORS.md).

Categories that have a natural builtin counterpart also inherit from it
(``NotFound`` is a ``FileNotFoundError``, ``ReadOnly`` a ``PermissionError``
with errno EROFS, ...), so ``except OSError`` code written for the os module
keeps working.  A class's docstring is its default message.
"""
from __future__ import annotations

import errno as _errno


class BlockstoreError(OSError):
    """Blockstore failed."""

    errno_code: int = _errno.EIO
    exit_code: int = 1

    def __init__(self, message: str | None = None, *, path: str | None = None):
        msg = message or (self.__doc__ or "").strip().splitlines()[0]
        if path is not None:
            OSError.__init__(self, self.errno_code, msg, path)
        else:
            OSError.__init__(self, self.errno_code, msg)
        self.message = msg

    def __reduce__(self):
        # OSError pickles as (errno, strerror); rebuild through our __init__.
        return (_rebuild, (type(self), self.message, self.filename))

    def __str__(self) -> str:
        if self.filename is not None:
            return f"{self.message}: {self.filename}"
        return self.message


def _rebuild(cls, message, path):
    return cls(message, path=path)


class NotFound(BlockstoreError, FileNotFoundError):
    """No such tree, file or object."""

    errno_code = _errno.ENOENT
    exit_code = 3


class AlreadyExists(BlockstoreError, FileExistsError):
    """Already exists."""

    errno_code = _errno.EEXIST
    exit_code = 4


class Busy(BlockstoreError):
    """Busy: still in use."""

    errno_code = _errno.EBUSY
    exit_code = 5


class ReadOnly(BlockstoreError, PermissionError):
    """Read-only: snapshots cannot be changed."""

    errno_code = _errno.EROFS
    exit_code = 6


class NoSpace(BlockstoreError):
    """No space left in the pool or on its disk."""

    errno_code = _errno.ENOSPC
    exit_code = 7


class Corruption(BlockstoreError):
    """Store metadata or data is damaged; run `blockstore check`."""

    errno_code = _errno.EIO
    exit_code = 8


class InvalidInput(BlockstoreError, ValueError):
    """Invalid input."""

    errno_code = _errno.EINVAL
    exit_code = 9


class NotAStore(InvalidInput):
    """Not a blockstore store (no metadata found); create one with `blockstore init`."""

    exit_code = 10


class FormatTooNew(BlockstoreError):
    """The store was written by a newer blockstore; upgrade blockstore to open it."""

    errno_code = _errno.EPROTONOSUPPORT
    exit_code = 11


class Unsupported(BlockstoreError):
    """Operation not supported."""

    errno_code = _errno.EOPNOTSUPP
    exit_code = 12


# -- Precise POSIX conditions.  Each is a case of one category above (and so
# shares its exit code) but carries its own errno for FUSE and os-style callers.

class NotADirectory(InvalidInput, NotADirectoryError):
    """Not a directory."""

    errno_code = _errno.ENOTDIR


class IsADirectory(InvalidInput, IsADirectoryError):
    """Is a directory."""

    errno_code = _errno.EISDIR


class DirectoryNotEmpty(Busy):
    """Directory not empty."""

    errno_code = _errno.ENOTEMPTY


class NameTooLong(InvalidInput):
    """File name or path too long."""

    errno_code = _errno.ENAMETOOLONG


class TooManyLinks(InvalidInput):
    """Too many levels of symbolic links, or too many hard links."""

    errno_code = _errno.ELOOP


class PermissionDenied(BlockstoreError, PermissionError):
    """Permission denied."""

    errno_code = _errno.EACCES
    exit_code = 6


class NotPermitted(BlockstoreError, PermissionError):
    """Operation not permitted."""

    errno_code = _errno.EPERM
    exit_code = 6


class NoAttribute(NotFound):
    """No such extended attribute."""

    errno_code = _errno.ENODATA


class NoSuchPosition(InvalidInput):
    """No such position: no data (or hole) at or after this offset."""

    errno_code = _errno.ENXIO


class TooBig(InvalidInput):
    """Argument too big (an extended attribute value over 64 KiB)."""

    errno_code = _errno.E2BIG


class CrossDevice(InvalidInput):
    """Cross-device link: source and target are in different trees or mounts."""

    errno_code = _errno.EXDEV


class Unreachable(BlockstoreError):
    """A remote could not be reached or did not answer in time."""

    errno_code = _errno.EIO


# Sorted by exit code; docs/ERRORS.md and the CLI's table are generated from it.
CATEGORIES: tuple[type[BlockstoreError], ...] = (
    BlockstoreError, NotFound, AlreadyExists, Busy, ReadOnly, NoSpace,
    Corruption, InvalidInput, NotAStore, FormatTooNew, Unsupported,
)
