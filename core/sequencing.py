"""Feed sequencing: A/B arbitration, gap detection and snapshot recovery (pure, no I/O).

CME sends every incremental packet twice (feeds A and B) and numbers them with
MsgSeqNum; every book entry also carries RptSeq, a per-instrument sequence. This
module turns the two lossy, duplicated, possibly reordered copies into one
stream in which each sequence appears once and in order, and it knows, per
instrument, whether the book built from that stream can be trusted.

Arbitration (per channel, on the raw 12-byte packet header)
    First copy wins. A packet behind the expected sequence is a *duplicate*
    (that sequence was delivered) or *late* (it had been declared lost); one
    ahead of it waits in a hold slot (a preallocated ring of packet buffers)
    until the missing sequence arrives from either feed. A sequence is declared
    lost (a *gap*) when every live feed has moved ``reorder_slack`` packets past
    it, when the oldest held packet has waited ``gap_timeout_ns``, or when a
    packet arrives beyond the hold window.

Instrument state (``inst_status``, read by the trading core; see core.types)
    OK -> tradeable. A channel gap makes every OK instrument of the channel
    SUSPECT: its next RptSeq-carrying row either continues its RptSeq (the gap
    did not touch it: OK again) or jumps (RECOVERING). A RptSeq jump on an OK
    instrument makes it RECOVERING. Rows of non-OK instruments are buffered
    (preallocated per channel) and the channel asks for the snapshot feed
    (``CH_WANT_SNAPSHOT``). A snapshot is applied to a non-OK instrument when
    its LastMsgSeqNumProcessed is at least the last sequence the instrument may
    have missed, and the buffered rows after it continue its RptSeq: the
    snapshot rows are emitted (the book rebuilds from them), then the buffered
    rows newer than LastMsgSeqNumProcessed, and the instrument is OK again.
    Once no instrument of the channel is pending, the channel leaves the
    snapshot feed and the buffer is emptied. ChannelReset (template 4) empties
    every book of the channel: every instrument is OK with RptSeq restarting.
    A channel silent for ``stale_after_ns`` sets the STALE bit on its
    instruments until its next packet.

Layout (all preallocated by ``Sequencer``; kernels take arrays and scalars)
    ``chan``  int64[C, CH_WIDTH]: per-channel state, config, the 1024-bit
              "delivered" window, the counters (``SQ_*`` at CH_COUNTERS), the
              hold-slot metadata and the delivery list of the last call.
    ``hold``  uint8[C, H, S]: bytes of packets held ahead of a missing one.
    ``inst``  int64[N, IN_WIDTH] per instrument; ``inst_status`` uint8[N].
    ``index`` int64: globals then an open-addressing security id -> row table.
    ``rbuf``  MD_EVENT[C, R]: rows buffered while instruments recover.

``_on_incremental`` / ``_on_snapshot`` fuse arbitration, the MDP decoder
(``core.sbe.mdp3._decode_packet``) and the gate in one call per datagram;
``_process_stream`` runs a whole batch of datagrams in one call (replay).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from llvmlite import ir as llvm_ir
from numba import carray, njit, types
from numba.extending import intrinsic

from core.sbe.mdp3 import Mdp3Decoder, _decode_packet
from core.types import (
    CHAN_IDLE,
    CHAN_RUNNING,
    EV_BOOK,
    EV_CHANNEL_RESET,
    EV_DEFINITION,
    EV_NONE,
    EV_ORDER,
    EV_ORDER_REF,
    EV_SNAPSHOT,
    EV_STAT,
    EV_TRADE,
    EV_TRADE_ORDER,
    EV_VOLUME,
    FEED_A,
    FEED_B,
    FLAG_END_OF_EVENT,
    INST_EMPTY,
    INST_OK,
    INST_RECOVERING,
    INST_STALE,
    INST_STATE_MASK,
    INST_SUSPECT,
    MD_EVENT,
    N_DROP_REASONS,
    N_SQ_COUNTERS,
    PACKET_HEADER,
    ROLE_INCREMENTAL,
    ROLE_SNAPSHOT,
    ROLE_SNAPSHOT_MBO,
    SQ_BUFFERED,
    SQ_CHANNEL_RESETS,
    SQ_CONFIRMED,
    SQ_COUNTER_NAMES,
    SQ_DELIVERED,
    SQ_DROP_BUFFER_FULL,
    SQ_DROP_INSTRUMENTS_FULL,
    SQ_DROP_OBSOLETE,
    SQ_DROP_OLD_RPT,
    SQ_DROP_OUT_FULL,
    SQ_DROP_RECOVERING_INFO,
    SQ_DROP_SHORT,
    SQ_DROP_TOO_BIG,
    SQ_DUPLICATES,
    SQ_GAP_PACKETS,
    SQ_GAPS,
    SQ_HELD,
    SQ_LATE,
    SQ_PACKETS_A,
    SQ_RECOVERED,
    SQ_RECOVERIES,
    SQ_REPLAYED,
    SQ_ROWS_IN,
    SQ_ROWS_OUT,
    SQ_RPT_GAPS,
    SQ_SEQ_RESETS,
    SQ_SNAPSHOT_PACKETS,
    SQ_SNAPSHOTS_APPLIED,
    SQ_SNAPSHOTS_SKIPPED,
    SQ_STALE,
    SQ_UNTRACKED,
)

__all__ = [
    "DLV_GAP",
    "DLV_HELD",
    "DLV_LIVE",
    "SequencedFeed",
    "Sequencer",
    "SequencerConfig",
]

I64 = Any  # an int or numpy integer: what numba kernels take and return

PACKET_HEADER_SIZE = 12
TEMPLATE_CHANNEL_RESET = 4
TEMPLATE_SNAPSHOT_MBO = 53

# --------------------------------------------------------------------------
# chan[c, :] columns
# --------------------------------------------------------------------------
CH_STATE = 0  # CHAN_IDLE / CHAN_RUNNING
CH_NEXT_SEQ = 1  # next MsgSeqNum to deliver
CH_LAST_RECV_NS = 2  # time of the last incremental packet (either feed)
CH_FEED_SEQ = 3  # + feed: highest MsgSeqNum seen on that feed
CH_FEED_NS = 5  # + feed: time of that feed's last packet (0 = never)
CH_HOLD_COUNT = 7
CH_HOLD_SINCE_NS = 8  # arrival of the oldest held packet
CH_GAP_START = 9  # last gap declared (for inspection)
CH_GAP_END = 10
CH_N_PENDING = 11  # instruments of the channel not OK
CH_WANT_SNAPSHOT = 12  # 1: the snapshot feed should be joined
CH_STALE = 13
CH_BUF_LEN = 14  # rows in rbuf[c]
CH_FIRST_SEQ = 15  # first MsgSeqNum delivered since start / sequence reset
CH_START_PENDING = 16  # first packet delivered, per-instrument start pass not done yet
CH_APPL_ID = 17  # CME channel id (informational)
CH_N_DELIVER = 18  # entries in the delivery list of the last arbitration
# configuration
CH_GAP_TIMEOUT_NS = 19
CH_REORDER_SLACK = 20
CH_STALE_NS = 21
CH_FEED_DEAD_NS = 22  # a feed silent this long no longer vetoes a gap
CH_DEFINITIONS = 23  # EV_DEFINITION rows passed through (intraday definitions to decode)
CH_SEEN = 24  # 16 words: bit s & 1023 = sequence s was delivered (last 1024 sequences)
SEEN_WORDS = 16
SEEN_BITS = SEEN_WORDS * 64
CH_COUNTERS = CH_SEEN + SEEN_WORDS  # N_SQ_COUNTERS counters (core.types SQ_*)
CH_HOLD_META = CH_COUNTERS + N_SQ_COUNTERS  # 4 per hold slot: seq (-1 free), len, feed, ns
HOLD_META_WIDTH = 4
DLV_WIDTH = 3  # delivery list after the hold metadata: (what, a, b)

# Delivery list entries (what, a, b)
DLV_LIVE = 0  # the datagram just passed in
DLV_HELD = 1  # hold slot a
DLV_GAP = 2  # sequences a..b were lost on every feed

# --------------------------------------------------------------------------
# inst[i, :] columns
# --------------------------------------------------------------------------
IN_SECURITY_ID = 0
IN_CHANNEL = 1
IN_LAST_RPT = 2  # last RptSeq applied (0 = none yet: the next one is taken as is)
IN_NEED_SEQ = 3  # a snapshot must have LastMsgSeqNumProcessed >= this
IN_SYNC_SEQ = 4  # rows with MsgSeqNum <= this are already in the book (last snapshot)
IN_MBO = 5  # 1: recovered from the MBO snapshot loop (53), never from RptSeq alone
IN_SNAP_CHUNK = 6  # next chunk expected of an MBO snapshot being applied (0: none)
IN_SNAP_SEQ = 7  # LastMsgSeqNumProcessed of that snapshot
IN_RECOVERIES = 8  # times this instrument left OK
IN_WIDTH = 10

# --------------------------------------------------------------------------
# index[:] globals, then the hash table (2 cells per slot: security id, row)
# --------------------------------------------------------------------------
IX_N_INST = 0
IX_AUTO_REGISTER = 1  # unknown security ids get a row
IX_RECOVER_ON_START = 2  # 1: new instruments start RECOVERING (late join); 0: trust
IX_TABLE_SLOTS = 3
IX_TABLE = 8
EMPTY_KEY = -1
EV_WORDS = MD_EVENT.itemsize // 8


def chan_width(hold_slots: int) -> int:
    return CH_HOLD_META + HOLD_META_WIDTH * hold_slots + DLV_WIDTH * (2 * hold_slots + 4)


# ==========================================================================
# Kernels: small helpers
# ==========================================================================
@intrinsic
def _data_words(typingctx: Any, arr: Any) -> Any:
    """int64 pointer to ``arr``'s data (MD_EVENT rows are copied as 9 words: numba's
    record assignment costs ~75 ns a row, nine word moves ~3 ns)."""
    sig = types.CPointer(types.int64)(arr)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.bitcast(ary.data, llvm_ir.IntType(64).as_pointer())

    return sig, codegen


_words: Any = _data_words  # an intrinsic: mypy cannot see its call signature


@njit(cache=True, inline="always")
def _copy_row(src: Any, i: I64, dst: Any, k: I64) -> None:
    """dst[k] = src[i] for 1-D (or flattened) MD_EVENT arrays."""
    a = carray(_words(src), (src.size * EV_WORDS,))
    b = carray(_words(dst), (dst.size * EV_WORDS,))
    ia = i * EV_WORDS
    ib = k * EV_WORDS
    for w in range(EV_WORDS):
        b[ib + w] = a[ia + w]


@njit(cache=True, inline="always")
def _u32(buf: Any, p: I64) -> I64:
    return (np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8) | (np.int64(buf[p + 2]) << 16)
            | (np.int64(buf[p + 3]) << 24))


@njit(cache=True)
def _first_template(buf: Any, n: I64) -> I64:
    """templateId of the packet's first message, -1 if there is none."""
    if n < PACKET_HEADER_SIZE + 6:
        return -1
    return np.int64(buf[PACKET_HEADER_SIZE + 4]) | (np.int64(buf[PACKET_HEADER_SIZE + 5]) << 8)


