"""Desired quotes vs working orders -> the fewest new / modify / cancel actions.

One order per (instrument, side, layer), remembered in ``quote_slot``. Per layer:

* no working order, a desired quote     -> NEW
* a working order, no desired quote     -> CANCEL
* both, and the price must move         -> MODIFY (one message, not cancel + new)
* both, and the desired qty is smaller  -> MODIFY (a qty decrease keeps queue priority)
* an order with a request in flight     -> nothing (one request in flight per order)

"The price must move" is asymmetric, to respect CME's messaging limits without
leaving stale quotes exposed: toward the market only when the desired price is
``requote_ticks`` or more away; away from the market (the order is at risk of
adverse selection, or would cross) as soon as it is ``at_risk_ticks`` away. A
qty increase alone is never sent (it would lose priority); it rides with the
next price move. An order at risk that the submit throttle will not let us move
is cancelled instead (the cancel throttle is separate). Bids are never placed
at or above our own lowest ask (and asks not at or below our highest bid),
counting prices of modifies in flight, so we never trade with ourselves; the
side moving away from the other is processed first.

Every action goes through the risk check first; a refusal is counted by reason
and the quote simply is not sent this tick. Cancels for protection (halt,
paused instrument, REDUCING, adopted orders) are never throttled.
"""

from __future__ import annotations

from typing import Any

from numba import njit

from core.oms import _alloc_order, _cancel_sent, _is_live, _modify_sent
from core.risk import (
    _instrument_notional,
    _rate_ok,
    _record_cancel,
    _record_submit,
    _risk_check_cancel,
    _risk_check_modify,
    _risk_check_new_order,
)
from core.types import (
    ACT_CANCEL,
    ACT_MODIFY,
    ACT_NEW,
    MAX_ACTIONS,
    MAX_CANCEL_ATTEMPTS,
    MAX_LAYERS,
    MAX_ORDERS,
    OMS_CANCEL_GIVE_UP,
    OS_PARTIALLY_FILLED,
    OS_PENDING_CANCEL,
    OS_WORKING,
    RISK_ACTIONS_FULL,
    RISK_OK,
    RISK_ORDER_TABLE_FULL,
    SIDE_BUY,
    SIDE_SELL,
    TIF_DAY,
    TRADER_ACTIVE,
    TRADER_REDUCING,
)

_BIG = 1 << 62


@njit(cache=True)
def _write_action(t: Any, k: int, slot: int, action: int, price: int, qty: int, now_ns: int,
                  trigger_seq: int) -> None:
    o = t.orders[slot]
    a = t.actions[k]
    a.cl_ord_id = o.cl_ord_id
    a.order_id = o.order_id
    a.price = price
    a.qty = qty
    a.decide_ns = now_ns
    a.trigger_seq = trigger_seq
    a.security_id = t.instruments[o.instrument].security_id
    a.slot = slot
    a.instrument = o.instrument
    a.action = action
    a.side = o.side
    a.tif = o.tif
    t.action_counts[action] += 1


@njit(cache=True)
def _emit_new(t: Any, k: int, i: int, side: int, price: int, qty: int, layer: int, m: Any,
              now_ns: int, trigger_seq: int) -> int:
    """Risk-check and send a new order; returns the new action count."""
    if k >= MAX_ACTIONS:
        t.reject_counts[RISK_ACTIONS_FULL] += 1
        return k
    r = _risk_check_new_order(t, i, side, price, qty, m, now_ns)
    if r != RISK_OK:
        t.reject_counts[r] += 1
        return k
    inst = t.instruments[i]
    before = _instrument_notional(inst, 0, 0)
    slot = _alloc_order(t, i, side, price, qty, TIF_DAY, layer, now_ns, trigger_seq)
    if slot < 0:
        t.reject_counts[RISK_ORDER_TABLE_FULL] += 1
        return k
    t.gross_notional += _instrument_notional(inst, 0, 0) - before
    if layer >= 0:
        inst.quote_slot[side - 1, layer] = slot
    _record_submit(t, now_ns)
    _write_action(t, k, slot, ACT_NEW, price, qty, now_ns, trigger_seq)
    return k + 1


@njit(cache=True)
def _emit_modify(t: Any, k: int, slot: int, price: int, qty: int, m: Any, now_ns: int,
                 trigger_seq: int) -> int:
    """Risk-check and send a modify to total qty ``qty`` at ``price``."""
    if k >= MAX_ACTIONS:
        t.reject_counts[RISK_ACTIONS_FULL] += 1
        return k
    r = _risk_check_modify(t, slot, price, qty, m, now_ns)
    if r != RISK_OK:
        t.reject_counts[r] += 1
        return k
    o = t.orders[slot]
    inst = t.instruments[o.instrument]
    before = _instrument_notional(inst, 0, 0)
    _modify_sent(t, slot, price, qty)
    t.gross_notional += _instrument_notional(inst, 0, 0) - before
    _record_submit(t, now_ns)
    _write_action(t, k, slot, ACT_MODIFY, price, qty, now_ns, trigger_seq)
    return k + 1


