"""The market maker: Avellaneda-Stoikov quotes with inventory and model-alpha skew.

All prices in ticks (price mantissa / tick). For instrument i at a tick:

    s      = mid + clamp(alpha_skew * alpha, +-max_alpha_skew_ticks)   (alpha-skewed mid)
    var    = realized_vol_ticks ** 2                                   (from the features)
    r      = s - q * gamma * var * tau                                 (reservation price)
    delta  = gamma * var * tau + (2 / gamma) * ln(1 + gamma / k)       (optimal total spread)
    h      = max(delta / 2, min_half_spread_ticks)
    bid    = floor(r - h),  ask = ceil(r + h)                          (bid down, ask up)

with q the position in contracts and tau = ``vol_horizon``. The quotes never
cross the market (bid < best ask, ask > best bid) and are at least one tick
apart. Layer j sits ``j * layer_spacing_ticks`` further out. Sizes come from
``quote_size``, trimmed so that the worst-case position (filled + every open
order) stays within ``max_position`` and each order within ``max_order_qty``;
in REDUCING only the side that reduces the position is quoted, up to the
position. The order manager (order_manager.py) decides which quotes actually
need a message.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from numba import njit

from core.types import MAX_LAYERS, NULL_I64, TRADER_REDUCING

_EPS = 1e-9  # float noise guard for floor/ceil of values that are whole ticks


@dataclasses.dataclass(frozen=True)
class MarketMakerParams:
    """Quoting parameters of one instrument (ticks and contracts)."""

    gamma: float = 0.1  # risk aversion, 1/ticks
    k: float = 1.5  # arrival intensity decay: fill rate ~ exp(-k * distance in ticks)
    vol_horizon: float = 1.0  # tau, in the time unit of realized_vol_ticks
    alpha_skew: float = 1.0  # ticks of mid skew per unit of model alpha
    max_alpha_skew_ticks: float = 2.0
    min_half_spread_ticks: float = 0.5
    quote_size: int = 1
    n_layers: int = 1
    layer_spacing_ticks: int = 1
    requote_ticks: int = 2  # move a quote toward the market only by this many ticks or more
    at_risk_ticks: int = 1  # move it away from the market (protect) by this many or more

    def __post_init__(self) -> None:
        if not self.gamma > 0 or not self.k > 0:
            raise ValueError("gamma and k must be > 0")
        if self.vol_horizon < 0 or self.min_half_spread_ticks < 0 or self.max_alpha_skew_ticks < 0:
            raise ValueError("vol_horizon, min_half_spread_ticks, max_alpha_skew_ticks >= 0")
        if self.quote_size < 0:
            raise ValueError("quote_size must be >= 0")
        if not 0 <= self.n_layers <= MAX_LAYERS:
            raise ValueError(f"n_layers must be in 0..{MAX_LAYERS}")
        if self.layer_spacing_ticks < 1 or self.requote_ticks < 1 or self.at_risk_ticks < 1:
            raise ValueError("layer_spacing_ticks, requote_ticks, at_risk_ticks must be >= 1")


@njit(cache=True)
def _quote_prices(mid: float, position: int, vol: float, alpha: float, gamma: float, k: float,
                  tau: float, alpha_skew: float, max_skew: float, min_half: float,
                  best_bid: float, best_ask: float) -> tuple[float, float, float, float]:
    """(bid ticks, ask ticks, reservation, half spread) of layer 0."""
    skew = alpha_skew * alpha
    if skew > max_skew:
        skew = max_skew
    elif skew < -max_skew:
        skew = -max_skew
    var = vol * vol
    r = mid + skew - position * gamma * var * tau
    h = 0.5 * (gamma * var * tau + (2.0 / gamma) * math.log(1.0 + gamma / k))
    if h < min_half:
        h = min_half
    bid = float(math.floor(r - h + _EPS))
    ask = float(math.ceil(r + h - _EPS))
    if ask <= bid:
        ask = bid + 1.0
    # post-only intent: never cross the market
    if bid >= best_ask:
        bid = best_ask - 1.0
    if ask <= best_bid:
        ask = best_bid + 1.0
    return bid, ask, r, h


@njit(cache=True)
def _quote(t: Any, i: int, m: Any, alpha: float, vol: float) -> None:
    """Fill ``desired_px`` / ``desired_qty`` [side-1, layer] of instrument i (qty 0 = no quote)."""
    inst = t.instruments[i]
    for s in range(2):
        for j in range(MAX_LAYERS):
            inst.desired_qty[s, j] = 0
            inst.desired_px[s, j] = 0
    if m.bid_px == NULL_I64 or m.ask_px == NULL_I64 or inst.quote_size <= 0:
        return
    tick = inst.tick
    best_bid = m.bid_px / tick
    best_ask = m.ask_px / tick
    mid = 0.5 * (best_bid + best_ask)
    pos = inst.position
    bid, ask, r, h = _quote_prices(mid, pos, vol, alpha, inst.gamma, inst.k, inst.vol_horizon,
                                   inst.alpha_skew, inst.max_alpha_skew_ticks,
                                   inst.min_half_spread_ticks, best_bid, best_ask)
    inst.reservation_ticks = r
    inst.half_spread_ticks = h

    # room each side may still take, counting only open orders that are not our quotes
    quote_buy = 0
    quote_sell = 0
    for j in range(MAX_LAYERS):
        sb = inst.quote_slot[0, j]
        if sb >= 0:
            quote_buy += t.orders[sb].exposure
        ss = inst.quote_slot[1, j]
        if ss >= 0:
            quote_sell += t.orders[ss].exposure
    other_buy = inst.buy_open - quote_buy
    other_sell = inst.sell_open - quote_sell
    if t.state == TRADER_REDUCING:
        room_buy = max(-pos - other_buy, 0)
        room_sell = max(pos - other_sell, 0)
    else:
        room_buy = max(inst.max_position - pos - other_buy, 0)
        room_sell = max(inst.max_position + pos - other_sell, 0)

    size = min(inst.quote_size, inst.max_order_qty)
    n_layers = min(inst.n_layers, MAX_LAYERS)
    for j in range(n_layers):
        qb = min(size, room_buy)
        if qb > 0:
            inst.desired_qty[0, j] = qb
            inst.desired_px[0, j] = int(bid - j * inst.layer_spacing_ticks) * tick
            room_buy -= qb
        qs = min(size, room_sell)
        if qs > 0:
            inst.desired_qty[1, j] = qs
            inst.desired_px[1, j] = int(ask + j * inst.layer_spacing_ticks) * tick
            room_sell -= qs


@njit(cache=True)
def _quote_prices_entry(mid: float, position: int, vol: float, alpha: float, gamma: float,
                        k: float, tau: float, alpha_skew: float, max_skew: float, min_half: float,
                        best_bid: float, best_ask: float) -> tuple[float, float, float, float]:
    return _quote_prices(mid, position, vol, alpha, gamma, k, tau, alpha_skew, max_skew,
                         min_half, best_bid, best_ask)


def quote_prices(mid_ticks: float, position: int, vol_ticks: float, alpha: float,
                 params: MarketMakerParams, best_bid_ticks: float,
                 best_ask_ticks: float) -> tuple[float, float, float, float]:
    """Layer-0 (bid, ask, reservation, half spread) in ticks, as the kernel computes them."""
    p = params
    b, a, r, h = _quote_prices_entry(float(mid_ticks), int(position), float(vol_ticks),
                                     float(alpha), p.gamma, p.k, p.vol_horizon, p.alpha_skew,
                                     p.max_alpha_skew_ticks, p.min_half_spread_ticks,
                                     float(best_bid_ticks), float(best_ask_ticks))
    return float(b), float(a), float(r), float(h)


def install_params(trader: Any, instrument: int, params: MarketMakerParams) -> None:
    """Write an instrument's quoting parameters into the TRADER record (set-up / reload)."""
    inst = trader[0]["instruments"][instrument]
    inst["gamma"] = params.gamma
    inst["k"] = params.k
    inst["vol_horizon"] = params.vol_horizon
    inst["alpha_skew"] = params.alpha_skew
    inst["max_alpha_skew_ticks"] = params.max_alpha_skew_ticks
    inst["min_half_spread_ticks"] = params.min_half_spread_ticks
    inst["quote_size"] = params.quote_size
    inst["n_layers"] = params.n_layers
    inst["layer_spacing_ticks"] = params.layer_spacing_ticks
    inst["requote_ticks"] = params.requote_ticks
    inst["at_risk_ticks"] = params.at_risk_ticks


__all__ = ["MarketMakerParams", "install_params", "quote_prices"]
