"""Names that are OCI markers cannot be exported as a tar (issue 15 item 11).

A file named ``.wh.keep`` or ``etc/.wh..wh..opq`` in a tree would come back
from a tar as a whiteout (deleting instead of creating): every tar export
(whole tree, ``--from`` layer, image) refuses it, naming the path, before it
writes anything."""
from __future__ import annotations

import io

import pytest

import _hostile as H
from blockstore import Store
from blockstore.errors import InvalidInput
from blockstore.oci import export_image, export_tar

MARKERS = ["/.wh.keep", "/etc/.wh..wh..opq", "/etc/.wh.passwd"]


def _tree_with(store, path: str) -> None:
    store.create("c")
    with store.fs("c") as fs:
        fs.makedirs("/etc", exist_ok=True)
        fs.write_bytes("/etc/ok", b"ok")
    store.snapshot("c", "base")
    with store.fs("c") as fs:
        fs.write_bytes(path, b"data")
    store.snapshot("c", "marked")


@pytest.mark.parametrize("path", MARKERS)
def test_full_tar_refuses_marker_names(store, tmp_path, path):
    _tree_with(store, path)
    out = tmp_path / "t.tar"
    with pytest.raises(InvalidInput, match=rf"'{path.replace('.', '[.]')}' has a name starting "
                                            r"with '\.wh\.'"):
        export_tar(store, "marked", str(out))
    assert not out.exists()
    export_tar(store, "base", io.BytesIO())                  # a tree without one exports


@pytest.mark.parametrize("path", MARKERS)
def test_layer_and_image_refuse_marker_names(store, tmp_path, path):
    _tree_with(store, path)
    out = tmp_path / "l.tar"
    with pytest.raises(InvalidInput, match=r"starting with '\.wh\.'"):
        export_tar(store, "marked", str(out), parent="base")
    assert not out.exists()
    with pytest.raises(InvalidInput, match=r"starting with '\.wh\.'"):
        export_image(store, "marked", str(tmp_path / "img"))


def test_cli_export_refuses_with_exit_9(tmp_path):
    path = tmp_path / "s"
    with Store.open(path) as s:
        _tree_with(s, "/etc/.wh..wh..opq")
    r = H.run(path, "export", "marked", tmp_path / "x.tar")
    assert r.returncode == 9, r.stderr
    assert b"'/etc/.wh..wh..opq' has a name starting with '.wh.'" in r.stderr
    assert not (tmp_path / "x.tar").exists()
