"""The venue's njit MDP 3.0 incremental encoder against a naive reference built on the
generic codec, and the books a client rebuilds from its packets against the engine."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.venue.encoder import IncrementalEncoder, packet_views
from core.market import MarketState
from core.matching import MatchingEngine
from core.sbe.codec import decode_packet, encode, encode_mdp_packet
from core.sbe.schema import bundled_schema
from core.types import (
    MD_DELETE,
    MD_NEW,
    MD_NO_ORDER_ACTION,
    MMD_BOOK,
    MMD_REVEAL,
    MMD_TRADE,
    MTIF_FOK,
    MTIF_IOC,
    SIDE_BUY,
    SIDE_SELL,
)

SENDING_TIME = 1_700_000_000_123_456_789
TICK = 25


# --------------------------------------------------------------------------
# naive reference: the rules of the encoder's docstring, one dict per message
# --------------------------------------------------------------------------
def _side_type(side: int) -> str:
    return "0" if side == SIDE_BUY else "1"


def reference_messages(calls: list[list[dict[str, int]]], state: dict[str, Any], mbo: bool,
                       version: int) -> list[bytes]:
    """SBE messages (generic encoder) for the MATCH_MD rows of successive encode calls."""
    schema = bundled_schema(1, version)
    sid, depth, rpt, vol = state["sid"], state["depth"], state["rpt"], state["vol"]
    out: list[bytes] = []
    events: list[list[dict[str, int]]] = []
    for rows in calls:  # an event: a run of equal cmd_index inside one call
        for i, r in enumerate(rows):
            if i > 0 and rows[i - 1]["cmd_index"] == r["cmd_index"]:
                events[-1].append(r)
            else:
                events.append([r])
    for ev in events:
        t = ev[0]["transact_time"]
        msgs: list[tuple[int, dict[str, Any]]] = []

        def induced(i: int, ev: list[dict[str, int]] = ev) -> bool:
            return i > 0 and ev[i - 1]["kind"] == MMD_TRADE and \
                ev[i - 1]["order_id"] == ev[i]["order_id"]

        def in_depth(r: dict[str, int]) -> bool:
            return 1 <= r["price_level"] <= depth[r["instrument"]]

        moved: set[int] = set()  # a Delete and a New of the same order: both in 47
        for i, r in enumerate(ev):
            if r["kind"] == MMD_BOOK and r["order_action"] == MD_NEW:
                for d in range(i - 1, -1, -1):
                    if ev[d]["kind"] == MMD_BOOK and ev[d]["order_action"] == MD_DELETE \
                            and ev[d]["order_id"] == r["order_id"]:
                        moved |= {d, i}
                        break

        trades = [r for r in ev if r["kind"] == MMD_TRADE]
        if trades:
            entries: list[dict[str, Any]] = []
            orders: list[dict[str, Any]] = []
            cur: dict[str, Any] | None = None
            taker = 0
            traded: list[int] = []
            for r in trades:
                k = r["instrument"]
                vol[k] += r["size"]
                if k not in traded:
                    traded.append(k)
                if cur is not None and cur["SecurityID"] == sid[k] and \
                        cur["MDEntryPx"] == r["price"]:
                    cur["MDEntrySize"] += r["size"]
                    cur["NumberOfOrders"] += 1
                    orders[taker]["LastQty"] += r["size"]
                    orders.append({"OrderID": r["order_id"], "LastQty": r["size"]})
                else:
                    rpt[k] += 1
                    cur = {"MDEntryPx": r["price"], "MDEntrySize": r["size"],
                           "SecurityID": sid[k], "RptSeq": rpt[k], "NumberOfOrders": 2,
                           "AggressorSide": r["side"], "MDUpdateAction": 0,
                           "MDTradeEntryID": r["trade_id"] & 0xFFFFFFFF}
                    entries.append(cur)
                    taker = len(orders)
                    orders.append({"OrderID": r["taker_order_id"], "LastQty": r["size"]})
                    orders.append({"OrderID": r["order_id"], "LastQty": r["size"]})
            msgs.append((48, {"NoMDEntries": entries,
                              "NoOrderIDEntries": orders if mbo else []}))
            vols = []
            for k in traded:
                rpt[k] += 1
                vols.append({"MDEntrySize": vol[k], "SecurityID": sid[k], "RptSeq": rpt[k],
                             "MDUpdateAction": 0})
            msgs.append((37, {"NoMDEntries": vols}))
        if mbo:
            e47 = [{"OrderID": r["order_id"], "MDOrderPriority": r["order_priority"],
                    "MDEntryPx": r["price"], "MDDisplayQty": r["display_qty"],
                    "SecurityID": sid[r["instrument"]], "MDUpdateAction": r["order_action"],
                    "MDEntryType": _side_type(r["side"])}
                   for i, r in enumerate(ev)
                   if r["kind"] == MMD_BOOK and r["order_action"] != MD_NO_ORDER_ACTION
                   and (induced(i) or not in_depth(r) or i in moved)]
            if e47:
                msgs.append((47, {"NoMDEntries": e47}))
        md: list[dict[str, Any]] = []
        od: list[dict[str, Any]] = []
        for i, r in enumerate(ev):
            if r["kind"] not in (MMD_BOOK, MMD_REVEAL) or not in_depth(r):
                continue
            k = r["instrument"]
            rpt[k] += 1
            md.append({"MDEntryPx": r["price"], "MDEntrySize": r["size"], "SecurityID": sid[k],
                       "RptSeq": rpt[k], "NumberOfOrders": r["num_orders"],
                       "MDPriceLevel": r["price_level"], "MDUpdateAction": r["action"],
                       "MDEntryType": _side_type(r["side"])})
            if mbo and r["kind"] == MMD_BOOK and r["order_action"] != MD_NO_ORDER_ACTION \
                    and not induced(i) and i not in moved:
                od.append({"OrderID": r["order_id"], "MDOrderPriority": r["order_priority"],
                           "MDDisplayQty": r["display_qty"], "ReferenceID": len(md),
                           "OrderUpdateAction": r["order_action"]})
        if md:
            msgs.append((46, {"NoMDEntries": md, "NoOrderIDEntries": od}))
        meis = [0] * len(msgs)
        for bit, tids in ((0x01, (48,)), (0x02, (37,)), (0x04, (47,)), (0x04, (46,))):
            idx = [i for i, (tid, _g) in enumerate(msgs) if tid in tids]
            if idx:
                meis[idx[-1]] |= bit
        if msgs:
            meis[-1] |= 0x80
        for (tid, groups), mei in zip(msgs, meis, strict=True):
            out.append(encode({"template_id": tid, "fields": {
                "TransactTime": t, "MatchEventIndicator": mei}, "groups": groups},
                schema, version))
    return out


def pack(messages: list[bytes], max_packet: int, first_seq: int) -> list[bytes]:
    """Greedy packing: a message starts a new packet when it does not fit the open one."""
    packets: list[list[bytes]] = []
    size = 0
    for m in messages:
        if not packets or size + 2 + len(m) > max_packet:
            packets.append([])
            size = 12
        packets[-1].append(m)
        size += 2 + len(m)
    return [encode_mdp_packet(first_seq + i, SENDING_TIME, p) for i, p in enumerate(packets)]


def _rows(mds: np.ndarray) -> list[dict[str, int]]:
    names = mds.dtype.names or ()
    return [{name: int(r[name]) for name in names} for r in mds]


# --------------------------------------------------------------------------
# a random order stream on an engine
# --------------------------------------------------------------------------
Cmd = tuple[int, int, int, int, int]  # (kind, side, offset, qty, pick)

commands = st.lists(st.tuples(st.integers(0, 9), st.sampled_from([SIDE_BUY, SIDE_SELL]),
                              st.integers(-6, 6), st.integers(1, 6), st.integers(0, 10**6)),
                    min_size=1, max_size=80)


def run_stream(cmds: list[Cmd], enc: IncrementalEncoder, n_inst: int = 2, depth: int = 2,
               capture: list[list[dict[str, int]]] | None = None, owners: int = 1
               ) -> MatchingEngine:
    eng = MatchingEngine(n_inst, 512, TICK, 0, 400 * TICK, mbp_depth=depth)
    oid = 1
    for k, (kind, side, off, qty, pick) in enumerate(cmds):
        inst = pick % n_inst
        t = 1_000 + k
        owner = pick % owners
        live = [o for o in range(1, oid) if eng.order(o) is not None]
        if kind <= 5 or not live:
            px = (200 + (-1 if side == SIDE_BUY else 1) * off) * TICK
            tif = MTIF_IOC if kind == 5 else (MTIF_FOK if kind == 4 and pick % 3 == 0 else 0)
            eng.submit(inst, oid, side, px, qty, tif, owner=owner, transact_time=t)
            oid += 1
        elif kind <= 7:
            victim = live[pick % len(live)]
            info = eng.order(victim)
            assert info is not None
            eng.cancel(victim, owner=info["owner"], transact_time=t)
        else:
            o = live[pick % len(live)]
            info = eng.order(o)
            assert info is not None
            new_px = info["price"] + (off % 3 - 1) * TICK
            eng.modify(o, new_px, qty, owner=info["owner"], transact_time=t)
        if capture is not None:
            capture.append(_rows(eng.mds))
        enc.encode(eng.mds, SENDING_TIME)
        eng.clear_outputs()
    enc.close_packet()
    return eng


def _state(n_inst: int, depth: int) -> dict[str, Any]:
    return {"sid": [1000 + k for k in range(n_inst)], "depth": [depth] * n_inst,
            "rpt": [0] * n_inst, "vol": [0] * n_inst}


@pytest.mark.parametrize("version", [9, 13])
@pytest.mark.parametrize("mbo", [True, False])
@settings(max_examples=25, deadline=None)
@given(cmds=commands)
def test_kernel_bytes_equal_generic_encoder(version: int, mbo: bool, cmds: list[Cmd]) -> None:
    enc = IncrementalEncoder([1000, 1001], [2, 2], version=version, mbo=mbo, max_packet=60_000)
    rows: list[list[dict[str, int]]] = []
    run_stream(cmds, enc, capture=rows, owners=2)
    ref = pack(reference_messages(rows, _state(2, 2), mbo, version), 60_000, 1)
    got = [bytes(mv) for _seq, mv in packet_views(enc)]
    assert got == ref
    assert enc.counters()["overflow"] == 0


def _entries(packets: list[bytes]) -> dict[tuple[int, str], list[tuple[Any, ...]]]:
    """Entries of each (template, group), in order (chunking splits messages, not order)."""
    out: dict[tuple[int, str], list[tuple[Any, ...]]] = {}
    for p in packets:
        _h, msgs = decode_packet(p)
        for m in msgs:
            for g, es in m["groups"].items():
                for e in es:
                    e = {k: v for k, v in e.items() if k != "ReferenceID"}
                    out.setdefault((m["template_id"], g), []).append(tuple(sorted(e.items())))
    return out


@settings(max_examples=20, deadline=None)
@given(cmds=commands)
def test_small_packets_chunk_messages_without_losing_entries(cmds: list[Cmd]) -> None:
    big = IncrementalEncoder([1000, 1001], [2, 2], max_packet=60_000)
    small = IncrementalEncoder([1000, 1001], [2, 2], max_packet=256)
    run_stream(cmds, big)
    run_stream(cmds, small)
    big_p = [bytes(mv) for _s, mv in packet_views(big)]
    small_p = [bytes(mv) for _s, mv in packet_views(small)]
    assert all(len(p) <= 256 for p in small_p)
    # same entries in the same order (ReferenceID is per message, so it may differ)
    assert _entries(small_p) == _entries(big_p)
    seqs = [decode_packet(p)[0].msg_seq_num for p in small_p]
    assert seqs == list(range(1, len(small_p) + 1))
    ends = sum(1 for p in small_p for m in decode_packet(p)[1]
               if m["fields"]["MatchEventIndicator"] & 0x80)
    assert ends == sum(1 for p in big_p for m in decode_packet(p)[1]
                       if m["fields"]["MatchEventIndicator"] & 0x80)


def test_sweep_over_many_makers_splits_the_trade_summary() -> None:
    """300 makers at one price: more order entries than one message holds."""
    eng = MatchingEngine(1, 1024, TICK, 0, 400 * TICK, mbp_depth=10)
    enc = IncrementalEncoder([7], [10], max_packet=1420)
    for k in range(300):
        eng.submit(0, k + 1, SIDE_SELL, 201 * TICK, 1)
    eng.clear_outputs()
    eng.submit(0, 999, SIDE_BUY, 201 * TICK, 300, MTIF_IOC)
    trade_ids = [int(r["trade_id"]) for r in eng.mds if r["kind"] == MMD_TRADE]
    enc.encode(eng.mds, SENDING_TIME)
    enc.close_packet()
    packets = [bytes(mv) for _s, mv in packet_views(enc)]
    assert all(len(p) <= 1420 for p in packets)
    summaries = [(m["groups"]["NoMDEntries"], m["groups"]["NoOrderIDEntries"])
                 for p in packets for m in decode_packet(p)[1] if m["template_id"] == 48]
    assert len(summaries) > 1
    total = sum(e["MDEntrySize"] for es, _o in summaries for e in es)
    assert total == 300
    makers = [o["OrderID"] for _es, os_ in summaries for o in os_ if o["OrderID"] != 999]
    assert makers == list(range(1, 301))
    # every match maps to the MDTradeEntryID of the entry that published it
    published = {e["MDTradeEntryID"] for es, _o in summaries for e in es}
    assert {enc.trade_summary_id(t) for t in trade_ids} == published


def _apply(ms: MarketState, packets: list[bytes]) -> None:
    for p in packets:
        a = np.frombuffer(p, dtype=np.uint8)
        ms.on_packet(a, len(a))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_client_books_equal_engine_books(seed: int) -> None:
    rng = random.Random(seed)
    cmds = [(rng.randrange(10), rng.choice([SIDE_BUY, SIDE_SELL]), rng.randrange(-6, 7),
             rng.randrange(1, 7), rng.randrange(10**6)) for _ in range(600)]
    enc = IncrementalEncoder([1000, 1001], [3, 3], max_packet=1420)
    eng = run_stream(cmds, enc, depth=3)
    ms = MarketState(max_instruments=4)
    for k in range(2):
        ms.add_instrument(1000 + k, depth=3, tick=TICK)
    _apply(ms, [bytes(mv) for _s, mv in packet_views(enc)])
    counters = ms.counter_dict()
    assert counters["rpt_gaps"] == 0 and counters["mbo_unknown_order"] == 0
    assert counters["violations"] == 0
    for k in range(2):
        bids, asks = eng.depth(k, 3)
        assert [x for x in ms.levels_of(1000 + k, "bid") if x] == \
            [(int(p), int(q), int(o)) for p, q, o in bids]
        assert [x for x in ms.levels_of(1000 + k, "ask") if x] == \
            [(int(p), int(q), int(o)) for p, q, o in asks]
        for side, name in ((SIDE_BUY, "bid"), (SIDE_SELL, "ask")):
            mbo = [(p, [o for o, _q, _pr in orders]) for p, _t, _c, orders
                   in ms.mbo_side(1000 + k, name)]
            assert mbo == [(p, [o for o, _q, _pr in q]) for p, q in eng.book(k, side)]
        assert ms.rpt_seq(1000 + k) == enc.rpt_seq(k)
