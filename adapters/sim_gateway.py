"""In-process simulated venue behind the Gateway interface (replay, paper, tests).

The venue sits behind a latency model and fills our orders from market data
that comes from somewhere else (a capture, a live feed in paper mode): the
market does not see our orders, so a queue-position model decides when they
would have filled.

Latency (driven by an injected clock): every request reaches the venue
``entry latency`` after ``send`` and every execution report reaches us
``response latency`` after the venue produced it. A latency model is an array
of samples (ns) consumed in order: constant, constant + seeded jitter, or
resampled (seeded) from a file of measured latencies. Both directions are one
ordered session (TCP): nothing overtakes what was sent before it.

Queue position (per resting order, ``queue_ahead`` = quantity ahead of us):

* On arrival an order joins the back of its price level: ``queue_ahead`` = the
  displayed quantity at its price. A price change or a quantity increase
  (modify) sends it to the back again, as at CME.
* MBO data (instrument ``mbo=True``; EV_ORDER / EV_ORDER_REF rows): exact. Every
  order at our price whose MDOrderPriority is not above the highest priority
  seen when we joined is ahead of us; its cancel, its quantity decrease, or a
  loss of priority (new price, new priority) takes its quantity off
  ``queue_ahead``. A trade of an order behind us (EV_TRADE_ORDER rows) means
  everything ahead is gone: that quantity fills us first.
* MBP data (EV_BOOK rows): probabilistic. Trades at our price consume the queue
  ahead first, the rest fills us; a level decrease not explained by those trades
  is a cancel, taken off ``queue_ahead`` with probability
  f(ahead) / (f(ahead) + f(behind)), f(x) = x ** queue_power (1 = in proportion).
* Either data: a trade through our price (a buy of ours above the trade price,
  a sell below), or the opposite best reaching our price, fills us in full at
  our price.
* Marketable orders take the displayed opposite liquidity level by level (IOC
  and FOK as at CME; the rest of a DAY order rests), as taker.

Fees: maker or taker fee plus a per-contract fee on every fill, in the report.
Market data is the normalised MD_EVENT stream (core/types.py), so the venue
can sit behind a replay of the same rows the books consume; ``on_book`` and
``on_trade`` build such rows for simple inputs.

Not modelled: the market impact of our own fills (the capture goes on as
recorded; liquidity we take is hidden only until the level's next update),
pro-rata allocation, implied liquidity, and levels deeper than VENUE_DEPTH.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from adapters.clock import Clock
from core.types import (
    ACT_CANCEL,
    ACT_MASS_CANCEL,
    ACT_MODIFY,
    ACT_NEW,
    ER_CANCEL,
    ER_CANCEL_REJECT,
    ER_ELIMINATION,
    ER_FILL,
    ER_MODIFY,
    ER_MODIFY_REJECT,
    ER_NEW,
    ER_REJECT,
    ET_BID,
    ET_BOOK_RESET,
    ET_OFFER,
    EV_BOOK,
    EV_ORDER,
    EV_ORDER_REF,
    EV_SNAPSHOT,
    EV_SNAPSHOT_ENTRY,
    EV_TRADE,
    EV_TRADE_ORDER,
    EXEC_REPORT,
    FLAG_END_OF_EVENT,
    MD_CHANGE,
    MD_DELETE,
    MD_DELETE_FROM,
    MD_DELETE_THRU,
    MD_EVENT,
    MD_NEW,
    MD_OVERLAY,
    ORDER_ACTION,
    SIDE_BUY,
    SIDE_SELL,
    TIF_DAY,
    TIF_FOK,
    TIF_GTC,
    TIF_IOC,
)

VENUE_DEPTH = 32  # price levels kept per side
SIM_MAX_INSTRUMENTS = 8
SIM_MAX_ORDERS = 1024  # resting orders at the venue
INFLIGHT_CAP = 4096  # requests on the way to the venue
OUTQ_CAP = 8192  # execution reports on the way back

# EXEC_REPORT.reason of the venue's rejects and eliminations
SIMR_NONE = 0
SIMR_UNKNOWN_INSTRUMENT = 1
SIMR_BAD_QTY = 2
SIMR_OFF_TICK = 3
SIMR_BAD_SIDE = 4
SIMR_UNKNOWN_ORDER = 5  # cancel/modify of an order not resting (filled, cancelled, unknown)
SIMR_DISCONNECTED = 6
SIMR_VENUE_FULL = 7
SIMR_FOK_UNFILLABLE = 8
SIMR_IOC_REMAINDER = 9
SIMR_BAD_ACTION = 10
SIMR_QUEUE_FULL = 11
SIMR_BAD_TIF = 12
N_SIMR = 13
SIM_REASON_NAMES = ("none", "unknown_instrument", "bad_qty", "off_tick", "bad_side",
                    "unknown_order", "disconnected", "venue_full", "fok_unfillable",
                    "ioc_remainder", "bad_action", "queue_full", "bad_tif")

# venue counters
SC_REQUESTS = 0
SC_FILLS = 1
SC_FILLED_QTY = 2
SC_QUEUE_FILLS = 3  # fills because the queue ahead was consumed
SC_TRADE_THROUGH_FILLS = 4
SC_QUOTE_THROUGH_FILLS = 5  # the opposite best reached our price
SC_TAKER_FILLS = 6
SC_REPORTS = 7
SC_REPORTS_DROPPED = 8  # return queue full
SC_EVENTS = 9
SC_MBO_FULL = 10  # MBO order map full: order not tracked
SC_MBO_UNKNOWN = 11  # MBO change/delete of an order id not in the map
SC_LEVELS_FULL = 12  # a level fell off the VENUE_DEPTH view
N_SC = 13
SIM_COUNTER_NAMES = ("requests", "fills", "filled_qty", "queue_fills", "trade_through_fills",
                     "quote_through_fills", "taker_fills", "reports", "reports_dropped",
                     "events", "mbo_full", "mbo_unknown", "levels_full")

SIM_INSTRUMENT = np.dtype(
    [
        ("security_id", np.int32),
        ("mbo", np.uint8),  # queue model: 1 exact (MBO rows), 0 probabilistic (MBP rows)
        ("depth", np.int32),  # MBP depth of the feed (levels beyond it fall off)
        ("tick", np.int64),
        ("maker_fee", np.float64),
        ("taker_fee", np.float64),
        ("fee_per_contract", np.float64),
        ("max_priority", np.uint64),  # highest MDOrderPriority seen
        ("lvl_px", np.int64, (2, VENUE_DEPTH)),  # [0 bid / 1 ask, level], best first
        ("lvl_qty", np.int64, (2, VENUE_DEPTH)),
        ("n_lvl", np.int32, (2,)),
    ],
    align=True,
)

SIM_ORDER = np.dtype(
    [
        ("cl_ord_id", np.uint64),
        ("order_id", np.uint64),
        ("price", np.int64),
        ("qty", np.int64),
        ("leaves", np.int64),
        ("cum", np.int64),
        ("queue_ahead", np.float64),
        ("credit", np.float64),  # traded volume at our price not yet seen as a level decrease
        ("join_priority", np.uint64),  # MBO: orders with priority <= this are ahead
        ("instrument", np.int32),
        ("side", np.uint8),
        ("tif", np.uint8),
    ],
    align=True,
)

MBO_ORDER = np.dtype(
    [
        ("key", np.uint64),  # order id; 0 = empty slot
        ("price", np.int64),
        ("qty", np.int64),
        ("priority", np.uint64),
        ("instrument", np.int32),
        ("side", np.uint8),  # 0 bid, 1 ask
    ],
    align=True,
)

SIM_VENUE = np.dtype(
    [
        ("n_instruments", np.int32),
        ("connected", np.uint8),
        ("queue_power", np.float64),
        ("next_order_id", np.uint64),
        ("next_exec_id", np.uint64),
        ("entry_idx", np.int64),
        ("resp_idx", np.int64),
        ("last_arrive", np.int64),
        ("last_deliver", np.int64),
        ("in_head", np.int32),
        ("in_count", np.int32),
        ("out_head", np.int32),
        ("out_count", np.int32),
        ("n_active", np.int32),
        ("active", np.int32, (SIM_MAX_ORDERS,)),  # resting orders in queue-join order
        ("free_top", np.int32),
        ("free", np.int32, (SIM_MAX_ORDERS,)),
        ("mbo_bits", np.int32),
        ("mbo_count", np.int64),
        ("counters", np.int64, (N_SC,)),
        ("reason_counts", np.int64, (N_SIMR,)),
        ("instruments", SIM_INSTRUMENT, (SIM_MAX_INSTRUMENTS,)),
        ("orders", SIM_ORDER, (SIM_MAX_ORDERS,)),
        ("inflight", ORDER_ACTION, (INFLIGHT_CAP,)),
        ("in_arrive", np.int64, (INFLIGHT_CAP,)),
        ("outq", EXEC_REPORT, (OUTQ_CAP,)),
        ("out_deliver", np.int64, (OUTQ_CAP,)),
    ],
    align=True,
)

_FIB = np.uint64(0x9E3779B97F4A7C15)


# --------------------------------------------------------------------------
# kernels: latency, reports
# --------------------------------------------------------------------------
@njit(cache=True)
def _sample(samples: Any, idx: int) -> Any:
    return samples[idx % samples.shape[0]]


@njit(cache=True)
def _report(v: Any, lat: Any, t_ns: int, kind: int, cl_ord_id: int, order_id: int,
            security_id: int, side: int, price: int, qty: int, leaves: int, cum: int,
            aggressor: int, fee: float, reason: int) -> None:
    if v.out_count >= OUTQ_CAP:
        v.counters[SC_REPORTS_DROPPED] += 1
        return
    deliver = t_ns + _sample(lat, v.resp_idx)
    v.resp_idx += 1
    if deliver < v.last_deliver:  # one ordered session: nothing overtakes
        deliver = v.last_deliver
    v.last_deliver = deliver
    p = (v.out_head + v.out_count) % OUTQ_CAP
    v.out_count += 1
    r = v.outq[p]
    v.out_deliver[p] = deliver
    r.cl_ord_id = cl_ord_id
    r.order_id = order_id
    r.price = price
    r.qty = qty
    r.leaves_qty = leaves
    r.cum_qty = cum
    r.fee = fee
    r.transact_ns = t_ns
    r.recv_ns = deliver
    v.next_exec_id += np.uint64(1)
    r.exec_id = v.next_exec_id
    r.security_id = security_id
    r.reason = reason
    r.kind = kind
    r.side = side
    r.aggressor = aggressor
    r.ord_status = 0
    v.counters[SC_REPORTS] += 1
    if reason != SIMR_NONE:
        v.reason_counts[reason] += 1


@njit(cache=True)
def _order_report(v: Any, lat: Any, t_ns: int, idx: int, kind: int, reason: int) -> None:
    o = v.orders[idx]
    _report(v, lat, t_ns, kind, o.cl_ord_id, o.order_id,
            v.instruments[o.instrument].security_id, o.side, o.price, o.qty, o.leaves, o.cum,
            0, 0.0, reason)


@njit(cache=True)
def _fill(v: Any, lat: Any, t_ns: int, idx: int, qty: int, px: int, aggressor: int) -> None:
    o = v.orders[idx]
    inst = v.instruments[o.instrument]
    o.leaves -= qty
    o.cum += qty
    fee = qty * ((inst.taker_fee if aggressor != 0 else inst.maker_fee) + inst.fee_per_contract)
    _report(v, lat, t_ns, ER_FILL, o.cl_ord_id, o.order_id, inst.security_id, o.side, px, qty,
            o.leaves, o.cum, aggressor, fee, SIMR_NONE)
    v.counters[SC_FILLS] += 1
    v.counters[SC_FILLED_QTY] += qty


# --------------------------------------------------------------------------
# kernels: resting orders (queue order kept in v.active)
# --------------------------------------------------------------------------
@njit(cache=True)
def _deactivate(v: Any, idx: int, free_it: bool) -> None:
    for a in range(v.n_active):
        if v.active[a] == idx:
            for b in range(a, v.n_active - 1):
                v.active[b] = v.active[b + 1]
            v.n_active -= 1
            break
    if free_it:
        v.free[v.free_top] = idx
        v.free_top += 1


@njit(cache=True)
def _find_resting(v: Any, cl_ord_id: int) -> int:
    for a in range(v.n_active):
        idx = v.active[a]
        if v.orders[idx].cl_ord_id == cl_ord_id:
            return idx
    return -1


@njit(cache=True)
def _find_sim_instrument(v: Any, security_id: int) -> int:
    for i in range(v.n_instruments):
        if v.instruments[i].security_id == security_id:
            return i
    return -1


# --------------------------------------------------------------------------
# kernels: the venue's view of the levels (sorted, best first)
# --------------------------------------------------------------------------
@njit(cache=True)
def _lvl_index(inst: Any, s: int, px: int) -> int:
    for li in range(inst.n_lvl[s]):
        if inst.lvl_px[s, li] == px:
            return li
    return -1


@njit(cache=True)
def _lvl_qty(inst: Any, s: int, px: int) -> int:
    li = _lvl_index(inst, s, px)
    return inst.lvl_qty[s, li] if li >= 0 else 0


@njit(cache=True)
def _lvl_remove_at(inst: Any, s: int, li: int) -> None:
    n = inst.n_lvl[s]
    for j in range(li, n - 1):
        inst.lvl_px[s, j] = inst.lvl_px[s, j + 1]
        inst.lvl_qty[s, j] = inst.lvl_qty[s, j + 1]
    inst.n_lvl[s] = n - 1


@njit(cache=True)
def _lvl_set(v: Any, inst: Any, s: int, px: int, qty: int, cap: int) -> None:
    """Set the quantity at a price (0 removes the level); at most ``cap`` levels kept."""
    li = _lvl_index(inst, s, px)
    if li >= 0:
        if qty <= 0:
            _lvl_remove_at(inst, s, li)
        else:
            inst.lvl_qty[s, li] = qty
        return
    if qty <= 0:
        return
    n = inst.n_lvl[s]
    pos = n
    for j in range(n):
        better = px > inst.lvl_px[s, j] if s == 0 else px < inst.lvl_px[s, j]
        if better:
            pos = j
            break
    if pos >= cap:
        v.counters[SC_LEVELS_FULL] += 1
        return
    last = min(n, cap - 1)
    if n >= cap:
        v.counters[SC_LEVELS_FULL] += 1
    for j in range(last, pos, -1):
        inst.lvl_px[s, j] = inst.lvl_px[s, j - 1]
        inst.lvl_qty[s, j] = inst.lvl_qty[s, j - 1]
    inst.lvl_px[s, pos] = px
    inst.lvl_qty[s, pos] = qty
    inst.n_lvl[s] = last + 1


# --------------------------------------------------------------------------
# kernels: the MBO order map (open addressing, linear probing, backward-shift delete)
# --------------------------------------------------------------------------
@njit(cache=True)
def _mbo_home(v: Any, key: int) -> Any:
    return np.int64((np.uint64(key) * _FIB) >> np.uint64(64 - v.mbo_bits))


@njit(cache=True)
def _mbo_find(v: Any, mbo: Any, key: int) -> int:
    mask = mbo.shape[0] - 1
    h = _mbo_home(v, key)
    while mbo[h].key != 0:
        if mbo[h].key == key:
            return h
        h = (h + 1) & mask
    return -1


@njit(cache=True)
def _mbo_insert(v: Any, mbo: Any, key: int) -> int:
    """Slot for a key not in the map; -1 when the map is too full to stay fast."""
    if v.mbo_count * 4 >= mbo.shape[0] * 3:
        v.counters[SC_MBO_FULL] += 1
        return -1
    mask = mbo.shape[0] - 1
    h = _mbo_home(v, key)
    while mbo[h].key != 0:
        h = (h + 1) & mask
    mbo[h].key = key
    v.mbo_count += 1
    return h


@njit(cache=True)
def _mbo_delete(v: Any, mbo: Any, i: int) -> None:
    mask = mbo.shape[0] - 1
    j = i
    while True:
        j = (j + 1) & mask
        if mbo[j].key == 0:
            break
        k = _mbo_home(v, mbo[j].key)
        # leave mbo[j] where it is if its home lies cyclically in (i, j]
        if (i <= j and i < k <= j) or (i > j and (k > i or k <= j)):
            continue
        mbo[i].key = mbo[j].key
        mbo[i].price = mbo[j].price
        mbo[i].qty = mbo[j].qty
        mbo[i].priority = mbo[j].priority
        mbo[i].instrument = mbo[j].instrument
        mbo[i].side = mbo[j].side
        i = j
    mbo[i].key = 0
    v.mbo_count -= 1


# --------------------------------------------------------------------------
# kernels: requests arriving at the venue
# --------------------------------------------------------------------------
@njit(cache=True)
def _take(v: Any, lat: Any, t_ns: int, idx: int) -> None:
    """Fill a new/modified order against the opposite levels it crosses (as taker)."""
    o = v.orders[idx]
    inst = v.instruments[o.instrument]
    opp = 1 if o.side == SIDE_BUY else 0
    while o.leaves > 0 and inst.n_lvl[opp] > 0:
        px = inst.lvl_px[opp, 0]
        if (o.side == SIDE_BUY and px > o.price) or (o.side == SIDE_SELL and px < o.price):
            break
        q = min(o.leaves, inst.lvl_qty[opp, 0])
        if q > 0:
            _fill(v, lat, t_ns, idx, q, px, 1)
            v.counters[SC_TAKER_FILLS] += 1
        # the liquidity we took stays hidden until the level's next update
        if inst.lvl_qty[opp, 0] - q <= 0:
            _lvl_remove_at(inst, opp, 0)
        else:
            inst.lvl_qty[opp, 0] -= q


@njit(cache=True)
def _crossing_qty(inst: Any, side: int, price: int) -> int:
    opp = 1 if side == SIDE_BUY else 0
    total = 0
    for li in range(inst.n_lvl[opp]):
        px = inst.lvl_px[opp, li]
        if (side == SIDE_BUY and px > price) or (side == SIDE_SELL and px < price):
            break
        total += inst.lvl_qty[opp, li]
    return total


@njit(cache=True)
def _join_queue(v: Any, idx: int) -> None:
    """Join the back of the level (and of our own orders' queue order)."""
    o = v.orders[idx]
    inst = v.instruments[o.instrument]
    s = o.side - 1
    o.queue_ahead = float(_lvl_qty(inst, s, o.price))
    o.credit = 0.0
    o.join_priority = inst.max_priority
    v.active[v.n_active] = idx
    v.n_active += 1


@njit(cache=True)
def _venue_new(v: Any, lat: Any, t_ns: int, a: Any) -> None:
    i = _find_sim_instrument(v, a.security_id)
    reason = SIMR_NONE
    if i < 0:
        reason = SIMR_UNKNOWN_INSTRUMENT
    elif a.qty <= 0:
        reason = SIMR_BAD_QTY
    elif a.side != SIDE_BUY and a.side != SIDE_SELL:
        reason = SIMR_BAD_SIDE
    elif a.price % v.instruments[i].tick != 0:
        reason = SIMR_OFF_TICK
    elif a.tif != TIF_DAY and a.tif != TIF_GTC and a.tif != TIF_IOC and a.tif != TIF_FOK:
        reason = SIMR_BAD_TIF
    elif v.free_top == 0:
        reason = SIMR_VENUE_FULL
    if reason != SIMR_NONE:
        _report(v, lat, t_ns, ER_REJECT, a.cl_ord_id, 0, a.security_id, a.side, a.price, a.qty,
                0, 0, 0, 0.0, reason)
        return
    v.free_top -= 1
    idx = v.free[v.free_top]
    o = v.orders[idx]
    v.next_order_id += np.uint64(1)
    o.cl_ord_id = a.cl_ord_id
    o.order_id = v.next_order_id
    o.price = a.price
    o.qty = a.qty
    o.leaves = a.qty
    o.cum = 0
    o.instrument = i
    o.side = a.side
    o.tif = a.tif
    inst = v.instruments[i]
    if a.tif == TIF_FOK and _crossing_qty(inst, a.side, a.price) < a.qty:
        _order_report(v, lat, t_ns, idx, ER_NEW, SIMR_NONE)
        o.leaves = 0
        _order_report(v, lat, t_ns, idx, ER_ELIMINATION, SIMR_FOK_UNFILLABLE)
        v.free[v.free_top] = idx
        v.free_top += 1
        return
    _order_report(v, lat, t_ns, idx, ER_NEW, SIMR_NONE)
    _take(v, lat, t_ns, idx)
    if o.leaves > 0 and (a.tif == TIF_IOC or a.tif == TIF_FOK):
        o.leaves = 0
        _order_report(v, lat, t_ns, idx, ER_ELIMINATION, SIMR_IOC_REMAINDER)
    if o.leaves > 0:
        _join_queue(v, idx)
    else:
        v.free[v.free_top] = idx
        v.free_top += 1


@njit(cache=True)
def _venue_modify(v: Any, lat: Any, t_ns: int, a: Any) -> None:
    idx = _find_resting(v, a.cl_ord_id)
    if idx < 0:
        _report(v, lat, t_ns, ER_MODIFY_REJECT, a.cl_ord_id, a.order_id, a.security_id, a.side,
                a.price, a.qty, 0, 0, 0, 0.0, SIMR_UNKNOWN_ORDER)
        return
    o = v.orders[idx]
    inst = v.instruments[o.instrument]
    if a.qty <= 0 or a.price % inst.tick != 0:
        _report(v, lat, t_ns, ER_MODIFY_REJECT, a.cl_ord_id, o.order_id, a.security_id, o.side,
                a.price, a.qty, o.leaves, o.cum, 0, 0.0,
                SIMR_BAD_QTY if a.qty <= 0 else SIMR_OFF_TICK)
        return
    if a.qty <= o.cum:  # nothing left to work: cancelled
        o.leaves = 0
        _order_report(v, lat, t_ns, idx, ER_CANCEL, SIMR_NONE)
        _deactivate(v, idx, True)
        return
    new_leaves = a.qty - o.cum
    lose_priority = a.price != o.price or new_leaves > o.leaves
    o.price = a.price
    o.qty = a.qty
    o.leaves = new_leaves
    _order_report(v, lat, t_ns, idx, ER_MODIFY, SIMR_NONE)
    if lose_priority:
        _deactivate(v, idx, False)
        _take(v, lat, t_ns, idx)
        if o.leaves > 0:
            _join_queue(v, idx)
        else:
            v.free[v.free_top] = idx
            v.free_top += 1


@njit(cache=True)
def _venue_cancel_idx(v: Any, lat: Any, t_ns: int, idx: int) -> None:
    v.orders[idx].leaves = 0
    _order_report(v, lat, t_ns, idx, ER_CANCEL, SIMR_NONE)
    _deactivate(v, idx, True)


@njit(cache=True)
def _venue_action(v: Any, lat: Any, t_ns: int, a: Any) -> None:
    v.counters[SC_REQUESTS] += 1
    act = a.action
    if act == ACT_NEW:
        _venue_new(v, lat, t_ns, a)
    elif act == ACT_CANCEL:
        idx = _find_resting(v, a.cl_ord_id)
        if idx < 0:
            _report(v, lat, t_ns, ER_CANCEL_REJECT, a.cl_ord_id, a.order_id, a.security_id,
                    a.side, a.price, 0, 0, 0, 0, 0.0, SIMR_UNKNOWN_ORDER)
        else:
            _venue_cancel_idx(v, lat, t_ns, idx)
    elif act == ACT_MODIFY:
        _venue_modify(v, lat, t_ns, a)
    elif act == ACT_MASS_CANCEL:
        a_i = v.n_active - 1
        while a_i >= 0:
            idx = v.active[a_i]
            sid = v.instruments[v.orders[idx].instrument].security_id
            if a.security_id == 0 or sid == a.security_id:
                _venue_cancel_idx(v, lat, t_ns, idx)
            a_i -= 1
    else:
        v.reason_counts[SIMR_BAD_ACTION] += 1


@njit(cache=True)
def _advance(v: Any, resp_lat: Any, until_ns: int) -> None:
    """Process the requests that reached the venue by ``until_ns``, in order."""
    while v.in_count > 0 and v.in_arrive[v.in_head] <= until_ns:
        _venue_action(v, resp_lat, v.in_arrive[v.in_head], v.inflight[v.in_head])
        v.in_head = (v.in_head + 1) % INFLIGHT_CAP
        v.in_count -= 1


@njit(cache=True)
def _enqueue(v: Any, entry_lat: Any, actions: Any, k: int, now_ns: int) -> int:
    """Put actions[:k] on the way to the venue; returns how many fitted."""
    for j in range(k):
        if v.in_count >= INFLIGHT_CAP:
            return j
        arrive = now_ns + _sample(entry_lat, v.entry_idx)
        v.entry_idx += 1
        if arrive < v.last_arrive:
            arrive = v.last_arrive
        v.last_arrive = arrive
        p = (v.in_head + v.in_count) % INFLIGHT_CAP
        v.inflight[p] = actions[j]
        v.in_arrive[p] = arrive
        v.in_count += 1
    return k


@njit(cache=True)
def _deliver(v: Any, out: Any, cap: int, now_ns: int) -> int:
    n = 0
    while n < cap and v.out_count > 0 and v.out_deliver[v.out_head] <= now_ns:
        out[n] = v.outq[v.out_head]
        v.out_head = (v.out_head + 1) % OUTQ_CAP
        v.out_count -= 1
        n += 1
    return n


# --------------------------------------------------------------------------
# kernels: market data -> queue positions and fills
# --------------------------------------------------------------------------
@njit(cache=True)
def _level_decrease(v: Any, i: int, s: int, px: int, old: int, new: int) -> None:
    """MBP: a level at one of our prices went from old to new displayed qty."""
    if new >= old:
        return
    power = v.queue_power
    for a in range(v.n_active):
        o = v.orders[v.active[a]]
        if o.instrument != i or o.side - 1 != s or o.price != px:
            continue
        dec = float(old - new)
        explained = min(dec, o.credit)
        o.credit -= explained
        unexplained = dec - explained
        ahead = o.queue_ahead
        if unexplained > 0.0 and ahead > 0.0:
            behind = max(float(old) - ahead, 0.0)
            fa = ahead ** power
            fb = behind ** power
            ahead -= unexplained * fa / (fa + fb)
        # everyone ahead of us is in the displayed qty
        o.queue_ahead = max(min(ahead, float(new)), 0.0)


@njit(cache=True)
def _on_book(v: Any, e: Any) -> None:
    i = _find_sim_instrument(v, e.security_id)
    if i < 0:
        return
    inst = v.instruments[i]
    if inst.mbo != 0:
        return
    et = e.entry_type
    if et == ET_BOOK_RESET:
        inst.n_lvl[0] = 0
        inst.n_lvl[1] = 0
        return
    if et == ET_BID:
        s = 0
    elif et == ET_OFFER:
        s = 1
    else:
        return  # implied levels: not fillable in this model
    act = e.action
    cap = min(inst.depth, VENUE_DEPTH)
    if act in (MD_NEW, MD_CHANGE, MD_OVERLAY):
        if act == MD_OVERLAY:
            li = e.price_level - np.int64(1)
            if 0 <= li < inst.n_lvl[s] and inst.lvl_px[s, li] != e.price:
                old_px = inst.lvl_px[s, li]
                old_q = inst.lvl_qty[s, li]
                _lvl_remove_at(inst, s, li)
                _level_decrease(v, i, s, old_px, old_q, 0)
        old = _lvl_qty(inst, s, e.price)
        _lvl_set(v, inst, s, e.price, e.size, cap)
        _level_decrease(v, i, s, e.price, old, e.size)
    elif act == MD_DELETE:
        old = _lvl_qty(inst, s, e.price)
        _lvl_set(v, inst, s, e.price, 0, cap)
        _level_decrease(v, i, s, e.price, old, 0)
    elif act in (MD_DELETE_THRU, MD_DELETE_FROM):
        n = inst.n_lvl[s] if act == MD_DELETE_THRU else min(np.int64(e.price_level),
                                                            inst.n_lvl[s])
        for _ in range(n):
            px = inst.lvl_px[s, 0]
            q = inst.lvl_qty[s, 0]
            _lvl_remove_at(inst, s, 0)
            _level_decrease(v, i, s, px, q, 0)


@njit(cache=True)
def _ahead_reduced(v: Any, i: int, s: int, px: int, prio: int, qty: int) -> None:
    """MBO: ``qty`` left the level at px from an order of priority ``prio``."""
    for a in range(v.n_active):
        o = v.orders[v.active[a]]
        if o.instrument == i and o.side - 1 == s and o.price == px and prio <= o.join_priority:
            o.queue_ahead = max(o.queue_ahead - qty, 0.0)


@njit(cache=True)
def _lvl_add(v: Any, inst: Any, s: int, px: int, delta: int) -> None:
    li = _lvl_index(inst, s, px)
    q = (inst.lvl_qty[s, li] if li >= 0 else 0) + delta
    _lvl_set(v, inst, s, px, q, VENUE_DEPTH)


@njit(cache=True)
def _on_mbo(v: Any, mbo: Any, e: Any) -> None:
    i = _find_sim_instrument(v, e.security_id)
    if i < 0:
        return
    inst = v.instruments[i]
    if inst.mbo == 0:
        return
    key = e.order_id
    h = _mbo_find(v, mbo, key)
    if e.action == MD_DELETE:
        if h < 0:
            v.counters[SC_MBO_UNKNOWN] += 1
            return
        m = mbo[h]
        _lvl_add(v, inst, m.side, m.price, -m.qty)
        _ahead_reduced(v, i, m.side, m.price, m.priority, m.qty)
        _mbo_delete(v, mbo, h)
        return
    if e.entry_type == ET_BID:
        s = 0
    elif e.entry_type == ET_OFFER:
        s = 1
    else:
        return
    prio = np.uint64(e.aux)
    if h >= 0:
        m = mbo[h]
        _lvl_add(v, inst, m.side, m.price, -m.qty)
        if m.side != s or m.price != e.price or m.priority != prio:
            _ahead_reduced(v, i, m.side, m.price, m.priority, m.qty)  # lost its place
        elif e.size < m.qty:
            _ahead_reduced(v, i, m.side, m.price, m.priority, m.qty - e.size)
    else:
        if e.action != MD_NEW and e.kind != EV_SNAPSHOT_ENTRY:
            v.counters[SC_MBO_UNKNOWN] += 1
        h = _mbo_insert(v, mbo, key)
        if h < 0:
            return
    m = mbo[h]
    m.price = e.price
    m.qty = e.size
    m.priority = prio
    m.instrument = i
    m.side = s
    _lvl_add(v, inst, s, e.price, e.size)
    if prio > inst.max_priority:
        inst.max_priority = prio


@njit(cache=True)
def _on_trade(v: Any, lat: Any, t_ns: int, e: Any) -> None:
    i = _find_sim_instrument(v, e.security_id)
    if i < 0:
        return
    mbo_mode = v.instruments[i].mbo != 0
    px = e.price
    size = e.size
    taken_buy = 0
    taken_sell = 0
    a = 0
    while a < v.n_active:
        idx = v.active[a]
        o = v.orders[idx]
        passive = (o.side == SIDE_BUY and e.side != SIDE_BUY) or (
            o.side == SIDE_SELL and e.side != SIDE_SELL)
        if o.instrument != i or not passive:
            a += 1
            continue
        through = (o.side == SIDE_BUY and o.price > px) or (o.side == SIDE_SELL and o.price < px)
        fill = 0
        if through:
            fill = o.leaves
            v.counters[SC_TRADE_THROUGH_FILLS] += 1
        elif o.price == px and not mbo_mode:
            taken = taken_buy if o.side == SIDE_BUY else taken_sell
            avail = float(size - taken) - o.queue_ahead
            o.queue_ahead = max(o.queue_ahead - size, 0.0)
            o.credit += size
            if avail >= 1.0:
                fill = min(o.leaves, np.int64(math.floor(avail)))
                v.counters[SC_QUEUE_FILLS] += 1
            if o.side == SIDE_BUY:
                taken_buy += fill
            else:
                taken_sell += fill
        if fill > 0:
            _fill(v, lat, t_ns, idx, fill, o.price, 0)
            if o.leaves == 0:
                _deactivate(v, idx, True)
                continue  # the list shifted: same position, next order
        a += 1


@njit(cache=True)
def _on_trade_order(v: Any, lat: Any, mbo: Any, t_ns: int, e: Any) -> None:
    """MBO: a resting order traded; if it was behind one of ours, ours filled first."""
    h = _mbo_find(v, mbo, e.order_id)
    if h < 0:
        return
    m = mbo[h]
    remaining = e.size
    a = 0
    while a < v.n_active and remaining > 0:
        idx = v.active[a]
        o = v.orders[idx]
        if (o.instrument == m.instrument and o.side - 1 == m.side and o.price == m.price
                and m.priority > o.join_priority):
            q = min(o.leaves, remaining)
            remaining -= q
            o.queue_ahead = 0.0
            _fill(v, lat, t_ns, idx, q, o.price, 0)
            v.counters[SC_QUEUE_FILLS] += 1
            if o.leaves == 0:
                _deactivate(v, idx, True)
                continue
        a += 1


@njit(cache=True)
def _quote_through(v: Any, lat: Any, t_ns: int) -> None:
    """The opposite best at or through our price: the market traded with us."""
    a = 0
    while a < v.n_active:
        idx = v.active[a]
        o = v.orders[idx]
        inst = v.instruments[o.instrument]
        opp = 1 if o.side == SIDE_BUY else 0
        hit = False
        if inst.n_lvl[opp] > 0:
            best = inst.lvl_px[opp, 0]
            hit = best <= o.price if o.side == SIDE_BUY else best >= o.price
        if hit:
            v.counters[SC_QUOTE_THROUGH_FILLS] += 1
            _fill(v, lat, t_ns, idx, o.leaves, o.price, 0)
            _deactivate(v, idx, True)
            continue
        a += 1


@njit(cache=True)
def _on_events(venue: Any, mbo: Any, resp_lat: Any, events: Any, n: int, now_ns: int) -> None:
    v = venue[0]
    _advance(v, resp_lat, now_ns)
    for j in range(n):
        e = events[j]
        kind = e.kind
        v.counters[SC_EVENTS] += 1
        if kind == EV_BOOK or (kind == EV_SNAPSHOT_ENTRY and e.order_id == 0):
            _on_book(v, e)
        elif kind in (EV_ORDER, EV_ORDER_REF, EV_SNAPSHOT_ENTRY):
            _on_mbo(v, mbo, e)
        elif kind == EV_TRADE:
            _on_trade(v, resp_lat, now_ns, e)
        elif kind == EV_TRADE_ORDER:
            _on_trade_order(v, resp_lat, mbo, now_ns, e)
        elif kind == EV_SNAPSHOT:
            i = _find_sim_instrument(v, e.security_id)
            if i >= 0 and v.instruments[i].mbo == 0:
                v.instruments[i].n_lvl[0] = 0
                v.instruments[i].n_lvl[1] = 0
        if e.flags & FLAG_END_OF_EVENT:
            _quote_through(v, resp_lat, now_ns)
    _quote_through(v, resp_lat, now_ns)


@njit(cache=True)
def _send_entry(venue: Any, entry_lat: Any, actions: Any, k: int, now_ns: int) -> int:
    return _enqueue(venue[0], entry_lat, actions, k, now_ns)


@njit(cache=True)
def _poll_entry(venue: Any, resp_lat: Any, out: Any, cap: int, now_ns: int) -> int:
    v = venue[0]
    _advance(v, resp_lat, now_ns)
    return _deliver(v, out, cap, now_ns)


@njit(cache=True)
def _disconnect_entry(venue: Any, resp_lat: Any, now_ns: int) -> int:
    """Cancel on disconnect: every resting order cancelled; requests in flight are lost."""
    v = venue[0]
    _advance(v, resp_lat, now_ns)
    lost = v.in_count
    v.in_count = 0
    a_i = v.n_active - 1
    while a_i >= 0:
        _venue_cancel_idx(v, resp_lat, now_ns, v.active[a_i])
        a_i -= 1
    return lost


# --------------------------------------------------------------------------
# Python side
# --------------------------------------------------------------------------
class LatencyModel:
    """Latency samples in ns, consumed in order (cyclically) by the venue kernels."""

    N_DRAWN = 1 << 16

    def __init__(self, samples: np.ndarray, description: str) -> None:
        s = np.ascontiguousarray(samples, dtype=np.int64)
        if s.ndim != 1 or s.size == 0 or (s < 0).any():
            raise ValueError("latency samples: a non-empty 1-D array of ns >= 0")
        self.samples = s
        self.description = description

    @classmethod
    def constant(cls, ns: int) -> LatencyModel:
        return cls(np.array([ns], dtype=np.int64), f"constant {ns} ns")

    @classmethod
    def jitter(cls, base_ns: int, jitter_ns: int, seed: int,
               distribution: str = "exponential") -> LatencyModel:
        """base + jitter: exponential with mean ``jitter_ns`` or uniform on [0, jitter_ns]."""
        rng = np.random.default_rng(seed)
        if distribution == "exponential":
            j = rng.exponential(jitter_ns, cls.N_DRAWN)
        elif distribution == "uniform":
            j = rng.uniform(0, jitter_ns, cls.N_DRAWN)
        else:
            raise ValueError("distribution: 'exponential' or 'uniform'")
        return cls(base_ns + np.rint(j).astype(np.int64),
                   f"{base_ns} ns + {distribution} jitter {jitter_ns} ns (seed {seed})")

    @classmethod
    def from_file(cls, path: str | Path, seed: int, unit_ns: float = 1.0) -> LatencyModel:
        """Resampled (seeded) from measured latencies: one number per line (or .npy)."""
        p = Path(path)
        data = np.load(p) if p.suffix == ".npy" else np.loadtxt(p, ndmin=1)
        data = np.asarray(data, dtype=np.float64).ravel() * unit_ns
        if data.size == 0:
            raise ValueError(f"{p}: no latencies")
        rng = np.random.default_rng(seed)
        drawn = rng.choice(np.rint(data).astype(np.int64), cls.N_DRAWN, replace=True)
        return cls(drawn, f"sampled from {p.name} ({data.size} values, seed {seed})")


@dataclasses.dataclass(frozen=True)
class SimInstrument:
    """One instrument of the simulated venue."""

    security_id: int
    tick: int  # price mantissa
    mbo: bool = False  # exact queue model from MBO rows (else probabilistic from MBP rows)
    depth: int = 10  # MBP depth of the feed
    maker_fee: float = 0.0
    taker_fee: float = 0.0
    fee_per_contract: float = 0.0


class SimGateway:
    """The simulated venue as a Gateway (see the module docstring)."""

    def __init__(self, clock: Clock, instruments: list[SimInstrument] | tuple[SimInstrument, ...],
                 entry_latency: LatencyModel | None = None,
                 response_latency: LatencyModel | None = None,
                 queue_power: float = 1.0, mbo_capacity: int = 1 << 16) -> None:
        if not 1 <= len(instruments) <= SIM_MAX_INSTRUMENTS:
            raise ValueError(f"1..{SIM_MAX_INSTRUMENTS} instruments")
        if mbo_capacity < 16 or mbo_capacity & (mbo_capacity - 1):
            raise ValueError("mbo_capacity must be a power of two >= 16")
        if not queue_power > 0:
            raise ValueError("queue_power must be > 0")
        self.clock = clock
        self.entry_latency = entry_latency or LatencyModel.constant(0)
        self.response_latency = response_latency or LatencyModel.constant(0)
        self.venue = np.zeros(1, dtype=SIM_VENUE)
        self.mbo = np.zeros(mbo_capacity, dtype=MBO_ORDER)
        v = self.venue[0]
        v["n_instruments"] = len(instruments)
        v["queue_power"] = queue_power
        v["mbo_bits"] = int(math.log2(mbo_capacity))
        v["free"] = np.arange(SIM_MAX_ORDERS, dtype=np.int32)
        v["free_top"] = SIM_MAX_ORDERS
        for i, si in enumerate(instruments):
            if si.tick <= 0 or not 1 <= si.depth <= VENUE_DEPTH:
                raise ValueError(f"instrument {si.security_id}: tick > 0, depth 1..{VENUE_DEPTH}")
            row = v["instruments"][i]
            row["security_id"] = si.security_id
            row["mbo"] = int(si.mbo)
            row["depth"] = si.depth
            row["tick"] = si.tick
            row["maker_fee"] = si.maker_fee
            row["taker_fee"] = si.taker_fee
            row["fee_per_contract"] = si.fee_per_contract
        self._local = np.zeros(4 * OUTQ_CAP // 8, dtype=EXEC_REPORT)  # rejects made here
        self._n_local = 0
        self._events1 = np.zeros(1, dtype=MD_EVENT)
        self._one = np.zeros(1, dtype=ORDER_ACTION)
        self.closed = False

    # -- Gateway interface -------------------------------------------------
    def connect(self) -> None:
        self.venue[0]["connected"] = 1
        self.closed = False

    def is_connected(self) -> bool:
        return bool(self.venue[0]["connected"])

    def poll(self, reports: np.ndarray) -> int:
        if not self._n_local:  # the usual case: one kernel call, nothing allocated
            if not self.venue[0]["connected"]:
                return 0
            return int(_poll_entry(self.venue, self.response_latency.samples, reports,
                                   len(reports), self.clock.now_ns()))
        n = 0
        if self._n_local:
            n = min(self._n_local, len(reports))
            reports[:n] = self._local[:n]
            self._local[: self._n_local - n] = self._local[n:self._n_local]
            self._n_local -= n
        if not self.venue[0]["connected"]:
            return n
        return n + int(_poll_entry(self.venue, self.response_latency.samples, reports[n:],
                                   len(reports) - n, self.clock.now_ns()))

    def send(self, actions: np.ndarray, k: int) -> int:
        if k <= 0:
            return 0
        if not self.venue[0]["connected"]:
            self._refuse(actions, 0, k, SIMR_DISCONNECTED)
            return 0
        sent = int(_send_entry(self.venue, self.entry_latency.samples, actions, k,
                               self.clock.now_ns()))
        if sent < k:
            self._refuse(actions, sent, k, SIMR_QUEUE_FULL)
        return sent

    def mass_cancel(self, security_id: int = 0) -> bool:
        if not self.venue[0]["connected"]:
            return False
        a = self._one
        a[0] = 0
        a[0]["action"] = ACT_MASS_CANCEL
        a[0]["security_id"] = security_id
        return int(_send_entry(self.venue, self.entry_latency.samples, a, 1,
                               self.clock.now_ns())) == 1

    def close(self) -> None:
        """Logout: the venue cancels what rests (cancel on disconnect)."""
        if self.venue[0]["connected"]:
            self.disconnect()
        self.closed = True

    # -- simulation controls -------------------------------------------------
    def disconnect(self) -> int:
        """Lose the session: resting orders cancelled at the venue (their cancels are
        delivered on reconnect); requests in flight are lost and rejected locally."""
        v = self.venue[0]
        self.advance()
        lost_start = int(v["in_head"])
        lost = int(_disconnect_entry(self.venue, self.response_latency.samples,
                                     self.clock.now_ns()))
        if lost:
            idx = (lost_start + np.arange(lost)) % INFLIGHT_CAP
            lost_actions = v["inflight"][idx]
            self._refuse(lost_actions, 0, lost, SIMR_DISCONNECTED)
        v["connected"] = 0
        return lost

    def on_market_data(self, events: np.ndarray, n: int | None = None) -> None:
        """Feed MD_EVENT rows (one packet or a batch) at the clock's current time."""
        if events.dtype != MD_EVENT:
            raise TypeError("events must have dtype MD_EVENT")
        n = len(events) if n is None else min(int(n), len(events))
        _on_events(self.venue, self.mbo, self.response_latency.samples, events, n,
                   self.clock.now_ns())

    def advance(self) -> None:
        """Let the requests that reached the venue by now act on the current book."""
        _on_events(self.venue, self.mbo, self.response_latency.samples, self._events1, 0,
                   self.clock.now_ns())

    def on_book(self, security_id: int, side: int, price: int, qty: int,
                action: int | None = None, end_of_event: bool = True) -> None:
        """One MBP level update (side SIDE_BUY/SIDE_SELL; qty 0 deletes the level)."""
        e = self._events1
        e[0] = 0
        e[0]["kind"] = EV_BOOK
        e[0]["security_id"] = security_id
        e[0]["entry_type"] = ET_BID if side == SIDE_BUY else ET_OFFER
        e[0]["price"] = price
        e[0]["size"] = qty
        if action is None:
            action = MD_DELETE if qty == 0 else MD_CHANGE
        e[0]["action"] = action
        e[0]["flags"] = FLAG_END_OF_EVENT if end_of_event else 0
        self.on_market_data(e, 1)

    def on_trade(self, security_id: int, price: int, qty: int, aggressor: int,
                 end_of_event: bool = True) -> None:
        """One trade (aggressor SIDE_BUY / SIDE_SELL / 0 unknown)."""
        e = self._events1
        e[0] = 0
        e[0]["kind"] = EV_TRADE
        e[0]["security_id"] = security_id
        e[0]["price"] = price
        e[0]["size"] = qty
        e[0]["side"] = aggressor
        e[0]["flags"] = FLAG_END_OF_EVENT if end_of_event else 0
        self.on_market_data(e, 1)

    # -- inspection ------------------------------------------------------------
    def resting(self) -> list[dict[str, Any]]:
        """Our orders resting at the venue, in queue order (with queue_ahead)."""
        v = self.venue[0]
        out = []
        for a in range(int(v["n_active"])):
            o = v["orders"][int(v["active"][a])]
            d = {name: o[name].item() for name in SIM_ORDER.names or ()}
            d["security_id"] = int(v["instruments"][int(o["instrument"])]["security_id"])
            out.append(d)
        return out

    def levels(self, security_id: int, side: int) -> list[tuple[int, int]]:
        """The venue's view of one side: [(price, qty)], best first."""
        v = self.venue[0]
        for i in range(int(v["n_instruments"])):
            inst = v["instruments"][i]
            if int(inst["security_id"]) == security_id:
                s = 0 if side == SIDE_BUY else 1
                n = int(inst["n_lvl"][s])
                return [(int(inst["lvl_px"][s, j]), int(inst["lvl_qty"][s, j]))
                        for j in range(n)]
        raise KeyError(security_id)

    def counters(self) -> dict[str, int]:
        v = self.venue[0]
        out = {name: int(v["counters"][i]) for i, name in enumerate(SIM_COUNTER_NAMES)}
        for i, name in enumerate(SIM_REASON_NAMES):
            if i and v["reason_counts"][i]:
                out[f"reason_{name}"] = int(v["reason_counts"][i])
        out["in_flight"] = int(v["in_count"])
        out["reports_pending"] = int(v["out_count"]) + self._n_local
        return out

    def _refuse(self, actions: np.ndarray, start: int, k: int, reason: int) -> None:
        """Requests that never reach the venue come back as rejects at once."""
        now = self.clock.now_ns()
        for j in range(start, k):
            if self._n_local >= len(self._local):
                break
            a = actions[j]
            act = int(a["action"])
            if act == ACT_MASS_CANCEL:
                continue
            r = self._local[self._n_local]
            r.fill(0)
            r["kind"] = {ACT_NEW: ER_REJECT, ACT_CANCEL: ER_CANCEL_REJECT,
                         ACT_MODIFY: ER_MODIFY_REJECT}.get(act, ER_REJECT)
            r["cl_ord_id"] = a["cl_ord_id"]
            r["order_id"] = a["order_id"]
            r["security_id"] = a["security_id"]
            r["side"] = a["side"]
            r["price"] = a["price"]
            r["qty"] = a["qty"]
            r["reason"] = reason
            r["transact_ns"] = now
            r["recv_ns"] = now
            self._n_local += 1


__all__ = [
    "SIM_COUNTER_NAMES",
    "SIM_REASON_NAMES",
    "LatencyModel",
    "SimGateway",
    "SimInstrument",
]
