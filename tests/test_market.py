"""The fused per-packet kernel ``_on_packet`` (decode + apply + features) against the
two-step path (decoder facade, then ``apply_events``), on real captures and on packets
encoded with the generic SBE encoder; malformed packets never raise."""

from __future__ import annotations

import glob
import os
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.market import MarketState, _on_packet
from core.sbe.codec import encode, encode_mdp_packet
from core.sbe.mdp3 import Mdp3Decoder
from core.sbe.schema import bundled_schema
from core.types import IS_LAST_TRADE_PX, IS_TOTAL_VOLUME, IS_TRADING_STATUS
from tests.test_book_mbp import PCAPS, NaiveMarket

SCHEMA = bundled_schema(1, 13)
T0 = 1_700_000_000_000_000_000


def _book46(entries: list[dict[str, Any]], eoe: bool = True, orders: list[Any] | None = None
            ) -> bytes:
    return encode({"template_id": 46,
                   "fields": {"TransactTime": T0, "MatchEventIndicator": 0x84 if eoe else 0x04},
                   "groups": {"NoMDEntries": entries, "NoOrderIDEntries": orders or []}}, SCHEMA)


def _entry(sid: int, rpt: int, act: int, et: str, lvl: int, px: int, q: int) -> dict[str, Any]:
    return {"MDEntryPx": px, "MDEntrySize": q, "SecurityID": sid, "RptSeq": rpt,
            "NumberOfOrders": 1, "MDPriceLevel": lvl, "MDUpdateAction": act, "MDEntryType": et}


def _both(packets: list[bytes], channel: int = 310) -> tuple[MarketState, MarketState, list[int]]:
    fused = MarketState(max_instruments=32, ring_len=8, max_orders=1024)
    split = MarketState(max_instruments=32, ring_len=8, max_orders=1024)
    dec = Mdp3Decoder()
    counts = []
    for p in packets:
        buf = np.frombuffer(p, dtype=np.uint8).copy()
        k = fused.on_packet(buf, buf.size, channel)
        counts.append(k)
        ev = dec.decode(buf)
        assert split.apply_events(ev, channel=channel) == k
        assert np.array_equal(fused.completed(), split.completed())
    return fused, split, counts


def _same_state(a: MarketState, b: MarketState) -> None:
    assert np.array_equal(a.book, b.book)
    assert np.array_equal(a.inst, b.inst)
    assert np.array_equal(a.features, b.features)
    assert np.array_equal(a.ring, b.ring)
    assert np.array_equal(a.orders, b.orders)


def test_fused_kernel_equals_decoder_then_apply_on_captures() -> None:
    from adapters.capture import read_capture

    packets = [r.payload for f in sorted(glob.glob(os.path.join(PCAPS, "mdp3_v*_udp_*.pcap")))
               for r in read_capture(f)]
    assert len(packets) >= 7
    fused, split, counts = _both(packets)
    _same_state(fused, split)
    dec = Mdp3Decoder()
    naive = NaiveMarket()
    for p in packets:
        naive.run(dec.decode(p))
    assert sum(counts) == len(naive.records)  # one per completed event per changed instrument
    assert fused.counter_dict()["packets"] == len(packets)
    assert fused.n_instruments > 15


def test_fused_kernel_on_encoded_stream_with_trades_stats_status_reset() -> None:
    packets = []
    seq = 0

    def pkt(*msgs: bytes) -> None:
        nonlocal seq
        seq += 1
        packets.append(encode_mdp_packet(seq, T0, list(msgs)))

    pkt(_book46([_entry(11, 1, 0, "0", 1, 4_500_000_000_000, 5),
                 _entry(11, 2, 0, "1", 1, 4_500_250_000_000, 3)]))
    pkt(encode({"template_id": 48, "fields": {"TransactTime": T0 + 5, "MatchEventIndicator": 0x01},
                "groups": {"NoMDEntries": [{"MDEntryPx": 4_500_250_000_000, "MDEntrySize": 2,
                                            "SecurityID": 11, "RptSeq": 3, "NumberOfOrders": 2,
                                            "AggressorSide": 1, "MDUpdateAction": 0,
                                            "MDTradeEntryID": 9}],
                           "NoOrderIDEntries": []}}, SCHEMA),
        _book46([_entry(11, 4, 1, "1", 1, 4_500_250_000_000, 1)]))
    pkt(encode({"template_id": 37, "fields": {"TransactTime": T0, "MatchEventIndicator": 0x82},
                "groups": {"NoMDEntries": [{"MDEntrySize": 77, "SecurityID": 11, "RptSeq": 5,
                                            "MDUpdateAction": 0}]}}, SCHEMA))
    pkt(encode({"template_id": 30, "fields": {"TransactTime": T0, "SecurityGroup": "ES",
                                             "Asset": "ES", "SecurityID": 11,
                                             "SecurityTradingStatus": 17, "HaltReason": 0,
                                             "SecurityTradingEvent": 0,
                                             "MatchEventIndicator": 0x80}}, SCHEMA))
    pkt(encode({"template_id": 4, "fields": {"TransactTime": T0, "MatchEventIndicator": 0x80},
                "groups": {"NoMDEntries": [{"ApplID": 310}]}}, SCHEMA))
    fused, split, counts = _both(packets)
    _same_state(fused, split)
    r = fused.row(11)
    assert r is not None
    assert fused.inst[r, IS_LAST_TRADE_PX] == 4_500_250_000_000
    assert fused.inst[r, IS_TOTAL_VOLUME] == 77
    assert fused.inst[r, IS_TRADING_STATUS] == 17
    assert fused.levels_of(11, "bid")[0] is None  # ChannelReset 310 emptied it
    assert fused.counter_dict()["channel_resets"] == 1
    assert counts == [1, 1, 1, 1, 1]


