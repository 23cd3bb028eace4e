"""Layer 7, api: the ``Store`` facade that every interface builds on."""
from .location import default_store_path

__all__ = ["Store", "default_store_path"]


def __getattr__(name: str):
    # ``Store`` loads every storage layer: only when asked for (the CLI's
    # --help/--version and the light api modules need none of it).
    if name == "Store":
        from .store import Store
        return Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
