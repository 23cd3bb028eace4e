"""How an eager pull plans its ranged GETs (remote/pull.py ``_plan_made``):
blocks that lie one after the other in one pack are one range of at most
FILL_RANGE bytes; a block the index does not list goes apart."""
from __future__ import annotations

from blockstore.remote import pull as P


def test_plan_made_ranges(monkeypatch):
    bs = 4
    monkeypatch.setattr(P, "FILL_RANGE", 10 * bs)
    ds = [bytes([i]) * 32 for i in range(25)]
    es = [bytes([100 + i]) * 32 for i in range(2)]
    where = {}
    for i in range(12):
        where[ds[i]] = ("A", i * bs, bs)                 # 0-11: in order in A
    for k, i in enumerate(range(13, 18)):                # 12: not listed
        where[ds[i]] = ("A", 100 + k * bs, bs)           # 13-17: elsewhere in A
    for k, i in enumerate(range(18, 21)):
        where[ds[i]] = ("B", k * bs, bs)                 # 18-20: in B
    for k, i in enumerate(range(21, 25)):
        where[ds[i]] = ("B", 20 + k * bs, bs)            # 21-24: in B after a gap
    where[es[0]] = ("B", 36, bs)                         # a second run continuing in B
    where[es[1]] = ("B", 40, bs)
    reqs, rest = P._plan_made([(100, ds), (200, es)], where, bs)
    assert rest == {112}
    assert reqs == [
        ["A", 0, 40, [[100, ds[0:10], 0, 40]]],          # cut at FILL_RANGE
        ["A", 40, 48, [[110, ds[10:12], 0, 8]]],
        ["A", 100, 120, [[113, ds[13:18], 0, 20]]],
        ["B", 0, 12, [[118, ds[18:21], 0, 12]]],
        ["B", 20, 44, [[121, ds[21:25], 0, 16], [200, es, 16, 24]]],
    ]


def test_plan_made_one_pack_in_order_is_whole_ranges(monkeypatch):
    bs = 4096
    monkeypatch.setattr(P, "FILL_RANGE", 64 * bs)
    ds = [i.to_bytes(32, "big") for i in range(200)]
    where = {d: ("P", i * bs, bs) for i, d in enumerate(ds)}
    where[ds[150]] = ("P", 150 * bs, 2 * bs)             # a block of another size: apart
    reqs, rest = P._plan_made([(7, ds)], where, bs)
    assert rest == {157}
    assert [(h, a, e) for h, a, e, _ in reqs] == [("P", 0, 64 * bs), ("P", 64 * bs, 128 * bs),
                                                  ("P", 128 * bs, 150 * bs),
                                                  ("P", 151 * bs, 200 * bs)]
    assert reqs[2][3] == [[135, ds[128:150], 0, 22 * bs]]
    assert reqs[3][3] == [[158, ds[151:200], 0, 49 * bs]]