@njit(cache=True, inline="always")
def _hash_slot(sid: I64, mask: I64) -> I64:
    return ((sid * 0x9E3779B1) >> 7) & mask


@njit(cache=True)
def _lookup(index: Any, sid: I64) -> I64:
    """Row of security id ``sid``, -1 if it is not tracked."""
    mask = index[IX_TABLE_SLOTS] - 1
    s = _hash_slot(sid, mask)
    while True:
        key = index[IX_TABLE + 2 * s]
        if key == sid:
            return index[IX_TABLE + 2 * s + 1]
        if key == EMPTY_KEY:
            return -1
        s = (s + 1) & mask


@njit(cache=True)
def _register(index: Any, inst: Any, inst_status: Any, sid: I64, c: I64, status: I64,
              mbo: I64) -> I64:
    """Give ``sid`` a row on channel ``c`` (or return its row); -1 when the table is full."""
    row = _lookup(index, sid)
    if row >= 0:
        return row
    n = index[IX_N_INST]
    if n >= inst.shape[0]:
        return -1
    mask = index[IX_TABLE_SLOTS] - 1
    s = _hash_slot(sid, mask)
    while index[IX_TABLE + 2 * s] != EMPTY_KEY:
        s = (s + 1) & mask
    index[IX_TABLE + 2 * s] = sid
    index[IX_TABLE + 2 * s + 1] = n
    index[IX_N_INST] = n + 1
    for k in range(IN_WIDTH):
        inst[n, k] = 0
    inst[n, IN_SECURITY_ID] = sid
    inst[n, IN_CHANNEL] = c
    inst[n, IN_MBO] = mbo
    inst_status[n] = status
    return n


@njit(cache=True, inline="always")
def _seen_get(chan: Any, c: I64, seq: I64) -> Any:
    b = seq & (SEEN_BITS - 1)
    return (chan[c, CH_SEEN + (b >> 6)] >> (b & 63)) & 1 == 1


@njit(cache=True, inline="always")
def _seen_put(chan: Any, c: I64, seq: I64, on: bool) -> None:
    b = seq & (SEEN_BITS - 1)
    w = CH_SEEN + (b >> 6)
    bit = np.int64(1) << (b & 63)
    if on:
        chan[c, w] |= bit
    else:
        chan[c, w] &= ~bit


@njit(cache=True, inline="always")
def _count(chan: Any, c: I64, which: I64, k: I64) -> None:
    chan[c, CH_COUNTERS + which] += k


# ==========================================================================
# Kernels: arbitration (raw packet headers only)
# ==========================================================================
@njit(cache=True)
def _push(chan: Any, c: I64, dbase: I64, what: I64, a: I64, b: I64) -> None:
    k = chan[c, CH_N_DELIVER]
    p = dbase + DLV_WIDTH * k
    if p + DLV_WIDTH > chan.shape[1]:
        return  # cannot happen: the list is sized for the worst case of one call
    chan[c, p] = what
    chan[c, p + 1] = a
    chan[c, p + 2] = b
    chan[c, CH_N_DELIVER] = k + 1
    if what != DLV_GAP:
        _count(chan, c, SQ_DELIVERED, 1)


@njit(cache=True)
def _restart(chan: Any, c: I64, n_slots: I64, seq: I64) -> None:
    """Start (or restart after a sequence reset) the channel at ``seq``."""
    dropped = 0
    for s in range(n_slots):
        m = CH_HOLD_META + HOLD_META_WIDTH * s
        if chan[c, m] >= 0:
            dropped += 1
        chan[c, m] = -1
    if dropped > 0:
        _count(chan, c, SQ_DROP_OBSOLETE, dropped)
    chan[c, CH_HOLD_COUNT] = 0
    for w in range(SEEN_WORDS):
        chan[c, CH_SEEN + w] = 0
    chan[c, CH_NEXT_SEQ] = seq
    chan[c, CH_FEED_SEQ + FEED_A] = 0
    chan[c, CH_FEED_SEQ + FEED_B] = 0
    chan[c, CH_FIRST_SEQ] = seq


@njit(cache=True)
def _hold_since(chan: Any, c: I64, n_slots: I64) -> None:
    oldest = np.int64(0)
    found = False
    for s in range(n_slots):
        m = CH_HOLD_META + HOLD_META_WIDTH * s
        if chan[c, m] >= 0 and (not found or chan[c, m + 3] < oldest):
            oldest = chan[c, m + 3]
            found = True
    chan[c, CH_HOLD_SINCE_NS] = oldest


