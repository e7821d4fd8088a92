"""The fused per-tick trading step and its facade.

Hot path, after the books/features kernel and the model::

    n = gateway.poll(core.reports)                        # exec reports, into the record
    k = core.decide(market, features, alpha, n, now_ns, trigger_seq)
    gateway.send(core.actions, k)

``decide`` is ONE numba call over four arrays (the TRADER record, the market
view, the features and the model alpha) and three scalars. In order it: applies
the execution reports (OMS), marks positions and updates P&L, data faults, limit
breaches and the trader state (risk), then per instrument either cancels
(halted, paused) or quotes (market maker) and turns the quotes into the fewest
risk-checked actions (order manager). Nothing in it allocates, logs or raises;
every refusal is a counted reason code. Call it on every completed market-data
event and whenever the gateway returned execution reports (with the
trigger_seq of the last market-data packet), so that late acks of a halted
trader are cancelled at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import njit, typeof, types

from core.feature_spec import FEATURE_INDEX, N_FEATURES
from core.oms import _apply_reports, init_order_table, orders_table, positions, tick_value
from core.risk import (
    InstrumentLimits,
    RiskLimits,
    _halt,
    _update_risk,
    finish_startup,
    halt,
    load_limits,
    new_trading_day,
    reduce_only,
    resume,
    risk_status,
    set_gateway_up,
)
from core.strategy.market_maker import MarketMakerParams, _quote, install_params
from core.strategy.order_manager import _cancel_all, _manage_quotes
from core.types import (
    BOOK_CONS_ASK,
    BOOK_CONS_BID,
    INSTRUMENT,
    IS_GAP_PENDING,
    IS_HIGH_LIMIT,
    IS_LAST_TRADE_PX,
    IS_LOW_LIMIT,
    IS_TRADING_STATUS,
    LV_PX,
    LV_QTY,
    MARKET_VIEW,
    MAX_TRADED_INSTRUMENTS,
    MDS_EMPTY,
    MDS_NOT_TRADING,
    MDS_OK,
    MDS_RECOVERING,
    NULL_I64,
    RISK_KILL_SWITCH,
    RISK_OK,
    RISK_OPERATOR,
    TRADER,
    TRADER_ACTIVE,
    TRADER_REDUCING,
    TRADER_STARTING,
    TS_NO_CHANGE,
    TS_READY_TO_TRADE,
)

VOL_COL = FEATURE_INDEX["realized_vol_ticks"]


# --------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------
@njit(cache=True)
def _decide(trader: Any, market: Any, features: Any, alpha: Any, n_reports: int, now_ns: int,
            trigger_seq: int) -> int:
    """One tick: OMS, risk, strategy, order manager. Returns the number of actions written."""
    t = trader[0]
    t.n_decides += 1
    t.last_decide_ns = now_ns
    if n_reports > 0:
        _apply_reports(t, t.reports, n_reports)
    _update_risk(t, market, features, alpha, VOL_COL, now_ns)
    if t.state == TRADER_STARTING:
        return 0
    if t.state != TRADER_ACTIVE and t.state != TRADER_REDUCING:
        if t.live_orders > 0:
            return _cancel_all(t, 0, -1, False, now_ns, trigger_seq)
        return 0
    k = 0
    if t.adopted_orders > 0:
        k = _cancel_all(t, k, -1, True, now_ns, trigger_seq)
    for i in range(t.n_instruments):
        inst = t.instruments[i]
        if inst.pause_reason != RISK_OK:
            if inst.live_orders > 0:
                k = _cancel_all(t, k, i, False, now_ns, trigger_seq)
            continue
        _quote(t, i, market[i], alpha[i], features[i, VOL_COL])
        k = _manage_quotes(t, k, i, market[i], now_ns, trigger_seq)
    return k


@njit(cache=True)
def _kill(trader: Any, now_ns: int, trigger_seq: int) -> int:
    t = trader[0]
    _halt(t, RISK_KILL_SWITCH)
    return _cancel_all(t, 0, -1, False, now_ns, trigger_seq)


@njit(cache=True)
def _market_view_from_books(market: Any, books: Any, inst_state: Any, rows: Any,
                            now_ns: int) -> None:
    """Fill the market view of each traded instrument from the books layer's arrays.

    ``rows[i]`` is the books row of traded instrument i (-1 = not in the books yet).
    Uses the consolidated (outright + implied) best level.
    """
    for i in range(rows.shape[0]):
        m = market[i]
        r = rows[i]
        if r < 0:
            m.status = MDS_EMPTY
            continue
        m.bid_px = books[r, BOOK_CONS_BID, 0, LV_PX]
        m.bid_qty = books[r, BOOK_CONS_BID, 0, LV_QTY]
        m.ask_px = books[r, BOOK_CONS_ASK, 0, LV_PX]
        m.ask_qty = books[r, BOOK_CONS_ASK, 0, LV_QTY]
        m.last_trade_px = inst_state[r, IS_LAST_TRADE_PX]
        m.high_limit = inst_state[r, IS_HIGH_LIMIT]
        m.low_limit = inst_state[r, IS_LOW_LIMIT]
        m.update_ns = now_ns
        ts = inst_state[r, IS_TRADING_STATUS]
        if inst_state[r, IS_GAP_PENDING] != 0:
            m.status = MDS_RECOVERING
        elif ts != 0 and ts != TS_READY_TO_TRADE and ts != TS_NO_CHANGE:
            m.status = MDS_NOT_TRADING
        else:
            m.status = MDS_OK


# --------------------------------------------------------------------------
# facade
# --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class InstrumentConfig:
    """One traded instrument: contract, fees, limits and quoting parameters."""

    security_id: int
    tick: int  # min price increment, as a price mantissa (ES in PRICE9: 25 * 10**9)
    tick_value: float  # currency per tick per contract (ES: 12.5)
    price_exponent: int = -9
    maker_fee: float = 0.0  # exchange fee per contract, resting
    taker_fee: float = 0.0  # exchange fee per contract, aggressing
    fee_per_contract: float = 0.0  # clearing + broker + NFA
    limits: InstrumentLimits = dataclasses.field(default_factory=InstrumentLimits)
    params: MarketMakerParams = dataclasses.field(default_factory=MarketMakerParams)
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.tick <= 0 or not self.tick_value > 0:
            raise ValueError("tick and tick_value must be > 0")

    @classmethod
    def from_definition(cls, row: np.void, **kwargs: Any) -> InstrumentConfig:
        """From an INSTRUMENT row (security definition): tick, exponent and tick value."""
        if row.dtype != INSTRUMENT:
            raise TypeError("row must be an INSTRUMENT record")
        tick = int(row["min_price_increment"])
        exp = int(row["price_exponent"])
        tv = tick_value(tick, exp, int(row["display_factor"]), int(row["contract_multiplier"]))
        return cls(security_id=int(row["security_id"]), tick=tick, tick_value=tv,
                   price_exponent=exp, **kwargs)


def new_market_view(n: int) -> np.ndarray:
    """A MARKET_VIEW array of n empty rows (no book, status EMPTY)."""
    m = np.zeros(n, dtype=MARKET_VIEW)
    for f in ("bid_px", "ask_px", "last_trade_px", "high_limit", "low_limit"):
        m[f] = NULL_I64
    m["status"] = MDS_EMPTY
    return m


def set_market(market: np.ndarray, i: int, bid_px: int | None, ask_px: int | None,
               now_ns: int, bid_qty: int = 1, ask_qty: int = 1, status: int = MDS_OK,
               last_trade_px: int | None = None) -> None:
    """Write one market-view row (tests, demos; the hot path fills it in a kernel)."""
    row = market[i]
    row["bid_px"] = NULL_I64 if bid_px is None else bid_px
    row["ask_px"] = NULL_I64 if ask_px is None else ask_px
    row["bid_qty"] = bid_qty if bid_px is not None else 0
    row["ask_qty"] = ask_qty if ask_px is not None else 0
    row["last_trade_px"] = NULL_I64 if last_trade_px is None else last_trade_px
    row["update_ns"] = now_ns
    row["status"] = status


def market_view_from_books(market: np.ndarray, books: np.ndarray, inst_state: np.ndarray,
                           rows: np.ndarray, now_ns: int) -> None:
    """Fill ``market`` from the books layer (core/book arrays), rows[i] = books row of i."""
    if market.dtype != MARKET_VIEW or len(rows) > len(market):
        raise ValueError("market must be MARKET_VIEW with a row per traded instrument")
    _market_view_from_books(market, books, inst_state, rows, now_ns)


class TradingCore:
    """The trading state (one TRADER record) and its control plane.

    ``reports`` and ``actions`` are views into the record: the gateway polls into
    the first and sends from the second. ``reject_counts``, ``halt_counts``,
    ``oms_counts`` are int64 views the metrics layer reads without allocating.
    """

    __slots__ = ("_alpha", "_features", "_market", "_tick", "actions", "halt_counts",
                 "instruments", "instruments_config", "oms_counts", "orders", "reject_counts",
                 "reports", "trader")

    def __init__(self, instruments: Sequence[InstrumentConfig], limits: RiskLimits,
                 cl_ord_id_base: int = 1) -> None:
        n = len(instruments)
        if not 1 <= n <= MAX_TRADED_INSTRUMENTS:
            raise ValueError(f"1..{MAX_TRADED_INSTRUMENTS} instruments, not {n}")
        if len({c.security_id for c in instruments}) != n:
            raise ValueError("duplicate security_id")
        self.trader = np.zeros(1, dtype=TRADER)
        self.instruments_config = tuple(instruments)
        t = self.trader[0]
        t["n_instruments"] = n
        t["state"] = TRADER_STARTING
        t["gateway_up"] = 0
        insts = t["instruments"]
        insts["mark_ticks"] = np.nan
        for i, c in enumerate(instruments):
            row = insts[i]
            row["security_id"] = c.security_id
            row["enabled"] = int(c.enabled)
            row["price_exponent"] = c.price_exponent
            row["tick"] = c.tick
            row["tick_value"] = c.tick_value
            row["maker_fee"] = c.maker_fee
            row["taker_fee"] = c.taker_fee
            row["fee_per_contract"] = c.fee_per_contract
            install_params(self.trader, i, c.params)
        init_order_table(self.trader, cl_ord_id_base)
        self.reload_limits(limits)
        self.reports = self.trader["reports"][0]
        self.actions = self.trader["actions"][0]
        self.reject_counts = self.trader["reject_counts"][0]
        self.halt_counts = self.trader["halt_counts"][0]
        self.oms_counts = self.trader["oms_counts"][0]
        self.orders = self.trader["orders"][0]
        self.instruments = self.trader["instruments"][0]
        self._tick: Any = None
        self._market: np.ndarray | None = None
        self._features: np.ndarray | None = None
        self._alpha: np.ndarray | None = None

    # -- hot path -----------------------------------------------------------
    def decide(self, market: np.ndarray, features: np.ndarray, alpha: np.ndarray,
               n_reports: int, now_ns: int, trigger_seq: int = 0) -> int:
        """The fused tick; writes ``actions[:k]`` and returns k."""
        return _decide(self.trader, market, features, alpha, n_reports, now_ns,
                       trigger_seq)

    def bind(self, market: np.ndarray, features: np.ndarray, alpha: np.ndarray) -> None:
        """Fix the hot-path input arrays once; then ``tick`` runs decide on them.

        The arrays are validated here and the kernel compiled for their exact
        types, so ``tick`` calls the compiled entry point directly and skips
        numba's per-call type dispatch (~1 us for record arrays on this class of
        machine). Rebind if an array is replaced; writing into them is fine.
        """
        n = int(self.trader[0]["n_instruments"])
        if not isinstance(market, np.ndarray) or market.dtype != MARKET_VIEW or \
                market.ndim != 1 or len(market) < n or not market.flags.c_contiguous:
            raise ValueError(f"market: C-contiguous MARKET_VIEW array of >= {n} rows")
        if not isinstance(features, np.ndarray) or features.ndim != 2 or \
                features.shape[0] < n or features.shape[1] <= VOL_COL or \
                features.dtype not in (np.float32, np.float64) or \
                not features.flags.c_contiguous:
            raise ValueError(f"features: C-contiguous float array of shape (>= {n}, "
                             f"{N_FEATURES})")
        if not isinstance(alpha, np.ndarray) or alpha.ndim != 1 or len(alpha) < n or \
                alpha.dtype not in (np.float32, np.float64):
            raise ValueError(f"alpha: 1-D float array of >= {n} values")
        sig = (typeof(self.trader), typeof(market), typeof(features), typeof(alpha),
               types.int64, types.int64, types.int64)
        self._tick = _decide.compile(sig)
        self._market, self._features, self._alpha = market, features, alpha

    def tick(self, n_reports: int, now_ns: int, trigger_seq: int = 0) -> int:
        """decide on the bound arrays (see ``bind``): the hot loop's one call per tick."""
        return self._tick(self.trader, self._market, self._features,
                          self._alpha, n_reports, now_ns, trigger_seq)

    # -- control plane --------------------------------------------------------
    def finish_startup(self) -> None:
        finish_startup(self.trader)

    def kill_switch(self, now_ns: int, trigger_seq: int = 0) -> int:
        """Halt, and write a cancel for every live order into ``actions``; returns k.

        Send them at once (and the gateway's mass cancel as a second line). Orders
        acknowledged later are cancelled by the next decide; nothing new is sent
        until ``resume``.
        """
        return int(_kill(self.trader, now_ns, trigger_seq))

    def halt(self, reason: int = RISK_OPERATOR) -> None:
        halt(self.trader, reason)

    def resume(self, reset_drawdown: bool = False) -> int:
        """RISK_OK, or the reason the resume is refused."""
        return resume(self.trader, reset_drawdown)

    def reduce_only(self) -> bool:
        return reduce_only(self.trader)

    def set_gateway_up(self, up: bool) -> None:
        set_gateway_up(self.trader, up)

    def reload_limits(self, limits: RiskLimits) -> None:
        inst_limits = limits.instruments or tuple(c.limits for c in self.instruments_config)
        load_limits(self.trader, limits, inst_limits)

    def reload_params(self, instrument: int, params: MarketMakerParams) -> None:
        install_params(self.trader, instrument, params)

    def new_trading_day(self) -> None:
        new_trading_day(self.trader)

    @property
    def state(self) -> int:
        return int(self.trader[0]["state"])

    def status(self) -> dict[str, Any]:
        out = risk_status(self.trader)
        out["positions"] = positions(self.trader)
        return out

    def live_orders(self) -> list[dict[str, Any]]:
        return orders_table(self.trader, live_only=True)

    def features_buffer(self) -> np.ndarray:
        """A zeroed features array of the shape decide expects (n_instruments, N_FEATURES)."""
        return np.zeros((int(self.trader[0]["n_instruments"]), N_FEATURES), dtype=np.float64)


__all__ = [
    "VOL_COL",
    "InstrumentConfig",
    "TradingCore",
    "market_view_from_books",
    "new_market_view",
    "set_market",
]
