"""Where a store lives by default: no import of the storage layers, so
that commands which only need the path (``blockstore --help``,
``--version``) start without loading them."""
from __future__ import annotations

import os
import sys


def default_store_path() -> str:
    """$BLOCKSTORE_STORE, else a per-user data directory (platformdirs'
    ``user_data_dir``; on Linux computed here as it does: $XDG_DATA_HOME or
    ~/.local/share, without importing it at every start)."""
    env = os.environ.get("BLOCKSTORE_STORE")
    if env:
        return env
    if sys.platform.startswith("linux"):
        base = os.environ.get("XDG_DATA_HOME", "").strip() or os.path.expanduser("~/.local/share")
        return os.path.join(base, "blockstore", "store")
    import platformdirs
    return os.path.join(platformdirs.user_data_dir("blockstore"), "store")
