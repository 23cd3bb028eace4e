"""``bench`` and ``stress``: run tools/bench.py and tools/stress.py of the
source checkout with the given arguments (they are development tools and
ship with the repository, not the wheel).  Unsupported (exit 12) when the
script is not there; otherwise the tool's own exit code."""
from __future__ import annotations

import os
import subprocess
import sys

import click

from ..errors import Unsupported
from .context import pass_ctx

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(script: str, args) -> None:
    path = os.path.join(_REPO, "tools", script)
    if not os.path.exists(path):
        raise Unsupported(f"{script} is not available (it ships with the source checkout)",
                          path=path)
    rc = subprocess.call([sys.executable, path, *args])
    if rc:
        raise click.exceptions.Exit(rc)


_PASS = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@click.command("bench", context_settings=_PASS)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@pass_ctx
def bench_cmd(ctx, args):
    """Run benchmarks: tools/bench.py ARGS (try `blockstore bench --help`)."""
    _run("bench.py", args)


@click.command("stress", context_settings=_PASS)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@pass_ctx
def stress_cmd(ctx, args):
    """Run the stress tool: tools/stress.py ARGS (try `blockstore stress --help`)."""
    _run("stress.py", args)


COMMANDS = [bench_cmd, stress_cmd]
