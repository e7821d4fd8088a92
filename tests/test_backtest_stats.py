"""core.backtest_stats against plain-Python references, plus the degenerate cases."""

from __future__ import annotations

import math
import statistics
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.backtest_stats import (
    YEAR_SECONDS,
    annualised_sharpe,
    backtest_summary,
    bar_pnl,
    fifo_round_trips,
    inventory_stats,
    mark_to_market,
    max_drawdown,
    position_path,
    sharpe_ratio,
    trade_stats,
)
from core.types import EXEC_REPORT, SIDE_BUY, SIDE_SELL

TICK = 25 * 10**9
TV = 12.5


# --------------------------------------------------------------------------
# naive references
# --------------------------------------------------------------------------
def ref_fifo(fills: list[tuple[int, int, int, float]], tick: int, tv: float) -> list[tuple]:
    """fills: (side, price, qty, fee). Returns [(entry, exit, qty, pnl)]."""
    lots: deque[list[int]] = deque()  # [fill index, qty left]
    out = []
    for j, (side, px, q, _fee) in enumerate(fills):
        s = 1 if side == SIDE_BUY else -1
        while q > 0 and lots and (1 if fills[lots[0][0]][0] == SIDE_BUY else -1) != s:
            i, left = lots[0]
            m = min(left, q)
            ls = 1 if fills[i][0] == SIDE_BUY else -1
            gross = (px - fills[i][1]) / tick * tv * m * ls
            fee = m * fills[i][3] / fills[i][2] + m * fills[j][3] / fills[j][2]
            out.append((i, j, m, gross - fee))
            lots[0][1] -= m
            q -= m
            if lots[0][1] == 0:
                lots.popleft()
        if q > 0:
            lots.append([j, q])
    return out


def ref_drawdown(equity: list[float]) -> float:
    peak, worst = 0.0, 0.0
    for e in equity:
        peak = max(peak, e)
        worst = max(worst, peak - e)
    return worst


def ref_bar_pnl(times: list[int], equity: list[float], start: int, end: int,
                bar: int) -> list[float]:
    out = []
    prev = 0.0
    b_end = start
    while b_end < end:
        b_end = min(b_end + bar, end)
        mark = 0.0
        for t, e in zip(times, equity, strict=True):
            if t <= b_end:
                mark = e
        out.append(mark - prev)
        prev = mark
    return out


def ref_inventory(changes: list[int], pos: list[int], start: int, end: int) -> dict:
    levels = [0, *pos]
    bounds = [start, *changes, end]
    span = end - start
    mean = sum(levels[i] * (bounds[i + 1] - bounds[i]) for i in range(len(levels))) / span
    mean_abs = sum(abs(levels[i]) * (bounds[i + 1] - bounds[i])
                   for i in range(len(levels))) / span
    var = sum((levels[i] - mean) ** 2 * (bounds[i + 1] - bounds[i])
              for i in range(len(levels))) / span
    flat = sum(bounds[i + 1] - bounds[i] for i in range(len(levels)) if levels[i] == 0) / span
    return {"mean": mean, "mean_abs": mean_abs, "std": math.sqrt(var), "flat_fraction": flat,
            "max_long": max(0, *levels), "max_short": min(0, *levels),
            "max_abs": max(abs(x) for x in levels), "final": levels[-1]}


# --------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------
fills_st = st.lists(
    st.tuples(st.sampled_from([SIDE_BUY, SIDE_SELL]),
              st.integers(3990, 4010).map(lambda t: t * TICK),
              st.integers(1, 7),
              st.sampled_from([0.0, 0.35, 1.1])),
    max_size=40)


def _arrays(fills: list[tuple[int, int, int, float]]) -> tuple[np.ndarray, ...]:
    a = np.array(fills, dtype=np.float64).reshape(-1, 4)
    return (a[:, 0].astype(np.uint8), np.array([f[1] for f in fills], dtype=np.int64),
            a[:, 2].astype(np.int64), a[:, 3])


# --------------------------------------------------------------------------
# FIFO round trips
# --------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(fills_st)
def test_fifo_matches_reference(fills: list[tuple[int, int, int, float]]) -> None:
    side, px, qty, fee = _arrays(fills)
    rt = fifo_round_trips(side, px, qty, fee, TICK, TV)
    ref = ref_fifo(fills, TICK, TV)
    assert len(rt) == len(ref)
    for k, (i, j, m, pnl) in enumerate(ref):
        assert (rt.entry[k], rt.exit[k], rt.qty[k]) == (i, j, m)
        assert rt.pnl[k] == pytest.approx(pnl, abs=1e-9)
    # matched quantity + what is left open = what was traded, per side
    pos = position_path(side, qty)
    assert 2 * int(rt.qty.sum()) + abs(int(pos[-1]) if len(pos) else 0) == int(qty.sum())