@njit(cache=True)
def _drain(chan: Any, c: I64, n_slots: I64, dbase: I64) -> None:
    """Deliver held packets that continue the sequence."""
    nxt = chan[c, CH_NEXT_SEQ]
    while chan[c, CH_HOLD_COUNT] > 0:
        s = nxt & (n_slots - 1)
        m = CH_HOLD_META + HOLD_META_WIDTH * s
        if chan[c, m] != nxt:
            break
        _push(chan, c, dbase, DLV_HELD, s, nxt)
        chan[c, m] = -1  # free; its bytes stay valid until the next call
        chan[c, CH_HOLD_COUNT] -= 1
        _seen_put(chan, c, nxt, True)
        nxt += 1
    chan[c, CH_NEXT_SEQ] = nxt
    if chan[c, CH_HOLD_COUNT] > 0:
        _hold_since(chan, c, n_slots)


@njit(cache=True)
def _declare_gap(chan: Any, c: I64, dbase: I64, a: I64, b: I64) -> None:
    _push(chan, c, dbase, DLV_GAP, a, b)
    lo = a if b - a < SEEN_BITS else b - SEEN_BITS + 1
    for s in range(lo, b + 1):
        _seen_put(chan, c, s, False)
    chan[c, CH_GAP_START] = a
    chan[c, CH_GAP_END] = b
    chan[c, CH_NEXT_SEQ] = b + 1
    _count(chan, c, SQ_GAPS, 1)
    _count(chan, c, SQ_GAP_PACKETS, b - a + 1)


@njit(cache=True)
def _lowest_held(chan: Any, c: I64, n_slots: I64) -> I64:
    nxt = chan[c, CH_NEXT_SEQ]
    for d in range(n_slots):
        s = (nxt + d) & (n_slots - 1)
        if chan[c, CH_HOLD_META + HOLD_META_WIDTH * s] == nxt + d:
            return nxt + d
    return -1


@njit(cache=True)
def _skip_to(chan: Any, c: I64, n_slots: I64, dbase: I64, target: I64) -> None:
    """Deliver or declare lost every sequence before ``target`` (beyond the hold window)."""
    while chan[c, CH_NEXT_SEQ] < target:
        if chan[c, CH_HOLD_COUNT] == 0:
            _declare_gap(chan, c, dbase, chan[c, CH_NEXT_SEQ], target - 1)
            return
        h = _lowest_held(chan, c, n_slots)
        if h < 0 or h >= target:
            _declare_gap(chan, c, dbase, chan[c, CH_NEXT_SEQ], target - 1)
            return
        if h > chan[c, CH_NEXT_SEQ]:
            _declare_gap(chan, c, dbase, chan[c, CH_NEXT_SEQ], h - 1)
        _drain(chan, c, n_slots, dbase)


@njit(cache=True)
def _gap_due(chan: Any, c: I64, now_ns: I64) -> Any:
    """The missing sequence is lost: waited too long, or every live feed is past it."""
    if now_ns - chan[c, CH_HOLD_SINCE_NS] >= chan[c, CH_GAP_TIMEOUT_NS]:
        return True
    nxt = chan[c, CH_NEXT_SEQ]
    alive = 0
    for f in range(2):
        t = chan[c, CH_FEED_NS + f]
        if t == 0 or now_ns - t > chan[c, CH_FEED_DEAD_NS]:
            continue
        alive += 1
        if chan[c, CH_FEED_SEQ + f] <= nxt + chan[c, CH_REORDER_SLACK]:
            return False
    return alive > 0


@njit(cache=True)
def _resolve_gaps(chan: Any, c: I64, n_slots: I64, dbase: I64, now_ns: I64) -> None:
    while chan[c, CH_HOLD_COUNT] > 0 and _gap_due(chan, c, now_ns):
        h = _lowest_held(chan, c, n_slots)
        if h < 0:  # inconsistent count: cannot happen, but never spin
            chan[c, CH_HOLD_COUNT] = 0
            return
        _declare_gap(chan, c, dbase, chan[c, CH_NEXT_SEQ], h - 1)
        _drain(chan, c, n_slots, dbase)


@njit(cache=True)
def _arbitrate(buf: Any, n: I64, c: I64, feed: I64, now_ns: I64, chan: Any, hold: Any) -> I64:
    """Arbitrate one incremental datagram of channel ``c`` from ``feed``.

    Writes the delivery list into ``chan[c]`` (read it with ``_delivery``) and
    returns its length: DLV_LIVE (decode ``buf`` now), DLV_HELD (decode hold
    slot a, sequence b), DLV_GAP (sequences a..b lost), in sequence order.
    """
    n_slots = hold.shape[1]
    dbase = CH_HOLD_META + HOLD_META_WIDTH * n_slots
    chan[c, CH_N_DELIVER] = 0
    if n < PACKET_HEADER_SIZE or n > buf.shape[0]:
        _count(chan, c, SQ_DROP_SHORT, 1)
        return 0
    seq = _u32(buf, 0)
    _count(chan, c, SQ_PACKETS_A + feed, 1)
    chan[c, CH_LAST_RECV_NS] = now_ns
    chan[c, CH_FEED_NS + feed] = now_ns
    if chan[c, CH_STATE] == CHAN_IDLE:
        _restart(chan, c, n_slots, seq)
        chan[c, CH_STATE] = CHAN_RUNNING
        chan[c, CH_START_PENDING] = 1
    if seq > chan[c, CH_FEED_SEQ + feed]:
        chan[c, CH_FEED_SEQ + feed] = seq
    nxt = chan[c, CH_NEXT_SEQ]
    if seq == nxt:
        _push(chan, c, dbase, DLV_LIVE, 0, seq)
        _seen_put(chan, c, seq, True)
        chan[c, CH_NEXT_SEQ] = seq + 1
        _drain(chan, c, n_slots, dbase)
    elif seq < nxt:
        if nxt - seq <= SEEN_BITS and _seen_get(chan, c, seq):
            _count(chan, c, SQ_DUPLICATES, 1)
        elif _first_template(buf, n) == TEMPLATE_CHANNEL_RESET:
            # CME restarted the channel's sequence with a ChannelReset
            _restart(chan, c, n_slots, seq)
            chan[c, CH_FEED_SEQ + feed] = seq
            _count(chan, c, SQ_SEQ_RESETS, 1)
            _push(chan, c, dbase, DLV_LIVE, 0, seq)
            _seen_put(chan, c, seq, True)
            chan[c, CH_NEXT_SEQ] = seq + 1
        else:
            _count(chan, c, SQ_LATE, 1)
    elif seq - nxt >= n_slots:
        # beyond the hold window: what is not held before it is lost
        _skip_to(chan, c, n_slots, dbase, seq)
        _push(chan, c, dbase, DLV_LIVE, 0, seq)
        _seen_put(chan, c, seq, True)
        chan[c, CH_NEXT_SEQ] = seq + 1
        _drain(chan, c, n_slots, dbase)
    else:
        s = seq & (n_slots - 1)
        m = CH_HOLD_META + HOLD_META_WIDTH * s
        if chan[c, m] == seq:
            _count(chan, c, SQ_DUPLICATES, 1)
        elif n > hold.shape[2]:
            _count(chan, c, SQ_DROP_TOO_BIG, 1)
        else:
            hold[c, s, :n] = buf[:n]
            chan[c, m] = seq
            chan[c, m + 1] = n
            chan[c, m + 2] = feed
            chan[c, m + 3] = now_ns
            chan[c, CH_HOLD_COUNT] += 1
            _count(chan, c, SQ_HELD, 1)
            if chan[c, CH_HOLD_COUNT] == 1:
                chan[c, CH_HOLD_SINCE_NS] = now_ns
    _resolve_gaps(chan, c, n_slots, dbase, now_ns)
    return chan[c, CH_N_DELIVER]


@njit(cache=True)
def _expire(c: I64, now_ns: I64, chan: Any, hold: Any) -> I64:
    """Timer pass for channel ``c`` when nothing arrived: gaps whose wait is over."""
    n_slots = hold.shape[1]
    chan[c, CH_N_DELIVER] = 0
    if chan[c, CH_HOLD_COUNT] > 0:
        _resolve_gaps(chan, c, n_slots, CH_HOLD_META + HOLD_META_WIDTH * n_slots, now_ns)
    return chan[c, CH_N_DELIVER]


