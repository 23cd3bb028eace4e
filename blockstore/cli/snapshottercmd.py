"""``snapshotter serve``: run blockstore as a containerd proxy snapshotter;
``snapshotter register``: tell containerd which image layers the store holds
(blockstore.snapshotter; docs/CONTAINERD.md)."""
from __future__ import annotations

import logging
import os

import click

from . import format as formatting
from .context import Ctx, needs, output_options, pass_ctx


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


@snapshotter_group.command("register")
@click.argument("image")
@click.option("--containerd", "address", required=True, metavar="SOCK",
              help="containerd's socket (e.g. /run/containerd/containerd.sock).")
@click.option("--namespace", "-n", default="default", show_default=True,
              help="containerd namespace to register the layers in.")
@click.option("--snapshotter", default="blockstore", show_default=True,
              help="The name containerd knows the blockstore snapshotter by.")
@click.option("--expire", default=24 * 3600, show_default=True, type=click.IntRange(60),
              metavar="SECONDS",
              help="Lease time: unreferenced registrations are collected after it.")
@click.option("--image", "ref", metavar="REF",
              help="Also make containerd image REF of it (its manifest and config, no layer "
                   "bytes): it runs without `ctr image import`.")
@output_options()
@pass_ctx
def register_cmd(ctx: Ctx, image, address, namespace, snapshotter, expire, ref):
    """Register IMAGE's layers (imported with `blockstore import`) with containerd.

    containerd then finds each layer as a committed snapshot of NAMESPACE,
    so `ctr image import`/`ctr image pull --snapshotter SNAPSHOTTER` of an
    image with these layers unpacks none of them.  The snapshotter must be
    serving this store."""
    reg = needs("blockstore.snapshotter.register", "the containerd snapshotter")
    store = ctx.store(create=False)
    done = reg.register(store, image, address, namespace, snapshotter, float(expire), image=ref)
    if ctx.json:
        out = []
        for cid, outcome in done:
            if outcome.startswith("image "):     # (REF, "image created|updated"), after the layers
                out.append({"chain_id": out[-1]["chain_id"], "outcome": outcome.split()[1],
                            "image": cid})
            else:
                out.append({"chain_id": cid, "outcome": outcome, "image": None})
        formatting.emit_json(out)
        return
    for cid, outcome in done:
        ctx.say(f"{outcome:<10} {cid}")


COMMANDS = [snapshotter_group]
