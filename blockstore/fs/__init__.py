"""Filesystem layer: POSIX trees as items in engine trees (see items.py)."""
