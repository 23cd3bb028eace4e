"""Where a store lives by default: no import of the storage layers, so
that commands which only need the path (``blockstore --help``,
``--version``) start without loading them."""
from __future__ import annotations

import os


def default_store_path() -> str:
    """$BLOCKSTORE_STORE, else a per-user data directory."""
    env = os.environ.get("BLOCKSTORE_STORE")
    if env:
        return env
    import platformdirs
    return os.path.join(platformdirs.user_data_dir("blockstore"), "store")
