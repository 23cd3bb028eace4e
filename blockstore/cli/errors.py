"""THE one place where the CLI turns errors into a message and an exit code.

Contract: every failure prints exactly one line on stderr,
``blockstore: <problem>; <what to do>``, and exits with the code of its
category: ``blockstore.errors.CATEGORIES[i].exit_code`` (the class attribute
is the single source; nothing here repeats a number), 2 for usage errors
(click), 1 for anything unexpected.  A closed stdout pipe (``| head``) is no
failure: no message, exit status 141 (128 + SIGPIPE, what a shell reports
for a Unix tool ended by SIGPIPE).  Host-side OSErrors (a missing source
directory, a full disk) are mapped to the category with the same meaning.

docs/ERRORS.md is generated from this module (``python -m
blockstore.cli.errors > docs/ERRORS.md``); a test keeps the two in sync.
"""
from __future__ import annotations

import errno as _errno
import os
import signal
import sys
import threading
import traceback

from .. import errors

USAGE_EXIT = 2      # click's own code for usage errors
ROLLBACK_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Signalled(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread as Ctrl-C raises
    KeyboardInterrupt, so that the unfinished command rolls back the same way
    (an import removes its working clone and gives its space back); the exit
    code is 128 + the signal number, as for a shell's killed command."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_signalled(signum, frame):
    raise Signalled(signum)


def catch_signals() -> dict:
    """Turn SIGTERM and SIGHUP into ``Signalled`` for the running command (main
    thread only); returns the previous handlers for ``restore_signals``."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, _raise_signalled) for s in ROLLBACK_SIGNALS}


def restore_signals(old: dict) -> None:
    for s, h in old.items():
        signal.signal(s, h)

BROKEN_PIPE_EXIT = 128 + signal.SIGPIPE    # 141, as a shell reports a tool SIGPIPE ended

# What to do, per category (the "; <what to do>" half of the line).
HINTS: dict[type, str] = {
    errors.BlockstoreError: "see docs/ERRORS.md; rerun with BLOCKSTORE_DEBUG=1 for details",
    errors.NotFound: "check the name with `blockstore ls` or the path with `blockstore files NAME:/dir`",
    errors.AlreadyExists: "choose another name, or remove the existing one with `blockstore rm`",
    errors.Busy: "retry when the other user is done, or see `blockstore COMMAND --help`",
    errors.ReadOnly: "snapshots never change: `blockstore clone` it and change the clone",
    errors.NoSpace: "free space with `blockstore rm` and `blockstore gc`, or make room on the disk",
    errors.Corruption: "run `blockstore check`, then `blockstore check --repair`",
    errors.InvalidInput: "see `blockstore COMMAND --help`",
    errors.NotAStore: "create one with `blockstore init`, or point --store/BLOCKSTORE_STORE at a store",
    errors.FormatTooNew: "upgrade blockstore to open this store",
    errors.Unsupported: "this build of blockstore cannot do that yet",
}

# What each category means, for docs/ERRORS.md.
MEANING: dict[type, str] = {
    errors.BlockstoreError: "any other failure (an I/O error, an unexpected bug)",
    errors.NotFound: "no store at the --store path; no such tree, volume, file or host path",
    errors.AlreadyExists: "a tree (or file) with that name already exists",
    errors.Busy: "still in use: a snapshot with dependents, a mounted volume, "
            "a non-empty directory, another process holding the store",
    errors.ReadOnly: "a change to a snapshot or a read-only mount; permission denied",
    errors.NoSpace: "the pool or its disk is full",
    errors.Corruption: "store metadata or data is damaged; also `check` finding problems",
    errors.InvalidInput: "a bad name, path, option value, archive or mount spec",
    errors.NotAStore: "the --store path holds no store",
    errors.FormatTooNew: "the store was written by a newer blockstore",
    errors.Unsupported: "an operation this build does not support (e.g. FUSE or "
                   "OCI support not installed)",
}

# Host OSErrors without a blockstore category of their own -> category.
_ERRNO_CATEGORY = {
    _errno.ENOENT: errors.NotFound, _errno.EEXIST: errors.AlreadyExists, _errno.EBUSY: errors.Busy,
    _errno.ENOTEMPTY: errors.Busy, _errno.EROFS: errors.ReadOnly, _errno.EACCES: errors.ReadOnly,
    _errno.EPERM: errors.ReadOnly, _errno.ENOSPC: errors.NoSpace, _errno.EDQUOT: errors.NoSpace,
    _errno.EINVAL: errors.InvalidInput, _errno.ENOTDIR: errors.InvalidInput,
    _errno.EISDIR: errors.InvalidInput, _errno.ENAMETOOLONG: errors.InvalidInput,
    _errno.ELOOP: errors.InvalidInput, _errno.EXDEV: errors.InvalidInput,
    _errno.EOPNOTSUPP: errors.Unsupported,
}


_BY_CODE = {c.exit_code: c for c in errors.CATEGORIES}


def category_of_class(cls: type) -> type:
    """The category a BlockstoreError class belongs to: the one with its exit code."""
    return _BY_CODE.get(cls.exit_code, errors.BlockstoreError)


def category(exc: BaseException) -> type:
    """The category (one of errors.CATEGORIES) that exc belongs to."""
    if isinstance(exc, errors.BlockstoreError):
        return category_of_class(type(exc))
    if isinstance(exc, OSError):
        return _ERRNO_CATEGORY.get(exc.errno, errors.BlockstoreError)
    if isinstance(exc, ImportError):       # an optional part (FUSE, OCI, zstd) is missing
        return errors.Unsupported
    return errors.BlockstoreError


def exit_code(exc: BaseException) -> int:
    if isinstance(exc, errors.BlockstoreError):
        return exc.exit_code                 # the class attribute is the source of truth
    return category(exc).exit_code


def message(exc: BaseException, command: str | None = None) -> str:
    """The one stderr line (without the trailing newline).

    An error whose message says what to do (``problem; what to do``) keeps
    its own hint, with the path it names after the problem; others get their
    category's hint.  ``COMMAND`` in a hint becomes the failing command
    (``see `blockstore clone --help```)."""
    cat = category(exc)
    hint = None
    if isinstance(exc, errors.BlockstoreError) and isinstance(getattr(exc, "message", None), str):
        problem, sep, hint = exc.message.partition("; ")
        hint = hint if sep else None
        if exc.filename is not None:
            problem += f": {exc.filename}"
    elif isinstance(exc, errors.BlockstoreError):
        problem = str(exc)
    elif isinstance(exc, OSError):
        problem = exc.strerror or str(exc)
        if exc.filename is not None:
            problem += f": {exc.filename}"
            if exc.filename2 is not None:
                problem += f" -> {exc.filename2}"
    elif isinstance(exc, ImportError):
        problem = f"not supported by this installation ({exc})"
    elif isinstance(exc, KeyboardInterrupt):
        how = f" by {exc}" if isinstance(exc, Signalled) else ""
        return f"blockstore: interrupted{how}; the store is unchanged by the unfinished command"
    else:
        problem = f"internal error: {type(exc).__name__}: {exc}"
    if hint is None and ";" in problem:         # the message already says what to do
        hint, problem = "", problem
    elif hint is None:
        hint = HINTS[cat]
    if command:
        hint = hint.replace("`blockstore COMMAND ", f"`blockstore {command} ")
    line = f"{problem}; {hint}" if hint else problem
    return "blockstore: " + " ".join(line.split())          # one line, always


def is_broken_pipe(exc: BaseException) -> bool:
    """The reader of our stdout went away (``blockstore cat ... | head -c 10``)."""
    return isinstance(exc, OSError) and exc.errno == _errno.EPIPE


def _drop_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush of what is still
    buffered cannot fail (and print "Exception ignored ...") again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return                                  # not a real file (tests' CliRunner)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)


def report(exc: BaseException, command: str | None = None) -> int:
    """Print the line on stderr (plus a traceback with BLOCKSTORE_DEBUG=1); return the
    code.  ``command``: the failing command's path (``volume create``), for the hint.
    A broken stdout pipe prints nothing and returns BROKEN_PIPE_EXIT."""
    if is_broken_pipe(exc):
        _drop_stdout()
        return BROKEN_PIPE_EXIT
    if os.environ.get("BLOCKSTORE_DEBUG"):
        traceback.print_exception(exc, file=sys.stderr)
    print(message(exc, command), file=sys.stderr)
    if isinstance(exc, Signalled):
        return 128 + exc.signum
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return exit_code(exc)


def errors_markdown() -> str:
    """docs/ERRORS.md: 0 ok, 2 usage, then one row per category (by exit code)."""
    lines = [
        "# blockstore exit codes and errors",
        "",
        "Generated from `blockstore.errors.CATEGORIES` and `blockstore/cli/errors.py`",
        "(`python -m blockstore.cli.errors > docs/ERRORS.md`); `tests/test_cli_errors.py`",
        "fails when this file and the code disagree.",
        "",
        "Every failure prints one line on stderr, `blockstore: <problem>; <what to do>`,",
        "and exits with the code of its category. An error that knows better than its",
        "category says what to do itself (e.g. a second mount of a tree); in the hints",
        "below, `COMMAND` is the command that failed. Set `BLOCKSTORE_DEBUG=1` to also get",
        "the Python traceback. Library users catch the same classes: each is also the",
        "matching `OSError` subclass and carries the errno the FUSE adapter returns.",
        "",
        "| exit code | category | errno | meaning | what to do |",
        "|---|---|---|---|---|",
        "| 0 | — | — | success | — |",
    ]
    usage = ("| 2 | usage | — | bad command line (unknown command or option, missing "
             "argument, bad option value) | see `blockstore COMMAND --help` |")
    for cls in sorted(errors.CATEGORIES, key=lambda c: c.exit_code):
        if usage and cls.exit_code > USAGE_EXIT:
            lines.append(usage)
            usage = None
        en = _errno.errorcode.get(cls.errno_code, str(cls.errno_code))
        lines.append(f"| {cls.exit_code} | `{cls.__name__}` | {en} | {MEANING[cls]} "
                     f"| {HINTS[cls]} |")
    lines += [
        "| 130 | interrupted | — | Ctrl-C | rerun the command; a command is atomic "
        "unless documented otherwise |",
        "| 129, 143 | interrupted | — | SIGHUP, SIGTERM: rolled back as Ctrl-C | "
        "as for 130 |",
        f"| {BROKEN_PIPE_EXIT} | broken pipe | EPIPE | the reader of stdout went away "
        "(`blockstore cat T:/f \\| head -c 10`); nothing is printed, as other Unix tools "
        "ended by SIGPIPE | — |",
        "",
        "Precise POSIX conditions share their category's exit code:",
        "",
    ]
    for name in sorted(dir(errors)):
        cls = getattr(errors, name)
        if isinstance(cls, type) and issubclass(cls, errors.BlockstoreError) \
                and cls not in errors.CATEGORIES:
            cat = category_of_class(cls)
            en = _errno.errorcode.get(cls.errno_code, str(cls.errno_code))
            lines.append(f"- `{cls.__name__}` ({en}): a case of `{cat.__name__}`, "
                         f"exit code {cat.exit_code}")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(errors_markdown())
