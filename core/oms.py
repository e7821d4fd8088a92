"""Order management: the order state machine, positions, worst-case exposure, P&L and fees.

Everything lives in the TRADER record (core/types.py): the order table
``orders``, and per instrument ``position``, ``buy_open``/``sell_open`` (the
worst-case open quantity of working and in-flight orders), average-cost P&L and
fees. The kernels below run inside the fused ``decide`` call; the Python
functions at the bottom are the facade for set-up, restore and tests.

Order state machine (driven by execution reports)::

    PENDING_NEW --ack--> WORKING --fill--> PARTIALLY_FILLED --fill--> FILLED
         |                  |  \\--modify sent--> PENDING_MODIFY --ack/reject--> back
         |                  \\--cancel sent--> PENDING_CANCEL --cancel ack--> CANCELLED
         +--reject--> REJECTED        (cancel reject: back)   elimination --> EXPIRED

An ER_STATUS for a live order we do not know (reconciliation after a restart)
adopts it (layer -1): it counts in the worst-case exposure and is cancelled.

Races handled: a fill while a cancel or modify is in flight is applied (the
order stays pending cancel/modify unless it is now filled); a cancel reject after
a fill is a late report; a fill after the cancel ack, or for an order whose row
was already reused, is still applied to the position through its security id
(money is never dropped), and counted.

Worst-case exposure of an order: its leaves quantity, or, while a modify is in
flight, the larger of the old and the requested leaves (the venue may apply
either). Pending-new and pending-cancel orders count in full: they may fill.

Prices are integer mantissas; P&L is kept in ticks (price / tick) so that sums
stay exact far beyond a day of trading, and converted to currency with the
instrument's tick value (tick * 10**exponent * display factor * multiplier).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from core.types import (
    ER_CANCEL,
    ER_CANCEL_REJECT,
    ER_ELIMINATION,
    ER_FILL,
    ER_MODIFY,
    ER_MODIFY_REJECT,
    ER_NEW,
    ER_REJECT,
    ER_STATUS,
    EXEC_REPORT,
    MAX_ORDERS,
    MAX_REPORTS,
    MAX_TRADED_INSTRUMENTS,
    N_ER_KINDS,
    OMS_BAD_REPORT,
    OMS_BAD_TRANSITION,
    OMS_FILL_AFTER_CANCEL,
    OMS_LATE_REPORT,
    OMS_OVERFILL,
    OMS_REPORTS_TRUNCATED,
    OMS_UNKNOWN_FILL,
    OMS_UNKNOWN_INSTRUMENT,
    OMS_UNKNOWN_ORDER,
    ORDER_SLOT_BITS,
    ORDER_STATUS_NAMES,
    OS_CANCELLED,
    OS_EXPIRED,
    OS_FILLED,
    OS_FREE,
    OS_PARTIALLY_FILLED,
    OS_PENDING_CANCEL,
    OS_PENDING_MODIFY,
    OS_PENDING_NEW,
    OS_REJECTED,
    OS_WORKING,
    SIDE_BUY,
    SIDE_SELL,
    TRADER,
)

SLOT_MASK = np.uint64(MAX_ORDERS - 1)


# --------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------
@njit(cache=True)
def _is_live(status: int) -> bool:
    return status in (OS_PENDING_NEW, OS_WORKING, OS_PARTIALLY_FILLED, OS_PENDING_CANCEL,
                      OS_PENDING_MODIFY)


@njit(cache=True)
def _slot_of(cl_ord_id: int) -> int:
    """Order row of a cl_ord_id (its low ORDER_SLOT_BITS bits)."""
    return np.int64(cl_ord_id & SLOT_MASK)  # type: ignore[return-value]


@njit(cache=True)
def _find_instrument(t: Any, security_id: int) -> int:
    # a linear scan over <= MAX_TRADED_INSTRUMENTS ints beats any map here
    for i in range(t.n_instruments):
        if t.instruments[i].security_id == security_id:
            return i
    return -1


@njit(cache=True)
def _set_exposure(t: Any, slot: int) -> None:
    """Recompute the order's worst-case open qty and move its instrument's total by the change."""
    o = t.orders[slot]
    e = 0
    if _is_live(o.status):
        e = o.leaves
        if o.pending_qty > 0:
            e = max(e, o.pending_qty - o.cum)
        e = max(e, 0)
    d = e - o.exposure
    if d != 0:
        inst = t.instruments[o.instrument]
        if o.side == SIDE_BUY:
            inst.buy_open += d
        else:
            inst.sell_open += d
        o.exposure = e


@njit(cache=True)
def _alloc_order(t: Any, inst_idx: int, side: int, price: int, qty: int, tif: int, layer: int,
                 now_ns: int, trigger_seq: int) -> int:
    """Take a free row for a new order (PENDING_NEW); -1 if the table is full."""
    if t.free_count == 0:
        return -1
    slot = t.free_slots[t.free_head]
    t.free_head = (t.free_head + 1) % MAX_ORDERS
    t.free_count -= 1
    o = t.orders[slot]
    seq = t.next_cl_seq
    t.next_cl_seq = seq + np.uint64(1)
    o.cl_ord_id = (seq << np.uint64(ORDER_SLOT_BITS)) | np.uint64(slot)
    o.order_id = 0
    o.price = price
    o.qty = qty
    o.leaves = qty
    o.cum = 0
    o.pending_price = 0
    o.pending_qty = 0
    o.exposure = 0
    o.sent_ns = now_ns
    o.ack_ns = 0
    o.trigger_seq = trigger_seq
    o.instrument = inst_idx
    o.status = OS_PENDING_NEW
    o.side = side
    o.tif = tif
    o.layer = layer
    o.acked = 0
    o.cancel_attempts = 0
    _set_exposure(t, slot)
    t.instruments[inst_idx].live_orders += 1
    t.live_orders += 1
    if layer < 0:
        t.adopted_orders += 1
    return slot


@njit(cache=True)
def _release_order(t: Any, slot: int, final_status: int) -> None:
    """Terminal state: no exposure, the quote layer forgets it, the row goes to the free ring."""
    o = t.orders[slot]
    o.status = final_status
    o.pending_qty = 0
    _set_exposure(t, slot)
    inst = t.instruments[o.instrument]
    inst.live_orders -= 1
    t.live_orders -= 1
    if o.layer >= 0:
        if inst.quote_slot[o.side - 1, o.layer] == slot:
            inst.quote_slot[o.side - 1, o.layer] = -1
    else:
        t.adopted_orders -= 1
    tail = (t.free_head + t.free_count) % MAX_ORDERS
    t.free_slots[tail] = slot
    t.free_count += 1


@njit(cache=True)
def _cancel_sent(t: Any, slot: int) -> None:
    o = t.orders[slot]
    o.status = OS_PENDING_CANCEL
    o.cancel_attempts += 1


@njit(cache=True)
def _modify_sent(t: Any, slot: int, price: int, qty: int) -> None:
    """A modify to total qty ``qty`` is in flight: exposure = max(old, new) leaves."""
    o = t.orders[slot]
    o.pending_price = price
    o.pending_qty = qty
    o.status = OS_PENDING_MODIFY
    _set_exposure(t, slot)


@njit(cache=True)
def _resting_status(o: Any) -> int:
    """The status an order returns to when a request in flight is answered."""
    if o.pending_qty > 0:
        return OS_PENDING_MODIFY
    if o.acked == 0:
        return OS_PENDING_NEW
    if o.cum > 0:
        return OS_PARTIALLY_FILLED
    return OS_WORKING


@njit(cache=True)
def _apply_fill(inst: Any, side: int, qty: int, price: int, aggressor: int) -> None:
    """Position, average-cost realised P&L (ticks) and fees of one fill."""
    px = price / inst.tick
    q = qty if side == SIDE_BUY else -qty
    pos = inst.position
    if pos == 0 or (pos > 0) == (q > 0):
        inst.open_cost += q * px
        inst.position = pos + q
    else:
        closing = min(abs(q), abs(pos))
        sgn = 1 if pos > 0 else -1
        avg = inst.open_cost / pos
        inst.realised_ticks += sgn * closing * (px - avg)
        pos -= sgn * closing
        rest = abs(q) - closing
        if pos == 0:
            inst.open_cost = 0.0
            if rest > 0:
                pos = -sgn * rest
                inst.open_cost = pos * px
        else:
            inst.open_cost = avg * pos
        inst.position = pos
    fee = inst.taker_fee if aggressor != 0 else inst.maker_fee
    inst.fees += qty * (fee + inst.fee_per_contract)
    inst.volume += qty
    inst.n_fills += 1
    inst.realised = inst.realised_ticks * inst.tick_value


@njit(cache=True)
def _mark_instrument(inst: Any, mark_ticks: float) -> None:
    """Unrealised and net P&L at a mark (ticks); a NaN mark keeps the previous one."""
    if not math.isnan(mark_ticks):
        inst.mark_ticks = mark_ticks
    unreal = 0.0
    if inst.position != 0 and not math.isnan(inst.mark_ticks):
        unreal = (inst.position * inst.mark_ticks - inst.open_cost) * inst.tick_value
    inst.unrealised = unreal
    inst.realised = inst.realised_ticks * inst.tick_value
    inst.net_pnl = inst.realised + unreal - inst.fees


@njit(cache=True)
def _adopt_order(t: Any, r: Any) -> bool:
    """A live order the venue reports (ER_STATUS) that we do not know, e.g. after a
    restart: take it into its own row (layer -1) so it counts in the exposure and
    gets cancelled. False if its row or instrument is not available."""
    i = _find_instrument(t, r.security_id)
    slot = _slot_of(r.cl_ord_id)
    if i < 0 or _is_live(t.orders[slot].status):
        return False
    pos = -1
    for q in range(t.free_count):
        p = (t.free_head + q) % MAX_ORDERS
        if t.free_slots[p] == slot:
            pos = p
            break
    if pos < 0:
        return False
    t.free_slots[pos] = t.free_slots[t.free_head]
    t.free_head = (t.free_head + 1) % MAX_ORDERS
    t.free_count -= 1
    o = t.orders[slot]
    o.cl_ord_id = r.cl_ord_id
    o.order_id = r.order_id
    o.price = r.price
    o.qty = r.qty
    o.leaves = r.leaves_qty
    o.cum = r.cum_qty
    o.pending_price = 0
    o.pending_qty = 0
    o.exposure = 0
    o.sent_ns = 0
    o.ack_ns = r.recv_ns
    o.trigger_seq = 0
    o.instrument = i
    o.status = OS_PARTIALLY_FILLED if r.cum_qty > 0 else OS_WORKING
    o.side = r.side
    o.tif = 0
    o.layer = -1
    o.acked = 1
    o.cancel_attempts = 0
    _set_exposure(t, slot)
    t.instruments[i].live_orders += 1
    t.live_orders += 1
    t.adopted_orders += 1
    seq = r.cl_ord_id >> np.uint64(ORDER_SLOT_BITS)
    if t.next_cl_seq <= seq:
        t.next_cl_seq = seq + np.uint64(1)
    return True


@njit(cache=True)
def _apply_exec_report(t: Any, r: Any) -> None:
    kind = r.kind
    if kind <= 0 or kind >= N_ER_KINDS:
        t.oms_counts[OMS_BAD_REPORT] += 1
        return
    t.report_counts[kind] += 1
    slot = _slot_of(r.cl_ord_id)
    o = t.orders[slot]
    known = o.cl_ord_id == r.cl_ord_id and o.status != OS_FREE
    if kind == ER_FILL and r.qty <= 0:
        t.oms_counts[OMS_BAD_REPORT] += 1
        return
    if not known or not _is_live(o.status):
        if kind == ER_FILL:
            # never drop a fill: the position is what the exchange says it is
            if known:
                i = o.instrument
                if o.status == OS_CANCELLED:
                    t.oms_counts[OMS_FILL_AFTER_CANCEL] += 1
                else:
                    t.oms_counts[OMS_BAD_TRANSITION] += 1
                _apply_fill(t.instruments[i], o.side, r.qty, r.price, r.aggressor)
                return
            if r.side != SIDE_BUY and r.side != SIDE_SELL:
                t.oms_counts[OMS_BAD_REPORT] += 1
                return
            i = _find_instrument(t, r.security_id)
            if i < 0:
                t.oms_counts[OMS_UNKNOWN_INSTRUMENT] += 1
                return
            t.oms_counts[OMS_UNKNOWN_FILL] += 1
            _apply_fill(t.instruments[i], r.side, r.qty, r.price, r.aggressor)
        elif kind == ER_STATUS and not known and (
                r.ord_status == OS_WORKING or r.ord_status == OS_PARTIALLY_FILLED) and (
                r.side == SIDE_BUY or r.side == SIDE_SELL) and r.leaves_qty > 0:
            if not _adopt_order(t, r):
                t.oms_counts[OMS_UNKNOWN_ORDER] += 1
        elif known:
            t.oms_counts[OMS_LATE_REPORT] += 1
        else:
            t.oms_counts[OMS_UNKNOWN_ORDER] += 1
        return

    st = o.status
    if kind == ER_NEW:
        if o.acked != 0:
            t.oms_counts[OMS_BAD_TRANSITION] += 1
        o.acked = 1
        o.order_id = r.order_id
        o.ack_ns = r.recv_ns
        if st == OS_PENDING_NEW:
            o.status = OS_WORKING
    elif kind == ER_REJECT:
        if o.acked != 0:
            t.oms_counts[OMS_BAD_TRANSITION] += 1
            return
        _release_order(t, slot, OS_REJECTED)
        return
    elif kind == ER_FILL:
        if o.acked == 0:
            o.acked = 1
            o.order_id = r.order_id
        o.cum += r.qty
        qty_cap = max(o.qty, o.pending_qty)
        if o.cum > qty_cap:
            t.oms_counts[OMS_OVERFILL] += 1
        leaves = r.leaves_qty
        if leaves < 0:  # venue gave none: ours
            leaves = max(o.qty - o.cum, 0)
        o.leaves = leaves
        _apply_fill(t.instruments[o.instrument], o.side, r.qty, r.price, r.aggressor)
        if st == OS_PENDING_CANCEL:
            t.oms_counts[OMS_FILL_AFTER_CANCEL] += 1
        if leaves == 0:  # gone at the venue: a modify in flight will be rejected
            _release_order(t, slot, OS_FILLED)
            return
        if st in (OS_PENDING_NEW, OS_WORKING, OS_PARTIALLY_FILLED):
            o.status = OS_PARTIALLY_FILLED
    elif kind == ER_CANCEL:
        _release_order(t, slot, OS_CANCELLED)
        return
    elif kind == ER_CANCEL_REJECT:
        if st != OS_PENDING_CANCEL:
            t.oms_counts[OMS_BAD_TRANSITION] += 1
            return
        o.status = _resting_status(o)
    elif kind == ER_MODIFY:
        if o.pending_qty == 0:
            t.oms_counts[OMS_BAD_TRANSITION] += 1
        o.pending_qty = 0
        o.pending_price = 0
        o.price = r.price
        o.qty = r.qty
        o.leaves = r.leaves_qty if r.leaves_qty >= 0 else max(r.qty - o.cum, 0)
        if o.leaves == 0:  # modified down to what was already filled: done
            _release_order(t, slot, OS_FILLED if o.cum > 0 else OS_CANCELLED)
            return
        if st == OS_PENDING_MODIFY:
            o.status = _resting_status(o)
    elif kind == ER_MODIFY_REJECT:
        if o.pending_qty == 0:
            t.oms_counts[OMS_BAD_TRANSITION] += 1
        o.pending_qty = 0
        o.pending_price = 0
        if st == OS_PENDING_MODIFY:
            o.status = _resting_status(o)
    elif kind == ER_ELIMINATION:
        _release_order(t, slot, OS_EXPIRED)
        return
    elif kind == ER_STATUS:
        vs = r.ord_status
        if vs in (OS_FILLED, OS_CANCELLED, OS_REJECTED, OS_EXPIRED):
            _release_order(t, slot, vs)
            return
        if r.order_id != 0:
            o.order_id = r.order_id
            o.acked = 1
        o.price = r.price
        o.qty = r.qty
        o.leaves = r.leaves_qty
        o.cum = r.cum_qty
        if vs in (OS_WORKING, OS_PARTIALLY_FILLED) and st not in (OS_PENDING_CANCEL,
                                                                  OS_PENDING_MODIFY):
            o.status = vs
    _set_exposure(t, slot)


@njit(cache=True)
def _apply_reports(t: Any, reports: Any, n: int) -> None:
    if n > reports.shape[0]:
        t.oms_counts[OMS_REPORTS_TRUNCATED] += 1
        n = reports.shape[0]
    for i in range(n):
        _apply_exec_report(t, reports[i])


@njit(cache=True)
def _register_new(trader: Any, inst_idx: int, side: int, price: int, qty: int, tif: int,
                  layer: int, now_ns: int, trigger_seq: int) -> int:
    return _alloc_order(trader[0], inst_idx, side, price, qty, tif, layer, now_ns, trigger_seq)


@njit(cache=True)
def _cancel_sent_entry(trader: Any, slot: int) -> None:
    _cancel_sent(trader[0], slot)


@njit(cache=True)
def _modify_sent_entry(trader: Any, slot: int, price: int, qty: int) -> None:
    _modify_sent(trader[0], slot, price, qty)


@njit(cache=True)
def _apply_reports_entry(trader: Any, reports: Any, n: int) -> None:
    _apply_reports(trader[0], reports, n)


@njit(cache=True)
def _mark_entry(trader: Any, i: int, mark_ticks: float) -> None:
    _mark_instrument(trader[0].instruments[i], mark_ticks)


@njit(cache=True)
def _fill_entry(trader: Any, i: int, side: int, qty: int, price: int, aggressor: int) -> None:
    _apply_fill(trader[0].instruments[i], side, qty, price, aggressor)


# --------------------------------------------------------------------------
# facade
# --------------------------------------------------------------------------
def _check_trader(trader: np.ndarray) -> None:
    if not isinstance(trader, np.ndarray) or trader.dtype != TRADER or trader.shape != (1,):
        raise TypeError("trader must be a numpy array of shape (1,) and dtype TRADER")


def init_order_table(trader: np.ndarray, cl_ord_id_base: int = 1) -> None:
    """Empty order table; cl_ord_ids start at ``cl_ord_id_base`` (unique across restarts)."""
    _check_trader(trader)
    if cl_ord_id_base < 1 or cl_ord_id_base >= (1 << (64 - ORDER_SLOT_BITS)):
        raise ValueError("cl_ord_id_base out of range")
    t = trader[0]
    t["orders"][:] = np.zeros(MAX_ORDERS, dtype=t["orders"].dtype)
    t["free_slots"][:] = np.arange(MAX_ORDERS, dtype=np.int32)
    t["free_head"] = 0
    t["free_count"] = MAX_ORDERS
    t["live_orders"] = 0
    t["adopted_orders"] = 0
    t["next_cl_seq"] = cl_ord_id_base
    inst = t["instruments"]
    inst["buy_open"] = 0
    inst["sell_open"] = 0
    inst["live_orders"] = 0
    inst["quote_slot"] = -1


def register_order(trader: np.ndarray, instrument: int, side: int, price: int, qty: int,
                   tif: int = 0, now_ns: int = 0, trigger_seq: int = 0, layer: int = -1) -> int:
    """Book-keeping of an order about to be sent (PENDING_NEW); returns its row.

    No risk check here: the trading core checks before it calls the kernel. This
    facade serves tests and the restore of orders known to be working at the venue.
    """
    _check_trader(trader)
    if not 0 <= instrument < int(trader[0]["n_instruments"]):
        raise ValueError(f"no instrument {instrument}")
    if side not in (SIDE_BUY, SIDE_SELL) or qty <= 0:
        raise ValueError("side must be SIDE_BUY/SIDE_SELL and qty > 0")
    slot = int(_register_new(trader, instrument, side, price, qty, tif, layer, now_ns,
                             trigger_seq))
    if slot < 0:
        raise RuntimeError("order table full")
    return slot


def request_cancel(trader: np.ndarray, slot: int) -> None:
    """Book-keeping of a cancel about to be sent (PENDING_CANCEL)."""
    _check_trader(trader)
    st = int(trader[0]["orders"][slot]["status"])
    if not _is_live(st) or st == OS_PENDING_CANCEL:
        raise ValueError(f"order {slot} is {ORDER_STATUS_NAMES[st]}: no cancel")
    _cancel_sent_entry(trader, slot)


def request_modify(trader: np.ndarray, slot: int, price: int, qty: int) -> None:
    """Book-keeping of a modify (new total qty) about to be sent (PENDING_MODIFY)."""
    _check_trader(trader)
    o = trader[0]["orders"][slot]
    st = int(o["status"])
    if st not in (OS_WORKING, OS_PARTIALLY_FILLED) or qty <= int(o["cum"]):
        raise ValueError(f"order {slot} is {ORDER_STATUS_NAMES[st]} (cum {int(o['cum'])}): "
                         f"no modify to qty {qty}")
    _modify_sent_entry(trader, slot, price, qty)


def apply_exec_reports(trader: np.ndarray, reports: np.ndarray, n: int | None = None) -> None:
    """Apply ``reports[:n]`` (EXEC_REPORT rows) to the order table and positions."""
    _check_trader(trader)
    if reports.dtype != EXEC_REPORT:
        raise TypeError("reports must have dtype EXEC_REPORT")
    n = len(reports) if n is None else int(n)
    _apply_reports_entry(trader, reports, min(n, len(reports)))


def apply_fill(trader: np.ndarray, instrument: int, side: int, qty: int, price: int,
               aggressor: bool = False) -> None:
    """Apply one fill to an instrument's position and P&L (no order involved)."""
    _check_trader(trader)
    _fill_entry(trader, instrument, side, qty, price, int(aggressor))


