"""``mount`` and ``umount``: thin calls into blockstore.fuse (the FUSE
adapter); Unsupported (exit 12) when it is not installed."""
from __future__ import annotations

import os

import click

from . import format as fmt
from .complete import tree_names
from .context import Ctx, hook, output_options, pass_ctx


@click.command("mount")
@click.argument("name", shell_complete=tree_names)
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--foreground", is_flag=True, help="Stay in the foreground until unmounted.")
@click.option("-o", "options", multiple=True, metavar="KEY[=VALUE]",
              help="Mount option passed to the FUSE adapter (repeatable); `-o dev,suid` "
                   "(root only) lets device nodes and set-id files work, e.g. for chroot.")
@output_options()
@pass_ctx
def mount_cmd(ctx: Ctx, name, mountpoint, foreground, options):
    """Mount NAME at MOUNTPOINT (a snapshot read-only, a clone read-write).

    Like mount(8), the mount is nodev,nosuid unless `-o dev` / `-o suid`
    (root only): then device nodes and set-uid/set-gid files of the tree
    work, so `chroot MOUNTPOINT` needs no bind of /dev.
    """
    mount = hook("blockstore.fuse", "mount", "mounting")
    parse_options = hook("blockstore.fuse", "parse_options", "mounting")
    raw = {}
    for o in (part for arg in options for part in arg.split(",") if part):
        k, eq, v = o.partition("=")
        raw[k] = v if eq else True
    if ctx.verify_reads:                        # the global --verify-reads
        raw.setdefault("verify_reads", True)
    opts = parse_options(raw)      # typed and checked (exit 9 naming a bad option)
    mount(os.path.abspath(ctx.store_path), name, os.path.abspath(mountpoint),
               foreground=foreground, **opts)
    if ctx.json:
        fmt.emit_json({"name": name, "mountpoint": os.path.abspath(mountpoint)})
    elif not foreground:
        ctx.note(f"mounted {name} at {mountpoint}; `blockstore umount {mountpoint}` to stop")


@click.command("umount")
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--lazy", is_flag=True, help="Detach now even if files are open (umount -l).")
@output_options()
@pass_ctx
def umount_cmd(ctx: Ctx, mountpoint, lazy):
    """Unmount a tree mounted with `blockstore mount` (also cleans up after a killed mount)."""
    umount = hook("blockstore.fuse", "umount", "unmounting")
    umount(os.path.abspath(mountpoint), **({"lazy": True} if lazy else {}))
    if ctx.json:
        fmt.emit_json({"mountpoint": os.path.abspath(mountpoint)})


COMMANDS = [mount_cmd, umount_cmd]
