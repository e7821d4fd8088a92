"""Price-time priority matching engine: the order book behind every simulated venue.

One engine holds the limit order books of ``n_instruments`` instruments. Commands
(``MATCH_CMD`` rows: submit, cancel, modify, mass cancel, session-end expiry) go
in as an array; one njit call processes the whole array and appends records to
two preallocated output arrays:

* ``MATCH_EXEC``: what each order's owner is told (accepted, fill, cancelled,
  modified, rejected, expired), i.e. the content of iLink 3 execution reports.
* ``MATCH_MD``: what the market is told. One ``MMD_BOOK`` row per order change,
  carrying both views MDP 3.0 publishes: the MBP level (price, aggregate size,
  order count, 1-based level, New/Change/Delete) and the MBO order (order id,
  MDOrderPriority, display qty, New/Change/Delete). One ``MMD_TRADE`` row per
  match (maker and taker order ids, size, aggressor side, MDTradeEntryID).
  ``MMD_REVEAL`` rows follow a level delete inside the MBP depth: the level
  that moves up into the last visible position is sent as New, as CME does.
  A venue encodes templates 46/47/48 from these rows without looking at the book.

Rules (CME Globex, FIFO matching):

* Price-time priority. A trade prints at the resting order's price.
* Time in force: DAY and GTC rest; IOC (FAK) fills what it can and the rest
  expires; FOK fills completely or expires with no trade.
* Modify (cancel/replace): priority is lost when the price changes or the
  quantity rises, kept when the quantity falls (iLink OrderCancelReplaceRequest).
  The new quantity is the quantity to leave open in the market (CME's default);
  with ``MCF_IFM`` (in-flight mitigation, tag 9768=Y) it is the total order
  quantity, the open quantity being ``qty - cum_qty``; nothing left cancels the
  order.
* Self-match prevention (iLink tags 2362 SelfMatchPreventionID and 8000
  SelfMatchPreventionInstruction): an incoming order meeting a resting order of
  the same owner (executing firm) with the same non-zero SMP ID does not trade
  with it. The instruction on the incoming order decides: 'N' cancels the
  incoming order's remainder, 'O' or absent (CME's default) cancels the resting
  order and matching goes on. As in CME FIFO markets, only orders that would
  have executed are cancelled. A FOK counts only the quantity it could really
  trade: with 'N' a self order in its way makes it unfillable.
* Rejects carry a reason code (``MR_*``) and are counted; the kernel never
  raises. Capacity exhaustion is a reject (``MR_BOOK_FULL``,
  ``MR_OUTPUT_FULL``) or, when the output arrays merely need draining, an early
  return telling the caller where to resume.

Records of one command, in order (``cmd_index`` = its row in the array passed,
``transact_time`` = its ``transact_time``):

* submit: ACCEPTED (with its MDOrderPriority); then per resting order met,
  best price first and FIFO, either a taker FILL + maker FILL pair (MD: TRADE
  row, then the maker's BOOK row: Change, or Delete and maybe a REVEAL) or an
  SMP cancel; then the tail: the remainder rests (MD: BOOK New), or EXPIRED
  (IOC remainder, FOK unfillable, with no trade and no MD row) or CANCELLED
  (SMP 'N').
* modify: MODIFIED (same price: one BOOK Change row if the qty changed); a new
  price first takes the order out of its level (BOOK Delete), then it matches
  and rests like a submit.
* cancel: CANCELLED + BOOK Delete (+ REVEAL). Mass cancel / expiry: the same
  per order, instrument by instrument, bids then asks, best level first, FIFO.
* reject: one REJECTED record echoing the command's fields. Checks, in order:
  op, instrument, side, TIF, order id, qty, band, tick, duplicate id, free slot,
  output size (submit); order known and owned, qty, band, tick (modify).

Data structures (all preallocated, no allocation per command):

* A price ladder per instrument and side, indexed by ``(price - band_low) /
  tick``; each level is a FIFO doubly-linked list of order slots with its
  aggregate qty and order count. A bitmap of non-empty levels (64 per word)
  gives the next level after the best one empties (count-leading/trailing-zeros)
  and the 1-based MBP level of a price (popcount), so an order that does not
  match costs O(1) plus a popcount over the distance to the best.
* Order slots with a free list; order id -> slot through an open-addressing
  table: XOR-folded ids (a venue's sequential ids fill consecutive buckets),
  Robin Hood linear probing, backward-shift deletion (no tombstones).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import njit, typeof
from numba.core import types as nbtypes
from numba.cpython.unsafe.numbers import leading_zeros, trailing_zeros
from numba.extending import intrinsic

from core.types import (
    MATCH_CMD,
    MATCH_EXEC,
    MATCH_LEVEL,
    MATCH_MAX_QTY,
    MATCH_MD,
    MATCH_REASON_NAMES,
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
    N_MATCH_REASONS,
    SIDE_BUY,
    SIDE_SELL,
    SMP_CANCEL_NEWEST,
)

__all__ = [
    "MAX_LADDER_LEVELS",
    "MIN_OUTPUT_CAPACITY",
    "MatchingEngine",
    "make_commands",
    "warm_up",
]

# --------------------------------------------------------------------------
# Internal state layouts (private to this module)
# --------------------------------------------------------------------------
ORDER_SLOT = np.dtype(
    [
        ("order_id", np.int64),  # uint64 bits; 0 = free slot
        ("cl_ord_id", np.int64),
        ("price", np.int64),
        ("order_qty", np.int64),
        ("leaves", np.int64),
        ("cum", np.int64),
        ("priority", np.int64),
        ("smp_id", np.int64),
        ("next", np.int32),  # FIFO links inside the level; free-list link when free
        ("prev", np.int32),
        ("level", np.int32),  # ladder index of the price
        ("row", np.int32),  # book side row = instrument * 2 + side - 1
        ("instrument", np.int32),
        ("owner", np.uint32),
        ("side", np.uint8),
        ("tif", np.uint8),
        ("smp_instr", np.uint8),
    ],
    align=True,
)

LEVEL = np.dtype(
    [("qty", np.int64), ("head", np.int32), ("tail", np.int32), ("num_orders", np.int32)],
    align=True,
)

# One row per instrument and side (row = instrument * 2 + side - 1). The
# instrument's config is repeated on both rows so a kernel needs one row only.
BOOK_SIDE = np.dtype(
    [
        ("tick", np.int64),
        ("band_low", np.int64),  # price of ladder index 0
        ("band_high", np.int64),
        ("level_base", np.int64),  # offset of ladder index 0 in the level array
        ("word_base", np.int64),  # offset of word 0 in the bitmap
        ("n_ladder", np.int32),
        ("n_words", np.int32),
        ("mbp_depth", np.int32),  # MarketDepth published by MBP; 0 = no reveal rows
        ("best", np.int32),  # ladder index of the best level, -1 if the side is empty
        ("n_levels", np.int32),  # non-empty levels
        ("n_orders", np.int32),
        ("qty", np.int64),  # resting qty on the side
    ],
    align=True,
)

# Registers: one int64 array of counters and cursors.
R_FREE = 0  # head of the free slot list (-1 = none)
R_N_EXEC = 1  # rows written in the exec output
R_N_MD = 2  # rows written in the md output
R_PRIORITY = 3  # last MDOrderPriority given
R_TRADE_ID = 4  # last MDTradeEntryID given
R_N_RESTING = 5
R_N_CMDS = 6  # commands processed, lifetime
R_N_TRADES = 7
R_VOLUME = 8
R_SCRATCH = 9  # slot used by IOC/FOK orders, which never rest
R_ID_BITS = 10  # log2(len(id_table))
R_REJECTS = 16  # R_REJECTS + reason: rejects per reason
N_REGS = R_REJECTS + N_MATCH_REASONS

# Command outcome inside the kernel
_DONE = 0
_STOP = 1  # not processed: the output arrays need draining first

# Result of the matching loop
_MATCH_OK = 0
_MATCH_SMP_CANCELLED = 1

# Kernel options. ``_nrt=False`` (numba's private flag) turns off reference
# counting: the kernels allocate nothing, and with it on every call between
# kernels increfs/decrefs each array argument (atomics) and is not inlined,
# measured 40-90 ns per helper call, more than a whole passive submit without.
# ``error_model="numpy"``: integer division cannot raise (ticks are checked > 0
# by the facade anyway), so no exception path exists in the hot loop.
_KERNEL: dict[str, Any] = {"_nrt": False, "error_model": "numpy"}

MAX_LADDER_LEVELS = 1 << 22  # per instrument and side: 4M ticks
MIN_OUTPUT_CAPACITY = 16  # so that one command of a cancel/reject always fits


@intrinsic
def _ctpop(typingctx: Any, src: Any) -> Any:
    """Population count (LLVM ctpop) of an integer."""
    if not isinstance(src, nbtypes.Integer):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.ctpop(args[0])

    return src(src), codegen


# Kernels call these with the value only; numba's stubs type an intrinsic by its
# typing signature, hence the Any aliases.
_popcount: Any = _ctpop
_clz: Any = leading_zeros
_ctz: Any = trailing_zeros


# --------------------------------------------------------------------------
# Order id -> slot (open addressing)
# --------------------------------------------------------------------------
@njit(cache=True, inline="always", **_KERNEL)
def _id_home(order_id: int, regs: np.ndarray, mask: int) -> int:
    # XOR-folding: a venue's sequential ids land in consecutive buckets (cache
    # friendly, no collisions until the table wraps) and power-of-two strides
    # are spread by the folded high bits.
    b = regs[R_ID_BITS]
    return (order_id ^ (order_id >> b) ^ (order_id >> (2 * b))) & mask


@njit(cache=True, inline="always", **_KERNEL)
def _id_find(id_table: np.ndarray, orders: np.ndarray, regs: np.ndarray, order_id: int) -> int:
    mask = len(id_table) - 1
    j = _id_home(order_id, regs, mask)
    while True:
        s = id_table[j]
        if s < 0:
            return -1
        if orders[s].order_id == order_id:
            return s
        j = (j + 1) & mask


@njit(cache=True, inline="always", **_KERNEL)
def _id_insert(id_table: np.ndarray, orders: np.ndarray, regs: np.ndarray, slot: int) -> None:
    """Robin Hood insertion: an entry closer to its home gives its bucket to one
    further from home. Keeps clusters ordered so that deletion can stop early."""
    mask = len(id_table) - 1
    s = slot
    j = _id_home(orders[s].order_id, regs, mask)
    dist = 0
    while True:
        t = id_table[j]
        if t < 0:
            id_table[j] = s
            return
        t_dist = (j - _id_home(orders[t].order_id, regs, mask)) & mask
        if t_dist < dist:
            id_table[j] = s
            s = t
            dist = t_dist
        j = (j + 1) & mask
        dist += 1


@njit(cache=True, **_KERNEL)
def _id_remove(id_table: np.ndarray, orders: np.ndarray, regs: np.ndarray, order_id: int) -> None:
    mask = len(id_table) - 1
    i = _id_home(order_id, regs, mask)
    while True:
        s = id_table[i]
        if s < 0:
            return
        if orders[s].order_id == order_id:
            break
        i = (i + 1) & mask
    # Backward shift until an empty bucket or an entry at its home: with Robin
    # Hood order nothing beyond such an entry belongs before it. O(1) for a
    # venue's sequential ids even when they form one long cluster.
    j = (i + 1) & mask
    while True:
        s = id_table[j]
        if s < 0 or _id_home(orders[s].order_id, regs, mask) == j:
            break
        id_table[i] = s
        i = j
        j = (j + 1) & mask
    id_table[i] = -1


# --------------------------------------------------------------------------
# Level bitmap
# --------------------------------------------------------------------------
@njit(cache=True, inline="always", **_KERNEL)
def _bit_set(bitmap: np.ndarray, wb: int, idx: int) -> None:
    bitmap[wb + (idx >> 6)] |= np.int64(1) << (idx & 63)


@njit(cache=True, inline="always", **_KERNEL)
def _bit_clear(bitmap: np.ndarray, wb: int, idx: int) -> None:
    bitmap[wb + (idx >> 6)] &= ~(np.int64(1) << (idx & 63))


@njit(cache=True, **_KERNEL)
def _next_worse(bitmap: np.ndarray, wb: int, n_words: int, idx: int, is_bid: bool) -> int:
    """Ladder index of the next non-empty level worse than ``idx`` (-1 if none)."""
    if is_bid:  # bids get worse downwards: highest set bit below idx
        if idx <= 0:
            return -1
        j = idx - 1
        w = j >> 6
        b = j & 63
        x = bitmap[wb + w]
        if b < 63:
            x &= (np.int64(1) << (b + 1)) - 1
        while True:
            if x != 0:
                return (w << 6) + 63 - _clz(x)
            w -= 1
            if w < 0:
                return -1
            x = bitmap[wb + w]
    j = idx + 1  # asks get worse upwards: lowest set bit above idx
    w = j >> 6
    if w >= n_words:
        return -1
    x = bitmap[wb + w] & -(np.int64(1) << (j & 63))
    while True:
        if x != 0:
            return (w << 6) + _ctz(x)
        w += 1
        if w >= n_words:
            return -1
        x = bitmap[wb + w]


@njit(cache=True, inline="always", **_KERNEL)
def _count_bits(bitmap: np.ndarray, wb: int, lo: int, hi: int) -> int:
    """Set bits with index in [lo, hi)."""
    if hi <= lo:
        return 0
    w0 = lo >> 6
    w1 = (hi - 1) >> 6
    n = 0
    for w in range(w0, w1 + 1):
        x = bitmap[wb + w]
        if w == w0:
            x &= -(np.int64(1) << (lo & 63))
        if w == w1:
            b = (hi - 1) & 63
            if b < 63:
                x &= (np.int64(1) << (b + 1)) - 1
        n += _popcount(x)
    return n


@njit(cache=True, inline="always", **_KERNEL)
def _level_number(bitmap: np.ndarray, wb: int, best: int, idx: int, is_bid: bool) -> int:
    """1-based MBP level of the (non-empty) ladder index ``idx``: 1 + levels better."""
    if is_bid:
        return 1 + _count_bits(bitmap, wb, idx + 1, best + 1)
    return 1 + _count_bits(bitmap, wb, best, idx)


# --------------------------------------------------------------------------
# Output records
# --------------------------------------------------------------------------
@njit(cache=True, inline="always", **_KERNEL)
def _exec(execs: np.ndarray, regs: np.ndarray, orders: np.ndarray, s: int, exec_type: int,
          reason: int, op: int, cmd_index: int, t: int, last_px: int, last_qty: int,
          contra_id: int, contra_owner: int, trade_id: int, aggressor: int) -> None:
    k = regs[R_N_EXEC]
    regs[R_N_EXEC] = k + 1
    e = execs[k]
    o = orders[s]
    e.transact_time = t
    e.order_id = o.order_id
    e.cl_ord_id = o.cl_ord_id
    e.contra_order_id = contra_id
    e.trade_id = trade_id
    e.priority = o.priority
    e.price = o.price
    e.last_px = last_px
    e.last_qty = last_qty
    e.order_qty = o.order_qty
    e.leaves_qty = o.leaves
    e.cum_qty = o.cum
    e.instrument = o.instrument
    e.owner = o.owner
    e.contra_owner = contra_owner
    e.cmd_index = cmd_index
    e.exec_type = exec_type
    e.reason = reason
    e.op = op
    e.side = o.side
    e.tif = o.tif
    e.aggressor = aggressor


@njit(cache=True, inline="always", **_KERNEL)
def _reject(execs: np.ndarray, regs: np.ndarray, cmds: np.ndarray, i: int, reason: int) -> None:
    """A reject echoes the command as sent."""
    k = regs[R_N_EXEC]
    regs[R_N_EXEC] = k + 1
    regs[R_REJECTS + reason] += 1
    e = execs[k]
    c = cmds[i]
    e.transact_time = c.transact_time
    e.order_id = c.order_id
    e.cl_ord_id = c.cl_ord_id
    e.contra_order_id = 0
    e.trade_id = 0
    e.priority = 0
    e.price = c.price
    e.last_px = 0
    e.last_qty = 0
    e.order_qty = c.qty
    e.leaves_qty = 0
    e.cum_qty = 0
    e.instrument = c.instrument
    e.owner = c.owner
    e.contra_owner = 0
    e.cmd_index = i
    e.exec_type = MX_REJECTED
    e.reason = reason
    e.op = c.op
    e.side = c.side
    e.tif = c.tif
    e.aggressor = 0


@njit(cache=True, inline="always", **_KERNEL)
def _md(mds: np.ndarray, regs: np.ndarray, kind: int, cmd_index: int, t: int, instrument: int,
        side: int, price: int, size: int, num_orders: int, price_level: int, action: int,
        order_action: int, order_id: int, taker_id: int, priority: int, display_qty: int,
        trade_id: int) -> None:
    k = regs[R_N_MD]
    regs[R_N_MD] = k + 1
    m = mds[k]
    m.transact_time = t
    m.price = price
    m.size = size
    m.order_id = order_id
    m.taker_order_id = taker_id
    m.order_priority = priority
    m.display_qty = display_qty
    m.trade_id = trade_id
    m.instrument = instrument
    m.num_orders = num_orders
    m.price_level = price_level
    m.cmd_index = cmd_index
    m.kind = kind
    m.side = side
    m.action = action
    m.order_action = order_action


@njit(cache=True, inline="always", **_KERNEL)
def _room(regs: np.ndarray, execs: np.ndarray, mds: np.ndarray, need_exec: int,
          need_md: int) -> int:
    """0: fits; 1: drain the outputs first; 2: cannot fit even in empty outputs."""
    if regs[R_N_EXEC] + need_exec <= len(execs) and regs[R_N_MD] + need_md <= len(mds):
        return 0
    if need_exec > len(execs) or need_md > len(mds):
        return 2
    return 1


# --------------------------------------------------------------------------
# Book mutations (each writes its market-data rows)
# --------------------------------------------------------------------------
@njit(cache=True, inline="always", **_KERNEL)
def _alloc_slot(orders: np.ndarray, regs: np.ndarray) -> int:
    s = regs[R_FREE]
    regs[R_FREE] = orders[s].next
    return s


@njit(cache=True, inline="always", **_KERNEL)
def _free_slot(orders: np.ndarray, regs: np.ndarray, s: int) -> None:
    if s == regs[R_SCRATCH]:
        return
    orders[s].order_id = 0
    orders[s].next = regs[R_FREE]
    regs[R_FREE] = s


@njit(cache=True, inline="always", **_KERNEL)
def _link_tail(orders: np.ndarray, levels: np.ndarray, bitmap: np.ndarray, sides: np.ndarray,
               regs: np.ndarray, mds: np.ndarray, s: int, cmd_index: int, t: int) -> None:
    """Append a slot at the back of its price level; MD row: order New."""
    o = orders[s]
    row = o.row
    sd = sides[row]
    idx = o.level
    lv = levels[sd.level_base + idx]
    is_bid = o.side == SIDE_BUY
    o.next = -1
    o.prev = lv.tail
    if lv.tail >= 0:
        orders[lv.tail].next = s
        action = MD_CHANGE
    else:
        lv.head = s
        action = MD_NEW
        _bit_set(bitmap, sd.word_base, idx)
        sd.n_levels += 1
        if sd.best < 0 or (idx > sd.best if is_bid else idx < sd.best):
            sd.best = idx
    lv.tail = s
    lv.num_orders += 1
    lv.qty += o.leaves
    sd.n_orders += 1
    sd.qty += o.leaves
    regs[R_N_RESTING] += 1
    _md(mds, regs, MMD_BOOK, cmd_index, t, o.instrument, o.side, o.price, lv.qty,
        lv.num_orders, _level_number(bitmap, sd.word_base, sd.best, idx, is_bid), action,
        MD_NEW, o.order_id, 0, o.priority, o.leaves, 0)


@njit(cache=True, **_KERNEL)
def _unlink(orders: np.ndarray, levels: np.ndarray, bitmap: np.ndarray, sides: np.ndarray,
            regs: np.ndarray, mds: np.ndarray, s: int, cmd_index: int, t: int) -> None:
    """Take a slot out of its level (slot and id stay); MD rows: order Delete (+ reveal)."""
    o = orders[s]
    row = o.row
    sd = sides[row]
    idx = o.level
    lv = levels[sd.level_base + idx]
    is_bid = o.side == SIDE_BUY
    number = _level_number(bitmap, sd.word_base, sd.best, idx, is_bid)
    if o.prev >= 0:
        orders[o.prev].next = o.next
    else:
        lv.head = o.next
    if o.next >= 0:
        orders[o.next].prev = o.prev
    else:
        lv.tail = o.prev
    lv.num_orders -= 1
    lv.qty -= o.leaves
    sd.n_orders -= 1
    sd.qty -= o.leaves
    regs[R_N_RESTING] -= 1
    if lv.num_orders > 0:
        _md(mds, regs, MMD_BOOK, cmd_index, t, o.instrument, o.side, o.price, lv.qty,
            lv.num_orders, number, MD_CHANGE, MD_DELETE, o.order_id, 0, o.priority, 0, 0)
        return
    _bit_clear(bitmap, sd.word_base, idx)
    sd.n_levels -= 1
    if sd.best == idx:
        sd.best = _next_worse(bitmap, sd.word_base, sd.n_words, idx, is_bid)
    _md(mds, regs, MMD_BOOK, cmd_index, t, o.instrument, o.side, o.price, 0, 0, number,
        MD_DELETE, MD_DELETE, o.order_id, 0, o.priority, 0, 0)
    depth = sd.mbp_depth
    if depth > 0 and number <= depth and sd.n_levels >= depth:
        # The level now at position `depth` just came into the MBP view.
        j = sd.best
        for _ in range(depth - 1):
            j = _next_worse(bitmap, sd.word_base, sd.n_words, j, is_bid)
        lj = levels[sd.level_base + j]
        _md(mds, regs, MMD_REVEAL, cmd_index, t, o.instrument, o.side,
            sd.band_low + j * sd.tick, lj.qty, lj.num_orders, depth, MD_NEW,
            MD_NO_ORDER_ACTION, 0, 0, 0, 0, 0)


@njit(cache=True, **_KERNEL)
def _scan_crossing(orders: np.ndarray, levels: np.ndarray, bitmap: np.ndarray, sd_opp: Any,
                   lim: int, is_buy: bool, qty: int, owner: int, smp_id: int,
                   smp_newest: bool) -> tuple[int, int]:
    """Walk the resting orders an incoming order would meet, without changing anything.

    Returns (orders met, qty that would fill). Bounds the command's output and
    decides FOK. Mirrors ``_match`` step for step.
    """
    n = 0
    remaining = qty
    idx = sd_opp.best
    while idx >= 0 and remaining > 0:
        if (idx > lim) if is_buy else (idx < lim):
            break
        s = levels[sd_opp.level_base + idx].head
        while s >= 0 and remaining > 0:
            n += 1
            if smp_id != 0 and orders[s].smp_id == smp_id and orders[s].owner == owner:
                if smp_newest:
                    return n, qty - remaining
            else:
                remaining -= min(remaining, orders[s].leaves)
            s = orders[s].next
        idx = _next_worse(bitmap, sd_opp.word_base, sd_opp.n_words, idx, not is_buy)
    return n, qty - remaining


@njit(cache=True, **_KERNEL)
def _match(orders: np.ndarray, levels: np.ndarray, bitmap: np.ndarray, sides: np.ndarray,
           id_table: np.ndarray, regs: np.ndarray, execs: np.ndarray, mds: np.ndarray,
           s: int, op: int, cmd_index: int, t: int) -> int:
    """Match slot ``s`` (not in the book) against the opposite side, best first, FIFO."""
    taker = orders[s]
    sd_opp = sides[taker.row ^ 1]
    is_buy = taker.side == SIDE_BUY
    lim = taker.level
    smp_id = taker.smp_id
    while taker.leaves > 0:
        idx = sd_opp.best
        if idx < 0 or ((idx > lim) if is_buy else (idx < lim)):
            break
        m = levels[sd_opp.level_base + idx].head
        maker = orders[m]
        if smp_id != 0 and maker.smp_id == smp_id and maker.owner == taker.owner:
            if taker.smp_instr == SMP_CANCEL_NEWEST:
                taker.leaves = 0
                _exec(execs, regs, orders, s, MX_CANCELLED, MR_SMP_NEWEST, op, cmd_index, t,
                      0, 0, 0, 0, 0, 0)
                return _MATCH_SMP_CANCELLED
            # CME default: cancel the resting order, keep matching.
            _unlink(orders, levels, bitmap, sides, regs, mds, m, cmd_index, t)
            maker.leaves = 0
            _exec(execs, regs, orders, m, MX_CANCELLED, MR_SMP_OLDEST, op, cmd_index, t,
                  0, 0, 0, 0, 0, 0)
            _id_remove(id_table, orders, regs, maker.order_id)
            _free_slot(orders, regs, m)
            continue
        q = min(taker.leaves, maker.leaves)
        px = maker.price
        regs[R_TRADE_ID] += 1
        trade_id = regs[R_TRADE_ID]
        regs[R_N_TRADES] += 1
        regs[R_VOLUME] += q
        taker.leaves -= q
        taker.cum += q
        _exec(execs, regs, orders, s, MX_FILL, MR_NONE, op, cmd_index, t, px, q,
              maker.order_id, maker.owner, trade_id, 1)
        _md(mds, regs, MMD_TRADE, cmd_index, t, taker.instrument, taker.side, px, q, 0, 0,
            MD_NEW, MD_NO_ORDER_ACTION, maker.order_id, taker.order_id, maker.priority, 0,
            trade_id)
        if q == maker.leaves:
            _unlink(orders, levels, bitmap, sides, regs, mds, m, cmd_index, t)
            maker.leaves = 0
            maker.cum += q
            _exec(execs, regs, orders, m, MX_FILL, MR_NONE, op, cmd_index, t, px, q,
                  taker.order_id, taker.owner, trade_id, 0)
            _id_remove(id_table, orders, regs, maker.order_id)
            _free_slot(orders, regs, m)
        else:
            maker.leaves -= q
            maker.cum += q
            lv = levels[sd_opp.level_base + idx]
            lv.qty -= q
            sd_opp.qty -= q
            _exec(execs, regs, orders, m, MX_FILL, MR_NONE, op, cmd_index, t, px, q,
                  taker.order_id, taker.owner, trade_id, 0)
            # The maker is at the head of the best level: MBP level 1.
            _md(mds, regs, MMD_BOOK, cmd_index, t, maker.instrument, maker.side, px, lv.qty,
                lv.num_orders, 1, MD_CHANGE, MD_CHANGE, maker.order_id, 0, maker.priority,
                maker.leaves, 0)
    return _MATCH_OK


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------
@njit(cache=True, **_KERNEL)
def _submit(cmds: np.ndarray, i: int, orders: np.ndarray, levels: np.ndarray,
            bitmap: np.ndarray, sides: np.ndarray, id_table: np.ndarray, regs: np.ndarray,
            execs: np.ndarray, mds: np.ndarray) -> int:
    c = cmds[i]
    inst = c.instrument
    if inst < 0 or 2 * inst >= len(sides):
        _reject(execs, regs, cmds, i, MR_BAD_INSTRUMENT)
        return _DONE
    side = c.side
    if side != SIDE_BUY and side != SIDE_SELL:
        _reject(execs, regs, cmds, i, MR_BAD_SIDE)
        return _DONE
    tif = c.tif
    if tif != MTIF_DAY and tif != MTIF_GTC and tif != MTIF_IOC and tif != MTIF_FOK:
        _reject(execs, regs, cmds, i, MR_BAD_TIF)
        return _DONE
    oid = np.int64(c.order_id)
    if oid == 0:
        _reject(execs, regs, cmds, i, MR_BAD_ORDER_ID)
        return _DONE
    qty = c.qty
    if qty <= 0 or qty > MATCH_MAX_QTY:
        _reject(execs, regs, cmds, i, MR_BAD_QTY)
        return _DONE
    row = inst * 2 + side - 1
    sd = sides[row]
    price = c.price
    if price < sd.band_low or price > sd.band_high:
        _reject(execs, regs, cmds, i, MR_OUTSIDE_BAND)
        return _DONE
    # One division gives both the ladder index and the tick check (band_low is
    # on the grid, so price is on it iff price - band_low is).
    lim = (price - sd.band_low) // sd.tick
    if price - sd.band_low != lim * sd.tick:
        _reject(execs, regs, cmds, i, MR_OFF_TICK)
        return _DONE
    if _id_find(id_table, orders, regs, oid) >= 0:
        _reject(execs, regs, cmds, i, MR_DUPLICATE_ORDER_ID)
        return _DONE
    rests = tif in (MTIF_DAY, MTIF_GTC)
    if rests and regs[R_FREE] < 0:
        _reject(execs, regs, cmds, i, MR_BOOK_FULL)
        return _DONE
    smp_id = np.int64(c.smp_id)
    is_buy = side == SIDE_BUY
    sd_opp = sides[row ^ 1]
    opp_best = sd_opp.best
    n_met = 0
    fillable = 0
    if opp_best >= 0 and ((opp_best <= lim) if is_buy else (opp_best >= lim)):
        # Without SMP every resting order met takes at least one lot: min(qty,
        # resting orders) bounds the output. Walk the book first only when that
        # bound does not fit or the order is a FOK.
        if tif != MTIF_FOK and smp_id == 0:
            n_met = min(qty, sd_opp.n_orders)
        if n_met == 0 or _room(regs, execs, mds, 2 + 2 * n_met, 3 + 3 * n_met) != 0:
            n_met, fillable = _scan_crossing(orders, levels, bitmap, sd_opp, lim, is_buy, qty,
                                             c.owner, smp_id, c.smp_instr == SMP_CANCEL_NEWEST)
    fok_dead = tif == MTIF_FOK and fillable < qty
    if fok_dead:
        room = _room(regs, execs, mds, 2, 0)
    else:
        room = _room(regs, execs, mds, 2 + 2 * n_met, 3 + 3 * n_met)
    if room == 1:
        return _STOP
    if room == 2:
        _reject(execs, regs, cmds, i, MR_OUTPUT_FULL)
        return _DONE

    s = _alloc_slot(orders, regs) if rests else regs[R_SCRATCH]
    o = orders[s]
    o.order_id = oid
    o.cl_ord_id = np.int64(c.cl_ord_id)
    o.price = price
    o.order_qty = qty
    o.leaves = qty
    o.cum = 0
    regs[R_PRIORITY] += 1
    o.priority = regs[R_PRIORITY]
    o.smp_id = smp_id
    o.level = lim
    o.row = row
    o.instrument = inst
    o.owner = c.owner
    o.side = side
    o.tif = tif
    o.smp_instr = c.smp_instr
    t = c.transact_time
    _exec(execs, regs, orders, s, MX_ACCEPTED, MR_NONE, MCMD_SUBMIT, i, t, 0, 0, 0, 0, 0, 0)
    if fok_dead:
        o.leaves = 0
        _exec(execs, regs, orders, s, MX_EXPIRED, MR_FOK_UNFILLABLE, MCMD_SUBMIT, i, t,
              0, 0, 0, 0, 0, 0)
        return _DONE
    if n_met > 0 and _match(orders, levels, bitmap, sides, id_table, regs, execs, mds, s,
                            MCMD_SUBMIT, i, t) == _MATCH_SMP_CANCELLED:
        _free_slot(orders, regs, s)
        return _DONE
    if o.leaves == 0:
        _free_slot(orders, regs, s)
    elif rests:
        _id_insert(id_table, orders, regs, s)
        _link_tail(orders, levels, bitmap, sides, regs, mds, s, i, t)
    else:
        o.leaves = 0
        _exec(execs, regs, orders, s, MX_EXPIRED, MR_IOC_REMAINDER, MCMD_SUBMIT, i, t,
              0, 0, 0, 0, 0, 0)
    return _DONE


@njit(cache=True, **_KERNEL)
def _find_own(cmds: np.ndarray, i: int, orders: np.ndarray, id_table: np.ndarray,
              regs: np.ndarray) -> int:
    """Slot of the command's resting order, -1 if unknown or owned by someone else."""
    oid = np.int64(cmds[i].order_id)
    if oid == 0:
        return -1
    s = _id_find(id_table, orders, regs, oid)
    if s >= 0 and orders[s].owner != cmds[i].owner:
        return -1
    return s