def test_event_split_over_two_packets_completes_in_the_second() -> None:
    p1 = encode_mdp_packet(1, T0, [_book46([_entry(5, 1, 0, "0", 1, 100, 1)], eoe=False)])
    p2 = encode_mdp_packet(2, T0, [_book46([_entry(5, 2, 0, "1", 1, 101, 1)], eoe=True)])
    fused, split, counts = _both([p1, p2])
    assert counts == [0, 1]
    _same_state(fused, split)


def test_hot_call_returns_completed_rows_in_arena() -> None:
    state = MarketState(max_instruments=4, ring_len=2)
    p = np.frombuffer(encode_mdp_packet(1, T0, [_book46(
        [_entry(5, 1, 0, "0", 1, 100, 1), _entry(6, 1, 0, "1", 1, 101, 1)])]), np.uint8).copy()
    k = _on_packet(p, p.size, 310, state.arena)
    assert k == 2
    rows = state.completed()
    assert [int(state.inst[r, 0]) for r in rows] == [5, 6]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=300), st.integers(0, 320))
def test_garbage_is_counted_never_raised(data: bytes, n: int) -> None:
    state = MarketState(max_instruments=4, ring_len=2, max_events=64)
    buf = np.zeros(320, dtype=np.uint8)
    buf[:len(data)] = np.frombuffer(data, dtype=np.uint8)
    n = min(n, len(data))
    before = int(state.drops.sum())
    k = state.on_packet(buf, n, 310)
    assert k >= 0
    if n < 12:
        assert int(state.drops.sum()) == before + 1


def test_truncated_real_packet_drops_rest_without_corrupting_books() -> None:
    p = encode_mdp_packet(1, T0, [_book46([_entry(5, 1, 0, "0", 1, 100, 1)]),
                                  _book46([_entry(5, 2, 0, "1", 1, 101, 1)])])
    buf = np.frombuffer(p, np.uint8).copy()
    state = MarketState(max_instruments=4, ring_len=2)
    state.on_packet(buf, buf.size - 5, 310)  # second message cut
    assert state.levels_of(5, "bid")[0] == (100, 1, 1)
    assert state.levels_of(5, "ask")[0] is None
    assert int(state.drops.sum()) == 1


def test_instruments_from_definitions_set_depth_tick_channel() -> None:
    from adapters.capture import read_capture
    from core.sbe.instruments import InstrumentTable
    from core.types import IS_CHANNEL, IS_DEPTH, IS_TICK

    table = InstrumentTable()
    dec = Mdp3Decoder()
    for rec in read_capture(os.path.join(PCAPS, "mdp3_v5_udp_MDInstrumentDefinition27_29.pcap")):
        table.update_from_packet(rec.payload, len(rec.payload), dec.decode(rec.payload))
    state = MarketState(max_instruments=8, ring_len=0)
    assert state.add_instruments_from(table) == len(table.index) == 5
    for sid, i in table.index.items():
        r = state.row(sid)
        assert r is not None
        d = table.rows[i]
        assert state.inst[r, IS_DEPTH] == min(int(d["outright_depth"]) or 10, 10)
        assert state.inst[r, IS_TICK] == int(d["min_price_increment"])
        assert state.inst[r, IS_CHANNEL] == int(d["appl_id"])
