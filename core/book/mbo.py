"""Market-by-order books: preallocated order pool, OrderID map, per-level FIFO queues.

Layout (all int64, preallocated, no allocation per event):

* ``orders[max_orders, N_ORDER_FIELDS]``: the order pool. Free slots form a list
  through ``O_NEXT``.
* ``levels[max_levels, N_MLEVEL_FIELDS]``: one row per (instrument, side, price)
  with resting orders: total quantity, order count, and the FIFO of its orders
  (``ML_HEAD``/``ML_TAIL``, doubly linked through ``O_PREV``/``O_NEXT``) sorted by
  MDOrderPriority (lower value = ahead in the queue, as CME defines it). The levels
  of one instrument are chained through ``ML_PREV``/``ML_NEXT`` from
  ``inst[row, IS_MBO_HEAD]`` so a snapshot or reset can empty that instrument alone.
* ``omap[cap, 2]`` (OrderID, slot) / ``lmap[cap]`` (slot): open-addressing (linear
  probing) tables keyed by OrderID and by (instrument, side, price). The OrderID sits
  beside its slot so a lookup touches one cache line of a table far larger than the
  caches; deletion shifts entries back, so there are no tombstones and probe
  lengths stay short.
* ``meta``: free-list heads and pool high-water marks.

CME order actions (OrderUpdateAction in 46's order group, MDUpdateAction in 47):
New (0) adds the order; Update (1) changes it; a new MDOrderPriority (price
change or size increase) moves it to its new place in the queue; Delete (2)
removes it. An Update for an unknown order (a capture joined mid-session) adds
it; a Delete for an unknown order is counted and ignored.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from core.book.mbp import NO_NRT
from core.types import IS_MBO_HEAD, IS_MBO_ORDERS, MD_CHANGE, MD_DELETE, MD_NEW, N_INST_FIELDS

# order pool fields
O_ID = 0  # OrderID (uint64 bits)
O_ROW = 1  # instrument row
O_SIDE = 2  # 0 bid, 1 ask
O_PX = 3
O_QTY = 4
O_PRIORITY = 5  # MDOrderPriority
O_LEVEL = 6  # level slot
O_PREV = 7
O_NEXT = 8
N_ORDER_FIELDS = 9

# level pool fields
ML_ROW = 0
ML_SIDE = 1
ML_PX = 2
ML_QTY = 3
ML_COUNT = 4
ML_HEAD = 5  # first order (best priority)
ML_TAIL = 6
ML_PREV = 7  # previous level of the same instrument
ML_NEXT = 8
N_MLEVEL_FIELDS = 9

# meta fields
MM_FREE_ORDER = 0
MM_FREE_LEVEL = 1
MM_ORDERS = 2  # orders in use
MM_LEVELS = 3
N_MBO_META = 4

# return codes of _mbo_apply
MBO_OK = 0
MBO_UNKNOWN_ORDER = 1
MBO_POOL_FULL = 2
MBO_BAD_ACTION = 3

_EMPTY = np.int64(-1)


def _pow2_at_least(n: int) -> int:
    c = 1
    while c < n:
        c <<= 1
    return c


def new_mbo_arrays(max_orders: int, max_levels: int | None = None) -> tuple[np.ndarray, ...]:
    """Allocate ``(orders, levels, omap, lmap, meta)`` with empty pools and maps."""
    if max_orders < 1:
        raise ValueError("max_orders must be >= 1")
    if max_levels is None:
        max_levels = max_orders
    orders = np.zeros((max_orders, N_ORDER_FIELDS), dtype=np.int64)
    levels = np.zeros((max_levels, N_MLEVEL_FIELDS), dtype=np.int64)
    omap = np.full((_pow2_at_least(2 * max_orders), 2), -1, dtype=np.int64)
    lmap = np.full(_pow2_at_least(2 * max_levels), -1, dtype=np.int64)
    meta = np.zeros(N_MBO_META, dtype=np.int64)
    init_mbo_arrays(orders, levels, omap, lmap, meta)
    return orders, levels, omap, lmap, meta


def init_mbo_arrays(orders: np.ndarray, levels: np.ndarray, omap: np.ndarray,
                    lmap: np.ndarray, meta: np.ndarray) -> None:
    """(Re)initialise pools as all free and maps as empty, in place."""
    if omap.shape[0] & (omap.shape[0] - 1) or lmap.size & (lmap.size - 1):
        raise ValueError("map sizes must be powers of two")
    orders[:] = 0
    levels[:] = 0
    orders[:, O_NEXT] = np.arange(1, orders.shape[0] + 1)
    orders[-1, O_NEXT] = -1
    levels[:, ML_NEXT] = np.arange(1, levels.shape[0] + 1)
    levels[-1, ML_NEXT] = -1
    omap[:] = -1
    lmap[:] = -1
    meta[MM_FREE_ORDER] = 0
    meta[MM_FREE_LEVEL] = 0
    meta[MM_ORDERS] = 0
    meta[MM_LEVELS] = 0


# --------------------------------------------------------------------------
# hashing
# --------------------------------------------------------------------------
@njit(cache=True, inline="always", **NO_NRT)
def _mix(x):
    # splitmix64 finaliser: order ids are sequential, so spread them
    z = np.uint64(x)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return np.int64(z & np.uint64(0x7FFFFFFFFFFFFFFF))


@njit(cache=True, inline="always", **NO_NRT)
def _order_home(order_id, mask):
    # CME OrderIDs mostly increase: keeping their low bits makes new orders land in
    # neighbouring slots (cache lines already warm) instead of random ones in a table
    # bigger than the caches; folding the high bits in spreads ids that differ there.
    return (order_id ^ (order_id >> 20)) & mask


@njit(cache=True, inline="always", **NO_NRT)
def _level_home(row, side, px, mask):
    return _mix(px ^ _mix(row * 2 + side)) & mask


@njit(cache=True, **NO_NRT)
def _order_find(orders, omap, order_id):
    """Pool slot of ``order_id`` or -1 (the key sits beside the slot: one cache line)."""
    mask = omap.shape[0] - 1
    i = _order_home(order_id, mask)
    while True:
        s = omap[i, 1]
        if s == _EMPTY:
            return _EMPTY
        if omap[i, 0] == order_id:
            return s
        i = (i + 1) & mask


@njit(cache=True, **NO_NRT)
def _level_find(levels, lmap, row, side, px):
    mask = lmap.size - 1
    i = _level_home(row, side, px, mask)
    while True:
        s = lmap[i]
        if s == _EMPTY:
            return _EMPTY
        if levels[s, ML_PX] == px and levels[s, ML_ROW] == row and levels[s, ML_SIDE] == side:
            return s
        i = (i + 1) & mask


@njit(cache=True, inline="always", **NO_NRT)
def _cyclic_between(lo, k, hi):
    # k in the cyclic interval (lo, hi]
    if lo <= hi:
        return lo < k <= hi
    return k > lo or k <= hi


@njit(cache=True, **NO_NRT)
def _omap_remove(orders, omap, order_id):
    mask = omap.shape[0] - 1
    i = _order_home(order_id, mask)
    while omap[i, 1] != _EMPTY and omap[i, 0] != order_id:
        i = (i + 1) & mask
    if omap[i, 1] == _EMPTY:
        return
    # backward-shift deletion keeps every probe chain unbroken
    j = i
    while True:
        omap[i, 1] = _EMPTY
        while True:
            j = (j + 1) & mask
            if omap[j, 1] == _EMPTY:
                return
            k = _order_home(omap[j, 0], mask)
            if not _cyclic_between(i, k, j):
                break
        omap[i, 0] = omap[j, 0]
        omap[i, 1] = omap[j, 1]
        i = j


@njit(cache=True, **NO_NRT)
def _lmap_remove(levels, lmap, slot):
    mask = lmap.size - 1
    i = _level_home(levels[slot, ML_ROW], levels[slot, ML_SIDE], levels[slot, ML_PX], mask)
    while lmap[i] != _EMPTY and lmap[i] != slot:
        i = (i + 1) & mask
    if lmap[i] == _EMPTY:
        return
    j = i
    while True:
        lmap[i] = _EMPTY
        while True:
            j = (j + 1) & mask
            s = lmap[j]
            if s == _EMPTY:
                return
            k = _level_home(levels[s, ML_ROW], levels[s, ML_SIDE], levels[s, ML_PX], mask)
            if not _cyclic_between(i, k, j):
                break
        lmap[i] = lmap[j]
        i = j


@njit(cache=True, **NO_NRT)
def _omap_put(omap, order_id, slot):
    mask = omap.shape[0] - 1
    i = _order_home(order_id, mask)
    while omap[i, 1] != _EMPTY:
        i = (i + 1) & mask
    omap[i, 0] = order_id
    omap[i, 1] = slot


@njit(cache=True, **NO_NRT)
def _map_put(table, home, slot):
    mask = table.size - 1
    i = home
    while table[i] != _EMPTY:
        i = (i + 1) & mask
    table[i] = slot


# --------------------------------------------------------------------------
# levels and FIFO queues
# --------------------------------------------------------------------------
@njit(cache=True, **NO_NRT)
def _level_get(levels, lmap, meta, inst, row, side, px):
    """Level slot for (row, side, px), created if absent; -1 if the pool is full."""
    s = _level_find(levels, lmap, row, side, px)
    if s != _EMPTY:
        return s
    s = meta[MM_FREE_LEVEL]
    if s == _EMPTY:
        return _EMPTY
    meta[MM_FREE_LEVEL] = levels[s, ML_NEXT]
    meta[MM_LEVELS] += 1
    levels[s, ML_ROW] = row
    levels[s, ML_SIDE] = side
    levels[s, ML_PX] = px
    levels[s, ML_QTY] = 0
    levels[s, ML_COUNT] = 0
    levels[s, ML_HEAD] = _EMPTY
    levels[s, ML_TAIL] = _EMPTY
    head = inst[row, IS_MBO_HEAD]
    levels[s, ML_PREV] = _EMPTY
    levels[s, ML_NEXT] = head
    if head != _EMPTY:
        levels[head, ML_PREV] = s
    inst[row, IS_MBO_HEAD] = s
    _map_put(lmap, _level_home(row, side, px, lmap.size - 1), s)
    return s


@njit(cache=True, **NO_NRT)
def _level_release(levels, lmap, meta, inst, s):
    _lmap_remove(levels, lmap, s)
    p = levels[s, ML_PREV]
    n = levels[s, ML_NEXT]
    if p != _EMPTY:
        levels[p, ML_NEXT] = n
    else:
        inst[levels[s, ML_ROW], IS_MBO_HEAD] = n
    if n != _EMPTY:
        levels[n, ML_PREV] = p
    levels[s, ML_NEXT] = meta[MM_FREE_LEVEL]
    meta[MM_FREE_LEVEL] = s
    meta[MM_LEVELS] -= 1


@njit(cache=True, **NO_NRT)
def _queue_link(orders, levels, lv, o):
    """Insert order ``o`` into level ``lv``'s FIFO by MDOrderPriority."""
    pr = orders[o, O_PRIORITY]
    cur = levels[lv, ML_TAIL]
    # new orders usually have the highest priority value: walk from the tail
    while cur != _EMPTY and orders[cur, O_PRIORITY] > pr:
        cur = orders[cur, O_PREV]
    if cur == _EMPTY:
        nxt = levels[lv, ML_HEAD]
        levels[lv, ML_HEAD] = o
    else:
        nxt = orders[cur, O_NEXT]
        orders[cur, O_NEXT] = o
    orders[o, O_PREV] = cur
    orders[o, O_NEXT] = nxt
    if nxt == _EMPTY:
        levels[lv, ML_TAIL] = o
    else:
        orders[nxt, O_PREV] = o
    orders[o, O_LEVEL] = lv
    levels[lv, ML_QTY] += orders[o, O_QTY]
    levels[lv, ML_COUNT] += 1


