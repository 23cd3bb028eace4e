#!/usr/bin/env python3
"""The blockstore demo (`make demo`): the CLI quick start as a shell transcript.

    tools/demo.py [--store PATH] [--keep]

On a fresh temporary store (or --store PATH), runs the installed
`blockstore` console script and echoes every command: build a sample
directory, import it, clone it, write a file into the clone from the host,
commit (which prints a one-line summary), diff, export the change as an OCI layer tar
(or, when this installation has no layer export, the tree to a directory),
then du, df and check.  Exits non-zero as soon as any command fails.
The temporary store is removed at the end unless --keep.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

UNSUPPORTED = 12        # blockstore's exit code for Unsupported (docs/ERRORS.md)


def find_cli() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "blockstore")
    exe = here if os.path.exists(here) else shutil.which("blockstore")
    if not exe:
        sys.exit("demo: the `blockstore` command is not installed; run `make setup` first")
    return exe


class Shell:
    def __init__(self, exe: str, store: str, cwd: str):
        self.exe, self.store, self.cwd = exe, store, cwd

    def run(self, *args: str, ok=(0,)) -> int:
        print(f"$ blockstore {' '.join(shlex.quote(a) for a in args)}", flush=True)
        rc = subprocess.call([self.exe, *args], cwd=self.cwd,
                             env=dict(os.environ, BLOCKSTORE_STORE=self.store))
        if rc not in ok:
            print(f"demo: `blockstore {' '.join(args)}` failed with exit code {rc}",
                  file=sys.stderr)
            sys.exit(rc or 1)
        print(flush=True)
        return rc


def sample(root: str) -> None:
    """A small app tree: config, a script, a 1 MiB binary-ish file, a symlink."""
    os.makedirs(os.path.join(root, "etc"))
    os.makedirs(os.path.join(root, "bin"))
    with open(os.path.join(root, "etc", "app.conf"), "w") as f:
        f.write("greeting = hello\nworkers = 2\n")
    with open(os.path.join(root, "bin", "app"), "w") as f:
        f.write("#!/bin/sh\necho \"$(cat /etc/app.conf)\"\n")
    os.chmod(os.path.join(root, "bin", "app"), 0o755)
    with open(os.path.join(root, "bin", "data.bin"), "wb") as f:
        f.write(bytes(range(256)) * 4096)
    os.symlink("bin/app", os.path.join(root, "run"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", help="use this store (default: a fresh temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the temporary store and files")
    args = p.parse_args(argv)
    exe = find_cli()
    work = tempfile.mkdtemp(prefix="blockstore-demo-")
    store = os.path.abspath(args.store) if args.store else os.path.join(work, "store")
    print(f"# store: {store}\n# working directory: {work}\n", flush=True)
    try:
        sample(os.path.join(work, "myapp"))
        with open(os.path.join(work, "app.conf"), "w") as f:
            f.write("greeting = hello, blockstore\nworkers = 8\n")
        print("# a sample directory ./myapp and a changed ./app.conf on the host\n")
        sh = Shell(exe, store, work)
        sh.run("import", "myapp", "app-v1")
        sh.run("clone", "app-v1", "work")
        sh.run("cp", "app.conf", "work:/etc/app.conf")
        sh.run("commit", "work", "app-v2")
        sh.run("diff", "app-v1", "app-v2")
        rc = sh.run("export", "app-v2", "layer.tar", "--from", "app-v1", ok=(0, UNSUPPORTED))
        if rc == UNSUPPORTED:
            print("# no layer export in this installation: exporting the tree instead\n")
            sh.run("export", "app-v2", "app-v2-tree")
        else:
            import tarfile
            with tarfile.open(os.path.join(work, "layer.tar")) as t:
                print("# layer.tar holds: " + ", ".join(m.name for m in t.getmembers()) + "\n")
        sh.run("cat", "app-v2:/etc/app.conf")
        sh.run("ls")
        sh.run("du")
        sh.run("df")
        sh.run("check")
        print("# demo ok")
        return 0
    finally:
        if args.keep:
            print(f"# kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
