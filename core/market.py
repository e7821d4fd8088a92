"""The market state of the hot path: books, instrument state, features and ring buffers
in ONE preallocated int64 arena, and the fused per-packet kernel.

Why one arena: every array handed from Python to a numba function costs ~50-100 ns
to unbox (a structured array several times that), so the per-packet call
``_on_packet(buf, n, channel, arena)`` takes the receive buffer and a single int64
array. The arena starts with a header of region offsets; ``_views(arena)`` turns it
into typed views inside the kernel (free: no copy, no allocation), the facade
``MarketState`` builds the same views with numpy.

Regions (see ``_Layout``): market counters, decoder drops, run state, the
SecurityID -> row map, instrument state ``inst[n_instr, N_INST_FIELDS]``, books
``book[n_instr, 6, 10, 3]`` (``core.book.mbp``), the MBO pools and maps
(``core.book.mbo``), feature state ``float64[n_instr, N_FSTATE]`` and parameters
(``core.features``), the ring ``float32[n_instr, ring_len, RING_WIDTH]``, the
decoder plan, the decoder's MD_EVENT scratch and its packet header.

Event handling (``_apply_row``) follows MDP 3.0:

* Rows are applied as they come; the instruments they touch are marked. Only at an
  event boundary (FLAG_END_OF_EVENT, or the end of a snapshot message) are the
  touched books consolidated, checked (invariants counted per instrument), their
  features updated and a ring row pushed; the instrument then appears in the list
  of completed instruments the kernel returns. An event may span packets.
* RptSeq per instrument: a row with a RptSeq not above the last applied one is
  stale (a duplicate, or older than the snapshot that replaced the book) and is
  skipped; a jump is a gap, counted and flagged until a snapshot arrives. A capture
  that starts mid-session starts from the first RptSeq it sees.
* Snapshots (38, 52, TCP 61/68/69) replace the instrument's MBP books and set its
  RptSeq; MBO snapshots (44, 53) replace its MBO book at their first chunk.
  ChannelReset (4) empties every book of the channel and restarts RptSeq.
* A SecurityID never defined gets a row on first sight (depth 10, tick unknown);
  when the table is full the row is counted and dropped.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir as llvm_ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array

from core.book.mbo import (
    N_MBO_META,
    N_MLEVEL_FIELDS,
    N_ORDER_FIELDS,
    _as_id,
    _mbo_apply,
    _mbo_clear_instrument,
    _mix,
    _pow2_at_least,
    _queue_ahead,
    init_mbo_arrays,
    mbo_levels,
)
from core.book.mbp import (
    APPLY_BAD_LEVEL,
    APPLY_OK,
    NO_NRT,
    _finish_event_fast,
    _finish_event_slow,
    _implied_written,
    _mbp_apply,
    _mbp_apply_outright,
    _mbp_clear,
    _mbp_set_level,
    _side_unclean,
    _sides_cleared,
)
from core.feature_spec import N_FEATURES
from core.features import (
    FS_FEATURES,
    FS_MID_NOW,
    N_FSTATE,
    N_PARAMS,
    RING_WIDTH,
    _init_feature_row,
    _on_trade_flow,
    _update_features,
    make_params,
)
from core.types import (
    BOOK_ASK,
    BOOK_BID,
    BOOK_IMPLIED_ASK,
    BOOK_IMPLIED_BID,
    ET_BID,
    ET_BOOK_RESET,
    ET_CLEARED_VOLUME,
    ET_ELECTRONIC_VOLUME,
    ET_FIXING_PRICE,
    ET_IMPLIED_BID,
    ET_IMPLIED_OFFER,
    ET_OFFER,
    ET_OPEN_INTEREST,
    ET_OPENING_PRICE,
    ET_SESSION_HIGH,
    ET_SESSION_HIGH_BID,
    ET_SESSION_LOW,
    ET_SESSION_LOW_OFFER,
    ET_SETTLEMENT_PRICE,
    ET_THRESHOLD_LIMITS,
    ET_TRADE,
    EV_BOOK,
    EV_CHANNEL_RESET,
    EV_DEFINITION,
    EV_HEARTBEAT,
    EV_NONE,
    EV_ORDER,
    EV_ORDER_REF,
    EV_OTHER,
    EV_SNAPSHOT,
    EV_SNAPSHOT_ENTRY,
    EV_STAT,
    EV_STATUS,
    EV_TRADE,
    EV_TRADE_ORDER,
    EV_VOLUME,
    FLAG_END_OF_EVENT,
    FLAG_LAST_IN_MSG,
    IMPLIED_DEPTH,
    INV_CROSSED,
    INV_NEGATIVE,
    INV_UNSORTED,
    IS_BAD_LEVEL,
    IS_BID_CLEAN,
    IS_CHANNEL,
    IS_DEPTH,
    IS_DIRTY,
    IS_EVENTS,
    IS_FIXING_PRICE,
    IS_GAP_PENDING,
    IS_HALT_REASON,
    IS_HIGH_BID,
    IS_HIGH_LIMIT,
    IS_IMPLIED_DEPTH,
    IS_LAST_MSG_SEQ,
    IS_LAST_TIME,
    IS_LAST_TRADE_PX,
    IS_LAST_TRADE_QTY,
    IS_LAST_TRADE_SIDE,
    IS_LAST_TRADE_TIME,
    IS_LOW_LIMIT,
    IS_LOW_OFFER,
    IS_MBO_HEAD,
    IS_OPEN_INTEREST,
    IS_OPEN_PRICE,
    IS_PRICE_EXPONENT,
    IS_RESETS,
    IS_RING_COUNT,
    IS_RING_HEAD,
    IS_RPT_GAPS,
    IS_RPT_SEQ,
    IS_SECURITY_ID,
    IS_SESSION_HIGH,
    IS_SESSION_LOW,
    IS_SETTLEMENT,
    IS_SETTLEMENT_FLAGS,
    IS_SIDES_TOUCHED,
    IS_SNAPSHOT_KEY,
    IS_SNAPSHOTS,
    IS_STALE,
    IS_TICK,
    IS_TOTAL_VOLUME,
    IS_TRADE_VOLUME,
    IS_TRADES,
    IS_TRADING_EVENT,
    IS_TRADING_STATUS,
    IS_UPDATES,
    IS_VIOL_CROSSED,
    IS_VIOL_NEGATIVE,
    IS_VIOL_UNSORTED,
    LV_ORDERS,
    LV_PX,
    LV_QTY,
    MARKET_COUNTER_NAMES,
    MAX_DEPTH,
    MC_BAD_LEVEL,
    MC_BAD_VALUE,
    MC_CHANNEL_RESETS,
    MC_COMPLETED_FULL,
    MC_EVENTS,
    MC_GROUP_STATUS,
    MC_INSTRUMENTS_FULL,
    MC_MBO_POOL_FULL,
    MC_MBO_UNKNOWN_ORDER,
    MC_PACKETS,
    MC_ROWS,
    MC_RPT_GAPS,
    MC_SNAPSHOTS,
    MC_STALE,
    MC_VIOLATIONS,
    MD_DELETE,
    MD_EVENT,
    MD_NEW,
    N_BOOK_SIDES,
    N_DROP_REASONS,
    N_INST_FIELDS,
    N_LEVEL_FIELDS,
    N_MARKET_COUNTERS,
    NULL_I32,
    NULL_I64,
    PACKET_HEADER,
    PRICE9_EXPONENT,
    TS_CROSS,
    TS_PRE_CROSS,
    TS_PRE_OPEN,
)

_NULL = np.int64(NULL_I64)
_NULL_NUM_ORDERS = np.int64(NULL_I32)
_NO_SID = np.int64(-(1 << 62))
_U64_NULL_AS_I64 = np.int64(-1)

# MBO snapshot templates (legacy 44, current 53): they carry chunks, not RptSeq
_MBO_SNAPSHOT_A = 53
_MBO_SNAPSHOT_B = 44
_TOP_ORDERS_SNAPSHOT = 59  # MBO limited depth: not a full book, not applied

# --------------------------------------------------------------------------
# arena header
# --------------------------------------------------------------------------
ARENA_MAGIC = 0x4E414E4F4D4B5431  # "NANOMKT1"
H_MAGIC = 0
H_N_INSTR = 1
H_RING_LEN = 2
H_MAX_EVENTS = 3
H_MAX_ORDERS = 4
H_MAX_LEVELS = 5
H_SMAP_CAP = 6
H_OMAP_CAP = 7
H_LMAP_CAP = 8
H_COMPLETED_CAP = 9
H_PLAN_LEN = 10
H_OFF = 16  # offsets of the regions below, in int64 units
REGIONS = (
    "counters", "drops", "run", "smap", "inst", "book", "touched", "completed", "fstate",
    "params", "ring", "orders", "levels", "omap", "lmap", "mbo_meta", "plan", "events",
    "header",
)
R_COUNTERS, R_DROPS, R_RUN, R_SMAP, R_INST, R_BOOK, R_TOUCHED, R_COMPLETED, R_FSTATE, \
    R_PARAMS, R_RING, R_ORDERS, R_LEVELS, R_OMAP, R_LMAP, R_MBO_META, R_PLAN, R_EVENTS, \
    R_HEADER = range(len(REGIONS))
HEADER_LEN = H_OFF + len(REGIONS) + 5

# run state (int64 [N_RUN])
RUN_N_USED = 0  # instrument rows in use
RUN_N_TOUCHED = 1  # rows touched by the event in progress
RUN_N_COMPLETED = 2  # entries in `completed` since the call started
RUN_LAST_SID = 3  # one-entry cache of the SecurityID -> row lookup
RUN_LAST_ROW = 4
RUN_EVENT_TIME = 5  # latest TransactTime of the event in progress
RUN_EVENT_SEQ = 6  # MsgSeqNum of the row that completed the event
RUN_N_REC = 7  # records written (replay)
RUN_FEATURES = 8  # 1: update features at completion
N_RUN = 16

# replay record (int64): identity + the outright book
RI_SECURITY_ID = 0
RI_SEQ = 1
RI_TIME = 2
RI_ROW = 3
RI_LEVELS = 4  # MAX_DEPTH x [bid_px, bid_qty, bid_orders, ask_px, ask_qty, ask_orders]
REC_I_WIDTH = RI_LEVELS + 6 * MAX_DEPTH
REC_F_WIDTH = 1 + N_FEATURES  # mid, features

_EV_WORDS = MD_EVENT.itemsize // 8
_HDR_WORDS = PACKET_HEADER.itemsize // 8
assert MD_EVENT.itemsize % 8 == 0 and PACKET_HEADER.itemsize % 8 == 0
_RING_WORDS_PER_INSTR_ROW = RING_WIDTH  # float32 count per ring row


class _Layout:
    """Sizes and offsets (int64 units) of every arena region."""

    def __init__(self, n_instr: int, ring_len: int, max_events: int, max_orders: int,
                 plan_len: int) -> None:
        self.n_instr = n_instr
        self.ring_len = ring_len
        self.max_events = max_events
        self.max_orders = max_orders
        self.max_levels = max_orders
        self.smap_cap = _pow2_at_least(2 * n_instr)
        self.omap_cap = _pow2_at_least(2 * max_orders)
        self.lmap_cap = _pow2_at_least(2 * self.max_levels)
        self.completed_cap = max_events + n_instr
        self.plan_len = plan_len
        ring_f32 = n_instr * ring_len * RING_WIDTH
        sizes = {
            "counters": N_MARKET_COUNTERS,
            "drops": max(N_DROP_REASONS, 8),
            "run": N_RUN,
            "smap": self.smap_cap,
            "inst": n_instr * N_INST_FIELDS,
            "book": n_instr * N_BOOK_SIDES * MAX_DEPTH * N_LEVEL_FIELDS,
            "touched": n_instr,
            "completed": self.completed_cap,
            "fstate": n_instr * N_FSTATE,
            "params": N_PARAMS,
            "ring": (ring_f32 + 1) // 2,
            "orders": max_orders * N_ORDER_FIELDS,
            "levels": self.max_levels * N_MLEVEL_FIELDS,
            "omap": 2 * self.omap_cap,
            "lmap": self.lmap_cap,
            "mbo_meta": N_MBO_META,
            "plan": plan_len,
            "events": max_events * _EV_WORDS,
            "header": _HDR_WORDS,
        }
        self.offsets: dict[str, int] = {}
        off = HEADER_LEN
        for name in REGIONS:
            off = (off + 7) & ~7  # 64-byte aligned regions
            self.offsets[name] = off
            off += sizes[name]
        self.sizes = sizes
        self.total = off

    def write_header(self, arena: np.ndarray) -> None:
        arena[H_MAGIC] = np.int64(ARENA_MAGIC)
        arena[H_N_INSTR] = self.n_instr
        arena[H_RING_LEN] = self.ring_len
        arena[H_MAX_EVENTS] = self.max_events
        arena[H_MAX_ORDERS] = self.max_orders
        arena[H_MAX_LEVELS] = self.max_levels
        arena[H_SMAP_CAP] = self.smap_cap
        arena[H_OMAP_CAP] = self.omap_cap
        arena[H_LMAP_CAP] = self.lmap_cap
        arena[H_COMPLETED_CAP] = self.completed_cap
        arena[H_PLAN_LEN] = self.plan_len
        for i, name in enumerate(REGIONS):
            arena[H_OFF + i] = self.offsets[name]


@intrinsic
def _view(typingctx, arena, offset, dtype, shape):
    """C-contiguous array of ``dtype`` and ``shape`` over ``arena``'s data + ``offset``
    int64 words, without a meminfo.

    Why: numba's ``reshape``/``view`` cost ~50-150 ns each (shape checks, refcounts)
    and ``carray`` cannot be used in kernels compiled without the runtime (``_nrt=False``,
    which spares every call its refcount traffic). This builds the array struct
    directly (~1 ns); the view holds no reference and lives only inside a call that
    holds ``arena``.
    """
    dt = dtype.dtype if isinstance(dtype, types.DType) else dtype.instance_type
    ndim = len(shape) if isinstance(shape, types.BaseTuple) else 1
    retty = types.Array(dt, ndim, "C")
    sig = retty(arena, offset, dtype, shape)

    def codegen(context, builder, signature, args):
        i64 = llvm_ir.IntType(64)
        src = make_array(signature.args[0])(context, builder, args[0])
        off = context.cast(builder, args[1], signature.args[1], types.int64)
        addr = builder.add(builder.ptrtoint(src.data, i64),
                           builder.mul(off, llvm_ir.Constant(i64, 8)))
        data = builder.inttoptr(addr, context.get_data_type(dt).as_pointer())
        shape_ty: Any = signature.args[3]
        if isinstance(shape_ty, types.BaseTuple):
            raw = cgutils.unpack_tuple(builder, args[3], ndim)
            tup: Any = shape_ty  # numba's BaseTuple iterates its element types
            elem_types = list(tup)
            dims = [context.cast(builder, raw[k], elem_types[k], types.intp) for k in range(ndim)]
        else:
            dims = [context.cast(builder, args[3], shape_ty, types.intp)]
        itemsize = context.get_abi_sizeof(context.get_data_type(dt))
        strides: list[Any] = []
        acc = llvm_ir.Constant(i64, itemsize)
        for d in reversed(dims):
            strides.insert(0, acc)
            acc = builder.mul(acc, d)
        out = make_array(retty)(context, builder)
        populate_array(out, data=data, shape=dims, strides=strides,
                       itemsize=llvm_ir.Constant(i64, itemsize), meminfo=None)
        return out._getvalue()

    return sig, codegen


@njit(cache=True, inline="always", **NO_NRT)
def _at(arena, r, dtype, shape):
    return _view(arena, arena[H_OFF + r], dtype, shape)  # type: ignore[call-arg]


# positions in the tuple returned by _views
(V_COUNTERS, V_DROPS, V_RUN, V_SMAP, V_INST, V_BOOK, V_TOUCHED, V_COMPLETED, V_FSTATE, V_PARAMS,
 V_RING, V_ORDERS, V_LEVELS, V_OMAP, V_LMAP, V_MBO_META, V_PLAN, V_EVENTS, V_HEADER) = range(19)


@njit(cache=True, inline="always", **NO_NRT)
def _views(arena):
    """Typed views of every region of the arena (no copy, no allocation)."""
    n = arena[H_N_INSTR]
    ring_len = arena[H_RING_LEN]
    max_o = arena[H_MAX_ORDERS]
    max_l = arena[H_MAX_LEVELS]
    i8 = np.int64
    counters = _at(arena, R_COUNTERS, i8, (N_MARKET_COUNTERS,))
    drops = _at(arena, R_DROPS, i8, (N_DROP_REASONS,))
    run = _at(arena, R_RUN, i8, (N_RUN,))
    smap = _at(arena, R_SMAP, i8, (arena[H_SMAP_CAP],))
    inst = _at(arena, R_INST, i8, (n, N_INST_FIELDS))
    book = _at(arena, R_BOOK, i8, (n, N_BOOK_SIDES, MAX_DEPTH, N_LEVEL_FIELDS))
    touched = _at(arena, R_TOUCHED, i8, (n,))
    completed = _at(arena, R_COMPLETED, i8, (arena[H_COMPLETED_CAP],))
    fstate = _at(arena, R_FSTATE, np.float64, (n, N_FSTATE))
    params = _at(arena, R_PARAMS, np.float64, (N_PARAMS,))
    ring = _at(arena, R_RING, np.float32, (n, ring_len, RING_WIDTH))
    orders = _at(arena, R_ORDERS, i8, (max_o, N_ORDER_FIELDS))
    levels = _at(arena, R_LEVELS, i8, (max_l, N_MLEVEL_FIELDS))
    omap = _at(arena, R_OMAP, i8, (arena[H_OMAP_CAP], 2))
    lmap = _at(arena, R_LMAP, i8, (arena[H_LMAP_CAP],))
    mmeta = _at(arena, R_MBO_META, i8, (N_MBO_META,))
    plan = _at(arena, R_PLAN, i8, (arena[H_PLAN_LEN],))
    events = _at(arena, R_EVENTS, MD_EVENT, (arena[H_MAX_EVENTS],))
    header = _at(arena, R_HEADER, PACKET_HEADER, (1,))
    return (counters, drops, run, smap, inst, book, touched, completed, fstate, params, ring,
            orders, levels, omap, lmap, mmeta, plan, events, header)


# --------------------------------------------------------------------------
# instruments
# --------------------------------------------------------------------------
@njit(cache=True, **NO_NRT)
def _init_instrument(inst, book, fstate, params, row, sid, channel):
    for j in range(N_INST_FIELDS):
        inst[row, j] = 0
    inst[row, IS_SECURITY_ID] = sid
    inst[row, IS_CHANNEL] = channel
    inst[row, IS_DEPTH] = MAX_DEPTH
    inst[row, IS_IMPLIED_DEPTH] = IMPLIED_DEPTH
    inst[row, IS_PRICE_EXPONENT] = PRICE9_EXPONENT
    for f in (IS_LAST_TRADE_PX, IS_SESSION_HIGH, IS_SESSION_LOW, IS_OPEN_PRICE, IS_SETTLEMENT,
              IS_OPEN_INTEREST, IS_HIGH_BID, IS_LOW_OFFER, IS_FIXING_PRICE, IS_HIGH_LIMIT,
              IS_LOW_LIMIT, IS_LAST_TRADE_QTY):
        inst[row, f] = _NULL
    inst[row, IS_MBO_HEAD] = -1
    inst[row, IS_SNAPSHOT_KEY] = -1
    _mbp_clear(book, row)
    _sides_cleared(inst, row)
    _init_feature_row(fstate, params, row)


@njit(cache=True, inline="always", **NO_NRT)
def _row_of(smap, inst, book, fstate, params, run, counters, sid, channel, create):
    """Row of SecurityID ``sid``; a new row if unseen and ``create``; -1 if none/full."""
    if sid == run[RUN_LAST_SID]:
        return run[RUN_LAST_ROW]
    mask = smap.size - 1
    i = _mix(sid) & mask
    while True:
        r = smap[i]
        if r == -1:
            break
        if inst[r, IS_SECURITY_ID] == sid:
            run[RUN_LAST_SID] = sid
            run[RUN_LAST_ROW] = r
            return r
        i = (i + 1) & mask
    if not create:
        return -1
    r = run[RUN_N_USED]
    if r >= inst.shape[0]:
        counters[MC_INSTRUMENTS_FULL] += 1
        return -1
    _init_instrument(inst, book, fstate, params, r, sid, channel)
    smap[i] = r
    run[RUN_N_USED] = r + 1
    run[RUN_LAST_SID] = sid
    run[RUN_LAST_ROW] = r
    return r


@njit(cache=True, inline="always", **NO_NRT)
def _touch(inst, touched, run, row):
    if inst[row, IS_DIRTY] == 0:
        inst[row, IS_DIRTY] = 1
        touched[run[RUN_N_TOUCHED]] = row
        run[RUN_N_TOUCHED] += 1


@njit(cache=True, inline="always", **NO_NRT)
def _rpt_ok(inst, counters, row, rpt):
    """RptSeq bookkeeping; False if the row is stale and must be skipped."""
    if rpt == 0 or rpt == 0xFFFFFFFF:
        return True
    last = inst[row, IS_RPT_SEQ]
    if last != 0:
        if rpt <= last:
            inst[row, IS_STALE] += 1
            counters[MC_STALE] += 1
            return False
        if rpt != last + 1:
            inst[row, IS_RPT_GAPS] += 1
            inst[row, IS_GAP_PENDING] = 1
            counters[MC_RPT_GAPS] += 1
    inst[row, IS_RPT_SEQ] = rpt
    return True


@njit(cache=True, **NO_NRT)
def _clear_books(inst, book, orders, levels, omap, lmap, mmeta, row):
    _mbp_clear(book, row)
    _sides_cleared(inst, row)
    _mbo_clear_instrument(orders, levels, omap, lmap, mmeta, inst, row)
    inst[row, IS_RESETS] += 1


@njit(cache=True, **NO_NRT)
def _apply_stat(inst, row, et, px, size, aux, low, action):
    """Session statistics (incremental or snapshot entry). A Delete clears the value."""
    clear = action == MD_DELETE
    v = _NULL if clear else px
    if et == ET_OPENING_PRICE:
        inst[row, IS_OPEN_PRICE] = v
    elif et == ET_SETTLEMENT_PRICE:
        inst[row, IS_SETTLEMENT] = v
        inst[row, IS_SETTLEMENT_FLAGS] = aux
    elif et == ET_SESSION_HIGH:
        inst[row, IS_SESSION_HIGH] = v
    elif et == ET_SESSION_LOW:
        inst[row, IS_SESSION_LOW] = v
    elif et == ET_SESSION_HIGH_BID:
        inst[row, IS_HIGH_BID] = v
    elif et == ET_SESSION_LOW_OFFER:
        inst[row, IS_LOW_OFFER] = v
    elif et == ET_FIXING_PRICE:
        inst[row, IS_FIXING_PRICE] = v
    elif et == ET_OPEN_INTEREST:
        inst[row, IS_OPEN_INTEREST] = _NULL if clear else size
    elif et in (ET_CLEARED_VOLUME, ET_ELECTRONIC_VOLUME):
        inst[row, IS_TOTAL_VOLUME] = 0 if clear else size
    elif et == ET_THRESHOLD_LIMITS:
        inst[row, IS_HIGH_LIMIT] = v
        inst[row, IS_LOW_LIMIT] = _NULL if clear else low
    else:
        return False
    return True


@njit(cache=True, inline="always", **NO_NRT)
def _book_side(et):
    if et == ET_BID:
        return BOOK_BID
    if et == ET_OFFER:
        return BOOK_ASK
    if et == ET_IMPLIED_BID:
        return BOOK_IMPLIED_BID
    if et == ET_IMPLIED_OFFER:
        return BOOK_IMPLIED_ASK
    return -1


@njit(cache=True, inline="always", **NO_NRT)
def _qty(v):
    return 0 if v == _NULL else v


@njit(cache=True, inline="always", **NO_NRT)
def _apply_row(e, channel, v):
    """Apply one MD_EVENT row ``e`` to the books/state (no completion here), given the
    arena's views (built once per call of the row loop)."""
    counters = v[V_COUNTERS]
    run = v[V_RUN]
    smap = v[V_SMAP]
    inst = v[V_INST]
    book = v[V_BOOK]
    touched = v[V_TOUCHED]
    fstate = v[V_FSTATE]
    params = v[V_PARAMS]
    orders = v[V_ORDERS]
    levels = v[V_LEVELS]
    omap = v[V_OMAP]
    lmap = v[V_LMAP]
    mmeta = v[V_MBO_META]
    kind = e.kind
    if kind == EV_BOOK:
        row = _row_of(smap, inst, book, fstate, params, run, counters, np.int64(e.security_id),
                      channel, True)
        if row < 0:
            return
        if not _rpt_ok(inst, counters, row, np.int64(e.rpt_seq)):
            return
        et = e.entry_type
        _touch(inst, touched, run, row)
        inst[row, IS_UPDATES] += 1
        if et == ET_BOOK_RESET:
            _clear_books(inst, book, orders, levels, omap, lmap, mmeta, row)
            return
        side = _book_side(et)
        px = e.price
        if side < 0 or (px == _NULL and e.action != MD_DELETE):
            counters[MC_BAD_VALUE] += 1
            return
        inst[row, IS_PRICE_EXPONENT] = e.price_exponent
        no = np.int64(e.num_orders)
        if no == _NULL_NUM_ORDERS:
            no = np.int64(0)
        level = np.int64(e.price_level)
        action = np.int64(e.action)
        qty = _qty(e.size)
        if side <= BOOK_ASK:
            rc = _mbp_apply_outright(book, inst, row, side, level, action, px, qty, no,
                                     inst[row, IS_DEPTH])
        else:
            rc = _mbp_apply(book, row, side, level, action, px, qty, no,
                            inst[row, IS_IMPLIED_DEPTH])
            if rc == APPLY_OK:
                _implied_written(inst, row)
        if rc != APPLY_OK:
            if rc == APPLY_BAD_LEVEL:
                inst[row, IS_BAD_LEVEL] += 1
                counters[MC_BAD_LEVEL] += 1
            else:
                counters[MC_BAD_VALUE] += 1
    elif kind in (EV_ORDER, EV_ORDER_REF):
        row = _row_of(smap, inst, book, fstate, params, run, counters, np.int64(e.security_id),
                      channel, True)
        if row < 0:
            return
        et = e.entry_type
        _touch(inst, touched, run, row)
        inst[row, IS_UPDATES] += 1
        if et == ET_BOOK_RESET:
            _mbo_clear_instrument(orders, levels, omap, lmap, mmeta, inst, row)
            return
        if et == ET_BID:
            side = 0
        elif et == ET_OFFER:
            side = 1
        else:
            counters[MC_BAD_VALUE] += 1
            return
        rc = _mbo_apply(orders, levels, omap, lmap, mmeta, inst, row, np.int64(e.order_id),
                        side, e.price, _qty(e.size), e.aux, np.int64(e.action))
        if rc == 1:
            counters[MC_MBO_UNKNOWN_ORDER] += 1
        elif rc == 2:
            counters[MC_MBO_POOL_FULL] += 1
        elif rc == 3:
            counters[MC_BAD_VALUE] += 1
    elif kind == EV_TRADE:
        row = _row_of(smap, inst, book, fstate, params, run, counters, np.int64(e.security_id),
                      channel, True)
        if row < 0:
            return
        if not _rpt_ok(inst, counters, row, np.int64(e.rpt_seq)):
            return
        _touch(inst, touched, run, row)
        if e.action == MD_NEW and e.price != _NULL:
            q = _qty(e.size)
            inst[row, IS_LAST_TRADE_PX] = e.price
            inst[row, IS_LAST_TRADE_QTY] = q
            inst[row, IS_LAST_TRADE_SIDE] = e.side
            t = np.int64(e.transact_time)
            if t != _U64_NULL_AS_I64 and t != 0:
                inst[row, IS_LAST_TRADE_TIME] = t
            inst[row, IS_TRADE_VOLUME] += q
            inst[row, IS_TRADES] += 1
            _on_trade_flow(fstate, row, q, np.int64(e.side))
    elif kind == EV_VOLUME:
        row = _row_of(smap, inst, book, fstate, params, run, counters, np.int64(e.security_id),
                      channel, True)
        if row < 0:
            return
        if not _rpt_ok(inst, counters, row, np.int64(e.rpt_seq)):
            return
        _touch(inst, touched, run, row)
        inst[row, IS_TOTAL_VOLUME] = _qty(e.size)
    elif kind == EV_STAT:
        row = _row_of(smap, inst, book, fstate, params, run, counters, np.int64(e.security_id),
                      channel, True)
        if row < 0:
            return
        if not _rpt_ok(inst, counters, row, np.int64(e.rpt_seq)):
            return
        _touch(inst, touched, run, row)
        _apply_stat(inst, row, e.entry_type, e.price, e.size, e.aux, np.int64(e.order_id),
                    np.int64(e.action))
    elif kind == EV_STATUS:
        sid = np.int64(e.security_id)
        if sid == 0:
            counters[MC_GROUP_STATUS] += 1
            return
        row = _row_of(smap, inst, book, fstate, params, run, counters, sid, channel, True)
        if row < 0:
            return
        _touch(inst, touched, run, row)
        if e.aux != 0xFF:
            inst[row, IS_TRADING_STATUS] = e.aux
        inst[row, IS_TRADING_EVENT] = e.size
        inst[row, IS_HALT_REASON] = e.price_level
    elif kind == EV_CHANNEL_RESET:
        appl = e.aux
        counters[MC_CHANNEL_RESETS] += 1
        for row in range(run[RUN_N_USED]):
            ch = inst[row, IS_CHANNEL]
            if ch == appl or ch < 0 or appl < 0 or appl == _NULL:
                _clear_books(inst, book, orders, levels, omap, lmap, mmeta, row)
                inst[row, IS_RPT_SEQ] = 0
                inst[row, IS_GAP_PENDING] = 0
                _touch(inst, touched, run, row)
    elif kind == EV_SNAPSHOT:
        row = _row_of(smap, inst, book, fstate, params, run, counters, np.int64(e.security_id),
                      channel, True)
        if row < 0:
            return
        _touch(inst, touched, run, row)
        tid = e.template_id
        if tid in (_MBO_SNAPSHOT_A, _MBO_SNAPSHOT_B):
            # chunks of one MBO snapshot share LastMsgSeqNumProcessed; rpt_seq = CurrentChunk
            key = e.aux
            if e.rpt_seq == 1 or key != inst[row, IS_SNAPSHOT_KEY]:
                _mbo_clear_instrument(orders, levels, omap, lmap, mmeta, inst, row)
                inst[row, IS_SNAPSHOT_KEY] = key
                inst[row, IS_SNAPSHOTS] += 1
                counters[MC_SNAPSHOTS] += 1
        elif tid != _TOP_ORDERS_SNAPSHOT:
            _mbp_clear(book, row)
            _sides_cleared(inst, row)
            rpt = np.int64(e.rpt_seq)
            if rpt != 0xFFFFFFFF:
                inst[row, IS_RPT_SEQ] = rpt
            inst[row, IS_GAP_PENDING] = 0
            inst[row, IS_SNAPSHOTS] += 1
            counters[MC_SNAPSHOTS] += 1
            if e.price_level != 0xFF:
                inst[row, IS_TRADING_STATUS] = e.price_level
            if e.price != _NULL:
                inst[row, IS_HIGH_LIMIT] = e.price
            if np.int64(e.order_id) != _NULL:
                inst[row, IS_LOW_LIMIT] = np.int64(e.order_id)
    elif kind == EV_SNAPSHOT_ENTRY:
        tid = e.template_id
        if tid == _TOP_ORDERS_SNAPSHOT:
            return
        row = _row_of(smap, inst, book, fstate, params, run, counters, np.int64(e.security_id),
                      channel, True)
        if row < 0:
            return
        _touch(inst, touched, run, row)
        et = e.entry_type
        if tid in (_MBO_SNAPSHOT_A, _MBO_SNAPSHOT_B):
            if et in (ET_BID, ET_OFFER):
                rc = _mbo_apply(orders, levels, omap, lmap, mmeta, inst, row,
                                np.int64(e.order_id), 0 if et == ET_BID else 1, e.price,
                                _qty(e.size), e.aux, MD_NEW)
                if rc == 2:
                    counters[MC_MBO_POOL_FULL] += 1
            return
        side = _book_side(et)
        if side >= 0:
            if e.price == _NULL:
                counters[MC_BAD_VALUE] += 1
                return
            inst[row, IS_PRICE_EXPONENT] = e.price_exponent
            no = np.int64(e.num_orders)
            if no == _NULL_NUM_ORDERS:
                no = np.int64(0)
            depth = inst[row, IS_DEPTH] if side <= BOOK_ASK else inst[row, IS_IMPLIED_DEPTH]
            if _mbp_set_level(book, row, side, np.int64(e.price_level), e.price, _qty(e.size),
                              no, depth) != APPLY_OK:
                inst[row, IS_BAD_LEVEL] += 1
                counters[MC_BAD_LEVEL] += 1
            elif side <= BOOK_ASK:
                _side_unclean(inst, row, side)  # rescanned at the snapshot's end
            else:
                _implied_written(inst, row)
        elif et == ET_TRADE:
            if e.price != _NULL:
                inst[row, IS_LAST_TRADE_PX] = e.price
                inst[row, IS_LAST_TRADE_QTY] = _qty(e.size)
        else:
            _apply_stat(inst, row, et, e.price, e.size, e.aux, np.int64(e.order_id), MD_NEW)


