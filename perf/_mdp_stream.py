"""Synthetic MDP 3.0 streams for the benchmarks: ``core.synthetic`` rows encoded as packets.

``core.synthetic.generate`` gives the MD_EVENT rows a decoder would produce; a
replay benchmark must start from the bytes. ``encode_rows`` writes them back as
CME MDP 3.0 incremental packets in one njit pass: one packet per MsgSeqNum, one
message per run of rows ending with FLAG_LAST_IN_MSG, templates
MDIncrementalRefreshBook46 (EV_BOOK rows) and MDIncrementalRefreshTradeSummary48
(EV_TRADE rows), empty order-ID groups, SendingTime = the first row's
TransactTime. Offsets, sizes and block lengths come from the bundled schema
(``core.sbe.schema``), none is typed here; the tests decode the bytes with the
project's decoder and compare every column with the rows encoded.

The generic codec (``core.sbe.codec.encode``) would take ~50 us a message;
this takes well under a microsecond, so a stream of millions of events is built
in a second or two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from core.sbe.schema import bundled_schema
from core.synthetic import SyntheticConfig, SyntheticMarket, generate
from core.types import EV_BOOK, EV_TRADE, FLAG_LAST_IN_MSG, MD_EVENT, NULL_I64
from perf._numba_cache import refresh_cache_stamp

refresh_cache_stamp(__file__, ["core/types.py"])  # its constants are frozen into the kernel

__all__ = ["MdpStream", "encode_rows", "synthetic_stream"]

SCHEMA_VERSION = 13
TEMPLATES = (46, 48)
PACKET_HEADER_BYTES = 12  # MsgSeqNum u32 + SendingTime u64
MSG_SIZE_BYTES = 2

# entry slots of the layout table: lay[template, slot] = (offset in the entry, size)
(S_PX, S_SIZE, S_SID, S_RPT, S_NORD, S_LEVEL, S_ACTION, S_TYPE, S_AGG, S_TRADE_ID,
 S_TRADEABLE, N_SLOTS) = range(12)
_SLOT_FIELDS = {
    S_PX: "MDEntryPx", S_SIZE: "MDEntrySize", S_SID: "SecurityID", S_RPT: "RptSeq",
    S_NORD: "NumberOfOrders", S_LEVEL: "MDPriceLevel", S_ACTION: "MDUpdateAction",
    S_TYPE: "MDEntryType", S_AGG: "AggressorSide", S_TRADE_ID: "MDTradeEntryID",
    S_TRADEABLE: "TradeableSize",
}
# per-template scalars: info[template, I_*]
(I_ID, I_BLOCK, I_TT_OFF, I_MEI_OFF, I_G1_DIM, I_G1_BL_OFF, I_G1_NUM_OFF, I_G1_ENTRY,
 I_G2_DIM, I_G2_BL_OFF, I_G2_NUM_OFF, I_G2_ENTRY, I_SCHEMA, I_VERSION, N_INFO) = range(15)
# SBE message header offsets (blockLength, templateId, schemaId, version), from the schema
H_BL, H_TID, H_SID, H_VER = range(4)

_NULL_I32 = 0x7FFFFFFF
_NULL_U32 = 0xFFFFFFFF


def _tables(version: int = SCHEMA_VERSION) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lay int64[2, N_SLOTS, 2], info int64[2, N_INFO], header int64[4]) from the schema."""
    schema = bundled_schema(1, version)
    hdr = np.array([schema.header.member(n).offset
                    for n in ("blockLength", "templateId", "schemaId", "version")], np.int64)
    lay = np.zeros((len(TEMPLATES), N_SLOTS, 2), np.int64)
    info = np.zeros((len(TEMPLATES), N_INFO), np.int64)
    for t, tid in enumerate(TEMPLATES):
        msg = schema.message(tid)
        info[t, I_ID] = tid
        info[t, I_BLOCK] = msg.block_length
        info[t, I_TT_OFF] = msg.field("TransactTime").offset
        info[t, I_MEI_OFF] = msg.field("MatchEventIndicator").offset
        info[t, I_SCHEMA] = schema.id
        info[t, I_VERSION] = schema.version
        for g, (c_dim, c_bl, c_num, c_entry) in zip(
                msg.groups[:2], ((I_G1_DIM, I_G1_BL_OFF, I_G1_NUM_OFF, I_G1_ENTRY),
                                 (I_G2_DIM, I_G2_BL_OFF, I_G2_NUM_OFF, I_G2_ENTRY)),
                strict=True):
            info[t, c_dim] = g.dimension.size
            info[t, c_bl] = g.dimension.member("blockLength").offset
            info[t, c_num] = g.dimension.member("numInGroup").offset
            info[t, c_entry] = g.block_length
        entries = msg.groups[0]
        names = {f.name: f for f in entries.fields}
        for slot, name in _SLOT_FIELDS.items():
            f = names.get(name)
            if f is None or f.is_constant:
                continue
            inner = f.mantissa if f.mantissa is not None else f
            lay[t, slot] = (f.offset + (inner.offset if f.kind == "composite" else 0),
                            inner.size)
    return lay, info, hdr


@njit(cache=True)
def _put(buf, pos, v, size):
    x = np.int64(v)
    for k in range(size):
        buf[pos + k] = np.uint8((x >> np.int64(8 * k)) & 0xFF)


