"""Shared pytest fixtures. Keep fixtures here small and layer-neutral."""

import pathlib

import pytest

import blockstore  # noqa: F401  (fail fast if the package does not import)


@pytest.fixture
def tmp_store_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """Path for a new store; the directory itself does not exist yet."""
    return tmp_path / "store"
