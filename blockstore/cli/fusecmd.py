"""``mount`` and ``umount``: thin calls into blockstore.fuse (the FUSE
adapter); Unsupported (exit 12) when it is not installed."""
from __future__ import annotations

import os

import click

from .complete import tree_names
from .context import Ctx, hook, output_options, pass_ctx


@click.command("mount")
@click.argument("name", shell_complete=tree_names)
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--foreground", is_flag=True, help="Stay in the foreground until unmounted.")
@click.option("-o", "options", multiple=True, metavar="KEY[=VALUE]",
              help="Mount option passed to the FUSE adapter (repeatable).")
@output_options(json_=False)
@pass_ctx
def mount_cmd(ctx: Ctx, name, mountpoint, foreground, options):
    """Mount NAME at MOUNTPOINT (a snapshot read-only, a clone read-write)."""
    mount = hook("blockstore.fuse", "mount", "mounting")
    opts = {}
    for o in options:
        k, eq, v = o.partition("=")
        opts[k] = _value(v) if eq else True
    if ctx.verify_reads:                        # the global --verify-reads
        opts.setdefault("verify_reads", True)
    mount(os.path.abspath(ctx.store_path), name, os.path.abspath(mountpoint),
               foreground=foreground, **opts)
    if not foreground:
        ctx.note(f"mounted {name} at {mountpoint}; `blockstore umount {mountpoint}` to stop")


def _value(v: str):
    """-o values: true/false -> bool, numbers -> int/float, else the string."""
    if v.lower() in ("true", "yes", "on", "false", "no", "off"):
        return v.lower() in ("true", "yes", "on")
    for t in (int, float):
        try:
            return t(v)
        except ValueError:
            pass
    return v


@click.command("umount")
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--lazy", is_flag=True, help="Detach now even if files are open (umount -l).")
@output_options(json_=False)
@pass_ctx
def umount_cmd(ctx: Ctx, mountpoint, lazy):
    """Unmount a tree mounted with `blockstore mount` (also cleans up after a killed mount)."""
    umount = hook("blockstore.fuse", "umount", "unmounting")
    umount(os.path.abspath(mountpoint), **({"lazy": True} if lazy else {}))


COMMANDS = [mount_cmd, umount_cmd]