@njit(cache=True, **NO_NRT)
def _finish_event_slow_at(arena, row, depth, check_cross):
    v = _views(arena)
    return _finish_event_slow(v[V_BOOK], v[V_INST], row, depth, check_cross)


@njit(cache=True, **NO_NRT)
def _update_features_at(arena, row, t):
    v = _views(arena)
    _update_features(v[V_BOOK], v[V_INST], v[V_FSTATE], v[V_PARAMS], v[V_RING], row, t)


@njit(cache=True, inline="always", **NO_NRT)
def _complete_event(v, arena, rec_i, rec_f):
    """Event boundary: consolidate, check, update features of every touched instrument.

    Inlined into the row loop; the calls out of it (the slow boundary, features) take
    the arena, not a dozen views (numba passes each array as ~13 scalars)."""
    counters = v[V_COUNTERS]
    run = v[V_RUN]
    inst = v[V_INST]
    book = v[V_BOOK]
    touched = v[V_TOUCHED]
    completed = v[V_COMPLETED]
    fstate = v[V_FSTATE]
    nt = run[RUN_N_TOUCHED]
    t = run[RUN_EVENT_TIME]
    seq = run[RUN_EVENT_SEQ]
    do_features = run[RUN_FEATURES] != 0
    counters[MC_EVENTS] += 1
    for k in range(nt):
        row = touched[k]
        inst[row, IS_DIRTY] = 0
        depth = inst[row, IS_DEPTH]
        st = inst[row, IS_TRADING_STATUS]
        check_cross = st != TS_PRE_OPEN and st != TS_PRE_CROSS and st != TS_CROSS
        bits = _finish_event_fast(book, inst, row, check_cross)
        if bits < 0:
            bits = _finish_event_slow_at(arena, row, depth, check_cross)
        if bits != 0:
            counters[MC_VIOLATIONS] += 1
            if bits & INV_CROSSED:
                inst[row, IS_VIOL_CROSSED] += 1
            if bits & INV_UNSORTED:
                inst[row, IS_VIOL_UNSORTED] += 1
            if bits & INV_NEGATIVE:
                inst[row, IS_VIOL_NEGATIVE] += 1
        inst[row, IS_EVENTS] += 1
        if t != 0:
            inst[row, IS_LAST_TIME] = t
        inst[row, IS_LAST_MSG_SEQ] = seq
        if do_features:
            _update_features_at(arena, row, t)
        c = run[RUN_N_COMPLETED]
        if c < completed.shape[0]:
            completed[c] = row
            run[RUN_N_COMPLETED] = c + 1
        else:
            counters[MC_COMPLETED_FULL] += 1
        r = run[RUN_N_REC]
        if r < rec_i.shape[0]:
            rec_i[r, RI_SECURITY_ID] = inst[row, IS_SECURITY_ID]
            rec_i[r, RI_SEQ] = seq
            rec_i[r, RI_TIME] = inst[row, IS_LAST_TIME]
            rec_i[r, RI_ROW] = row
            for lv in range(MAX_DEPTH if rec_i.shape[1] >= REC_I_WIDTH else 0):
                b = RI_LEVELS + 6 * lv
                rec_i[r, b] = book[row, BOOK_BID, lv, LV_PX]
                rec_i[r, b + 1] = book[row, BOOK_BID, lv, LV_QTY]
                rec_i[r, b + 2] = book[row, BOOK_BID, lv, LV_ORDERS]
                rec_i[r, b + 3] = book[row, BOOK_ASK, lv, LV_PX]
                rec_i[r, b + 4] = book[row, BOOK_ASK, lv, LV_QTY]
                rec_i[r, b + 5] = book[row, BOOK_ASK, lv, LV_ORDERS]
            rec_f[r, 0] = fstate[row, FS_MID_NOW]
            for j in range(N_FEATURES):
                rec_f[r, 1 + j] = fstate[row, FS_FEATURES + j]
            run[RUN_N_REC] = r + 1
    run[RUN_N_TOUCHED] = 0
    run[RUN_EVENT_TIME] = 0


