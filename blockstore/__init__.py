"""blockstore: a userspace copy-on-write snapshot store for file trees.

See docs/ARCHITECTURE.md §2 for the layering: native -> pool -> txn -> btree -> fs ->
catalog -> api -> interfaces. Public exports are added by the api layer.
"""

__version__ = "0.1.0"

from . import errors  # noqa: E402
from .api.location import default_store_path  # noqa: E402


def __getattr__(name: str):
    # ``Store`` on first use: importing the package (the CLI's start) does
    # not load the storage layers.
    if name == "Store":
        from .api.store import Store
        return Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


from . import remote as _remote  # noqa: E402,F401  (registers the remote tier with the API;
#   light: boto3 loads on first use)

__all__ = ["Store", "default_store_path", "errors", "__version__"]