@njit(cache=True, **_KERNEL)
def _cancel(cmds: np.ndarray, i: int, orders: np.ndarray, levels: np.ndarray,
            bitmap: np.ndarray, sides: np.ndarray, id_table: np.ndarray, regs: np.ndarray,
            execs: np.ndarray, mds: np.ndarray) -> int:
    s = _find_own(cmds, i, orders, id_table, regs)
    if s < 0:
        _reject(execs, regs, cmds, i, MR_UNKNOWN_ORDER)
        return _DONE
    c = cmds[i]
    o = orders[s]
    t = c.transact_time
    _unlink(orders, levels, bitmap, sides, regs, mds, s, i, t)
    o.leaves = 0
    o.cl_ord_id = np.int64(c.cl_ord_id)
    _exec(execs, regs, orders, s, MX_CANCELLED, MR_USER, MCMD_CANCEL, i, t, 0, 0, 0, 0, 0, 0)
    _id_remove(id_table, orders, regs, o.order_id)
    _free_slot(orders, regs, s)
    return _DONE


@njit(cache=True, **_KERNEL)
def _modify(cmds: np.ndarray, i: int, orders: np.ndarray, levels: np.ndarray,
            bitmap: np.ndarray, sides: np.ndarray, id_table: np.ndarray, regs: np.ndarray,
            execs: np.ndarray, mds: np.ndarray) -> int:
    s = _find_own(cmds, i, orders, id_table, regs)
    if s < 0:
        _reject(execs, regs, cmds, i, MR_UNKNOWN_ORDER)
        return _DONE
    c = cmds[i]
    o = orders[s]
    qty = c.qty
    if qty <= 0 or qty > MATCH_MAX_QTY:
        _reject(execs, regs, cmds, i, MR_BAD_QTY)
        return _DONE
    sd = sides[o.row]
    price = c.price
    if price < sd.band_low or price > sd.band_high:
        _reject(execs, regs, cmds, i, MR_OUTSIDE_BAND)
        return _DONE
    lim = (price - sd.band_low) // sd.tick
    if price - sd.band_low != lim * sd.tick:
        _reject(execs, regs, cmds, i, MR_OFF_TICK)
        return _DONE
    t = c.transact_time
    new_leaves = qty - o.cum if (c.flags & MCF_IFM) != 0 else qty
    if new_leaves <= 0:
        # IFM: already filled for at least the new quantity, nothing left to work.
        _unlink(orders, levels, bitmap, sides, regs, mds, s, i, t)
        o.leaves = 0
        o.cl_ord_id = np.int64(c.cl_ord_id)
        _exec(execs, regs, orders, s, MX_CANCELLED, MR_MODIFY_OVERFILL, MCMD_MODIFY, i, t,
              0, 0, 0, 0, 0, 0)
        _id_remove(id_table, orders, regs, o.order_id)
        _free_slot(orders, regs, s)
        return _DONE

    if price == o.price:
        # Same price: resting, so it cannot cross. Priority kept unless qty rises.
        o.cl_ord_id = np.int64(c.cl_ord_id)
        diff = new_leaves - o.leaves
        if diff != 0:
            lv = levels[sd.level_base + o.level]
            if diff > 0:
                regs[R_PRIORITY] += 1
                o.priority = regs[R_PRIORITY]
                if o.next >= 0:  # to the back of the queue
                    if o.prev >= 0:
                        orders[o.prev].next = o.next
                    else:
                        lv.head = o.next
                    orders[o.next].prev = o.prev
                    orders[lv.tail].next = s
                    o.prev = lv.tail
                    o.next = -1
                    lv.tail = s
            o.leaves = new_leaves
            o.order_qty = o.cum + new_leaves
            lv.qty += diff
            sd.qty += diff
            _md(mds, regs, MMD_BOOK, i, t, o.instrument, o.side, o.price, lv.qty,
                lv.num_orders,
                _level_number(bitmap, sd.word_base, sd.best, o.level, o.side == SIDE_BUY),
                MD_CHANGE, MD_CHANGE, o.order_id, 0, o.priority, o.leaves, 0)
        _exec(execs, regs, orders, s, MX_MODIFIED, MR_NONE, MCMD_MODIFY, i, t,
              0, 0, 0, 0, 0, 0)
        return _DONE

    sd_opp = sides[o.row ^ 1]
    opp_best = sd_opp.best
    is_buy = o.side == SIDE_BUY
    n_met = 0
    if opp_best >= 0 and ((opp_best <= lim) if is_buy else (opp_best >= lim)):
        if o.smp_id == 0:  # same bound as in _submit
            n_met = min(new_leaves, sd_opp.n_orders)
        if n_met == 0 or _room(regs, execs, mds, 2 + 2 * n_met, 4 + 3 * n_met) != 0:
            n_met, _fillable = _scan_crossing(orders, levels, bitmap, sd_opp, lim, is_buy,
                                              new_leaves, o.owner, o.smp_id,
                                              o.smp_instr == SMP_CANCEL_NEWEST)
    room = _room(regs, execs, mds, 2 + 2 * n_met, 4 + 3 * n_met)
    if room == 1:
        return _STOP
    if room == 2:
        _reject(execs, regs, cmds, i, MR_OUTPUT_FULL)
        return _DONE
    # Price change: out of the old level, new priority, then as an incoming order.
    _unlink(orders, levels, bitmap, sides, regs, mds, s, i, t)
    o.price = price
    o.level = lim
    o.leaves = new_leaves
    o.order_qty = o.cum + new_leaves
    o.cl_ord_id = np.int64(c.cl_ord_id)
    regs[R_PRIORITY] += 1
    o.priority = regs[R_PRIORITY]
    _exec(execs, regs, orders, s, MX_MODIFIED, MR_NONE, MCMD_MODIFY, i, t, 0, 0, 0, 0, 0, 0)
    if n_met > 0 and _match(orders, levels, bitmap, sides, id_table, regs, execs, mds, s,
                            MCMD_MODIFY, i, t) == _MATCH_SMP_CANCELLED:
        _id_remove(id_table, orders, regs, o.order_id)
        _free_slot(orders, regs, s)
        return _DONE
    if o.leaves > 0:
        _link_tail(orders, levels, bitmap, sides, regs, mds, s, i, t)
    else:
        _id_remove(id_table, orders, regs, o.order_id)
        _free_slot(orders, regs, s)
    return _DONE