@njit(cache=True, **NO_NRT)
def _queue_unlink(orders, levels, o):
    lv = orders[o, O_LEVEL]
    p = orders[o, O_PREV]
    n = orders[o, O_NEXT]
    if p == _EMPTY:
        levels[lv, ML_HEAD] = n
    else:
        orders[p, O_NEXT] = n
    if n == _EMPTY:
        levels[lv, ML_TAIL] = p
    else:
        orders[n, O_PREV] = p
    levels[lv, ML_QTY] -= orders[o, O_QTY]
    levels[lv, ML_COUNT] -= 1
    return lv


# --------------------------------------------------------------------------
# order actions
# --------------------------------------------------------------------------
@njit(cache=True, **NO_NRT)
def _order_remove(orders, levels, omap, lmap, meta, inst, o):
    lv = _queue_unlink(orders, levels, o)
    if levels[lv, ML_COUNT] == 0:
        _level_release(levels, lmap, meta, inst, lv)
    _omap_remove(orders, omap, orders[o, O_ID])
    inst[orders[o, O_ROW], IS_MBO_ORDERS] -= 1
    orders[o, O_NEXT] = meta[MM_FREE_ORDER]
    meta[MM_FREE_ORDER] = o
    meta[MM_ORDERS] -= 1


@njit(cache=True, **NO_NRT)
def _order_place(orders, levels, lmap, meta, inst, o, row, side, px, qty, priority):
    """Put pool slot ``o`` (already in omap) at its level; False if no level is free."""
    lv = _level_get(levels, lmap, meta, inst, row, side, px)
    if lv == _EMPTY:
        return False
    orders[o, O_ROW] = row
    orders[o, O_SIDE] = side
    orders[o, O_PX] = px
    orders[o, O_QTY] = qty
    orders[o, O_PRIORITY] = priority
    _queue_link(orders, levels, lv, o)
    return True