def test_fifo_hand_example() -> None:
    # buy 2 @100, buy 1 @101, sell 3 @103: lots (100 x2) +3 ticks, (101 x1) +2 ticks
    side = np.array([SIDE_BUY, SIDE_BUY, SIDE_SELL], np.uint8)
    px = np.array([100, 101, 103], np.int64) * TICK
    qty = np.array([2, 1, 3], np.int64)
    fee = np.array([0.4, 0.2, 0.9])
    rt = fifo_round_trips(side, px, qty, fee, TICK, TV)
    assert list(rt.entry) == [0, 1] and list(rt.exit) == [2, 2] and list(rt.qty) == [2, 1]
    assert list(rt.gross) == [3 * 12.5 * 2, 2 * 12.5 * 1]
    assert rt.fees == pytest.approx([0.4 + 0.6, 0.2 + 0.3])
    # a reversal: short 1 then buy 3 -> closes 1, opens 2 long (not a trade)
    rt2 = fifo_round_trips(np.array([SIDE_SELL, SIDE_BUY], np.uint8),
                           np.array([10, 9], np.int64) * TICK, np.array([1, 3]), None, TICK, TV)
    assert len(rt2) == 1 and rt2.gross[0] == 12.5 and rt2.qty[0] == 1


def test_fifo_degenerate() -> None:
    empty = fifo_round_trips(np.zeros(0, np.uint8), np.zeros(0, np.int64),
                             np.zeros(0, np.int64), None, TICK, TV)
    assert len(empty) == 0 and empty.pnl.size == 0
    one_side = fifo_round_trips(np.array([SIDE_BUY] * 3, np.uint8),
                                np.array([1, 2, 3], np.int64) * TICK, np.ones(3, np.int64),
                                None, TICK, TV)
    assert len(one_side) == 0
    with pytest.raises(ValueError):
        fifo_round_trips(np.array([3], np.uint8), np.array([1]), np.array([1]), None, TICK, TV)
    with pytest.raises(ValueError):
        fifo_round_trips(np.array([1], np.uint8), np.array([1]), np.array([0]), None, TICK, TV)
    with pytest.raises(ValueError):
        fifo_round_trips(np.array([1], np.uint8), np.array([1]), np.array([1]), None, 0, TV)


# --------------------------------------------------------------------------
# trade statistics
# --------------------------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-100, 100, allow_nan=False), max_size=30))
def test_trade_stats_reference(pnl: list[float]) -> None:
    s = trade_stats(np.array(pnl))
    n = len(pnl)
    assert s["round_trips"] == n
    if not n:
        assert s["win_rate"] is None and s["average_trade_pnl"] is None
        assert s["profit_factor"] is None
        return
    wins = [p for p in pnl if p > 0]
    losses = [p for p in pnl if p < 0]
    assert s["win_rate"] == pytest.approx(len(wins) / n)
    assert s["average_trade_pnl"] == pytest.approx(sum(pnl) / n, abs=1e-9)
    if losses:
        assert s["profit_factor"] == pytest.approx(sum(wins) / -sum(losses))
    elif wins:
        assert s["profit_factor"] == math.inf
    else:
        assert s["profit_factor"] is None  # only zero-P&L trades: 0/0


# --------------------------------------------------------------------------
# drawdown, bars, Sharpe
# --------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False), max_size=50))
def test_max_drawdown_reference(equity: list[float]) -> None:
    dd = max_drawdown(np.array(equity))
    assert dd.amount == pytest.approx(ref_drawdown(equity), abs=1e-6)
    if dd.amount > 0:
        peak = equity[dd.peak_index] if dd.peak_index >= 0 else 0.0
        assert peak - equity[dd.trough_index] == pytest.approx(dd.amount)
        assert dd.peak_index < dd.trough_index


def test_max_drawdown_cases() -> None:
    assert max_drawdown(np.zeros(0)).amount == 0.0
    assert max_drawdown(np.array([1.0, 2.0, 3.0])).trough_index == -1  # only up
    d = max_drawdown(np.array([-5.0, 1.0]))  # below the flat start at once
    assert (d.amount, d.peak_index, d.trough_index) == (5.0, -1, 0)
    d = max_drawdown(np.array([2.0, 10.0, 4.0, 9.0, 1.0, 12.0]))
    assert (d.amount, d.peak_index, d.trough_index) == (9.0, 1, 4)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.floats(-500, 500, allow_nan=False)),
                max_size=30),
       st.integers(1, 4000), st.integers(0, 12_000))
