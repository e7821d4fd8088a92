"""Risk: every pre-trade check, the trader state machine, the kill switch, the in-flight race."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.clock import ManualClock
from adapters.sim_gateway import LatencyModel, SimGateway, SimInstrument
from core import oms, risk
from core.risk import InstrumentLimits, RiskLimits
from core.strategy.market_maker import MarketMakerParams
from core.trading import VOL_COL, InstrumentConfig, TradingCore, new_market_view, set_market
from core.types import (
    ACT_CANCEL,
    ACT_NEW,
    ER_CANCEL,
    ER_CANCEL_REJECT,
    ER_FILL,
    ER_NEW,
    EXEC_REPORT,
    MAX_ACTIONS,
    MAX_ORDERS,
    MDS_RECOVERING,
    MDS_STALE,
    OMS_BAD_TRANSITION,
    OMS_CANCEL_GIVE_UP,
    OMS_OVERFILL,
    OMS_UNKNOWN_FILL,
    OMS_UNKNOWN_INSTRUMENT,
    OMS_UNKNOWN_ORDER,
    OS_CANCELLED,
    OS_PENDING_CANCEL,
    RISK_ACTIONS_FULL,
    RISK_BAD_ORDER,
    RISK_CANCEL_RATE,
    RISK_DAILY_LOSS,
    RISK_DRAWDOWN,
    RISK_GATEWAY_DOWN,
    RISK_HALTED,
    RISK_INSTRUMENT_DISABLED,
    RISK_KILL_SWITCH,
    RISK_MAX_NOTIONAL,
    RISK_MAX_ORDER_QTY,
    RISK_MAX_POSITION,
    RISK_MAX_WORKING,
    RISK_MD_RECOVERING,
    RISK_MODEL_NAN,
    RISK_NO_REFERENCE,
    RISK_OK,
    RISK_OPERATOR,
    RISK_ORDER_TABLE_FULL,
    RISK_POSITION_BREACH,
    RISK_PRICE_COLLAR,
    RISK_REDUCE_ONLY,
    RISK_STALE_DATA,
    RISK_SUBMIT_RATE,
    SIDE_BUY,
    SIDE_SELL,
    TRADER_ACTIVE,
    TRADER_HALTED,
    TRADER_REDUCING,
    TRADER_STARTING,
)

TICK = 25 * 10**9
TV = 12.5
SID = 5482
NOW = 10_000_000_000
MID = 4000.5  # ticks, with the default book 4000 / 4001


class Rig:
    """A trading core, its market view, features and alpha, started and ACTIVE."""

    def __init__(self, limits: RiskLimits | None = None, il: InstrumentLimits | None = None,
                 params: MarketMakerParams | None = None, activate: bool = True) -> None:
        cfg = InstrumentConfig(security_id=SID, tick=TICK, tick_value=TV,
                               limits=il or InstrumentLimits(max_order_qty=10, max_position=20,
                                                             collar_ticks=20),
                               params=params or MarketMakerParams(quote_size=0))
        self.core = TradingCore([cfg], limits or RiskLimits())
        self.market = new_market_view(1)
        self.features = self.core.features_buffer()
        self.features[0, VOL_COL] = 1.0
        self.alpha = np.zeros(1)
        self.book(4000, 4001)
        if activate:
            self.core.finish_startup()
            self.core.set_gateway_up(True)
            assert self.core.resume() == RISK_OK

    def book(self, bid: int | None, ask: int | None, now: int = NOW, **kw: int) -> None:
        set_market(self.market, 0, None if bid is None else bid * TICK,
                   None if ask is None else ask * TICK, now, **kw)

    def check(self, side: int, px: float, qty: int, now: int = NOW) -> int:
        return risk.check_new_order(self.core.trader, self.market, 0, side, int(px * TICK), qty,
                                    now)

    def update(self, now: int = NOW) -> None:
        risk.update_risk(self.core.trader, self.market, self.features, self.alpha, VOL_COL, now)

    def decide(self, n_reports: int = 0, now: int = NOW) -> np.ndarray:
        k = self.core.decide(self.market, self.features, self.alpha, n_reports, now, 1)
        return self.core.actions[:k].copy()

    def fill(self, side: int, qty: int, px: float) -> None:
        s = oms.register_order(self.core.trader, 0, side, int(px * TICK), qty)
        r = np.zeros(1, dtype=EXEC_REPORT)
        r[0] = (self.core.orders[s]["cl_ord_id"], 1, int(px * TICK), qty, 0, qty, 0.0, 0, 0, 0,
                SID, 0, ER_FILL, side, 0, 0)
        oms.apply_exec_reports(self.core.trader, r)

    @property
    def t(self) -> np.void:
        return self.core.trader[0]

    @property
    def inst(self) -> np.void:
        return self.core.instruments[0]


# --------------------------------------------------------------------------
# the state machine
# --------------------------------------------------------------------------
def test_starting_halted_active_reducing_halted() -> None:
    rig = Rig(activate=False)
    assert rig.core.state == TRADER_STARTING
    assert len(rig.decide()) == 0  # nothing leaves while starting
    assert rig.core.resume() == RISK_HALTED  # not before start-up is finished
    rig.core.finish_startup()
    assert rig.core.state == TRADER_HALTED
    assert rig.core.resume() == RISK_GATEWAY_DOWN  # resume only if risk allows
    rig.core.set_gateway_up(True)
    assert rig.core.resume() == RISK_OK and rig.core.state == TRADER_ACTIVE
    assert rig.core.reduce_only() and rig.core.state == TRADER_REDUCING
    assert rig.core.resume() == RISK_OK and rig.core.state == TRADER_ACTIVE
    rig.core.reduce_only()
    rig.core.halt()
    assert rig.core.state == TRADER_HALTED and rig.t["halt_reason"] == RISK_OPERATOR
    assert not rig.core.reduce_only()  # only from ACTIVE


def test_gateway_loss_halts_and_a_reconnect_does_not_resume() -> None:
    rig = Rig()
    rig.core.set_gateway_up(False)
    assert rig.core.state == TRADER_HALTED and rig.t["halt_reason"] == RISK_GATEWAY_DOWN
    assert rig.core.halt_counts[RISK_GATEWAY_DOWN] == 1
    rig.core.set_gateway_up(True)
    rig.update()
    assert rig.core.state == TRADER_HALTED
    assert rig.core.resume() == RISK_OK


def test_halted_refuses_new_orders_and_kill_switch_says_why() -> None:
    rig = Rig()
    assert rig.check(SIDE_BUY, 4000, 1) == RISK_OK
    rig.core.halt()
    assert rig.check(SIDE_BUY, 4000, 1) == RISK_HALTED
    rig.core.kill_switch(NOW)
    assert rig.check(SIDE_BUY, 4000, 1) == RISK_KILL_SWITCH
    assert rig.t["kill_switch"] == 1
    assert rig.core.resume() == RISK_OK and rig.t["kill_switch"] == 0


# --------------------------------------------------------------------------
# pre-trade checks, one by one
# --------------------------------------------------------------------------
def test_max_order_qty() -> None:
    rig = Rig()
    assert rig.check(SIDE_BUY, 4000, 10) == RISK_OK
    assert rig.check(SIDE_BUY, 4000, 11) == RISK_MAX_ORDER_QTY
    assert rig.check(SIDE_BUY, 4000, 0) == RISK_BAD_ORDER
    assert rig.check(3, 4000, 1) == RISK_BAD_ORDER


def test_worst_case_position_counts_filled_working_and_in_flight() -> None:
    rig = Rig()
    rig.fill(SIDE_BUY, 6, 4000)  # filled: +6
    oms.register_order(rig.core.trader, 0, SIDE_BUY, 3999 * TICK, 9)  # in flight
    assert rig.inst["position"] + rig.inst["buy_open"] == 15
    assert rig.check(SIDE_BUY, 3999, 5) == RISK_OK  # 20
    assert rig.check(SIDE_BUY, 3999, 6) == RISK_MAX_POSITION  # 21
    # the sell side: 6 - 10 - q >= -20
    oms.register_order(rig.core.trader, 0, SIDE_SELL, 4001 * TICK, 10)
    assert rig.check(SIDE_SELL, 4001, 10) == RISK_OK
    oms.register_order(rig.core.trader, 0, SIDE_SELL, 4001 * TICK, 10)
    assert rig.check(SIDE_SELL, 4001, 7) == RISK_MAX_POSITION


def test_max_notional_is_gross_worst_case_at_the_reference() -> None:
    rig = Rig(RiskLimits(max_notional=150_000.0))
    rig.update()
    per_contract = MID * TV  # 50006.25
    assert rig.check(SIDE_BUY, 4000, 2) == RISK_OK  # 100012.5
    assert rig.check(SIDE_BUY, 4000, 3) == RISK_MAX_NOTIONAL  # 150018.75
    oms.register_order(rig.core.trader, 0, SIDE_BUY, 4000 * TICK, 2)
    rig.update()
    assert rig.t["gross_notional"] == pytest.approx(2 * per_contract)
    assert rig.check(SIDE_BUY, 4000, 1) == RISK_MAX_NOTIONAL
    # a sell that stays within the long worst case adds nothing to the gross notional
    assert rig.check(SIDE_SELL, 4001, 2) == RISK_OK


def test_price_collar_and_exchange_band() -> None:
    rig = Rig()
    assert rig.check(SIDE_BUY, MID - 19.5, 1) == RISK_OK
    assert rig.check(SIDE_BUY, MID - 20.5, 1) == RISK_PRICE_COLLAR
    assert rig.check(SIDE_SELL, MID + 20.5, 1) == RISK_PRICE_COLLAR
    rig.market[0]["high_limit"] = 4010 * TICK
    rig.market[0]["low_limit"] = 3995 * TICK
    assert rig.check(SIDE_SELL, 4010, 1) == RISK_OK
    assert rig.check(SIDE_SELL, 4011, 1) == RISK_PRICE_COLLAR
    assert rig.check(SIDE_BUY, 3994, 1) == RISK_PRICE_COLLAR
    assert risk.check_new_order(rig.core.trader, rig.market, 0, SIDE_BUY, 4000 * TICK + 1, 1,
                                NOW) == RISK_BAD_ORDER  # off tick


def test_no_reference_price() -> None:
    rig = Rig()
    rig.book(None, None)
    assert rig.check(SIDE_BUY, 4000, 1) == RISK_NO_REFERENCE
    rig.book(None, None, last_trade_px=4000 * TICK)  # the last trade will do
    assert rig.check(SIDE_BUY, 4000, 1) == RISK_OK


def test_max_working_orders() -> None:
    rig = Rig(RiskLimits(max_working_orders=3))
    for _ in range(3):
        oms.register_order(rig.core.trader, 0, SIDE_BUY, 3990 * TICK, 1)
    assert rig.check(SIDE_BUY, 3990, 1) == RISK_MAX_WORKING


@settings(max_examples=40, deadline=None)
@given(limit=st.integers(1, 6), window=st.integers(1, 50),
       gaps=st.lists(st.integers(0, 30), min_size=1, max_size=80), cancel=st.booleans())
def test_throttles_are_sliding_windows(limit: int, window: int, gaps: list[int],
                                       cancel: bool) -> None:
    lim = RiskLimits(submit_limit=limit, submit_window_ns=window, cancel_limit=limit,
                     cancel_window_ns=window)
    rig = Rig(lim, activate=False)
    sent: deque[int] = deque()
    now = 0
    for g in gaps:
        now += g
        while sent and sent[0] <= now - window:  # naive: keep the window's sends
            sent.popleft()
        allowed = len(sent) < limit
        r = risk.throttle(rig.core.trader, now, cancel=cancel)
        assert r == (RISK_OK if allowed else RISK_CANCEL_RATE if cancel else RISK_SUBMIT_RATE)
        if allowed:
            sent.append(now)
    # protective cancels are never throttled
    assert risk.throttle(rig.core.trader, now, cancel=True, protective=True,
                         record=False) == RISK_OK


def test_submit_throttle_is_a_pre_trade_check() -> None:
    rig = Rig(RiskLimits(submit_limit=2, submit_window_ns=1000))
    risk.throttle(rig.core.trader, NOW)
    risk.throttle(rig.core.trader, NOW)
    assert rig.check(SIDE_BUY, 4000, 1) == RISK_SUBMIT_RATE
    assert rig.check(SIDE_BUY, 4000, 1, now=NOW + 1000) == RISK_OK


def test_daily_loss_halts_and_blocks_resume_until_a_new_day() -> None:
    rig = Rig(RiskLimits(max_daily_loss=1000.0, max_drawdown=1e9))
    rig.fill(SIDE_BUY, 10, 4000)
    rig.book(3992, 3993)  # mid 3992.5: -7.5 ticks x 10 x 12.5 = -937.5
    rig.update()
    assert rig.core.state == TRADER_ACTIVE
    rig.book(3991, 3992)  # -1062.5
    rig.update()
    assert rig.core.state == TRADER_HALTED and rig.t["halt_reason"] == RISK_DAILY_LOSS
    assert rig.t["daily_pnl"] == pytest.approx(-1062.5)
    assert rig.check(SIDE_SELL, 3992, 1) == RISK_HALTED
    assert rig.core.resume() == RISK_DAILY_LOSS
    rig.core.new_trading_day()
    rig.update()
    assert rig.core.resume() == RISK_OK


def test_drawdown_from_the_peak() -> None:
    rig = Rig(RiskLimits(max_daily_loss=1e9, max_drawdown=500.0))
    rig.fill(SIDE_BUY, 4, 4000)
    rig.book(4010, 4011)  # mid 4010.5: +10.5 ticks x 4 x 12.5 = +525, the peak
    rig.update()
    peak = float(rig.t["daily_pnl"])
    assert peak == pytest.approx(525.0)
    rig.book(4001, 4002)  # mid 4001.5: +75, drawdown 450
    rig.update()
    assert rig.core.state == TRADER_ACTIVE and rig.t["drawdown"] == pytest.approx(450.0)
    rig.book(3999, 4000)  # mid 3999.5: -25, drawdown 550
    rig.update()
    assert rig.core.state == TRADER_HALTED and rig.t["halt_reason"] == RISK_DRAWDOWN
    assert rig.core.resume() == RISK_DRAWDOWN
    assert rig.core.resume(reset_drawdown=True) == RISK_OK  # the operator acknowledges it


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("stale", RISK_STALE_DATA), ("feed_stale", RISK_STALE_DATA),
     ("recovering", RISK_MD_RECOVERING), ("nan_alpha", RISK_MODEL_NAN),
     ("inf_vol", RISK_MODEL_NAN), ("disabled", RISK_INSTRUMENT_DISABLED)])
def test_data_faults_pause_the_instrument_and_cancel_its_orders(fault: str, reason: int) -> None:
    rig = Rig(RiskLimits(stale_ns=1_000_000), params=MarketMakerParams(quote_size=1))
    quotes = sorted(int(a["slot"]) for a in rig.decide())
    assert len(quotes) == 2
    now = NOW
    if fault == "stale":
        now = NOW + 1_000_001
    elif fault == "feed_stale":
        rig.market[0]["status"] = MDS_STALE
    elif fault == "recovering":
        rig.market[0]["status"] = MDS_RECOVERING
    elif fault == "nan_alpha":
        rig.alpha[0] = np.nan
    elif fault == "inf_vol":
        rig.features[0, VOL_COL] = np.inf
    else:
        rig.inst["enabled"] = 0
    acts = rig.decide(now=now)
    assert rig.inst["pause_reason"] == reason
    assert rig.core.halt_counts[reason] == 1
    assert rig.core.state == TRADER_ACTIVE  # only this instrument stops
    assert sorted((a["action"], a["slot"]) for a in acts) == [(ACT_CANCEL, q) for q in quotes]
    assert rig.check(SIDE_BUY, 3999, 1, now=now) == reason


def test_a_paused_instrument_quotes_again_once_its_data_is_sound() -> None:
    rig = Rig(RiskLimits(stale_ns=1_000_000), params=MarketMakerParams(quote_size=1))
    rig.alpha[0] = np.nan
    assert len(rig.decide()) == 0
    rig.alpha[0] = 0.0
    acts = rig.decide()
    assert rig.inst["pause_reason"] == RISK_OK
    assert sorted(a["action"] for a in acts) == [ACT_NEW, ACT_NEW]


def test_halt_on_data_fault_halts_everything() -> None:
    rig = Rig(RiskLimits(halt_on_data_fault=True))
    rig.market[0]["status"] = MDS_RECOVERING
    rig.decide()
    assert rig.core.state == TRADER_HALTED and rig.t["halt_reason"] == RISK_MD_RECOVERING
    rig.market[0]["status"] = 0
    rig.decide()
    assert rig.core.state == TRADER_HALTED  # needs an explicit resume


def test_reducing_allows_only_position_reducing_orders() -> None:
    rig = Rig()
    rig.fill(SIDE_BUY, 3, 4000)
    rig.core.reduce_only()
    assert rig.check(SIDE_BUY, 3999, 1) == RISK_REDUCE_ONLY
    assert rig.check(SIDE_SELL, 4001, 3) == RISK_OK
    assert rig.check(SIDE_SELL, 4001, 4) == RISK_REDUCE_ONLY  # would flip short
    oms.register_order(rig.core.trader, 0, SIDE_SELL, 4001 * TICK, 2)
    assert rig.check(SIDE_SELL, 4001, 2) == RISK_REDUCE_ONLY  # 2 + 2 working > 3
    assert rig.check(SIDE_SELL, 4001, 1) == RISK_OK


def test_reduced_limit_puts_the_trader_in_reducing_until_back_within() -> None:
    rig = Rig()
    rig.fill(SIDE_BUY, 8, 4000)
    rig.core.reload_limits(RiskLimits(instruments=(InstrumentLimits(10, 5, 20),)))
    rig.update()
    assert rig.core.state == TRADER_REDUCING and rig.t["halt_reason"] == RISK_POSITION_BREACH
    assert rig.core.resume() == RISK_POSITION_BREACH
    rig.fill(SIDE_SELL, 3, 4001)
    rig.update()
    assert rig.core.state == TRADER_ACTIVE


def test_every_refusal_is_counted_by_reason() -> None:
    rig = Rig(RiskLimits(max_working_orders=1),
              params=MarketMakerParams(quote_size=1, n_layers=2))
    acts = rig.decide()
    assert len(acts) == 1  # the first quote; the other three refused
    assert rig.core.reject_counts[RISK_MAX_WORKING] == 3
    assert rig.core.reject_counts.sum() == 3


# --------------------------------------------------------------------------
# the in-flight race and the kill switch
# --------------------------------------------------------------------------
def ack_and_fill_all(rig: Rig, acts: Any) -> int:
    """Venue stand-in: every new order in ``acts`` is acked and filled in full."""
    rep = rig.core.reports
    n = 0
    for a in acts:
        if a["action"] != ACT_NEW:
            continue
        rep[n] = (a["cl_ord_id"], 7, a["price"], a["qty"], a["qty"], 0, 0.0, 0, 0, 0, SID, 0,
                  ER_NEW, a["side"], 0, 0)
        rep[n + 1] = (a["cl_ord_id"], 7, a["price"], a["qty"], 0, a["qty"], 0.0, 0, 0, 0, SID,
                      0, ER_FILL, a["side"], 0, 0)
        n += 2
    return n


def test_fills_of_orders_sent_before_the_cap_never_let_new_orders_pass_it() -> None:
    rig = Rig(il=InstrumentLimits(max_order_qty=10, max_position=5, collar_ticks=20),
              params=MarketMakerParams(quote_size=3, n_layers=2))
    acts = rig.decide()
    buys = [a for a in acts if a["side"] == SIDE_BUY]
    assert sorted(int(a["qty"]) for a in buys) == [2, 3]  # trimmed to the cap of 5
    # every buy fills while nothing else moves: worst case is now all position
    n = ack_and_fill_all(rig, buys)
    acts = rig.decide(n)
    assert rig.inst["position"] == 5
    assert not [a for a in acts if a["action"] == ACT_NEW and a["side"] == SIDE_BUY]
    assert rig.check(SIDE_BUY, 3990, 1) == RISK_MAX_POSITION


def fills_position(reports: np.ndarray) -> int:
    f = reports[reports["kind"] == ER_FILL]
    return int(np.where(f["side"] == SIDE_BUY, f["qty"], -f["qty"]).sum())


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cap=st.integers(1, 8), size=st.integers(1, 4),
       layers=st.integers(1, 3))
def test_random_market_and_venue_latency_never_breach_the_worst_case_cap(
        seed: int, cap: int, size: int, layers: int) -> None:
    rng = np.random.default_rng(seed)
    clock = ManualClock()
    sim = SimGateway(clock, [SimInstrument(SID, TICK)],
                     LatencyModel.jitter(20_000, 30_000, seed), LatencyModel.jitter(20_000,
                                                                                    30_000,
                                                                                    seed + 1))
    sim.connect()
    rig = Rig(RiskLimits(submit_limit=1000, cancel_limit=1000, stale_ns=10**12),
              il=InstrumentLimits(max_order_qty=10, max_position=cap, collar_ticks=50),
              params=MarketMakerParams(quote_size=size, n_layers=layers, requote_ticks=1))
    core = rig.core
    core.bind(rig.market, rig.features, rig.alpha)
    mid = 4000
    venue_pos = 0
    for _ in range(300):
        clock.advance(int(rng.integers(1_000, 60_000)))
        mid += int(rng.integers(-1, 2))
        sim.on_book(SID, SIDE_BUY, mid * TICK, 5, end_of_event=False)
        sim.on_book(SID, SIDE_SELL, (mid + 1) * TICK, 5)
        if rng.random() < 0.4:  # aggressive flow both ways, sometimes through our quotes
            side = SIDE_SELL if rng.random() < 0.5 else SIDE_BUY
            px = mid - int(rng.integers(0, 3)) if side == SIDE_SELL else mid + 1 + int(
                rng.integers(0, 3))
            sim.on_trade(SID, px * TICK, int(rng.integers(1, 8)), side)
        rig.book(mid, mid + 1, now=clock.now_ns())
        n = sim.poll(core.reports)
        venue_pos += fills_position(core.reports[:n])
        k = core.tick(n, clock.now_ns(), 1)
        i = rig.inst
        # after every tick: the worst case on both sides is within the cap
        assert i["position"] + i["buy_open"] <= cap
        assert i["position"] - i["sell_open"] >= -cap
        assert abs(int(i["position"])) <= cap
        sim.send(core.actions, k)
    # the venue's fills and the OMS agree once everything has arrived
    clock.advance(10**9)
    n = sim.poll(core.reports)
    venue_pos += fills_position(core.reports[:n])
    core.tick(n, clock.now_ns(), 1)
    assert rig.inst["position"] == venue_pos
    for c in (OMS_UNKNOWN_ORDER, OMS_UNKNOWN_FILL, OMS_UNKNOWN_INSTRUMENT, OMS_BAD_TRANSITION,
              OMS_OVERFILL):
        assert core.oms_counts[c] == 0  # only the expected races (late reports) happen


def test_kill_switch_during_a_burst_leaves_no_working_order_and_sends_nothing_new() -> None:
    clock = ManualClock(start_ns=NOW)
    sim = SimGateway(clock, [SimInstrument(SID, TICK)], LatencyModel.constant(50_000),
                     LatencyModel.constant(50_000))
    sim.connect()
    rig = Rig(params=MarketMakerParams(quote_size=1, n_layers=3))
    core = rig.core
    sim.on_book(SID, SIDE_BUY, 4000 * TICK, 10)
    sim.on_book(SID, SIDE_SELL, 4001 * TICK, 10)
    acts = rig.decide(now=clock.now_ns())
    assert len(acts) == 6  # a burst of six new orders on the wire
    sim.send(core.actions, len(acts))
    clock.advance(30_000)  # none has reached the venue yet
    k = core.kill_switch(clock.now_ns())
    assert k == 6 and all(a["action"] == ACT_CANCEL for a in core.actions[:k])
    assert all(core.orders[int(a["slot"])]["status"] == OS_PENDING_CANCEL
               for a in core.actions[:k])
    sim.send(core.actions, k)
    sim.mass_cancel()
    new_after_kill = 0
    for _ in range(20):
        clock.advance(20_000)
        rig.book(4000, 4001, now=clock.now_ns())
        n = sim.poll(core.reports)
        acts = rig.decide(n, now=clock.now_ns())
        new_after_kill += sum(a["action"] != ACT_CANCEL for a in acts)
        sim.send(core.actions, len(acts))
    assert new_after_kill == 0
    assert core.trader[0]["live_orders"] == 0 and sim.resting() == []
    assert core.state == TRADER_HALTED and core.trader[0]["halt_reason"] == RISK_KILL_SWITCH


def test_halted_trader_cancels_an_order_acknowledged_after_its_cancel_was_refused() -> None:
    rig = Rig(params=MarketMakerParams(quote_size=1, n_layers=1))
    acts = rig.decide()
    bid = next(a for a in acts if a["side"] == SIDE_BUY)
    slot = int(bid["slot"])
    k = rig.core.kill_switch(NOW)
    assert k == 2
    rep = rig.core.reports
    cl = bid["cl_ord_id"]
    # the venue refuses the cancel (it has not seen the order yet): back to pending new,
    # and the halted trader sends the cancel again at once
    rep[0] = (cl, 0, 0, 0, 0, 0, 0.0, 0, 0, 0, SID, 5, ER_CANCEL_REJECT, SIDE_BUY, 0, 0)
    acts = rig.decide(1)
    assert [(a["action"], a["slot"]) for a in acts] == [(ACT_CANCEL, slot)]
    assert rig.core.orders[slot]["cancel_attempts"] == 2
    rep[0] = (cl, 9, bid["price"], 1, 1, 0, 0.0, 0, 0, 0, SID, 0, ER_NEW, SIDE_BUY, 0, 0)
    assert len(rig.decide(1)) == 0  # acked with its cancel in flight: nothing more to send
    assert rig.core.orders[slot]["status"] == OS_PENDING_CANCEL
    rep[0] = (cl, 9, bid["price"], 1, 0, 0, 0.0, 0, 0, 0, SID, 0, ER_CANCEL, SIDE_BUY, 0, 0)
    rig.decide(1)
    assert rig.core.orders[slot]["status"] == OS_CANCELLED


def test_rejected_cancels_are_retried_a_bounded_number_of_times() -> None:
    rig = Rig(params=MarketMakerParams(quote_size=1, n_layers=1))
    acts = rig.decide()
    rig.core.halt()
    cl = int(acts[0]["cl_ord_id"])
    sent = sum(int(a["cl_ord_id"]) == cl for a in rig.decide(0))
    for _ in range(5):
        rig.core.reports[0] = (cl, 9, 0, 0, 0, 0, 0.0, 0, 0, 0, SID, 5, ER_CANCEL_REJECT,
                               SIDE_BUY, 0, 0)
        sent += sum(int(a["cl_ord_id"]) == cl for a in rig.decide(1))
    assert sent == 3  # MAX_CANCEL_ATTEMPTS, then it is left to the operator, counted
    assert rig.core.oms_counts[OMS_CANCEL_GIVE_UP] == 1


def test_a_kill_switch_over_more_orders_than_one_tick_can_carry_spans_ticks() -> None:
    rig = Rig(RiskLimits(max_working_orders=1000))
    slots = {oms.register_order(rig.core.trader, 0, SIDE_BUY, 3990 * TICK, 1) for _ in range(200)}
    k = rig.core.kill_switch(NOW)
    assert k == MAX_ACTIONS
    first = {int(s) for s in rig.core.actions[:k]["slot"]}
    assert rig.core.reject_counts[RISK_ACTIONS_FULL] == 200 - MAX_ACTIONS
    rest = rig.decide()
    assert len(rest) == 200 - MAX_ACTIONS
    sent = first | {int(s) for s in rest["slot"]}
    assert sent == slots and all(a["action"] == ACT_CANCEL for a in rest)


def test_a_full_order_table_refuses_new_orders_by_reason() -> None:
    rig = Rig(RiskLimits(max_working_orders=10_000), params=MarketMakerParams(quote_size=1))
    for _ in range(MAX_ORDERS):
        oms.register_order(rig.core.trader, 0, SIDE_BUY, 3990 * TICK, 1, layer=0)
    rig.inst["quote_slot"] = -1  # the strategy owns none of them
    rig.core.trader[0]["adopted_orders"] = 0
    acts = rig.decide()
    assert not [a for a in acts if a["action"] == ACT_NEW]
    # the ask is refused for want of a row; no bid is even tried (512 bids fill the cap)
    assert rig.core.reject_counts[RISK_ORDER_TABLE_FULL] == 1
    assert rig.core.reject_counts.sum() == 1


def test_reason_names_cover_every_code() -> None:
    from core.types import N_OMS_EVENTS, N_RISK_REASONS, OMS_EVENT_NAMES, RISK_REASON_NAMES

    assert len(RISK_REASON_NAMES) == N_RISK_REASONS == len(set(RISK_REASON_NAMES))
    assert len(OMS_EVENT_NAMES) == N_OMS_EVENTS == len(set(OMS_EVENT_NAMES))
    assert RISK_REASON_NAMES[RISK_MAX_POSITION] == "max_position"
