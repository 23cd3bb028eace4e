"""Image archive or layer: told apart after decompression (issue 16 item 2).

A compressed ``docker save`` tarball or OCI layout tar imports as an image
(a chain of snapshots), never as one layer holding ``manifest.json`` and the
layer tars as files; an archive that could be either is refused with a hint
and imports with ``--format`` or ``--parent``."""
from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess

import pytest

from blockstore import Store
from blockstore.errors import InvalidInput
from blockstore.oci import import_image

import _hostile as H
import oci_ref as R

L1 = R.layer([("a", "f", "one"), ("d/", "d")])
L2 = R.layer([("d/b", "f", "two"), (".wh.a", "f", "")])


def _compress(data: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(data)
    import zstandard
    return zstandard.ZstdCompressor().compress(data)


@pytest.fixture
def cli_store(tmp_path):
    path = tmp_path / "cs"
    with Store.open(path) as s:
        import_image(s, io.BytesIO(R.layer([("etc/", "d")])), "base")
    return path


def _tree(store_path, name) -> dict:
    with Store.open(store_path) as s, s.fs(name) as fs:
        return {p: fs.read_bytes(p) for p in ("/d/b",) if fs.exists(p)} | {
            "top": sorted(fs.listdir("/"))}


@pytest.mark.parametrize("how", ["gzip", "zstd"])
@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_compressed_image_archive_imports_as_image(cli_store, tmp_path, how, fmt):
    data = R.docker_archive([L1, L2]) if fmt == "docker" else R.oci_layout_tar([L1, L2])
    p = tmp_path / f"image.{fmt}.tar.{'gz' if how == 'gzip' else 'zst'}"
    p.write_bytes(_compress(data, how))
    store_files = sorted(os.listdir(cli_store))
    r = H.run(cli_store, "import", p, "img")
    assert r.returncode == 0, r.stderr
    assert _tree(cli_store, "img") == {"/d/b": b"two", "top": ["d"]}
    with Store.open(cli_store) as s:
        top = s.info("img").parent                                   # one snapshot per layer
        assert top.startswith("sha256:") and s.info(top).parent.startswith("sha256:")
        assert sum(t.name.startswith("sha256:") for t in s.list()) == 2
        assert s.check().ok
    assert sorted(os.listdir(cli_store)) == store_files               # the temporary file is gone


def test_compressed_image_same_as_uncompressed(store, tmp_path):
    data = R.docker_archive([L1, L2])
    (tmp_path / "plain.tar").write_bytes(data)
    (tmp_path / "packed.tar.gz").write_bytes(gzip.compress(data))
    a = import_image(store, str(tmp_path / "plain.tar"), "a")
    b = import_image(store, str(tmp_path / "packed.tar.gz"), "b")
    assert a.parent == b.parent                                      # the same layer chain


AMBIGUOUS = R.layer([("manifest.json", "f", "[]"), ("etc/", "d"), ("etc/x", "f", "x")])


@pytest.mark.parametrize("how", ["plain", "gzip"])
def test_ambiguous_archive_is_refused_with_a_hint(cli_store, tmp_path, how):
    p = tmp_path / "amb.tar"
    p.write_bytes(AMBIGUOUS if how == "plain" else gzip.compress(AMBIGUOUS))
    H.refused(cli_store, [p, "new"], r"cannot tell whether amb.tar is an image archive or a "
              r"layer: it holds manifest.json .* 'etc/' like a layer; say which with --format")
    r = H.run(cli_store, "import", "--format", "layer", p, "as-layer")
    assert r.returncode == 0, r.stderr
    r = H.run(cli_store, "import", p, "on-base", "--parent", "base")
    assert r.returncode == 0, r.stderr
    for name in ("as-layer", "on-base"):
        with Store.open(cli_store) as s, s.fs(name) as fs:
            assert fs.read_bytes("/manifest.json") == b"[]"
            assert fs.read_bytes("/etc/x") == b"x"


def test_format_image_on_a_layer_is_refused(store, tmp_path):
    p = tmp_path / "l.tar.gz"
    p.write_bytes(gzip.compress(L1))
    with pytest.raises(InvalidInput, match="not an image archive"):
        import_image(store, str(p), "x", format="image")
    assert [t.name for t in store.list()] == []


@pytest.mark.parametrize("entries", [
    [("etc/", "d"), ("manifest.json", "f", "[]")],          # decided at the first member
    [("app.py", "f", "print()"), ("lib/", "d"), ("lib/x", "f", "x")],   # decided late
    [("index.json", "f", "{}"), ("notes", "f", "n")],       # image-like names, no markers
], ids=["dir-first", "file-first", "no-markers"])
def test_compressed_layers_stay_layers(store, tmp_path, entries):
    p = tmp_path / "l.tar.gz"
    data = R.layer(entries)
    p.write_bytes(gzip.compress(data))
    import_image(store, str(p), "l")
    with store.fs("l") as fs:
        for e in entries:
            if e[1] == "f":
                assert fs.read_bytes("/" + e[0]) == e[2].encode()
    assert store.info("l").labels["oci.diff_id"].startswith("sha256:")


@pytest.mark.skipif(any(shutil.which(t) is None for t in ("umoci", "skopeo"))
                    or os.geteuid() != 0, reason="needs root, umoci and skopeo (`make setup`)")
@pytest.mark.parametrize("how", ["gzip", "zstd"])
def test_compressed_skopeo_docker_archive(cli_store, tmp_path, how):
    """A docker archive as skopeo writes it (layer tars reached through symlinks)."""
    L, B, D = tmp_path / "layout", tmp_path / "bundle", tmp_path / "d.tar"
    for cmd in (["umoci", "init", "--layout", L], ["umoci", "new", "--image", f"{L}:t"],
                ["umoci", "unpack", "--image", f"{L}:t", B]):
        subprocess.run(cmd, check=True, capture_output=True)
    (B / "rootfs" / "etc").mkdir()
    (B / "rootfs" / "etc" / "x").write_text("hi\n")
    for cmd in (["umoci", "repack", "--image", f"{L}:t", B],
                ["skopeo", "copy", "-q", f"oci:{L}:t", f"docker-archive:{D}:x/y:1"]):
        subprocess.run(cmd, check=True, capture_output=True)
    p = tmp_path / f"d.tar.{how}"
    p.write_bytes(_compress(D.read_bytes(), how))
    r = H.run(cli_store, "import", f"{p}:1", "img")
    assert r.returncode == 0, r.stderr
    with Store.open(cli_store) as s, s.fs("img") as fs:
        assert fs.read_bytes("/etc/x") == b"hi\n"
        assert sorted(fs.listdir("/")) == ["etc"]


def test_layer_of_top_level_files_with_a_manifest_gets_a_hint(cli_store, tmp_path):
    """Only top-level files, one named manifest.json: read as a docker archive;
    when that fails the message says how to import it as a layer."""
    p = tmp_path / "files.tar"
    p.write_bytes(R.layer([("manifest.json", "f", '{"app": 1}'), ("app", "f", "x")]))
    H.refused(cli_store, [p, "new"], r"malformed manifest.json.*if files.tar is a layer tar, "
              r"import it with --format layer")
    r = H.run(cli_store, "import", "--format", "layer", p, "new")
    assert r.returncode == 0, r.stderr
