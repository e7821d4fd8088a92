"""Backtest statistics: pure functions from fills and a P&L series to the report's figures.

Inputs are what a replay produces:

* the **fills** (``EXEC_REPORT`` rows of kind ``ER_FILL``, or any structured array
  with ``security_id``, ``side``, ``price``, ``qty``, ``fee``, ``transact_ns``),
  prices as integer mantissas, ``side`` SIDE_BUY / SIDE_SELL;
* per instrument its ``tick`` (price mantissa of one tick) and ``tick_value``
  (currency per tick per contract: ES 12.50);
* the **equity curve**: net P&L marked to market (realised + unrealised - fees,
  currency, starting at 0) sampled at increasing times, e.g. the trader's
  ``net_pnl`` after every tick, or ``mark_to_market`` of the fills on mid prices.

Definitions (the tests check each against a plain-Python reference):

=====================  =====================================================================
total P&L              last value of the equity curve (0 if empty)
annualised Sharpe      equity sampled at the end of fixed bars (``bar_ns``, from ``start_ns``,
                       last value at or before the bar end, 0 before the first sample);
                       per-bar P&L = its differences; mean / sample std (ddof 1) x
                       sqrt(bars per year). A year is ``year_seconds`` of trading: by default
                       252 sessions of 23 h (CME Globex). None with fewer than 2 bars or a
                       zero std. P&L is in currency without a capital base, so this is the
                       Sharpe of the P&L stream, the usual convention for a market maker
max drawdown           largest fall of the equity curve from its running peak, the peak
                       starting at 0 (the flat start): ``max_t(max(0, max_{s<=t} e_s) - e_t)``
round trips            fills matched first-in first-out per instrument: a closing fill
                       closes the oldest open lots first; each (opening fill, closing fill,
                       quantity) match is one round trip. Its P&L is the price difference
                       in ticks x tick_value x qty, minus the fees of both fills pro rata
                       to the quantity matched. Lots still open at the end are not trades
win rate               round trips with P&L > 0 / round trips
average trade P&L      mean round-trip P&L
profit factor          sum of winning round-trip P&L / |sum of losing ones|; +inf with
                       winners and no loser, None without round trips (JSON: inf -> None
                       with ``profit_factor_unbounded`` true)
fees                   sum of every fill's fee
inventory              the position as a step function of time from ``start_ns`` (flat) to
                       ``end_ns``, changed by each fill: time-weighted mean, mean |position|
                       and std, max long, max short, max |position|, share of time flat,
                       final position
=====================  =====================================================================

One numba kernel (FIFO matching); the rest is vectorised numpy. Nothing here reads a
clock or a file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from core.types import SIDE_BUY, SIDE_SELL

# CME Globex trades ~23 hours a day, ~252 sessions a year.
YEAR_SECONDS = 252 * 23 * 3600
DEFAULT_BAR_NS = 1_000_000_000

__all__ = [
    "DEFAULT_BAR_NS",
    "YEAR_SECONDS",
    "Drawdown",
    "RoundTrips",
    "annualised_sharpe",
    "backtest_summary",
    "bar_pnl",
    "fifo_round_trips",
    "inventory_stats",
    "mark_to_market",
    "max_drawdown",
    "position_path",
    "sharpe_ratio",
    "trade_stats",
]


# --------------------------------------------------------------------------
# kernel
# --------------------------------------------------------------------------
@njit(cache=True)
def _fifo_match(sign, price, qty, lot_fill, lot_left, out_entry, out_exit, out_qty,
                out_px_diff):
    """FIFO matching of one instrument's fills; returns the number of round trips.

    ``sign`` +1 buy / -1 sell. Open lots are a queue (all of one sign) in
    ``lot_fill`` / ``lot_left``; ``out_px_diff`` is (exit - entry) x the lot's sign,
    in price mantissa units per contract.
    """
    head = 0
    tail = 0
    k = 0
    for j in range(sign.shape[0]):
        s = sign[j]
        q = qty[j]
        while q > 0 and head < tail and sign[lot_fill[head]] != s:
            i = lot_fill[head]
            m = lot_left[head] if lot_left[head] < q else q
            out_entry[k] = i
            out_exit[k] = j
            out_qty[k] = m
            out_px_diff[k] = (price[j] - price[i]) * sign[i]
            k += 1
            lot_left[head] -= m
            q -= m
            if lot_left[head] == 0:
                head += 1
        if q > 0:
            lot_fill[tail] = j
            lot_left[tail] = q
            tail += 1
    return k


# --------------------------------------------------------------------------
# fills
# --------------------------------------------------------------------------
def _sign_of(side: np.ndarray) -> np.ndarray:
    side = np.asarray(side)
    bad = (side != SIDE_BUY) & (side != SIDE_SELL)
    if bad.any():
        raise ValueError(f"side must be SIDE_BUY ({SIDE_BUY}) or SIDE_SELL ({SIDE_SELL})")
    return np.where(side == SIDE_BUY, 1, -1).astype(np.int64)


def position_path(side: np.ndarray, qty: np.ndarray) -> np.ndarray:
    """Signed position (contracts) after each fill, starting flat."""
    q = np.asarray(qty, dtype=np.int64)
    return np.cumsum(_sign_of(side) * q)


@dataclass(frozen=True)
class RoundTrips:
    """FIFO round trips of one instrument (indices are into the fills given)."""

    entry: np.ndarray  # int64: index of the opening fill
    exit: np.ndarray  # int64: index of the closing fill
    qty: np.ndarray  # int64: contracts matched
    gross: np.ndarray  # float64: currency, before fees
    fees: np.ndarray  # float64: pro-rata fees of both fills
    pnl: np.ndarray  # float64: gross - fees

    def __len__(self) -> int:
        return int(self.qty.shape[0])


def fifo_round_trips(side: np.ndarray, price: np.ndarray, qty: np.ndarray,
                     fee: np.ndarray | None, tick: int, tick_value: float) -> RoundTrips:
    """Match one instrument's fills (in time order) first-in first-out."""
    if tick <= 0 or not tick_value > 0:
        raise ValueError("tick and tick_value must be > 0")
    sign = _sign_of(side)
    px = np.ascontiguousarray(price, dtype=np.int64)
    q = np.ascontiguousarray(qty, dtype=np.int64)
    n = sign.shape[0]
    if px.shape != (n,) or q.shape != (n,):
        raise ValueError("side, price and qty must be 1-D arrays of one length")
    if (q <= 0).any():
        raise ValueError("fill quantities must be > 0")
    f = np.zeros(n) if fee is None else np.asarray(fee, dtype=np.float64)
    if f.shape != (n,):
        raise ValueError("fee must have one value per fill")
    cap = 2 * n + 1  # each fill closes lots then opens at most one: trades <= 2n
    entry = np.zeros(cap, np.int64)
    exit_ = np.zeros(cap, np.int64)
    mq = np.zeros(cap, np.int64)
    diff = np.zeros(cap, np.int64)
    k = int(_fifo_match(sign, px, q, np.zeros(n + 1, np.int64), np.zeros(n + 1, np.int64),
                        entry, exit_, mq, diff))
    entry, exit_, mq, diff = entry[:k], exit_[:k], mq[:k], diff[:k]
    gross = diff.astype(np.float64) / float(tick) * float(tick_value) * mq
    per = f / q  # fee per contract of each fill
    fees = mq * (per[entry] + per[exit_]) if k else np.zeros(0)
    return RoundTrips(entry=entry, exit=exit_, qty=mq, gross=gross, fees=fees,
                      pnl=gross - fees)