def test_bar_pnl_reference(samples: list[tuple[int, float]], bar: int, end: int) -> None:
    samples.sort(key=lambda x: x[0])
    t = [s[0] for s in samples]
    e = [s[1] for s in samples]
    got = bar_pnl(np.array(t, np.int64), np.array(e), 0, end, bar)
    ref = ref_bar_pnl(t, e, 0, end, bar)
    assert got == pytest.approx(ref, abs=1e-9)
    if ref:  # bars add up to the last mark at or before the end
        assert sum(got) == pytest.approx(next((v for tt, v in reversed(samples) if tt <= end),
                                              0.0), abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-5000, 5000).map(lambda c: c / 100), min_size=2, max_size=40))
def test_sharpe_reference(per_bar: list[float]) -> None:
    got = sharpe_ratio(np.array(per_bar), 252.0)
    sd = statistics.stdev(per_bar)
    if min(per_bar) == max(per_bar):
        assert got is None
    else:
        assert got == pytest.approx(statistics.mean(per_bar) / sd * math.sqrt(252.0),
                                    rel=1e-6, abs=1e-9)


def test_sharpe_degenerate_and_annualisation() -> None:
    assert sharpe_ratio(np.zeros(0), 252) is None
    assert sharpe_ratio(np.array([3.0]), 252) is None
    assert sharpe_ratio(np.array([2.0, 2.0, 2.0]), 252) is None  # no variance
    # bars of 1 s: sqrt(year in seconds) scales the per-bar ratio
    t = np.arange(1, 5, dtype=np.int64) * 1_000_000_000
    eq = np.array([1.0, 3.0, 4.0, 7.0])  # per-bar P&L 1, 2, 1, 3
    s = annualised_sharpe(t, eq, 0, 4_000_000_000)
    ref = statistics.mean([1, 2, 1, 3]) / statistics.stdev([1, 2, 1, 3]) * math.sqrt(YEAR_SECONDS)
    assert s == pytest.approx(ref)


# --------------------------------------------------------------------------
# mark to market, inventory
# --------------------------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(fills_st, st.lists(st.integers(0, 100), min_size=1, max_size=10))
def test_mark_to_market_reference(fills: list[tuple[int, int, int, float]],
                                  marks: list[int]) -> None:
    side, px, qty, fee = _arrays(fills)
    ft = np.arange(len(fills), dtype=np.int64) * 3
    mt = np.sort(np.array(marks, dtype=np.int64))
    mpx = 4000 * TICK + (mt % 7) * TICK / 2.0
    eq, pos = mark_to_market(ft, side, px, qty, fee, mt, mpx, TICK, TV)
    for k, t in enumerate(mt):
        cash = p = fees = 0.0
        for j, (s, price, q, f) in enumerate(fills):
            if ft[j] <= t:
                sg = 1 if s == SIDE_BUY else -1
                p += sg * q
                cash -= sg * q * price / TICK
                fees += f
        assert pos[k] == p
        assert eq[k] == pytest.approx((cash + p * mpx[k] / TICK) * TV - fees, abs=1e-6)


def test_mark_to_market_flat_round_trip_is_realised() -> None:
    side = np.array([SIDE_BUY, SIDE_SELL], np.uint8)
    px = np.array([100, 104], np.int64) * TICK
    eq, pos = mark_to_market(np.array([10, 20]), side, px, np.array([2, 2]),
                             np.array([1.0, 1.0]), np.array([5, 15, 25]),
                             np.array([100, 102, 999]) * TICK, TICK, TV)
    assert list(pos) == [0, 2, 0]
    assert eq[0] == 0.0
    assert eq[1] == pytest.approx(2 * 2 * TV - 1.0)  # long 2 marked 2 ticks up, 1 fee
    assert eq[2] == pytest.approx(4 * 2 * TV - 2.0)  # flat: the mark no longer matters


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(-5, 5)), max_size=20),
       st.integers(1, 500))