@njit(cache=True, **NO_NRT)
def _run_rows(events, lo, hi, channel, arena, rec_i, rec_f):
    """Apply ``events[lo:hi]``, completing events at their boundaries."""
    v = _views(arena)
    run = v[V_RUN]
    for i in range(lo, hi):
        e = events[i]
        _apply_row(e, channel, v)
        t = np.int64(e.transact_time)
        if t != 0 and t != _U64_NULL_AS_I64:
            run[RUN_EVENT_TIME] = t
        f = e.flags
        if (f & FLAG_END_OF_EVENT) or ((f & FLAG_LAST_IN_MSG) and (
                e.kind == EV_SNAPSHOT or e.kind == EV_SNAPSHOT_ENTRY)):
            run[RUN_EVENT_SEQ] = e.msg_seq
            if run[RUN_N_TOUCHED] > 0:
                _complete_event(v, arena, rec_i, rec_f)
    v[V_COUNTERS][MC_ROWS] += hi - lo


@njit(cache=True, **NO_NRT)
def _apply_events(events, n, channel, arena, rec_i, rec_f):
    """Batch path (replay, benchmarks): apply ``events[:n]``; return completed count."""
    v = _views(arena)
    run = v[V_RUN]
    run[RUN_N_COMPLETED] = 0
    _run_rows(events, 0, n, channel, arena, rec_i, rec_f)
    return run[RUN_N_COMPLETED]