@njit(cache=True, **_KERNEL)
def _mass_remove(cmds: np.ndarray, i: int, orders: np.ndarray, levels: np.ndarray,
                 bitmap: np.ndarray, sides: np.ndarray, id_table: np.ndarray,
                 regs: np.ndarray, execs: np.ndarray, mds: np.ndarray) -> int:
    """Mass cancel (one owner) or session-end expiry (DAY orders of everyone).

    Walks instrument, side (bid then ask), level from the best outwards, FIFO.
    Stops when the outputs are full; the caller drains and sends the same
    command again, which goes on with the orders still resting.
    """
    c = cmds[i]
    op = c.op
    inst = c.instrument
    n_inst = len(sides) // 2
    if inst < -1 or inst >= n_inst:
        _reject(execs, regs, cmds, i, MR_BAD_INSTRUMENT)
        return _DONE
    if c.side != 0 and c.side != SIDE_BUY and c.side != SIDE_SELL:
        _reject(execs, regs, cmds, i, MR_BAD_SIDE)
        return _DONE
    expire = op == MCMD_EXPIRE_DAY
    t = c.transact_time
    first = 0 if inst < 0 else inst
    last = n_inst - 1 if inst < 0 else inst
    for k in range(first, last + 1):
        for sv in range(SIDE_BUY, SIDE_SELL + 1):
            if c.side != 0 and c.side != sv:
                continue
            row = 2 * k + sv - 1
            sd = sides[row]
            is_bid = sv == SIDE_BUY
            idx = sd.best
            while idx >= 0:
                s = levels[sd.level_base + idx].head
                while s >= 0:
                    nxt = orders[s].next
                    o = orders[s]
                    if (o.tif == MTIF_DAY) if expire else (o.owner == c.owner):
                        if _room(regs, execs, mds, 1, 2) != 0:
                            return _STOP
                        _unlink(orders, levels, bitmap, sides, regs, mds, s, i, t)
                        o.leaves = 0
                        if expire:
                            _exec(execs, regs, orders, s, MX_EXPIRED, MR_SESSION_END, op, i, t,
                                  0, 0, 0, 0, 0, 0)
                        else:
                            _exec(execs, regs, orders, s, MX_CANCELLED, MR_MASS_CANCEL, op, i,
                                  t, 0, 0, 0, 0, 0, 0)
                        _id_remove(id_table, orders, regs, o.order_id)
                        _free_slot(orders, regs, s)
                    s = nxt
                idx = _next_worse(bitmap, sd.word_base, sd.n_words, idx, is_bid)
    return _DONE