@njit(cache=True, **NO_NRT)
def _order_add(orders, levels, omap, lmap, meta, inst, row, order_id, side, px, qty, priority):
    o = meta[MM_FREE_ORDER]
    if o == _EMPTY:
        return MBO_POOL_FULL
    meta[MM_FREE_ORDER] = orders[o, O_NEXT]
    meta[MM_ORDERS] += 1
    orders[o, O_ID] = order_id
    if not _order_place(orders, levels, lmap, meta, inst, o, row, side, px, qty, priority):
        orders[o, O_NEXT] = meta[MM_FREE_ORDER]
        meta[MM_FREE_ORDER] = o
        meta[MM_ORDERS] -= 1
        return MBO_POOL_FULL
    _omap_put(omap, order_id, o)
    inst[row, IS_MBO_ORDERS] += 1
    return MBO_OK


@njit(cache=True, **NO_NRT)
def _mbo_apply(orders, levels, omap, lmap, meta, inst, row, order_id, side, px, qty,
               priority, action):
    """Apply one order action. ``side`` 0 bid / 1 ask. Returns an MBO_* code."""
    o = _order_find(orders, omap, order_id)
    if action == MD_DELETE:
        if o == _EMPTY:
            return MBO_UNKNOWN_ORDER
        _order_remove(orders, levels, omap, lmap, meta, inst, o)
        return MBO_OK
    if action != MD_NEW and action != MD_CHANGE:
        return MBO_BAD_ACTION
    if o == _EMPTY:
        rc = _order_add(orders, levels, omap, lmap, meta, inst, row, order_id, side, px, qty,
                        priority)
        if rc == MBO_OK and action == MD_CHANGE:
            return MBO_UNKNOWN_ORDER  # added, but counted: we missed its New
        return rc
    if (orders[o, O_PX] == px and orders[o, O_SIDE] == side and orders[o, O_ROW] == row
            and orders[o, O_PRIORITY] == priority):
        # same place in the queue (a size decrease keeps priority)
        lv = orders[o, O_LEVEL]
        levels[lv, ML_QTY] += qty - orders[o, O_QTY]
        orders[o, O_QTY] = qty
        return MBO_OK
    # moved: leave the old level, join the new one at its priority
    lv = _queue_unlink(orders, levels, o)
    old_row = orders[o, O_ROW]
    if levels[lv, ML_COUNT] == 0:
        _level_release(levels, lmap, meta, inst, lv)
    if old_row != row:
        inst[old_row, IS_MBO_ORDERS] -= 1
        inst[row, IS_MBO_ORDERS] += 1
    if not _order_place(orders, levels, lmap, meta, inst, o, row, side, px, qty, priority):
        inst[row, IS_MBO_ORDERS] -= 1
        _omap_remove(orders, omap, order_id)
        orders[o, O_NEXT] = meta[MM_FREE_ORDER]
        meta[MM_FREE_ORDER] = o
        meta[MM_ORDERS] -= 1
        return MBO_POOL_FULL
    return MBO_OK