@njit(cache=True, **NO_NRT)
def _instrument_row(arena, sid, channel, create):
    v = _views(arena)
    return _row_of(v[V_SMAP], v[V_INST], v[V_BOOK], v[V_FSTATE], v[V_PARAMS], v[V_RUN],
                   v[V_COUNTERS], sid, channel, create)


@njit(cache=True, **NO_NRT)
def _arena_queue_ahead(arena, order_id):
    v = _views(arena)
    return _queue_ahead(v[V_ORDERS], v[V_LEVELS], v[V_OMAP], order_id)


# --------------------------------------------------------------------------
# facade
# --------------------------------------------------------------------------
_SIDE_NAMES = {"bid": 0, "ask": 1, "implied_bid": 2, "implied_ask": 3, "cons_bid": 4,
               "cons_ask": 5}


class MarketState:
    """Every book, instrument state, feature and ring buffer of the process, preallocated.

    ``on_packet(buf, n, channel)`` decodes one MDP packet and applies it (the fused
    kernel); ``apply_events(events)`` applies already-decoded rows (replay). For the
    lowest overhead the hot loop calls ``_on_packet(buf, n, channel, state.arena)``
    itself. ``completed`` (after a call) lists the instrument rows that completed an
    event in it.
    """

    def __init__(self, max_instruments: int = 256, ring_len: int = 100,
                 max_events: int = 4096, max_orders: int = 1 << 16,
                 params: np.ndarray | None = None, plan: np.ndarray | None = None) -> None:
        if max_instruments < 1:
            raise ValueError("max_instruments must be >= 1")
        if ring_len < 0 or max_events < 1 or max_orders < 1:
            raise ValueError("ring_len >= 0, max_events >= 1 and max_orders >= 1 required")
        if plan is None:
            plan = _default_plan()
        plan = np.ascontiguousarray(plan, dtype=np.int64)
        lay = _Layout(max_instruments, ring_len, max_events, max_orders, plan.size)
        self.layout = lay
        # written, not just allocated: every page is faulted in now, not in the hot path
        self.arena = np.empty(lay.total, dtype=np.int64)
        self.arena.fill(0)
        lay.write_header(self.arena)
        a = self.arena

        def region(name: str) -> np.ndarray:
            o = lay.offsets[name]
            return a[o:o + lay.sizes[name]]

        n = max_instruments
        self.counters = region("counters")
        self.drops = region("drops")[:N_DROP_REASONS]
        self.run = region("run")
        self.smap = region("smap")
        self.inst = region("inst").reshape(n, N_INST_FIELDS)
        self.book = region("book").reshape(n, N_BOOK_SIDES, MAX_DEPTH, N_LEVEL_FIELDS)
        self.touched = region("touched")
        self.completed_rows = region("completed")
        self.fstate = region("fstate").view(np.float64).reshape(n, N_FSTATE)
        self.params = region("params").view(np.float64)
        self.ring = region("ring").view(np.float32)[:n * ring_len * RING_WIDTH].reshape(
            n, ring_len, RING_WIDTH)
        self.orders = region("orders").reshape(max_orders, N_ORDER_FIELDS)
        self.levels = region("levels").reshape(lay.max_levels, N_MLEVEL_FIELDS)
        self.omap = region("omap").reshape(lay.omap_cap, 2)
        self.lmap = region("lmap")
        self.mbo_meta = region("mbo_meta")
        self.plan = region("plan")
        self.events = region("events").view(MD_EVENT)
        self.header = region("header").view(PACKET_HEADER)
        self.features = self.fstate[:, FS_FEATURES:FS_FEATURES + N_FEATURES]
        self.plan[:] = plan
        self.params[:] = make_params() if params is None else params
        self.smap[:] = -1
        self.run[RUN_LAST_SID] = _NO_SID
        self.run[RUN_FEATURES] = 1
        init_mbo_arrays(self.orders, self.levels, self.omap, self.lmap, self.mbo_meta)
        self._empty_rec_i = np.zeros((0, REC_I_WIDTH), dtype=np.int64)
        self._empty_rec_f = np.zeros((0, REC_F_WIDTH), dtype=np.float64)

    # -- instruments -------------------------------------------------------
    @property
    def n_instruments(self) -> int:
        return int(self.run[RUN_N_USED])

    def row(self, security_id: int) -> int | None:
        r = int(_instrument_row(self.arena, np.int64(security_id), np.int64(-1), False))
        return None if r < 0 else r

    def add_instrument(self, security_id: int, depth: int = MAX_DEPTH, tick: int = 0,
                       channel: int = -1, implied_depth: int = IMPLIED_DEPTH,
                       price_exponent: int = PRICE9_EXPONENT,
                       vpin_bucket: float | None = None) -> int:
        """Register (or update) an instrument from its definition; returns its row."""
        if not 1 <= depth <= MAX_DEPTH:
            raise ValueError(f"depth must be in 1..{MAX_DEPTH}, not {depth}")
        if not 0 <= implied_depth <= IMPLIED_DEPTH:
            raise ValueError(f"implied_depth must be in 0..{IMPLIED_DEPTH}")
        r = int(_instrument_row(self.arena, np.int64(security_id), np.int64(channel), True))
        if r < 0:
            raise OverflowError("instrument table full")
        self.inst[r, IS_DEPTH] = depth
        # a new depth: the book has no levels past it; rescan both sides at the next event
        self.book[r, BOOK_BID:BOOK_ASK + 1, depth:, LV_PX] = NULL_I64
        self.book[r, BOOK_BID:BOOK_ASK + 1, depth:, LV_QTY:] = 0
        self.inst[r, IS_BID_CLEAN + BOOK_BID] = -1
        self.inst[r, IS_BID_CLEAN + BOOK_ASK] = -1
        self.inst[r, IS_SIDES_TOUCHED] = (1 << BOOK_BID) | (1 << BOOK_ASK)
        self.inst[r, IS_IMPLIED_DEPTH] = max(implied_depth, 1)
        self.inst[r, IS_TICK] = max(int(tick), 0)
        self.inst[r, IS_PRICE_EXPONENT] = price_exponent
        if channel >= 0:
            self.inst[r, IS_CHANNEL] = channel
        if vpin_bucket is not None:
            from core.features import FS_VPIN_BUCKET
            if vpin_bucket <= 0:
                raise ValueError("vpin_bucket must be > 0")
            self.fstate[r, FS_VPIN_BUCKET] = float(vpin_bucket)
        return r

    def add_instruments_from(self, table: Any) -> int:
        """Register every instrument of a ``core.sbe.instruments.InstrumentTable``-like
        object (iterable of INSTRUMENT rows, or with ``.rows``/``.array``)."""
        rows = _instrument_rows(table)
        for rec in rows:
            depth = int(rec["outright_depth"]) or MAX_DEPTH
            self.add_instrument(int(rec["security_id"]), depth=min(depth, MAX_DEPTH),
                                tick=int(rec["min_price_increment"]),
                                channel=int(rec["appl_id"]) if int(rec["appl_id"]) > 0 else -1,
                                implied_depth=min(int(rec["implied_depth"]) or IMPLIED_DEPTH,
                                                  IMPLIED_DEPTH),
                                price_exponent=int(rec["price_exponent"]) or PRICE9_EXPONENT)
        return len(rows)

    # -- applying ----------------------------------------------------------
    def on_packet(self, buf: np.ndarray, n: int, channel: int = -1) -> int:
        """Decode + apply + features for one packet; returns the completed count."""
        return int(_on_packet(buf, n, channel, self.arena))

    def bind_on_packet(self) -> Any:
        """The compiled entry point of ``_on_packet`` for C-contiguous uint8 buffers:
        ``fn(buf, n, channel, arena)`` without numba's per-call type dispatch (~100 ns
        less). The hot loop binds it once at start-up."""
        sig = (types.Array(types.uint8, 1, "C"), types.int64, types.int64,
               types.Array(types.int64, 1, "C"))
        return _on_packet.compile(sig)

    def apply_events(self, events: np.ndarray, channel: int = -1, record: bool = False,
                     features: bool = True, levels: bool = True) -> Any:
        """Apply decoded MD_EVENT rows. ``record=True`` returns one record per completed
        event per changed instrument (``records_dict``; ``levels=False`` leaves the
        outright book out of it); otherwise the number of completed (event, instrument)
        pairs."""
        if events.dtype != MD_EVENT:
            raise TypeError("events must have dtype MD_EVENT")
        events = np.ascontiguousarray(events)
        self.run[RUN_FEATURES] = 1 if features else 0
        if record:
            cap = _record_capacity(events, self.inst.shape[0])
            rec_i = np.zeros((cap, REC_I_WIDTH if levels else RI_LEVELS), dtype=np.int64)
            rec_f = np.zeros((cap, REC_F_WIDTH), dtype=np.float64)
        else:
            rec_i, rec_f = self._empty_rec_i, self._empty_rec_f
        self.run[RUN_N_REC] = 0
        k = int(_apply_events(events, events.size, channel, self.arena, rec_i, rec_f))
        self.run[RUN_FEATURES] = 1
        if not record:
            return k
        m = int(self.run[RUN_N_REC])
        return records_dict(rec_i[:m], rec_f[:m])

    def completed(self) -> np.ndarray:
        """Rows that completed an event during the last call (copy)."""
        return self.completed_rows[:int(self.run[RUN_N_COMPLETED])].copy()

    # -- reading (not hot) ---------------------------------------------------
    def _row_or_raise(self, security_id: int) -> int:
        r = self.row(security_id)
        if r is None:
            raise KeyError(f"unknown security_id {security_id}")
        return r

    def levels_of(self, security_id: int, side: str = "bid") -> list[tuple[int, int, int] | None]:
        """Levels of one side (``bid``, ``ask``, ``implied_bid``, ``implied_ask``,
        ``cons_bid``, ``cons_ask``) as (px, qty, orders); None for a blank level."""
        r = self._row_or_raise(security_id)
        s = _SIDE_NAMES[side]
        if s <= 1:
            depth = int(self.inst[r, IS_DEPTH])
        elif s <= 3:
            depth = int(self.inst[r, IS_IMPLIED_DEPTH])
        else:
            depth = MAX_DEPTH
        out: list[tuple[int, int, int] | None] = []
        for i in range(depth):
            px, q, o = (int(x) for x in self.book[r, s, i])
            out.append(None if px == NULL_I64 else (px, q, o))
        return out

    def rpt_seq(self, security_id: int) -> int:
        return int(self.inst[self._row_or_raise(security_id), IS_RPT_SEQ])

    def queue_ahead(self, order_id: int) -> tuple[int, int] | None:
        """(quantity, orders) ahead of ``order_id`` in its price level's queue."""
        q, c = _arena_queue_ahead(self.arena, _as_id(order_id))
        return None if q < 0 else (int(q), int(c))

    def mbo_side(self, security_id: int, side: str = "bid") -> list[Any]:
        r = self._row_or_raise(security_id)
        return mbo_levels(self.orders, self.levels, self.inst, r, 0 if side == "bid" else 1)

    def window(self, security_id: int) -> np.ndarray:
        """The ring rows of an instrument, oldest first (float32 [count, RING_WIDTH])."""
        r = self._row_or_raise(security_id)
        n = int(self.inst[r, IS_RING_COUNT])
        h = int(self.inst[r, IS_RING_HEAD])
        L = self.ring.shape[1]
        if n == 0 or L == 0:
            return np.zeros((0, RING_WIDTH), dtype=np.float32)
        idx = (np.arange(h - n, h) % L)
        return self.ring[r, idx].copy()

    def counter_dict(self) -> dict[str, int]:
        return {name: int(self.counters[i]) for i, name in enumerate(MARKET_COUNTER_NAMES)}

    def violations(self, security_id: int) -> dict[str, int]:
        r = self._row_or_raise(security_id)
        return {"crossed": int(self.inst[r, IS_VIOL_CROSSED]),
                "unsorted": int(self.inst[r, IS_VIOL_UNSORTED]),
                "negative": int(self.inst[r, IS_VIOL_NEGATIVE])}