@njit(cache=True, **_KERNEL)
def _process(cmds: np.ndarray, start: int, end: int, orders: np.ndarray, levels: np.ndarray,
             bitmap: np.ndarray, sides: np.ndarray, id_table: np.ndarray, regs: np.ndarray,
             execs: np.ndarray, mds: np.ndarray) -> int:
    """Run cmds[start:end]; returns the index of the first command not processed."""
    i = start
    while i < end:
        op = cmds[i].op
        if op == MCMD_SUBMIT:
            if _room(regs, execs, mds, 1, 0) != 0:
                break
            st = _submit(cmds, i, orders, levels, bitmap, sides, id_table, regs, execs, mds)
        elif op == MCMD_CANCEL:
            if _room(regs, execs, mds, 1, 2) != 0:
                break
            st = _cancel(cmds, i, orders, levels, bitmap, sides, id_table, regs, execs, mds)
        elif op == MCMD_MODIFY:
            if _room(regs, execs, mds, 1, 2) != 0:
                break
            st = _modify(cmds, i, orders, levels, bitmap, sides, id_table, regs, execs, mds)
        elif op in (MCMD_MASS_CANCEL, MCMD_EXPIRE_DAY):
            if _room(regs, execs, mds, 1, 2) != 0:
                break
            st = _mass_remove(cmds, i, orders, levels, bitmap, sides, id_table, regs, execs,
                              mds)
        else:
            if _room(regs, execs, mds, 1, 0) != 0:
                break
            _reject(execs, regs, cmds, i, MR_BAD_OP)
            st = _DONE
        if st == _STOP:
            break
        regs[R_N_CMDS] += 1
        i += 1
    return i


