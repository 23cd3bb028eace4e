"""Tree commands: init, import, clone, commit, ls, info, rm, rename, diff, label, export.

Each one call (or a few) into the Store API; output per docs/CLI.md.
"""
from __future__ import annotations

import os

import click

from ..api.prune import is_layer
from ..errors import AlreadyExists, InvalidInput, NotAStore, NotFound
from . import format as formatting
from .complete import snapshot_names, tree_names
from .context import Ctx, hook, output_options, pass_ctx, split_kv
from .progress import progress, spinner
from .stdio import STDIO, stdin_spooled, stdout_binary

LS_WIDTH = 100           # `ls` lines fit a terminal this wide
# How `ls` makes a line fit: labels first, down to 24 characters, then names
# down to 32, then labels down to their header, then names down to 12.
_LS_CUTS = ((3, 24), (0, 32), (3, 0), (0, 12))


def change_json(c) -> dict:
    return {"kind": c.kind, "path": c.path, "type": c.type}


@click.command("init")
@click.option("--block-size", metavar="N", help="Block size: 4K (default) to 1M, a power of two.")
@click.option("--dedup/--no-dedup", default=None, help="Store identical blocks once (default off).")
@click.option("--checksum", type=click.Choice(["xxh3-128", "sha256"]), default=None,
              help="Per-block checksum for scrub (default xxh3-128; sha256 with --dedup).")
@click.option("--verify-reads", "verify", is_flag=True,
              help="Set the store's verify_reads setting (see `blockstore config`).")
@output_options()
@pass_ctx
def init_cmd(ctx: Ctx, block_size, dedup, checksum, verify):
    """Create a store at --store, in an absent or empty directory (`import` and
    `volume create` also create it on first use)."""
    bs = formatting.parse_size(block_size) if block_size else None
    from ..api.store import Store
    try:
        with Store.open(ctx.store_path, create=False):
            pass
    except (NotAStore, NotFound):
        pass
    else:
        raise AlreadyExists("a store already exists; use it as it is (`blockstore df` shows "
                            "it), or give another --store path", path=ctx.store_path)
    with Store.open(ctx.store_path, create=True, block_size=bs, dedup=dedup,
                    checksum=checksum) as s:
        if verify:
            s.configure(verify_reads=True)
        doc = {"path": os.path.abspath(ctx.store_path), "block_size": s.block_size,
               "dedup": s.dedup, "checksum": s.checksum,
               "verify_reads": s.settings["verify_reads"]}
    if ctx.json:
        formatting.emit_json(doc)
    else:
        ctx.say(f"created store {doc['path']} (block size {formatting.size(doc['block_size'])}, "
                f"dedup {'on' if doc['dedup'] else 'off'}, checksum {doc['checksum']})")


def _host_source(src: str) -> str:
    """The host path of SRC (which may be PATH:TAG for an image); NotFound if absent."""
    if os.path.lexists(src):
        return src
    path, sep, _ = src.rpartition(":")
    if sep and os.path.lexists(path):
        return path
    raise NotFound("import source does not exist; give a directory, an image archive or a "
                   "layer tar (`-` reads stdin)", path=src)


@click.command("import")
@click.argument("src", type=click.Path())
@click.argument("name")
@click.option("--parent", metavar="SNAPSHOT", shell_complete=snapshot_names,
              help="Import on top of this snapshot (a layer tar applies onto it).")
@click.option("--format", "fmt", type=click.Choice(["auto", "image", "layer"]),
              default="auto", show_default=True,
              help="What an archive SRC is. auto: an image archive or a layer tar, told by "
                   "its member names (one that could be either is refused).")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Label (repeatable).")
