"""``blockstore remote add|ls|rm|gc``, ``push``, ``pull``: share snapshots
through an S3-compatible object store (docs/REMOTE-FORMAT.md).  Credentials
come from the usual AWS variables and files."""
from __future__ import annotations

import click

from . import format as fmt
from .context import Ctx, output_options, pass_ctx


def _progress(ctx: Ctx, force: bool):
    if ctx.quiet or not (force or ctx.interactive):
        return None
    return lambda msg: click.echo(msg, err=True)


@click.group("remote")
def remote_grp():
    """Add, list and remove remotes (S3 buckets); gc a remote."""


@remote_grp.command("add")
@click.argument("name")
@click.argument("url", metavar="s3://BUCKET/PREFIX")
@click.option("--endpoint", metavar="URL", help="The S3 endpoint (default: AWS).")
@output_options()
@pass_ctx
def add_cmd(ctx: Ctx, name, url, endpoint):
    """Add remote NAME at s3://BUCKET/PREFIX."""
    cfg = ctx.store(create=True).remote_add(name, url, endpoint)
    if ctx.json:
        fmt.emit_json({"name": name, **cfg})
    else:
        ctx.say(name)


@remote_grp.command("ls")
@click.argument("name", required=False)
@output_options()
@pass_ctx
def ls_cmd(ctx: Ctx, name):
    """List the remotes, or with NAME the snapshots on that remote."""
    store = ctx.store()
    if name:
        snaps = store.remote_snapshots(name)
        if ctx.json:
            fmt.emit_json({"remote": name, "snapshots": snaps})
        else:
            for s in snaps:
                ctx.say(s)
        return
    rem = store.remotes()
    if ctx.json:
        fmt.emit_json([{"name": n, **c} for n, c in sorted(rem.items())])
        return
    for n, c in sorted(rem.items()):
        ctx.say(f"{n}\t{c['url']}" + (f"\t{c['endpoint']}" if c.get("endpoint") else ""))


@remote_grp.command("rm")
@click.argument("name")
@output_options()
@pass_ctx
def rm_cmd(ctx: Ctx, name):
    """Forget remote NAME (nothing on the remote changes)."""
    ctx.store().remote_remove(name)
    if ctx.json:
        fmt.emit_json({"removed": name})


@remote_grp.command("gc")
@click.argument("name", required=False)
@click.option("--grace", type=float, default=None, metavar="SECONDS",
              help="Keep unreachable objects younger than this (default 48 h).")
@click.option("-n", "--dry-run", is_flag=True, help="Only print what would be deleted.")
@output_options()
@pass_ctx
def gc_cmd(ctx: Ctx, name, grace, dry_run):
    """Delete the objects of remote NAME that no snapshot manifest reaches."""
    r = ctx.store().remote_gc(name, grace, dry_run)
    if ctx.json:
        fmt.emit_json(r)
    else:
        ctx.say(f"{len(r['deleted'])} objects ({r['deleted_bytes']} bytes) "
                f"{'would be ' if dry_run else ''}deleted")


@click.command("push")
@click.argument("snapshots", nargs=-1, required=True)
@click.option("--remote", "remote", metavar="NAME", help="The remote (default: the only one).")
@click.option("--threads", type=click.IntRange(1, 64), default=8, show_default=True)
@click.option("--progress", "show", is_flag=True, help="Progress on stderr even when not a terminal.")
@output_options()
@pass_ctx
def push_cmd(ctx: Ctx, snapshots, remote, threads, show):
    """Upload SNAPSHOTS and their ancestors: only the blocks the remote lacks.
    Interrupted, run it again: it resumes."""
    r = ctx.store().push(list(snapshots), remote, _progress(ctx, show), threads)
    if ctx.json:
        fmt.emit_json(r)
    else:
        ctx.say(f"pushed {len(r['snapshots'])} snapshots ({len(r['skipped'])} already there), "
                f"{r['new_blocks']} new blocks, {r['bytes_sent']} bytes sent")


@click.command("pull")
@click.argument("snapshot", required=False)
@click.option("--remote", "remote", metavar="NAME", help="The remote (default: the only one).")
@click.option("--lazy", is_flag=True, help="Metadata only: blocks are fetched on first read.")
@click.option("--fill", "fill", metavar="NAME", help="Fetch every block a lazy pull of NAME left remote.")
@click.option("--threads", type=click.IntRange(1, 64), default=8, show_default=True)
@click.option("--progress", "show", is_flag=True, help="Progress on stderr even when not a terminal.")
@output_options()
@pass_ctx
def pull_cmd(ctx: Ctx, snapshot, remote, lazy, fill, threads, show):
    """Make remote SNAPSHOT (and its ancestors) local; blocks already here are not fetched."""
    store = ctx.store(create=True)
    if fill:
        r = store.fill(fill, _progress(ctx, show), threads)
    elif not snapshot:
        raise click.UsageError("name a SNAPSHOT (or --fill NAME)")
    else:
        r = store.pull(snapshot, remote, lazy, _progress(ctx, show), threads)
    if ctx.json:
        fmt.emit_json(r)
    elif fill:
        ctx.say(f"filled {r['blocks']} blocks, {r['bytes_received']} bytes received")
    else:
        ctx.say(f"pulled {len(r['snapshots'])} snapshots ({len(r['present'])} already here), "
                f"{r['bytes_received']} bytes received"
                + (f", {r['absent_blocks']} blocks left remote" if lazy else ""))


COMMANDS = [remote_grp, push_cmd, pull_cmd]
