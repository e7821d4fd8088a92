"""Feature kernels against naive implementations that recompute each feature from the
whole history at every completed event (the kernels update O(1) state instead)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.feature_spec import FEATURE_NAMES, N_FEATURES
from core.features import (
    DEFAULT_PARAMS,
    LOB_VALUES,
    OFI_LEVELS,
    RING_WIDTH,
    VPIN_BUCKETS,
    replay_features,
)
from core.market import MarketState
from core.types import EV_BOOK, EV_TRADE, FLAG_END_OF_EVENT, FLAG_LAST_IN_MSG, MD_EVENT
from tests.test_book_mbp import ASK, BID, IASK, IBID, NULL, NaiveMarket, Stream, TrueBook

F = {name: i for i, name in enumerate(FEATURE_NAMES)}
P = DEFAULT_PARAMS


class NaiveFeatures:
    """Books from ``NaiveMarket``; features recomputed from full histories."""

    def __init__(self, tick: dict[int, int], bucket: float = P["vpin_bucket"]) -> None:
        self.market = NaiveMarket()
        self.tick = tick
        self.bucket = bucket
        self.hist: dict[int, dict[str, list[Any]]] = {}
        self.rows: list[tuple[int, float, list[float], list[float]]] = []
        self.event_time = 0
        self.pending_trades: dict[int, list[tuple[int, int]]] = {}

    def _h(self, sid: int) -> dict[str, list[Any]]:
        return self.hist.setdefault(sid, {"mids": [], "books": [], "ofi_e": [], "flow": [],
                                          "trades": [], "trade_times": []})

    def apply(self, e: Any) -> None:
        m = self.market
        before = len(m.records)
        kind = int(e["kind"])
        sid = int(e["security_id"])
        if kind == EV_TRADE:
            b = m.books.get(sid)
            rpt = int(e["rpt_seq"])
            fresh = b is None or b.rpt == 0 or rpt > b.rpt
            if fresh and int(e["action"]) == 0 and int(e["price"]) != NULL:
                self.pending_trades.setdefault(sid, []).append((int(e["size"]), int(e["side"])))
                self._h(sid)["trade_times"].append(int(e["transact_time"]))
        t = int(e["transact_time"])
        if t:
            self.event_time = t
        m.apply(e)
        for _seq, s, _ in m.records[before:]:
            self._complete(s)
        if len(m.records) > before:
            self.event_time = 0

    def _complete(self, sid: int) -> None:
        h = self._h(sid)
        bk = self.market.books[sid]
        bids = bk.consolidated(BID)
        asks = bk.consolidated(ASK)
        tick = float(self.tick[sid])
        f = [0.0] * N_FEATURES
        mid = math.nan
        if bids and asks:
            mid = (bids[0][0] + asks[0][0]) / 2
            f[F["spread_ticks"]] = (asks[0][0] - bids[0][0]) / tick
            bq, aq = bids[0][1], asks[0][1]
            if bq + aq > 0:
                micro = (bids[0][0] * aq + asks[0][0] * bq) / (bq + aq)
                f[F["microprice_offset_ticks"]] = (micro - mid) / tick
        defined = [x for x in h["mids"] if not math.isnan(x)]
        dms = []
        prev = None
        for x in h["mids"] + [mid]:
            if math.isnan(x):
                continue
            if prev is not None:
                dms.append((x - prev) / tick)
            prev = x
        if not math.isnan(mid) and defined:
            f[F["mid_change_ticks"]] = (mid - defined[-1]) / tick
        v = 0.0
        for dm in dms:
            v = (1 - P["vol_alpha"]) * v + P["vol_alpha"] * dm * dm
        f[F["realized_vol_ticks"]] = math.sqrt(v)
        bq = bids[0][1] if bids else 0
        aq = asks[0][1] if asks else 0
        f[F["imbalance_l1"]] = (bq - aq) / (bq + aq) if bq + aq else 0.0
        num = den = 0.0
        for k in range(int(P["depth_levels"])):
            qb = bids[k][1] if k < len(bids) else 0
            qa = asks[k][1] if k < len(asks) else 0
            num += (qb - qa) / (k + 1)
            den += (qb + qa) / (k + 1)
        f[F["imbalance_depth"]] = num / den if den else 0.0
        # OFI: e_n from consecutive books, decayed sum over the whole history
        if h["books"]:
            pb_, pa_ = h["books"][-1]
            e = 0.0
            for k in range(OFI_LEVELS):
                b0 = pb_[k] if k < len(pb_) else (-math.inf, 0)
                b1 = bids[k] if k < len(bids) else (-math.inf, 0)
                a0 = pa_[k] if k < len(pa_) else (math.inf, 0)
                a1 = asks[k] if k < len(asks) else (math.inf, 0)
                e += (b1[1] if b1[0] >= b0[0] else 0) - (b0[1] if b1[0] <= b0[0] else 0)
                e += -(a1[1] if a1[0] <= a0[0] else 0) + (a0[1] if a1[0] >= a0[0] else 0)
            h["ofi_e"].append(e)
        n = len(h["ofi_e"])
        f[F["ofi"]] = sum(P["ofi_decay"] ** (n - 1 - i) * x for i, x in enumerate(h["ofi_e"]))
        trades = self.pending_trades.pop(sid, [])
        h["trades"] += trades
        h["flow"].append(sum(q if s == 1 else -q if s == 2 else 0 for q, s in trades))
        n = len(h["flow"])
        f[F["trade_flow_fast"]] = sum(P["flow_fast_decay"] ** (n - 1 - i) * x
                                      for i, x in enumerate(h["flow"]))
        f[F["trade_flow_slow"]] = sum(P["flow_slow_decay"] ** (n - 1 - i) * x
                                      for i, x in enumerate(h["flow"]))
        # VPIN: rebuild every bucket from the full trade list
        full: list[float] = []
        buy = sell = 0.0
        for q, s in h["trades"]:
            share = 1.0 if s == 1 else 0.0 if s == 2 else 0.5
            rem = float(q)
            while rem > 0:
                take = min(rem, self.bucket - buy - sell)
                buy += take * share
                sell += take * (1 - share)
                rem -= take
                if buy + sell >= self.bucket:
                    full.append(abs(buy - sell))
                    buy = sell = 0.0
        window = full[-VPIN_BUCKETS:]
        f[F["vpin"]] = sum(window) / (len(window) * self.bucket) if window else 0.0
        if h["trade_times"]:
            dt = (self.event_time - h["trade_times"][-1]) * 1e-9
            f[F["log_time_since_trade"]] = math.log1p(max(dt, 0.0))
        else:
            f[F["log_time_since_trade"]] = math.log1p(P["no_trade_seconds"])
        h["mids"].append(mid)
        h["books"].append((bids, asks))
        lob = []
        ref = mid if not math.isnan(mid) else (defined[-1] if defined else (
            bids[0][0] if bids else asks[0][0] if asks else 0.0))
        for k in range(10):
            for lst in (asks, bids):
                if k < len(lst):
                    lob += [(lst[k][0] - ref) / tick, float(lst[k][1])]
                else:
                    lob += [0.0, 0.0]
        self.rows.append((sid, mid, f, lob))


@st.composite
def market_streams(draw: Any) -> tuple[np.ndarray, dict[int, int]]:
    """Valid books for two instruments with implied levels, trades of every aggressor
    side (some spanning several VPIN buckets), one-sided and empty books."""
    tick = {1: 25, 2: 5}
    true = {sid: TrueBook(draw(st.integers(1, 10))) for sid in (1, 2)}
    implied = {sid: TrueBook(2) for sid in (1, 2)}
    s = Stream()
    rpt = {1: 0, 2: 0}
    t = 1_600_000_000_000_000_000
    for _ in range(draw(st.integers(1, 40))):
        sid = draw(st.sampled_from((1, 2)))
        tb = true[sid]
        tk = tick[sid]
        old = {BID: tb.top(BID), ASK: tb.top(ASK)}
        side = draw(st.sampled_from((BID, ASK)))
        d = tb.bids if side == BID else tb.asks
        act = draw(st.integers(0, 9))
        if act < 6:
            px = tk * (draw(st.integers(80, 99)) if side == BID else draw(st.integers(100, 119)))
            lv = d.setdefault(px, [0, 0])
            lv[0] += draw(st.integers(1, 20))
            lv[1] += 1
        elif act < 8 and d:
            del d[draw(st.sampled_from(sorted(d)))]
        elif act < 9:
            d.clear()
        t += draw(st.integers(0, 3_000_000_000))
        n_trades = draw(st.integers(0, 2))
        for _ in range(n_trades):
            rpt[sid] += 1
            s.add(EV_TRADE, security_id=sid, rpt_seq=rpt[sid], price=tk * 100, action=0,
                  size=draw(st.sampled_from((1, 7, 30, 49, 50, 120))),
                  side=draw(st.sampled_from((0, 1, 2))), transact_time=t)
        for sd in (BID, ASK):
            for op, lvl, (px, q, o) in TrueBook.diff(old[sd], tb.top(sd), tb.depth):
                rpt[sid] += 1
                s.add(EV_BOOK, security_id=sid, rpt_seq=rpt[sid], action=op, entry_type=sd,
                      price_level=lvl, price=px, size=q, num_orders=o, transact_time=t)
        if draw(st.integers(0, 3)) == 0:  # implied book (2 deep) changes
            ib = implied[sid]
            iold = {BID: ib.top(BID), ASK: ib.top(ASK)}
            iside = draw(st.sampled_from((BID, ASK)))
            idict = ib.bids if iside == BID else ib.asks
            if draw(st.booleans()) or not idict:
                px = tk * (draw(st.integers(75, 99)) if iside == BID
                           else draw(st.integers(100, 124)))
                idict[px] = [draw(st.integers(1, 9)), 0]
            else:
                del idict[draw(st.sampled_from(sorted(idict)))]
            for sd, et in ((BID, IBID), (ASK, IASK)):
                for op, lvl, (px, q, _o) in TrueBook.diff(iold[sd], ib.top(sd), 2):
                    rpt[sid] += 1
                    s.add(EV_BOOK, security_id=sid, rpt_seq=rpt[sid], action=op, entry_type=et,
                          price_level=lvl, price=px, size=q, num_orders=NULL_NUM,
                          transact_time=t)
        if s.rows and not (s.rows[-1].get("flags", 0) & FLAG_END_OF_EVENT):
            s.end()
    return s.array(), {1: tick[1], 2: tick[2]}


NULL_NUM = (1 << 31) - 1


def _naive(events: np.ndarray, tick: dict[int, int]) -> NaiveFeatures:
    nf = NaiveFeatures(tick)
    for e in events:
        nf.apply(e)
    return nf


def _compare(events: np.ndarray, tick: dict[int, int]) -> tuple[dict[str, Any], NaiveFeatures]:
    out = replay_features(events, tick_size=tick)
    nf = _naive(events, tick)
    assert out["features"].shape == (len(nf.rows), N_FEATURES)
    for i, (sid, mid, f, _) in enumerate(nf.rows):
        assert int(out["security_id"][i]) == sid
        if math.isnan(mid):
            assert math.isnan(out["mid"][i])
        else:
            assert out["mid"][i] == pytest.approx(mid)
        np.testing.assert_allclose(out["features"][i], np.array(f, dtype=np.float32),
                                   rtol=2e-5, atol=2e-4, err_msg=f"row {i} sid {sid}")
    return out, nf


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(market_streams())
def test_property_features_match_naive(case: tuple[np.ndarray, dict[int, int]]) -> None:
    events, tick = case
    _compare(events, tick)


def test_replay_features_contract() -> None:
    s = Stream()
    s.add(EV_BOOK, security_id=3, rpt_seq=1, action=0, entry_type=BID, price_level=1,
          price=1000, size=2, transact_time=5)
    s.add(EV_BOOK, security_id=3, rpt_seq=2, action=0, entry_type=ASK, price_level=1,
          price=1010, size=1, transact_time=6)
    s.end()
    out = replay_features(s.array(), tick_size={3: 5}, depth={3: 2})
    assert set(out) == {"security_id", "time", "mid", "features"}
    assert out["security_id"].dtype == np.int32 and out["time"].dtype == np.uint64
    assert out["mid"].dtype == np.float64 and out["features"].dtype == np.float32
    assert out["features"].shape == (1, N_FEATURES)
    assert int(out["time"][0]) == 6 and out["mid"][0] == 1005.0
    assert out["features"][0, F["spread_ticks"]] == pytest.approx(2.0)
    with pytest.raises(TypeError):
        replay_features(np.zeros(3, dtype=np.int64))
    empty = replay_features(np.zeros(0, dtype=MD_EVENT))
    assert empty["features"].shape == (0, N_FEATURES)


def test_one_sided_book_and_no_trades() -> None:
    s = Stream()
    s.add(EV_BOOK, security_id=3, rpt_seq=1, action=0, entry_type=BID, price_level=1,
          price=1000, size=4)
    s.add(EV_BOOK, security_id=3, rpt_seq=2, action=0, entry_type=BID, price_level=2,
          price=995, size=1)
    s.end()
    out, _ = _compare(s.array(), {3: 5})
    f = out["features"][0]
    assert math.isnan(out["mid"][0])
    assert f[F["imbalance_l1"]] == 1.0 and f[F["imbalance_depth"]] == 1.0
    assert f[F["spread_ticks"]] == 0.0 and f[F["mid_change_ticks"]] == 0.0
    assert f[F["vpin"]] == 0.0  # no full volume bucket yet
    assert f[F["log_time_since_trade"]] == pytest.approx(math.log1p(P["no_trade_seconds"]))
    assert np.isfinite(f).all()


def test_vpin_buckets_split_trades_and_partial_bucket_is_ignored() -> None:
    s = Stream()
    for rpt, (q, side) in enumerate(((30, 1), (30, 2), (20, 1), (49, 0)), start=1):  # 50-lot
        s.add(EV_TRADE, security_id=3, rpt_seq=rpt, price=1000, size=q, side=side, action=0)
        s.end()
    out, _ = _compare(s.array(), {3: 5})
    vp = out["features"][:, F["vpin"]]
    # bucket 1 = 30 buy + 20 sell (|10|), then 10 sell + 20 buy + 20 none -> 2nd bucket
    assert vp[0] == 0.0
    assert vp[1] == pytest.approx(10 / 50)
    assert vp[2] == pytest.approx(10 / 50)
    assert vp[3] == pytest.approx((10 + 10) / 100)


def test_tick_inferred_from_book_when_unknown() -> None:
    s = Stream()
    for i, (et, px) in enumerate(((BID, 1000), (BID, 975), (ASK, 1025), (ASK, 1075))):
        s.add(EV_BOOK, security_id=3, rpt_seq=i + 1, action=0, entry_type=et,
              price_level=1 + (i % 2), price=px, size=1)
    s.end()
    out = replay_features(s.array())
    assert out["features"][0, F["spread_ticks"]] == pytest.approx(1.0)  # gcd 25


def test_ring_buffer_holds_last_events_normalised() -> None:
    s = Stream()
    rpt = 0
    for k in range(7):
        rpt += 1
        s.add(EV_BOOK, security_id=3, rpt_seq=rpt, action=1, entry_type=BID, price_level=1,
              price=1000 + 5 * k, size=1 + k)
        rpt += 1
        s.add(EV_BOOK, security_id=3, rpt_seq=rpt, action=1, entry_type=ASK, price_level=1,
              price=1010 + 5 * k, size=2)
        s.end()
    ev = s.array()
    state = MarketState(max_instruments=2, ring_len=4)
    state.add_instrument(3, tick=5, depth=3)
    state.apply_events(ev)
    win = state.window(3)
    nf = _naive(ev, {3: 5})
    assert win.shape == (4, RING_WIDTH)
    for j, (_, _, f, lob) in enumerate(nf.rows[-4:]):
        np.testing.assert_allclose(win[j, :LOB_VALUES], np.array(lob, np.float32), atol=1e-5)
        np.testing.assert_allclose(win[j, LOB_VALUES:], np.array(f, np.float32), rtol=1e-5,
                                   atol=1e-5)
    assert win[-1, 0] == pytest.approx(1.0) and win[-1, 2] == pytest.approx(-1.0)


def test_flags_only_last_in_message_do_not_complete() -> None:
    ev = np.zeros(1, dtype=MD_EVENT)
    ev[0]["kind"] = EV_BOOK
    ev[0]["security_id"] = 3
    ev[0]["flags"] = FLAG_LAST_IN_MSG
    ev[0]["entry_type"] = ord(BID)
    ev[0]["price_level"] = 1
    ev[0]["price"] = 100
    assert replay_features(ev)["features"].shape == (0, N_FEATURES)