def trade_stats(pnl: np.ndarray) -> dict[str, Any]:
    """Win rate, average, profit factor of round-trip P&Ls (see the module docstring)."""
    p = np.asarray(pnl, dtype=np.float64)
    n = int(p.size)
    wins = p[p > 0]
    losses = p[p < 0]
    gp = float(wins.sum())
    gl = float(-losses.sum())
    pf: float | None
    if n == 0:
        pf = None
    elif gl > 0:
        pf = gp / gl
    else:
        pf = math.inf if gp > 0 else None
    return {
        "round_trips": n,
        "win_rate": float(wins.size / n) if n else None,
        "average_trade_pnl": float(p.mean()) if n else None,
        "profit_factor": pf,
        "gross_profit": gp,
        "gross_loss": gl,
        "best_trade": float(p.max()) if n else None,
        "worst_trade": float(p.min()) if n else None,
    }


# --------------------------------------------------------------------------
# equity curve
# --------------------------------------------------------------------------
def _series(times_ns: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(times_ns, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    if t.ndim != 1 or t.shape != v.shape:
        raise ValueError("times and values must be 1-D arrays of one length")
    if t.size > 1 and (np.diff(t) < 0).any():
        raise ValueError("times must be non-decreasing")
    return t, v


@dataclass(frozen=True)
class Drawdown:
    amount: float  # currency, >= 0
    peak_index: int  # index of the peak before the trough (-1: the flat start)
    trough_index: int  # -1 when there is no drawdown


def max_drawdown(equity: np.ndarray) -> Drawdown:
    """Largest fall from the running peak (the peak starts at 0, the flat start)."""
    e = np.asarray(equity, dtype=np.float64)
    if e.size == 0:
        return Drawdown(0.0, -1, -1)
    peak = np.maximum.accumulate(np.maximum(e, 0.0))
    dd = peak - e
    j = int(np.argmax(dd))
    if not dd[j] > 0:
        return Drawdown(0.0, -1, -1)
    # the peak: the last time the running peak was reached at or before the trough
    at_peak = np.flatnonzero(e[: j + 1] >= peak[j])
    return Drawdown(float(dd[j]), int(at_peak[-1]) if at_peak.size else -1, j)


def bar_pnl(times_ns: np.ndarray, equity: np.ndarray, start_ns: int, end_ns: int,
            bar_ns: int = DEFAULT_BAR_NS) -> np.ndarray:
    """P&L of each bar ``[start + i*bar, start + (i+1)*bar)`` up to ``end_ns``: the change of
    the last equity value at or before each bar's end (0 before the first sample)."""
    t, e = _series(times_ns, equity)
    if bar_ns <= 0:
        raise ValueError("bar_ns must be > 0")
    if end_ns <= start_ns:
        return np.zeros(0)
    n_bars = -(-(end_ns - start_ns) // bar_ns)
    ends = start_ns + bar_ns * np.arange(1, n_bars + 1, dtype=np.int64)
    ends[-1] = min(int(ends[-1]), end_ns)  # the last, partial bar closes at the end
    idx = np.searchsorted(t, ends, side="right") - 1
    marks = np.where(idx >= 0, e[np.maximum(idx, 0)] if e.size else 0.0, 0.0)
    return np.diff(np.concatenate(([0.0], marks)))


def sharpe_ratio(per_bar: np.ndarray, bars_per_year: float) -> float | None:
    """mean / std (ddof 1) x sqrt(bars_per_year); None if undefined."""
    x = np.asarray(per_bar, dtype=np.float64)
    if x.size < 2:
        return None
    sd = float(x.std(ddof=1))
    if not sd > 0 or x.min() == x.max():  # constant P&L: the std is rounding noise
        return None
    return float(x.mean() / sd * math.sqrt(bars_per_year))


def annualised_sharpe(times_ns: np.ndarray, equity: np.ndarray, start_ns: int, end_ns: int,
                      bar_ns: int = DEFAULT_BAR_NS,
                      year_seconds: float = YEAR_SECONDS) -> float | None:
    return sharpe_ratio(bar_pnl(times_ns, equity, start_ns, end_ns, bar_ns),
                        year_seconds * 1e9 / bar_ns)


def mark_to_market(fill_ns: np.ndarray, side: np.ndarray, price: np.ndarray, qty: np.ndarray,
                   fee: np.ndarray | None, mark_ns: np.ndarray, mark_px: np.ndarray,
                   tick: int, tick_value: float) -> tuple[np.ndarray, np.ndarray]:
    """(equity, position) of one instrument at each mark time: cash from the fills at or
    before it, plus the position valued at the mark price, minus fees. Mark prices are
    mantissas (a mid may be a half tick: float)."""
    ft, _ = _series(fill_ns, np.zeros(len(fill_ns)))
    mt, mp = _series(mark_ns, mark_px)
    sign = _sign_of(side)
    q = np.asarray(qty, dtype=np.int64)
    px = np.asarray(price, dtype=np.float64)
    f = np.zeros(q.shape) if fee is None else np.asarray(fee, dtype=np.float64)
    pos = np.concatenate(([0], np.cumsum(sign * q)))
    # cash in ticks: selling receives the price, buying pays it
    cash = np.concatenate(([0.0], np.cumsum(-sign * q * px / tick)))
    fees = np.concatenate(([0.0], np.cumsum(f)))
    k = np.searchsorted(ft, mt, side="right")  # fills at or before each mark
    equity = (cash[k] + pos[k] * (mp / tick)) * tick_value - fees[k]
    return equity, pos[k]


# --------------------------------------------------------------------------
# inventory
# --------------------------------------------------------------------------
def inventory_stats(change_ns: np.ndarray, position: np.ndarray, start_ns: int,
                    end_ns: int) -> dict[str, Any]:
    """Time-weighted statistics of a position that is 0 from ``start_ns`` and becomes
    ``position[i]`` at ``change_ns[i]``, up to ``end_ns``."""
    t, p = _series(change_ns, position)
    if t.size and (t[0] < start_ns or t[-1] > end_ns):
        raise ValueError("position changes must lie within [start_ns, end_ns]")
    span = float(end_ns - start_ns)
    final = float(p[-1]) if p.size else 0.0
    levels = np.concatenate(([0.0], p))
    bounds = np.concatenate(([start_ns], t, [end_ns])).astype(np.float64)
    w = np.diff(bounds)  # time spent at each level
    out: dict[str, Any] = {
        "max_long": float(max(levels.max(), 0.0)),
        "max_short": float(min(levels.min(), 0.0)),
        "max_abs": float(np.abs(levels).max()),
        "final": final,
        "changes": int(p.size),
    }
    if span > 0:
        mean = float((w * levels).sum() / span)
        out.update(
            mean=mean,
            mean_abs=float((w * np.abs(levels)).sum() / span),
            std=float(math.sqrt(max((w * (levels - mean) ** 2).sum() / span, 0.0))),
            flat_fraction=float(w[levels == 0].sum() / span),
        )
    else:
        out.update(mean=final, mean_abs=abs(final), std=0.0, flat_fraction=float(final == 0))
    return out


# --------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------
def _json_float(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def backtest_summary(fills: np.ndarray, instruments: Mapping[int, tuple[int, float]],
                     equity_ns: np.ndarray, equity: np.ndarray, start_ns: int, end_ns: int,
                     bar_ns: int = DEFAULT_BAR_NS,
                     year_seconds: float = YEAR_SECONDS) -> dict[str, Any]:
    """The statistics section of a backtest report (JSON-able: non-finite -> None).

    ``fills``: structured rows in time order (``security_id``, ``side``, ``price``,
    ``qty``, ``fee``, ``transact_ns``); ``instruments``: security_id -> (tick,
    tick_value); ``equity_ns``/``equity``: the marked net P&L curve.
    """
    et, ev = _series(equity_ns, equity)
    dd = max_drawdown(ev)
    sharpe = annualised_sharpe(et, ev, start_ns, end_ns, bar_ns, year_seconds)
    all_pnl: list[np.ndarray] = []
    per_inst: dict[str, Any] = {}
    fees_total = float(np.asarray(fills["fee"], dtype=np.float64).sum()) if len(fills) else 0.0
    for sid, (tick, tick_value) in instruments.items():
        f = fills[fills["security_id"] == sid]
        rt = fifo_round_trips(f["side"], f["price"], f["qty"], f["fee"], tick, tick_value)
        all_pnl.append(rt.pnl)
        pos = position_path(f["side"], f["qty"])
        ts = trade_stats(rt.pnl)
        per_inst[str(sid)] = {
            "fills": len(f),
            "contracts": int(np.asarray(f["qty"]).sum()),
            "fees": float(np.asarray(f["fee"], dtype=np.float64).sum()),
            "round_trips": ts["round_trips"],
            "round_trip_pnl": float(rt.pnl.sum()),
            "inventory": inventory_stats(np.asarray(f["transact_ns"], dtype=np.int64), pos,
                                         start_ns, end_ns),
        }
    ts = trade_stats(np.concatenate(all_pnl) if all_pnl else np.zeros(0))
    pf = ts["profit_factor"]
    ts["profit_factor_unbounded"] = pf is not None and math.isinf(pf)
    ts["profit_factor"] = _json_float(pf)
    return {
        "total_pnl": float(ev[-1]) if ev.size else 0.0,
        "fees": fees_total,
        "fills": len(fills),
        "contracts": int(np.asarray(fills["qty"]).sum()) if len(fills) else 0,
        "sharpe_annualised": _json_float(sharpe),
        "sharpe_bar_seconds": bar_ns / 1e9,
        "sharpe_year_seconds": year_seconds,
        "max_drawdown": dd.amount,
        "max_drawdown_peak_ns": int(et[dd.peak_index]) if dd.peak_index >= 0 else int(start_ns),
        "max_drawdown_trough_ns": int(et[dd.trough_index]) if dd.trough_index >= 0 else None,
        "trades": ts,
        "instruments": per_inst,
        "start_ns": int(start_ns),
        "end_ns": int(end_ns),
    }
