"""Tree commands: init, import, clone, commit, ls, info, rm, diff, label, export.

Each one call (or a few) into the Store API; output per docs/CLI.md.
"""
from __future__ import annotations

import os

import click

from .. import Store
from ..api import mounts as M
from ..errors import AlreadyExists, InvalidInput, NotAStore, NotFound
from . import format as F
from .complete import snapshot_names, tree_names
from .context import Ctx, hook, output_options, pass_ctx, split_kv
from .progress import progress, spinner

# docker diff says C(hanged) where the API says M(odified).
DIFF_KIND = {"A": "A", "M": "C", "D": "D"}


def change_json(c) -> dict:
    return {"kind": DIFF_KIND[c.kind], "path": c.path, "type": c.type}


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
    bs = F.parse_size(block_size) if block_size else None
    try:
        with Store.open(ctx.store_path, create=False):
            pass
    except (NotAStore, NotFound):
        pass
    else:
        raise AlreadyExists("a store already exists", path=ctx.store_path)
    with Store.open(ctx.store_path, create=True, block_size=bs, dedup=dedup,
                    checksum=checksum) as s:
        if verify:
            s.configure(verify_reads=True)
        doc = {"path": os.path.abspath(ctx.store_path), "block_size": s.block_size,
               "dedup": bool(s.env.dedup), "checksum": s.env.checksum,
               "verify_reads": s.settings["verify_reads"]}
    if ctx.json:
        F.emit_json(doc)
    else:
        ctx.say(f"created store {doc['path']} (block size {F.size(doc['block_size'])}, "
                f"dedup {'on' if doc['dedup'] else 'off'}, checksum {doc['checksum']})")


def _host_source(src: str) -> str:
    """The host path of SRC (which may be PATH:TAG for an image); NotFound if absent."""
    if os.path.lexists(src):
        return src
    path, sep, _ = src.rpartition(":")
    if sep and os.path.lexists(path):
        return path
    raise NotFound("import source does not exist", path=src)


@click.command("import")
@click.argument("src", type=click.Path())
@click.argument("name")
@click.option("--parent", metavar="SNAPSHOT", shell_complete=snapshot_names,
              help="Import on top of this snapshot (a layer tar applies onto it).")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Label (repeatable).")
