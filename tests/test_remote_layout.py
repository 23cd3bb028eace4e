"""Pack indexes (docs/REMOTE-FORMAT.md): decoded into columns for a reader's
index of every block, refused when malformed or pointing past the pack."""
from __future__ import annotations

import hashlib

import pytest

from blockstore import errors
from blockstore.remote import layout as L


def _entries(n, bs=4096):
    return [(hashlib.sha256(str(i).encode()).digest(), i * bs, bs) for i in range(n)]


def test_index_columns_round_trip():
    ents = _entries(5)
    data = L.encode_index(4096, 5 * 4096, ents)
    bs, size, ds, offs, lens = L.decode_index_columns(data)
    assert (bs, size) == (4096, 5 * 4096)
    assert list(zip(ds, offs, lens)) == ents
    assert L.decode_index(data) == (4096, 5 * 4096, ents)
    assert L.decode_index_columns(L.encode_index(4096, 0, [])) == (4096, 0, (), (), ())


def test_index_pointing_past_its_pack_is_refused():
    data = L.encode_index(4096, 5 * 4096 - 1, _entries(5))
    with pytest.raises(errors.Corruption, match="past the end"):
        L.decode_index_columns(data)
    with pytest.raises(errors.Corruption, match="past the end"):
        L.decode_index(data)


@pytest.mark.parametrize("cut", [1, 7, 44])
def test_truncated_or_padded_index_is_refused(cut):
    data = L.encode_index(4096, 5 * 4096, _entries(5))
    for bad in (data[:-cut], data + b"\0" * cut, b"BSIDX002" + data[8:]):
        with pytest.raises(errors.Corruption, match="malformed"):
            L.decode_index_columns(bad)
