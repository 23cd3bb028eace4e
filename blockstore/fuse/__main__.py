"""``python -m blockstore.fuse [--ready-fd FD] [--opts JSON] STORE NAME MOUNTPOINT``:
the mount daemon (started by ``blockstore.fuse.mount``; see daemon.py)."""
import sys

from .daemon import main

sys.exit(main())