@output_options()
@pass_ctx
def import_cmd(ctx: Ctx, src, name, parent, fmt, labels):
    """Import SRC as snapshot NAME.

    SRC is a directory, an OCI image layout (a directory with index.json or
    a tar of one), a `docker save` tarball (either as PATH:TAG to pick one
    image; archives may be gzip or zstd compressed), or a layer tar (plain,
    gzip or zstd) applied onto --parent. SRC `-` reads a tar or an image
    archive from stdin (what `export ... -` writes). An image becomes a chain
    of snapshots, the top one named NAME.
    """
    store = ctx.store(create=True)
    labels = split_kv(labels)
    if src == STDIO:
        with stdin_spooled(store.path) as path, spinner(ctx, "importing from stdin"):
            hook("blockstore.oci", "import_image", "importing tars from stdin")(
                store, path, name, parent=parent)
        rec = store.label(name, **labels) if labels else store.info(name)
        if ctx.json:
            formatting.emit_json(formatting.record(rec))
        else:
            ctx.say(rec.name)
        return
    host = _host_source(src)
    plain_dir = os.path.isdir(host) and host == src and not any(
        os.path.exists(os.path.join(host, f)) for f in ("index.json", "oci-layout"))
    with progress(ctx, f"importing {src}") as cb:
        if plain_dir:
            if fmt != "auto":
                raise InvalidInput("--format applies to archives and image layouts, "
                                   "not to a plain directory")
            store.import_dir(src, name, parent=parent, labels=labels, progress=cb)
            labels = {}
        else:
            what = "importing image archives and layer tars"
            hook("blockstore.oci", "import_image", what)(store, src, name, parent=parent,
                                                         progress=cb, format=fmt)
    rec = store.label(name, **labels) if labels else store.info(name)
    if ctx.json:
        formatting.emit_json(formatting.record(rec))
    else:
        ctx.say(rec.name)


@click.command("clone")
@click.argument("snapshot", shell_complete=tree_names)
@click.argument("name")
@click.option("--volume", "volumes", multiple=True, metavar="VOL:/path[:ro]",
              help="Attach a volume at /path (repeatable).")
@click.option("--bind", "binds", multiple=True, metavar="HOSTDIR:/path[:ro]",
              help="Attach a host directory at /path (repeatable).")
@click.option("--tmpfs", "tmpfs", multiple=True, metavar="/path",
              help="A private in-memory directory at /path (repeatable).")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Label (repeatable).")
@output_options()
@pass_ctx
def clone_cmd(ctx: Ctx, snapshot, name, volumes, binds, tmpfs, labels):
    """Make NAME, a writable clone of SNAPSHOT (O(1), whatever its size)."""
    from ..api import mounts
    specs = ([mounts.parse_spec("volume", v) for v in volumes]
             + [mounts.parse_spec("bind", b) for b in binds]
             + [mounts.parse_spec("tmpfs", t) for t in tmpfs])
    rec = ctx.store().clone(snapshot, name, mounts=specs, labels=split_kv(labels) or None)
    if ctx.json:
        formatting.emit_json(formatting.record(rec))
    else:
        ctx.say(rec.name)


@click.command("commit")
@click.argument("clone", shell_complete=tree_names)
@click.argument("name")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Label (repeatable).")
@output_options()
@pass_ctx
def commit_cmd(ctx: Ctx, clone, name, labels):
    """Freeze CLONE's current state as snapshot NAME (O(1); the clone stays usable).

    Prints one line: NAME, its parent and how many entries were added,
    changed and deleted since that parent (`blockstore diff PARENT NAME`
    lists them).
    """
    store = ctx.store()
    rec = store.commit(clone, name, labels=split_kv(labels) or None)
    summary = None
    if rec.parent and store.exists(rec.parent):
        kinds = [c.kind for c in store.diff(rec.parent, rec.name)]
        summary = {"added": kinds.count("A"), "changed": kinds.count("C"),
                   "deleted": kinds.count("D")}
    if ctx.json:
        formatting.emit_json(dict(formatting.record(rec), summary=summary))
        return
    if summary is None:
        ctx.say(rec.name)
    else:
        ctx.say(f"{rec.name} (parent {rec.parent}): {summary['added']} added, "
                f"{summary['changed']} changed, {summary['deleted']} deleted")


@click.command("ls")
@click.option("--kind", type=click.Choice(["snapshot", "clone", "volume"]), help="Only this kind.")
@click.option("--filter", "filters", multiple=True, metavar="label=KEY=VALUE",
              help="Only trees with this label (repeatable; 'label=' is optional).")
@click.option("-a", "--all", "show_all", is_flag=True,
              help="Also the layer snapshots of images (named by chain ID, hidden by default).")
