"""Test helpers for the OCI tests: a reference layer applier onto a real
directory (written from the OCI image-spec text, independent of
blockstore.oci), a tree description for exact comparisons, and a layer
builder.  Not a test module."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat as S
import tarfile
from decimal import Decimal


# -- building layers ---------------------------------------------------------------
def layer(entries, fmt=tarfile.PAX_FORMAT) -> bytes:
    """entries: (name, kind, arg, opts) with kind f(ile) d(ir) l(symlink) h(ardlink)
    c(har) b(lock) p(fifo) w(hiteout of arg-less name); opts: mode, uid, gid,
    mtime (ns int), xattrs."""
    b = io.BytesIO()
    t = tarfile.open(fileobj=b, mode="w", format=fmt)
    for e in entries:
        name, kind = e[0], e[1]
        arg = e[2] if len(e) > 2 else None
        o = e[3] if len(e) > 3 else {}
        ti = tarfile.TarInfo(name)
        ti.mode = o.get("mode", 0o755 if kind == "d" else 0o644)
        ti.uid, ti.gid = o.get("uid", 0), o.get("gid", 0)
        mt = o.get("mtime", 1_600_000_000_000_000_000)
        ti.mtime = mt // 10**9
        pax = {}
        if mt % 10**9:
            pax["mtime"] = f"{mt // 10**9}.{mt % 10**9:09d}"
        for k, v in o.get("xattrs", {}).items():
            pax["SCHILY.xattr." + k] = v
        ti.pax_headers = pax
        data = None
        if kind == "f":
            data = arg if isinstance(arg, bytes) else (arg or "").encode()
            ti.size = len(data)
        elif kind == "d":
            ti.type = tarfile.DIRTYPE
        elif kind == "l":
            ti.type, ti.linkname = tarfile.SYMTYPE, arg
        elif kind == "h":
            ti.type, ti.linkname = tarfile.LNKTYPE, arg
        elif kind in "cb":
            ti.type = tarfile.CHRTYPE if kind == "c" else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = arg
        elif kind == "p":
            ti.type = tarfile.FIFOTYPE
        t.addfile(ti, io.BytesIO(data) if data is not None else None)
    t.close()
    return b.getvalue()


# -- hand-made headers, for what tarfile will not write -------------------------
END = b"\0" * 1024                      # end-of-archive blocks


def _pad(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 512)


def pax_records(records: dict) -> bytes:
    """PAX records ("LEN key=value\n") for arbitrary values (str or bytes)."""
    out = b""
    for k, v in records.items():
        kv = f" {k}=".encode() + (v if isinstance(v, bytes) else str(v).encode()) + b"\n"
        n = len(kv) + 1
        while len(str(n)) + len(kv) != n:
            n = len(str(n)) + len(kv)
        out += str(n).encode() + kv
    return out


def pax_entry(name: str, records: dict, body: bytes = b"", typ: bytes = tarfile.REGTYPE,
              xtype: bytes = tarfile.XHDTYPE) -> bytes:
    """An extended header with these records, then a ustar member ``name``."""
    rec = pax_records(records)
    x = tarfile.TarInfo("PaxHeaders/x")
    x.type, x.size = xtype, len(rec)
    t = tarfile.TarInfo(name)
    t.type, t.size = typ, len(body)
    return (x.tobuf(tarfile.USTAR_FORMAT) + _pad(rec) + t.tobuf(tarfile.USTAR_FORMAT)
            + _pad(body))


def gnu_long_header(size: int, typ: bytes = tarfile.GNUTYPE_LONGNAME) -> bytes:
    """The header of a GNU long name (or link) record claiming ``size`` bytes."""
    L = tarfile.TarInfo("././@LongLink")
    L.type, L.size = typ, size
    return L.tobuf(tarfile.GNU_FORMAT)


# -- whole images ---------------------------------------------------------------------
def _add(tf, name: str, data: bytes | None, typ=tarfile.REGTYPE) -> None:
    ti = tarfile.TarInfo(name)
    ti.type = typ
    ti.size = len(data) if data is not None else 0
    ti.mode = 0o755 if typ == tarfile.DIRTYPE else 0o644
    tf.addfile(ti, io.BytesIO(data) if data is not None else None)


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def docker_archive(layers: list[bytes], tag: str = "img:1", extra=()) -> bytes:
    """A ``docker save`` tarball (the classic layout: ``<hex>/layer.tar``,
    ``<hex>.json`` config, ``manifest.json``, ``repositories``); extra:
    (name, bytes) members written first."""
    cfg = json.dumps({"rootfs": {"type": "layers",
                                 "diff_ids": ["sha256:" + _sha(x) for x in layers]}}).encode()
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in extra:
            _add(tf, name, data)
        rels = []
        for x in layers:
            d = _sha(x)
            _add(tf, d, None, tarfile.DIRTYPE)
            _add(tf, f"{d}/VERSION", b"1.0")
            _add(tf, f"{d}/layer.tar", x)
            rels.append(f"{d}/layer.tar")
        _add(tf, _sha(cfg) + ".json", cfg)
        _add(tf, "manifest.json", json.dumps([{"Config": _sha(cfg) + ".json",
                                               "RepoTags": [tag], "Layers": rels}]).encode())
        _add(tf, "repositories", b"{}")
    return b.getvalue()


def oci_layout_tar(layers: list[bytes], tag: str = "t") -> bytes:
    """An OCI image layout as a tar (``./oci-layout``, ``./index.json``, ``./blobs/...``)."""
    blobs = {}

    def put(x: bytes) -> dict:
        blobs[_sha(x)] = x
        return {"digest": "sha256:" + _sha(x), "size": len(x)}
    descs = [dict(put(x), mediaType="application/vnd.oci.image.layer.v1.tar") for x in layers]
    cfg = put(json.dumps({"rootfs": {"type": "layers", "diff_ids": [
        "sha256:" + _sha(x) for x in layers]}}).encode())
    man = put(json.dumps({"schemaVersion": 2, "config": cfg, "layers": descs}).encode())
    index = {"schemaVersion": 2, "manifests": [
        dict(man, annotations={"org.opencontainers.image.ref.name": tag})]}
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as tf:
        _add(tf, "./", None, tarfile.DIRTYPE)
        _add(tf, "./blobs/", None, tarfile.DIRTYPE)
        _add(tf, "./blobs/sha256/", None, tarfile.DIRTYPE)
        for h, x in sorted(blobs.items()):
            _add(tf, f"./blobs/sha256/{h}", x)
        _add(tf, "./index.json", json.dumps(index).encode())
        _add(tf, "./oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
    return b.getvalue()


# -- reference applier ------------------------------------------------------------------
def _parts(name):
    return tuple(p for p in name.split("/") if p not in ("", "."))


def _rm(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _keep_mtime(path):
    st = os.lstat(path)
    return lambda: os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _meta(path, m):
    os.chown(path, m.uid, m.gid, follow_symlinks=False)
    if not m.issym():
        os.chmod(path, m.mode & 0o7777)
    for k in os.listxattr(path, follow_symlinks=False):
        os.removexattr(path, k, follow_symlinks=False)
    for k, v in m.pax_headers.items():
        if k.startswith("SCHILY.xattr."):
            os.setxattr(path, k[13:], v.encode("utf-8", "surrogateescape"), follow_symlinks=False)
    mt = m.pax_headers.get("mtime")
    ns = int(Decimal(mt) * 10**9) if mt else int(m.mtime) * 10**9
    os.utime(path, ns=(ns, ns), follow_symlinks=False)


def apply_layer(root: str, data: bytes) -> None:
    """Apply a layer onto directory root, per the OCI image spec."""
    added = set()

    def prune(d, parts):
        for n in os.listdir(d):
            p = parts + (n,)
            full = os.path.join(d, n)
            if p not in added:
                _rm(full)
            elif os.path.isdir(full) and not os.path.islink(full):
                restore = _keep_mtime(full)
                prune(full, p)
                restore()

    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf:
            parts = _parts(m.name)
            path = os.path.join(root, *parts)
            parent = os.path.dirname(path) if parts else None
            if parts and parts[-1] == ".wh..wh..opq":
                d = os.path.dirname(path)
                if os.path.lexists(d) and (os.path.islink(d) or not os.path.isdir(d)):
                    continue                   # not a directory any more: nothing below
                restore = _keep_mtime(d)
                prune(d, parts[:-1])
                restore()
                continue
            if parts and parts[-1].startswith(".wh."):
                tparts = parts[:-1] + (parts[-1][4:],)
                target = os.path.join(root, *tparts)
                if not os.path.lexists(target):
                    continue
                restore = _keep_mtime(parent)
                if tparts not in added:
                    _rm(target)
                elif os.path.isdir(target) and not os.path.islink(target):
                    r2 = _keep_mtime(target)
                    prune(target, tparts)
                    r2()
                restore()
                continue
            if not parts:
                _meta(root, m)
                continue
            restore = _keep_mtime(parent)
            if m.isdir() and os.path.isdir(path) and not os.path.islink(path):
                _meta(path, m)
            else:
                _rm(path)
                if m.isdir():
                    os.mkdir(path)
                elif m.isreg():
                    with open(path, "wb") as f:
                        shutil.copyfileobj(tf.extractfile(m), f)
                elif m.issym():
                    os.symlink(m.linkname, path)
                elif m.islnk():
                    os.link(os.path.join(root, *_parts(m.linkname)), path)
                elif m.ischr() or m.isblk():
                    os.mknod(path, (S.S_IFCHR if m.ischr() else S.S_IFBLK) | 0o600,
                             os.makedev(m.devmajor, m.devminor))
                elif m.isfifo():
                    os.mkfifo(path)
                if not m.islnk():
                    _meta(path, m)
            restore()
            added.add(parts)


# -- exact tree description ----------------------------------------------------------------
def describe(root: str, with_root: bool = True) -> dict:
    """path -> (type, mode, uid, gid, mtime_ns, size, sha256, link, rdev, xattrs);
    plus "__links__": the hard-link groups (sorted path tuples)."""
    out, groups = {}, {}
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for n in [""] + sorted(dirs + files):
            if n == "" and (dirpath != root or not with_root):
                continue
            p = os.path.join(dirpath, n) if n else dirpath
            rel = "/" + os.path.relpath(p, root) if n else "/"
            rel = "/" if rel == "/." else rel
            st = os.lstat(p)
            typ = S.S_IFMT(st.st_mode)
            sha = link = None
            if S.S_ISREG(typ):
                with open(p, "rb") as f:
                    sha = hashlib.sha256(f.read()).hexdigest()
                if st.st_nlink > 1:
                    groups.setdefault((st.st_dev, st.st_ino), []).append(rel)
            if S.S_ISLNK(typ):
                link = os.readlink(p)
            xa = tuple(sorted((k, os.getxattr(p, k, follow_symlinks=False))
                              for k in os.listxattr(p, follow_symlinks=False)))
            out[rel] = (typ, S.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                        st.st_mtime_ns,
                        st.st_size if not S.S_ISDIR(typ) else None, sha, link,
                        st.st_rdev if S.S_ISCHR(typ) or S.S_ISBLK(typ) else 0, xa)
    out["__links__"] = sorted(tuple(sorted(g)) for g in groups.values() if len(g) > 1)
    return out


def diff_desc(a: dict, b: dict) -> list:
    """Readable differences of two describe() results (empty when equal)."""
    out = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            out.append((k, a.get(k), b.get(k)))
    return out