def mark(trader: np.ndarray, instrument: int, mark_price: float) -> None:
    """Mark an instrument at a price (mantissa, may be fractional: a mid)."""
    _check_trader(trader)
    tick = int(trader[0]["instruments"][instrument]["tick"])
    _mark_entry(trader, instrument, float(mark_price) / tick)


def restore_position(trader: np.ndarray, instrument: int, position: int, avg_price: float,
                     realised: float = 0.0, fees: float = 0.0) -> None:
    """Set an instrument's position (avg entry price as a mantissa) and the day's realised
    P&L and fees (currency), e.g. from the journal at start-up."""
    _check_trader(trader)
    inst = trader[0]["instruments"][instrument]
    tick = int(inst["tick"])
    inst["position"] = position
    inst["open_cost"] = position * (avg_price / tick)
    inst["realised_ticks"] = realised / float(inst["tick_value"])
    inst["realised"] = realised
    inst["fees"] = fees
    _mark_entry(trader, instrument, float(inst["mark_ticks"]))


def orders_table(trader: np.ndarray, live_only: bool = True) -> list[dict[str, Any]]:
    """The order table as dicts (control plane / tests; allocates)."""
    _check_trader(trader)
    out = []
    for slot, o in enumerate(trader[0]["orders"]):
        st = int(o["status"])
        if st == OS_FREE or (live_only and not _is_live(st)):
            continue
        d = {name: o[name].item() for name in o.dtype.names}
        d["slot"] = slot
        d["status_name"] = ORDER_STATUS_NAMES[st]
        out.append(d)
    return out


