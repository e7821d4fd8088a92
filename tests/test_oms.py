"""OMS: every order state transition, the races, exposure, and P&L/fees vs a naive reference."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import oms
from core.risk import RiskLimits
from core.trading import InstrumentConfig, TradingCore
from core.types import (
    ER_CANCEL,
    ER_CANCEL_REJECT,
    ER_ELIMINATION,
    ER_FILL,
    ER_MODIFY,
    ER_MODIFY_REJECT,
    ER_NEW,
    ER_REJECT,
    ER_STATUS,
    EXEC_REPORT,
    MAX_ORDERS,
    OMS_BAD_REPORT,
    OMS_BAD_TRANSITION,
    OMS_FILL_AFTER_CANCEL,
    OMS_LATE_REPORT,
    OMS_OVERFILL,
    OMS_UNKNOWN_FILL,
    OMS_UNKNOWN_INSTRUMENT,
    OMS_UNKNOWN_ORDER,
    OS_CANCELLED,
    OS_EXPIRED,
    OS_FILLED,
    OS_PARTIALLY_FILLED,
    OS_PENDING_CANCEL,
    OS_PENDING_MODIFY,
    OS_PENDING_NEW,
    OS_REJECTED,
    OS_WORKING,
    SIDE_BUY,
    SIDE_SELL,
)

TICK = 25 * 10**9  # ES in PRICE9: MinPriceIncrement 25 (Globex units)
TV = 12.5
SID = 5482


def make_core(maker: float = 0.0, taker: float = 0.0, per: float = 0.0) -> TradingCore:
    cfg = InstrumentConfig(security_id=SID, tick=TICK, tick_value=TV, maker_fee=maker,
                           taker_fee=taker, fee_per_contract=per)
    return TradingCore([cfg], RiskLimits(), cl_ord_id_base=7)


def rep(kind: int, cl: int, **f: int | float) -> np.ndarray:
    r = np.zeros(1, dtype=EXEC_REPORT)
    r[0]["kind"] = kind
    r[0]["cl_ord_id"] = cl
    r[0]["security_id"] = SID
    r[0]["leaves_qty"] = -1
    for k, v in f.items():
        r[0][k] = v
    return r


def apply(core: TradingCore, kind: int, slot: int, **f: int | float) -> None:
    cl = int(core.orders[slot]["cl_ord_id"])
    oms.apply_exec_reports(core.trader, rep(kind, cl, **f))


def order(core: TradingCore, slot: int) -> np.void:
    return core.orders[slot]


def inst(core: TradingCore) -> np.void:
    return core.instruments[0]


def new_order(core: TradingCore, side: int = SIDE_BUY, px: int = 4000, qty: int = 5) -> int:
    return oms.register_order(core.trader, 0, side, px * TICK, qty)


# --------------------------------------------------------------------------
# transitions, one by one
# --------------------------------------------------------------------------
def test_pending_new_counts_in_full_and_cl_ord_id_maps_to_its_row() -> None:
    core = make_core()
    s = new_order(core, qty=5)
    o = order(core, s)
    assert o["status"] == OS_PENDING_NEW
    assert int(o["cl_ord_id"]) & (MAX_ORDERS - 1) == s
    assert int(o["cl_ord_id"]) >> 9 == 7  # the base given at construction
    assert inst(core)["buy_open"] == 5 and inst(core)["sell_open"] == 0
    assert inst(core)["live_orders"] == 1


def test_ack_then_partial_then_full_fill() -> None:
    core = make_core()
    s = new_order(core, qty=5)
    apply(core, ER_NEW, s, order_id=99, price=4000 * TICK, qty=5, leaves_qty=5)
    assert order(core, s)["status"] == OS_WORKING and order(core, s)["order_id"] == 99
    apply(core, ER_FILL, s, qty=2, price=4000 * TICK, leaves_qty=3, cum_qty=2)
    assert order(core, s)["status"] == OS_PARTIALLY_FILLED
    assert inst(core)["position"] == 2 and inst(core)["buy_open"] == 3
    apply(core, ER_FILL, s, qty=3, price=4000 * TICK, leaves_qty=0, cum_qty=5)
    assert order(core, s)["status"] == OS_FILLED
    assert inst(core)["position"] == 5 and inst(core)["buy_open"] == 0
    assert inst(core)["live_orders"] == 0 and core.trader[0]["free_count"] == MAX_ORDERS


def test_reject_releases_the_exposure() -> None:
    core = make_core()
    s = new_order(core, side=SIDE_SELL, qty=4)
    assert inst(core)["sell_open"] == 4
    apply(core, ER_REJECT, s, reason=7)
    assert order(core, s)["status"] == OS_REJECTED
    assert inst(core)["sell_open"] == 0 and inst(core)["live_orders"] == 0


def test_cancel_request_ack_and_reject() -> None:
    core = make_core()
    s = new_order(core, qty=5)
    apply(core, ER_NEW, s, order_id=1, price=4000 * TICK, qty=5, leaves_qty=5)
    oms.request_cancel(core.trader, s)
    assert order(core, s)["status"] == OS_PENDING_CANCEL
    assert inst(core)["buy_open"] == 5  # may still fill
    apply(core, ER_CANCEL_REJECT, s, reason=1)
    assert order(core, s)["status"] == OS_WORKING
    oms.request_cancel(core.trader, s)
    apply(core, ER_CANCEL, s, leaves_qty=0)
    assert order(core, s)["status"] == OS_CANCELLED and inst(core)["buy_open"] == 0


def test_cancel_reject_of_a_partially_filled_order_returns_to_partially_filled() -> None:
    core = make_core()
    s = new_order(core, qty=5)
    apply(core, ER_NEW, s, order_id=1, price=4000 * TICK, qty=5, leaves_qty=5)
    apply(core, ER_FILL, s, qty=1, price=4000 * TICK, leaves_qty=4, cum_qty=1)
    oms.request_cancel(core.trader, s)
    apply(core, ER_CANCEL_REJECT, s)
    assert order(core, s)["status"] == OS_PARTIALLY_FILLED


def test_cancel_of_a_pending_new_order_and_its_late_ack() -> None:
    core = make_core()
    s = new_order(core, qty=5)
    oms.request_cancel(core.trader, s)  # iLink 3 cancels by ClOrdID before the ack
    apply(core, ER_NEW, s, order_id=5, price=4000 * TICK, qty=5, leaves_qty=5)
    assert order(core, s)["status"] == OS_PENDING_CANCEL and order(core, s)["acked"] == 1
    apply(core, ER_CANCEL, s)
    assert order(core, s)["status"] == OS_CANCELLED


def test_modify_exposure_is_the_larger_of_old_and_new_until_answered() -> None:
    core = make_core()
    s = new_order(core, qty=5)
    apply(core, ER_NEW, s, order_id=1, price=4000 * TICK, qty=5, leaves_qty=5)
    oms.request_modify(core.trader, s, 4001 * TICK, 8)
    assert order(core, s)["status"] == OS_PENDING_MODIFY
    assert inst(core)["buy_open"] == 8
    apply(core, ER_MODIFY_REJECT, s)
    assert order(core, s)["status"] == OS_WORKING and inst(core)["buy_open"] == 5
    oms.request_modify(core.trader, s, 4001 * TICK, 3)
    assert inst(core)["buy_open"] == 5  # old leaves still possible
    apply(core, ER_MODIFY, s, price=4001 * TICK, qty=3, leaves_qty=3)
    o = order(core, s)
    assert o["status"] == OS_WORKING and o["price"] == 4001 * TICK and o["qty"] == 3
    assert inst(core)["buy_open"] == 3


def test_modify_after_a_partial_fill_uses_total_qty() -> None:
    core = make_core()
    s = new_order(core, qty=5)
    apply(core, ER_NEW, s, order_id=1, price=4000 * TICK, qty=5, leaves_qty=5)
    apply(core, ER_FILL, s, qty=2, price=4000 * TICK, leaves_qty=3, cum_qty=2)
    oms.request_modify(core.trader, s, 4000 * TICK, 6)  # 4 more to work
    assert inst(core)["buy_open"] == 4
    apply(core, ER_MODIFY, s, price=4000 * TICK, qty=6, leaves_qty=4)
    assert order(core, s)["status"] == OS_PARTIALLY_FILLED
    assert inst(core)["buy_open"] == 4 and inst(core)["position"] == 2
    with pytest.raises(ValueError):
        oms.request_modify(core.trader, s, 4000 * TICK, 2)  # not above what is filled


def test_elimination_expires() -> None:
    core = make_core()
    s = new_order(core, qty=5)
    apply(core, ER_NEW, s, order_id=1, price=4000 * TICK, qty=5, leaves_qty=5)
    apply(core, ER_FILL, s, qty=1, price=4000 * TICK, leaves_qty=4, cum_qty=1)
    apply(core, ER_ELIMINATION, s)
    assert order(core, s)["status"] == OS_EXPIRED and inst(core)["buy_open"] == 0
    assert inst(core)["position"] == 1


def test_status_report_reconciles_and_can_terminate() -> None:
    core = make_core()
    s = new_order(core, qty=5)
    apply(core, ER_STATUS, s, ord_status=OS_WORKING, order_id=3, price=4000 * TICK, qty=5,
          leaves_qty=4, cum_qty=1)
    assert order(core, s)["status"] == OS_WORKING and inst(core)["buy_open"] == 4
    apply(core, ER_STATUS, s, ord_status=OS_CANCELLED)
    assert order(core, s)["status"] == OS_CANCELLED and inst(core)["live_orders"] == 0


def test_status_of_an_unknown_live_order_adopts_it() -> None:
    core = make_core()
    cl = (123 << 9) | 17
    oms.apply_exec_reports(core.trader, rep(ER_STATUS, cl, ord_status=OS_WORKING, order_id=8,
                                            side=SIDE_SELL, price=4002 * TICK, qty=3,
                                            leaves_qty=3, cum_qty=0))
    o = order(core, 17)
    assert o["cl_ord_id"] == cl and o["layer"] == -1 and o["status"] == OS_WORKING
    assert inst(core)["sell_open"] == 3 and core.trader[0]["adopted_orders"] == 1
    assert int(core.trader[0]["next_cl_seq"]) == 124  # never reuse its id
    # the adopted row is out of the free ring: 511 more orders fit, no more
    for _ in range(MAX_ORDERS - 1):
        slot = new_order(core, qty=1)
        assert slot != 17
    with pytest.raises(RuntimeError):
        new_order(core, qty=1)


# --------------------------------------------------------------------------
# races and anomalies
# --------------------------------------------------------------------------
def test_fill_while_cancel_in_flight_is_applied_and_counted() -> None:
    core = make_core()
    s = new_order(core, qty=5)
    apply(core, ER_NEW, s, order_id=1, price=4000 * TICK, qty=5, leaves_qty=5)
    oms.request_cancel(core.trader, s)
    apply(core, ER_FILL, s, qty=2, price=4000 * TICK, leaves_qty=3, cum_qty=2)
    assert order(core, s)["status"] == OS_PENDING_CANCEL
    assert inst(core)["position"] == 2 and inst(core)["buy_open"] == 3
    assert core.oms_counts[OMS_FILL_AFTER_CANCEL] == 1
    # the rest fills before the cancel arrives: the cancel is then rejected, late
    apply(core, ER_FILL, s, qty=3, price=4000 * TICK, leaves_qty=0, cum_qty=5)
    assert order(core, s)["status"] == OS_FILLED
    apply(core, ER_CANCEL_REJECT, s)
    assert core.oms_counts[OMS_LATE_REPORT] == 1 and core.oms_counts[OMS_UNKNOWN_ORDER] == 0
    assert inst(core)["position"] == 5 and inst(core)["buy_open"] == 0


def test_fill_after_cancel_ack_is_still_applied() -> None:
    core = make_core()
    s = new_order(core, qty=5)
    apply(core, ER_NEW, s, order_id=1, price=4000 * TICK, qty=5, leaves_qty=5)
    apply(core, ER_CANCEL, s)
    apply(core, ER_FILL, s, qty=1, side=SIDE_BUY, price=4000 * TICK, leaves_qty=0, cum_qty=1)
    assert inst(core)["position"] == 1
    assert core.oms_counts[OMS_FILL_AFTER_CANCEL] == 1


def test_fill_for_a_reused_row_goes_through_the_security_id() -> None:
    core = make_core()
    s = new_order(core, qty=1)
    old_cl = int(order(core, s)["cl_ord_id"])
    apply(core, ER_REJECT, s)
    # cycle the free ring so that row s is reused by another order
    for _ in range(MAX_ORDERS):
        x = new_order(core, qty=1)
        apply(core, ER_REJECT, x)
    assert int(order(core, s)["cl_ord_id"]) != old_cl
    oms.apply_exec_reports(core.trader, rep(ER_FILL, old_cl, side=SIDE_SELL, qty=2,
                                            price=4001 * TICK, leaves_qty=0))
    assert inst(core)["position"] == -2
    assert core.oms_counts[OMS_UNKNOWN_FILL] == 1
    bad = rep(ER_FILL, old_cl, side=SIDE_SELL, qty=2, price=4001 * TICK, security_id=1)
    oms.apply_exec_reports(core.trader, bad)
    assert core.oms_counts[OMS_UNKNOWN_INSTRUMENT] == 1 and inst(core)["position"] == -2


def test_anomalies_are_counted_not_raised() -> None:
    core = make_core()
    s = new_order(core, qty=2)
    apply(core, ER_NEW, s, order_id=1, price=4000 * TICK, qty=2, leaves_qty=2)
    apply(core, ER_NEW, s, order_id=1)  # duplicate ack
    assert core.oms_counts[OMS_BAD_TRANSITION] == 1
    apply(core, ER_FILL, s, qty=0, price=4000 * TICK)  # zero qty
    apply(core, 77, s)  # unknown kind
    assert core.oms_counts[OMS_BAD_REPORT] == 2
    apply(core, ER_FILL, s, qty=3, price=4000 * TICK, leaves_qty=0, cum_qty=3)
    assert core.oms_counts[OMS_OVERFILL] == 1 and inst(core)["position"] == 3


# --------------------------------------------------------------------------
# random lifecycles vs a naive model of the same state machine
# --------------------------------------------------------------------------
class NaiveOrder:
    def __init__(self, side: int, qty: int) -> None:
        self.side, self.qty, self.leaves, self.cum = side, qty, qty, 0
        self.status = "pending_new"
        self.acked = False
        self.pending: int | None = None  # requested total qty of a modify in flight
        self.cancel_in_flight = False

    @property
    def live(self) -> bool:
        return self.status not in ("filled", "cancelled", "rejected", "expired")

    def exposure(self) -> int:
        if not self.live:
            return 0
        e = self.leaves
        if self.pending is not None:
            e = max(e, self.pending - self.cum)
        return max(e, 0)

    def settle(self) -> None:
        if self.cancel_in_flight:
            self.status = "pending_cancel"
        elif self.pending is not None:
            self.status = "pending_modify"
        elif not self.acked:
            self.status = "pending_new"
        else:
            self.status = "partially_filled" if self.cum else "working"


STATUS = {"pending_new": OS_PENDING_NEW, "working": OS_WORKING,
          "partially_filled": OS_PARTIALLY_FILLED, "filled": OS_FILLED,
          "pending_cancel": OS_PENDING_CANCEL, "pending_modify": OS_PENDING_MODIFY,
          "cancelled": OS_CANCELLED, "rejected": OS_REJECTED, "expired": OS_EXPIRED}


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_lifecycles_match_the_naive_model(data: st.DataObject) -> None:
    core = make_core()
    naive: dict[int, NaiveOrder] = {}
    position = 0
    for _ in range(data.draw(st.integers(5, 60))):
        live = [s for s, o in naive.items() if o.live]
        if not live or data.draw(st.integers(0, 4)) == 0:
            side = data.draw(st.sampled_from([SIDE_BUY, SIDE_SELL]))
            qty = data.draw(st.integers(1, 9))
            s = new_order(core, side=side, qty=qty)
            naive[s] = NaiveOrder(side, qty)
            continue
        s = data.draw(st.sampled_from(live))
        o = naive[s]
        moves = ["fill", "elim", "unsolicited_cancel"]
        if not o.acked:
            moves += ["ack", "reject"]
        if not o.cancel_in_flight:
            moves.append("cancel_req")
        else:
            moves += ["cancel_ack", "cancel_rej"]
        if o.acked and o.status in ("working", "partially_filled"):
            moves.append("modify_req")
        if o.pending is not None:
            moves += ["modify_ack", "modify_rej"]
        mv = data.draw(st.sampled_from(moves))
        if mv == "ack":
            apply(core, ER_NEW, s, order_id=s + 1, price=4000 * TICK, qty=o.qty,
                  leaves_qty=o.leaves)
            o.acked = True
            o.settle()
        elif mv == "reject":
            apply(core, ER_REJECT, s)
            o.status = "rejected"
        elif mv == "fill":
            q = data.draw(st.integers(1, o.leaves)) if o.leaves > 0 else 0
            if q == 0:
                continue
            o.leaves -= q
            o.cum += q
            o.acked = True
            position += q if o.side == SIDE_BUY else -q
            apply(core, ER_FILL, s, qty=q, price=4000 * TICK, leaves_qty=o.leaves, cum_qty=o.cum)
            if o.leaves == 0:
                o.status = "filled"
            else:
                o.settle()
        elif mv == "elim":
            apply(core, ER_ELIMINATION, s)
            o.status = "expired"
        elif mv in ("unsolicited_cancel", "cancel_ack"):
            apply(core, ER_CANCEL, s)
            o.status = "cancelled"
        elif mv == "cancel_req":
            oms.request_cancel(core.trader, s)
            o.cancel_in_flight = True
            o.settle()
        elif mv == "cancel_rej":
            apply(core, ER_CANCEL_REJECT, s)
            o.cancel_in_flight = False
            o.settle()
        elif mv == "modify_req":
            new_total = o.cum + data.draw(st.integers(1, 9))
            oms.request_modify(core.trader, s, 4001 * TICK, new_total)
            o.pending = new_total
            o.settle()
        elif mv == "modify_ack":
            assert o.pending is not None
            o.qty = o.pending
            o.leaves = max(o.pending - o.cum, 0)  # fills meanwhile may have used it up
            o.pending = None
            apply(core, ER_MODIFY, s, price=4001 * TICK, qty=o.qty, leaves_qty=o.leaves)
            if o.leaves == 0:
                o.status = "filled"
            else:
                o.settle()
        elif mv == "modify_rej":
            o.pending = None
            apply(core, ER_MODIFY_REJECT, s)
            o.settle()
        # check everything after every step
        for slot, no in naive.items():
            if no.live:
                got = core.orders[slot]
                assert got["status"] == STATUS[no.status], (slot, no.status)
                assert got["leaves"] == no.leaves and got["cum"] == no.cum
        buy = sum(no.exposure() for no in naive.values() if no.side == SIDE_BUY)
        sell = sum(no.exposure() for no in naive.values() if no.side == SIDE_SELL)
        assert inst(core)["buy_open"] == buy and inst(core)["sell_open"] == sell
        assert inst(core)["position"] == position
        assert inst(core)["live_orders"] == sum(no.live for no in naive.values())
    expected_races = core.oms_counts[OMS_FILL_AFTER_CANCEL]
    assert core.oms_counts.sum() == expected_races  # nothing unexpected


# --------------------------------------------------------------------------
# P&L and fees vs a naive average-cost ledger in exact fractions
# --------------------------------------------------------------------------
class NaiveLedger:
    def __init__(self, maker: float, taker: float, per: float) -> None:
        self.pos = 0
        self.cost = Fraction(0)  # signed entry value of the open position, ticks
        self.realised = Fraction(0)
        self.cash = Fraction(0)
        self.fees = Fraction(0)
        self.fee = (Fraction(maker), Fraction(taker), Fraction(per))

    def fill(self, side: int, qty: int, px: int, taker: bool) -> None:
        q = qty if side == SIDE_BUY else -qty
        self.cash -= q * px
        self.fees += qty * (self.fee[1 if taker else 0] + self.fee[2])
        for _ in range(qty):  # one contract at a time: obviously right
            step = 1 if q > 0 else -1
            if self.pos == 0 or (self.pos > 0) == (step > 0):
                self.cost += step * px
            else:
                avg = self.cost / self.pos
                self.realised += (px - avg) * (1 if self.pos > 0 else -1)
                self.cost -= avg * (1 if self.pos > 0 else -1)
            self.pos += step


fills_st = st.lists(
    st.tuples(st.sampled_from([SIDE_BUY, SIDE_SELL]), st.integers(1, 30),
              st.integers(3900, 4100), st.booleans()),
    min_size=1, max_size=60)


@settings(max_examples=80, deadline=None)
@given(fills=fills_st, mark=st.integers(3900, 4100))
def test_position_pnl_and_fees_match_a_naive_ledger(
        fills: list[tuple[int, int, int, bool]], mark: int) -> None:
    maker, taker, per = 0.25, 0.85, 0.1
    core = make_core(maker, taker, per)
    ref = NaiveLedger(maker, taker, per)
    for side, qty, px, is_taker in fills:
        s = new_order(core, side=side, px=px, qty=qty)
        apply(core, ER_NEW, s, order_id=1, price=px * TICK, qty=qty, leaves_qty=qty)
        apply(core, ER_FILL, s, qty=qty, price=px * TICK, leaves_qty=0, cum_qty=qty,
              aggressor=int(is_taker))
        ref.fill(side, qty, px, is_taker)
    oms.mark(core.trader, 0, mark * TICK)
    i = inst(core)
    assert i["position"] == ref.pos
    assert float(i["realised"]) == pytest.approx(float(ref.realised) * TV, abs=1e-6)
    assert float(i["fees"]) == pytest.approx(float(ref.fees), abs=1e-9)
    unreal = (ref.pos * mark - ref.cost) * Fraction(TV)
    assert float(i["unrealised"]) == pytest.approx(float(unreal), abs=1e-6)
    # gross P&L = cash + position at the mark, whatever the cost method
    gross = (ref.cash + ref.pos * mark) * Fraction(TV)
    assert float(i["net_pnl"]) == pytest.approx(float(gross - ref.fees), abs=1e-6)
    assert i["volume"] == sum(q for _, q, _, _ in fills)


def test_tick_value_of_es_from_its_definition() -> None:
    # ES (reference/README: MinPriceIncrement 25 Globex units, DisplayFactor 0.01,
    # UnitOfMeasureQty 50): 0.25 index points x $50 = $12.50 per tick
    assert oms.tick_value(25 * 10**9, -9, 10**7, 50 * 10**9) == pytest.approx(12.5)
    # legacy exponent -7: the same tick is 25 * 10**7
    assert oms.tick_value(25 * 10**7, -7, 10**7, 50 * 10**9) == pytest.approx(12.5)


def test_restore_position_then_pnl_continues() -> None:
    core = make_core()
    oms.restore_position(core.trader, 0, 3, 4000.0 * TICK, realised=-125.0, fees=7.5)
    s = new_order(core, side=SIDE_SELL, px=4002, qty=3)
    apply(core, ER_FILL, s, qty=3, price=4002 * TICK, leaves_qty=0, cum_qty=3)
    i = inst(core)
    assert i["position"] == 0
    assert float(i["realised"]) == pytest.approx(-125.0 + 3 * 2 * TV)
    assert float(i["fees"]) == pytest.approx(7.5)
