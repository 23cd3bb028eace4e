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


@remote_grp.command("rm-snapshot")
@click.argument("snapshot")
@click.option("--remote", "remote", metavar="NAME", help="The remote (default: the only one).")
@output_options()
@pass_ctx
def rm_snapshot_cmd(ctx: Ctx, snapshot, remote):
    """Delete SNAPSHOT from a remote (its manifest; `remote gc` reclaims its
    packs after the grace period).  Refused while another remote snapshot
    builds on it.  The local store is not changed."""
    r = ctx.store().remote_rm_snapshot(snapshot, remote)
    if ctx.json:
        fmt.emit_json(r)
    else:
        ctx.say(f"removed {snapshot} from remote {r['remote']}")


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
@click.option("--background", is_flag=True,
              help="With --fill: run it in a detached process; prints its pid and log file.")
@click.option("--threads", type=click.IntRange(1, 64), default=8, show_default=True)
@click.option("--progress", "show", is_flag=True, help="Progress on stderr even when not a terminal.")
@output_options()
@pass_ctx
def pull_cmd(ctx: Ctx, snapshot, remote, lazy, fill, background, threads, show):
    """Make remote SNAPSHOT (and its ancestors) local; blocks already here are not fetched."""
    if background and not fill:
        raise click.UsageError("--background goes with --fill NAME")
    store = ctx.store(create=True)
    if fill and background:
        store.info(fill)                    # NotFound now, not in the log
        r = _fill_in_background(store.path, fill, threads)
        if ctx.json:
            fmt.emit_json(r)
        else:
            ctx.say(f"filling {fill} in process {r['pid']}; progress in {r['log']}")
        return
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


def _fill_in_background(store_path: str, name: str, threads: int) -> dict:
    """Start ``blockstore pull --fill NAME --progress`` detached (its own session,
    no terminal), its output appended to a new log file in the private runtime
    directory ``fill/`` (mode 0600, created without following a planted path).
    The process runs until the snapshot is complete or fails; its last line
    says which, and a retry fetches only what is still missing."""
    import os
    import re
    import secrets
    import subprocess
    import sys
    import time

    from ..private_files import runtime_dir
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:64]
    logname = f"fill-{safe}-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}.log"
    with runtime_dir("fill") as d:
        fd = os.open(logname, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=d.fd)
        log = os.path.join(d.path, logname)
    try:
        p = subprocess.Popen(
            [sys.executable, "-c", "import sys; from blockstore.cli import main; "
             "sys.argv[0] = 'blockstore'; main()",
             "--store", store_path, "pull", "--fill", name, "--progress", "--threads", str(threads)],
            stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True, close_fds=True)
    finally:
        os.close(fd)
    return {"pid": p.pid, "log": log, "snapshot": name}


COMMANDS = [remote_grp, push_cmd, pull_cmd]
