"""MDP 3.0 incremental encoder of the venue: matching-engine records -> packets, in one njit call.

The generic codec (``core.sbe.codec``) encodes any message from a dict at ~30-100 us
a message; the venue publishes every book change of every background order, so
the incremental path is this kernel instead. Every offset, size, block length
and null value comes from the official schema layouts (``core.sbe.schema``),
read once at import into two small int64 tables; none is typed here. The
kernel's bytes are checked equal to the generic encoder's in the tests.

Input: ``MATCH_MD`` rows (``core.matching``), one *event* per command: the rows
of one ``cmd_index`` run. For each event, as CME orders them:

* ``MDIncrementalRefreshTradeSummary48``: one entry per (instrument, price)
  matched, aggregated (size, NumberOfOrders = makers + the aggressor,
  AggressorSide, MDTradeEntryID = the first match's trade id); its order-ID
  group lists the aggressor (its quantity at that price) then each maker.
  ``summary_of[trade_id & SUMMARY_MASK]`` records the summary entry of every
  match, so the execution reports quote the MDTradeEntryID of the market data.
* ``MDIncrementalRefreshVolume37``: the session volume of each instrument traded.
* ``MDIncrementalRefreshOrderBook47`` (MBO): order changes that have no MBP entry
  of their own: makers hit by a trade (as in CME's captures), orders at a level
  beyond the MBP depth, and both changes of an order a modify moved to another
  price (so that a client applies its Delete before its New: 47 comes first).
* ``MDIncrementalRefreshBook46``: the MBP level changes within the instrument's
  depth (New/Change/Delete at MDPriceLevel; a level revealed at the bottom after
  a delete is a New there), with the order-ID group (MBO) of the other order
  changes, each pointing at its level entry by ReferenceID.

RptSeq per instrument (+1 per 46/48/37 entry); MatchEventIndicator: LastTradeMsg
on the last 48, LastVolumeMsg on the 37, LastQuoteMsg on the last 47 and the
last 46, EndOfEvent on the event's last message. Messages are chunked so that
none exceeds a packet, and packed greedily into packets of at most
``max_packet`` bytes (12-byte header: MsgSeqNum, SendingTime), across events.
A packet stays open until ``close_packet`` (the publisher closes it before
sending), so a burst of events shares packets as on CME.

Nothing raises inside the kernel: a full packet buffer drops the message and is
counted (``R_OVERFLOW``); the skipped RptSeq tells clients to recover.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
from numba import njit

from core.sbe.schema import FieldLayout, GroupLayout, MessageLayout, Schema, bundled_schema
from core.types import (
    MATCH_MD,
    MD_DELETE,
    MD_NEW,
    MD_NO_ORDER_ACTION,
    MEI_END_OF_EVENT,
    MEI_LAST_QUOTE_MSG,
    MEI_LAST_TRADE_MSG,
    MEI_LAST_VOLUME_MSG,
    MMD_BOOK,
    MMD_REVEAL,
    MMD_TRADE,
    SIDE_BUY,
)

__all__ = [
    "MDP_SCHEMA_ID",
    "PACKET_HEADER",
    "SUMMARY_MASK",
    "IncrementalEncoder",
    "layout_tables",
]

MDP_SCHEMA_ID = 1
PACKET_HEADER = 12  # MsgSeqNum u32 + SendingTime u64
MSG_SIZE_FIELD = 2  # MsgSize u16, counts itself
MAX_IN_GROUP = 255  # numInGroup is a uint8 in every group used here
SUMMARY_MASK = (1 << 16) - 1
ENTRY_BID = ord("0")
ENTRY_OFFER = ord("1")

# --------------------------------------------------------------------------
# Field table: fld[F, 0] = offset in its block (or in the SBE header), fld[F, 1] = size
# --------------------------------------------------------------------------
(H_BL, H_TID, H_SID, H_VER,
 B_TT, B_MEI, B_PX, B_SIZE, B_SID, B_RPT, B_NORD, B_LEVEL, B_ACTION, B_TYPE,
 B_OID, B_PRIO, B_DQTY, B_REF, B_OACT,
 O_TT, O_MEI, O_OID, O_PRIO, O_PX, O_DQTY, O_SID, O_ACTION, O_TYPE,
 T_TT, T_MEI, T_PX, T_SIZE, T_SID, T_RPT, T_NORD, T_AGG, T_ACTION, T_TRADE_ID, T_OID,
 T_LAST_QTY,
 V_TT, V_MEI, V_SIZE, V_SID, V_RPT, V_ACTION,
 N_FIELDS) = range(47)

TPL_46, TPL_47, TPL_48, TPL_37 = range(4)
TEMPLATE_IDS = (46, 47, 48, 37)

# Template table columns: tinfo[TPL_x, TI_*]
(TI_ID, TI_BLOCK, TI_ROOT_DEF,
 TI_G1_DIM, TI_G1_BL_OFF, TI_G1_BL_SIZE, TI_G1_NUM_OFF, TI_G1_NUM_SIZE, TI_G1_ENTRY, TI_G1_DEF,
 TI_G2_DIM, TI_G2_BL_OFF, TI_G2_BL_SIZE, TI_G2_NUM_OFF, TI_G2_NUM_SIZE, TI_G2_ENTRY, TI_G2_DEF,
 N_TI) = range(18)

# (field constant, template index, group (0 root, 1 first, 2 second), schema field name)
_FIELDS: tuple[tuple[int, int, int, str], ...] = (
    (B_TT, TPL_46, 0, "TransactTime"), (B_MEI, TPL_46, 0, "MatchEventIndicator"),
    (B_PX, TPL_46, 1, "MDEntryPx"), (B_SIZE, TPL_46, 1, "MDEntrySize"),
    (B_SID, TPL_46, 1, "SecurityID"), (B_RPT, TPL_46, 1, "RptSeq"),
    (B_NORD, TPL_46, 1, "NumberOfOrders"), (B_LEVEL, TPL_46, 1, "MDPriceLevel"),
    (B_ACTION, TPL_46, 1, "MDUpdateAction"), (B_TYPE, TPL_46, 1, "MDEntryType"),
    (B_OID, TPL_46, 2, "OrderID"), (B_PRIO, TPL_46, 2, "MDOrderPriority"),
    (B_DQTY, TPL_46, 2, "MDDisplayQty"), (B_REF, TPL_46, 2, "ReferenceID"),
    (B_OACT, TPL_46, 2, "OrderUpdateAction"),
    (O_TT, TPL_47, 0, "TransactTime"), (O_MEI, TPL_47, 0, "MatchEventIndicator"),
    (O_OID, TPL_47, 1, "OrderID"), (O_PRIO, TPL_47, 1, "MDOrderPriority"),
    (O_PX, TPL_47, 1, "MDEntryPx"), (O_DQTY, TPL_47, 1, "MDDisplayQty"),
    (O_SID, TPL_47, 1, "SecurityID"), (O_ACTION, TPL_47, 1, "MDUpdateAction"),
    (O_TYPE, TPL_47, 1, "MDEntryType"),
    (T_TT, TPL_48, 0, "TransactTime"), (T_MEI, TPL_48, 0, "MatchEventIndicator"),
    (T_PX, TPL_48, 1, "MDEntryPx"), (T_SIZE, TPL_48, 1, "MDEntrySize"),
    (T_SID, TPL_48, 1, "SecurityID"), (T_RPT, TPL_48, 1, "RptSeq"),
    (T_NORD, TPL_48, 1, "NumberOfOrders"), (T_AGG, TPL_48, 1, "AggressorSide"),
    (T_ACTION, TPL_48, 1, "MDUpdateAction"), (T_TRADE_ID, TPL_48, 1, "MDTradeEntryID"),
    (T_OID, TPL_48, 2, "OrderID"), (T_LAST_QTY, TPL_48, 2, "LastQty"),
    (V_TT, TPL_37, 0, "TransactTime"), (V_MEI, TPL_37, 0, "MatchEventIndicator"),
    (V_SIZE, TPL_37, 1, "MDEntrySize"), (V_SID, TPL_37, 1, "SecurityID"),
    (V_RPT, TPL_37, 1, "RptSeq"), (V_ACTION, TPL_37, 1, "MDUpdateAction"),
)

# Kernel registers (int64)
R_SEQ = 0  # last MsgSeqNum given to a packet
R_POS = 1  # bytes used in the packet buffer
R_NPKT = 2  # closed packets in the bounds table
R_OPEN = 3  # start of the open packet, -1 if none
R_MAX_PACKET = 4  # packet size limit (header included)
R_SENDING_TIME = 5  # SendingTime written in packet headers opened by this call
R_MBO = 6  # 1: publish MBO (47 and the order-ID groups)
R_VERSION = 7  # SBE header version written
R_MSGS = 8  # messages encoded, lifetime
R_EVENTS = 9  # events encoded, lifetime (also the stamp of the 37 de-duplication)
R_OVERFLOW = 10  # messages lost: packet buffer or bounds table full
N_REGS = 16

# Instrument table columns (int64)
I_SID = 0
I_DEPTH = 1  # MBP depth published (MarketDepth)
I_RPT = 2  # last RptSeq sent
I_VOLUME = 3  # session volume (template 37)
I_LAST_TIME = 4  # TransactTime of the last event that touched it
I_MARK = 5  # event stamp (one 37 entry per instrument and event)
N_INST_COLS = 8


# --------------------------------------------------------------------------
# Layout tables from the schema (import time / construction only)
# --------------------------------------------------------------------------
_PACK = {"int8": "b", "uint8": "B", "int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
         "int64": "q", "uint64": "Q", "char": "B"}


def _value_member(f: FieldLayout) -> tuple[int, FieldLayout]:
    """(offset inside the field, primitive layout) of the one value a field carries."""
    if f.kind == "composite":
        inner = f.mantissa if f.mantissa is not None else f.scalar_member
        if inner is None:
            raise ValueError(f"{f.name}: composite without a single value member")
        return inner.offset, inner
    return 0, f


def _default_block(fields: tuple[FieldLayout, ...], block_length: int, version: int) -> bytes:
    """A block with every optional field null and everything else zero (CME's padding)."""
    out = bytearray(block_length)
    for f in fields:
        if f.is_constant or f.since_version > version:
            continue
        parts = f.members if f.kind == "composite" else (f,)
        base = f.offset if f.kind == "composite" else 0
        for m in parts:
            if m.is_constant or m.null_value is None or m.since_version > version:
                continue
            if f.kind != "composite" and f.presence != "optional":
                continue
            if m.primitive in ("float", "double") or m.length != 1:
                continue
            pos = base + m.offset
            struct.pack_into("<" + _PACK[m.primitive], out, pos, int(m.null_value))
    return bytes(out)


def _group(msg: MessageLayout, index: int) -> GroupLayout:
    if index >= len(msg.groups):
        raise ValueError(f"{msg.name}: expected at least {index + 1} groups")
    return msg.groups[index]


def layout_tables(version: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fld int64[N_FIELDS, 2], tinfo int64[4, N_TI], defaults uint8[...]) for a schema
    version of MDP 3.0 (schema id 1, version 9..13)."""
    schema = _mdp_schema(version)
    fld = np.zeros((N_FIELDS, 2), dtype=np.int64)
    hdr = schema.header
    for const, name in ((H_BL, "blockLength"), (H_TID, "templateId"), (H_SID, "schemaId"),
                        (H_VER, "version")):
        m = hdr.member(name)
        fld[const] = (m.offset, m.size)
    tinfo = np.zeros((len(TEMPLATE_IDS), N_TI), dtype=np.int64)
    defaults = bytearray()
    for t, tid in enumerate(TEMPLATE_IDS):
        msg = schema.message(tid)
        tinfo[t, TI_ID] = tid
        tinfo[t, TI_BLOCK] = msg.block_length
        tinfo[t, TI_ROOT_DEF] = len(defaults)
        defaults += _default_block(msg.fields, msg.block_length, version)
        for g_index, cols in ((0, (TI_G1_DIM, TI_G1_BL_OFF, TI_G1_BL_SIZE, TI_G1_NUM_OFF,
                                    TI_G1_NUM_SIZE, TI_G1_ENTRY, TI_G1_DEF)),
                              (1, (TI_G2_DIM, TI_G2_BL_OFF, TI_G2_BL_SIZE, TI_G2_NUM_OFF,
                                   TI_G2_NUM_SIZE, TI_G2_ENTRY, TI_G2_DEF))):
            if g_index >= len(msg.groups):
                continue
            g = _group(msg, g_index)
            bl, num = g.dimension.member("blockLength"), g.dimension.member("numInGroup")
            values = (g.dimension.size, bl.offset, bl.size, num.offset, num.size,
                      g.block_length, len(defaults))
            for col, v in zip(cols, values, strict=True):
                tinfo[t, col] = v
            defaults += _default_block(g.fields, g.block_length, version)
    for const, t, g_index, name in _FIELDS:
        msg = schema.message(TEMPLATE_IDS[t])
        f = msg.field(name) if g_index == 0 else _group(msg, g_index - 1).field(name)
        if f.is_constant:
            raise ValueError(f"{msg.name}.{name} is a constant in v{version}")
        inner_off, inner = _value_member(f)
        fld[const] = (f.offset + inner_off, inner.size)
    return fld, tinfo, np.frombuffer(bytes(defaults), dtype=np.uint8).copy()


def _mdp_schema(version: int) -> Schema:
    if version < 9:
        raise ValueError("the venue publishes the current templates: schema version >= 9")
    return bundled_schema(MDP_SCHEMA_ID, version)


def max_message_bytes(tinfo: np.ndarray, t: int) -> int:
    """Bytes of a message of template row ``t`` with no entries."""
    size = MSG_SIZE_FIELD + 8 + int(tinfo[t, TI_BLOCK]) + int(tinfo[t, TI_G1_DIM])
    return size + int(tinfo[t, TI_G2_DIM])


# --------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _put(buf, pos, v, size):
    """Little-endian integer of ``size`` bytes (two's complement for negatives)."""
    x = np.int64(v)
    for k in range(size):
        buf[pos + k] = np.uint8((x >> np.int64(8 * k)) & 0xFF)


@njit(cache=True, inline="always")
def _get(buf, pos, size):
    x = np.int64(0)
    for k in range(size):
        x |= np.int64(buf[pos + k]) << np.int64(8 * k)
    return x


@njit(cache=True, inline="always")
def _copy(dst, dpos, src, spos, n):
    for k in range(n):
        dst[dpos + k] = src[spos + k]


@njit(cache=True, inline="always")
def _f(scratch, base, fld, f, v):
    _put(scratch, base + fld[f, 0], v, fld[f, 1])


@njit(cache=True)
def _begin(scratch, t, f_tt, transact, regs, fld, tinfo, defaults):
    """MsgSize placeholder, SBE header, root block (MEI 0). Returns the first group's offset."""
    h = MSG_SIZE_FIELD
    _put(scratch, h + fld[H_BL, 0], tinfo[t, TI_BLOCK], fld[H_BL, 1])
    _put(scratch, h + fld[H_TID, 0], tinfo[t, TI_ID], fld[H_TID, 1])
    _put(scratch, h + fld[H_SID, 0], MDP_SCHEMA_ID, fld[H_SID, 1])
    _put(scratch, h + fld[H_VER, 0], regs[R_VERSION], fld[H_VER, 1])
    root = h + 8
    _copy(scratch, root, defaults, tinfo[t, TI_ROOT_DEF], tinfo[t, TI_BLOCK])
    _f(scratch, root, fld, f_tt, transact)
    return root + tinfo[t, TI_BLOCK]


@njit(cache=True)
def _dim(scratch, pos, t, second, count, tinfo):
    """Write a group dimension (blockLength, numInGroup; padding zero); returns its end."""
    c = TI_G2_DIM if second else TI_G1_DIM
    size = tinfo[t, c]
    for k in range(size):
        scratch[pos + k] = 0
    _put(scratch, pos + tinfo[t, c + 1], tinfo[t, c + 5], tinfo[t, c + 2])
    _put(scratch, pos + tinfo[t, c + 3], count, tinfo[t, c + 4])
    return pos + size


@njit(cache=True)
def _close_packet(bounds, regs):
    if regs[R_OPEN] >= 0:
        regs[R_NPKT] += 1
        regs[R_OPEN] = -1


@njit(cache=True)
def _emit(scratch, n, pkts, bounds, regs):
    """Copy a finished message (MsgSize first) into the open packet, or a new one.

    Returns the message's offset in ``pkts``, -1 if it was lost (buffer full).
    """
    _put(scratch, 0, n, MSG_SIZE_FIELD)
    op = regs[R_OPEN]
    if op >= 0 and regs[R_POS] + n > op + regs[R_MAX_PACKET]:
        _close_packet(bounds, regs)
        op = -1
    if op < 0:
        k = regs[R_NPKT]
        p = regs[R_POS]
        if k >= bounds.shape[0] or p + PACKET_HEADER + n > pkts.shape[0]:
            regs[R_OVERFLOW] += 1
            return -1
        seq = regs[R_SEQ] + 1
        regs[R_SEQ] = seq
        _put(pkts, p, seq, 4)
        _put(pkts, p + 4, regs[R_SENDING_TIME], 8)
        bounds[k, 0] = p
        bounds[k, 2] = seq
        regs[R_OPEN] = p
        regs[R_POS] = p + PACKET_HEADER
    elif regs[R_POS] + n > pkts.shape[0]:
        regs[R_OVERFLOW] += 1
        return -1
    pos = regs[R_POS]
    _copy(pkts, pos, scratch, 0, n)
    regs[R_POS] = pos + n
    bounds[regs[R_NPKT], 1] = pos + n
    regs[R_MSGS] += 1
    return pos


@njit(cache=True, inline="always")
def _side_type(side):
    return ENTRY_BID if side == SIDE_BUY else ENTRY_OFFER


@njit(cache=True, inline="always")
def _trade_induced(mds, r, lo):
    """A maker's order change right after its match (CME sends it in 47, not in 46)."""
    return (r > lo and mds[r - 1].kind == MMD_TRADE
            and mds[r - 1].order_id == mds[r].order_id)


@njit(cache=True)
def _moved_orders(mds, lo, hi, moved):
    """Rows of an order deleted and re-added in the same event (a modify that changed
    price): both MBO changes must go to 47, in order, or a client would apply the New
    (47, first) before the Delete (46). Returns how many rows were put in ``moved``."""
    n = 0
    for r in range(lo, hi):
        if mds[r].kind != MMD_BOOK or mds[r].order_action != MD_NEW:
            continue
        for d in range(r - 1, lo - 1, -1):
            if (mds[d].kind == MMD_BOOK and mds[d].order_action == MD_DELETE
                    and mds[d].order_id == mds[r].order_id):
                if n + 2 <= moved.shape[0]:
                    moved[n] = d
                    moved[n + 1] = r
                    n += 2
                break
    return n


@njit(cache=True, inline="always")
def _is_moved(moved, n_moved, r):
    for k in range(n_moved):  # noqa: SIM110 - a plain loop compiles best in numba
        if moved[k] == r:
            return True
    return False


@njit(cache=True, inline="always")
def _in_depth(mds, r, inst):
    lvl = mds[r].price_level
    return 1 <= lvl <= inst[mds[r].instrument, I_DEPTH]


@njit(cache=True, inline="always")
def _mei_or(pkts, msg_pos, f_mei, fld, bits):
    if msg_pos >= 0:
        p = msg_pos + MSG_SIZE_FIELD + 8 + fld[f_mei, 0]
        pkts[p] = np.uint8(pkts[p] | bits)


@njit(cache=True)
def _close_48(scratch, g1, n_e, n_o, ords, mbo, tinfo, fld, pkts, bounds, regs):
    _dim(scratch, g1, TPL_48, False, n_e, tinfo)
    pos = g1 + tinfo[TPL_48, TI_G1_DIM] + n_e * tinfo[TPL_48, TI_G1_ENTRY]
    n_out = n_o if mbo else 0
    pos = _dim(scratch, pos, TPL_48, True, n_out, tinfo)
    e2 = tinfo[TPL_48, TI_G2_ENTRY]
    for k in range(n_out):
        for b in range(e2):
            scratch[pos + b] = 0
        _f(scratch, pos, fld, T_OID, ords[k, 0])
        _f(scratch, pos, fld, T_LAST_QTY, ords[k, 1])
        pos += e2
    return _emit(scratch, pos, pkts, bounds, regs)


@njit(cache=True)
def _encode_event(mds, lo, hi, inst, regs, fld, tinfo, defaults, summary_of, scratch, ords,
                  moved, pkts, bounds):
    t = np.int64(mds[lo].transact_time)
    mbo = regs[R_MBO] != 0
    max_msg = regs[R_MAX_PACKET] - PACKET_HEADER
    regs[R_EVENTS] += 1
    stamp = regs[R_EVENTS]
    last_trade = -1
    last_vol = -1
    last_47 = -1
    last_46 = -1
    last_any = -1
    has_trade = False
    for r in range(lo, hi):
        inst[mds[r].instrument, I_LAST_TIME] = t
        if mds[r].kind == MMD_TRADE:
            has_trade = True

    # ---- 48: trade summary, one entry per (instrument, price) ----------------
    if has_trade:
        e1 = tinfo[TPL_48, TI_G1_ENTRY]
        e2 = tinfo[TPL_48, TI_G2_ENTRY]
        d2 = tinfo[TPL_48, TI_G2_DIM]
        g1 = _begin(scratch, TPL_48, T_TT, t, regs, fld, tinfo, defaults)
        base = g1 + tinfo[TPL_48, TI_G1_DIM]
        n_e = 0
        n_o = 0
        cur_inst = -1
        cur_px = np.int64(0)
        entry = 0
        taker = 0
        cur_size = np.int64(0)
        cur_orders = 0
        summary = np.int64(0)
        for r in range(lo, hi):
            m = mds[r]
            if m.kind != MMD_TRADE:
                continue
            ins = m.instrument
            px = np.int64(m.price)
            q = np.int64(m.size)
            inst[ins, I_VOLUME] += q
            same = ins == cur_inst and px == cur_px
            need = e2 if same else e1 + 2 * e2
            used = base + n_e * e1 + d2 + n_o * e2
            if n_e > 0 and (used + need > max_msg or n_o + 2 > MAX_IN_GROUP
                            or (not same and n_e >= MAX_IN_GROUP)):
                last_trade = _close_48(scratch, g1, n_e, n_o, ords, mbo, tinfo, fld, pkts,
                                       bounds, regs)
                last_any = last_trade
                g1 = _begin(scratch, TPL_48, T_TT, t, regs, fld, tinfo, defaults)
                n_e = 0
                n_o = 0
                same = False
            if same:
                cur_size += q
                cur_orders += 1
                _f(scratch, entry, fld, T_SIZE, cur_size)
                _f(scratch, entry, fld, T_NORD, cur_orders)
                ords[taker, 1] += q
                ords[n_o, 0] = np.int64(m.order_id)
                ords[n_o, 1] = q
                n_o += 1
            else:
                entry = base + n_e * e1
                _copy(scratch, entry, defaults, tinfo[TPL_48, TI_G1_DEF], e1)
                inst[ins, I_RPT] += 1
                summary = np.int64(m.trade_id)
                cur_inst = ins
                cur_px = px
                cur_size = q
                cur_orders = 2
                _f(scratch, entry, fld, T_PX, px)
                _f(scratch, entry, fld, T_SIZE, q)
                _f(scratch, entry, fld, T_SID, inst[ins, I_SID])
                _f(scratch, entry, fld, T_RPT, inst[ins, I_RPT])
                _f(scratch, entry, fld, T_NORD, 2)
                _f(scratch, entry, fld, T_AGG, m.side)
                _f(scratch, entry, fld, T_ACTION, MD_NEW)
                _f(scratch, entry, fld, T_TRADE_ID, summary & 0xFFFFFFFF)
                n_e += 1
                taker = n_o
                ords[n_o, 0] = np.int64(m.taker_order_id)
                ords[n_o, 1] = q
                ords[n_o + 1, 0] = np.int64(m.order_id)
                ords[n_o + 1, 1] = q
                n_o += 2
            summary_of[np.int64(m.trade_id) & SUMMARY_MASK] = summary
        last_trade = _close_48(scratch, g1, n_e, n_o, ords, mbo, tinfo, fld, pkts, bounds,
                               regs)
        last_any = last_trade

        # ---- 37: session volume of each instrument traded --------------------
        e1 = tinfo[TPL_37, TI_G1_ENTRY]
        g1 = _begin(scratch, TPL_37, V_TT, t, regs, fld, tinfo, defaults)
        base = g1 + tinfo[TPL_37, TI_G1_DIM]
        n_e = 0
        for r in range(lo, hi):
            ins = mds[r].instrument
            if mds[r].kind != MMD_TRADE or inst[ins, I_MARK] == stamp:
                continue
            inst[ins, I_MARK] = stamp
            if n_e >= MAX_IN_GROUP or base + (n_e + 1) * e1 > max_msg:
                _dim(scratch, g1, TPL_37, False, n_e, tinfo)
                last_vol = _emit(scratch, base + n_e * e1, pkts, bounds, regs)
                g1 = _begin(scratch, TPL_37, V_TT, t, regs, fld, tinfo, defaults)
                n_e = 0
            entry = base + n_e * e1
            _copy(scratch, entry, defaults, tinfo[TPL_37, TI_G1_DEF], e1)
            inst[ins, I_RPT] += 1
            _f(scratch, entry, fld, V_SIZE, inst[ins, I_VOLUME])
            _f(scratch, entry, fld, V_SID, inst[ins, I_SID])
            _f(scratch, entry, fld, V_RPT, inst[ins, I_RPT])
            _f(scratch, entry, fld, V_ACTION, MD_NEW)
            n_e += 1
        _dim(scratch, g1, TPL_37, False, n_e, tinfo)
        last_vol = _emit(scratch, base + n_e * e1, pkts, bounds, regs)
        last_any = last_vol

    # ---- 47: order changes without an MBP entry of their own ----------------
    n_moved = _moved_orders(mds, lo, hi, moved) if mbo else 0
    if mbo:
        e1 = tinfo[TPL_47, TI_G1_ENTRY]
        n_e = 0
        g1 = 0
        base = 0
        for r in range(lo, hi):
            m = mds[r]
            if m.kind != MMD_BOOK or m.order_action == MD_NO_ORDER_ACTION:
                continue
            if not (_trade_induced(mds, r, lo) or not _in_depth(mds, r, inst)
                    or _is_moved(moved, n_moved, r)):
                continue
            if n_e > 0 and (n_e >= MAX_IN_GROUP or base + (n_e + 1) * e1 > max_msg):
                _dim(scratch, g1, TPL_47, False, n_e, tinfo)
                last_47 = _emit(scratch, base + n_e * e1, pkts, bounds, regs)
                last_any = last_47
                n_e = 0
            if n_e == 0:
                g1 = _begin(scratch, TPL_47, O_TT, t, regs, fld, tinfo, defaults)
                base = g1 + tinfo[TPL_47, TI_G1_DIM]
            entry = base + n_e * e1
            _copy(scratch, entry, defaults, tinfo[TPL_47, TI_G1_DEF], e1)
            _f(scratch, entry, fld, O_OID, np.int64(m.order_id))
            _f(scratch, entry, fld, O_PRIO, np.int64(m.order_priority))
            _f(scratch, entry, fld, O_PX, np.int64(m.price))
            _f(scratch, entry, fld, O_DQTY, np.int64(m.display_qty))
            _f(scratch, entry, fld, O_SID, inst[m.instrument, I_SID])
            _f(scratch, entry, fld, O_ACTION, m.order_action)
            _f(scratch, entry, fld, O_TYPE, _side_type(m.side))
            n_e += 1
        if n_e > 0:
            _dim(scratch, g1, TPL_47, False, n_e, tinfo)
            last_47 = _emit(scratch, base + n_e * e1, pkts, bounds, regs)
            last_any = last_47

    # ---- 46: MBP levels within the depth, with their order changes ----------
    e1 = tinfo[TPL_46, TI_G1_ENTRY]
    e2 = tinfo[TPL_46, TI_G2_ENTRY]
    d2 = tinfo[TPL_46, TI_G2_DIM]
    n_e = 0
    n_o = 0
    g1 = 0
    base = 0
    for r in range(lo, hi + 1):
        flush = r == hi
        with_order = False
        if not flush:
            m = mds[r]
            if (m.kind != MMD_BOOK and m.kind != MMD_REVEAL) or not _in_depth(mds, r, inst):
                continue
            with_order = (mbo and m.kind == MMD_BOOK and m.order_action != MD_NO_ORDER_ACTION
                          and not _trade_induced(mds, r, lo)
                          and not _is_moved(moved, n_moved, r))
            need = e1 + (e2 if with_order else 0)
            used = base + n_e * e1 + d2 + n_o * e2
            flush = n_e > 0 and (used + need > max_msg or n_e >= MAX_IN_GROUP
                                 or (with_order and n_o >= MAX_IN_GROUP))
        if flush and n_e > 0:
            _dim(scratch, g1, TPL_46, False, n_e, tinfo)
            pos = _dim(scratch, base + n_e * e1, TPL_46, True, n_o, tinfo)
            for k in range(n_o):
                q = ords[k, 0]
                om = mds[q]
                _copy(scratch, pos, defaults, tinfo[TPL_46, TI_G2_DEF], e2)
                _f(scratch, pos, fld, B_OID, np.int64(om.order_id))
                _f(scratch, pos, fld, B_PRIO, np.int64(om.order_priority))
                _f(scratch, pos, fld, B_DQTY, np.int64(om.display_qty))
                _f(scratch, pos, fld, B_REF, ords[k, 1])
                _f(scratch, pos, fld, B_OACT, om.order_action)
                pos += e2
            last_46 = _emit(scratch, pos, pkts, bounds, regs)
            last_any = last_46
            n_e = 0
            n_o = 0
        if r == hi:
            break
        m = mds[r]
        if n_e == 0:
            g1 = _begin(scratch, TPL_46, B_TT, t, regs, fld, tinfo, defaults)
            base = g1 + tinfo[TPL_46, TI_G1_DIM]
        entry = base + n_e * e1
        _copy(scratch, entry, defaults, tinfo[TPL_46, TI_G1_DEF], e1)
        ins = m.instrument
        inst[ins, I_RPT] += 1
        _f(scratch, entry, fld, B_PX, np.int64(m.price))
        _f(scratch, entry, fld, B_SIZE, np.int64(m.size))
        _f(scratch, entry, fld, B_SID, inst[ins, I_SID])
        _f(scratch, entry, fld, B_RPT, inst[ins, I_RPT])
        _f(scratch, entry, fld, B_NORD, m.num_orders)
        _f(scratch, entry, fld, B_LEVEL, m.price_level)
        _f(scratch, entry, fld, B_ACTION, m.action)
        _f(scratch, entry, fld, B_TYPE, _side_type(m.side))
        n_e += 1
        if with_order:
            ords[n_o, 0] = r
            ords[n_o, 1] = n_e
            n_o += 1

    _mei_or(pkts, last_trade, T_MEI, fld, MEI_LAST_TRADE_MSG)
    _mei_or(pkts, last_vol, V_MEI, fld, MEI_LAST_VOLUME_MSG)
    _mei_or(pkts, last_47, O_MEI, fld, MEI_LAST_QUOTE_MSG)
    _mei_or(pkts, last_46, B_MEI, fld, MEI_LAST_QUOTE_MSG)
    # every template here has MatchEventIndicator at the same root offset (checked at init)
    _mei_or(pkts, last_any, B_MEI, fld, MEI_END_OF_EVENT)


@njit(cache=True)
def _encode_rows(mds, lo, hi, inst, regs, fld, tinfo, defaults, summary_of, scratch, ords,
                 moved, pkts, bounds):
    """Encode ``mds[lo:hi]``: one event per run of equal ``cmd_index``. Returns events."""
    n_events = 0
    i = lo
    while i < hi:
        j = i + 1
        c = mds[i].cmd_index
        while j < hi and mds[j].cmd_index == c:
            j += 1
        _encode_event(mds, i, j, inst, regs, fld, tinfo, defaults, summary_of, scratch, ords,
                      moved, pkts, bounds)
        n_events += 1
        i = j
    return n_events


@njit(cache=True)
def _append_message(msg, n, pkts, bounds, regs, new_packet):
    """A message built elsewhere (MsgSize + SBE, e.g. a heartbeat) into the packet stream."""
    if new_packet:
        _close_packet(bounds, regs)
    return _emit(msg, n, pkts, bounds, regs)


# --------------------------------------------------------------------------
# Facade
# --------------------------------------------------------------------------
class IncrementalEncoder:
    """Packets of one channel's incremental feed (MsgSeqNum, RptSeq, volume state).

    ``encode(mds, sending_time)`` appends the events of ``MATCH_MD`` rows;
    ``append(message, sending_time)`` appends an SBE message built by the generic
    codec (heartbeat, security status, channel reset); ``close_packet()`` ends
    the open packet; ``packets()`` lists (seq, start, end) of closed packets in
    ``buf``; ``clear()`` forgets them once sent. Instrument rows follow the
    matching engine's instrument numbering.
    """

    def __init__(self, security_ids: list[int], depths: list[int], *, version: int = 13,
                 mbo: bool = True, max_packet: int = 1420, buffer_bytes: int = 1 << 23,
                 max_packets: int = 1 << 16) -> None:
        if len(security_ids) != len(depths) or not security_ids:
            raise ValueError("one depth per security id, at least one instrument")
        self.fld, self.tinfo, self.defaults = layout_tables(version)
        meis = {int(self.fld[f, 0]) for f in (B_MEI, O_MEI, T_MEI, V_MEI)}
        if len(meis) != 1:
            raise ValueError("MatchEventIndicator offsets differ between 46/47/48/37")
        smallest = max(max_message_bytes(self.tinfo, t) for t in range(4))
        largest_entry = int(self.tinfo[TPL_46, TI_G1_ENTRY] + self.tinfo[TPL_46, TI_G2_ENTRY])
        largest_entry = max(largest_entry, int(self.tinfo[TPL_47, TI_G1_ENTRY]),
                            int(self.tinfo[TPL_48, TI_G1_ENTRY] + 2 * self.tinfo[TPL_48,
                                                                                  TI_G2_ENTRY]))
        if max_packet - PACKET_HEADER < smallest + largest_entry:
            raise ValueError(f"max_packet {max_packet} cannot hold one entry")
        self.version = version
        self.schema = _mdp_schema(version)
        n = len(security_ids)
        self.inst = np.zeros((n, N_INST_COLS), dtype=np.int64)
        self.inst[:, I_SID] = security_ids
        self.inst[:, I_DEPTH] = depths
        self.regs = np.zeros(N_REGS, dtype=np.int64)
        self.regs[R_OPEN] = -1
        self.regs[R_MAX_PACKET] = max_packet
        self.regs[R_MBO] = 1 if mbo else 0
        self.regs[R_VERSION] = version
        self.summary_of = np.zeros(SUMMARY_MASK + 1, dtype=np.int64)
        self.scratch = np.zeros(max_packet, dtype=np.uint8)
        self.ords = np.zeros((2 * MAX_IN_GROUP + 4, 2), dtype=np.int64)
        self.moved = np.zeros(64, dtype=np.int64)
        self.buf = np.zeros(buffer_bytes, dtype=np.uint8)
        self.bounds = np.zeros((max_packets, 3), dtype=np.int64)
        self._msg = np.zeros(max_packet, dtype=np.uint8)
        self.row_of = {int(s): i for i, s in enumerate(security_ids)}

    # -- state ----------------------------------------------------------------
    @property
    def seq(self) -> int:
        """MsgSeqNum of the last packet opened."""
        return int(self.regs[R_SEQ])

    @seq.setter
    def seq(self, value: int) -> None:
        self.regs[R_SEQ] = value

    @property
    def mbo(self) -> bool:
        return bool(self.regs[R_MBO])

    def rpt_seq(self, row: int) -> int:
        return int(self.inst[row, I_RPT])

    def volume(self, row: int) -> int:
        return int(self.inst[row, I_VOLUME])

    def last_time(self, row: int) -> int:
        return int(self.inst[row, I_LAST_TIME])

    def reset_rpt_seq(self) -> None:
        """ChannelReset: every RptSeq restarts at 1."""
        self.inst[:, I_RPT] = 0

    def trade_summary_id(self, trade_id: int) -> int:
        """MDTradeEntryID of the 48 entry that published this match (last 65536 matches)."""
        return int(self.summary_of[int(trade_id) & SUMMARY_MASK]) & 0xFFFFFFFF

    def counters(self) -> dict[str, int]:
        return {"messages": int(self.regs[R_MSGS]), "events": int(self.regs[R_EVENTS]),
                "overflow": int(self.regs[R_OVERFLOW]), "seq": self.seq}

    # -- encoding ---------------------------------------------------------------
    def encode(self, mds: np.ndarray, sending_time: int) -> int:
        """Append the events of ``mds`` (MATCH_MD); returns the number of events."""
        if mds.dtype != MATCH_MD:
            raise TypeError("mds must be a MATCH_MD array")
        if len(mds) == 0:
            return 0
        self.regs[R_SENDING_TIME] = sending_time
        return int(_encode_rows(mds, 0, len(mds), self.inst, self.regs, self.fld, self.tinfo,
                                self.defaults, self.summary_of, self.scratch, self.ords,
                                self.moved, self.buf, self.bounds))

    def append(self, message: bytes, sending_time: int, *, new_packet: bool = False) -> bool:
        """Append one SBE message (header + body, no MsgSize); False if it was lost."""
        n = len(message) + MSG_SIZE_FIELD
        if n > self.regs[R_MAX_PACKET] - PACKET_HEADER:
            raise ValueError(f"message of {n} bytes does not fit a packet")
        self._msg[MSG_SIZE_FIELD:n] = np.frombuffer(message, dtype=np.uint8)
        self.regs[R_SENDING_TIME] = sending_time
        return int(_append_message(self._msg, n, self.buf, self.bounds, self.regs,
                                   new_packet)) >= 0

    def close_packet(self) -> None:
        _close_packet(self.bounds, self.regs)

    @property
    def n_packets(self) -> int:
        return int(self.regs[R_NPKT])

    def packets(self) -> np.ndarray:
        """(start, end, seq) of every closed packet not yet cleared (a view)."""
        return self.bounds[: int(self.regs[R_NPKT])]

    def packet_bytes(self, k: int) -> bytes:
        s, e, _ = (int(x) for x in self.bounds[k])
        return self.buf[s:e].tobytes()

    def clear(self) -> None:
        """Forget the closed packets (sent); an open packet is closed first."""
        _close_packet(self.bounds, self.regs)
        self.regs[R_NPKT] = 0
        self.regs[R_POS] = 0


def warm_up() -> None:
    """Compile (or load) the kernels on a throw-away encoder."""
    from core.matching import MatchingEngine
    from core.types import SIDE_SELL

    eng = MatchingEngine(1, 8, 1, 0, 64, mbp_depth=2, exec_capacity=64, md_capacity=64)
    enc = IncrementalEncoder([1], [2], max_packet=1420, buffer_bytes=1 << 14, max_packets=64)
    eng.submit(0, 1, SIDE_BUY, 10, 2)
    eng.submit(0, 2, SIDE_BUY, 9, 2)
    eng.submit(0, 3, SIDE_BUY, 8, 2)
    eng.submit(0, 4, SIDE_SELL, 10, 3)
    enc.encode(eng.mds, 1)
    enc.append(bytes(8), 1, new_packet=True)
    enc.clear()


def packet_views(enc: IncrementalEncoder) -> list[tuple[int, Any]]:
    """(seq, memoryview) of the closed packets (for senders and tests)."""
    mv = memoryview(enc.buf)  # type: ignore[arg-type]
    return [(int(q), mv[int(s):int(e)]) for s, e, q in enc.packets()]
