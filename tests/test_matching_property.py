"""The numba matching engine against the naive reference, on random order streams.

Hypothesis draws streams of every command (submits of every TIF, cancels,
modifies with and without IFM, mass cancels, session-end expiry, bad
commands), with owners and SMP IDs that make self-matches frequent, prices
on and off the tick grid and outside the band, ladders that cross a bitmap
word, small order capacities and small output arrays. The engine runs them
in random batches (draining its outputs as a venue would); the execution
records, market-data records and resulting books must be identical to the
reference's.

Independently of the reference, the market-data stream is replayed into an
MBO book and a depth-limited MBP book the way an MDP 3.0 consumer would; both
must end equal to the engine's book.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from core.matching import MatchingEngine
from core.types import (
    MATCH_CMD,
    MCF_IFM,
    MCMD_CANCEL,
    MCMD_EXPIRE_DAY,
    MCMD_MASS_CANCEL,
    MCMD_MODIFY,
    MCMD_SUBMIT,
    MD_CHANGE,
    MD_DELETE,
    MD_NEW,
    MMD_BOOK,
    MMD_REVEAL,
    MMD_TRADE,
    MTIF_DAY,
    MTIF_FOK,
    MTIF_GTC,
    MTIF_IOC,
    SIDE_BUY,
    SIDE_SELL,
    SMP_CANCEL_NEWEST,
    SMP_CANCEL_OLDEST,
)
from tests.test_matching_reference import RefEngine, records

# Instrument 0: tick 5, negative prices allowed (a spread). Instrument 1: tick 1,
# a 201-tick ladder (4 bitmap words) with prices around the 64-tick word boundary.
TICKS = [5, 1]
LOWS = [-50, 0]
HIGHS = [50, 200]
DEPTHS = [3, 2]
PRICES_0 = [5 * k for k in range(-4, 5)] + [-50, 50]
BAD_PRICES_0 = [3, -55, 55]  # off tick, outside the band
PRICES_1 = [*range(58, 71), 0, 200]
BAD_PRICES_1 = [201, -1]
BIG_ID = (1 << 63) + 5  # an id with the top bit set: the engine keeps ids as int64 bits

# Each command is decoded from one integer drawn by hypothesis (one draw per
# command keeps generation fast; shrinking works on the stream's length and
# commands). Tables are weighted by repetition.
OPS = [MCMD_SUBMIT] * 14 + [MCMD_CANCEL] * 6 + [MCMD_MODIFY] * 8 + [
    MCMD_MASS_CANCEL, MCMD_EXPIRE_DAY, MCMD_SUBMIT, 9]
INSTRUMENTS = [0] * 7 + [1] * 7 + [-1, 2]
ORDER_IDS = [*range(1, 15), BIG_ID, 0]
SIDES = [SIDE_BUY] * 7 + [SIDE_SELL] * 7 + [0, 3]
PRICES = {0: PRICES_0 + [-5, 0, 5, 10] * 4 + BAD_PRICES_0 + [0, 5],
          1: PRICES_1 + [62, 63, 64, 65] * 3 + BAD_PRICES_1 + [63, 64, 64]}
QTYS = [1, 1, 1, 2, 2, 3, 4, 5, 1, 2, 3, 9, 20, 40, 0, -1]
TIFS = [MTIF_DAY] * 8 + [MTIF_GTC, MTIF_IOC, MTIF_IOC, MTIF_IOC, MTIF_FOK, MTIF_FOK, MTIF_FOK,
                         2]
OWNERS = [1, 1, 1, 1, 1, 2, 2, 3]
SMP_IDS = [0, 0, 7, 9]
SMP_INSTRS = [0, SMP_CANCEL_NEWEST, SMP_CANCEL_OLDEST, 0]
FLAGS = [0, 0, 0, MCF_IFM]
assert len(PRICES[0]) == 32 and len(PRICES[1]) == 32


def decode(x: int) -> dict[str, int]:
    # splitmix64: the small integers hypothesis favours become uniform bits.
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 31

    def take(table: list[int], bits: int) -> int:
        nonlocal x
        v = table[x & ((1 << bits) - 1)]
        x >>= bits
        return v

    inst = take(INSTRUMENTS, 4)
    return dict(
        instrument=inst,
        op=take(OPS, 5),
        order_id=take(ORDER_IDS, 4),
        side=take(SIDES, 4),
        price=take(PRICES[1 if inst == 1 else 0], 5),
        qty=take(QTYS, 4),
        tif=take(TIFS, 4),
        owner=take(OWNERS, 3),
        smp_id=take(SMP_IDS, 2),
        smp_instr=take(SMP_INSTRS, 2),
        flags=take(FLAGS, 2),
        cl_ord_id=x & 0xFFFF,
    )


command = st.integers(0, (1 << 64) - 1).map(decode)
# Long streams: the book needs time to build up before rules interact.
streams = st.integers(1, 160).flatmap(lambda n: st.lists(command, min_size=n, max_size=n))


def to_array(rows: list[dict[str, int]]) -> np.ndarray:
    out = np.zeros(len(rows), dtype=MATCH_CMD)
    for k in rows[0] if rows else ():
        out[k] = np.array([r[k] for r in rows], dtype=object).astype(MATCH_CMD[k])
    out["transact_time"] = 1_000 + np.arange(len(rows))
    return out


def drive(eng: MatchingEngine, cmds: np.ndarray,
          splits: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Feed the engine in batches, draining the outputs whenever it stops."""
    execs, mds = [], []
    start = 0
    for end in sorted({min(s, len(cmds)) for s in splits} | {len(cmds)}):
        sub = cmds[start:end]
        k = 0
        while True:
            k = eng.process(sub, k)
            e, m = eng.execs.copy(), eng.mds.copy()
            e["cmd_index"] += start
            m["cmd_index"] += start
            execs.append(e)
            mds.append(m)
            eng.clear_outputs()
            if k >= len(sub):
                break
        start = end
    return np.concatenate(execs), np.concatenate(mds)


