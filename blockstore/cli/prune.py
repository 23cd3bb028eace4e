"""``blockstore prune``: remove the image layer snapshots nothing keeps (the
rule: ``blockstore/api/prune.py``), like ``docker image prune``."""
from __future__ import annotations

import click

from . import format as fmt
from .context import Ctx, output_options, pass_ctx


@click.command("prune")
@click.option("-n", "--dry-run", is_flag=True, help="Only print what would be removed.")
@output_options()
@pass_ctx
def prune_cmd(ctx: Ctx, dry_run):
    """Remove image layers nothing keeps: layer snapshots (named sha256:...
    by an image import) that no tree is built on and no user label keeps,
    e.g. those left by `rm IMAGE`.  Trees with names you gave are never
    removed.  Prints each removed name (children before parents); space
    returns to the pool (see `gc`).
    """
    names = ctx.store().prune(dry_run=dry_run)
    if ctx.json:
        fmt.emit_json({"removed": names, "dry_run": dry_run})
        return
    for n in names:
        ctx.say(n)


COMMANDS = [prune_cmd]