@njit(cache=True, **_KERNEL)
def _process_one(cmd_buf: np.ndarray, op: int, instrument: int, order_id: int, side: int,
                 price: int, qty: int, tif: int, owner: int, smp_id: int, smp_instr: int,
                 flags: int, cl_ord_id: int, t: int, orders: np.ndarray, levels: np.ndarray,
                 bitmap: np.ndarray, sides: np.ndarray, id_table: np.ndarray,
                 regs: np.ndarray, execs: np.ndarray, mds: np.ndarray) -> int:
    """One command from scalars: the per-order path of a venue that is not batching."""
    c = cmd_buf[0]
    c.op = op
    c.instrument = instrument
    c.order_id = order_id
    c.side = side
    c.price = price
    c.qty = qty
    c.tif = tif
    c.owner = owner
    c.smp_id = smp_id
    c.smp_instr = smp_instr
    c.flags = flags
    c.cl_ord_id = cl_ord_id
    c.transact_time = t
    return _process(cmd_buf, 0, 1, orders, levels, bitmap, sides, id_table, regs, execs, mds)


# --------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------
@njit(cache=True, **_KERNEL)
def _depth(levels: np.ndarray, bitmap: np.ndarray, sides: np.ndarray, row: int,
           out: np.ndarray) -> int:
    """Aggregate levels of one side, best first, into ``out`` (MATCH_LEVEL); returns count."""
    sd = sides[row]
    is_bid = (row & 1) == 0
    idx = sd.best
    n = 0
    while idx >= 0 and n < len(out):
        lv = levels[sd.level_base + idx]
        out[n].price = sd.band_low + idx * sd.tick
        out[n].qty = lv.qty
        out[n].num_orders = lv.num_orders
        n += 1
        idx = _next_worse(bitmap, sd.word_base, sd.n_words, idx, is_bid)
    return n


