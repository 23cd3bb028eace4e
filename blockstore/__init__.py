"""blockstore: a userspace copy-on-write snapshot store for file trees.

See docs/ARCHITECTURE.md §2 for the layering: native -> pool -> txn -> btree -> fs ->
catalog -> api -> interfaces. Public exports are added by the api layer.
"""

__version__ = "0.1.0"

from .api import Store, default_store_path  # noqa: E402
from . import errors  # noqa: E402
from . import remote as _remote  # noqa: E402,F401  (registers the remote tier with the API)

__all__ = ["Store", "default_store_path", "errors", "__version__"]