def test_inventory_reference(changes: list[tuple[int, int]], extra: int) -> None:
    changes.sort(key=lambda c: c[0])
    t = [c[0] for c in changes]
    p = [c[1] for c in changes]
    end = (t[-1] if t else 0) + extra
    got = inventory_stats(np.array(t, np.int64), np.array(p, np.int64), 0, end)
    ref = ref_inventory(t, p, 0, end)
    for key, v in ref.items():
        assert got[key] == pytest.approx(v, abs=1e-9), key
    assert got["changes"] == len(p)


def test_inventory_degenerate() -> None:
    flat = inventory_stats(np.zeros(0, np.int64), np.zeros(0, np.int64), 0, 100)
    assert flat["mean"] == 0 and flat["flat_fraction"] == 1.0 and flat["max_abs"] == 0
    zero_span = inventory_stats(np.array([5]), np.array([3]), 5, 5)
    assert zero_span["final"] == 3 and zero_span["mean"] == 3
    with pytest.raises(ValueError):
        inventory_stats(np.array([50]), np.array([1]), 60, 100)


# --------------------------------------------------------------------------
# the summary
# --------------------------------------------------------------------------
def _fills(rows: list[tuple[int, int, int, int, float, int]]) -> np.ndarray:
    out = np.zeros(len(rows), dtype=EXEC_REPORT)
    for k, (sid, side, px, q, fee, t) in enumerate(rows):
        out[k]["security_id"] = sid
        out[k]["side"] = side
        out[k]["price"] = px
        out[k]["qty"] = q
        out[k]["fee"] = fee
        out[k]["transact_ns"] = t
    return out


def test_summary_two_instruments() -> None:
    fills = _fills([
        (1, SIDE_BUY, 100 * TICK, 1, 0.5, 10),
        (2, SIDE_SELL, 50 * 10, 2, 0.5, 20),
        (1, SIDE_SELL, 102 * TICK, 1, 0.5, 30),  # +2 ticks on 1: 25 - 1 fee
        (2, SIDE_BUY, 51 * 10, 2, 0.5, 40),  # -1 tick x2 on 2 (tick 10, value 10): -20 - 1
    ])
    eq_t = np.array([10, 20, 30, 40], np.int64)
    eq = np.array([-0.5, -1.0, 23.0, 2.0])
    s = backtest_summary(fills, {1: (TICK, 12.5), 2: (10, 10.0)}, eq_t, eq, 0, 50, bar_ns=10)
    assert s["total_pnl"] == 2.0
    assert s["fees"] == 2.0 and s["fills"] == 4 and s["contracts"] == 6
    tr = s["trades"]
    assert tr["round_trips"] == 2
    assert tr["win_rate"] == 0.5
    assert tr["average_trade_pnl"] == pytest.approx((24.0 - 21.0) / 2)
    assert tr["profit_factor"] == pytest.approx(24.0 / 21.0)
    assert not tr["profit_factor_unbounded"]
    assert s["max_drawdown"] == pytest.approx(21.0)
    assert (s["max_drawdown_peak_ns"], s["max_drawdown_trough_ns"]) == (30, 40)
    inv1 = s["instruments"]["1"]["inventory"]
    assert inv1["mean"] == pytest.approx(20 / 50) and inv1["final"] == 0
    inv2 = s["instruments"]["2"]["inventory"]
    assert inv2["max_short"] == -2 and inv2["mean"] == pytest.approx(-2 * 20 / 50)
    ref = bar_pnl(eq_t, eq, 0, 50, 10)
    assert s["sharpe_annualised"] == pytest.approx(
        statistics.mean(ref) / statistics.stdev(ref) * math.sqrt(YEAR_SECONDS * 1e9 / 10))


def test_summary_empty_and_unbounded() -> None:
    s = backtest_summary(_fills([]), {1: (TICK, 12.5)}, np.zeros(0, np.int64), np.zeros(0), 0,
                         10)
    assert s["total_pnl"] == 0.0 and s["fills"] == 0 and s["sharpe_annualised"] is None
    assert s["trades"]["round_trips"] == 0 and s["trades"]["profit_factor"] is None
    assert s["max_drawdown"] == 0.0 and s["max_drawdown_trough_ns"] is None
    winner = _fills([(1, SIDE_BUY, 100 * TICK, 1, 0.0, 1), (1, SIDE_SELL, 101 * TICK, 1, 0.0, 2)])
    s = backtest_summary(winner, {1: (TICK, 12.5)}, np.array([1, 2]), np.array([0.0, 12.5]),
                         0, 3)
    assert s["trades"]["profit_factor"] is None and s["trades"]["profit_factor_unbounded"]
    assert s["trades"]["win_rate"] == 1.0
