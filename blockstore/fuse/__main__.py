"""``python -m blockstore.fuse [--ready-fd FD] [--opts JSON] STORE NAME MOUNTPOINT``:
the mount daemon (started by ``blockstore.fuse.mount``; see daemon.py)."""
import logging
import os
import sys

from .daemon import main

code = main()
# The store is closed and the mount's files are removed by now: skip the
# interpreter's teardown (module and thread cleanup), which ``umount`` waits for.
logging.shutdown()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
