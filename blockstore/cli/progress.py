"""Progress on stderr, only when stderr is a terminal (never on stdout, so
pipes and --json stay clean).

``with progress(ctx, "importing") as cb:`` yields a callback
``cb(path, nbytes)`` -- the signature of the Store API's ``progress=``
hooks -- or None when not interactive (the API then skips the calls).
``with spinner(ctx, "checking"):`` shows activity for work without hooks.
"""
from __future__ import annotations

import contextlib

from .format import size


@contextlib.contextmanager
def progress(ctx, what: str, total_bytes: int | None = None):
    if not ctx.interactive:
        yield None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, Progress, SpinnerColumn, TextColumn,
                               TimeElapsedColumn)
    cols = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
            TextColumn("{task.fields[files]} files, {task.fields[size]}"), TimeElapsedColumn()]
    with Progress(*cols, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=total_bytes, files=0, size="0 B")
        state = {"files": 0, "bytes": 0}

        def cb(path, nbytes=0):
            state["files"] += 1
            state["bytes"] += nbytes or 0
            bar.update(task, advance=nbytes or 0, files=state["files"],
                       size=size(state["bytes"]))
        yield cb


@contextlib.contextmanager
def spinner(ctx, what: str):
    if not ctx.interactive:
        yield
        return
    from rich.console import Console
    with Console(stderr=True).status(what):
        yield