def _record_capacity(events: np.ndarray, n_instr: int) -> int:
    """Upper bound of the completions ``events`` can produce: each needs a row that
    touches its instrument, except a ChannelReset, which touches every instrument, and
    an event left open by an earlier call."""
    kinds = events["kind"]
    touching = int(np.count_nonzero(
        (kinds != EV_NONE) & (kinds != EV_HEARTBEAT) & (kinds != EV_DEFINITION)
        & (kinds != EV_OTHER) & (kinds != EV_TRADE_ORDER)))
    n_resets = int(np.count_nonzero(kinds == EV_CHANNEL_RESET))
    return touching + (n_resets + 1) * n_instr


def records_dict(rec_i: np.ndarray, rec_f: np.ndarray) -> dict[str, np.ndarray]:
    """Records of ``apply_events(record=True)`` as named arrays."""
    levels = rec_i[:, RI_LEVELS:].reshape(-1, MAX_DEPTH, 6) if rec_i.shape[1] >= REC_I_WIDTH \
        else np.zeros((rec_i.shape[0], 0, 6), dtype=np.int64)
    return {
        "security_id": rec_i[:, RI_SECURITY_ID].astype(np.int32),
        "seq": rec_i[:, RI_SEQ].astype(np.uint32),
        "time": rec_i[:, RI_TIME].astype(np.uint64),
        "row": rec_i[:, RI_ROW].copy(),
        # [m, 10, (bid_px, bid_qty, bid_orders, ask_px, ask_qty, ask_orders)]
        "levels": levels.copy(),
        "mid": rec_f[:, 0].copy(),
        "features": rec_f[:, 1:].astype(np.float32),
    }