def replay_md(mds: list[dict[str, int]], depths: list[int]) -> tuple[dict, dict]:
    """Rebuild MBO (every order) and MBP (top `depth` levels) books from MD rows only."""
    mbo: dict[int, tuple[int, int, int, int, int]] = {}
    mbp: dict[tuple[int, int], list[list[int]]] = {}
    for r in mds:
        key = (r["instrument"], r["side"])
        if r["kind"] == MMD_TRADE:
            continue
        levels = mbp.setdefault(key, [])
        depth = depths[r["instrument"]]
        n = r["price_level"]
        if r["kind"] == MMD_REVEAL:
            assert n == depth and len(levels) == depth - 1
            assert not levels or (levels[-1][0] > r["price"] if r["side"] == SIDE_BUY
                                  else levels[-1][0] < r["price"])
            levels.append([r["price"], r["size"], r["num_orders"]])
            continue
        assert r["kind"] == MMD_BOOK
        oid = r["order_id"]
        if r["order_action"] == MD_NEW:
            assert oid not in mbo
            mbo[oid] = (r["instrument"], r["side"], r["price"], r["display_qty"],
                        r["order_priority"])
        elif r["order_action"] == MD_CHANGE:
            assert mbo[oid][2] == r["price"]
            mbo[oid] = (r["instrument"], r["side"], r["price"], r["display_qty"],
                        r["order_priority"])
        else:
            assert r["order_action"] == MD_DELETE and mbo[oid][2] == r["price"]
            del mbo[oid]
        if n > depth:
            continue  # beyond the MBP depth: MBO only
        if r["action"] == MD_NEW:
            assert len(levels) >= n - 1
            levels.insert(n - 1, [r["price"], r["size"], r["num_orders"]])
            del levels[depth:]
        elif r["action"] == MD_CHANGE:
            assert levels[n - 1][0] == r["price"]
            levels[n - 1] = [r["price"], r["size"], r["num_orders"]]
        else:
            assert r["action"] == MD_DELETE and levels[n - 1][0] == r["price"]
            del levels[n - 1]
    return mbo, mbp


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=streams,
    splits=st.lists(st.integers(0, 160), max_size=4),
    max_orders=st.sampled_from([3, 6, 64]),
    exec_cap=st.sampled_from([16, 23, 4096]),
    md_cap=st.sampled_from([16, 31, 4096]),
)
def test_engine_equals_reference(rows: list[dict[str, int]], splits: list[int], max_orders: int,
                                 exec_cap: int, md_cap: int) -> None:
    cmds = to_array(rows)
    eng = MatchingEngine(2, max_orders, TICKS, LOWS, HIGHS, mbp_depth=DEPTHS,
                         exec_capacity=exec_cap, md_capacity=md_cap)
    ref = RefEngine(2, max_orders, TICKS, LOWS, HIGHS, DEPTHS, exec_cap, md_cap)
    got_exec, got_md = drive(eng, cmds, splits)
    ref.run(cmds)

    assert records(got_exec) == ref.execs
    assert records(got_md) == ref.mds
    for e in ref.execs:  # what the streams exercised (pytest --hypothesis-show-statistics)
        event(f"exec {e['exec_type']} reason {e['reason']}")
    for m in ref.mds:
        event(f"md kind {m['kind']} action {m['action']}")
    for k in range(2):
        for side in (SIDE_BUY, SIDE_SELL):
            assert eng.book(k, side) == ref.book(k, side)
        bids, asks = eng.depth(k, 4)
        for side, got in ((SIDE_BUY, bids), (SIDE_SELL, asks)):
            want = [(p, sum(q for _, q, _ in queue), len(queue))
                    for p, queue in ref.book(k, side)[:4]]
            assert [tuple(map(int, x)) for x in got.tolist()] == want
        best_b, best_a = eng.best_bid(k), eng.best_ask(k)
        assert best_b == (tuple(map(int, bids[0].tolist())) if len(bids) else None)
        assert best_a == (tuple(map(int, asks[0].tolist())) if len(asks) else None)
    assert eng.n_resting == len(ref.by_id)
    for oid, o in ref.by_id.items():
        queue = ref.books[(o.instrument, o.side)][o.price]
        ahead = queue[: queue.index(o)]
        assert eng.queue_position(oid) == (len(ahead), sum(x.leaves for x in ahead))
        info = eng.order(oid)
        assert info is not None
        assert (info["price"], info["leaves"], info["cum"], info["priority"]) == (
            o.price, o.leaves, o.cum, o.priority)
    assert eng.queue_position(123456) is None
    from core.types import MATCH_REASON_NAMES
    assert eng.reject_counts() == {MATCH_REASON_NAMES[r]: n for r, n in ref.rejects.items()}

    # The MD stream alone rebuilds the book (MBO) and the MBP depth view.
    mbo, mbp = replay_md(ref.mds, DEPTHS)
    for k in range(2):
        for side in (SIDE_BUY, SIDE_SELL):
            book = eng.book(k, side)
            rebuilt: dict[int, list[tuple[int, int, int]]] = {}
            for oid, (inst, sd, price, qty, prio) in mbo.items():
                if (inst, sd) == (k, side):
                    rebuilt.setdefault(price, []).append((oid, qty, prio))
            assert {p: sorted(q, key=lambda x: x[2]) for p, q in rebuilt.items()} == dict(book)
            want_mbp = [[p, sum(q for _, q, _ in queue), len(queue)]
                        for p, queue in book[: DEPTHS[k]]]
            assert mbp.get((k, side), []) == want_mbp


