"""File commands: cp, cat, files.  A tree path is written ``NAME:/path``
(tree names cannot contain ':/'); anything else is a host path."""
from __future__ import annotations

import contextlib
import sys
import stat

import click

from ..errors import InvalidInput
from . import copying
from . import format as fmt
from .complete import tree_paths
from .context import Ctx, output_options, pass_ctx
from .progress import progress

_TYPES = {stat.S_IFDIR: "dir", stat.S_IFREG: "file", stat.S_IFLNK: "symlink", stat.S_IFCHR: "char",
          stat.S_IFBLK: "block", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket"}


def split_loc(text: str) -> tuple[str | None, str]:
    """``'web:/etc/motd'`` -> ``('web', '/etc/motd')``; a host path -> ``(None, text)``."""
    name, sep, rest = text.partition(":/")
    if sep and name and not name.startswith((".", "/", "-", "~")):
        return name, "/" + rest
    return None, text


def tree_loc(text: str, default: str | None = None) -> tuple[str, str]:
    name, path = split_loc(text)
    if name is None:
        if default is not None and ":" not in text and "/" not in text:
            return text, default
        raise InvalidInput(f"expected NAME:/path, not {text!r}")
    return name, path


@contextlib.contextmanager
def _side(store, loc):
    name, path = loc
    if name is None:
        yield copying.HostSide(), path
    else:
        with store.fs(name) as tfs:
            yield copying.TreeSide(tfs), path


@click.command("cp")
@click.argument("src", shell_complete=tree_paths)
@click.argument("dst", shell_complete=tree_paths)
@click.option("-a", "--archive", is_flag=True, help="Keep owners and times (like cp -a).")
@output_options()
@pass_ctx
def cp_cmd(ctx: Ctx, src, dst, archive):
    """Copy files or directories; SRC and DST are host paths or NAME:/path.

    Like cp -r: into DST when DST is an existing directory.  A copy into a
    tree is one durable transaction (all or nothing).
    """
    s_loc, d_loc = split_loc(src), split_loc(dst)
    if s_loc[0] is None and d_loc[0] is None:
        raise InvalidInput("one of SRC and DST must be a tree path NAME:/path")
    store = ctx.store()
    with _side(store, s_loc) as (sside, spath), _side(store, d_loc) as (dside, dpath):
        target = copying.target_path(sside, spath, dside, dpath)
        batch = store.batch() if d_loc[0] is not None else contextlib.nullcontext()
        with progress(ctx, f"copying {src}") as cb, batch:
            n = copying.copy(sside, spath, dside, target, archive=archive, progress=cb)
    if ctx.json:
        fmt.emit_json({"source": src, "bytes": n,
                     "target": f"{d_loc[0]}:{target}" if d_loc[0] is not None else target})


@click.command("cat")
@click.argument("loc", metavar="NAME:/path", shell_complete=tree_paths)
@pass_ctx
def cat_cmd(ctx: Ctx, loc):
    """Write a file of a tree to stdout."""
    name, path = tree_loc(loc)
    out = sys.stdout.buffer
    with ctx.store().fs(name) as tfs, tfs.open(path, "rb") as f:
        while True:
            buf = f.read(copying.CHUNK)
            if not buf:
                break
            out.write(buf)
    out.flush()


def entry_json(path: str, name: str, st, target) -> dict:
    return {"name": name, "path": path, "type": _TYPES.get(stat.S_IFMT(st.st_mode), "file"),
            "mode": f"{stat.S_IMODE(st.st_mode):04o}", "nlink": st.st_nlink, "uid": st.st_uid,
            "gid": st.st_gid, "size": st.st_size, "mtime": fmt.time_ns(st.st_mtime_ns),
            "target": target}


@click.command("files")
@click.argument("loc", metavar="NAME[:/path]", shell_complete=tree_paths)
@output_options(exact=True)
@pass_ctx
def files_cmd(ctx: Ctx, loc):
    """List a directory of a tree like `ls -ln` (a file lists itself)."""
    name, path = tree_loc(loc, default="/")
    rows = []
    with ctx.store().fs(name) as tfs:
        st = tfs.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            names = sorted(tfs.listdir(path))
            base = path.rstrip("/")
            items = [(base + "/" + n, n) for n in names]
        else:
            items = [(path, path.rsplit("/", 1)[-1])]
        for p, n in items:
            est = tfs.lstat(p)
            target = tfs.readlink(p) if stat.S_ISLNK(est.st_mode) else None
            rows.append(entry_json(p, n, est, target))
            rows[-1]["_mode"] = est.st_mode
    if ctx.json:
        fmt.emit_json([{k: v for k, v in r.items() if k != "_mode"} for r in rows])
        return
    table = [[fmt.mode_string(r["_mode"]), str(r["nlink"]), str(r["uid"]), str(r["gid"]),
              fmt.size(r["size"], ctx.bytes), r["mtime"],
              r["name"] + (f" -> {r['target']}" if r["target"] is not None else "")]
             for r in rows]
    if table:
        ctx.say(fmt.table(table, right={1, 2, 3, 4}))


COMMANDS = [cp_cmd, cat_cmd, files_cmd]