def _instrument_rows(table: Any) -> Any:
    index = getattr(table, "index", None)
    if isinstance(index, dict) and isinstance(getattr(table, "rows", None), np.ndarray):
        return table.rows[sorted(index.values())]
    for attr in ("array", "rows", "table"):
        v = getattr(table, attr, None)
        if isinstance(v, np.ndarray):
            return v
    return list(table)


def _default_plan() -> np.ndarray:
    from core.sbe.mdp3 import default_plan

    return default_plan()


# --------------------------------------------------------------------------
# the fused per-packet kernel
# --------------------------------------------------------------------------
from core.sbe.mdp3 import _decode_packet  # noqa: E402  (after the helpers it composes)


@njit(cache=True, **NO_NRT)
def _on_packet(buf, n, channel, arena):
    """Decode one MDP packet, apply it, update features of completed events.

    Returns how many (event, instrument) completions the packet produced; their rows
    are ``completed[:k]`` of the arena. Malformed input is counted in the decoder's
    drops; nothing raises.
    """
    v = _views(arena)
    run = v[V_RUN]
    v[V_COUNTERS][MC_PACKETS] += 1
    run[RUN_N_COMPLETED] = 0
    events = v[V_EVENTS]
    k = _decode_packet(buf, n, v[V_PLAN], events, 0, v[V_DROPS], v[V_HEADER])
    # zero-row record views: nothing recorded, nothing allocated on the hot path
    rec_i = _at(arena, R_COUNTERS, np.int64, (0, REC_I_WIDTH))
    rec_f = _at(arena, R_COUNTERS, np.float64, (0, REC_F_WIDTH))
    _run_rows(events, 0, k, channel, arena, rec_i, rec_f)
    return run[RUN_N_COMPLETED]


@njit(cache=True, **NO_NRT)
def _on_packets(buf, offsets, channel, arena):
    """``_on_packet`` over the packets ``buf[offsets[i]:offsets[i+1]]`` in one call
    (replay, benchmarks); returns the total completions."""
    total = 0
    for i in range(offsets.size - 1):
        a = offsets[i]
        b = offsets[i + 1]
        total += _on_packet(buf[a:b], b - a, channel, arena)
    return total
