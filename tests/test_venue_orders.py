"""The venue's iLink 3 order handling, in process (no sockets): requests in, reports out,
their effects in the published MDP 3.0 stream, faults, cancel on disconnect, latency."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from adapters.clock import ManualClock
from adapters.ilink3_acceptor import AppMessage, encode_app
from adapters.venue.config import parse_venue_config
from adapters.venue.publisher import CaptureTransport
from adapters.venue.venue import Venue
from core.market import MarketState
from core.sbe.codec import decode_packet

ES = 5602
TICK = 25_000_000_000
MID = 500_000_000_000_000
S1 = ("AAA", "FIRM1")
S2 = ("BBB", "FIRM1")  # same firm as S1: self-match prevention applies between them
S3 = ("CCC", "FIRM2")

CONFIG = """
[venue]
seed = 3
[market_data]
max_packet_bytes = 1420
[order_entry]
enabled = false
[[order_entry.sessions]]
session_id = "AAA"
firm_id = "FIRM1"
[[order_entry.sessions]]
session_id = "BBB"
firm_id = "FIRM1"
[[order_entry.sessions]]
session_id = "CCC"
firm_id = "FIRM2"
[control]
enabled = false
[flow]
enabled = false
[[instruments]]
security_id = 5602
symbol = "ESZ5"
[[instruments]]
security_id = 2871
symbol = "CLZ5"
tick = 1_000_000_000
start_price = 7_500_000_000_000
band_ticks = 2000
"""


class Harness:
    def __init__(self) -> None:
        self.clock = ManualClock()
        self.transport = CaptureTransport()
        self.venue = Venue(parse_venue_config(CONFIG), clock=self.clock,
                           transport=self.transport)
        self.venue.start()
        self.handler = self.venue.handler
        self.sent: list[tuple[tuple[str, str], AppMessage]] = []
        self.handler.send_app = lambda s, m: self.sent.append((s, m))
        self.seq = itertools.count(1)
        self.cl = itertools.count(1)
        self.market = MarketState(max_instruments=4)
        for info in self.venue.exchange.infos:
            self.market.add_instrument(info.security_id, info.depth, info.tick)
        self.applied = 0

    def request(self, session: tuple[str, str], tid: int, **fields: Any) -> list[AppMessage]:
        msg = {"SeqNum": next(self.seq), "SenderID": "TRADER", "Location": "US,IL",
               "PartyDetailsListReqID": 1, "ManualOrderIndicator": 0,
               "OrderRequestID": fields.pop("OrderRequestID", next(self.seq))}
        msg.update(fields)
        self.clock.advance(1000)
        out = self.handler.on_message(session, tid, msg, self.clock.now_ns())
        for m in out:
            encode_app(AppMessage(m.template_id, {**m.fields, "SeqNum": 1, "UUID": 1,
                                                  "SendingTimeEpoch": 1, "PossRetransFlag": 0},
                                  m.groups))  # every report is a valid iLink 3 frame
        self.venue.publisher.flush()
        return out

    def new(self, session: tuple[str, str], side: int, price: int, qty: int, tif: int = 0,
            **extra: Any) -> tuple[list[AppMessage], str]:
        cl = f"{next(self.cl):020d}"
        out = self.request(session, 514, ClOrdID=cl, SecurityID=extra.pop("SecurityID", ES),
                           Side=side, Price=price, OrderQty=qty, OrdType="2",
                           TimeInForce=tif, **extra)
        return out, cl

    def packets(self) -> list[bytes]:
        return self.transport.sent["A"]

    def apply_market(self) -> None:
        for p in self.packets()[self.applied:]:
            a = np.frombuffer(p, dtype=np.uint8)
            self.market.on_packet(a, len(a))
        self.applied = len(self.packets())

    def messages(self, template_id: int) -> list[dict[str, Any]]:
        return [m for p in self.packets() for m in decode_packet(p)[1]
                if m["template_id"] == template_id]

    def manual(self, side: str, price: int, qty: int, tif: str = "day") -> dict[str, Any]:
        return self.venue.control({"cmd": "order", "security_id": ES, "side": side,
                                   "price": price, "qty": qty, "tif": tif})


@pytest.fixture
def h() -> Harness:
    return Harness()


def tids(msgs: list[AppMessage]) -> list[int]:
    return [m.template_id for m in msgs]


def test_new_order_rests_and_appears_in_market_data(h: Harness) -> None:
    out, cl = h.new(S1, 1, MID - 2 * TICK, 3)
    assert tids(out) == [522]
    oid = out[0].fields["OrderID"]
    assert out[0].fields["ClOrdID"] == cl and out[0].fields["OrderQty"] == 3
    h.apply_market()
    assert h.market.levels_of(ES, "bid")[0] == (MID - 2 * TICK, 3, 1)
    assert [o for _p, _q, _c, q in h.market.mbo_side(ES, "bid") for o, _x, _y in q] == [oid]
    assert h.venue.exchange.book(ES)["bids"] == [[MID - 2 * TICK, 3, 1]]
    live = h.venue.control({"cmd": "orders", "session": "AAA"})["orders"]
    assert [(o["order_id"], o["leaves_qty"]) for o in live] == [(oid, 3)]


def test_resting_order_filled_by_other_flow(h: Harness) -> None:
    out, _cl = h.new(S1, 1, MID, 5)
    oid = out[0].fields["OrderID"]
    resp = h.manual("sell", MID - TICK, 2)
    assert resp["ok"]
    fills = [m for s, m in h.sent if s == S1 and m.template_id == 525]
    assert len(fills) == 1
    f = fills[0].fields
    assert (f["OrderID"], f["LastPx"], f["LastQty"], f["CumQty"], f["LeavesQty"]) == \
        (oid, MID, 2, 2, 3)
    assert f["AggressorIndicator"] == 0 and f["OrdStatus"] == 1
    (trade,) = h.messages(48)
    entry = trade["groups"]["NoMDEntries"][0]
    assert (entry["MDEntryPx"], entry["MDEntrySize"], entry["AggressorSide"]) == (MID, 2, 2)
    assert f["MDTradeEntryID"] == entry["MDTradeEntryID"]
    orders = [(o["OrderID"], o["LastQty"]) for o in trade["groups"]["NoOrderIDEntries"]]
    assert orders == [(resp["order_id"], 2), (oid, 2)]
    h.apply_market()
    assert h.market.levels_of(ES, "bid")[0] == (MID, 3, 1)


def test_aggressive_order_trades_then_rests_and_ioc_is_eliminated(h: Harness) -> None:
    h.manual("sell", MID + TICK, 2)
    out, _ = h.new(S1, 1, MID + 2 * TICK, 3)
    assert tids(out) == [522, 525]
    assert out[1].fields["AggressorIndicator"] == 1 and out[1].fields["LastQty"] == 2
    assert h.venue.exchange.book(ES)["bids"] == [[MID + 2 * TICK, 1, 1]]
    h.manual("sell", MID + 3 * TICK, 2)
    out, _ = h.new(S3, 1, MID + 3 * TICK, 5, tif=3)  # FAK
    assert tids(out) == [522, 525, 524]
    assert out[2].fields["CumQty"] == 2


def test_cancel_by_order_id_and_by_cl_ord_id(h: Harness) -> None:
    out, cl = h.new(S1, 2, MID + 5 * TICK, 1)
    oid = out[0].fields["OrderID"]
    out2, cl2 = h.new(S1, 2, MID + 6 * TICK, 1)
    assert tids(h.request(S1, 516, OrderID=oid, ClOrdID=cl, SecurityID=ES, Side=2)) == [534]
    # OrderID null: the order is found by its ClOrdID
    res = h.request(S1, 516, OrderID=None, ClOrdID=cl2, SecurityID=ES, Side=2)
    assert tids(res) == [534] and res[0].fields["OrderID"] == out2[0].fields["OrderID"]
    assert tids(h.request(S1, 516, OrderID=oid, ClOrdID=cl, SecurityID=ES, Side=2)) == [535]
    # another session cannot cancel it
    out3, cl3 = h.new(S1, 2, MID + 6 * TICK, 1)
    rej = h.request(S3, 516, OrderID=out3[0].fields["OrderID"], ClOrdID=cl3, SecurityID=ES,
                    Side=2)
    assert tids(rej) == [535]
    h.apply_market()
    assert h.market.levels_of(ES, "ask")[0] == (MID + 6 * TICK, 1, 1)


def test_replace_price_qty_and_in_flight_mitigation(h: Harness) -> None:
    out, cl = h.new(S1, 1, MID, 10)
    oid = out[0].fields["OrderID"]
    h.manual("buy", MID, 1)  # behind ours in the queue
    res = h.request(S1, 515, OrderID=oid, ClOrdID=cl, SecurityID=ES, Side=1, Price=MID,
                    OrderQty=6, OrdType="2", OFMOverride=0)
    assert tids(res) == [531] and res[0].fields["OrderQty"] == 6
    assert h.venue.exchange.engine.queue_position(oid) == (0, 0)  # qty down: priority kept
    h.manual("sell", MID, 2)  # fills 2 of ours
    # IFM: OrderQty is the total quantity; 2 are filled, so 3 stay open
    res = h.request(S1, 515, OrderID=oid, ClOrdID=cl, SecurityID=ES, Side=1,
                    Price=MID - TICK, OrderQty=5, OrdType="2", OFMOverride=1)
    assert tids(res) == [531]
    assert (res[0].fields["CumQty"], res[0].fields["LeavesQty"]) == (2, 3)
    assert h.venue.exchange.book(ES)["bids"][0] == [MID, 1, 1]
    assert h.venue.exchange.book(ES)["bids"][1] == [MID - TICK, 3, 1]
    bad = h.request(S1, 515, OrderID=999_999, ClOrdID="x", SecurityID=ES, Side=1, Price=MID,
                    OrderQty=1, OrdType="2", OFMOverride=0)
    assert tids(bad) == [536]
    h.apply_market()
    assert h.market.counter_dict()["mbo_unknown_order"] == 0
    assert h.market.levels_of(ES, "bid")[1] == (MID - TICK, 3, 1)


def _gateway_modify(order_id: int, cl_ord_id: str, price: int, qty: int) -> dict[str, Any]:
    """The OrderCancelReplaceRequest515 our gateway sends for an OMS modify (its own
    encoder kernel and templates), decoded the way the acceptor decodes it."""
    from core.sbe import ilink3 as il
    from core.types import ACT_MODIFY, ORDER_ACTION

    gw = il.new_gateway_state()
    mem = il.new_order_memory(gw, sender_id="TRADER", location="US,IL",
                              party_details_list_req_id=1)
    a = np.zeros(1, ORDER_ACTION)
    a[0]["action"], a[0]["order_id"], a[0]["cl_ord_id"] = ACT_MODIFY, order_id, int(cl_ord_id)
    a[0]["price"], a[0]["qty"], a[0]["security_id"], a[0]["side"] = price, qty, ES, 1
    n = il.encode_actions(a, 1, mem, gw, 1)
    frame = mem[il.MEM_OUT : il.MEM_OUT + n].tobytes()
    assert il.frame_info(frame)[2] == 515
    return dict(il.flat_codec(515).decode(frame))


@pytest.mark.parametrize("ofm_override", [None, 0])
def test_gateway_modify_after_partial_fill_keeps_the_oms_total(h: Harness,
                                                               ofm_override: int | None) -> None:
    """The OMS's modify quantity is the new TOTAL order quantity: our gateway says so with
    OFMOverride=Enabled, and the venue keeps total = the OMS's qty (leaves = qty - cum).
    With the flag off (``ofm_override=0``: what the gateway sent before) the same request
    is read as the new open quantity and the order can fill beyond what the OMS wants."""
    out, cl = h.new(S1, 1, MID, 5)
    oid = out[0].fields["OrderID"]
    h.manual("sell", MID, 2)  # partial fill: cum 2, leaves 3
    msg = _gateway_modify(oid, cl, MID - TICK, 4)  # the OMS: 4 in total, price one lower
    if ofm_override is None:
        assert msg["OFMOverride"] == 1  # Enabled, from the gateway's template
    else:
        msg["OFMOverride"] = ofm_override
    h.clock.advance(1000)
    res = h.handler.on_message(S1, 515, msg, h.clock.now_ns())
    assert tids(res) == [531]
    f = res[0].fields
    total = 4 if ofm_override is None else 2 + 4  # Disabled: 4 more on top of the 2 filled
    assert (f["OrderQty"], f["CumQty"], f["LeavesQty"]) == (total, 2, total - 2)
    assert h.venue.exchange.book(ES)["bids"][0] == [MID - TICK, total - 2, 1]
    h.manual("sell", MID - TICK, 10)  # sweep: the order fills up to its total, no further
    (pos,) = h.venue.control({"cmd": "positions", "session": "AAA"})["positions"]
    assert (pos["security_id"], pos["bought"], pos["sold"]) == (ES, total, 0)
    assert pos["fills"] == 2 and pos["buy_value"] == 2 * MID + (total - 2) * (MID - TICK)
    assert h.venue.control({"cmd": "orders", "session": "AAA"})["orders"] == []


def test_mass_action_cancels_only_the_sessions_orders(h: Harness) -> None:
    for k in range(3):
        h.new(S1, 1, MID - k * TICK, 1)
    h.new(S1, 1, 7_400_000_000_000, 1, SecurityID=2871)
    h.new(S3, 1, MID - 5 * TICK, 1)
    res = h.request(S1, 529, MassActionScope=1, SecurityID=ES, Side=None)
    assert tids(res) == [562, 534, 534, 534]
    assert res[0].fields["TotalAffectedOrders"] == 3
    assert len(h.venue.control({"cmd": "orders", "session": "AAA"})["orders"]) == 1
    res = h.request(S1, 529, MassActionScope=7, SecurityID=None, Side=None)
    assert tids(res) == [562, 534]
    assert len(h.venue.control({"cmd": "orders", "session": "CCC"})["orders"]) == 1


def test_self_match_prevention_between_sessions_of_a_firm(h: Harness) -> None:
    for s in (S1, S2):
        ack = h.request(s, 518, PartyDetailsListReqID=7, ListUpdateAction="A",
                        SelfMatchPreventionID=42, SelfMatchPreventionInstruction="O")
        assert tids(ack) == [519]
    out, _ = h.new(S1, 2, MID, 2, PartyDetailsListReqID=7)
    resting = out[0].fields["OrderID"]
    out2, _ = h.new(S2, 1, MID, 2, PartyDetailsListReqID=7)
    assert tids(out2) == [522]  # no trade with its own firm
    cancels = [m for s, m in h.sent if s == S1 and m.template_id == 534]
    assert [m.fields["OrderID"] for m in cancels] == [resting]
    assert cancels[0].fields["ExecRestatementReason"] == 103
    assert h.venue.exchange.engine.n_trades == 0
    # another firm trades normally
    out3, _ = h.new(S3, 2, MID, 1)
    assert tids(out3) == [522, 525]


def test_cancel_on_disconnect(h: Harness) -> None:
    ids = [h.new(S1, 1, MID - k * TICK, 1)[0][0].fields["OrderID"] for k in range(3)]
    other = h.new(S3, 1, MID - 9 * TICK, 1)[0][0].fields["OrderID"]
    out = h.handler.on_disconnect(S1, True)
    h.venue.publisher.flush()
    assert tids(out) == [534, 534, 534]
    assert sorted(m.fields["OrderID"] for m in out) == sorted(ids)
    assert all(m.fields["ExecRestatementReason"] == 100 for m in out)
    assert h.handler.on_disconnect(S3, False) == []
    assert [o["order_id"] for o in h.venue.control({"cmd": "orders"})["orders"]] == [other]
    h.apply_market()
    assert [lv for lv in h.market.levels_of(ES, "bid") if lv] == [(MID - 9 * TICK, 1, 1)]


def test_reject_and_delay_faults_and_the_latency_record(h: Harness) -> None:
    h.manual("sell", MID + 10 * TICK, 1)
    trigger = h.venue.publisher.seq
    sent_at = h.venue.send_times.lookup(trigger)
    assert sent_at > 0
    h.venue.apply_fault(_spec("reject", count=1))
    out, _ = h.new(S1, 1, MID, 1, OrderRequestID=(trigger << 32) | 1)
    assert tids(out) == [523]
    h.venue.apply_fault(_spec("delay", count=1, delay_ms=5))
    out, _ = h.new(S1, 1, MID, 2, OrderRequestID=(trigger << 32) | 2)
    assert out == []
    assert h.handler.process_delayed(h.clock.now_ns()) == 0
    h.clock.advance(5_000_000)
    assert h.handler.process_delayed(h.clock.now_ns()) == 1
    assert [m.template_id for s, m in h.sent if s == S1] == [522]
    out, _ = h.new(S1, 1, MID, 3)  # no trigger
    rows = h.venue.latency.ordered()
    assert len(rows) == 3
    assert list(rows["trigger_seq"]) == [trigger, trigger, 0]
    assert list(rows["wire_to_wire_ns"][:2]) == list(rows["recv_ns"][:2] - sent_at)
    assert rows["wire_to_wire_ns"][2] == -1
    assert h.venue.latency.summary()["with_trigger"] == 2


def test_halted_instrument_rejects_orders_and_publishes_status(h: Harness) -> None:
    h.venue.apply_fault(_spec("halt", security_id=ES))
    out, _ = h.new(S1, 1, MID, 1)
    assert tids(out) == [523]
    statuses = [m["fields"]["SecurityTradingStatus"] for m in h.messages(30)
                if m["fields"]["SecurityID"] == ES]
    assert statuses[-2:] == [17, 2]
    h.venue.apply_fault(_spec("resume", security_id=ES))
    assert tids(h.new(S1, 1, MID, 1)[0]) == [522]


def test_status_requests(h: Harness) -> None:
    oid = h.new(S1, 1, MID, 1)[0][0].fields["OrderID"]
    h.new(S1, 2, MID + TICK, 1)
    res = h.request(S1, 530, MassStatusReqID=5, MassStatusReqType=7)
    assert tids(res) == [532, 532]
    assert res[-1].fields["LastRptRequested"] == 1
    res = h.request(S1, 533, OrdStatusReqID=6, OrderID=oid)
    assert tids(res) == [532] and res[0].fields["OrdStatus"] == "0"
    res = h.request(S3, 530, MassStatusReqID=7, MassStatusReqType=7)
    assert res[0].fields["OrdStatus"] == "U"


def _spec(kind: str, **kw: Any) -> Any:
    from adapters.venue.faults import FaultSpec

    return FaultSpec(kind=kind, **kw)


@pytest.mark.parametrize("suffix", [".npy", ".jsonl"])
def test_latency_record_ring_and_files(tmp_path: Any, suffix: str) -> None:
    from adapters.venue.latency import LatencyRecord, SendTimes, read_latency_file

    st = SendTimes(8)
    for seq in range(1, 20):
        st.record(seq, 1000 * seq)
    assert st.lookup(19) == 19_000 and st.lookup(3) == -1  # overwritten by 11
    rec = LatencyRecord(st, capacity=4)
    for k in range(6):
        rec.record(50_000 + k, 514, 0, (19 - k) << 32 | k, k + 1, f"{k:020d}")
    rows = rec.ordered()
    assert rec.overwritten == 2 and list(rows["seq_num"]) == [3, 4, 5, 6]
    assert list(rows["trigger_seq"]) == [17, 16, 15, 14]
    assert list(rows["wire_to_wire_ns"]) == [50_002 - 17_000, 50_003 - 16_000,
                                             50_004 - 15_000, 50_005 - 14_000]
    back = read_latency_file(rec.write(tmp_path / f"lat{suffix}"))
    assert back.tobytes() == rows.tobytes()
