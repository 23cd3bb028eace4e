"""Interfaces over the Store API that hold no storage logic of their own.

``fsspec_fs``: the ``blockstore://`` fsspec filesystem (registered through
the ``fsspec.specs`` entry point in pyproject.toml).
"""