@njit(cache=True)
def _slot(buf, base, lay, t, slot, v):
    size = lay[t, slot, 1]
    if size > 0:
        _put(buf, base + lay[t, slot, 0], v, size)


@njit(cache=True)
def _encode_rows(rows, n, lay, info, hdr, out, offsets):
    """Rows -> packets; returns (bytes written, packets). A row of another kind is skipped."""
    pos = 0
    n_pk = 0
    i = 0
    while i < n:
        seq = rows[i].msg_seq
        offsets[n_pk] = pos
        _put(out, pos, seq, 4)
        _put(out, pos + 4, np.int64(rows[i].transact_time), 8)
        pos += 12
        while i < n and rows[i].msg_seq == seq:
            # one message: rows up to FLAG_LAST_IN_MSG (at most 255: numInGroup is a uint8)
            j = i
            while j < n and rows[j].msg_seq == seq and j - i < 255:
                j += 1
                if rows[j - 1].flags & FLAG_LAST_IN_MSG:
                    break
            t = 1 if rows[i].kind == EV_TRADE else 0
            start = pos
            h = pos + 2
            _put(out, h + hdr[0], info[t, I_BLOCK], 2)
            _put(out, h + hdr[1], info[t, I_ID], 2)
            _put(out, h + hdr[2], info[t, I_SCHEMA], 2)
            _put(out, h + hdr[3], info[t, I_VERSION], 2)
            root = h + 8
            _put(out, root + info[t, I_TT_OFF], np.int64(rows[i].transact_time), 8)
            _put(out, root + info[t, I_MEI_OFF], rows[i].match_event, 1)
            g = root + info[t, I_BLOCK]
            entry = info[t, I_G1_ENTRY]
            _put(out, g + info[t, I_G1_BL_OFF], entry, 2)
            cnt_at = g + info[t, I_G1_NUM_OFF]
            p = g + info[t, I_G1_DIM]
            count = 0
            for r in range(i, j):
                e = rows[r]
                if e.kind != EV_BOOK and e.kind != EV_TRADE:
                    continue
                _slot(out, p, lay, t, S_PX, e.price)
                _slot(out, p, lay, t, S_SIZE, e.size)
                _slot(out, p, lay, t, S_SID, e.security_id)
                _slot(out, p, lay, t, S_RPT, e.rpt_seq)
                _slot(out, p, lay, t, S_NORD, e.num_orders)
                _slot(out, p, lay, t, S_LEVEL, e.price_level)
                _slot(out, p, lay, t, S_ACTION, e.action)
                _slot(out, p, lay, t, S_TYPE, e.entry_type)
                _slot(out, p, lay, t, S_AGG, e.side)
                _slot(out, p, lay, t, S_TRADE_ID, _NULL_U32 if e.aux == NULL_I64 else e.aux)
                _slot(out, p, lay, t, S_TRADEABLE, _NULL_I32 if e.aux == NULL_I64 else e.aux)
                p += entry
                count += 1
            _put(out, cnt_at, count, 1)
            # the (empty) order-ID group
            _put(out, p + info[t, I_G2_BL_OFF], info[t, I_G2_ENTRY], 2)
            p += info[t, I_G2_DIM]
            _put(out, start, p - start, 2)  # MsgSize counts itself
            pos = p
            i = j
        n_pk += 1
    offsets[n_pk] = pos
    return pos, n_pk


def encode_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(buf uint8, offsets int64[packets + 1]) of MD_EVENT book/trade rows (see the module
    docstring). Rows of one MsgSeqNum must be contiguous."""
    if rows.dtype != MD_EVENT:
        raise TypeError("rows must have dtype MD_EVENT")
    lay, info, hdr = _tables()
    n = len(rows)
    entry = int(info[:, I_G1_ENTRY].max())
    per_msg = MSG_SIZE_BYTES + 8 + int(info[:, I_BLOCK].max()) + int(
        info[:, I_G1_DIM].max()) + int(info[:, I_G2_DIM].max())
    out = np.zeros(n * (entry + per_msg) + (n + 1) * PACKET_HEADER_BYTES + 64, np.uint8)
    offsets = np.zeros(n + 2, np.int64)
    size, n_pk = _encode_rows(np.ascontiguousarray(rows), n, lay, info, hdr, out, offsets)
    return out[:size].copy(), offsets[:n_pk + 1].copy()


@dataclass(frozen=True)
class MdpStream:
    """A synthetic incremental feed as bytes, with the rows it was encoded from."""

    buf: np.ndarray  # uint8: packets back to back
    offsets: np.ndarray  # int64 [packets + 1]: packet i is buf[offsets[i]:offsets[i+1]]
    market: SyntheticMarket  # rows, instruments, ticks

    @property
    def n_packets(self) -> int:
        return int(self.offsets.size - 1)

    @property
    def n_rows(self) -> int:
        return int(self.market.events.size)


def synthetic_stream(n_events: int, seed: int = 7,
                     config: SyntheticConfig | None = None) -> MdpStream:
    """``n_events`` match events of ``core.synthetic`` (ES and CL by default) as packets."""
    market = generate(n_events, config, seed=seed)
    buf, offsets = encode_rows(market.events)
    return MdpStream(buf=buf, offsets=offsets, market=market)