# ==========================================================================
# Kernels: instrument state and the row gate
# ==========================================================================
@njit(cache=True, inline="always")
def _set_state(inst_status: Any, i: I64, st: I64) -> None:
    inst_status[i] = (inst_status[i] & INST_STALE) | st


@njit(cache=True)
def _enter_recovery(i: I64, st: I64, need: I64, c: I64, chan: Any, inst: Any,
                    inst_status: Any) -> None:
    old = inst_status[i] & INST_STATE_MASK
    if old == INST_OK:
        chan[c, CH_N_PENDING] += 1
        _count(chan, c, SQ_RECOVERIES, 1)
        inst[i, IN_RECOVERIES] += 1
        inst[i, IN_SNAP_CHUNK] = 0
    if need > inst[i, IN_NEED_SEQ]:
        inst[i, IN_NEED_SEQ] = need
    if old != INST_RECOVERING:
        _set_state(inst_status, i, st)
    chan[c, CH_WANT_SNAPSHOT] = 1


@njit(cache=True)
def _leave_recovery(i: I64, c: I64, chan: Any, inst_status: Any) -> None:
    if inst_status[i] & INST_STATE_MASK != INST_OK:
        _set_state(inst_status, i, INST_OK)
        chan[c, CH_N_PENDING] -= 1
    if chan[c, CH_N_PENDING] <= 0:
        chan[c, CH_N_PENDING] = 0
        chan[c, CH_WANT_SNAPSHOT] = 0
        chan[c, CH_BUF_LEN] = 0


@njit(cache=True)
def _mark_gap(c: I64, gap_end: I64, chan: Any, inst: Any, inst_status: Any, index: Any) -> None:
    """Sequences up to ``gap_end`` were lost: no instrument of the channel is known good."""
    for i in range(index[IX_N_INST]):
        if inst[i, IN_CHANNEL] != c:
            continue
        st = inst_status[i] & INST_STATE_MASK
        if st == INST_OK:
            if inst[i, IN_SYNC_SEQ] >= gap_end:
                continue  # its last snapshot already covers the lost packets
            _enter_recovery(i, INST_SUSPECT, gap_end, c, chan, inst, inst_status)
        elif st != INST_EMPTY and gap_end > inst[i, IN_NEED_SEQ]:
            inst[i, IN_NEED_SEQ] = gap_end


@njit(cache=True)
def _start_pass(c: I64, chan: Any, inst: Any, inst_status: Any, index: Any) -> None:
    """First packet of the channel: what happened before it is unknown to the buffer."""
    chan[c, CH_START_PENDING] = 0
    before = chan[c, CH_FIRST_SEQ] - 1
    for i in range(index[IX_N_INST]):
        if inst[i, IN_CHANNEL] != c:
            continue
        st = inst_status[i] & INST_STATE_MASK
        if st in (INST_RECOVERING, INST_SUSPECT):
            if before > inst[i, IN_NEED_SEQ]:
                inst[i, IN_NEED_SEQ] = before
        elif st == INST_OK and 0 < inst[i, IN_SYNC_SEQ] < before:
            # a snapshot came before the incrementals, and packets in between are missing
            _enter_recovery(i, INST_RECOVERING, before, c, chan, inst, inst_status)


@njit(cache=True)
def _channel_reset(c: I64, msg_seq: I64, chan: Any, inst: Any, inst_status: Any,
                   index: Any) -> None:
    """ChannelReset: every book of the channel is empty and every RptSeq restarts at 1."""
    for i in range(index[IX_N_INST]):
        if inst[i, IN_CHANNEL] != c:
            continue
        _set_state(inst_status, i, INST_OK)
        inst[i, IN_LAST_RPT] = 0
        inst[i, IN_NEED_SEQ] = 0
        inst[i, IN_SYNC_SEQ] = msg_seq - 1
        inst[i, IN_SNAP_CHUNK] = 0
    chan[c, CH_N_PENDING] = 0
    chan[c, CH_WANT_SNAPSHOT] = 0
    chan[c, CH_BUF_LEN] = 0
    _count(chan, c, SQ_CHANNEL_RESETS, 1)


@njit(cache=True, inline="always")
def _is_sequenced(kind: I64) -> Any:
    """Rows whose RptSeq is the instrument's own sequence number."""
    return kind in (EV_BOOK, EV_TRADE, EV_VOLUME, EV_STAT)


@njit(cache=True)
def _emit(src: Any, i: I64, out: Any, n_out: I64, c: I64, chan: Any) -> I64:
    """out[n_out] = src[i] (``src`` 1-D or flattened MD_EVENT)."""
    if n_out >= out.shape[0]:
        _count(chan, c, SQ_DROP_OUT_FULL, 1)
        return n_out
    _copy_row(src, i, out, n_out)
    _count(chan, c, SQ_ROWS_OUT, 1)
    return n_out + 1


@njit(cache=True)
def _buffer(ev: Any, j: I64, c: I64, chan: Any, inst: Any, inst_status: Any, index: Any,
            rbuf: Any) -> None:
    """Keep row ``ev[j]`` of a non-OK instrument in the channel's recovery buffer."""
    k = chan[c, CH_BUF_LEN]
    if k < rbuf.shape[1]:
        _copy_row(ev, j, rbuf, c * rbuf.shape[1] + k)
        chan[c, CH_BUF_LEN] = k + 1
        _count(chan, c, SQ_BUFFERED, 1)
        return
    # Overflow: forget the buffer. Every pending instrument now needs a snapshot
    # at least as new as this packet, and RptSeq can no longer vouch for any.
    _count(chan, c, SQ_DROP_BUFFER_FULL, k + 1)
    chan[c, CH_BUF_LEN] = 0
    seq = np.int64(ev[j].msg_seq)
    for i in range(index[IX_N_INST]):
        if inst[i, IN_CHANNEL] != c:
            continue
        st = inst_status[i] & INST_STATE_MASK
        if st in (INST_RECOVERING, INST_SUSPECT):
            _set_state(inst_status, i, INST_RECOVERING)
            inst[i, IN_SNAP_CHUNK] = 0
            if seq > inst[i, IN_NEED_SEQ]:
                inst[i, IN_NEED_SEQ] = seq


@njit(cache=True)
def _replay(c: I64, i: I64, after_seq: I64, chan: Any, inst: Any, rbuf: Any, out: Any,
            n_out: I64) -> I64:
    """Emit (and consume) the buffered rows of instrument ``i`` newer than ``after_seq``."""
    sid = inst[i, IN_SECURITY_ID]
    for k in range(chan[c, CH_BUF_LEN]):
        r = rbuf[c, k]
        if r.kind == EV_NONE or r.security_id != sid:
            continue
        if r.msg_seq > after_seq:
            n_out = _emit(rbuf, c * rbuf.shape[1] + k, out, n_out, c, chan)
            _count(chan, c, SQ_REPLAYED, 1)
            if _is_sequenced(r.kind) and r.rpt_seq > inst[i, IN_LAST_RPT]:
                inst[i, IN_LAST_RPT] = r.rpt_seq
        r.kind = EV_NONE
    return n_out


@njit(cache=True)
def _buffer_continues(c: I64, sid: I64, after_seq: I64, rpt: I64, chan: Any, rbuf: Any) -> Any:
    """The buffered rows of ``sid`` newer than ``after_seq`` continue RptSeq ``rpt``."""
    last = rpt
    for k in range(chan[c, CH_BUF_LEN]):
        r = rbuf[c, k]
        if r.kind == EV_NONE or r.security_id != sid or r.msg_seq <= after_seq:
            continue
        if _is_sequenced(r.kind):
            if r.rpt_seq != last + 1:
                return False
            last = r.rpt_seq
    return True