@output_options()
@pass_ctx
def ls_cmd(ctx: Ctx, kind, filters, show_all):
    """List trees as a lineage tree: parents above their children.

    Image layers (snapshots named sha256:... by `import`) are hidden unless
    --all; there they show as short IDs (--json has the full names).  Lines
    fit 100 columns: long names and labels are cut with `…`.
    """
    want = {}
    for f in filters:
        f = f[len("label="):] if f.startswith("label=") and "=" in f[len("label="):] else f
        want.update(split_kv([f], "label=KEY=VALUE"))
    recs = ctx.store().list(kind=kind, label=want or None)
    if not show_all:
        recs = [r for r in recs if not is_layer(r)]
    if ctx.json:
        formatting.emit_json([formatting.record(r) for r in sorted(recs, key=lambda r: r.name)])
        return
    rows = [[formatting.short_layer(label) if is_layer(r) else label, r.kind,
             formatting.time_short(r.created), formatting.labels_text(r.labels)]
            for label, r in formatting.lineage_rows(recs)]
    if rows:
        head = ["NAME", "KIND", "CREATED", "LABELS"]
        ctx.say(formatting.table(formatting.fit(rows, head, LS_WIDTH, _LS_CUTS), head))


@click.command("info")
@click.argument("name", shell_complete=tree_names)
@output_options(exact=True)
@pass_ctx
def info_cmd(ctx: Ctx, name):
    """Show one tree: kind, lineage, dependents, mounts, labels and space."""
    store = ctx.store()
    rec = store.info(name)
    u = store.usage(name)
    doc = formatting.record(rec)
    doc["lineage"] = store.lineage(name)
    doc["dependents"] = sorted(d.name for d in store.dependents(name))
    doc["usage"] = u.as_dict()
    if ctx.json:
        formatting.emit_json(doc)
        return
    sz = lambda n: formatting.size(n, ctx.bytes)  # noqa: E731
    lines = [("name", rec.name), ("kind", rec.kind), ("parent", rec.parent or "-"),
             ("created", doc["created"]), ("lineage", " <- ".join(doc["lineage"])),
             ("dependents", ", ".join(doc["dependents"]) or "-"),
             ("labels", formatting.labels_text(rec.labels) or "-"), ("uuid", rec.uuid)]
    for m in rec.mounts or []:
        src = m.get("source", "(memory)")
        lines.append(("mount", f"{m['type']} {src} at {m['target']}"
                               f"{' (ro)' if m.get('readonly') else ''}"))
    lines += [("files", str(u.files)), ("logical", sz(u.logical)),
              ("referenced", sz(u.referenced)), ("exclusive", sz(u.exclusive)),
              ("shared", sz(u.shared))]
    w = max(len(k) for k, _ in lines)
    ctx.say("\n".join(f"{k + ':':<{w + 1}} {v}" for k, v in lines))


@click.command("rm")
@click.argument("names", nargs=-1, required=True, shell_complete=tree_names)
@click.option("-f", "--force", is_flag=True,
              help="Remove snapshots with dependents (they keep their data) and mounted volumes.")
@output_options()
@pass_ctx
def rm_cmd(ctx: Ctx, names, force):
    """Remove trees (space returns to the pool; see `gc`).

    Every NAME is tried; the exit code is the first failure's.
    """
    from . import errors as cli_errors
    store = ctx.store()
    first, removed = None, []
    for n in names:
        try:
            store.remove(n, force=force)
            removed.append(n)
            if not ctx.json:
                ctx.say(n)
        except Exception as exc:        # report each one, keep going like rm(1)
            code = cli_errors.report(exc, ctx.command)
            first = first or code
    if ctx.json:
        formatting.emit_json({"removed": removed})
    if first:
        raise click.exceptions.Exit(first)


@click.command("rename")
@click.argument("old", shell_complete=tree_names)
@click.argument("new")
@output_options()
@pass_ctx
def rename_cmd(ctx: Ctx, old, new):
    """Rename tree OLD to NEW; trees built on it or mounting it follow.

    A tree a live mount serves cannot be renamed (exit 5): unmount it first.
    """
    rec = ctx.store().rename(old, new)
    if ctx.json:
        formatting.emit_json(formatting.record(rec))
    else:
        ctx.say(rec.name)


@click.command("diff")
@click.argument("a", shell_complete=tree_names)
@click.argument("b", shell_complete=tree_names)
@output_options()
@pass_ctx
def diff_cmd(ctx: Ctx, a, b):
    """What changed from A to B: `A` added, `C` changed, `D` deleted (like docker diff).

    Cost is proportional to the difference, not to the trees' size.
    """
    changes = ctx.store().diff(a, b)
    if ctx.json:
        formatting.emit_json([change_json(c) for c in changes])
        return
    for c in changes:
        ctx.say(f"{c.kind} {c.path}")