@njit(cache=True)
def _emit_cancel(t: Any, k: int, slot: int, protective: bool, now_ns: int,
                 trigger_seq: int) -> int:
    """Send a cancel (at most MAX_CANCEL_ATTEMPTS per order; protective ones unthrottled)."""
    o = t.orders[slot]
    if o.status == OS_PENDING_CANCEL:
        return k
    if o.cancel_attempts >= MAX_CANCEL_ATTEMPTS:
        if o.cancel_attempts == MAX_CANCEL_ATTEMPTS:
            t.oms_counts[OMS_CANCEL_GIVE_UP] += 1
            o.cancel_attempts += 1
        return k
    if k >= MAX_ACTIONS:
        t.reject_counts[RISK_ACTIONS_FULL] += 1
        return k
    r = _risk_check_cancel(t, protective, now_ns)
    if r != RISK_OK:
        t.reject_counts[r] += 1
        return k
    _cancel_sent(t, slot)
    _record_cancel(t, now_ns)
    _write_action(t, k, slot, ACT_CANCEL, o.price, 0, now_ns, trigger_seq)
    return k + 1


@njit(cache=True)
def _cancel_all(t: Any, k: int, inst_filter: int, adopted_only: bool, now_ns: int,
                trigger_seq: int) -> int:
    """Protective cancel of every live order (of one instrument if inst_filter >= 0)."""
    for slot in range(MAX_ORDERS):
        o = t.orders[slot]
        if not _is_live(o.status):
            continue
        if inst_filter >= 0 and o.instrument != inst_filter:
            continue
        if adopted_only and o.layer >= 0:
            continue
        k = _emit_cancel(t, k, slot, True, now_ns, trigger_seq)
    return k


@njit(cache=True)
def _own_extreme(t: Any, inst: Any, side: int) -> int:
    """Our highest live bid (side BUY) or lowest live ask (SELL), counting modifies in flight."""
    best = -_BIG if side == SIDE_BUY else _BIG
    for j in range(MAX_LAYERS):
        slot = inst.quote_slot[side - 1, j]
        if slot < 0:
            continue
        o = t.orders[slot]
        if side == SIDE_BUY:
            best = max(best, o.price)
            if o.pending_qty > 0:
                best = max(best, o.pending_price)
        else:
            best = min(best, o.price)
            if o.pending_qty > 0:
                best = min(best, o.pending_price)
    return best


@njit(cache=True)
def _manage_side(t: Any, k: int, i: int, side: int, m: Any, now_ns: int,
                 trigger_seq: int) -> int:
    inst = t.instruments[i]
    s = side - 1
    tick = inst.tick
    for j in range(MAX_LAYERS):
        dq = inst.desired_qty[s, j]
        dp = inst.desired_px[s, j]
        # never at or through our own other side: wait for it to move first
        if dq > 0:
            if side == SIDE_BUY:
                if dp >= _own_extreme(t, inst, SIDE_SELL):
                    continue
            elif dp <= _own_extreme(t, inst, SIDE_BUY):
                continue
        slot = inst.quote_slot[s, j]
        if slot < 0:
            if dq > 0:
                k = _emit_new(t, k, i, side, dp, dq, j, m, now_ns, trigger_seq)
            continue
        o = t.orders[slot]
        if o.status != OS_WORKING and o.status != OS_PARTIALLY_FILLED:
            continue  # a request is in flight
        if dq <= 0:
            # in REDUCING this order is on the wrong side: protect; else a throttled requote
            k = _emit_cancel(t, k, slot, t.state == TRADER_REDUCING, now_ns, trigger_seq)
            continue
        diff = (dp - o.price) // tick  # > 0: a bid moving toward the market
        if side == SIDE_SELL:
            diff = -diff
        at_risk = -diff >= inst.at_risk_ticks
        if at_risk and not _rate_ok(t.submit_times, t.submit_count, t.submit_limit,
                                    t.submit_window_ns, now_ns):
            # cannot move it (submit throttle): pull it instead (cancels count apart)
            k = _emit_cancel(t, k, slot, False, now_ns, trigger_seq)
        elif at_risk or diff >= inst.requote_ticks:
            k = _emit_modify(t, k, slot, dp, o.cum + dq, m, now_ns, trigger_seq)
        elif dq < o.leaves:
            k = _emit_modify(t, k, slot, o.price, o.cum + dq, m, now_ns, trigger_seq)
    return k


@njit(cache=True)
def _manage_quotes(t: Any, k: int, i: int, m: Any, now_ns: int, trigger_seq: int) -> int:
    """Turn instrument i's desired quotes into actions (after _quote)."""
    inst = t.instruments[i]
    if t.state != TRADER_ACTIVE and t.state != TRADER_REDUCING:
        return k
    # the side moving away from the other goes first, so the other may follow safely
    bid_slot = inst.quote_slot[0, 0]
    bids_up = bid_slot >= 0 and inst.desired_qty[0, 0] > 0 and \
        inst.desired_px[0, 0] > t.orders[bid_slot].price
    if bids_up:
        k = _manage_side(t, k, i, SIDE_SELL, m, now_ns, trigger_seq)
        k = _manage_side(t, k, i, SIDE_BUY, m, now_ns, trigger_seq)
    else:
        k = _manage_side(t, k, i, SIDE_BUY, m, now_ns, trigger_seq)
        k = _manage_side(t, k, i, SIDE_SELL, m, now_ns, trigger_seq)
    return k


__all__: list[str] = []