@njit(cache=True)
def _gate_rows(ev: Any, n_ev: I64, c: I64, chan: Any, inst: Any, inst_status: Any,
               index: Any, rbuf: Any, out: Any, n_out: I64) -> I64:
    """Route the decoded rows of one delivered incremental packet; return the new ``n_out``.

    Rows of OK instruments go to ``out``; rows of RECOVERING/SUSPECT ones are
    buffered; rows already reflected in the book are dropped. An end-of-event
    flag carried by a row that does not go out moves to the last row that did.
    """
    _count(chan, c, SQ_ROWS_IN, n_ev)
    trade_out = True  # the trade that an EV_TRADE_ORDER row belongs to went out
    open_event = False  # rows went out since the last end-of-event
    recover_on_start = index[IX_RECOVER_ON_START]
    for j in range(n_ev):
        r = ev[j]
        kind = r.kind
        sent = False
        if kind == EV_CHANNEL_RESET:
            _channel_reset(c, np.int64(r.msg_seq), chan, inst, inst_status, index)
            sent = True
        elif kind == EV_TRADE_ORDER:
            if trade_out:
                sent = True
            else:
                _count(chan, c, SQ_DROP_RECOVERING_INFO, 1)
        elif (kind in (EV_BOOK, EV_ORDER, EV_ORDER_REF, EV_TRADE, EV_VOLUME, EV_STAT)):
            sid = np.int64(r.security_id)
            msg_seq = np.int64(r.msg_seq)
            i = _lookup(index, sid)
            if i < 0 and index[IX_AUTO_REGISTER] != 0:
                st0 = INST_RECOVERING if recover_on_start != 0 else INST_OK
                i = _register(index, inst, inst_status, sid, c, INST_OK, 0)
                if i >= 0 and st0 == INST_RECOVERING:
                    _enter_recovery(i, INST_RECOVERING, msg_seq - 1, c, chan, inst,
                                    inst_status)
                elif i < 0:
                    _count(chan, c, SQ_DROP_INSTRUMENTS_FULL, 1)
            if i < 0:
                _count(chan, c, SQ_UNTRACKED, 1)
                sent = True
            elif msg_seq <= inst[i, IN_SYNC_SEQ]:
                _count(chan, c, SQ_DROP_OLD_RPT, 1)
            else:
                st = inst_status[i] & INST_STATE_MASK
                seqd = _is_sequenced(kind)
                rpt = np.int64(r.rpt_seq)
                last = inst[i, IN_LAST_RPT]
                if st == INST_OK:
                    if not seqd or last == 0 or rpt == last + 1:
                        if seqd:
                            inst[i, IN_LAST_RPT] = rpt
                        sent = True
                    elif rpt <= last:
                        _count(chan, c, SQ_DROP_OLD_RPT, 1)
                    else:
                        _count(chan, c, SQ_RPT_GAPS, 1)
                        _enter_recovery(i, INST_RECOVERING, msg_seq - 1, c, chan, inst,
                                        inst_status)
                        _buffer(ev, j, c, chan, inst, inst_status, index, rbuf)
                elif (st == INST_SUSPECT and seqd and last > 0 and rpt == last + 1
                      and inst[i, IN_MBO] == 0):
                    # the gap did not touch this instrument: its RptSeq continues
                    n_out = _replay(c, i, 0, chan, inst, rbuf, out, n_out)
                    _leave_recovery(i, c, chan, inst_status)
                    _count(chan, c, SQ_CONFIRMED, 1)
                    inst[i, IN_LAST_RPT] = rpt
                    sent = True
                else:
                    if st == INST_SUSPECT and seqd and not (rpt <= last):
                        _count(chan, c, SQ_RPT_GAPS, 1)
                        _set_state(inst_status, i, INST_RECOVERING)
                    _buffer(ev, j, c, chan, inst, inst_status, index, rbuf)
            if kind == EV_TRADE:
                trade_out = sent
        else:
            sent = True  # status, heartbeat, definition, other: not book state
            if kind == EV_DEFINITION:
                chan[c, CH_DEFINITIONS] += 1
        if sent:
            n_out = _emit(ev, j, out, n_out, c, chan)
            open_event = (r.flags & FLAG_END_OF_EVENT) == 0
        elif (r.flags & FLAG_END_OF_EVENT) != 0 and open_event and n_out > 0:
            out[n_out - 1].flags |= FLAG_END_OF_EVENT
            open_event = False
    return n_out


@njit(cache=True)
def _gate_snapshot(ev: Any, n_ev: I64, c: I64, chan: Any, inst: Any, inst_status: Any,
                   index: Any, rbuf: Any, out: Any, n_out: I64) -> I64:
    """Apply the snapshots of one snapshot-loop packet to the instruments that wait for one."""
    j = 0
    while j < n_ev:
        r = ev[j]
        if r.kind != EV_SNAPSHOT:
            j += 1
            continue
        end = j + 1 + r.num_orders
        if end > n_ev:
            end = n_ev
        sid = np.int64(r.security_id)
        last_seq = np.int64(r.aux)  # LastMsgSeqNumProcessed
        mbo = r.template_id == TEMPLATE_SNAPSHOT_MBO
        i = _lookup(index, sid)
        if i < 0 and index[IX_AUTO_REGISTER] != 0:
            i = _register(index, inst, inst_status, sid, c, INST_OK, 1 if mbo else 0)
            if i >= 0:
                _enter_recovery(i, INST_RECOVERING, 0, c, chan, inst, inst_status)
        apply = False
        finish = False
        if i >= 0 and (inst_status[i] & INST_STATE_MASK) != INST_OK and last_seq >= 0:
            if mbo:
                chunk = np.int64(r.rpt_seq)  # CurrentChunk
                n_chunks = np.int64(r.order_id) if r.order_id > 0 else np.int64(1)  # NoChunks
                if chunk == 1 and last_seq >= inst[i, IN_NEED_SEQ]:
                    inst[i, IN_SNAP_CHUNK] = 1
                    inst[i, IN_SNAP_SEQ] = last_seq
                if (inst[i, IN_SNAP_CHUNK] == chunk and chunk >= 1
                        and inst[i, IN_SNAP_SEQ] == last_seq):
                    apply = True
                    finish = bool(chunk >= n_chunks)
                    inst[i, IN_SNAP_CHUNK] = 0 if finish else chunk + 1
                else:
                    inst[i, IN_SNAP_CHUNK] = 0
            elif inst[i, IN_MBO] == 0 and last_seq >= inst[i, IN_NEED_SEQ]:
                rpt = np.int64(r.rpt_seq)
                if _buffer_continues(c, sid, last_seq, rpt, chan, rbuf):
                    apply = True
                    finish = True
                    inst[i, IN_LAST_RPT] = rpt
        if apply:
            for k in range(j, end):
                n_out = _emit(ev, k, out, n_out, c, chan)
            if finish:
                inst[i, IN_SYNC_SEQ] = last_seq
                inst[i, IN_NEED_SEQ] = 0
                n_out = _replay(c, i, last_seq, chan, inst, rbuf, out, n_out)
                _leave_recovery(i, c, chan, inst_status)
                _count(chan, c, SQ_RECOVERED, 1)
                if n_out > 0:
                    out[n_out - 1].flags |= FLAG_END_OF_EVENT
            _count(chan, c, SQ_SNAPSHOTS_APPLIED, 1)
        else:
            _count(chan, c, SQ_SNAPSHOTS_SKIPPED, 1)
        j = end
    return n_out


@njit(cache=True)
def _set_stale(c: I64, on: bool, chan: Any, inst: Any, inst_status: Any, index: Any) -> None:
    chan[c, CH_STALE] = 1 if on else 0
    for i in range(index[IX_N_INST]):
        if inst[i, IN_CHANNEL] == c:
            if on:
                inst_status[i] |= INST_STALE
            else:
                inst_status[i] &= ~INST_STALE & 0xFF


@njit(cache=True)
def _check_stale(now_ns: I64, chan: Any, inst: Any, inst_status: Any, index: Any) -> I64:
    """Mark STALE every running channel silent longer than its interval; return how many."""
    n = 0
    for c in range(chan.shape[0]):
        if (chan[c, CH_STATE] == CHAN_RUNNING and chan[c, CH_STALE] == 0
                and now_ns - chan[c, CH_LAST_RECV_NS] > chan[c, CH_STALE_NS]):
            _set_stale(c, True, chan, inst, inst_status, index)
            _count(chan, c, SQ_STALE, 1)
            n += 1
    return n


