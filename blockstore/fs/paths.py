"""Path parsing and resolution inside one tree.

Paths are str (encoded with the filesystem encoding, surrogateescape) or
bytes, always relative to the tree's root ("/a/b" and "a/b" are the same).
Limits follow Linux: a name is at most 255 bytes, a path at most 4096,
no NUL anywhere, at most 40 symbolic links followed per resolution.  ``..``
moves to the parent; ``..`` at the root would leave the tree and is an
error.  Absolute symlink targets resolve from the tree's root (as in a
chroot), never from the host's.
"""
from __future__ import annotations

import os

from ..errors import (InvalidInput, IsADirectory, NameTooLong, NotADirectory, NotFound,
                      TooManyLinks)
from . import items
from .tree import FileTree

NAME_MAX = 255
PATH_MAX = 4096
SYMLOOP_MAX = 40
_DT_DIR, _DT_LNK = 0o040000 >> 12, 0o120000 >> 12


def to_bytes(path) -> bytes:
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    b = os.fsencode(path) if isinstance(path, str) else bytes(path)
    if b"\0" in b:
        raise InvalidInput("path contains a NUL byte", path=repr(path))
    if len(b) > PATH_MAX:
        raise NameTooLong(f"path is {len(b)} bytes, over {PATH_MAX}")
    return b


def components(path) -> list[bytes]:
    parts = [p for p in to_bytes(path).split(b"/") if p and p != b"."]
    for p in parts:
        if len(p) > NAME_MAX:
            raise NameTooLong(f"name is {len(p)} bytes, over {NAME_MAX}",
                              path=p[:40].decode(errors="replace") + "...")
    return parts


def _walk_parts(raw: bytes, trailing_slash: bool) -> list[bytes]:
    """Components for ``_walk``: a ``.`` is kept (it demands that what precedes it
    is a directory: ``file/.`` is ENOTDIR), and with ``trailing_slash`` a final
    ``/`` becomes a ``.`` as well."""
    parts = [p for p in raw.split(b"/") if p]
    for p in parts:
        if len(p) > NAME_MAX:
            raise NameTooLong(f"name is {len(p)} bytes, over {NAME_MAX}",
                              path=p[:40].decode(errors="replace") + "...")
    if trailing_slash and parts and raw.endswith(b"/"):
        parts.append(b".")
    return parts


def check_name(name: bytes) -> bytes:
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise InvalidInput(f"invalid file name {name!r}")
    if len(name) > NAME_MAX:
        raise NameTooLong(f"name is {len(name)} bytes, over {NAME_MAX}")
    return name


def _walk(fst: FileTree, parts: list[bytes], follow_last: bool, shown) -> int:
    """Cost: one dirent lookup per component (the entry's recorded type says
    whether it is a directory; an inode is read only for symlinks)."""
    ino = items.ROOT_INO
    is_dir = True                              # the root; then what the last entry recorded
    todo = list(reversed(parts))
    links = 0
    while todo:
        name = todo.pop()
        if name == b".":
            if not is_dir:
                raise NotADirectory("a path component is not a directory", path=shown)
            continue
        if name == b"..":
            if not is_dir:
                raise NotADirectory("a path component is not a directory", path=shown)
            if ino == items.ROOT_INO:
                raise InvalidInput("path escapes the tree with '..'", path=shown)
            ino = fst.parents(ino)[0][0]
            continue
        if not is_dir:
            raise NotADirectory("a path component is not a directory", path=shown)
        found = fst.lookup(ino, name)
        if found is None:
            raise NotFound("no such file or directory", path=shown)
        child, dtype = found
        if dtype == _DT_LNK and (todo or follow_last):
            links += 1
            if links > SYMLOOP_MAX:
                raise TooManyLinks("too many levels of symbolic links", path=shown)
            target = fst.readlink(child)
            todo.extend(reversed(_walk_parts(target, True)))
            if target.startswith(b"/"):
                ino = items.ROOT_INO
            continue                           # ino: the link's directory (or the root)
        ino, is_dir = child, dtype == _DT_DIR
    return ino


def resolve(fst: FileTree, path, follow: bool = True) -> int:
    """The inode a path names (following symlinks, the last one only if follow).
    A trailing '/' demands a directory (and follows a final symlink), as on Linux."""
    raw = to_bytes(path)
    slash = raw.endswith(b"/") and raw.strip(b"/") != b""
    ino = _walk(fst, _walk_parts(raw, False), follow or slash, _shown(path))
    if slash and not fst.inode(ino).is_dir:
        raise NotADirectory("not a directory", path=_shown(path))
    return ino


def resolve_parent(fst: FileTree, path) -> tuple[int, bytes]:
    """(directory inode, last name) for calls that create or remove an entry."""
    parts = _walk_parts(to_bytes(path), False)
    if not parts or parts == [b"."] * len(parts):
        raise InvalidInput("the operation needs a path below the root", path=_shown(path))
    if parts[-1] == b".":
        # "dir/." names dir itself, no entry to make or remove: what is missing or
        # not a directory on the way says so first (ENOENT/ENOTDIR), as on Linux;
        # an existing directory is EISDIR (open(O_CREAT) and unlink say that).
        _walk(fst, parts, True, _shown(path))
        raise IsADirectory("the path names a directory, not an entry in it", path=_shown(path))
    name = check_name(parts[-1])            # ".." names no entry to make or remove either
    dir_ino = _walk(fst, parts[:-1], True, _shown(path))
    if not fst.inode(dir_ino).is_dir:
        raise NotADirectory("a path component is not a directory", path=_shown(path))
    return dir_ino, name


def _shown(path) -> str:
    if isinstance(path, bytes):
        return path.decode(errors="replace")
    return os.fspath(path) if not isinstance(path, str) else path