def positions(trader: np.ndarray) -> list[dict[str, Any]]:
    """Per-instrument position, open exposure and P&L (control plane / tests; allocates)."""
    _check_trader(trader)
    t = trader[0]
    keys = ("security_id", "position", "buy_open", "sell_open", "live_orders", "realised",
            "unrealised", "fees", "net_pnl", "volume", "n_fills", "mark_ticks")
    rows = []
    for i in range(int(t["n_instruments"])):
        inst = t["instruments"][i]
        row = {k: inst[k].item() for k in keys}
        row["worst_case_long"] = row["position"] + row["buy_open"]
        row["worst_case_short"] = row["position"] - row["sell_open"]
        rows.append(row)
    return rows


def tick_value(min_price_increment: int, price_exponent: int, display_factor: int,
               contract_multiplier: int) -> float:
    """Currency value of one tick of one contract, from an instrument definition.

    ``display_factor`` and ``contract_multiplier`` are Decimal9 mantissas (as in
    the INSTRUMENT dtype): ES has tick 25 (Globex units, 25e9 in PRICE9),
    display factor 0.01 and 50 $/point: 25 * 0.01 * 50 = 12.5 $ per tick.
    """
    return (min_price_increment * 10.0 ** price_exponent) * (display_factor * 1e-9) * (
        contract_multiplier * 1e-9)


__all__ = [
    "MAX_REPORTS",
    "MAX_TRADED_INSTRUMENTS",
    "apply_exec_reports",
    "apply_fill",
    "init_order_table",
    "mark",
    "orders_table",
    "positions",
    "register_order",
    "request_cancel",
    "request_modify",
    "restore_position",
    "tick_value",
]