@njit(cache=True, **NO_NRT)
def _mbo_clear_instrument(orders, levels, omap, lmap, meta, inst, row):
    """Remove every order of one instrument (snapshot 53, book reset, channel reset)."""
    lv = inst[row, IS_MBO_HEAD]
    while lv != _EMPTY:
        nxt_lv = levels[lv, ML_NEXT]
        o = levels[lv, ML_HEAD]
        while o != _EMPTY:
            nxt = orders[o, O_NEXT]
            _omap_remove(orders, omap, orders[o, O_ID])
            orders[o, O_NEXT] = meta[MM_FREE_ORDER]
            meta[MM_FREE_ORDER] = o
            meta[MM_ORDERS] -= 1
            o = nxt
        _lmap_remove(levels, lmap, lv)
        levels[lv, ML_NEXT] = meta[MM_FREE_LEVEL]
        meta[MM_FREE_LEVEL] = lv
        meta[MM_LEVELS] -= 1
        lv = nxt_lv
    inst[row, IS_MBO_HEAD] = _EMPTY
    inst[row, IS_MBO_ORDERS] = 0


@njit(cache=True, **NO_NRT)
def _queue_ahead(orders, levels, omap, order_id):
    """(quantity, orders) ahead of ``order_id`` at its price; (-1, -1) if unknown."""
    o = _order_find(orders, omap, order_id)
    if o == _EMPTY:
        return np.int64(-1), np.int64(-1)
    lv = orders[o, O_LEVEL]
    cur = levels[lv, ML_HEAD]
    qty = np.int64(0)
    cnt = np.int64(0)
    while cur != o:
        qty += orders[cur, O_QTY]
        cnt += 1
        cur = orders[cur, O_NEXT]
    return qty, cnt