def test_single_command_api_equals_batch() -> None:
    """submit/cancel/modify one at a time give the same records as one batch."""
    rng = np.random.default_rng(7)
    rows = []
    for i in range(400):
        op = rng.choice([MCMD_SUBMIT, MCMD_SUBMIT, MCMD_CANCEL, MCMD_MODIFY])
        rows.append(dict(op=int(op), instrument=int(rng.integers(0, 2)),
                         order_id=int(rng.integers(1, 30)), side=int(rng.integers(1, 3)),
                         price=int(rng.integers(60, 68)),
                         qty=int(rng.integers(1, 6)),
                         tif=int(rng.choice([MTIF_DAY, MTIF_IOC, MTIF_FOK])),
                         owner=int(rng.integers(1, 3)), smp_id=int(rng.choice([0, 4])),
                         smp_instr=int(rng.choice([0, SMP_CANCEL_NEWEST])),
                         cl_ord_id=i))
    for r in rows:
        if r["instrument"] == 0:  # on instrument 0's tick grid and in its band
            r["price"] = 5 * (r["price"] - 64)
        if r["op"] != MCMD_SUBMIT:  # fields the cancel/modify methods do not take
            r.update(instrument=0, side=0, tif=0, smp_id=0, smp_instr=0)
        if r["op"] == MCMD_CANCEL:
            r.update(price=0, qty=0)
    cmds = to_array(rows)
    batch = MatchingEngine(2, 64, TICKS, LOWS, HIGHS, mbp_depth=DEPTHS)
    want_exec, want_md = batch.run(cmds)

    one = MatchingEngine(2, 64, TICKS, LOWS, HIGHS, mbp_depth=DEPTHS)
    for c in cmds:
        kw: dict[str, Any] = dict(owner=int(c["owner"]), cl_ord_id=int(c["cl_ord_id"]),
                                  transact_time=int(c["transact_time"]))
        if c["op"] == MCMD_SUBMIT:
            ok = one.submit(int(c["instrument"]), int(c["order_id"]), int(c["side"]),
                            int(c["price"]), int(c["qty"]), int(c["tif"]),
                            smp_id=int(c["smp_id"]), smp_instr=int(c["smp_instr"]), **kw)
        elif c["op"] == MCMD_CANCEL:
            ok = one.cancel(int(c["order_id"]), **kw)
        else:
            ok = one.modify(int(c["order_id"]), int(c["price"]), int(c["qty"]), **kw)
        assert ok
    got_exec, got_md = one.execs.copy(), one.mds.copy()
    # cmd_index is the row in the array passed: always 0 for single commands.
    assert (got_exec["cmd_index"] == 0).all()
    want_exec["cmd_index"] = 0
    want_md["cmd_index"] = 0
    assert records(got_exec) == records(want_exec)
    assert records(got_md) == records(want_md)
    assert len(got_exec) > 400 and (got_md["kind"] == MMD_TRADE).any()