# ==========================================================================
# The arena: every array of the sequencer in ONE int64 buffer
# ==========================================================================
# Each array handed from Python to numba costs ~50-100 ns to unbox; the entry
# kernels take the arena and build typed views of its regions (free).
A_MAGIC = 0
A_N_CHANNELS = 1
A_HOLD_SLOTS = 2
A_HOLD_BYTES = 3
A_BUFFER_ROWS = 4
A_MAX_INST = 5
A_INDEX_LEN = 6
A_PLAN_LEN = 7
A_EV_CAP = 8
A_CHAN_WIDTH = 9
A_OFF = 16  # + region: offset (int64 units)
A_HEADER_LEN = 32
ARENA_MAGIC = 0x5345514E  # "SEQN"

R_CHAN = 0
R_INST = 1
R_INDEX = 2
R_STATUS = 3
R_HOLD = 4
R_RBUF = 5
R_PLAN = 6
R_EVENTS = 7
R_DROPS = 8
R_HEADER = 9
N_REGIONS = 10

_EV_WORDS = MD_EVENT.itemsize // 8
_HDR_WORDS = PACKET_HEADER.itemsize // 8


@intrinsic
def _region_ptr(typingctx: Any, arena: Any, offset: Any, dtype: Any) -> Any:
    """Typed pointer to ``arena``'s data + ``offset`` int64 words, for ``carray``.

    numba's ``reshape``/``view`` cost 25-170 ns each (shape checks, reference
    counts): ten of them per datagram were most of the sequencing time. A
    ``carray`` over a raw pointer costs ~1 ns and holds no reference, so the
    views live only inside a call that holds ``arena``.
    """
    dt = dtype.dtype if isinstance(dtype, types.DType) else dtype.instance_type
    sig = types.CPointer(dt)(arena, offset, dtype)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        i64 = llvm_ir.IntType(64)
        base = builder.ptrtoint(ary.data, i64)
        off = args[1] if args[1].type == i64 else builder.sext(args[1], i64)
        off = builder.mul(off, llvm_ir.Constant(i64, 8))
        return builder.inttoptr(builder.add(base, off),
                                context.get_data_type(dt).as_pointer())

    return sig, codegen


_ptr: Any = _region_ptr  # an intrinsic: mypy cannot see its call signature


@njit(cache=True, inline="always")
def _seq_views(arena: Any) -> Any:
    """Typed views of the arena regions: (chan, inst, index, status, hold, rbuf, plan,
    ev, drops, header). Valid while the caller holds ``arena``."""
    n_ch = arena[A_N_CHANNELS]
    n_inst = arena[A_MAX_INST]
    i8 = np.int64
    chan = carray(_ptr(arena, arena[A_OFF + R_CHAN], i8), (n_ch, arena[A_CHAN_WIDTH]))
    inst = carray(_ptr(arena, arena[A_OFF + R_INST], i8), (n_inst, IN_WIDTH))
    index = carray(_ptr(arena, arena[A_OFF + R_INDEX], i8), (arena[A_INDEX_LEN],))
    status = carray(_ptr(arena, arena[A_OFF + R_STATUS], np.uint8), (n_inst,))
    hold = carray(_ptr(arena, arena[A_OFF + R_HOLD], np.uint8),
                  (n_ch, arena[A_HOLD_SLOTS], arena[A_HOLD_BYTES]))
    rbuf = carray(_ptr(arena, arena[A_OFF + R_RBUF], MD_EVENT),
                  (n_ch, arena[A_BUFFER_ROWS]))
    plan = carray(_ptr(arena, arena[A_OFF + R_PLAN], i8), (arena[A_PLAN_LEN],))
    ev = carray(_ptr(arena, arena[A_OFF + R_EVENTS], MD_EVENT), (arena[A_EV_CAP],))
    drops = carray(_ptr(arena, arena[A_OFF + R_DROPS], i8), (N_DROP_REASONS,))
    header = carray(_ptr(arena, arena[A_OFF + R_HEADER], PACKET_HEADER), (1,))
    return chan, inst, index, status, hold, rbuf, plan, ev, drops, header


