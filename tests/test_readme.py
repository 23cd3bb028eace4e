"""The new-user script: README.md's code blocks, run as written.

Every fenced block of README.md marked ```python or ```sh is one test case
(named by its language and the line of its opening fence); other fences
(text, json, ...) are not run.  The blocks are read from the README each
run, so a rewritten README is tested as it stands.

How a block runs:

* Each block gets a fresh temporary directory as its working directory and
  a fresh store path in ``$BLOCKSTORE_STORE``; ``.venv/bin`` (this Python's
  bin directory) comes first on ``PATH``.
* Paths under ``/tmp/`` written in a block are redirected into that
  temporary directory (``/tmp/demo-store`` runs as ``<tmp>/demo-store``),
  so blocks never share a store or meet a previous run's leftovers.
* ```python: the block in a new interpreter (``python -c``).  A block whose
  first code line is indented continues the previous python block (the
  README shows the body of one ``with`` in two parts): it runs appended to
  that block.
* ```sh: the block's lines in one ``bash -e -o pipefail``, except lines
  that are not safe to run here, which are left out: ``make`` (it builds
  the environment this test runs in), ``sudo``, and anything that runs the
  test suite or the long tools (``pytest``, ``blockstore bench|stress``,
  ``tools/bench.py``, ``tools/stress.py``).

Markers: HTML comments on the lines just before a block's opening fence
(blank lines between are allowed), invisible in the rendered README:

* ``<!-- readme-test: skip (REASON) -->`` skips the block, e.g.
  ``<!-- readme-test: skip (needs a FUSE mount) -->``; the reason is
  required and becomes the skip reason.
* ``<!-- readme-test: before: SHELL COMMANDS -->`` runs SHELL COMMANDS (in
  bash, in the block's directory, same environment) before the block: the
  files a reader is assumed to have, e.g.
  ``<!-- readme-test: before: mkdir -p rootfs/etc && echo hi > index.html -->``.

A block that exits non-zero (or runs longer than TIMEOUT seconds) fails
with its output.
"""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
BIN = os.path.dirname(sys.executable)
TIMEOUT = 240             # under pytest-timeout's 300 s, so the block's output is shown
LANGS = ("python", "sh")

_FENCE = re.compile(r"^```\s*(\S*)")
_MARKER = re.compile(r"^<!--\s*readme-test:\s*(.*?)\s*-->\s*$")
_UNSAFE = re.compile(r"^\s*(make|sudo)\b|\bpytest\b|\bblockstore\s+(bench|stress)\b"
                     r"|tools/(bench|stress)\.py")
_TMP = re.compile(r"(?<![\w./-])/tmp/")


@dataclasses.dataclass
class Block:
    lang: str
    line: int                 # 1-based line of the opening fence
    code: str
    skip: str | None = None   # the reason, when marked skip
    before: list = dataclasses.field(default_factory=list)
    prelude: str = ""         # python: the block this one continues


def parse(text: str) -> list[Block]:
    """The fenced blocks of a markdown text with their markers."""
    lines = text.splitlines()
    blocks, markers, i = [], [], 0
    while i < len(lines):
        ln = lines[i]
        m = _MARKER.match(ln.strip())
        if m:
            markers.append(m.group(1))
            i += 1
            continue
        f = _FENCE.match(ln)
        if f is None:
            if ln.strip():
                markers = []          # a marker belongs to the block right after it
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1                        # the closing fence
        b = Block(f.group(1), start + 1, "\n".join(body) + "\n")
        for mk in markers:
            if mk.startswith("skip"):
                reason = mk[4:].strip().strip("()").strip()
                if not reason:
                    raise ValueError(f"README.md:{start}: readme-test skip needs a (reason)")
                b.skip = reason
            elif mk.startswith("before:"):
                b.before.append(mk[len("before:"):].strip())
            else:
                raise ValueError(f"README.md:{start}: unknown readme-test marker {mk!r}")
        markers = []
        blocks.append(b)
    last_py = None
    for b in blocks:
        if b.lang != "python":
            continue
        first = next((l for l in b.code.splitlines() if l.strip()), "")
        if first[:1].isspace() and last_py is not None:
            b.prelude = last_py.prelude + last_py.code
        last_py = b
    return [b for b in blocks if b.lang in LANGS]


def _runnable_sh(code: str) -> str:
    return "\n".join(l for l in code.splitlines() if not _UNSAFE.search(l))


def _blocks() -> list:
    with open(README, encoding="utf-8") as f:
        return [pytest.param(b, id=f"{b.lang}-line{b.line}") for b in parse(f.read())]


@pytest.mark.parametrize("block", _blocks())
def test_readme_block_runs_as_written(block: Block, tmp_path):
    if block.skip:
        pytest.skip(f"README.md:{block.line}: {block.skip}")
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, BLOCKSTORE_STORE=str(tmp_path / "store"), HOME=str(tmp_path),
               PATH=BIN + os.pathsep + os.environ.get("PATH", ""), TMPDIR=str(tmp_path))
    env.pop("BLOCKSTORE_DEBUG", None)
    here = lambda s: _TMP.sub(str(tmp_path) + "/", s)  # noqa: E731
    for cmd in block.before:
        _run(["bash", "-e", "-c", here(cmd)], work, env, f"before: {cmd}")
    if block.lang == "python":
        _run([sys.executable, "-c", here(block.prelude + block.code)], work, env, block.code)
    else:
        code = _runnable_sh(block.code)
        if not code.strip():
            pytest.skip(f"README.md:{block.line}: no line of this block is safe to run here")
        _run(["bash", "-e", "-o", "pipefail", "-c", here(code)], work, env, code)


def _run(argv, cwd, env, what: str) -> None:
    try:
        r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                           timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"README block ran longer than {TIMEOUT} s:\n{what}\n{exc.stdout or ''}"
                    f"{exc.stderr or ''}")
    assert r.returncode == 0, (f"README block failed with exit code {r.returncode}:\n{what}\n"
                               f"--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}")


# -- the parser itself ---------------------------------------------------------------------
SAMPLE = """\
# t

```sh
make demo
blockstore ls
```

<!-- readme-test: skip (needs a FUSE mount) -->

```sh
blockstore mount web /mnt/web
```

<!-- readme-test: before: mkdir rootfs -->
```python
with open("/tmp/x", "w") as f:
```
text
```python
    f.write("y")
```
```json
{}
```
"""


def test_parser_reads_blocks_markers_and_continuations():
    bs = parse(SAMPLE)
    assert [(b.lang, b.line) for b in bs] == [("sh", 3), ("sh", 10), ("python", 15),
                                              ("python", 19)]
    assert bs[0].skip is None and _runnable_sh(bs[0].code) == "blockstore ls"
    assert bs[1].skip == "needs a FUSE mount"
    assert bs[2].before == ["mkdir rootfs"] and bs[2].prelude == ""
    assert bs[3].prelude == bs[2].code and bs[3].before == []
    assert _TMP.sub("/T/", 'open("/tmp/x") /var/tmp/y') == 'open("/T/x") /var/tmp/y'
    with pytest.raises(ValueError, match="needs a"):
        parse("<!-- readme-test: skip -->\n```sh\nls\n```\n")