@njit(cache=True, **_KERNEL)
def _queue_ahead(orders: np.ndarray, levels: np.ndarray, sides: np.ndarray,
                 id_table: np.ndarray, regs: np.ndarray, order_id: int,
                 out: np.ndarray) -> bool:
    """out[0] = orders ahead in the level, out[1] = qty ahead; False if not resting."""
    s = _id_find(id_table, orders, regs, order_id)
    if s < 0:
        return False
    o = orders[s]
    j = levels[sides[o.row].level_base + o.level].head
    n = 0
    q = 0
    while j != s:
        n += 1
        q += orders[j].leaves
        j = orders[j].next
    out[0] = n
    out[1] = q
    return True


# --------------------------------------------------------------------------
# Python facade
# --------------------------------------------------------------------------
def _i64(x: int) -> int:
    """uint64 value (order id, SMP id, ClOrdID) as the int64 with the same bits."""
    x = int(x) & 0xFFFFFFFFFFFFFFFF
    return x - (1 << 64) if x >= (1 << 63) else x


def _u64(x: int) -> int:
    return int(x) & 0xFFFFFFFFFFFFFFFF


def _entry_point(dispatcher: Any, *args: Any) -> Any:
    """The compiled entry point of ``dispatcher`` for the types of ``args``.

    Calling it skips numba's per-call type dispatch, which costs ~3 us for a
    dozen structured arrays (~0.3 us each); the facade fixes the argument types
    at construction, so the check would only repeat itself.
    """
    key = (dispatcher, tuple((a.dtype, a.ndim, a.flags.c_contiguous)
                             if isinstance(a, np.ndarray) else type(a) for a in args))
    ep = _ENTRY_POINTS.get(key)
    if ep is None:  # numba's typeof of a structured array takes ~1 ms: once per process
        ep = _ENTRY_POINTS[key] = dispatcher.compile(tuple(typeof(a) for a in args))
    return ep