def _numpy_views(arena: np.ndarray) -> tuple[np.ndarray, ...]:
    """The same views with numpy (the facade's attributes)."""
    n_ch = int(arena[A_N_CHANNELS])
    n_inst = int(arena[A_MAX_INST])

    def region(r: int, words: int) -> np.ndarray:
        o = int(arena[A_OFF + r])
        return arena[o:o + words]

    h, hb, rows = int(arena[A_HOLD_SLOTS]), int(arena[A_HOLD_BYTES]), int(arena[A_BUFFER_ROWS])
    return (
        region(R_CHAN, n_ch * int(arena[A_CHAN_WIDTH])).reshape(n_ch, -1),
        region(R_INST, n_inst * IN_WIDTH).reshape(n_inst, IN_WIDTH),
        region(R_INDEX, int(arena[A_INDEX_LEN])),
        region(R_STATUS, (n_inst + 7) // 8).view(np.uint8)[:n_inst],
        region(R_HOLD, n_ch * h * hb // 8).view(np.uint8).reshape(n_ch, h, hb),
        region(R_RBUF, n_ch * rows * _EV_WORDS).view(MD_EVENT).reshape(n_ch, rows),
        region(R_PLAN, int(arena[A_PLAN_LEN])),
        region(R_EVENTS, int(arena[A_EV_CAP]) * _EV_WORDS).view(MD_EVENT),
        region(R_DROPS, N_DROP_REASONS),
        region(R_HEADER, _HDR_WORDS).view(PACKET_HEADER),
    )


# ==========================================================================
# Kernels: fused per datagram (arbitrate -> decode -> gate)
# ==========================================================================
@njit(cache=True)
def _deliver(buf: Any, n: I64, c: I64, nd: I64, chan: Any, hold: Any, inst: Any,
             inst_status: Any, index: Any, rbuf: Any, plan: Any, ev: Any, drops: Any,
             header: Any, out: Any, n_out: I64) -> I64:
    """Decode and gate the ``nd`` entries of channel ``c``'s delivery list."""
    n_slots = hold.shape[1]
    dbase = CH_HOLD_META + HOLD_META_WIDTH * n_slots
    for k in range(nd):
        p = dbase + DLV_WIDTH * k
        what = chan[c, p]
        if what == DLV_GAP:
            _mark_gap(c, chan[c, p + 2], chan, inst, inst_status, index)
            continue
        if what == DLV_LIVE:
            n_ev = _decode_packet(buf, n, plan, ev, 0, drops, header)
        else:
            s = chan[c, p + 1]
            m = CH_HOLD_META + HOLD_META_WIDTH * s
            n_ev = _decode_packet(hold[c, s], chan[c, m + 1], plan, ev, 0, drops, header)
        if chan[c, CH_START_PENDING] != 0:
            _start_pass(c, chan, inst, inst_status, index)
        n_out = _gate_rows(ev, n_ev, c, chan, inst, inst_status, index, rbuf, out, n_out)
    return n_out


@njit(cache=True)
def _sequence(buf: Any, n: I64, c: I64, feed: I64, role: I64, now_ns: I64, arena: Any,
              out: Any, n_out: I64) -> I64:
    """One datagram of channel ``c`` (ROLE_*): rows for the books appended to ``out[n_out:]``.

    Incremental: stale cleared, arbitrated, each delivered packet decoded and
    gated. Snapshot (MBP or MBO loop): decoded only while an instrument waits,
    then applied where it fits. Definitions and bad channels: nothing (the
    instrument table reads definitions off the hot path).
    """
    chan, inst, index, status, hold, rbuf, plan, ev, drops, header = _seq_views(arena)
    if c < 0 or c >= chan.shape[0]:
        return n_out
    if role == ROLE_INCREMENTAL:
        if chan[c, CH_STALE] != 0:
            _set_stale(c, False, chan, inst, status, index)
        nd = _arbitrate(buf, n, c, feed, now_ns, chan, hold)
        return _deliver(buf, n, c, nd, chan, hold, inst, status, index, rbuf, plan, ev,
                        drops, header, out, n_out)
    if role in (ROLE_SNAPSHOT, ROLE_SNAPSHOT_MBO):
        _count(chan, c, SQ_SNAPSHOT_PACKETS, 1)
        if chan[c, CH_WANT_SNAPSHOT] == 0:
            return n_out  # nobody waits: not even decoded
        n_ev = _decode_packet(buf, n, plan, ev, 0, drops, header)
        return _gate_snapshot(ev, n_ev, c, chan, inst, status, index, rbuf, out, n_out)
    return n_out


@njit(cache=True)
def _sequence_idle(c: I64, now_ns: I64, arena: Any, out: Any, n_out: I64) -> I64:
    """Timers of channel ``c`` with nothing received: an expired gap wait releases the
    held packets (their rows go to ``out``); a silent channel turns STALE."""
    chan, inst, index, status, hold, rbuf, plan, ev, drops, header = _seq_views(arena)
    if c < 0 or c >= chan.shape[0]:
        return n_out
    if chan[c, CH_HOLD_COUNT] > 0:
        nd = _expire(c, now_ns, chan, hold)
        if nd > 0:
            n_out = _deliver(hold[c, 0], 0, c, nd, chan, hold, inst, status, index, rbuf,
                             plan, ev, drops, header, out, n_out)
    if (chan[c, CH_STATE] == CHAN_RUNNING and chan[c, CH_STALE] == 0
            and now_ns - chan[c, CH_LAST_RECV_NS] > chan[c, CH_STALE_NS]):
        _set_stale(c, True, chan, inst, status, index)
        _count(chan, c, SQ_STALE, 1)
    return n_out


@njit(cache=True)
def _sequence_stream(buf: Any, offsets: Any, meta: Any, arena: Any, out: Any,
                     out_end: Any) -> I64:
    """Datagram i = ``buf[offsets[i]:offsets[i+1]]`` with ``meta[i]`` = (channel, feed,
    role, time ns), in order, in one call. ``out_end[i]`` = rows in ``out`` after
    datagram i. Returns the datagrams done: fewer when ``out`` could overflow."""
    n_out = 0
    margin = 4 * arena[A_EV_CAP]
    for p in range(offsets.shape[0] - 1):
        if out.shape[0] - n_out < margin:
            return p
        a = offsets[p]
        b = offsets[p + 1]
        n_out = _sequence(buf[a:b], b - a, meta[p, 0], meta[p, 1], meta[p, 2], meta[p, 3],
                          arena, out, n_out)
        out_end[p] = n_out
    return offsets.shape[0] - 1


# ==========================================================================
# Facade
# ==========================================================================
@dataclass(frozen=True)
class SequencerConfig:
    """Sizes and timers of the sequencer (the daemon config embeds one)."""

    hold_slots: int = 64  # packets that can wait ahead of a missing one (power of 2)
    hold_slot_bytes: int = 2048  # largest packet that can wait (CME packets are < 1500)
    buffer_rows: int = 65536  # rows buffered per channel while instruments recover
    max_instruments: int = 4096
    decode_rows: int = 4096  # rows one packet may decode to
    gap_timeout_ns: int = 2_000_000  # a missing sequence waits this long at most
    reorder_slack: int = 2  # ... or until every live feed is this many packets past it
    stale_after_ns: int = 5_000_000_000  # channel silent this long -> STALE
    feed_dead_ns: int = 1_000_000_000  # a feed silent this long does not veto a gap
    recover_on_start: bool = True  # late join: every instrument waits for its snapshot
    auto_register: bool = True  # unknown security ids get a row (else pass through)

    def validate(self) -> None:
        if self.hold_slots < 2 or self.hold_slots & (self.hold_slots - 1):
            raise ValueError("hold_slots must be a power of two >= 2")
        if self.hold_slot_bytes < PACKET_HEADER_SIZE or self.hold_slot_bytes % 8:
            raise ValueError("hold_slot_bytes must be a multiple of 8 >= 16")
        if min(self.buffer_rows, self.max_instruments, self.decode_rows) < 1:
            raise ValueError("buffer_rows, max_instruments and decode_rows must be >= 1")
        for name in ("gap_timeout_ns", "stale_after_ns", "feed_dead_ns"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.reorder_slack < 0:
            raise ValueError("reorder_slack must be >= 0")


class Sequencer:
    """Preallocated sequencing state for ``n_channels`` channels, in one arena.

    ``arena`` is what the hot loop passes to ``_sequence``; the attributes below
    are numpy views of its regions (no copies): ``chan``, ``inst``, ``index``,
    ``hold``, ``rbuf``, ``inst_status`` (uint8, the array the trading core
    reads: ``row_of(security_id)`` gives the row) and ``counters``
    (int64 ``[n_channels, N_SQ_COUNTERS]``, names in ``SQ_COUNTER_NAMES``).
    """

    def __init__(self, n_channels: int = 1, config: SequencerConfig | None = None,
                 appl_ids: list[int] | None = None, plan: np.ndarray | None = None) -> None:
        cfg = config or SequencerConfig()
        cfg.validate()
        if n_channels < 1:
            raise ValueError("n_channels must be >= 1")
        if appl_ids is not None and len(appl_ids) != n_channels:
            raise ValueError("appl_ids needs one CME channel id per channel")
        self.config = cfg
        self.n_channels = int(n_channels)
        plan = Mdp3Decoder(capacity=1).plan if plan is None else np.ascontiguousarray(plan)
        h = cfg.hold_slots
        cw = chan_width(h)
        slots = 1
        while slots < 2 * cfg.max_instruments:
            slots *= 2
        sizes = [n_channels * cw, cfg.max_instruments * IN_WIDTH, IX_TABLE + 2 * slots,
                 (cfg.max_instruments + 7) // 8, n_channels * h * cfg.hold_slot_bytes // 8,
                 n_channels * cfg.buffer_rows * _EV_WORDS, plan.size,
                 cfg.decode_rows * _EV_WORDS, N_DROP_REASONS, _HDR_WORDS]
        offsets = []
        off = A_HEADER_LEN
        for size in sizes:
            off = (off + 7) & ~7
            offsets.append(off)
            off += size
        self.arena = np.zeros(off, dtype=np.int64)
        a = self.arena
        a[A_MAGIC] = ARENA_MAGIC
        a[A_N_CHANNELS] = n_channels
        a[A_HOLD_SLOTS] = h
        a[A_HOLD_BYTES] = cfg.hold_slot_bytes
        a[A_BUFFER_ROWS] = cfg.buffer_rows
        a[A_MAX_INST] = cfg.max_instruments
        a[A_INDEX_LEN] = sizes[R_INDEX]
        a[A_PLAN_LEN] = plan.size
        a[A_EV_CAP] = cfg.decode_rows
        a[A_CHAN_WIDTH] = cw
        a[A_OFF:A_OFF + N_REGIONS] = offsets
        (self.chan, self.inst, self.index, self.inst_status, self.hold, self.rbuf, self.plan,
         self.events, self.drops, self.header) = _numpy_views(a)
        self.plan[:] = plan
        self.index[:] = EMPTY_KEY
        self.index[:IX_TABLE] = 0
        self.index[IX_TABLE_SLOTS] = slots
        self.index[IX_AUTO_REGISTER] = int(cfg.auto_register)
        self.index[IX_RECOVER_ON_START] = int(cfg.recover_on_start)
        self.counters = self.chan[:, CH_COUNTERS:CH_COUNTERS + N_SQ_COUNTERS]
        for c in range(n_channels):
            self.chan[c, CH_HOLD_META:CH_HOLD_META + HOLD_META_WIDTH * h:HOLD_META_WIDTH] = -1
            self.chan[c, CH_GAP_TIMEOUT_NS] = cfg.gap_timeout_ns
            self.chan[c, CH_REORDER_SLACK] = cfg.reorder_slack
            self.chan[c, CH_STALE_NS] = cfg.stale_after_ns
            self.chan[c, CH_FEED_DEAD_NS] = cfg.feed_dead_ns
            if appl_ids is not None:
                self.chan[c, CH_APPL_ID] = appl_ids[c]

    # -- instruments ----------------------------------------------------------
    def add_instrument(self, security_id: int, channel: int = 0, *, mbo: bool = False,
                       known_good: bool | None = None) -> int:
        """Track ``security_id`` on ``channel``; return its row.

        ``known_good`` (default: not ``recover_on_start``) starts it OK, else it
        waits for its snapshot (late join).
        """
        self._check_channel(channel)
        good = (not self.config.recover_on_start) if known_good is None else known_good
        row = int(_register(self.index, self.inst, self.inst_status, int(security_id),
                            int(channel), INST_OK, int(mbo)))
        if row < 0:
            raise ValueError(f"instrument table full ({self.config.max_instruments})")
        if not good and self.inst_status[row] & INST_STATE_MASK == INST_OK:
            _enter_recovery(row, INST_RECOVERING, 0, int(channel), self.chan, self.inst,
                            self.inst_status)
        return row

    def row_of(self, security_id: int) -> int:
        """Row of ``security_id`` in ``inst_status`` (-1 if not tracked)."""
        return int(_lookup(self.index, int(security_id)))

    @property
    def n_instruments(self) -> int:
        return int(self.index[IX_N_INST])

    def status(self, security_id: int) -> int:
        """inst_status of ``security_id`` (INST_EMPTY if it is not tracked)."""
        row = self.row_of(security_id)
        return INST_EMPTY if row < 0 else int(self.inst_status[row])

    def tradeable(self, security_id: int) -> bool:
        return self.status(security_id) == INST_OK

    def last_rpt_seq(self, security_id: int) -> int:
        row = self.row_of(security_id)
        return -1 if row < 0 else int(self.inst[row, IN_LAST_RPT])

    # -- channels -------------------------------------------------------------
    def _check_channel(self, channel: int) -> None:
        if not 0 <= channel < self.n_channels:
            raise ValueError(f"channel {channel} outside 0..{self.n_channels - 1}")

    def wants_snapshot(self, channel: int) -> bool:
        return bool(self.chan[channel, CH_WANT_SNAPSHOT])

    def is_stale(self, channel: int) -> bool:
        return bool(self.chan[channel, CH_STALE])

    def next_seq(self, channel: int) -> int:
        return int(self.chan[channel, CH_NEXT_SEQ])

    def pending(self, channel: int) -> int:
        """Instruments of the channel not OK."""
        return int(self.chan[channel, CH_N_PENDING])

    def appl_id(self, channel: int) -> int:
        return int(self.chan[channel, CH_APPL_ID])

    def counter_dict(self, channel: int) -> dict[str, int]:
        return {name: int(v) for name, v in zip(SQ_COUNTER_NAMES, self.counters[channel],
                                                strict=True) if name != "spare"}

    def check_stale(self, now_ns: int) -> int:
        """Mark STALE the channels silent too long; return how many became stale."""
        return int(_check_stale(int(now_ns), self.chan, self.inst, self.inst_status,
                                self.index))

    # -- arbitration alone (tests, tools) ------------------------------------
    def arbitrate(self, packet: Any, channel: int = 0, feed: int = FEED_A,
                  now_ns: int = 0) -> list[tuple[int, int, int]]:
        """Arbitrate one datagram (no decoding); return its delivery list [(DLV_*, a, b)].

        (DLV_LIVE, 0, seq); (DLV_HELD, slot, seq), bytes in ``held_packet(channel,
        slot)`` until the next call; (DLV_GAP, first, last).
        """
        self._check_channel(channel)
        if feed not in (FEED_A, FEED_B):
            raise ValueError("feed must be FEED_A or FEED_B")
        buf = _as_u8(packet)
        nd = _arbitrate(buf, buf.size, channel, feed, int(now_ns), self.chan, self.hold)
        return self._delivery(channel, nd)

    def expire(self, channel: int, now_ns: int) -> list[tuple[int, int, int]]:
        """Gap timers of ``channel`` at ``now_ns`` (arbitration alone)."""
        self._check_channel(channel)
        return self._delivery(channel, _expire(channel, int(now_ns), self.chan, self.hold))

    def held_packet(self, channel: int, slot: int) -> bytes:
        m = CH_HOLD_META + HOLD_META_WIDTH * slot
        return self.hold[channel, slot, : int(self.chan[channel, m + 1])].tobytes()

    def _delivery(self, channel: int, nd: int) -> list[tuple[int, int, int]]:
        base = CH_HOLD_META + HOLD_META_WIDTH * self.config.hold_slots
        row = self.chan[channel]
        return [(int(row[base + DLV_WIDTH * k]), int(row[base + DLV_WIDTH * k + 1]),
                 int(row[base + DLV_WIDTH * k + 2])) for k in range(nd)]


def _as_u8(data: Any) -> np.ndarray:
    if isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.flags.c_contiguous:
        return data
    return np.frombuffer(bytes(data), dtype=np.uint8).copy()


class SequencedFeed:
    """Datagrams in, sequenced MD_EVENT rows out (arbitration + MDP decoder + gate).

    ``on_datagram`` / ``on_idle`` return a view of ``out`` (valid until the next
    call) with the rows the books must apply, in order: one numba call per
    datagram. ``process_stream`` runs a batch of datagrams in one call. Time is
    passed in: there is no clock here.
    """

    def __init__(self, sequencer: Sequencer, out_capacity: int = 1 << 16) -> None:
        self.seq = sequencer
        if out_capacity < 8 * sequencer.config.decode_rows:
            raise ValueError("out_capacity must be at least 8 x decode_rows")
        self.out = np.zeros(out_capacity, dtype=MD_EVENT)

    def on_datagram(self, role: int, buf: np.ndarray, n: int, channel: int, feed: int = FEED_A,
                    now_ns: int = 0) -> np.ndarray:
        k = _sequence(buf, n, channel, feed, role, now_ns, self.seq.arena, self.out, 0)
        return self.out[:k]

    def on_incremental(self, buf: np.ndarray, n: int, channel: int, feed: int,
                       now_ns: int) -> np.ndarray:
        return self.on_datagram(ROLE_INCREMENTAL, buf, n, channel, feed, now_ns)

    def on_snapshot(self, buf: np.ndarray, n: int, channel: int) -> np.ndarray:
        return self.on_datagram(ROLE_SNAPSHOT, buf, n, channel)

    def on_idle(self, now_ns: int, channel: int = 0) -> np.ndarray:
        """Timers of ``channel`` (gap waits, STALE) when nothing arrived."""
        k = _sequence_idle(channel, now_ns, self.seq.arena, self.out, 0)
        return self.out[:k]

    def process_stream(self, buf: np.ndarray, offsets: np.ndarray, meta: np.ndarray,
                       out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        """Datagrams back to back in one call -> (rows, rows end per datagram, done).

        ``meta[i]`` = (channel, feed, role, time ns). ``done`` is less than the
        number of datagrams when ``out`` filled up: call again with the rest.
        """
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        meta = np.ascontiguousarray(meta, dtype=np.int64)
        n_pk = offsets.size - 1
        if meta.shape != (n_pk, 4):
            raise ValueError("meta must be [n_datagrams, 4]: channel, feed, role, time")
        if n_pk and (offsets[0] < 0 or offsets[-1] > buf.size or np.any(np.diff(offsets) < 0)):
            raise ValueError("offsets must be non-decreasing and inside buf")
        if n_pk and not (np.all(meta[:, 1] >= 0) and np.all(meta[:, 1] <= FEED_B)):
            raise ValueError("feed must be FEED_A or FEED_B")
        out = self.out if out is None else out
        ends = np.zeros(n_pk, dtype=np.int64)
        done = int(_sequence_stream(np.ascontiguousarray(buf, dtype=np.uint8), offsets, meta,
                                    self.seq.arena, out, ends))
        k = int(ends[done - 1]) if done else 0
        return out[:k], ends[:done], done
