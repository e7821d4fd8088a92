"""Feature kernels, updated incrementally at each completed event, and the replay API.

Every feature of ``core.feature_spec.FEATURE_NAMES`` is updated in O(levels) per
completed event of an instrument from small per-instrument state (no history is
re-read): the previous mid and top levels (for OFI), exponentially decayed sums,
a running VPIN window over volume buckets. The book read is the consolidated view
(outright + implied merged by price), the liquidity an aggressor actually meets.

Definitions (``tick`` = min price increment of the instrument, or, when no
definition gave it, the gcd of the price differences seen in its book):

* ``mid_change_ticks``: (mid - mid at the previous completed event with a mid) / tick;
  0 when either side is empty.
* ``microprice_offset_ticks``: (bid*ask_qty + ask*bid_qty) / (bid_qty + ask_qty) - mid,
  in ticks; 0 when a side is empty.
* ``spread_ticks``: (best ask - best bid) / tick; 0 when a side is empty.
* ``imbalance_l1``: (bid_qty - ask_qty) / (bid_qty + ask_qty) at level 1 (an empty side
  has quantity 0, so a one-sided book gives +-1); 0 when both are empty.
* ``imbalance_depth``: the same over ``P_DEPTH_LEVELS`` levels with weights 1/k.
* ``ofi``: order-flow imbalance of Cont, Kukanov & Stoikov summed over the top
  ``OFI_LEVELS`` levels, per level e = 1{b>=b'}q_b - 1{b<=b'}q_b' - 1{a<=a'}q_a +
  1{a>=a'}q_a' (primes = previous completed event; an empty bid is -inf, an empty
  ask +inf), accumulated as an exponentially decayed sum s = l*s + e with
  l = ``P_OFI_DECAY`` (window ~ 1/(1-l) events).
* ``vpin``: trades fill volume buckets of ``P_VPIN_BUCKET`` lots (a trade is split
  across buckets; CME's AggressorSide classifies it, no aggressor = half each);
  vpin = sum |buy - sell| over the last ``VPIN_BUCKETS`` full buckets / (n * bucket);
  0 before the first full bucket.
* ``trade_flow_fast`` / ``trade_flow_slow``: decayed sums of the event's signed traded
  volume (buy aggressor +, sell -) with decays ``P_FLOW_FAST_DECAY`` / ``P_FLOW_SLOW_DECAY``.
* ``realized_vol_ticks``: sqrt of an EWMA (weight ``P_VOL_ALPHA``) of squared
  ``mid_change_ticks``, updated only when the mid change is defined.
* ``log_time_since_trade``: log1p(seconds from the last trade to this event's
  TransactTime); log1p(``P_NO_TRADE_SECONDS``) before any trade.

The ring buffer keeps, per instrument, the last N completed-event rows of
``RING_WIDTH`` float32: the 40-value LOB input (levels 1..10 of
[ask_px, ask_qty, bid_px, bid_qty], prices as (px - mid) / tick, sizes in lots,
blank levels 0, 0) followed by the feature vector.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from core.book.mbp import NO_NRT
from core.feature_spec import FEATURE_NAMES, N_FEATURES
from core.types import (
    BOOK_CONS_ASK,
    BOOK_CONS_BID,
    IS_LAST_TIME,
    IS_LAST_TRADE_TIME,
    IS_RING_COUNT,
    IS_RING_HEAD,
    IS_TICK,
    IS_TICK_INFERRED,
    LV_PX,
    LV_QTY,
    MAX_DEPTH,
    MD_EVENT,
    NULL_I64,
    SIDE_BUY,
    SIDE_SELL,
)

_NULL = np.int64(NULL_I64)

# feature indices (order fixed by core.feature_spec)
F_MID_CHANGE = FEATURE_NAMES.index("mid_change_ticks")
F_MICRO = FEATURE_NAMES.index("microprice_offset_ticks")
F_SPREAD = FEATURE_NAMES.index("spread_ticks")
F_IMB_L1 = FEATURE_NAMES.index("imbalance_l1")
F_IMB_DEPTH = FEATURE_NAMES.index("imbalance_depth")
F_OFI = FEATURE_NAMES.index("ofi")
F_VPIN = FEATURE_NAMES.index("vpin")
F_FLOW_FAST = FEATURE_NAMES.index("trade_flow_fast")
F_FLOW_SLOW = FEATURE_NAMES.index("trade_flow_slow")
F_RVOL = FEATURE_NAMES.index("realized_vol_ticks")
F_LOG_TST = FEATURE_NAMES.index("log_time_since_trade")

OFI_LEVELS = 5
_DEPTH_WEIGHTS = np.array([1.0 / (k + 1) for k in range(MAX_DEPTH)])
VPIN_BUCKETS = 50
LOB_VALUES = 4 * MAX_DEPTH  # 40
RING_WIDTH = LOB_VALUES + N_FEATURES

# feature state: float64 [n_instr, N_FSTATE]
FS_MID = 0  # mid of the last completed event that had one (NaN: none yet)
FS_MID_NOW = 1  # mid of the current completed event (NaN when a side is empty)
FS_OFI = 2
FS_FLOW_FAST = 3
FS_FLOW_SLOW = 4
FS_VAR = 5
FS_EVENT_FLOW = 6  # signed traded volume of the event in progress
FS_VPIN_BUY = 7  # current bucket
FS_VPIN_SELL = 8
FS_VPIN_SUM = 9  # sum |buy - sell| of the full buckets in the window
FS_VPIN_N = 10  # full buckets in the window (<= VPIN_BUCKETS)
FS_VPIN_HEAD = 11
FS_VPIN_BUCKET = 12  # bucket volume of this instrument
FS_HAVE_PREV = 13  # the OFI reference book is set
FS_TICK = 14  # tick used for the last row (for readers that denormalise)
FS_PREV_BOOK = 16  # OFI_LEVELS x [bid_px, bid_qty, ask_px, ask_qty]
FS_VPIN_RING = FS_PREV_BOOK + 4 * OFI_LEVELS
FS_FEATURES = FS_VPIN_RING + VPIN_BUCKETS
N_FSTATE = FS_FEATURES + N_FEATURES

# parameters: float64 [N_PARAMS]
P_OFI_DECAY = 0
P_FLOW_FAST_DECAY = 1
P_FLOW_SLOW_DECAY = 2
P_VOL_ALPHA = 3
P_VPIN_BUCKET = 4
P_NO_TRADE_SECONDS = 5
P_DEPTH_LEVELS = 6
N_PARAMS = 8

DEFAULT_PARAMS = {
    "ofi_decay": 0.95,  # ~20 events
    "flow_fast_decay": 0.9,  # ~10 events
    "flow_slow_decay": 0.99,  # ~100 events
    "vol_alpha": 0.02,  # ~50 events
    "vpin_bucket": 50.0,  # lots per volume bucket
    "no_trade_seconds": 86400.0,
    "depth_levels": 5.0,
}

_PARAM_INDEX = {
    "ofi_decay": P_OFI_DECAY,
    "flow_fast_decay": P_FLOW_FAST_DECAY,
    "flow_slow_decay": P_FLOW_SLOW_DECAY,
    "vol_alpha": P_VOL_ALPHA,
    "vpin_bucket": P_VPIN_BUCKET,
    "no_trade_seconds": P_NO_TRADE_SECONDS,
    "depth_levels": P_DEPTH_LEVELS,
}


def make_params(**overrides: float) -> np.ndarray:
    """The parameter vector, defaults overridden by keyword (names of DEFAULT_PARAMS)."""
    p = np.zeros(N_PARAMS, dtype=np.float64)
    for name, idx in _PARAM_INDEX.items():
        p[idx] = DEFAULT_PARAMS[name]
    for name, value in overrides.items():
        if name not in _PARAM_INDEX:
            raise KeyError(f"unknown feature parameter {name!r}")
        p[_PARAM_INDEX[name]] = float(value)
    if not 1 <= p[P_DEPTH_LEVELS] <= MAX_DEPTH:
        raise ValueError("depth_levels must be in 1..10")
    if p[P_VPIN_BUCKET] <= 0:
        raise ValueError("vpin_bucket must be > 0")
    return p


@njit(cache=True, **NO_NRT)
def _init_feature_row(fstate, params, row):
    for j in range(fstate.shape[1]):
        fstate[row, j] = 0.0
    fstate[row, FS_MID] = np.nan
    fstate[row, FS_MID_NOW] = np.nan
    fstate[row, FS_VPIN_BUCKET] = params[P_VPIN_BUCKET]


@njit(cache=True, **NO_NRT)
def _on_trade_flow(fstate, row, qty, side):
    """A trade of ``qty`` lots: signed flow of the event, VPIN buckets."""
    if qty <= 0:
        return
    q = float(qty)
    if side == SIDE_BUY:
        share = 1.0
        fstate[row, FS_EVENT_FLOW] += q
    elif side == SIDE_SELL:
        share = 0.0
        fstate[row, FS_EVENT_FLOW] -= q
    else:
        share = 0.5
    bucket = fstate[row, FS_VPIN_BUCKET]
    while q > 0.0:
        room = bucket - (fstate[row, FS_VPIN_BUY] + fstate[row, FS_VPIN_SELL])
        take = q if q < room else room
        fstate[row, FS_VPIN_BUY] += take * share
        fstate[row, FS_VPIN_SELL] += take * (1.0 - share)
        q -= take
        if fstate[row, FS_VPIN_BUY] + fstate[row, FS_VPIN_SELL] >= bucket:
            imb = abs(fstate[row, FS_VPIN_BUY] - fstate[row, FS_VPIN_SELL])
            head = int(fstate[row, FS_VPIN_HEAD])
            if fstate[row, FS_VPIN_N] >= VPIN_BUCKETS:
                fstate[row, FS_VPIN_SUM] -= fstate[row, FS_VPIN_RING + head]
            else:
                fstate[row, FS_VPIN_N] += 1.0
            fstate[row, FS_VPIN_RING + head] = imb
            fstate[row, FS_VPIN_SUM] += imb
            fstate[row, FS_VPIN_HEAD] = float((head + 1) % VPIN_BUCKETS)
            fstate[row, FS_VPIN_BUY] = 0.0
            fstate[row, FS_VPIN_SELL] = 0.0


@njit(cache=True, inline="always", **NO_NRT)
def _gcd(a, b):
    while b != 0:
        a, b = b, a % b
    return a


@njit(cache=True, **NO_NRT)
def _infer_tick(book, inst, row):
    """gcd of adjacent price differences (and the spread) of the consolidated book."""
    g = inst[row, IS_TICK_INFERRED]
    for side in (BOOK_CONS_BID, BOOK_CONS_ASK):
        for i in range(MAX_DEPTH - 1):
            a = book[row, side, i, LV_PX]
            b = book[row, side, i + 1, LV_PX]
            if a == _NULL or b == _NULL:
                break
            d = abs(a - b)
            if d > 0:
                g = _gcd(g, d) if g > 0 else d
    bb = book[row, BOOK_CONS_BID, 0, LV_PX]
    ba = book[row, BOOK_CONS_ASK, 0, LV_PX]
    if bb != _NULL and ba != _NULL and ba > bb:
        d = ba - bb
        g = _gcd(g, d) if g > 0 else d
    inst[row, IS_TICK_INFERRED] = g
    return g


@njit(cache=True, inline="always", **NO_NRT)
def _level_px(book, row, side, i, empty):
    px = book[row, side, i, LV_PX]
    return empty if px == _NULL else float(px)


@njit(cache=True, **NO_NRT)
def _update_features(book, inst, fstate, params, ring, row, t_now):
    """Recompute the feature vector of ``row`` after a completed event; push the ring.

    Reads only the consolidated book (already rebuilt) and the small state of the
    row; O(MAX_DEPTH) work.
    """
    tick_i = inst[row, IS_TICK]
    if tick_i <= 0:
        tick_i = _infer_tick(book, inst, row)
    tick = float(tick_i) if tick_i > 0 else 1.0
    inv_tick = 1.0 / tick
    fstate[row, FS_TICK] = tick
    fo = FS_FEATURES

    bb_i = book[row, BOOK_CONS_BID, 0, LV_PX]
    ba_i = book[row, BOOK_CONS_ASK, 0, LV_PX]
    has_b = bb_i != _NULL
    has_a = ba_i != _NULL
    bq = float(book[row, BOOK_CONS_BID, 0, LV_QTY]) if has_b else 0.0
    aq = float(book[row, BOOK_CONS_ASK, 0, LV_QTY]) if has_a else 0.0

    # mid, microprice, spread
    mid = np.nan
    if has_b and has_a:
        bb = float(bb_i)
        ba = float(ba_i)
        mid = 0.5 * (bb + ba)
        fstate[row, fo + F_SPREAD] = (ba - bb) * inv_tick
        if bq + aq > 0.0:
            micro = (bb * aq + ba * bq) / (bq + aq)
            fstate[row, fo + F_MICRO] = (micro - mid) * inv_tick
        else:
            fstate[row, fo + F_MICRO] = 0.0
    else:
        fstate[row, fo + F_SPREAD] = 0.0
        fstate[row, fo + F_MICRO] = 0.0
    prev_mid = fstate[row, FS_MID]
    if not math.isnan(mid) and not math.isnan(prev_mid):
        dm = (mid - prev_mid) * inv_tick
        fstate[row, fo + F_MID_CHANGE] = dm
        a = params[P_VOL_ALPHA]
        fstate[row, FS_VAR] = (1.0 - a) * fstate[row, FS_VAR] + a * dm * dm
    else:
        fstate[row, fo + F_MID_CHANGE] = 0.0
    if not math.isnan(mid):
        fstate[row, FS_MID] = mid
    fstate[row, FS_MID_NOW] = mid
    fstate[row, fo + F_RVOL] = math.sqrt(fstate[row, FS_VAR])

    # imbalances
    tot = bq + aq
    fstate[row, fo + F_IMB_L1] = (bq - aq) / tot if tot > 0.0 else 0.0
    num = 0.0
    den = 0.0
    nd = int(params[P_DEPTH_LEVELS])
    for k in range(nd):
        w = _DEPTH_WEIGHTS[k]
        qb = float(book[row, BOOK_CONS_BID, k, LV_QTY])
        qa = float(book[row, BOOK_CONS_ASK, k, LV_QTY])
        num += w * (qb - qa)
        den += w * (qb + qa)
    fstate[row, fo + F_IMB_DEPTH] = num / den if den > 0.0 else 0.0

    # order-flow imbalance against the previous completed event
    e = 0.0
    have_prev = fstate[row, FS_HAVE_PREV] > 0.0
    for k in range(OFI_LEVELS):
        pb = _level_px(book, row, BOOK_CONS_BID, k, -np.inf)
        qb = float(book[row, BOOK_CONS_BID, k, LV_QTY])
        pa = _level_px(book, row, BOOK_CONS_ASK, k, np.inf)
        qa = float(book[row, BOOK_CONS_ASK, k, LV_QTY])
        o = FS_PREV_BOOK + 4 * k
        if have_prev:
            pb0 = fstate[row, o]
            qb0 = fstate[row, o + 1]
            pa0 = fstate[row, o + 2]
            qa0 = fstate[row, o + 3]
            if pb >= pb0:
                e += qb
            if pb <= pb0:
                e -= qb0
            if pa <= pa0:
                e -= qa
            if pa >= pa0:
                e += qa0
        fstate[row, o] = pb
        fstate[row, o + 1] = qb
        fstate[row, o + 2] = pa
        fstate[row, o + 3] = qa
    fstate[row, FS_HAVE_PREV] = 1.0
    fstate[row, FS_OFI] = params[P_OFI_DECAY] * fstate[row, FS_OFI] + e
    fstate[row, fo + F_OFI] = fstate[row, FS_OFI]

    # trade flow and VPIN
    flow = fstate[row, FS_EVENT_FLOW]
    fstate[row, FS_EVENT_FLOW] = 0.0
    fstate[row, FS_FLOW_FAST] = params[P_FLOW_FAST_DECAY] * fstate[row, FS_FLOW_FAST] + flow
    fstate[row, FS_FLOW_SLOW] = params[P_FLOW_SLOW_DECAY] * fstate[row, FS_FLOW_SLOW] + flow
    fstate[row, fo + F_FLOW_FAST] = fstate[row, FS_FLOW_FAST]
    fstate[row, fo + F_FLOW_SLOW] = fstate[row, FS_FLOW_SLOW]
    nb = fstate[row, FS_VPIN_N]
    if nb > 0.0:
        fstate[row, fo + F_VPIN] = fstate[row, FS_VPIN_SUM] / (nb * fstate[row, FS_VPIN_BUCKET])
    else:
        fstate[row, fo + F_VPIN] = 0.0

    # time since the last trade
    t_trade = inst[row, IS_LAST_TRADE_TIME]
    if t_now == 0:
        t_now = inst[row, IS_LAST_TIME]
    if t_trade == 0:
        fstate[row, fo + F_LOG_TST] = math.log1p(params[P_NO_TRADE_SECONDS])
    else:
        dt = (float(t_now) - float(t_trade)) * 1e-9
        fstate[row, fo + F_LOG_TST] = math.log1p(dt if dt > 0.0 else 0.0)

    _push_ring(book, inst, fstate, ring, row, inv_tick)


@njit(cache=True, **NO_NRT)
def _push_ring(book, inst, fstate, ring, row, inv_tick):
    n_ring = ring.shape[1]
    if n_ring == 0:
        return
    h = inst[row, IS_RING_HEAD]
    ref = fstate[row, FS_MID_NOW]
    if math.isnan(ref):
        ref = fstate[row, FS_MID]
    if math.isnan(ref):
        # one-sided book and no mid yet: the best price present is the reference
        p = book[row, BOOK_CONS_BID, 0, LV_PX]
        if p == _NULL:
            p = book[row, BOOK_CONS_ASK, 0, LV_PX]
        ref = float(p) if p != _NULL else 0.0
    for k in range(MAX_DEPTH):
        base = 4 * k
        pa = book[row, BOOK_CONS_ASK, k, LV_PX]
        pb = book[row, BOOK_CONS_BID, k, LV_PX]
        if pa == _NULL:
            ring[row, h, base] = 0.0
            ring[row, h, base + 1] = 0.0
        else:
            ring[row, h, base] = (float(pa) - ref) * inv_tick
            ring[row, h, base + 1] = float(book[row, BOOK_CONS_ASK, k, LV_QTY])
        if pb == _NULL:
            ring[row, h, base + 2] = 0.0
            ring[row, h, base + 3] = 0.0
        else:
            ring[row, h, base + 2] = (float(pb) - ref) * inv_tick
            ring[row, h, base + 3] = float(book[row, BOOK_CONS_BID, k, LV_QTY])
    for j in range(N_FEATURES):
        ring[row, h, LOB_VALUES + j] = fstate[row, FS_FEATURES + j]
    h += 1
    if h == n_ring:
        h = 0
    inst[row, IS_RING_HEAD] = h
    if inst[row, IS_RING_COUNT] < n_ring:
        inst[row, IS_RING_COUNT] += 1


# --------------------------------------------------------------------------
# replay API (training): the same kernels as live, over a decoded event array
# --------------------------------------------------------------------------
def replay_features(
    events: np.ndarray,
    tick_size: dict[int, int] | None = None,
    depth: dict[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """Replay ``events`` (MD_EVENT) from empty books and return one row per completed
    event per changed instrument.

    ``tick_size`` maps security_id -> min price increment (mantissa units, same
    exponent as the prices); instruments without one use the gcd of their observed
    price differences. ``depth`` maps security_id -> outright book depth (tag 264;
    default 10). Returns ``{'security_id': int32[m], 'time': uint64[m]
    (TransactTime of the event), 'mid': float64[m] (price mantissa units, NaN when a
    side is empty), 'features': float32[m, N_FEATURES]}`` computed by the live kernels
    (``core.market``).
    """
    from core.market import MarketState  # market imports this module's kernels

    if events.dtype != MD_EVENT:
        raise TypeError(f"events must have dtype MD_EVENT, not {events.dtype}")
    events = np.ascontiguousarray(events)
    sids = np.unique(events["security_id"][events["security_id"] != 0])
    known = set(int(s) for s in sids) | set((tick_size or {}).keys()) | set((depth or {}).keys())
    state = MarketState(max_instruments=max(len(known), 1), ring_len=0)
    for sid in sorted(known):
        state.add_instrument(
            sid,
            depth=(depth or {}).get(sid, MAX_DEPTH),
            tick=(tick_size or {}).get(sid, 0),
        )
    rec = state.apply_events(events, record=True, levels=False)
    return {
        "security_id": rec["security_id"],
        "time": rec["time"],
        "mid": rec["mid"],
        "features": rec["features"],
    }
