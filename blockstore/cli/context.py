"""Per-invocation state shared by every command: the store path, output
options, and the store itself (opened lazily, once, closed when the
command ends -- LMDB refuses a second open of one store in one process, so
every command must go through ``Ctx.store()``)."""
from __future__ import annotations

import functools
import sys

import click

from ..api import Store, default_store_path


class Ctx:
    def __init__(self, store_path: str | None, json_out: bool, quiet: bool, exact: bool):
        self.store_path = store_path or default_store_path()
        self.json = json_out
        self.quiet = quiet
        self.bytes = exact
        self.command = "COMMAND"       # the running command's path, e.g. "volume create"
        self._store: Store | None = None

    def store(self, create: bool = True) -> Store:
        """The store at --store, created on first use unless create=False."""
        if self._store is None:
            self._store = Store.open(self.store_path, create=create)
            click.get_current_context().call_on_close(self.close)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            s, self._store = self._store, None
            s.close()

    def say(self, text: str = "") -> None:
        """A human result line on stdout (suppressed by -q)."""
        if not self.quiet:
            click.echo(text)

    def note(self, text: str) -> None:
        """Commentary on stderr (suppressed by -q); never part of the result."""
        if not self.quiet:
            click.echo(text, err=True)

    @property
    def interactive(self) -> bool:
        """Progress bars only when stderr is a terminal and not -q."""
        return not self.quiet and sys.stderr.isatty()


def command_path(cctx: click.Context) -> str:
    """``volume create`` for ``blockstore volume create ...`` (the root's name left out)."""
    names = []
    while cctx.parent is not None:
        names.append(cctx.info_name)
        cctx = cctx.parent
    return " ".join(reversed(names))


def takes_json(command: click.Command) -> bool:
    return any(p.name == "json_out" for p in command.params)


def pass_ctx(f):
    """Pass the Ctx as first argument; records the command's path (for error
    hints) and refuses the global ``--json`` (usage error, exit 2) for a
    command that prints no JSON document, so it is never silently ignored."""
    @functools.wraps(f)
    def run(*args, **kwargs):
        cctx = click.get_current_context()
        obj = cctx.find_object(Ctx)
        obj.command = command_path(cctx)
        if obj.json and not takes_json(cctx.command):
            raise click.UsageError(f"--json does not apply to `blockstore {obj.command}` "
                                   f"(its output is not a document)", cctx)
        return f(obj, *args, **kwargs)
    return run


def _set(attr):
    def cb(ctx, param, value):
        if value:
            setattr(ctx.find_object(Ctx), attr, True)
        return value
    return cb


def output_options(json_: bool = True, exact: bool = False):
    """Per-command ``--json`` / ``--bytes`` / ``-q`` (same as the global ones,
    so both ``blockstore --json ls`` and ``blockstore ls --json`` work)."""
    def deco(f):
        f = click.option("-q", "--quiet", is_flag=True, expose_value=False, is_eager=False,
                         callback=_set("quiet"), help="Print nothing but errors.")(f)
        if exact:
            f = click.option("--bytes", "exact", is_flag=True, expose_value=False,
                             callback=_set("bytes"), help="Sizes as plain byte counts.")(f)
        if json_:
            f = click.option("--json", "json_out", is_flag=True, expose_value=False,
                             callback=_set("json"),
                             help="Print one JSON document on stdout (shape: docs/CLI.md).")(f)
        return f
    return deco


def split_kv(pairs, what: str = "KEY=VALUE") -> dict:
    """``['a=1', 'b=']`` -> ``{'a': '1', 'b': ''}``; usage error on a missing '='."""
    out = {}
    for p in pairs:
        k, eq, v = p.partition("=")
        if not eq or not k:
            raise click.BadParameter(f"{p!r} is not {what}")
        out[k] = v
    return out


def needs(module: str, what: str):
    """Import an optional interface package (blockstore.oci, blockstore.fuse);
    Unsupported (exit code 12) when it is not there."""
    import importlib

    from ..errors import Unsupported
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name and not module.startswith(exc.name) and exc.name != module:
            # the package exists but one of its dependencies is missing
            raise Unsupported(f"{what} is not supported by this installation "
                              f"({exc.name} is missing)") from None
        raise Unsupported(f"{what} is not supported yet ({module} is not installed)") from None


def hook(module: str, attr: str, what: str):
    """``module.attr`` of an optional interface package, or Unsupported."""
    fn = getattr(needs(module, what), attr, None)
    if fn is None:
        from ..errors import Unsupported
        raise Unsupported(f"{what} is not supported yet ({module}.{attr} is missing)")
    return fn
