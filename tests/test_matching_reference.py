"""A naive, obviously-correct matching engine to check core/matching.py against.

Plain Python: dicts of price -> list of orders, the book sorted on every look,
levels counted by sorting. It implements the same documented rules and record
layout as the numba engine (see core/matching.py) and nothing of its data
structures. The tests at the bottom check the reference itself on hand-worked
cases, so that a bug shared by both cannot hide behind agreement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from core.types import (
    MATCH_CMD,
    MATCH_MAX_QTY,
    MCF_IFM,
    MCMD_CANCEL,
    MCMD_EXPIRE_DAY,
    MCMD_MASS_CANCEL,
    MCMD_MODIFY,
    MCMD_SUBMIT,
    MD_CHANGE,
    MD_DELETE,
    MD_NEW,
    MD_NO_ORDER_ACTION,
    MMD_BOOK,
    MMD_REVEAL,
    MMD_TRADE,
    MR_BAD_INSTRUMENT,
    MR_BAD_OP,
    MR_BAD_ORDER_ID,
    MR_BAD_QTY,
    MR_BAD_SIDE,
    MR_BAD_TIF,
    MR_BOOK_FULL,
    MR_DUPLICATE_ORDER_ID,
    MR_FOK_UNFILLABLE,
    MR_IOC_REMAINDER,
    MR_MASS_CANCEL,
    MR_MODIFY_OVERFILL,
    MR_NONE,
    MR_OFF_TICK,
    MR_OUTPUT_FULL,
    MR_OUTSIDE_BAND,
    MR_SESSION_END,
    MR_SMP_NEWEST,
    MR_SMP_OLDEST,
    MR_UNKNOWN_ORDER,
    MR_USER,
    MTIF_DAY,
    MTIF_FOK,
    MTIF_GTC,
    MTIF_IOC,
    MX_ACCEPTED,
    MX_CANCELLED,
    MX_EXPIRED,
    MX_FILL,
    MX_MODIFIED,
    MX_REJECTED,
    SIDE_BUY,
    SIDE_SELL,
    SMP_CANCEL_NEWEST,
)

CMD_FIELDS = MATCH_CMD.names or ()


@dataclass
class RefOrder:
    order_id: int
    cl_ord_id: int
    price: int
    order_qty: int
    leaves: int
    cum: int
    priority: int
    smp_id: int
    instrument: int
    owner: int
    side: int
    tif: int
    smp_instr: int


class RefEngine:
    def __init__(self, n_instruments: int, max_orders: int, tick: list[int], band_low: list[int],
                 band_high: list[int], mbp_depth: list[int], exec_capacity: int,
                 md_capacity: int) -> None:
        self.n = n_instruments
        self.max_orders = max_orders
        self.tick, self.low, self.high, self.depth = tick, band_low, band_high, mbp_depth
        self.exec_cap, self.md_cap = exec_capacity, md_capacity
        # (instrument, side) -> {price: [orders, time priority order]}
        self.books: dict[tuple[int, int], dict[int, list[RefOrder]]] = {
            (k, s): {} for k in range(n_instruments) for s in (SIDE_BUY, SIDE_SELL)}
        self.by_id: dict[int, RefOrder] = {}
        self.priority = 0
        self.trade_id = 0
        self.execs: list[dict[str, int]] = []
        self.mds: list[dict[str, int]] = []
        self.rejects: dict[int, int] = {}
        self.i = 0  # index of the command being run
        self.t = 0

    # ---- helpers ----------------------------------------------------------------
    def prices(self, inst: int, side: int) -> list[int]:
        """Prices of one side, best first."""
        return sorted(self.books[(inst, side)], reverse=(side == SIDE_BUY))

    def level_of(self, inst: int, side: int, price: int) -> int:
        return self.prices(inst, side).index(price) + 1

    @staticmethod
    def crosses(side: int, limit: int, price: int) -> bool:
        return price <= limit if side == SIDE_BUY else price >= limit

    @staticmethod
    def self_match(a: RefOrder | dict[str, int], m: RefOrder) -> bool:
        smp = a["smp_id"] if isinstance(a, dict) else a.smp_id
        owner = a["owner"] if isinstance(a, dict) else a.owner
        return smp != 0 and m.smp_id == smp and m.owner == owner

    def exec_(self, o: RefOrder, exec_type: int, reason: int, op: int, last_px: int = 0,
              last_qty: int = 0, contra: RefOrder | None = None, trade_id: int = 0,
              aggressor: int = 0) -> None:
        self.execs.append(dict(
            transact_time=self.t, order_id=o.order_id, cl_ord_id=o.cl_ord_id,
            contra_order_id=contra.order_id if contra else 0, trade_id=trade_id,
            priority=o.priority, price=o.price, last_px=last_px, last_qty=last_qty,
            order_qty=o.order_qty, leaves_qty=o.leaves, cum_qty=o.cum, instrument=o.instrument,
            owner=o.owner, contra_owner=contra.owner if contra else 0, cmd_index=self.i,
            exec_type=exec_type, reason=reason, op=op, side=o.side, tif=o.tif,
            aggressor=aggressor))

    def reject(self, c: dict[str, int], reason: int) -> None:
        self.rejects[reason] = self.rejects.get(reason, 0) + 1
        self.execs.append(dict(
            transact_time=c["transact_time"], order_id=c["order_id"], cl_ord_id=c["cl_ord_id"],
            contra_order_id=0, trade_id=0, priority=0, price=c["price"], last_px=0, last_qty=0,
            order_qty=c["qty"], leaves_qty=0, cum_qty=0, instrument=c["instrument"],
            owner=c["owner"], contra_owner=0, cmd_index=self.i, exec_type=MX_REJECTED,
            reason=reason, op=c["op"], side=c["side"], tif=c["tif"], aggressor=0))

    def md(self, **kw: int) -> None:
        row = dict(transact_time=self.t, price=0, size=0, order_id=0, taker_order_id=0,
                   order_priority=0, display_qty=0, trade_id=0, instrument=0, num_orders=0,
                   price_level=0, cmd_index=self.i, kind=0, side=0, action=0, order_action=0)
        row.update(kw)
        self.mds.append(row)

    def book_row(self, o: RefOrder, action: int, order_action: int, number: int,
                 display: int) -> None:
        queue = self.books[(o.instrument, o.side)].get(o.price, [])
        self.md(kind=MMD_BOOK, instrument=o.instrument, side=o.side, price=o.price,
                size=sum(x.leaves for x in queue), num_orders=len(queue), price_level=number,
                action=action, order_action=order_action, order_id=o.order_id,
                order_priority=o.priority, display_qty=display)

    def add(self, o: RefOrder) -> None:
        book = self.books[(o.instrument, o.side)]
        new_level = o.price not in book
        book.setdefault(o.price, []).append(o)
        self.by_id[o.order_id] = o
        self.book_row(o, MD_NEW if new_level else MD_CHANGE, MD_NEW,
                      self.level_of(o.instrument, o.side, o.price), o.leaves)

    def remove(self, o: RefOrder) -> None:
        """Out of the book (before its leaves are zeroed), with MBP/MBO rows."""
        book = self.books[(o.instrument, o.side)]
        number = self.level_of(o.instrument, o.side, o.price)
        book[o.price].remove(o)
        del self.by_id[o.order_id]
        if book[o.price]:
            self.book_row(o, MD_CHANGE, MD_DELETE, number, 0)
            return
        del book[o.price]
        self.md(kind=MMD_BOOK, instrument=o.instrument, side=o.side, price=o.price, size=0,
                num_orders=0, price_level=number, action=MD_DELETE, order_action=MD_DELETE,
                order_id=o.order_id, order_priority=o.priority, display_qty=0)
        depth = self.depth[o.instrument]
        prices = self.prices(o.instrument, o.side)
        if depth > 0 and number <= depth and len(prices) >= depth:
            p = prices[depth - 1]
            q = book[p]
            self.md(kind=MMD_REVEAL, instrument=o.instrument, side=o.side, price=p,
                    size=sum(x.leaves for x in q), num_orders=len(q), price_level=depth,
                    action=MD_NEW, order_action=MD_NO_ORDER_ACTION)

    def scan(self, inst: int, side: int, limit: int, qty: int, who: Any,
             newest: bool) -> tuple[int, int]:
        """(resting orders met, qty that would fill) for an incoming order."""
        opp = SIDE_SELL if side == SIDE_BUY else SIDE_BUY
        met, rem = 0, qty
        for p in self.prices(inst, opp):
            if rem == 0 or not self.crosses(side, limit, p):
                break
            for m in self.books[(inst, opp)][p]:
                if rem == 0:
                    break
                met += 1
                if self.self_match(who, m):
                    if newest:
                        return met, qty - rem
                else:
                    rem -= min(rem, m.leaves)
        return met, qty - rem

    def match(self, o: RefOrder, op: int) -> bool:
        """False if SMP cancelled the incoming order."""
        opp = SIDE_SELL if o.side == SIDE_BUY else SIDE_BUY
        book = self.books[(o.instrument, opp)]
        while o.leaves > 0:
            prices = self.prices(o.instrument, opp)
            if not prices or not self.crosses(o.side, o.price, prices[0]):
                break
            m = book[prices[0]][0]
            if self.self_match(o, m):
                if o.smp_instr == SMP_CANCEL_NEWEST:
                    o.leaves = 0
                    self.exec_(o, MX_CANCELLED, MR_SMP_NEWEST, op)
                    return False
                self.remove(m)
                m.leaves = 0
                self.exec_(m, MX_CANCELLED, MR_SMP_OLDEST, op)
                continue
            q = min(o.leaves, m.leaves)
            self.trade_id += 1
            o.leaves -= q
            o.cum += q
            self.exec_(o, MX_FILL, MR_NONE, op, m.price, q, m, self.trade_id, 1)
            self.md(kind=MMD_TRADE, instrument=o.instrument, side=o.side, price=m.price,
                    size=q, action=MD_NEW, order_action=MD_NO_ORDER_ACTION,
                    order_id=m.order_id, taker_order_id=o.order_id, order_priority=m.priority,
                    trade_id=self.trade_id)
            if q == m.leaves:
                self.remove(m)
                m.leaves = 0
                m.cum += q
                self.exec_(m, MX_FILL, MR_NONE, op, m.price, q, o, self.trade_id, 0)
            else:
                m.leaves -= q
                m.cum += q
                self.exec_(m, MX_FILL, MR_NONE, op, m.price, q, o, self.trade_id, 0)
                self.book_row(m, MD_CHANGE, MD_CHANGE, 1, m.leaves)
        return True

    def fits(self, need_exec: int, need_md: int) -> bool:
        return need_exec <= self.exec_cap and need_md <= self.md_cap

    # ---- commands ---------------------------------------------------------------
    def run(self, cmds: np.ndarray) -> None:
        for i, row in enumerate(cmds):
            c = {k: int(row[k]) for k in CMD_FIELDS}
            self.i, self.t = i, c["transact_time"]
            op = c["op"]
            if op == MCMD_SUBMIT:
                self.submit(c)
            elif op == MCMD_CANCEL:
                self.cancel(c)
            elif op == MCMD_MODIFY:
                self.modify(c)
            elif op in (MCMD_MASS_CANCEL, MCMD_EXPIRE_DAY):
                self.mass(c)
            else:
                self.reject(c, MR_BAD_OP)

    def submit(self, c: dict[str, int]) -> None:
        inst, side, tif, qty, price = c["instrument"], c["side"], c["tif"], c["qty"], c["price"]
        if not 0 <= inst < self.n:
            return self.reject(c, MR_BAD_INSTRUMENT)
        if side not in (SIDE_BUY, SIDE_SELL):
            return self.reject(c, MR_BAD_SIDE)
        if tif not in (MTIF_DAY, MTIF_GTC, MTIF_IOC, MTIF_FOK):
            return self.reject(c, MR_BAD_TIF)
        if c["order_id"] == 0:
            return self.reject(c, MR_BAD_ORDER_ID)
        if not 0 < qty <= MATCH_MAX_QTY:
            return self.reject(c, MR_BAD_QTY)
        if not self.low[inst] <= price <= self.high[inst]:
            return self.reject(c, MR_OUTSIDE_BAND)
        if price % self.tick[inst] != 0:
            return self.reject(c, MR_OFF_TICK)
        if c["order_id"] in self.by_id:
            return self.reject(c, MR_DUPLICATE_ORDER_ID)
        rests = tif in (MTIF_DAY, MTIF_GTC)
        if rests and len(self.by_id) >= self.max_orders:
            return self.reject(c, MR_BOOK_FULL)
        met, fillable = self.scan(inst, side, price, qty, c,
                                  c["smp_instr"] == SMP_CANCEL_NEWEST)
        fok_dead = tif == MTIF_FOK and fillable < qty
        if not (self.fits(2, 0) if fok_dead else self.fits(2 + 2 * met, 3 + 3 * met)):
            return self.reject(c, MR_OUTPUT_FULL)
        self.priority += 1
        o = RefOrder(c["order_id"], c["cl_ord_id"], price, qty, qty, 0, self.priority,
                     c["smp_id"], inst, c["owner"], side, tif, c["smp_instr"])
        self.exec_(o, MX_ACCEPTED, MR_NONE, MCMD_SUBMIT)
        if fok_dead:
            o.leaves = 0
            return self.exec_(o, MX_EXPIRED, MR_FOK_UNFILLABLE, MCMD_SUBMIT)
        if not self.match(o, MCMD_SUBMIT) or o.leaves == 0:
            return None
        if rests:
            return self.add(o)
        o.leaves = 0
        return self.exec_(o, MX_EXPIRED, MR_IOC_REMAINDER, MCMD_SUBMIT)

    def own(self, c: dict[str, int]) -> RefOrder | None:
        o = self.by_id.get(c["order_id"]) if c["order_id"] != 0 else None
        return o if o is not None and o.owner == c["owner"] else None

    def cancel(self, c: dict[str, int]) -> None:
        o = self.own(c)
        if o is None:
            return self.reject(c, MR_UNKNOWN_ORDER)
        self.remove(o)
        o.leaves = 0
        o.cl_ord_id = c["cl_ord_id"]
        return self.exec_(o, MX_CANCELLED, MR_USER, MCMD_CANCEL)

    def modify(self, c: dict[str, int]) -> None:
        o = self.own(c)
        if o is None:
            return self.reject(c, MR_UNKNOWN_ORDER)
        qty, price, inst = c["qty"], c["price"], o.instrument
        if not 0 < qty <= MATCH_MAX_QTY:
            return self.reject(c, MR_BAD_QTY)
        if not self.low[inst] <= price <= self.high[inst]:
            return self.reject(c, MR_OUTSIDE_BAND)
        if price % self.tick[inst] != 0:
            return self.reject(c, MR_OFF_TICK)
        new_leaves = qty - o.cum if c["flags"] & MCF_IFM else qty
        if new_leaves <= 0:
            self.remove(o)
            o.leaves = 0
            o.cl_ord_id = c["cl_ord_id"]
            return self.exec_(o, MX_CANCELLED, MR_MODIFY_OVERFILL, MCMD_MODIFY)
        if price == o.price:
            o.cl_ord_id = c["cl_ord_id"]
            if new_leaves != o.leaves:
                queue = self.books[(inst, o.side)][price]
                if new_leaves > o.leaves:  # more qty: back of the queue
                    self.priority += 1
                    o.priority = self.priority
                    queue.remove(o)
                    queue.append(o)
                o.leaves = new_leaves
                o.order_qty = o.cum + new_leaves
                self.book_row(o, MD_CHANGE, MD_CHANGE, self.level_of(inst, o.side, price),
                              o.leaves)
            return self.exec_(o, MX_MODIFIED, MR_NONE, MCMD_MODIFY)
        met, _ = self.scan(inst, o.side, price, new_leaves, o, o.smp_instr == SMP_CANCEL_NEWEST)
        if not self.fits(2 + 2 * met, 4 + 3 * met):
            return self.reject(c, MR_OUTPUT_FULL)
        self.remove(o)
        o.price = price
        o.leaves = new_leaves
        o.order_qty = o.cum + new_leaves
        o.cl_ord_id = c["cl_ord_id"]
        self.priority += 1
        o.priority = self.priority
        self.exec_(o, MX_MODIFIED, MR_NONE, MCMD_MODIFY)
        if self.match(o, MCMD_MODIFY) and o.leaves > 0:
            self.add(o)
        return None

    def mass(self, c: dict[str, int]) -> None:
        inst, side = c["instrument"], c["side"]
        if not -1 <= inst < self.n:
            return self.reject(c, MR_BAD_INSTRUMENT)
        if side not in (0, SIDE_BUY, SIDE_SELL):
            return self.reject(c, MR_BAD_SIDE)
        expire = c["op"] == MCMD_EXPIRE_DAY
        for k in range(self.n) if inst < 0 else [inst]:
            for s in (SIDE_BUY, SIDE_SELL):
                if side not in (0, s):
                    continue
                for p in self.prices(k, s):
                    for o in list(self.books[(k, s)][p]):
                        if (o.tif == MTIF_DAY) if expire else (o.owner == c["owner"]):
                            self.remove(o)
                            o.leaves = 0
                            if expire:
                                self.exec_(o, MX_EXPIRED, MR_SESSION_END, c["op"])
                            else:
                                self.exec_(o, MX_CANCELLED, MR_MASS_CANCEL, c["op"])
        return None

    # ---- views ------------------------------------------------------------------
    def book(self, inst: int, side: int) -> list[tuple[int, list[tuple[int, int, int]]]]:
        return [(p, [(o.order_id, o.leaves, o.priority) for o in self.books[(inst, side)][p]])
                for p in self.prices(inst, side)]


def records(arr: np.ndarray) -> list[dict[str, int]]:
    """A MATCH_EXEC / MATCH_MD array as a list of dicts of Python ints."""
    names = arr.dtype.names or ()
    return [dict(zip(names, map(int, row), strict=True)) for row in arr.tolist()]


# --------------------------------------------------------------------------
# The reference checked on hand-worked cases
# --------------------------------------------------------------------------
def _cmds(*rows: dict[str, int]) -> np.ndarray:
    out = np.zeros(len(rows), dtype=MATCH_CMD)
    for i, r in enumerate(rows):
        for k, v in r.items():
            out[i][k] = v
        out[i]["transact_time"] = i
    return out


def _ref() -> RefEngine:
    return RefEngine(1, 10, [1], [0], [100], [2], 64, 64)


def test_reference_fifo_then_price() -> None:
    r = _ref()
    r.run(_cmds(
        dict(op=MCMD_SUBMIT, order_id=1, side=SIDE_SELL, price=50, qty=2),
        dict(op=MCMD_SUBMIT, order_id=2, side=SIDE_SELL, price=50, qty=2),
        dict(op=MCMD_SUBMIT, order_id=3, side=SIDE_SELL, price=49, qty=1),
        dict(op=MCMD_SUBMIT, order_id=4, side=SIDE_BUY, price=50, qty=4),
    ))
    fills = [(e["order_id"], e["last_px"], e["last_qty"]) for e in r.execs
             if e["exec_type"] == MX_FILL and e["aggressor"] == 0]
    assert fills == [(3, 49, 1), (1, 50, 2), (2, 50, 1)]
    assert r.book(0, SIDE_SELL) == [(50, [(2, 1, 2)])]
    assert r.book(0, SIDE_BUY) == []


def test_reference_reveal_after_delete_inside_depth() -> None:
    r = _ref()  # MBP depth 2
    r.run(_cmds(
        dict(op=MCMD_SUBMIT, order_id=1, side=SIDE_BUY, price=50, qty=1),
        dict(op=MCMD_SUBMIT, order_id=2, side=SIDE_BUY, price=49, qty=1),
        dict(op=MCMD_SUBMIT, order_id=3, side=SIDE_BUY, price=48, qty=5),
        dict(op=MCMD_CANCEL, order_id=1),
    ))
    last = r.mds[-2:]
    assert (last[0]["kind"], last[0]["price"], last[0]["price_level"], last[0]["action"]) == (
        MMD_BOOK, 50, 1, MD_DELETE)
    assert (last[1]["kind"], last[1]["price"], last[1]["price_level"], last[1]["size"]) == (
        MMD_REVEAL, 48, 2, 5)
