"""Warming a spare's mount (blockstore/snapshotter/warm.py): paths resolve
inside the given root whatever the image's symlinks say, and only bounded
reads are done.  Plain directories: no FUSE needed."""
from __future__ import annotations

import os

from blockstore.snapshotter import warm


def test_symlinks_resolve_inside_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "usr/lib64").mkdir(parents=True)
    (root / "usr/lib64/ld.so").write_bytes(b"in the image")
    os.symlink("/usr/lib64", root / "lib64")                    # absolute: the image's /
    os.symlink("../../../../../../usr/lib64/ld.so", root / "usr/lib64/up")  # .. above /
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    assert warm._resolve(str(root), "lib64/ld.so") == str(root / "usr/lib64/ld.so")
    assert warm._resolve(str(root), "lib64/up") == str(root / "usr/lib64/ld.so")
    assert warm._resolve(str(root), "loop1") is None
    assert warm._resolve(str(root), "etc/missing") is None


def test_warm_reads_the_image_files_only_and_bounded(tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (root / "etc").mkdir()
    os.symlink("usr/lib", root / "lib")
    (root / "usr/lib/x86_64-linux-gnu/libc.so.6").write_bytes(b"x" * 5000)
    (root / "etc/ld.so.cache").write_bytes(b"c" * 100)
    os.symlink("/etc/passwd", root / "etc/passwd")               # the image's: missing there
    os.mkfifo(root / "etc/hosts")                                 # not a file: not read
    monkeypatch.setattr(warm, "MAX_FILE", 4096)
    monkeypatch.setattr(warm, "CHUNK", 1024)
    assert warm.warm(str(root)) == 4096 + 100
