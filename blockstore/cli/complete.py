"""Shell completion of tree names (bash, zsh, fish via click).

Activate with ``eval "$(_BLOCKSTORE_COMPLETE=bash_source blockstore)"`` (zsh:
zsh_source, fish: fish_source) or ``blockstore completion SHELL``.  The
completers open the store read-only (never create it) and swallow every
error: completion must never print a traceback into the user's shell.
Cost: one catalog scan, O(trees).
"""
from __future__ import annotations

from click.shell_completion import CompletionItem

from ..api import Store, default_store_path


def _names(ctx, kind: str | None = None) -> list:
    root = ctx.find_root()
    path = root.params.get("store") or default_store_path()
    try:
        with Store.open(path, create=False) as s:
            return [(r.name, r.kind) for r in s.list(kind=kind)]
    except Exception:
        return []


def tree_names(ctx, param, incomplete: str):
    """Any tree."""
    return [CompletionItem(n, help=k) for n, k in _names(ctx) if n.startswith(incomplete)]


def snapshot_names(ctx, param, incomplete: str):
    return [CompletionItem(n, help=k) for n, k in _names(ctx, "snapshot")
            if n.startswith(incomplete)]


def volume_names(ctx, param, incomplete: str):
    return [CompletionItem(n, help=k) for n, k in _names(ctx, "volume")
            if n.startswith(incomplete)]


def tree_paths(ctx, param, incomplete: str):
    """``NAME:/path`` operands: tree names followed by ':/'; host paths otherwise."""
    if ":/" in incomplete:
        return []
    items = [CompletionItem(n + ":/", help=k) for n, k in _names(ctx)
             if n.startswith(incomplete)]
    return items + [CompletionItem(incomplete, type="file")]


import click  # noqa: E402


from .context import pass_ctx  # noqa: E402


@click.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@pass_ctx
def completion_cmd(ctx_obj, shell):
    """Print the shell completion script: eval "$(blockstore completion bash)"."""
    from click.shell_completion import get_completion_class
    ctx = click.get_current_context()
    cls = get_completion_class(shell)
    comp = cls(ctx.find_root().command, {}, "blockstore", "_BLOCKSTORE_COMPLETE")
    click.echo(comp.source())


COMMANDS = [completion_cmd]
