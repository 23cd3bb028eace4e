"""OCI benchmark: multi-layer image import vs `tar x` of the same layers; shared base layers cost ~0.

  import_ratio        import_image of an OCI layout with 3 layers (durable on
                      return) / GNU `tar -xf` of the same 3 layer tars into a
                      directory + syncfs                                (<= 1.5)
  import_mib_s        import throughput (uncompressed layer bytes / s)
  shared_base_bytes   pool bytes a second image sharing the first's 2 base
                      layers adds beyond its own new top layer's data   (~0)
  second_import_ratio time of the second import / of its new top layer alone
                      imported onto the base (the reused layers are not read)

Layers are synthetic (files of 1 KiB..1 MiB of random bytes, directories,
symlinks, hard links, whiteouts), built with tarfile; uncompressed.
Sizes: full 3000 files / ~240 MiB; --quick 1000 / ~80 MiB; --tiny 100 / ~4 MiB.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import tarfile
import time

import _benchutil as bu
from _benchutil import log

HELP = __doc__.split("\n")[0]
MiB = 1 << 20


def add_args(p) -> None:
    p.add_argument("--seed", type=int, default=1)


def _layer(path: str, entries, rnd: random.Random) -> int:
    n = 0
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, arg in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_700_000_000
            if kind == "d":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            elif kind == "f":
                data = rnd.randbytes(arg)
                ti.size, ti.mode = len(data), 0o644
                tf.addfile(ti, io.BytesIO(data))
                n += len(data)
            elif kind == "l":
                ti.type, ti.linkname = tarfile.SYMTYPE, arg
                tf.addfile(ti)
            elif kind == "h":
                ti.type, ti.linkname = tarfile.LNKTYPE, arg
                tf.addfile(ti)
    return n


def _sizes(rnd, n, total):
    w = [rnd.paretovariate(1.2) for _ in range(n)]
    s = sum(w)
    return [max(1024, min(MiB, int(total * x / s))) for x in w]


def _layout(root: str, layer_paths: list[str]) -> None:
    blobs = os.path.join(root, "blobs", "sha256")
    os.makedirs(blobs)

    def put(src: str | None = None, data: bytes | None = None) -> dict:
        h = hashlib.sha256()
        if src is not None:
            with open(src, "rb") as f:
                while b := f.read(MiB):
                    h.update(b)
            size = os.path.getsize(src)
            os.link(src, os.path.join(blobs, h.hexdigest()))
        else:
            h.update(data)
            size = len(data)
            with open(os.path.join(blobs, h.hexdigest()), "wb") as f:
                f.write(data)
        return {"digest": "sha256:" + h.hexdigest(), "size": size,
                "mediaType": "application/vnd.oci.image.layer.v1.tar"}
    layers = [put(p) for p in layer_paths]
    cfg = put(data=json.dumps({"rootfs": {"type": "layers",
                                          "diff_ids": [x["digest"] for x in layers]}}).encode())
    man = put(data=json.dumps({"schemaVersion": 2, "config": cfg, "layers": layers}).encode())
    with open(os.path.join(root, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [man]}, f)
    with open(os.path.join(root, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')


def _make(d: str, files: int, total: int, seed: int):
    rnd = random.Random(seed)
    ndirs = max(4, files // 50)
    base = [(f"d{i}/", "d", None) for i in range(ndirs)]
    names = [f"d{rnd.randrange(ndirs)}/f{i}" for i in range(files)]
    base += [(n, "f", s) for n, s in zip(names, _sizes(rnd, files, total * 7 // 10))]
    base += [(f"d0/link{i}", "l", f"../{names[i]}") for i in range(min(50, files))]
    base += [(f"d1/hard{i}", "h", names[i]) for i in range(min(20, files))]
    mid = [(f"{names[i].rsplit('/', 1)[0]}/.wh.{names[i].rsplit('/', 1)[1]}", "f", 0)
           for i in range(100, min(200, files))]
    mid = [(n, "f", 0) if "/.wh." in n else x for n, _, _ in mid for x in [(n, "f", 0)]]
    mid += [(f"m{i}", "f", s) for i, s in enumerate(_sizes(rnd, files // 5, total * 2 // 10))]
    top_a = [(f"top{i}", "f", s) for i, s in enumerate(_sizes(rnd, files // 10, total // 10))]
    top_b = [(f"other{i}", "f", s) for i, s in enumerate(_sizes(rnd, files // 10, total // 10))]
    paths = {}
    for k, ents in (("base", base), ("mid", mid), ("top_a", top_a), ("top_b", top_b)):
        p = os.path.join(d, k + ".tar")
        paths[k] = (p, _layer(p, [(n, t, (a if t != "f" or "/.wh." not in n else 0))
                                  for n, t, a in ents], rnd))
    return paths


def _tar_x(dst: str, layers: list[str]) -> float:
    os.makedirs(dst)
    t0 = time.perf_counter()
    for p in layers:
        subprocess.run(["tar", "-C", dst, "-xf", p], check=True)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.syncfs(fd) if hasattr(os, "syncfs") else os.sync()
    finally:
        os.close(fd)
    return time.perf_counter() - t0


def run(args):
    from blockstore import Store
    from blockstore.oci import import_image
    files, total = (100, 4 * MiB) if args.tiny else (1000, 80 * MiB) if args.quick \
        else (3000, 240 * MiB)
    rep = bu.Report("oci")
    rep.extra.update({"files": files, "layer_bytes_target": total, "quick": bool(args.quick)})
    with bu.scratch_dir(args.dir) as d:
        log(f"building layers in {d}")
        L = _make(d, files, total, args.seed)
        chain_a = [L["base"][0], L["mid"][0], L["top_a"][0]]
        chain_b = [L["base"][0], L["mid"][0], L["top_b"][0]]
        _layout(os.path.join(d, "img-a"), chain_a)
        _layout(os.path.join(d, "img-b"), chain_b)
        _layout(os.path.join(d, "img-top-b"), [L["top_b"][0]])
        nbytes = sum(os.path.getsize(p) for p in chain_a)
        reps = 1 if args.tiny else 3
        tx, imp, second, top_alone, added = [], [], [], [], []
        for r in range(reps):
            # Each round extracts into a directory of its own, removed after the
            # last round: after an rm -rf, ext4 creates files several times slower
            # for minutes (_benchutil.drop_caches), which would slow the next
            # round's tar -x baseline.
            os.sync()
            tx.append(_tar_x(os.path.join(d, f"x{r}"), chain_a))
            os.sync()
            sp = os.path.join(d, f"store{r}")
            with Store.open(sp) as s:
                t0 = time.perf_counter()
                import_image(s, os.path.join(d, "img-a"), "a")
                imp.append(time.perf_counter() - t0)
                u0 = s.df().used_bytes
                t0 = time.perf_counter()
                import_image(s, os.path.join(d, "img-b"), "b")
                second.append(time.perf_counter() - t0)
                added.append(s.df().used_bytes - u0)
                t0 = time.perf_counter()
                import_image(s, os.path.join(d, "img-top-b"), "top-b-alone")
                top_alone.append(time.perf_counter() - t0)
                assert s.check().ok
            shutil.rmtree(sp)
            log(f"rep {r}: tar x {tx[-1]:.2f}s import {imp[-1]:.2f}s second {second[-1]:.2f}s")
        for r in range(reps):
            shutil.rmtree(os.path.join(d, f"x{r}"))
        new_top = L["top_b"][1]
        rep.add("import_ratio", bu.median(imp) / bu.median(tx), "x", goal=1.5, cmp="<=")
        rep.add("import_s", bu.median(imp), "s")
        rep.add("tar_x_s", bu.median(tx), "s")
        rep.add("import_mib_s", nbytes / MiB / bu.median(imp), "MiB/s")
        shared = bu.median(added) - new_top
        rep.add("shared_base_bytes", max(0, shared), "B", goal=1 * MiB, cmp="<=",
                note=f"second image added {bu.median(added)} B for a {new_top} B new layer")
        rep.add("second_import_ratio", bu.median(second) / bu.median(top_alone), "x")
        rep.extra["layers_bytes"] = nbytes
    return rep, ""