def _as_id(order_id: int) -> np.int64:
    # OrderID is uint64 on the wire; the pool stores its bits as int64
    return np.uint64(order_id).astype(np.int64)


def mbo_levels(orders: np.ndarray, levels: np.ndarray, inst: np.ndarray, row: int,
               side: int) -> list[tuple[int, int, int, list[tuple[int, int, int]]]]:
    """One side of an instrument's MBO book, best price first (not hot).

    Each level is ``(price, total_qty, count, [(order_id, qty, priority), ...])`` with
    orders in queue order.
    """
    out = []
    lv = int(inst[row, IS_MBO_HEAD])
    while lv != -1:
        if levels[lv, ML_SIDE] == side:
            q = []
            o = int(levels[lv, ML_HEAD])
            while o != -1:
                q.append((int(np.int64(orders[o, O_ID]).astype(np.uint64)),
                          int(orders[o, O_QTY]), int(orders[o, O_PRIORITY])))
                o = int(orders[o, O_NEXT])
            out.append((int(levels[lv, ML_PX]), int(levels[lv, ML_QTY]),
                        int(levels[lv, ML_COUNT]), q))
        lv = int(levels[lv, ML_NEXT])
    out.sort(key=lambda x: -x[0] if side == 0 else x[0])
    return out


class MboBook:
    """A standalone MBO book for ``n_instr`` instrument rows (tests, tools).

    ``MarketState`` runs the same kernels on views of its arena.
    """

    def __init__(self, n_instr: int, max_orders: int = 1 << 16) -> None:
        self.inst = np.zeros((n_instr, N_INST_FIELDS), dtype=np.int64)
        self.inst[:, IS_MBO_HEAD] = -1
        self.orders, self.levels, self.omap, self.lmap, self.meta = new_mbo_arrays(max_orders)

    def apply(self, row: int, order_id: int, side: int, px: int, qty: int, priority: int,
              action: int) -> int:
        return int(_mbo_apply(self.orders, self.levels, self.omap, self.lmap, self.meta,
                              self.inst, row, _as_id(order_id), side, px, qty, priority,
                              action))

    def clear(self, row: int) -> None:
        _mbo_clear_instrument(self.orders, self.levels, self.omap, self.lmap, self.meta,
                              self.inst, row)

    def queue_ahead(self, order_id: int) -> tuple[int, int]:
        q, n = _queue_ahead(self.orders, self.levels, self.omap, _as_id(order_id))
        return int(q), int(n)

    def side(self, row: int, side: int) -> list[tuple[int, int, int, list[tuple[int, int, int]]]]:
        return mbo_levels(self.orders, self.levels, self.inst, row, side)

    @property
    def n_orders(self) -> int:
        return int(self.meta[MM_ORDERS])
