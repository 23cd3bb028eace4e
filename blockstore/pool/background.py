"""One background thread per purpose and process, for work a writer hands off.

The pool hashes handed-over buffers (``sums``) and submits writeback hints
(``datafile``) off the writer's thread.  Each purpose gets one thread per
process, shared by every open pool (a store opened and closed many times
must not leave a thread behind each time), and a forked child gets its own
(the parent's thread does not exist there).  Work on one thread runs in
submission order: when the newest item is done, all earlier ones are.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

_threads: dict[str, tuple[int, ThreadPoolExecutor]] = {}
_lock = threading.Lock()


def executor(name: str) -> ThreadPoolExecutor:
    """The process's single-thread executor for ``name`` (its thread: blockstore-NAME)."""
    with _lock:
        got = _threads.get(name)
        if got is None or got[0] != os.getpid():        # none yet, or the parent's
            got = _threads[name] = (os.getpid(),
                                    ThreadPoolExecutor(1, thread_name_prefix=f"blockstore-{name}"))
        return got[1]
