"""Layer 7, api: the ``Store`` facade that every interface builds on."""
from .store import Store, default_store_path

__all__ = ["Store", "default_store_path"]
