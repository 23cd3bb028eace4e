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

import importlib
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

    def list_commands(self, ctx):
        return sorted(set(self.commands) | set(COMMAND_MODULES))

    def get_command(self, ctx, name):
        if name not in self.commands and name in COMMAND_MODULES:
            module = importlib.import_module(f"{__name__}.{COMMAND_MODULES[name]}")
            for cmd in module.COMMANDS:
                self.add_command(cmd)
        return self.commands.get(name)


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


# Which module defines each command.  A command's module is imported when
# the command runs (or help lists it), so `blockstore ls` loads the tree
# commands only, not FUSE, OCI, remote or benchmark code.  tests/test_cli_start.py
# checks this table against every module's COMMANDS list.
COMMAND_MODULES = {
    "init": "trees", "import": "trees", "clone": "trees", "commit": "trees", "ls": "trees",
    "info": "trees", "rm": "trees", "rename": "trees", "diff": "trees", "label": "trees",
    "export": "trees",
    "cp": "files", "cat": "files", "files": "files",
    "du": "space", "df": "space", "check": "space", "gc": "space",
    "prune": "prune", "config": "settings", "volume": "volumes",
    "mount": "fusecmd", "umount": "fusecmd", "snapshotter": "snapshottercmd",
    "bench": "tools", "stress": "tools", "completion": "complete",
    "remote": "remotecmd", "push": "remotecmd", "pull": "remotecmd",
}