@click.command("label")
@click.argument("name", shell_complete=tree_names)
@click.argument("pairs", nargs=-1, required=True, metavar="KEY=VALUE...")
@output_options()
@pass_ctx
def label_cmd(ctx: Ctx, name, pairs):
    """Set labels on NAME; `KEY=` removes KEY."""
    kv = {k: (v if v != "" else None) for k, v in split_kv(pairs).items()}
    rec = ctx.store().label(name, **kv)
    if ctx.json:
        formatting.emit_json(formatting.record(rec))
    else:
        for k, v in sorted(rec.labels.items()):
            ctx.say(f"{k}={v}")


_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.zst")


@click.command("export")
@click.argument("name", shell_complete=tree_names)
@click.argument("out", type=click.Path())
@click.option("--from", "parent", metavar="PARENT", shell_complete=tree_names,
              help="Only the difference from PARENT, as an OCI layer tar with whiteouts.")
@click.option("--format", "fmt", type=click.Choice(["auto", "dir", "tar", "oci", "docker"]),
              default="auto", show_default=True,
              help="dir: a host directory; tar: a tar (a layer with --from); oci: an OCI "
                   "image layout of NAME's lineage; docker: a `docker save` tarball. "
                   "auto: tar when OUT ends in .tar or is -, else dir.")
@click.option("--tag", metavar="TAG", help="Image tag for --format oci/docker.")
@click.option("--compression", type=click.Choice(["gzip", "zstd", "none"]), default="gzip",
              show_default=True,
              help="For --format oci/docker: how layers made in the store are compressed "
                   "(imported layers are written as they were imported).")
@output_options()
@pass_ctx
def export_cmd(ctx: Ctx, name, out, parent, fmt, tag, compression):
    """Write NAME out: to directory OUT, to a tar, or (with --from PARENT)
    the change from PARENT to NAME as an OCI layer tar.

    OUT `-` writes the tar (or with --format docker the image archive) to
    stdout: `blockstore export B --from A - | blockstore import - B --parent A`
    sends the change to another store.
    """
    store = ctx.store()
    if fmt == "auto":
        fmt = "tar" if out.endswith(_TAR_SUFFIXES) or parent or out == STDIO else "dir"
    if parent and fmt != "tar":
        raise InvalidInput("--from writes a layer tar: give OUT ending in .tar (or -)")
    if out == STDIO:
        if fmt not in ("tar", "docker"):
            raise InvalidInput(f"--format {fmt} writes a directory, which cannot go to "
                               f"stdout; give a directory as OUT")
        if ctx.json:
            raise click.UsageError("--json and OUT `-` would both write to stdout", 
                                   click.get_current_context())
        with stdout_binary() as f, spinner(ctx, f"exporting {name}"):
            if fmt == "tar":
                hook("blockstore.oci", "export_tar", "exporting tars and layers")(
                    store, name, f, parent=parent)
            else:
                _docker_to(store, name, tag, compression, f)
        return
    if fmt == "dir":
        with progress(ctx, f"exporting {name}") as cb:
            store.export_dir(name, out, progress=cb)
    elif fmt == "tar":
        fn = hook("blockstore.oci", "export_tar", "exporting tars and layers")
        with spinner(ctx, f"exporting {name}"):
            fn(store, name, out, parent=parent)
    else:
        fn = hook("blockstore.oci", "export_image", "exporting images")
        with spinner(ctx, f"exporting {name}"):
            fn(store, name, out, format=fmt, tag=tag, compression=compression)
    if ctx.json:
        formatting.emit_json({"name": name, "out": out, "format": fmt, "parent": parent})
    else:
        ctx.say(out)


def _docker_to(store, name: str, tag, compression: str, f) -> None:
    """A `docker save` archive of NAME onto the binary stream f, made in a
    private (0700) directory of the store's and copied from there."""
    import shutil
    import tempfile
    fn = hook("blockstore.oci", "export_image", "exporting images")
    tmp = tempfile.mkdtemp(dir=store.path, prefix=".export-")
    try:
        path = os.path.join(tmp, "image.tar")
        fn(store, name, path, format="docker", tag=tag, compression=compression)
        with open(path, "rb") as src:
            shutil.copyfileobj(src, f, 1 << 20)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


COMMANDS = [init_cmd, import_cmd, clone_cmd, commit_cmd, ls_cmd, info_cmd, rm_cmd, rename_cmd,
            diff_cmd, label_cmd, export_cmd]
