"""Layer 1 (native): the C kernels and their pure-Python twin agree.

Every property is checked against `pure` (hashlib / bytes / os calls) and,
when the extension is built, against the native functions too.
"""

import array
import errno
import hashlib
import os
import subprocess
import sys

import pytest
import xxhash
from hypothesis import given, settings, strategies as st

from blockstore import native
from blockstore.native import pure

IMPLS = [pytest.param(pure, id="pure")]
IMPLS.append(
    pytest.param(
        native.NATIVE,
        id="native",
        marks=pytest.mark.skipif(
            native.NATIVE is None,
            reason=f"native extension not built: {native.NATIVE_ERROR}",
        ),
    )
)
needs_native = pytest.mark.skipif(
    native.NATIVE is None, reason=f"native extension not built: {native.NATIVE_ERROR}"
)

block_sizes = st.one_of(
    st.integers(1, 64),
    st.sampled_from([512, 4096, 4097, 65536]),
    st.integers(1, 65536),
)


@st.composite
def block_data(draw):
    """Data of up to a few blocks: random, zero and repeated chunks.

    Large inputs are built by repeating a small drawn pattern, because big
    st.binary() examples trip Hypothesis' health checks.
    """
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["bytes", "zeros", "repeat"]))
        if kind == "bytes":
            parts.append(draw(st.binary(max_size=300)))
        elif kind == "zeros":
            parts.append(bytes(draw(st.integers(1, 140_000))))
        else:
            pattern = draw(st.binary(min_size=1, max_size=64))
            parts.append(pattern * draw(st.integers(1, 3000)))
    return b"".join(parts)


def _assert_twins_give(expected, name: str, *args) -> None:
    """The pure twin, and the native kernel when built, return ``expected``."""
    assert getattr(pure, name)(*args) == expected
    if native.NATIVE is not None:
        assert getattr(native.NATIVE, name)(*args) == expected


def reference_sha256(data: bytes, bs: int) -> bytes:
    return b"".join(hashlib.sha256(data[o : o + bs]).digest() for o in range(0, len(data), bs))


def reference_xxh128(data: bytes, bs: int) -> bytes:
    """Canonical (big-endian) XXH3-128 per block, built from the integer digest so
    that the byte order is checked too, not just taken from the same call."""
    return b"".join(xxhash.xxh3_128_intdigest(data[o : o + bs]).to_bytes(16, "big")
                    for o in range(0, len(data), bs))


def reference_zero_flags(data: bytes, bs: int) -> bytes:
    return bytes(int(not any(data[o : o + bs])) for o in range(0, len(data), bs))


# ---------------------------------------------------------------- selection


def test_implementation_is_native_when_built():
    if os.environ.get("BLOCKSTORE_PURE") == "1":
        assert native.IMPLEMENTATION == "pure"
    elif native.NATIVE is None:
        pytest.skip(f"native extension not built: {native.NATIVE_ERROR}")
    else:
        assert native.IMPLEMENTATION == "native"
        assert native.sha256_many is native.NATIVE.sha256_many


