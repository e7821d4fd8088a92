"""Pre-trade risk and the trader state machine.

``STARTING -> HALTED -> ACTIVE <-> REDUCING -> HALTED``

* STARTING: set-up; nothing is sent. ``finish_startup`` moves it to HALTED.
* HALTED: no new order and no modify; every live order is cancelled (cancels
  are never throttled). Left only by an explicit ``resume``, which succeeds only
  if risk allows (gateway up, daily loss and drawdown within limits).
* ACTIVE: quoting.
* REDUCING: only orders that reduce the position; orders on the other side are
  cancelled. Entered by the operator, or automatically when an actual position
  exceeds its cap (a lowered limit); an automatic REDUCING returns to ACTIVE by
  itself once every position is back within its cap.

Automatic HALT: daily loss or drawdown limit breached, gateway disconnected, the
kill switch; with ``halt_on_data_fault`` also stale/recovering market data and
NaN model output (otherwise those pause only the instrument concerned: its
orders are cancelled and it is quoted again once its data is sound).

Kill switch: HALTED + every live order cancelled + nothing new until an explicit
``resume``.

Every refused order action has a reason code (``RISK_*``) counted in
``TRADER.reject_counts``; every halt or pause is counted in ``halt_counts``.
Time is passed in (ns); the module reads no clock.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import njit

from core.oms import _mark_instrument
from core.types import (
    MDS_EMPTY,
    MDS_OK,
    MDS_STALE,
    NULL_I64,
    RATE_WINDOW_CAP,
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
    RISK_POSITION_BREACH,
    RISK_PRICE_COLLAR,
    RISK_REASON_NAMES,
    RISK_REDUCE_ONLY,
    RISK_STALE_DATA,
    RISK_SUBMIT_RATE,
    SIDE_BUY,
    SIDE_SELL,
    TRADER,
    TRADER_ACTIVE,
    TRADER_HALTED,
    TRADER_REDUCING,
    TRADER_STARTING,
    TRADER_STATE_NAMES,
)


# --------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------
@njit(cache=True)
def _rate_ok(times: Any, count: int, limit: int, window_ns: int, now_ns: int) -> bool:
    """At most ``limit`` sends in any window of ``window_ns``: the limit-th last must be out."""
    if count < limit:
        return True
    oldest = times[(count - limit) % RATE_WINDOW_CAP]
    return now_ns - oldest >= window_ns


@njit(cache=True)
def _record_submit(t: Any, now_ns: int) -> None:
    t.submit_times[t.submit_count % RATE_WINDOW_CAP] = now_ns
    t.submit_count += 1


@njit(cache=True)
def _record_cancel(t: Any, now_ns: int) -> None:
    t.cancel_times[t.cancel_count % RATE_WINDOW_CAP] = now_ns
    t.cancel_count += 1


@njit(cache=True)
def _halt(t: Any, reason: int) -> None:
    """Move to HALTED (counted once per transition; the kill switch always overrides)."""
    if t.state == TRADER_HALTED and reason != RISK_KILL_SWITCH:
        return
    if t.state == TRADER_HALTED and t.kill_switch != 0:
        return
    if t.state != TRADER_STARTING:
        t.state = TRADER_HALTED
    t.halt_reason = reason
    t.halt_counts[reason] += 1
    if reason == RISK_KILL_SWITCH:
        t.kill_switch = 1


@njit(cache=True)
def _reference_ticks(m: Any, tick: int) -> float:
    """Mid if both sides are there, else the last trade, else NaN (no reference)."""
    if m.bid_px != NULL_I64 and m.ask_px != NULL_I64:
        return (m.bid_px + m.ask_px) * 0.5 / tick
    if m.last_trade_px != NULL_I64:
        return m.last_trade_px / tick
    return np.nan


@njit(cache=True)
def _instrument_notional(inst: Any, extra_buy: int, extra_sell: int) -> float:
    """Worst-case gross notional (currency) of one instrument with extra open qty."""
    ref = inst.mark_ticks
    if math.isnan(ref):
        return 0.0
    wc = max(abs(inst.position + inst.buy_open + extra_buy),
             abs(inst.position - inst.sell_open - extra_sell))
    return wc * abs(ref) * inst.tick_value


@njit(cache=True)
def _status_reason(status: int) -> int:
    if status == MDS_STALE:
        return RISK_STALE_DATA
    if status == MDS_EMPTY:
        return RISK_NO_REFERENCE
    return RISK_MD_RECOVERING  # recovering, not trading


@njit(cache=True)
def _data_fault(t: Any, inst: Any, m: Any, alpha: float, vol: float, now_ns: int) -> int:
    if inst.enabled == 0:
        return RISK_INSTRUMENT_DISABLED
    if m.status != MDS_OK:
        return _status_reason(m.status)
    if now_ns - np.int64(m.update_ns) > t.stale_ns:
        return RISK_STALE_DATA
    if not (math.isfinite(alpha) and math.isfinite(vol)):
        return RISK_MODEL_NAN
    return RISK_OK


@njit(cache=True)
def _update_risk(t: Any, market: Any, features: Any, alpha: Any, vol_col: int,
                 now_ns: int) -> None:
    """Per tick: marks, P&L, data faults, limit breaches and the automatic transitions."""
    net = 0.0
    gross = 0.0
    breach = False
    for i in range(t.n_instruments):
        inst = t.instruments[i]
        m = market[i]
        _mark_instrument(inst, _reference_ticks(m, inst.tick))
        net += inst.net_pnl
        gross += _instrument_notional(inst, 0, 0)
        fault = _data_fault(t, inst, m, alpha[i], features[i, vol_col], now_ns)
        if fault != inst.pause_reason:
            if fault != RISK_OK:
                if t.halt_on_data_fault != 0 and fault != RISK_INSTRUMENT_DISABLED:
                    _halt(t, fault)
                else:
                    t.halt_counts[fault] += 1
            inst.pause_reason = fault
        if abs(inst.position) > inst.max_position:
            breach = True
    t.net_pnl = net
    t.gross_notional = gross
    t.daily_pnl = net - t.day_start_pnl
    if t.daily_pnl > t.peak_pnl:
        t.peak_pnl = t.daily_pnl
    t.drawdown = t.peak_pnl - t.daily_pnl

    if t.state == TRADER_ACTIVE or t.state == TRADER_REDUCING:
        if t.gateway_up == 0:
            _halt(t, RISK_GATEWAY_DOWN)
        elif t.daily_pnl <= -t.max_daily_loss:
            _halt(t, RISK_DAILY_LOSS)
        elif t.drawdown >= t.max_drawdown:
            _halt(t, RISK_DRAWDOWN)
    if t.state == TRADER_ACTIVE and breach:
        t.state = TRADER_REDUCING
        t.reducing_auto = 1
        t.halt_reason = RISK_POSITION_BREACH
        t.halt_counts[RISK_POSITION_BREACH] += 1
    elif t.state == TRADER_REDUCING and t.reducing_auto != 0 and not breach:
        t.state = TRADER_ACTIVE
        t.reducing_auto = 0


@njit(cache=True)
def _state_reason(t: Any) -> int:
    if t.state == TRADER_ACTIVE or t.state == TRADER_REDUCING:
        return RISK_OK
    if t.kill_switch != 0:
        return RISK_KILL_SWITCH
    return RISK_HALTED


@njit(cache=True)
def _check_exposure(t: Any, inst: Any, side: int, delta: int) -> int:
    """Reduce-only, worst-case position and notional for ``delta`` more open qty on a side."""
    pos = inst.position
    if t.state == TRADER_REDUCING and delta > 0:
        if side == SIDE_SELL:
            if pos <= 0 or inst.sell_open + delta > pos:
                return RISK_REDUCE_ONLY
        elif pos >= 0 or inst.buy_open + delta > -pos:
            return RISK_REDUCE_ONLY
    if delta > 0:
        if side == SIDE_BUY:
            if pos + inst.buy_open + delta > inst.max_position:
                return RISK_MAX_POSITION
        elif -(pos - inst.sell_open - delta) > inst.max_position:
            return RISK_MAX_POSITION
        before = _instrument_notional(inst, 0, 0)
        if side == SIDE_BUY:
            after = _instrument_notional(inst, delta, 0)
        else:
            after = _instrument_notional(inst, 0, delta)
        if t.gross_notional + after - before > t.max_notional:
            return RISK_MAX_NOTIONAL
    return RISK_OK


@njit(cache=True)
def _check_price(inst: Any, m: Any, price: int) -> int:
    if price % inst.tick != 0:
        return RISK_BAD_ORDER
    ref = _reference_ticks(m, inst.tick)
    if math.isnan(ref):
        return RISK_NO_REFERENCE
    if abs(price / inst.tick - ref) > inst.collar_ticks:
        return RISK_PRICE_COLLAR
    if m.high_limit != NULL_I64 and price > m.high_limit:
        return RISK_PRICE_COLLAR
    if m.low_limit != NULL_I64 and price < m.low_limit:
        return RISK_PRICE_COLLAR
    return RISK_OK


@njit(cache=True)
def _check_common(t: Any, inst: Any, m: Any, now_ns: int) -> int:
    r = _state_reason(t)
    if r != RISK_OK:
        return r
    if inst.pause_reason != RISK_OK:
        return inst.pause_reason
    if m.status != MDS_OK:
        return _status_reason(m.status)
    if now_ns - np.int64(m.update_ns) > t.stale_ns:
        return RISK_STALE_DATA
    if t.daily_pnl <= -t.max_daily_loss:
        return RISK_DAILY_LOSS
    if t.drawdown >= t.max_drawdown:
        return RISK_DRAWDOWN
    return RISK_OK


@njit(cache=True)
def _risk_check_new_order(t: Any, i: int, side: int, price: int, qty: int, m: Any,
                          now_ns: int) -> int:
    """Every pre-trade check of a new order; RISK_OK or the first reason that refuses it."""
    inst = t.instruments[i]
    r = _check_common(t, inst, m, now_ns)
    if r != RISK_OK:
        return r
    if qty <= 0 or (side != SIDE_BUY and side != SIDE_SELL):
        return RISK_BAD_ORDER
    if qty > inst.max_order_qty:
        return RISK_MAX_ORDER_QTY
    r = _check_exposure(t, inst, side, qty)
    if r != RISK_OK:
        return r
    r = _check_price(inst, m, price)
    if r != RISK_OK:
        return r
    if t.live_orders >= t.max_working_orders:
        return RISK_MAX_WORKING
    if not _rate_ok(t.submit_times, t.submit_count, t.submit_limit, t.submit_window_ns, now_ns):
        return RISK_SUBMIT_RATE
    return RISK_OK


@njit(cache=True)
def _risk_check_modify(t: Any, slot: int, price: int, qty: int, m: Any, now_ns: int) -> int:
    """Checks of a modify to total qty ``qty`` at ``price`` (exposure = its worst case)."""
    o = t.orders[slot]
    inst = t.instruments[o.instrument]
    r = _check_common(t, inst, m, now_ns)
    if r != RISK_OK:
        return r
    if qty <= o.cum:
        return RISK_BAD_ORDER
    if qty > inst.max_order_qty:
        return RISK_MAX_ORDER_QTY
    new_exposure = max(o.leaves, qty - o.cum)
    r = _check_exposure(t, inst, o.side, new_exposure - o.exposure)
    if r != RISK_OK:
        return r
    r = _check_price(inst, m, price)
    if r != RISK_OK:
        return r
    if not _rate_ok(t.submit_times, t.submit_count, t.submit_limit, t.submit_window_ns, now_ns):
        return RISK_SUBMIT_RATE
    return RISK_OK


@njit(cache=True)
def _risk_check_cancel(t: Any, protective: bool, now_ns: int) -> int:
    """Cancels that protect (halt, pause, reduce) are never throttled; requote cancels are."""
    if protective:
        return RISK_OK
    if not _rate_ok(t.cancel_times, t.cancel_count, t.cancel_limit, t.cancel_window_ns, now_ns):
        return RISK_CANCEL_RATE
    return RISK_OK


@njit(cache=True)
def _resume(t: Any, reset_drawdown: bool) -> int:
    """Operator resume: HALTED or REDUCING -> ACTIVE if risk allows; RISK_OK or why not."""
    if t.state == TRADER_STARTING:
        return RISK_HALTED
    if t.gateway_up == 0:
        return RISK_GATEWAY_DOWN
    if t.daily_pnl <= -t.max_daily_loss:
        return RISK_DAILY_LOSS
    if reset_drawdown:
        t.peak_pnl = t.daily_pnl
        t.drawdown = 0.0
    if t.drawdown >= t.max_drawdown:
        return RISK_DRAWDOWN
    for i in range(t.n_instruments):
        inst = t.instruments[i]
        if abs(inst.position) > inst.max_position:
            return RISK_POSITION_BREACH
    t.state = TRADER_ACTIVE
    t.kill_switch = 0
    t.reducing_auto = 0
    t.halt_reason = RISK_OK
    return RISK_OK


@njit(cache=True)
def _check_new_entry(trader: Any, market: Any, i: int, side: int, price: int, qty: int,
                     now_ns: int) -> int:
    return _risk_check_new_order(trader[0], i, side, price, qty, market[i], now_ns)


@njit(cache=True)
def _update_entry(trader: Any, market: Any, features: Any, alpha: Any, vol_col: int,
                  now_ns: int) -> None:
    _update_risk(trader[0], market, features, alpha, vol_col, now_ns)


@njit(cache=True)
def _throttle_entry(trader: Any, cancel: bool, record: bool, protective: bool,
                    now_ns: int) -> int:
    t = trader[0]
    if cancel:
        r = _risk_check_cancel(t, protective, now_ns)
    elif _rate_ok(t.submit_times, t.submit_count, t.submit_limit, t.submit_window_ns, now_ns):
        r = RISK_OK
    else:
        r = RISK_SUBMIT_RATE
    if record and r == RISK_OK:
        if cancel:
            _record_cancel(t, now_ns)
        else:
            _record_submit(t, now_ns)
    return r


@njit(cache=True)
def _halt_entry(trader: Any, reason: int) -> None:
    _halt(trader[0], reason)


@njit(cache=True)
def _resume_entry(trader: Any, reset_drawdown: bool) -> int:
    return _resume(trader[0], reset_drawdown)


# --------------------------------------------------------------------------
# facade: limits and control-plane actions
# --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class InstrumentLimits:
    """Per-instrument limits (contracts, ticks)."""

    max_order_qty: int = 10
    max_position: int = 20  # cap on filled + working + in flight, each side
    collar_ticks: int = 20  # max distance of an order price from the reference price

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) < 0:
                raise ValueError(f"{f.name} must be >= 0")


@dataclasses.dataclass(frozen=True)
class RiskLimits:
    """Global limits. Rates default well below CME's messaging thresholds."""

    max_notional: float = 5e7  # gross worst-case notional, currency
    max_working_orders: int = 64
    submit_limit: int = 50  # new + modify per submit window
    submit_window_ns: int = 1_000_000_000
    cancel_limit: int = 50
    cancel_window_ns: int = 1_000_000_000
    max_daily_loss: float = 5_000.0  # currency, positive
    max_drawdown: float = 5_000.0
    stale_ns: int = 2_000_000_000  # market data older than this is stale
    halt_on_data_fault: bool = False  # stale/recovering/NaN halts everything
    instruments: tuple[InstrumentLimits, ...] = ()

    def __post_init__(self) -> None:
        for name in ("max_notional", "max_daily_loss", "max_drawdown"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        for name in ("submit_window_ns", "cancel_window_ns", "stale_ns", "max_working_orders"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        for name in ("submit_limit", "cancel_limit"):
            v = getattr(self, name)
            if not 0 < v <= RATE_WINDOW_CAP:
                raise ValueError(f"{name} must be in 1..{RATE_WINDOW_CAP}")


def _check_trader(trader: np.ndarray) -> None:
    if not isinstance(trader, np.ndarray) or trader.dtype != TRADER or trader.shape != (1,):
        raise TypeError("trader must be a numpy array of shape (1,) and dtype TRADER")


def load_limits(trader: np.ndarray, limits: RiskLimits,
                instrument_limits: Sequence[InstrumentLimits] | None = None) -> None:
    """Install (or reload, e.g. on SIGHUP) the limits. State and positions are kept.

    A lower position cap than the current position puts the trader in REDUCING at
    the next tick; a lower loss limit already breached halts it.
    """
    _check_trader(trader)
    t = trader[0]
    per_inst = tuple(instrument_limits) if instrument_limits is not None else limits.instruments
    n = int(t["n_instruments"])
    if per_inst and len(per_inst) != n:
        raise ValueError(f"{len(per_inst)} instrument limits for {n} instruments")
    t["max_notional"] = limits.max_notional
    t["max_working_orders"] = limits.max_working_orders
    t["submit_limit"] = limits.submit_limit
    t["submit_window_ns"] = limits.submit_window_ns
    t["cancel_limit"] = limits.cancel_limit
    t["cancel_window_ns"] = limits.cancel_window_ns
    t["max_daily_loss"] = limits.max_daily_loss
    t["max_drawdown"] = limits.max_drawdown
    t["stale_ns"] = limits.stale_ns
    t["halt_on_data_fault"] = int(limits.halt_on_data_fault)
    for i, il in enumerate(per_inst):
        inst = t["instruments"][i]
        inst["max_order_qty"] = il.max_order_qty
        inst["max_position"] = il.max_position
        inst["collar_ticks"] = il.collar_ticks


def finish_startup(trader: np.ndarray) -> None:
    """STARTING -> HALTED: set-up done; the process reconciles, then resumes."""
    _check_trader(trader)
    t = trader[0]
    if int(t["state"]) == TRADER_STARTING:
        t["state"] = TRADER_HALTED
        t["halt_reason"] = RISK_OPERATOR


def halt(trader: np.ndarray, reason: int = RISK_OPERATOR) -> None:
    """Halt (operator, or the process on an event such as a gateway loss)."""
    _check_trader(trader)
    _halt_entry(trader, reason)


def kill_switch(trader: np.ndarray) -> None:
    """HALTED + kill flag: the next decide (or TradingCore.kill_switch) cancels every order."""
    _check_trader(trader)
    _halt_entry(trader, RISK_KILL_SWITCH)


def resume(trader: np.ndarray, reset_drawdown: bool = False) -> int:
    """Explicit operator resume; returns RISK_OK or the reason it was refused."""
    _check_trader(trader)
    return int(_resume_entry(trader, reset_drawdown))


def reduce_only(trader: np.ndarray) -> bool:
    """ACTIVE -> REDUCING by the operator (stays until resume). False if not ACTIVE."""
    _check_trader(trader)
    t = trader[0]
    if int(t["state"]) != TRADER_ACTIVE:
        return False
    t["state"] = TRADER_REDUCING
    t["reducing_auto"] = 0
    t["halt_reason"] = RISK_OPERATOR
    return True


def set_gateway_up(trader: np.ndarray, up: bool) -> None:
    """Gateway connectivity; a loss halts at once (a reconnect does not resume)."""
    _check_trader(trader)
    trader[0]["gateway_up"] = int(up)
    if not up:
        _halt_entry(trader, RISK_GATEWAY_DOWN)


def new_trading_day(trader: np.ndarray) -> None:
    """Start of a trading day: the daily P&L and drawdown count from the current P&L."""
    _check_trader(trader)
    t = trader[0]
    t["day_start_pnl"] = t["net_pnl"]
    t["daily_pnl"] = 0.0
    t["peak_pnl"] = 0.0
    t["drawdown"] = 0.0


def check_new_order(trader: np.ndarray, market: np.ndarray, instrument: int, side: int,
                    price: int, qty: int, now_ns: int) -> int:
    """Run the pre-trade checks of one new order (no side effect); RISK_OK or a reason."""
    _check_trader(trader)
    return int(_check_new_entry(trader, market, instrument, side, price, qty, now_ns))


def throttle(trader: np.ndarray, now_ns: int, cancel: bool = False, record: bool = True,
             protective: bool = False) -> int:
    """The submit (or cancel) throttle at ``now_ns``: RISK_OK and, if ``record``, the
    message is counted in the window; else RISK_SUBMIT_RATE / RISK_CANCEL_RATE.
    (decide does this for every action it sends; this is for manual orders and tests.)"""
    _check_trader(trader)
    return int(_throttle_entry(trader, cancel, record, protective, now_ns))


def update_risk(trader: np.ndarray, market: np.ndarray, features: np.ndarray,
                alpha: np.ndarray, vol_col: int, now_ns: int) -> None:
    """The per-tick risk update (marks, P&L, faults, breaches), as decide runs it."""
    _check_trader(trader)
    _update_entry(trader, market, features, alpha, vol_col, now_ns)


def risk_status(trader: np.ndarray) -> dict[str, Any]:
    """State, reasons, P&L and non-zero counters by name (control plane; allocates)."""
    _check_trader(trader)
    t = trader[0]
    return {
        "state": TRADER_STATE_NAMES[int(t["state"])],
        "halt_reason": RISK_REASON_NAMES[int(t["halt_reason"])],
        "kill_switch": bool(t["kill_switch"]),
        "gateway_up": bool(t["gateway_up"]),
        "net_pnl": float(t["net_pnl"]),
        "daily_pnl": float(t["daily_pnl"]),
        "drawdown": float(t["drawdown"]),
        "gross_notional": float(t["gross_notional"]),
        "live_orders": int(t["live_orders"]),
        "rejects": {RISK_REASON_NAMES[i]: int(c) for i, c in enumerate(t["reject_counts"]) if c},
        "halts": {RISK_REASON_NAMES[i]: int(c) for i, c in enumerate(t["halt_counts"]) if c},
    }


__all__ = [
    "InstrumentLimits",
    "RiskLimits",
    "check_new_order",
    "finish_startup",
    "halt",
    "kill_switch",
    "load_limits",
    "new_trading_day",
    "reduce_only",
    "resume",
    "risk_status",
    "set_gateway_up",
    "throttle",
    "update_risk",
]