_ENTRY_POINTS: dict[Any, Any] = {}


def make_commands(n: int) -> np.ndarray:
    """A zeroed MATCH_CMD array (fill it, then ``MatchingEngine.process`` it)."""
    return np.zeros(n, dtype=MATCH_CMD)


def _per_instrument(value: Any, n: int, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.int64)
    if arr.ndim == 0:
        arr = np.full(n, int(arr), dtype=np.int64)
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have one value per instrument ({n})")
    return arr


class MatchingEngine:
    """Price-time limit order books for ``n_instruments`` instruments.

    Prices are integer mantissas (e.g. PRICE9). Each instrument has a tick and a
    band ``[band_low, band_high]`` (both on the tick grid): the price ladder.
    Orders outside it are rejected (MR_OUTSIDE_BAND), as CME rejects orders
    outside its price banding.

    ``process(cmds)`` runs MATCH_CMD rows and appends records to ``execs`` and
    ``mds`` (views of the filled part of the outputs, valid until
    ``clear_outputs``). The single-command methods (``submit``, ``cancel``,
    ``modify``...) do the same for one command.
    """

    def __init__(
        self,
        n_instruments: int,
        max_orders: int,
        tick: int | Sequence[int] | np.ndarray,
        band_low: int | Sequence[int] | np.ndarray,
        band_high: int | Sequence[int] | np.ndarray,
        *,
        mbp_depth: int | Sequence[int] | np.ndarray = 10,
        exec_capacity: int = 1 << 16,
        md_capacity: int = 1 << 16,
    ) -> None:
        if n_instruments < 1:
            raise ValueError("n_instruments must be >= 1")
        if max_orders < 1 or max_orders >= (1 << 30):
            raise ValueError("max_orders must be in [1, 2**30)")
        if exec_capacity < MIN_OUTPUT_CAPACITY or md_capacity < MIN_OUTPUT_CAPACITY:
            raise ValueError(f"output capacities must be >= {MIN_OUTPUT_CAPACITY}")
        ticks = _per_instrument(tick, n_instruments, "tick")
        lows = _per_instrument(band_low, n_instruments, "band_low")
        highs = _per_instrument(band_high, n_instruments, "band_high")
        depths = _per_instrument(mbp_depth, n_instruments, "mbp_depth")
        if (ticks <= 0).any():
            raise ValueError("tick must be > 0")
        if (lows % ticks != 0).any() or (highs % ticks != 0).any():
            raise ValueError("band_low and band_high must be on the tick grid")
        if (highs < lows).any():
            raise ValueError("band_high must be >= band_low")
        if (depths < 0).any():
            raise ValueError("mbp_depth must be >= 0")
        n_ladder = (highs - lows) // ticks + 1
        if (n_ladder > MAX_LADDER_LEVELS).any():
            raise ValueError(f"a band may hold at most {MAX_LADDER_LEVELS} ticks")
        max_ladder = int(n_ladder.max())
        n_words = (max_ladder + 63) // 64

        self.n_instruments = n_instruments
        self.max_orders = max_orders
        self.n_ladder = n_ladder
        self._sides = np.zeros(2 * n_instruments, dtype=BOOK_SIDE)
        for k in range(n_instruments):
            for sv in (0, 1):
                r = self._sides[2 * k + sv]
                r["tick"] = ticks[k]
                r["band_low"] = lows[k]
                r["band_high"] = highs[k]
                r["level_base"] = (2 * k + sv) * max_ladder
                r["word_base"] = (2 * k + sv) * n_words
                r["n_ladder"] = n_ladder[k]
                r["n_words"] = (int(n_ladder[k]) + 63) // 64
                r["mbp_depth"] = depths[k]
                r["best"] = -1
        self._levels = np.zeros(2 * n_instruments * max_ladder, dtype=LEVEL)
        self._levels["head"] = -1
        self._levels["tail"] = -1
        self._bitmap = np.zeros(2 * n_instruments * n_words, dtype=np.int64)
        # One extra slot: the scratch slot of IOC/FOK orders.
        self._orders = np.zeros(max_orders + 1, dtype=ORDER_SLOT)
        self._orders["next"] = np.arange(1, max_orders + 2, dtype=np.int32)
        self._orders["next"][max_orders - 1] = -1
        self._orders["next"][max_orders] = -1
        table_bits = max(4, int(2 * max_orders - 1).bit_length())
        self._id_table = np.full(1 << table_bits, -1, dtype=np.int32)
        self._regs = np.zeros(N_REGS, dtype=np.int64)
        self._regs[R_FREE] = 0
        self._regs[R_SCRATCH] = max_orders
        self._regs[R_ID_BITS] = table_bits
        self._exec_buf = np.zeros(exec_capacity, dtype=MATCH_EXEC)
        self._md_buf = np.zeros(md_capacity, dtype=MATCH_MD)
        self._one = np.zeros(1, dtype=MATCH_CMD)
        self._depth_buf = np.zeros(0, dtype=MATCH_LEVEL)
        self._queue_buf = np.zeros(2, dtype=np.int64)
        state = self.arrays
        self._process_ep = _entry_point(_process, self._one, 0, 0, *state)
        self._one_ep = _entry_point(_process_one, self._one, *([0] * 13), *state)
        self._depth_ep = _entry_point(_depth, self._levels, self._bitmap, self._sides, 0,
                                      np.zeros(1, dtype=MATCH_LEVEL))
        self._queue_ep = _entry_point(_queue_ahead, self._orders, self._levels, self._sides,
                                      self._id_table, self._regs, 0, self._queue_buf)
        self._find_ep = _entry_point(_id_find, self._id_table, self._orders, self._regs, 0)

    # ---- state for fused kernels --------------------------------------------
    @property
    def arrays(self) -> tuple[np.ndarray, ...]:
        """(orders, levels, bitmap, sides, id_table, regs, execs, mds): the kernel's state,
        in ``_process`` argument order, for a venue that calls it from its own njit code."""
        return (self._orders, self._levels, self._bitmap, self._sides, self._id_table,
                self._regs, self._exec_buf, self._md_buf)

    # ---- commands -------------------------------------------------------------
    def process(self, cmds: np.ndarray, start: int = 0) -> int:
        """Run ``cmds[start:]``; returns the index of the first command not run.

        Less than ``len(cmds)`` means the outputs are full: read ``execs``/``mds``,
        ``clear_outputs()``, and call again from the returned index.
        """
        if cmds.dtype != MATCH_CMD or cmds.ndim != 1:
            raise TypeError("cmds must be a 1-D MATCH_CMD array")
        if not cmds.flags.c_contiguous:
            cmds = np.ascontiguousarray(cmds)
        if not 0 <= start <= len(cmds):
            raise ValueError("start out of range")
        return int(self._process_ep(cmds, start, len(cmds), self._orders, self._levels,
                                    self._bitmap, self._sides, self._id_table, self._regs,
                                    self._exec_buf, self._md_buf))

    def run(self, cmds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run every command, draining as needed; returns copies of all records."""
        execs: list[np.ndarray] = []
        mds: list[np.ndarray] = []
        i = 0
        while True:
            i = self.process(cmds, i)
            execs.append(self.execs.copy())
            mds.append(self.mds.copy())
            self.clear_outputs()
            if i >= len(cmds):
                break
        return np.concatenate(execs), np.concatenate(mds)

    def _one_cmd(self, op: int, instrument: int, order_id: int, side: int, price: int,
                 qty: int, tif: int, owner: int, smp_id: int, smp_instr: int, flags: int,
                 cl_ord_id: int, transact_time: int) -> bool:
        done = self._one_ep(self._one, op, instrument, _i64(order_id), side, price, qty, tif,
                            owner, _i64(smp_id), smp_instr, flags, _i64(cl_ord_id),
                            _i64(transact_time), self._orders, self._levels, self._bitmap,
                            self._sides, self._id_table, self._regs, self._exec_buf,
                            self._md_buf)
        return bool(done == 1)

    def submit(self, instrument: int, order_id: int, side: int, price: int, qty: int,
               tif: int = MTIF_DAY, *, owner: int = 0, smp_id: int = 0, smp_instr: int = 0,
               cl_ord_id: int = 0, transact_time: int = 0) -> bool:
        """One new order. False if not run because the outputs need draining."""
        return self._one_cmd(MCMD_SUBMIT, instrument, order_id, side, price, qty, tif, owner,
                             smp_id, smp_instr, 0, cl_ord_id, transact_time)

    def cancel(self, order_id: int, *, owner: int = 0, cl_ord_id: int = 0,
               transact_time: int = 0) -> bool:
        return self._one_cmd(MCMD_CANCEL, 0, order_id, 0, 0, 0, 0, owner, 0, 0, 0, cl_ord_id,
                             transact_time)

    def modify(self, order_id: int, price: int, qty: int, *, owner: int = 0,
               ifm: bool = False, cl_ord_id: int = 0, transact_time: int = 0) -> bool:
        return self._one_cmd(MCMD_MODIFY, 0, order_id, 0, price, qty, 0, owner, 0, 0,
                             MCF_IFM if ifm else 0, cl_ord_id, transact_time)

    def mass_cancel(self, owner: int, instrument: int = -1, side: int = 0, *,
                    transact_time: int = 0) -> bool:
        return self._one_cmd(MCMD_MASS_CANCEL, instrument, 0, side, 0, 0, 0, owner, 0, 0, 0,
                             0, transact_time)

    def expire_day_orders(self, instrument: int = -1, *, transact_time: int = 0) -> bool:
        return self._one_cmd(MCMD_EXPIRE_DAY, instrument, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                             transact_time)

    # ---- outputs --------------------------------------------------------------
    @property
    def execs(self) -> np.ndarray:
        """MATCH_EXEC records written since the last ``clear_outputs`` (a view)."""
        return self._exec_buf[: self._regs[R_N_EXEC]]

    @property
    def mds(self) -> np.ndarray:
        """MATCH_MD records written since the last ``clear_outputs`` (a view)."""
        return self._md_buf[: self._regs[R_N_MD]]

    def clear_outputs(self) -> None:
        self._regs[R_N_EXEC] = 0
        self._regs[R_N_MD] = 0

    # ---- queries --------------------------------------------------------------
    def _check_instrument(self, instrument: int) -> None:
        if not 0 <= instrument < self.n_instruments:
            raise IndexError(f"instrument {instrument} out of range")

    def _best(self, row: int) -> tuple[int, int, int] | None:
        sd = self._sides[row]
        if sd["best"] < 0:
            return None
        lv = self._levels[int(sd["level_base"]) + int(sd["best"])]
        return (int(sd["band_low"] + sd["best"] * sd["tick"]), int(lv["qty"]),
                int(lv["num_orders"]))

    def best_bid(self, instrument: int) -> tuple[int, int, int] | None:
        """(price, qty, orders) of the best bid, None if no bid."""
        self._check_instrument(instrument)
        return self._best(2 * instrument)

    def best_ask(self, instrument: int) -> tuple[int, int, int] | None:
        self._check_instrument(instrument)
        return self._best(2 * instrument + 1)

    def depth(self, instrument: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` aggregate levels (MATCH_LEVEL arrays): (bids, asks), best first."""
        self._check_instrument(instrument)
        if len(self._depth_buf) < n:
            self._depth_buf = np.zeros(n, dtype=MATCH_LEVEL)
        out = self._depth_buf[:n]
        nb = self._depth_ep(self._levels, self._bitmap, self._sides, 2 * instrument, out)
        bids = out[:nb].copy()
        na = self._depth_ep(self._levels, self._bitmap, self._sides, 2 * instrument + 1, out)
        return bids, out[:na].copy()

    def queue_position(self, order_id: int) -> tuple[int, int] | None:
        """(orders ahead, qty ahead) of a resting order in its level; None if not resting."""
        oid = _i64(order_id)
        if not self._queue_ep(self._orders, self._levels, self._sides, self._id_table,
                            self._regs, oid, self._queue_buf):
            return None
        return int(self._queue_buf[0]), int(self._queue_buf[1])

    def order(self, order_id: int) -> dict[str, int] | None:
        """State of a resting order, None if it is not resting."""
        oid = _i64(order_id)
        s = int(self._find_ep(self._id_table, self._orders, self._regs, oid))
        if s < 0:
            return None
        o = self._orders[s]
        info = {k: int(o[k]) for k in ("instrument", "side", "price", "order_qty", "leaves",
                                       "cum", "priority", "owner", "tif")}
        info["smp_id"] = _u64(int(o["smp_id"]))
        info["cl_ord_id"] = _u64(int(o["cl_ord_id"]))
        return info

    def book(self, instrument: int, side: int) -> list[tuple[int, list[tuple[int, int, int]]]]:
        """Full book of one side, best level first: [(price, [(order_id, qty, priority)])].

        Walks the arrays in Python: for tests and tools, not for the hot path.
        """
        self._check_instrument(instrument)
        if side not in (SIDE_BUY, SIDE_SELL):
            raise ValueError("side must be SIDE_BUY or SIDE_SELL")
        row = 2 * instrument + side - 1
        sd = self._sides[row]
        levels = np.zeros(int(sd["n_levels"]), dtype=MATCH_LEVEL)
        self._depth_ep(self._levels, self._bitmap, self._sides, row, levels)
        out: list[tuple[int, list[tuple[int, int, int]]]] = []
        for price in levels["price"]:
            idx = (int(price) - int(sd["band_low"])) // int(sd["tick"])
            queue = []
            s = int(self._levels[int(sd["level_base"]) + idx]["head"])
            while s >= 0:
                o = self._orders[s]
                queue.append((_u64(int(o["order_id"])), int(o["leaves"]), int(o["priority"])))
                s = int(o["next"])
            out.append((int(price), queue))
        return out

    @property
    def n_resting(self) -> int:
        return int(self._regs[R_N_RESTING])

    @property
    def n_trades(self) -> int:
        return int(self._regs[R_N_TRADES])

    @property
    def volume(self) -> int:
        return int(self._regs[R_VOLUME])

    def reject_counts(self) -> dict[str, int]:
        """Rejects per reason since construction (non-zero ones)."""
        return {MATCH_REASON_NAMES[r]: int(self._regs[R_REJECTS + r])
                for r in range(N_MATCH_REASONS) if self._regs[R_REJECTS + r]}


def warm_up() -> None:
    """Compile (or load from the cache) every kernel, on a throw-away engine."""
    tmp = MatchingEngine(1, 4, 1, 0, 8, mbp_depth=1, exec_capacity=MIN_OUTPUT_CAPACITY,
                         md_capacity=MIN_OUTPUT_CAPACITY)
    tmp.submit(0, 1, SIDE_BUY, 3, 1)
    tmp.submit(0, 2, SIDE_SELL, 3, 2)
    tmp.modify(2, 4, 1)
    tmp.cancel(2)
    tmp.mass_cancel(0)
    tmp.expire_day_orders()
    tmp.process(make_commands(1))
    tmp.depth(0, 2)
    tmp.queue_position(1)
    tmp.order(1)