def test_blockstore_pure_env_selects_pure():
    code = "import blockstore.native as n; print(n.IMPLEMENTATION)"
    env = dict(os.environ, BLOCKSTORE_PURE="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "pure"


# ------------------------------------------------------------------- sha256


@settings(max_examples=150, deadline=None)
@given(data=block_data(), bs=block_sizes)
def test_sha256_many_matches_hashlib(data, bs):
    expected = reference_sha256(data, bs)
    _assert_twins_give(expected, "sha256_many", data, bs)
    if native.NATIVE is not None:
        assert native.NATIVE.sha256_many(data, bs, 1) == expected
        assert native.NATIVE.sha256_many(data, bs, 3) == expected


@pytest.mark.parametrize("impl", IMPLS)
def test_sha256_many_edges(impl):
    assert impl.sha256_many(b"", 4096) == b""
    assert impl.sha256_many(b"abc", 4096) == hashlib.sha256(b"abc").digest()
    # partial last block
    data = bytes(range(256)) * 33
    assert impl.sha256_many(data, 1000) == reference_sha256(data, 1000)
    for bad in (0, -1):
        with pytest.raises(ValueError):
            impl.sha256_many(b"x", bad)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kernel", ["sha256_many", "xxh128_many"])
def test_hash_many_accepts_buffers(impl, kernel):
    fn = getattr(impl, kernel)
    ref = reference_sha256 if kernel == "sha256_many" else reference_xxh128
    data = os.urandom(10_000)
    expected = ref(data, 4096)
    assert fn(bytearray(data), 4096) == expected
    assert fn(memoryview(data)[:], 4096) == expected
    assert fn(memoryview(data)[100:5000], 4096) == ref(data[100:5000], 4096)
    words = array.array("I", data[:8000])
    assert fn(words, 4096) == ref(data[:8000], 4096)


@needs_native
@pytest.mark.parametrize("threads", [0, 1, 2, 3, 8, 64])
def test_native_sha256_threads_large(threads):
    # >= 1 MiB and >= 4 blocks: the automatic mode goes parallel
    data = os.urandom(65536) * 40 + b"tail"
    expected = reference_sha256(data, 65536)
    assert native.NATIVE.sha256_many(data, 65536, threads) == expected
    # uneven split: more threads than a multiple of the block count
    assert native.NATIVE.sha256_many(data, 300_001, threads) == reference_sha256(data, 300_001)


def _cpu_flags() -> set:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


@needs_native
def test_multi_buffer_sha256_is_used_where_built():
    # make setup installs libipsec-mb-dev; built against it on an x86-64 CPU with
    # AES-NI and AVX2, every thread hashes through the multi-buffer path
    if not os.path.exists("/usr/include/intel-ipsec-mb.h") or not {"aes", "avx2"} <= _cpu_flags():
        pytest.skip("built without libipsec-mb, or a CPU it does not run on")
    from blockstore.native import _ffi, _lib
    assert _ffi.string(_lib.bk_sha256_impl()) == b"ipsec-mb"


@needs_native
@settings(max_examples=100, deadline=None)
@given(data=block_data(), bs=st.one_of(st.integers(1, 64), st.sampled_from([4096, 4097, 32768])))
def test_multi_buffer_sha256_matches_hashlib(data, bs):
    from blockstore.native import _ffi, _lib
    out = bytearray(-(-len(data) // bs) * 32)
    rc = _lib.bk_sha256_mb(_ffi.from_buffer("uint8_t[]", data), len(data), bs,
                           _ffi.from_buffer("uint8_t[]", out))
    if rc == -errno.ENOTSUP:
        pytest.skip("no multi-buffer SHA-256 in this build or on this CPU")
    assert rc == 0
    assert bytes(out) == reference_sha256(data, bs)


@needs_native
def test_sha256_many_from_many_threads_at_once():
    # the multi-buffer managers are shared between threads (a pool): every
    # thread, also bk_sha256_many's own helpers, must get digests of its own data
    import concurrent.futures as cf
    datas = [os.urandom(4096 * 300 + i) for i in range(8)]
    want = [reference_sha256(d, 4096) for d in datas]

    def work(i):
        return all(native.NATIVE.sha256_many(datas[i], 4096, (0, 1, 3)[n % 3]) == want[i]
                   for n in range(30))
    with cf.ThreadPoolExecutor(8) as ex:
        assert all(ex.map(work, range(8)))


@needs_native
def test_multi_buffer_sha256_leaves_large_blocks_to_libcrypto():
    from blockstore.native import _ffi, _lib
    data = os.urandom(65536 * 3)
    out = bytearray(3 * 32)
    assert _lib.bk_sha256_mb(_ffi.from_buffer("uint8_t[]", data), len(data), 65536,
                             _ffi.from_buffer("uint8_t[]", out)) == -errno.ENOTSUP
    assert native.NATIVE.sha256_many(data, 65536, 1) == reference_sha256(data, 65536)


# ----------------------------------------------------------------- xxh3-128


@settings(max_examples=150, deadline=None)
@given(data=block_data(), bs=block_sizes)
def test_xxh128_many_native_matches_pure(data, bs):
    expected = reference_xxh128(data, bs)
    _assert_twins_give(expected, "xxh128_many", data, bs)


@pytest.mark.parametrize("impl", IMPLS)
def test_xxh128_many_known_answers(impl):
    # XXH3_128bits (xxHash 0.8, seed 0), canonical form: high 64 bits first
    assert impl.xxh128_many(b"", 4096) == b""
    assert impl.xxh128_many(b"", 1) == b""
    assert impl.xxh128_many(b"abc", 4096).hex() == "06b05ab6733a618578af5f94892f3950"
    assert impl.xxh128_many(bytes(4096), 4096).hex() == "3ee8dc4f9e7ee49593d76fe148c689ba"
    # a short last block is hashed as is (as sha256_many): 4096 zero bytes, then "abc"
    assert impl.xxh128_many(bytes(4096) + b"abc", 4096).hex() == \
        "3ee8dc4f9e7ee49593d76fe148c689ba" "06b05ab6733a618578af5f94892f3950"
    for bad in (0, -1):
        with pytest.raises(ValueError):
            impl.xxh128_many(b"x", bad)


# --------------------------------------------------------------- zero flags


@settings(max_examples=150, deadline=None)
@given(data=block_data(), bs=block_sizes)
def test_zero_flags_matches_reference(data, bs):
    expected = reference_zero_flags(data, bs)
    _assert_twins_give(expected, "zero_flags", data, bs)


@settings(max_examples=100, deadline=None)
@given(
    bs=st.sampled_from([1, 7, 16, 255, 256, 257, 4096, 65536]),
    nblocks=st.integers(1, 5),
    pos=st.integers(0, 10**9),
    byte=st.integers(1, 255),
)
def test_zero_flags_single_nonzero_byte_anywhere(bs, nblocks, pos, byte):
    buf = bytearray(bs * nblocks)
    pos %= len(buf)
    buf[pos] = byte
    expected = bytes(int(i != pos // bs) for i in range(nblocks))
    _assert_twins_give(expected, "zero_flags", buf, bs)


@pytest.mark.parametrize("impl", IMPLS)
def test_zero_flags_edges(impl):
    assert impl.zero_flags(b"", 4096) == b""
    assert impl.zero_flags(bytes(10), 4) == b"\x01\x01\x01"
    assert impl.zero_flags(bytes(8) + b"\x00\x01", 4) == b"\x01\x01\x00"
    with pytest.raises(ValueError):
        impl.zero_flags(b"x", 0)


# --------------------------------------------------------------- copy range


def _file(path, content: bytes):
    path.write_bytes(content)
    return os.open(path, os.O_RDWR)


@pytest.fixture
def two_files(tmp_path):
    fds = []

    def make(src: bytes, dst: bytes):
        fds.extend([_file(tmp_path / "src", src), _file(tmp_path / "dst", dst)])
        return fds[-2], fds[-1]

    yield make
    for fd in fds:
        os.close(fd)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "src_len,src_off,dst_len,dst_off,length",
    [
        (0, 0, 0, 0, 0),
        (0, 0, 0, 0, 100),  # empty source: nothing copied
        (10_000, 0, 0, 0, 10_000),
        (10_000, 123, 50, 7_000, 5_000),  # dst extended past its end
        (10_000, 9_000, 20_000, 3, 5_000),  # short source
        (10_000, 20_000, 0, 0, 10),  # offset beyond source end
        (3 << 20, 1, 0, 5, (3 << 20) - 1),  # > 1 MiB bounce buffer
    ],
)
def test_copy_range(impl, two_files, src_len, src_off, dst_len, dst_off, length):
    src_bytes, dst_bytes = os.urandom(src_len), os.urandom(dst_len)
    src, dst = two_files(src_bytes, dst_bytes)
    os.lseek(src, 17, os.SEEK_SET)
    n = impl.copy_range(src, src_off, dst, dst_off, length)
    piece = src_bytes[src_off : src_off + length]
    assert n == len(piece)
    expected = bytearray(dst_bytes)
    if len(expected) < dst_off + n and n:
        expected.extend(bytes(dst_off + n - len(expected)))
    expected[dst_off : dst_off + n] = piece
    assert os.pread(dst, len(expected) + 10, 0) == bytes(expected)
    assert os.lseek(src, 0, os.SEEK_CUR) == 17  # offsets untouched
    assert os.lseek(dst, 0, os.SEEK_CUR) == 0


@pytest.mark.parametrize("impl", IMPLS)
def test_copy_range_errors(impl, two_files, tmp_path):
    src, dst = two_files(b"abc", b"")
    with pytest.raises(OSError) as exc:
        impl.copy_range(src, -1, dst, 0, 3)
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(OSError) as exc:
        impl.copy_range(-1, 0, dst, 0, 3)
    assert exc.value.errno == errno.EBADF
    ro = os.open(tmp_path / "dst", os.O_RDONLY)
    try:
        with pytest.raises(OSError) as exc:
            impl.copy_range(src, 0, ro, 0, 3)
        assert exc.value.errno == errno.EBADF
    finally:
        os.close(ro)


@pytest.mark.parametrize("impl", IMPLS)
def test_copy_range_falls_back_on_proc_source(impl, tmp_path):
    """A source copy_file_range refuses (EXDEV or EINVAL for procfs, by
    kernel version) takes the pread/pwrite path with the same result."""
    src = os.open("/proc/self/cmdline", os.O_RDONLY)
    dst = os.open(tmp_path / "out", os.O_RDWR | os.O_CREAT)
    try:
        expected = os.pread(src, 1 << 16, 0)
        n = impl.copy_range(src, 0, dst, 0, 1 << 16)
        assert os.pread(dst, 1 << 17, 0) == expected[:n]
        assert n > 0
    finally:
        os.close(src)
        os.close(dst)


def test_start_writeback_is_a_harmless_hint(tmp_path):
    """Both twins return None and change nothing; native starts writeback of real pages."""
    from blockstore.native import pure
    p = tmp_path / "f"
    data = os.urandom(3 << 20)
    with open(p, "wb") as f:
        f.write(data)
        f.flush()
        impls = [pure.start_writeback] + ([native.NATIVE.start_writeback] if native.NATIVE else [])
        for fn in impls:
            assert fn(f.fileno(), 0, len(data)) is None
            assert fn(-1, 0, 10) is None          # errors are ignored: it is only a hint
    assert p.read_bytes() == data
