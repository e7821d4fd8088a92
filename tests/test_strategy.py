"""Market maker quotes (Avellaneda-Stoikov) and the order manager's fewest actions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import oms
from core.risk import InstrumentLimits, RiskLimits
from core.strategy.market_maker import MarketMakerParams, quote_prices
from core.trading import VOL_COL, InstrumentConfig, TradingCore, new_market_view, set_market
from core.types import (
    ACT_CANCEL,
    ACT_MODIFY,
    ACT_NEW,
    ER_CANCEL,
    ER_FILL,
    ER_MODIFY,
    ER_NEW,
    RISK_OK,
    SIDE_BUY,
    SIDE_SELL,
)

TICK = 25 * 10**9
SID = 1
NOW = 5_000_000_000


# --------------------------------------------------------------------------
# the quote formula
# --------------------------------------------------------------------------
params_st = st.builds(
    MarketMakerParams,
    gamma=st.floats(0.01, 2.0), k=st.floats(0.1, 5.0), vol_horizon=st.floats(0.0, 5.0),
    alpha_skew=st.floats(0.0, 3.0), max_alpha_skew_ticks=st.floats(0.0, 5.0),
    min_half_spread_ticks=st.floats(0.0, 3.0))


@settings(max_examples=200, deadline=None)
@given(p=params_st, mid2=st.integers(7990, 8010), spread=st.integers(1, 4),
       q=st.integers(-20, 20), vol=st.floats(0.0, 4.0), alpha=st.floats(-5.0, 5.0))
def test_quotes_follow_avellaneda_stoikov(p: MarketMakerParams, mid2: int, spread: int, q: int,
                                          vol: float, alpha: float) -> None:
    best_bid = mid2 // 2
    best_ask = best_bid + spread
    mid = (best_bid + best_ask) / 2
    bid, ask, r, h = quote_prices(mid, q, vol, alpha, p, best_bid, best_ask)
    # the textbook reservation price and optimal spread (Avellaneda & Stoikov 2008)
    skew = max(-p.max_alpha_skew_ticks, min(p.max_alpha_skew_ticks, p.alpha_skew * alpha))
    r_ref = mid + skew - q * p.gamma * vol**2 * p.vol_horizon
    spread_ref = p.gamma * vol**2 * p.vol_horizon + (2 / p.gamma) * math.log(1 + p.gamma / p.k)
    h_ref = max(spread_ref / 2, p.min_half_spread_ticks)
    assert r == pytest.approx(r_ref, abs=1e-9)
    assert h == pytest.approx(h_ref, abs=1e-9)
    assert bid == int(bid) and ask == int(ask)
    assert bid < ask
    assert bid <= best_ask - 1 and ask >= best_bid + 1  # never crosses the market
    if bid < best_ask - 1:  # not clamped: the largest tick at or below r - h
        assert bid <= r_ref - h_ref + 1e-6 < bid + 1
    if ask > best_bid + 1 and ask > bid + 1:
        assert ask - 1 < r_ref + h_ref - 1e-6 <= ask


def test_inventory_and_alpha_skew_the_reservation_price() -> None:
    p = MarketMakerParams(gamma=0.2, k=1.0, max_alpha_skew_ticks=3.0)
    r = [quote_prices(4000.5, q, 1.5, 0.0, p, 3990, 4011)[2] for q in (-5, 0, 5)]
    assert r[0] > r[1] > r[2]  # long: lower quotes, to sell
    ra = [quote_prices(4000.5, 0, 1.5, a, p, 3990, 4011)[2] for a in (-1.0, 0.0, 1.0, 9.0)]
    assert ra[0] < ra[1] < ra[2] < ra[3] == pytest.approx(4003.5)  # capped at 3 ticks


# --------------------------------------------------------------------------
# the quoting kernel through decide: layers, sizes, the caps
# --------------------------------------------------------------------------
class Rig:
    def __init__(self, params: MarketMakerParams, max_position: int = 50) -> None:
        cfg = InstrumentConfig(
            security_id=SID, tick=TICK, tick_value=12.5,
            limits=InstrumentLimits(max_order_qty=20, max_position=max_position,
                                    collar_ticks=100),
            params=params)
        self.core = TradingCore([cfg], RiskLimits(submit_limit=1000, cancel_limit=1000))
        self.core.finish_startup()
        self.core.set_gateway_up(True)
        assert self.core.resume() == RISK_OK
        self.market = new_market_view(1)
        self.features = self.core.features_buffer()
        self.alpha = np.zeros(1)
        self.now = NOW
        self.book(4000, 4001)

    def book(self, bid: int | None, ask: int | None) -> None:
        set_market(self.market, 0, None if bid is None else bid * TICK,
                   None if ask is None else ask * TICK, self.now)

    def decide(self, n: int = 0) -> np.ndarray:
        self.now += 1000
        self.market[0]["update_ns"] = self.now
        k = self.core.decide(self.market, self.features, self.alpha, n, self.now, 1)
        return self.core.actions[:k].copy()

    def ack(self, acts: np.ndarray) -> int:
        """Venue stand-in: acknowledge every action as asked; returns the report count."""
        rep = self.core.reports
        for i, a in enumerate(acts):
            kind = {ACT_NEW: ER_NEW, ACT_MODIFY: ER_MODIFY, ACT_CANCEL: ER_CANCEL}[int(a["action"])]
            o = self.core.orders[int(a["slot"])]
            qty = int(a["qty"]) if a["action"] != ACT_CANCEL else int(o["qty"])
            leaves = qty - int(o["cum"]) if a["action"] != ACT_CANCEL else 0
            rep[i] = (a["cl_ord_id"], 1000 + int(a["slot"]), a["price"], qty, leaves,
                      int(o["cum"]), 0.0, 0, 0, 0, SID, 0, kind, a["side"], 0, 0)
        return len(acts)

    def quotes(self) -> dict[tuple[int, int], tuple[int, int]]:
        """{(side, layer): (price ticks, leaves)} of live quote orders."""
        out = {}
        for o in oms.orders_table(self.core.trader):
            if o["layer"] >= 0:
                out[(o["side"], o["layer"])] = (o["price"] // TICK, o["leaves"])
        return out


def test_layers_and_sizes() -> None:
    rig = Rig(MarketMakerParams(quote_size=3, n_layers=3, layer_spacing_ticks=2))
    acts = rig.decide()
    assert all(a["action"] == ACT_NEW for a in acts)
    bid, ask, _, _ = quote_prices(4000.5, 0, 0.0, 0.0, MarketMakerParams(), 4000, 4001)
    q = rig.quotes()
    assert q == {(SIDE_BUY, 0): (bid, 3), (SIDE_BUY, 1): (bid - 2, 3), (SIDE_BUY, 2): (bid - 4, 3),
                 (SIDE_SELL, 0): (ask, 3), (SIDE_SELL, 1): (ask + 2, 3),
                 (SIDE_SELL, 2): (ask + 4, 3)}


def test_sizes_are_trimmed_to_the_worst_case_cap() -> None:
    rig = Rig(MarketMakerParams(quote_size=3, n_layers=3), max_position=7)
    oms.apply_fill(rig.core.trader, 0, SIDE_BUY, 5, 4000 * TICK)
    rig.decide()
    q = rig.quotes()
    assert [q[(SIDE_BUY, j)][1] for j in range(3) if (SIDE_BUY, j) in q] == [2]
    assert [q[(SIDE_SELL, j)][1] for j in range(3)] == [3, 3, 3]
    i = rig.core.instruments[0]
    assert i["position"] + i["buy_open"] == 7


def test_reducing_quotes_only_the_reducing_side_up_to_the_position() -> None:
    rig = Rig(MarketMakerParams(quote_size=3, n_layers=3))
    oms.apply_fill(rig.core.trader, 0, SIDE_BUY, 5, 4000 * TICK)
    rig.core.reduce_only()
    acts = rig.decide()
    assert {int(a["side"]) for a in acts} == {SIDE_SELL}
    assert sorted(int(a["qty"]) for a in acts) == [2, 3]


# --------------------------------------------------------------------------
# the order manager
# --------------------------------------------------------------------------
def test_requote_toward_the_market_waits_away_from_it_does_not() -> None:
    rig = Rig(MarketMakerParams(quote_size=1, requote_ticks=2, at_risk_ticks=1))
    n = rig.ack(rig.decide())
    q0 = rig.quotes()
    assert rig.decide(n).size == 0  # nothing moved: nothing sent
    rig.book(4001, 4002)  # +1: the bid would improve by 1 (wait), the ask is at risk (move)
    acts = rig.decide()
    assert [(int(a["action"]), int(a["side"])) for a in acts] == [(ACT_MODIFY, SIDE_SELL)]
    assert int(acts[0]["price"]) // TICK == q0[(SIDE_SELL, 0)][0] + 1
    n = rig.ack(acts)
    rig.book(4002, 4003)  # +2 from the start: the bid moves now too
    acts = rig.decide(n)
    assert sorted((int(a["action"]), int(a["side"])) for a in acts) == [
        (ACT_MODIFY, SIDE_BUY), (ACT_MODIFY, SIDE_SELL)]


def test_nothing_is_sent_for_an_order_with_a_request_in_flight() -> None:
    rig = Rig(MarketMakerParams(quote_size=1))
    acts = rig.decide()
    assert len(acts) == 2
    rig.book(3990, 3991)  # far away: both quotes are stale, but not acked yet
    assert rig.decide().size == 0
    n = rig.ack(acts)
    acts = rig.decide(n)
    # the bid steps down first; the ask may only follow below the old bid once it is acked
    assert [(int(a["action"]), int(a["side"])) for a in acts] == [(ACT_MODIFY, SIDE_BUY)]
    acts = rig.decide(rig.ack(acts))
    assert [(int(a["action"]), int(a["side"])) for a in acts] == [(ACT_MODIFY, SIDE_SELL)]


def test_a_smaller_desired_qty_is_a_modify_at_the_same_price() -> None:
    rig = Rig(MarketMakerParams(quote_size=4), max_position=6)
    n = rig.ack(rig.decide())
    q0 = rig.quotes()
    oms.apply_fill(rig.core.trader, 0, SIDE_BUY, 3, 3990 * TICK)  # elsewhere: room 3 now
    acts = rig.decide(n)
    mods = [a for a in acts if a["side"] == SIDE_BUY]
    assert [(int(a["action"]), int(a["price"]) // TICK, int(a["qty"])) for a in mods] == [
        (ACT_MODIFY, q0[(SIDE_BUY, 0)][0], 3)]


def test_no_desired_quote_cancels() -> None:
    rig = Rig(MarketMakerParams(quote_size=1))
    n = rig.ack(rig.decide())
    rig.book(4000, None)  # one-sided book: no quote
    acts = rig.decide(n)
    assert sorted(int(a["action"]) for a in acts) == [ACT_CANCEL, ACT_CANCEL]


def test_never_quotes_through_our_own_other_side() -> None:
    rig = Rig(MarketMakerParams(quote_size=1))
    n = rig.ack(rig.decide())
    q0 = rig.quotes()
    rig.book(4010, 4011)  # the market gaps up through our ask
    acts = rig.decide(n)
    # the ask moves away first; the bid waits, it would sit above our (old) ask
    assert [(int(a["action"]), int(a["side"])) for a in acts] == [(ACT_MODIFY, SIDE_SELL)]
    assert rig.decide().size == 0  # still in flight: still waiting
    n = rig.ack(acts)
    acts = rig.decide(n)
    assert [(int(a["action"]), int(a["side"])) for a in acts] == [(ACT_MODIFY, SIDE_BUY)]
    assert int(acts[0]["price"]) // TICK > q0[(SIDE_SELL, 0)][0]


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(-2, 2), st.floats(-2, 2), st.booleans()),
                      min_size=1, max_size=40),
       layers=st.integers(1, 3), requote=st.integers(1, 3))
def test_random_walk_fewest_actions_and_no_stale_quotes(
        steps: list[tuple[int, float, bool]], layers: int, requote: int) -> None:
    p = MarketMakerParams(quote_size=2, n_layers=layers, requote_ticks=requote, at_risk_ticks=1,
                          alpha_skew=1.0)
    rig = Rig(p)
    rig.features[0, VOL_COL] = 1.0
    mid = 4000
    n = 0
    for dm, alpha, fill in steps:
        mid += dm
        rig.alpha[0] = alpha
        rig.book(mid, mid + 1)
        if fill and rig.quotes():
            # the venue fills one of our quotes (one contract) before this tick
            slot = next(o["slot"] for o in oms.orders_table(rig.core.trader)
                        if o["status_name"] in ("working", "partially_filled"))
            o = rig.core.orders[slot]
            rig.core.reports[n] = (o["cl_ord_id"], 1, o["price"], 1, int(o["leaves"]) - 1,
                                   int(o["cum"]) + 1, 0.0, 0, 0, 0, SID, 0, ER_FILL, o["side"],
                                   0, 0)
            n += 1
        acts = rig.decide(n)
        for _ in range(4):  # the venue answers; a step waiting on the other side follows
            keys = [(int(a["side"]), int(rig.core.orders[int(a["slot"])]["layer"]))
                    for a in acts]
            assert len(keys) == len(set(keys))  # one message per quote, never cancel + new
            if len(acts) == 0:
                break
            acts = rig.decide(rig.ack(acts))
        assert len(acts) == 0
        n = 0
        # no quote is left at risk, or beyond the requote threshold
        inst = rig.core.instruments[0]
        for (side, layer), (price, _) in rig.quotes().items():
            want = int(inst["desired_px"][side - 1, layer]) // TICK
            if int(inst["desired_qty"][side - 1, layer]) == 0:
                continue
            toward = (want - price) if side == SIDE_BUY else (price - want)
            assert toward < requote and -toward < 1, (side, layer, price, want)
    assert rig.core.reject_counts.sum() == 0