@output_options()
@pass_ctx
def import_cmd(ctx: Ctx, src, name, parent, labels):
    """Import SRC as snapshot NAME.

    SRC is a directory, an OCI image layout (a directory with index.json or
    a tar of one), a `docker save` tarball (either as PATH:TAG to pick one
    image), or a layer tar (plain, gzip or zstd) applied onto --parent.
    An image becomes a chain of snapshots, the top one named NAME.
    """
    store = ctx.store(create=True)
    labels = split_kv(labels)
    host = _host_source(src)
    plain_dir = os.path.isdir(host) and host == src and not any(
        os.path.exists(os.path.join(host, f)) for f in ("index.json", "oci-layout"))
    with progress(ctx, f"importing {src}") as cb:
        if plain_dir:
            store.import_dir(src, name, parent=parent, labels=labels, progress=cb)
            labels = {}
        else:
            what = "importing image archives and layer tars"
            hook("blockstore.oci", "import_image", what)(store, src, name, parent=parent,
                                                         progress=cb)
    rec = store.label(name, **labels) if labels else store.info(name)
    if ctx.json:
        F.emit_json(F.record(rec))
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
    specs = ([M.parse_spec("volume", v) for v in volumes] + [M.parse_spec("bind", b) for b in binds]
             + [M.parse_spec("tmpfs", t) for t in tmpfs])
    rec = ctx.store().clone(snapshot, name, mounts=specs, labels=split_kv(labels) or None)
    if ctx.json:
        F.emit_json(F.record(rec))
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

    Prints NAME and, like `git commit`, what it changed since its parent
    snapshot as `A`/`C`/`D` lines (as `blockstore diff PARENT NAME` would).
    """
    store = ctx.store()
    rec = store.commit(clone, name, labels=split_kv(labels) or None)
    changes = store.diff(rec.parent, rec.name) if rec.parent and store.exists(rec.parent) else None
    if ctx.json:
        doc = F.record(rec)
        doc["changes"] = [change_json(c) for c in changes] if changes is not None else None
        F.emit_json(doc)
        return
    ctx.say(rec.name + (f" (parent {rec.parent})" if rec.parent else ""))
    for c in changes or []:
        ctx.say(f"{DIFF_KIND[c.kind]} {c.path}")


@click.command("ls")
@click.option("--kind", type=click.Choice(["snapshot", "clone", "volume"]), help="Only this kind.")
@click.option("--filter", "filters", multiple=True, metavar="label=KEY=VALUE",
              help="Only trees with this label (repeatable; 'label=' is optional).")
@output_options()
@pass_ctx
def ls_cmd(ctx: Ctx, kind, filters):
    """List trees as a lineage tree: parents above their children."""
    want = {}
    for f in filters:
        f = f[len("label="):] if f.startswith("label=") and "=" in f[len("label="):] else f
        want.update(split_kv([f], "label=KEY=VALUE"))
    recs = ctx.store().list(kind=kind, label=want or None)
    if ctx.json:
        F.emit_json([F.record(r) for r in sorted(recs, key=lambda r: r.name)])
        return
    rows = [[label, r.kind, F.time_ns(r.created), F.labels_text(r.labels)]
            for label, r in F.lineage_rows(recs)]
    if rows:
        ctx.say(F.table(rows, ["NAME", "KIND", "CREATED", "LABELS"]))


@click.command("info")
@click.argument("name", shell_complete=tree_names)
@output_options(exact=True)
@pass_ctx
def info_cmd(ctx: Ctx, name):
    """Show one tree: kind, lineage, dependents, mounts, labels and space."""
    store = ctx.store()
    rec = store.info(name)
    u = store.usage(name)
    doc = F.record(rec)
    doc["lineage"] = store.lineage(name)
    doc["dependents"] = sorted(d.name for d in store.dependents(name))
    doc["usage"] = u.as_dict()
    if ctx.json:
        F.emit_json(doc)
        return
    sz = lambda n: F.size(n, ctx.bytes)  # noqa: E731
    lines = [("name", rec.name), ("kind", rec.kind), ("parent", rec.parent or "-"),
             ("created", doc["created"]), ("lineage", " <- ".join(doc["lineage"])),
             ("dependents", ", ".join(doc["dependents"]) or "-"),
             ("labels", F.labels_text(rec.labels) or "-"), ("uuid", rec.uuid)]
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
@output_options(json_=False)
@pass_ctx
def rm_cmd(ctx: Ctx, names, force):
    """Remove trees (space returns to the pool; see `gc`).

    Every NAME is tried; the exit code is the first failure's.
    """
    from . import errors as cli_errors
    store = ctx.store()
    first = None
    for n in names:
        try:
            store.remove(n, force=force)
            ctx.say(n)
        except Exception as exc:        # report each one, keep going like rm(1)
            code = cli_errors.report(exc)
            first = first or code
    if first:
        raise click.exceptions.Exit(first)


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
        F.emit_json([change_json(c) for c in changes])
        return
    for c in changes:
        ctx.say(f"{DIFF_KIND[c.kind]} {c.path}")


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
        F.emit_json(F.record(rec))
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
                   "auto: tar when OUT ends in .tar, else dir.")
@click.option("--tag", metavar="TAG", help="Image tag for --format oci/docker.")
@output_options(json_=False)
@pass_ctx
def export_cmd(ctx: Ctx, name, out, parent, fmt, tag):
    """Write NAME out: to directory OUT, to a tar, or (with --from PARENT)
    the change from PARENT to NAME as an OCI layer tar."""
    store = ctx.store()
    if fmt == "auto":
        fmt = "tar" if out.endswith(_TAR_SUFFIXES) or parent else "dir"
    if parent and fmt != "tar":
        raise InvalidInput("--from writes a layer tar: give OUT ending in .tar")
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
            fn(store, name, out, format=fmt, tag=tag)
    ctx.say(out)


COMMANDS = [init_cmd, import_cmd, clone_cmd, commit_cmd, ls_cmd, info_cmd, rm_cmd, diff_cmd,
            label_cmd, export_cmd]
