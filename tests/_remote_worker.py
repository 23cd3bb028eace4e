"""A second host for the remote tests: ``python _remote_worker.py CMD STORE ...``
in its own process (its own store, its own S3 client; AWS variables from
the environment).  Prints one JSON document.

    pull STORE REMOTE URL ENDPOINT NAME [lazy]   pull NAME, print stats, trees, check
    push STORE NAME...                           push (remote already added), progress on stderr;
                                                 BLOCKSTORE_TEST_KILL_AT_PUT=K: SIGKILL itself
                                                 before its K-th upload
    pull-crash STORE REMOTE URL ENDPOINT NAME K  eager pull NAME, the process dying (os._exit)
                                                 right after its K-th commit; blocks are
                                                 recorded every 64 (a crash mid-pull)
"""
from __future__ import annotations

import hashlib
import json
import os
import stat as S
import sys

import blockstore


def tree_manifest(store, name: str) -> dict:
    """path -> [mode, uid, gid, nlink, size, mtime_ns, rdev, content sha256 or link, xattrs]."""
    out = {}
    with store.fs(name) as f:
        for top, dirs, files in f.walk("/"):
            for n in [None] + sorted(dirs + files):
                p = top if n is None else (top.rstrip("/") + "/" + n)
                if n is None and top != "/":
                    continue
                st = f.lstat(p)
                if S.S_ISREG(st.st_mode):
                    with f.open(p, "rb") as fh:
                        content = hashlib.sha256(fh.read()).hexdigest()
                elif S.S_ISLNK(st.st_mode):
                    content = f.readlink(p)
                else:
                    content = None
                xa = sorted((k, f.getxattr(p, k, follow_symlinks=False).hex())
                            for k in f.listxattr(p, follow_symlinks=False))
                out[p] = [st.st_mode, st.st_uid, st.st_gid, st.st_nlink, st.st_size,
                          st.st_mtime_ns, st.st_rdev, content, xa]
    return out


def main(argv):
    cmd, path = argv[0], argv[1]
    with blockstore.Store.open(path) as s:
        if cmd == "pull":
            remote, url, endpoint, name = argv[2:6]
            lazy = len(argv) > 6 and argv[6] == "lazy"
            if remote not in s.remotes():
                s.remote_add(remote, url, endpoint)
            stats = s.pull(name, remote, lazy=lazy)
            trees = {n: tree_manifest(s, n) for n in s.lineage(name)}
            print(json.dumps({"stats": stats, "trees": trees, "check": s.check().ok}))
        elif cmd == "pull-crash":
            from blockstore import failpoints
            from blockstore.remote import pull as P
            remote, url, endpoint, name, k = argv[2:7]
            s.remote_add(remote, url, endpoint)
            P.RECORD_BLOCKS = P.FILL_BATCH = 64
            P.FILL_RANGE = 64 * s.block_size
            hits = [0]

            def crash(point):
                if point == "commit.after_lmdb":
                    hits[0] += 1
                    if hits[0] == int(k):
                        os._exit(17)
            failpoints.set_counter(crash)
            s.pull(name, remote, threads=1)        # one range per commit
            print(json.dumps({"finished": True}))
        elif cmd == "push":
            kill_at = int(os.environ.get("BLOCKSTORE_TEST_KILL_AT_PUT", "0"))
            if kill_at:
                import signal
                from blockstore import failpoints
                hits = [0]

                def kill(point):
                    if point == "remote.before_put":
                        hits[0] += 1
                        if hits[0] == kill_at:
                            os.kill(os.getpid(), signal.SIGKILL)
                failpoints.set_counter(kill)
            stats = s.push(argv[2:], progress=lambda m: print(m, file=sys.stderr, flush=True))
            print(json.dumps(stats))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(__file__))
    main(sys.argv[1:])
