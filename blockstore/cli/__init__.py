"""The ``blockstore`` command line (console script ``blockstore.cli:main``).

Each command parses its arguments, calls the Store API and formats the
result; no storage logic lives here.  Modules: trees (init, import, clone,
commit, ls, info, rm, diff, label, export), files (cp, cat, files), space
(du, df, check, gc), prune (prune), volumes (volume ...), fusecmd (mount,
umount), tools (bench, stress), complete (completion); stdio holds the
``-`` (stdin/stdout) operands of import and export.  Errors become one stderr line and
an exit code in exactly one place: ``errors.py``; docs/CLI.md is the
reference, docs/ERRORS.md the exit codes.
"""
from __future__ import annotations

import sys

import click

from .. import __version__
from ..api import default_store_path
from ..errors import BlockstoreError
from . import errors as cli_errors
from .context import Ctx


class _Group(click.Group):
    """Runs a command and turns any failure into errors.report(): one line, one code."""

    def invoke(self, ctx):
        old = cli_errors.catch_signals()        # SIGTERM/SIGHUP roll back like Ctrl-C
        try:
            rv = super().invoke(ctx)
            sys.stdout.flush()          # a closed pipe shows here, not at interpreter exit
            return rv
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except (BlockstoreError, OSError, KeyboardInterrupt, Exception) as exc:
            obj = ctx.find_object(Ctx)
            code = cli_errors.report(exc, obj.command if obj else None)
            ctx.exit(code)
        finally:
            cli_errors.restore_signals(old)

    def get_command(self, ctx, name):
        _load(_MODULE_OF.get(name))
        return super().get_command(ctx, name)

    def list_commands(self, ctx):
        _load_all()
        return sorted(self.commands)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"],
                                           "max_content_width": 100})
@click.option("--store", metavar="PATH", envvar="BLOCKSTORE_STORE", show_envvar=True,
              help="The store (created by `init` and by commands that write, on first use). "
                   f"Default: {default_store_path()}")
@click.option("--json", "json_out", is_flag=True,
              help="Print one JSON document (commands whose output is not a document, "
                   "like cat, refuse it).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("--bytes", "exact", is_flag=True, help="Sizes as plain byte counts.")
@click.option("--verify-reads", is_flag=True,
              help="Check every data block read against its checksum (exit code 8 on a "
                   "mismatch); the store setting `blockstore config verify_reads=on` "
                   "does it always.")
@click.version_option(__version__, "--version", prog_name="blockstore")
@click.pass_context
def main(ctx, store, json_out, quiet, exact, verify_reads):
    """A copy-on-write snapshot store for file trees.

    Import a directory as a snapshot, clone it, change the clone, commit it
    as a new snapshot; diff, export, account space, check.  Quick start and
    every command: docs/CLI.md.  Exit codes: docs/ERRORS.md.
    """
    ctx.obj = Ctx(store, json_out, quiet, exact, verify_reads)


# Command modules are imported when one of their commands is asked for (a
# command runs with only its own module loaded; help and completion load all):
# module -> the names of its COMMANDS (tests/test_cli_ux.py checks the table).
COMMAND_MODULES = {
    "trees": ("init", "import", "clone", "commit", "ls", "info", "rm", "rename", "diff",
              "label", "export"),
    "files": ("cp", "cat", "files"),
    "space": ("du", "df", "check", "gc"),
    "prune": ("prune",),
    "settings": ("config",),
    "volumes": ("volume",),
    "fusecmd": ("mount", "umount"),
    "snapshottercmd": ("snapshotter",),
    "tools": ("bench", "stress"),
    "complete": ("completion",),
    "remotecmd": ("remote", "push", "pull"),
}
_MODULE_OF = {name: mod for mod, names in COMMAND_MODULES.items() for name in names}
_loaded: set[str] = set()


def _load(mod: str | None) -> None:
    if mod is None or mod in _loaded:
        return
    import importlib
    _loaded.add(mod)
    for cmd in importlib.import_module(f"{__name__}.{mod}").COMMANDS:
        main.add_command(cmd)


def _load_all() -> None:
    for mod in COMMAND_MODULES:
        _load(mod)
