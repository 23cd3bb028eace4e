"""``config``: show or change the store's persisted settings (Store.configure)."""
from __future__ import annotations

import click

from . import format as fmt
from .context import Ctx, output_options, pass_ctx

_ON = ("on", "true", "yes", "1")
_OFF = ("off", "false", "no", "0")


def _parse(item: str) -> tuple[str, bool]:
    from ..api.store import SETTINGS
    name, eq, value = item.partition("=")
    if name not in SETTINGS:
        raise click.BadParameter(f"no store setting named {name!r} (settings: "
                                 f"{', '.join(sorted(SETTINGS))})", param_hint="KEY=VALUE")
    if not eq or value.lower() not in _ON + _OFF:
        raise click.BadParameter(f"{item!r}: give {name}=on or {name}=off",
                                 param_hint="KEY=VALUE")
    return name, value.lower() in _ON


def _show(value) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else str(value)


@click.command("config")
@click.argument("items", nargs=-1, metavar="[KEY=VALUE]...")
@output_options()
@pass_ctx
def config_cmd(ctx: Ctx, items):
    """Show the store's settings, or set them (KEY=on|off).

    verify_reads: every data block read (cat, cp, export, FUSE reads, ...) is
    checked against the checksum recorded when it was written; a damaged block
    fails the read (exit code 8, EIO in a mount) instead of being returned.
    Cost: docs/RELIABILITY.md.  Applies to every process that opens the store
    after the change (a running mount keeps what it had).
    """
    changes = dict(_parse(i) for i in items)
    store = ctx.store()
    settings = store.configure(**changes) if changes else store.settings
    if ctx.json:
        fmt.emit_json(settings)
        return
    w = max(len(k) for k in settings)
    ctx.say("\n".join(f"{k:<{w}}  {_show(v)}" for k, v in sorted(settings.items())))


COMMANDS = [config_cmd]
