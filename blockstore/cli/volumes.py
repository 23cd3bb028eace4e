"""``blockstore volume create|ls|rm|inspect``: named writable trees without
image lineage, attached to clones with ``clone --volume VOL:/path``."""
from __future__ import annotations

import click

from . import errors as cli_errors
from . import format as fmt
from .complete import volume_names
from .context import Ctx, output_options, pass_ctx, split_kv


@click.group("volume")
def volume_grp():
    """Create, list, remove and inspect volumes."""


@volume_grp.command("create")
@click.argument("name")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Label (repeatable).")
@output_options()
@pass_ctx
def create_cmd(ctx: Ctx, name, labels):
    """Create an empty volume NAME."""
    rec = ctx.store(create=True).volume_create(name, labels=split_kv(labels) or None)
    if ctx.json:
        fmt.emit_json(fmt.record(rec))
    else:
        ctx.say(rec.name)


def _mounted_by(store, name: str) -> list[str]:
    return sorted(r.name for r in store.dependents(name)
                  if any(m.get("type") == "volume" and m.get("source") == name
                         for m in r.mounts or []))


@volume_grp.command("ls")
@output_options()
@pass_ctx
def ls_cmd(ctx: Ctx):
    """List volumes and the clones that mount them."""
    store = ctx.store()
    vols = sorted(store.volumes(), key=lambda r: r.name)
    docs = [dict(fmt.record(v), mounted_by=_mounted_by(store, v.name)) for v in vols]
    if ctx.json:
        fmt.emit_json(docs)
        return
    rows = [[d["name"], d["created"], ", ".join(d["mounted_by"]) or "-",
             fmt.labels_text(d["labels"])] for d in docs]
    if rows:
        ctx.say(fmt.table(rows, ["NAME", "CREATED", "MOUNTED BY", "LABELS"]))


@volume_grp.command("rm")
@click.argument("names", nargs=-1, required=True, shell_complete=volume_names)
@click.option("-f", "--force", is_flag=True, help="Also when clones mount it (they lose the mount).")
@output_options()
@pass_ctx
def rm_cmd(ctx: Ctx, names, force):
    """Remove volumes; every NAME is tried, the exit code is the first failure's."""
    store = ctx.store()
    first, removed = None, []
    for n in names:
        try:
            store.volume_remove(n, force=force)
            removed.append(n)
            if not ctx.json:
                ctx.say(n)
        except Exception as exc:
            code = cli_errors.report(exc, ctx.command)
            first = first or code
    if ctx.json:
        fmt.emit_json({"removed": removed})
    if first:
        raise click.exceptions.Exit(first)


@volume_grp.command("inspect")
@click.argument("name", shell_complete=volume_names)
@output_options(exact=True)
@pass_ctx
def inspect_cmd(ctx: Ctx, name):
    """Show a volume: labels, the clones mounting it, its space."""
    from ..errors import InvalidInput
    store = ctx.store()
    rec = store.info(name)
    if rec.kind != "volume":
        raise InvalidInput(f"{name!r} is a {rec.kind}, not a volume; use `blockstore info`")
    doc = dict(fmt.record(rec), mounted_by=_mounted_by(store, name),
               usage=store.usage(name).as_dict())
    if ctx.json:
        fmt.emit_json(doc)
        return
    u = doc["usage"]
    lines = [("name", rec.name), ("created", doc["created"]),
             ("mounted by", ", ".join(doc["mounted_by"]) or "-"),
             ("labels", fmt.labels_text(rec.labels) or "-"), ("files", str(u["files"])),
             ("logical", fmt.size(u["logical"], ctx.bytes)),
             ("exclusive", fmt.size(u["exclusive"], ctx.bytes))]
    w = max(len(k) for k, _ in lines)
    ctx.say("\n".join(f"{k + ':':<{w + 1}} {v}" for k, v in lines))


COMMANDS = [volume_grp]
