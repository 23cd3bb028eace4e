"""Test helpers: describe a host directory and a store tree the same way.

``describe_host(dir)`` and ``describe_store(fs)`` return a ``TreeShape``:
``entries`` maps each path ("/a/b") to (type, permission bits, nlink,
content or symlink target (None for dirs and devices), rdev, sorted xattrs),
and ``links`` is the set of hard-link groups (frozensets of paths naming one
inode, only groups of two or more).  atime/mtime/ctime are not compared.

``copy_host_tree(src, dst)`` freezes a host tree the way a snapshot does
(shutil.copytree(symlinks=True) plus hard links, xattrs and modes kept).

Only ``user.*`` xattrs are described on the host (others, e.g. security.*,
belong to the host filesystem).  Cost: one full walk of each tree.
"""
from __future__ import annotations

import os
import shutil
import stat as S
from dataclasses import dataclass


@dataclass(frozen=True)
class TreeShape:
    entries: dict
    links: frozenset

    def diff(self, other: "TreeShape") -> list[str]:
        """Human-readable differences (empty when equal)."""
        out = []
        for p in sorted(set(self.entries) | set(other.entries)):
            a, b = self.entries.get(p), other.entries.get(p)
            if a != b:
                out.append(f"{p}: {a!r} != {b!r}")
        if self.links != other.links:
            out.append(f"hard-link groups: {sorted(map(sorted, self.links))} != "
                       f"{sorted(map(sorted, other.links))}")
        return out


def _kind(mode: int) -> str:
    for test, name in ((S.S_ISDIR, "dir"), (S.S_ISREG, "file"), (S.S_ISLNK, "symlink"),
                       (S.S_ISFIFO, "fifo"), (S.S_ISCHR, "char"), (S.S_ISBLK, "block"),
                       (S.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "?"


def _groups(inos: dict) -> frozenset:
    return frozenset(frozenset(v) for v in inos.values() if len(v) > 1)


def describe_host(root: str) -> TreeShape:
    entries, inos = {}, {}

    def visit(host: str, rel: str) -> None:
        for name in sorted(os.listdir(host)):
            hp, rp = os.path.join(host, name), rel + "/" + name
            st = os.lstat(hp)
            kind = _kind(st.st_mode)
            if kind == "file":
                with open(hp, "rb") as fh:
                    data = fh.read()
            elif kind == "symlink":
                data = os.readlink(hp).encode()
            else:
                data = None
            xa = () if kind == "symlink" else tuple(sorted(
                (n, os.getxattr(hp, n, follow_symlinks=False))
                for n in os.listxattr(hp, follow_symlinks=False) if n.startswith("user.")))
            rdev = st.st_rdev if kind in ("char", "block") else 0
            entries[rp] = (kind, S.S_IMODE(st.st_mode), st.st_nlink, data, rdev, xa)
            if kind != "dir":
                inos.setdefault(st.st_ino, set()).add(rp)
            if kind == "dir":
                visit(hp, rp)
    visit(root, "")
    return TreeShape(entries, _groups(inos))


def describe_store(fs, top: str = "/") -> TreeShape:
    entries, inos = {}, {}

    def visit(rel: str) -> None:
        for name in sorted(fs.listdir(rel or "/")):
            rp = rel + "/" + name
            st = fs.lstat(rp)
            kind = _kind(st.st_mode)
            if kind == "file":
                data = fs.read_bytes(rp)
            elif kind == "symlink":
                data = fs.readlink(rp).encode()
            else:
                data = None
            xa = () if kind == "symlink" else tuple(sorted(
                (n, fs.getxattr(rp, n, follow_symlinks=False))
                for n in fs.listxattr(rp, follow_symlinks=False)))
            rdev = st.st_rdev if kind in ("char", "block") else 0
            entries[rp] = (kind, S.S_IMODE(st.st_mode), st.st_nlink, data, rdev, xa)
            if kind != "dir":
                inos.setdefault(st.st_ino, set()).add(rp)
            if kind == "dir":
                visit(rp)
    visit("" if top == "/" else top.rstrip("/"))
    return TreeShape(entries, _groups(inos))


def copy_host_tree(src: str, dst: str) -> None:
    """Copy src to dst (which must not exist) keeping types, modes, contents,
    symlink targets, user xattrs and hard-link groups."""
    seen: dict[int, str] = {}

    def xattrs(a: str, b: str) -> None:
        for n in os.listxattr(a, follow_symlinks=False):
            if n.startswith("user."):
                os.setxattr(b, n, os.getxattr(a, n, follow_symlinks=False),
                            follow_symlinks=False)

    def visit(a: str, b: str) -> None:
        st = os.lstat(a)
        os.mkdir(b)
        for name in os.listdir(a):
            ca, cb = os.path.join(a, name), os.path.join(b, name)
            cst = os.lstat(ca)
            if S.S_ISDIR(cst.st_mode):
                visit(ca, cb)
            elif cst.st_ino in seen:              # hard links (of symlinks too)
                os.link(seen[cst.st_ino], cb, follow_symlinks=False)
            elif S.S_ISLNK(cst.st_mode):
                seen[cst.st_ino] = cb
                os.symlink(os.readlink(ca), cb)
            else:
                seen[cst.st_ino] = cb
                if S.S_ISREG(cst.st_mode):
                    shutil.copyfile(ca, cb)
                else:
                    os.mknod(cb, cst.st_mode, cst.st_rdev)
                os.chmod(cb, S.S_IMODE(cst.st_mode))
                xattrs(ca, cb)
        os.chmod(b, S.S_IMODE(st.st_mode))
        xattrs(a, b)
    visit(src, dst)
