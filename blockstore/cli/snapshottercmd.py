"""``snapshotter serve``: run blockstore as a containerd proxy snapshotter
(blockstore.snapshotter; docs/CONTAINERD.md)."""
from __future__ import annotations

import logging
import os

import click

from .context import Ctx, needs, pass_ctx


@click.group("snapshotter")
def snapshotter_group():
    """containerd integration: serve the store as a proxy snapshotter."""


@snapshotter_group.command("serve")
@click.option("--address", required=True, metavar="SOCK",
              help="Unix socket to listen on (its directory: created 0700, must be ours).")
@click.option("--root", metavar="DIR", default=None,
              help="Directory for the mount points (default: STORE/containerd; made 0700).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@pass_ctx
def serve_cmd(ctx: Ctx, address, root, log_level):
    """Serve containerd's snapshots API on SOCK until SIGTERM/SIGINT.

    Point containerd at it with a [proxy_plugins] entry (type "snapshot")
    and use `--snapshotter NAME` with ctr.  Active and view snapshots are
    FUSE mounts under DIR/mnt; they stay mounted across restarts."""
    server = needs("blockstore.snapshotter.server", "the containerd snapshotter")
    logging.basicConfig(level=getattr(logging, log_level.upper()),
                        format="%(asctime)s %(process)d %(levelname)s %(name)s %(message)s")
    store = ctx.store(create=True)          # it writes: created on first use like import
    root = root or os.path.join(store.path, "containerd")
    server.serve(store, address, root)


COMMANDS = [snapshotter_group]
