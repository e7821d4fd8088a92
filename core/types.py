"""The numpy dtypes and flag constants shared by every kernel.

One module owns them (as hftbacktest's ``types.py`` does) so that the decoder,
the books, sequencing, features and the trading core agree on one layout.
Kernels import the integer constants below as globals: numba freezes them at
compile time, so they cost nothing in the hot path.

Normalised market-data events
-----------------------------
The MDP 3.0 decoder turns every SBE message into zero or more rows of
``MD_EVENT`` in a preallocated array. One row per book entry, order entry,
trade, statistic, status change, snapshot entry...; the packet and message
context (``msg_seq``, ``template_id``, ``match_event``) is repeated on each row
so that a row can be consumed alone.

Field meaning by ``kind`` (unused fields are 0; a null on the wire, or a field
newer than the message's version, reads as the NULL_* of the column's type:
NULL_I64, NULL_I32, NULL_U32, NULL_U64, 255 for uint8 columns, 0 for entry_type):

==================  =============================================================
kind                fields
==================  =============================================================
EV_NONE             a message that yields no other row (e.g. a 46 whose groups
                    are empty): template_id, match_event and flags only, so the
                    end-of-event bit is never lost
EV_BOOK             security_id, rpt_seq, price, size, num_orders, price_level,
                    action (MDUpdateAction), entry_type ('0','1','E','F','J'),
                    aux = TradeableSize (NULL_I64 when absent / older version)
EV_ORDER            MBO (template 47, 43 legacy): security_id, order_id,
                    aux = MDOrderPriority, price, size = MDDisplayQty, action,
                    entry_type ('0','1'); rpt_seq 0 (the template has none)
EV_ORDER_REF        order-ID group of 46 (and 32 v7+, 64): order_id, aux =
                    MDOrderPriority, size = MDDisplayQty, action = OrderUpdateAction,
                    price_level = ReferenceID (1-based index of the MD entry of
                    this message); security_id, rpt_seq, price, entry_type copied
                    from that entry. An invalid ReferenceID drops the row
                    (DROP_BAD_VALUE)
EV_TRADE            security_id, rpt_seq, price, size, num_orders,
                    side = AggressorSide (0 none or null, 1 buy, 2 sell), action,
                    aux = MDTradeEntryID (TradeID in legacy 36)
EV_TRADE_ORDER      order-ID group of 48/42/65: order_id, size = LastQty
EV_VOLUME           security_id, rpt_seq, size = volume, action, entry_type 'e'
EV_STAT             security_id, rpt_seq, price, size (open interest / volume
                    for statistics that carry a quantity), entry_type
                    (MDEntryType: '4','6','7','8','9','B','C','N','O','W','g'),
                    action, aux = SettlPriceType (49/33) or OpenCloseSettlFlag
                    (51/35/67); limits banding ('g', 50/34): price = high limit,
                    order_id = low limit as int64 bits, size = max price variation
EV_STATUS           (30, 60) security_id (0 = whole group), aux =
                    SecurityTradingStatus, size = SecurityTradingEvent, price_level
                    = HaltReason, order_id = SecurityGroup (its 6 ASCII bytes packed
                    little-endian), price = MDEntryPx (60)
EV_CHANNEL_RESET    (template 4) one row per entry, aux = ApplID of the channel
                    (NULL_I64 before v3); a reset without entries still gives a row
EV_HEARTBEAT        no fields
EV_SNAPSHOT         root of 52/38/69/61/68/53/44/59: security_id, rpt_seq, aux =
                    LastMsgSeqNumProcessed, size = TotNumReports, num_orders =
                    number of entries that follow, price = HighLimitPrice,
                    order_id = LowLimitPrice bits, price_level =
                    MDSecurityTradingStatus; for the MBO snapshots 53/44 rpt_seq =
                    CurrentChunk and order_id = NoChunks. Absent ones are NULL
EV_SNAPSHOT_ENTRY   one entry of a snapshot: price, size, num_orders, price_level,
                    entry_type, aux = TradeableSize (61; else NULL_I64); for 53/44/59
                    order_id, aux = MDOrderPriority, size = MDDisplayQty;
                    security_id and rpt_seq from the snapshot root, action = MD_NEW
EV_DEFINITION       security_id, match_event, aux = byte offset of the message (its
                    MsgSize field) in the packet, size = MsgSize: definitions are not
                    hot; the Python InstrumentTable decodes them with the codec
EV_OTHER            any other message (admin 15/16, quote request 39, 62, every
                    schema-2 TCP session message): aux = offset, size = MsgSize as
                    for EV_DEFINITION; template_id tells which
==================  =============================================================

uint64 wire values in the int64 ``aux`` (MDOrderPriority) keep their bits.

Every row also carries msg_seq (MsgSeqNum of its packet), template_id, msg_index
(0-based index of the message in its packet), match_event (MatchEventIndicator
of its message, 0 if the template has none), transact_time (TransactTime of its
message, 0 if none) and price_exponent (-9 for PRICE9 templates, -7 for the
legacy PRICE; for a template without prices, that of its schema).

``flags`` bits: FLAG_END_OF_EVENT is set on the last row of a message whose
MatchEventIndicator has the end-of-event bit; FLAG_LAST_IN_MSG on the last row
of every message; FLAG_RECOVERY when the row came from a snapshot/recovery feed.
"""

from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------
# Null sentinels (SBE defaults used by CME)
# --------------------------------------------------------------------------
NULL_I64 = np.int64(0x7FFFFFFFFFFFFFFF)  # PRICENULL9 mantissa, Int64NULL
NULL_I32 = np.int32(0x7FFFFFFF)
NULL_U32 = np.uint32(0xFFFFFFFF)
NULL_U64 = np.uint64(0xFFFFFFFFFFFFFFFF)
NULL_U8 = np.uint8(0xFF)

# --------------------------------------------------------------------------
# Event kinds
# --------------------------------------------------------------------------
EV_NONE = 0
EV_BOOK = 1
EV_ORDER = 2
EV_ORDER_REF = 3
EV_TRADE = 4
EV_TRADE_ORDER = 5
EV_VOLUME = 6
EV_STAT = 7
EV_STATUS = 8
EV_CHANNEL_RESET = 9
EV_HEARTBEAT = 10
EV_SNAPSHOT = 11
EV_SNAPSHOT_ENTRY = 12
EV_DEFINITION = 13
EV_OTHER = 14

EVENT_KIND_NAMES = {
    EV_NONE: "none",
    EV_BOOK: "book",
    EV_ORDER: "order",
    EV_ORDER_REF: "order_ref",
    EV_TRADE: "trade",
    EV_TRADE_ORDER: "trade_order",
    EV_VOLUME: "volume",
    EV_STAT: "stat",
    EV_STATUS: "status",
    EV_CHANNEL_RESET: "channel_reset",
    EV_HEARTBEAT: "heartbeat",
    EV_SNAPSHOT: "snapshot",
    EV_SNAPSHOT_ENTRY: "snapshot_entry",
    EV_DEFINITION: "definition",
    EV_OTHER: "other",
}

# --------------------------------------------------------------------------
# Row flags
# --------------------------------------------------------------------------
FLAG_END_OF_EVENT = 0x01
FLAG_LAST_IN_MSG = 0x02
FLAG_RECOVERY = 0x04

# MatchEventIndicator bits (MDP 3.0 set, bit numbers from the schema)
MEI_LAST_TRADE_MSG = 0x01
MEI_LAST_VOLUME_MSG = 0x02
MEI_LAST_QUOTE_MSG = 0x04
MEI_LAST_STATS_MSG = 0x08
MEI_LAST_IMPLIED_MSG = 0x10
MEI_RECOVERY_MSG = 0x20
MEI_RESERVED = 0x40
MEI_END_OF_EVENT = 0x80

# --------------------------------------------------------------------------
# MDUpdateAction (tag 279)
# --------------------------------------------------------------------------
MD_NEW = 0
MD_CHANGE = 1
MD_DELETE = 2
MD_DELETE_THRU = 3
MD_DELETE_FROM = 4
MD_OVERLAY = 5

# --------------------------------------------------------------------------
# MDEntryType (tag 269), stored as the ASCII byte
# --------------------------------------------------------------------------
ET_BID = ord("0")
ET_OFFER = ord("1")
ET_TRADE = ord("2")
ET_OPENING_PRICE = ord("4")
ET_SETTLEMENT_PRICE = ord("6")
ET_SESSION_HIGH = ord("7")
ET_SESSION_LOW = ord("8")
ET_CLEARED_VOLUME = ord("B")
ET_OPEN_INTEREST = ord("C")
ET_IMPLIED_BID = ord("E")
ET_IMPLIED_OFFER = ord("F")
ET_BOOK_RESET = ord("J")
ET_SESSION_HIGH_BID = ord("N")
ET_SESSION_LOW_OFFER = ord("O")
ET_FIXING_PRICE = ord("W")
ET_ELECTRONIC_VOLUME = ord("e")
ET_THRESHOLD_LIMITS = ord("g")

# AggressorSide
SIDE_NONE = 0
SIDE_BUY = 1
SIDE_SELL = 2

# SecurityTradingStatus (tag 326) values used for gating
TS_TRADING_HALT = 2
TS_CLOSE = 4
TS_NEW_PRICE_INDICATION = 15
TS_READY_TO_TRADE = 17
TS_NOT_AVAILABLE = 18
TS_UNKNOWN = 20
TS_PRE_OPEN = 21
TS_PRE_CROSS = 24
TS_CROSS = 25
TS_POST_CLOSE = 26
TS_NO_CHANGE = 103

# --------------------------------------------------------------------------
# Decoder drop reasons: index into the drop-counter array
# --------------------------------------------------------------------------
# A bad packet header or MsgSize (framing lost) and a full output drop the rest of
# the packet; the other reasons drop one message (or one row: DROP_BAD_VALUE).
DROP_SHORT_PACKET = 0  # fewer bytes than the 12-byte packet header
DROP_SHORT_MESSAGE = 1  # MsgSize < 10, overruns the packet, or < 10 bytes left
DROP_BAD_SCHEMA = 2  # schemaId not one we decode
DROP_UNKNOWN_TEMPLATE = 3  # templateId not in any schema with that id
DROP_SHORT_BLOCK = 4  # root/entry blockLength shorter than the fields we read
DROP_GROUP_OVERRUN = 5  # group dimension or entries overrun the message
DROP_EVENTS_FULL = 6  # output array full: rest of packet dropped
DROP_BAD_VALUE = 7  # a value the kernel cannot use (ReferenceID naming no entry)
N_DROP_REASONS = 8

DROP_REASON_NAMES = (
    "short_packet",
    "short_message",
    "bad_schema",
    "unknown_template",
    "short_block",
    "group_overrun",
    "events_full",
    "bad_value",
)

# --------------------------------------------------------------------------
# Normalised market-data event (72 bytes, aligned: a multiple of 8 so that it can
# be viewed out of an int64 arena)
# --------------------------------------------------------------------------
MD_EVENT = np.dtype(
    [
        ("transact_time", np.uint64),  # TransactTime (ns); 0 if the message has none
        ("price", np.int64),  # mantissa as on the wire; exponent = price_exponent
        ("size", np.int64),  # quantity (int64 covers LongQty templates)
        ("order_id", np.uint64),
        ("aux", np.int64),  # kind-specific, see the module docstring
        ("security_id", np.int32),
        ("rpt_seq", np.uint32),
        ("msg_seq", np.uint32),  # MsgSeqNum of the packet
        ("num_orders", np.int32),
        ("template_id", np.uint16),
        ("kind", np.uint8),
        ("action", np.uint8),
        ("entry_type", np.uint8),
        ("price_level", np.uint8),
        ("side", np.uint8),
        ("match_event", np.uint8),  # MatchEventIndicator of the message
        ("flags", np.uint8),
        ("price_exponent", np.int8),  # -9 (PRICE9) or -7 (legacy PRICE)
        ("msg_index", np.uint16),  # 0-based index of the message in its packet
    ],
    align=True,
)

# Packet header as decoded (one row per packet handed to the decoder). The decoder
# writes msg_seq, sending_time, n_messages and n_events; recv_time and channel
# belong to the caller (the decoder leaves them untouched).
PACKET_HEADER = np.dtype(
    [
        ("msg_seq", np.uint32),
        ("n_messages", np.uint32),
        ("sending_time", np.uint64),
        ("recv_time", np.uint64),  # kernel receive timestamp (ns), 0 if unknown
        ("n_events", np.uint32),
        ("channel", np.uint32),
    ],
    align=True,
)

# --------------------------------------------------------------------------
# Instrument table, filled from definition messages (27, 29, 54-58, 63)
# --------------------------------------------------------------------------
SYMBOL_LEN = 20
GROUP_LEN = 6
ASSET_LEN = 6

INSTRUMENT = np.dtype(
    [
        ("security_id", np.int32),
        ("appl_id", np.int32),  # channel (ApplID)
        ("symbol", f"S{SYMBOL_LEN}"),
        ("security_group", f"S{GROUP_LEN}"),
        ("asset", f"S{ASSET_LEN}"),
        ("min_price_increment", np.int64),  # mantissa, exponent = price_exponent
        ("display_factor", np.int64),  # mantissa, exponent -9 (Decimal9)
        ("price_exponent", np.int8),
        ("outright_depth", np.uint8),  # MarketDepth for GBX (tag 264), 0 if unknown
        ("implied_depth", np.uint8),
        ("mbo", np.uint8),  # 1 if the instrument has an MBO feed (tag 264 'MBO')
        ("trading_status", np.uint8),  # last SecurityTradingStatus
        ("is_spread", np.uint8),
        ("contract_multiplier", np.int64),  # UnitOfMeasureQty * 1e-9 (Decimal9) mantissa
        ("high_limit_price", np.int64),
        ("low_limit_price", np.int64),
        ("trading_reference_price", np.int64),
        ("template_id", np.uint16),
        ("version", np.uint16),
    ],
    align=True,
)

PRICE9_EXPONENT = -9
LEGACY_PRICE_EXPONENT = -7


# ==========================================================================
# section: trading (orders, execution reports, positions) -- owned by the trading core
# ==========================================================================

# --- matching engine ---
# core/matching.py: the price-time order book behind every simulated venue.
# Input is an array of MATCH_CMD rows; output is two record streams, MATCH_EXEC
# (what each order's owner is told, iLink 3 execution reports) and MATCH_MD
# (what the market is told, enough for MDP 3.0 templates 46/47/48).

# MATCH_CMD.op
MCMD_SUBMIT = 1  # new order (iLink NewOrderSingle)
MCMD_CANCEL = 2  # cancel one order (OrderCancelRequest)
MCMD_MODIFY = 3  # cancel/replace price and/or quantity (OrderCancelReplaceRequest)
MCMD_MASS_CANCEL = 4  # every resting order of `owner` (instrument -1 = all, side 0 = both)
MCMD_EXPIRE_DAY = 5  # session end: every resting DAY order (of any owner) expires

# TimeInForce, FIX tag 59 values so a gateway maps them 1:1
MTIF_DAY = 0
MTIF_GTC = 1
MTIF_IOC = 3  # FAK at CME: fill what is possible now, eliminate the rest
MTIF_FOK = 4  # all or nothing, immediately

# SelfMatchPreventionInstruction (iLink tag 8000), as the ASCII byte. 0 (absent)
# means cancel-oldest: CME's default cancels the resting order.
SMP_CANCEL_NEWEST = ord("N")  # the incoming (aggressing) order is cancelled
SMP_CANCEL_OLDEST = ord("O")  # the resting order is cancelled, the incoming one goes on

# MATCH_CMD.flags
MCF_IFM = 0x01  # modify with in-flight mitigation: new leaves = qty - cum_qty

# MATCH_EXEC.exec_type
MX_ACCEPTED = 1  # submit acknowledged (leaves = qty); fills follow in the same batch
MX_FILL = 2  # partial or full fill (leaves_qty tells), one per match and side
MX_CANCELLED = 3  # user cancel, mass cancel, SMP, or modify that leaves nothing
MX_MODIFIED = 4  # cancel/replace acknowledged; fills may follow
MX_REJECTED = 5  # command refused (reason); `op` says submit / cancel / modify
MX_EXPIRED = 6  # IOC remainder, FOK not fillable, DAY order at session end

# MATCH_EXEC.reason: reject and cancel reasons (index into the reject counters)
MR_NONE = 0
MR_BAD_OP = 1
MR_BAD_INSTRUMENT = 2
MR_BAD_SIDE = 3
MR_BAD_TIF = 4
MR_BAD_ORDER_ID = 5  # order id 0
MR_BAD_QTY = 6  # qty <= 0 or > MATCH_MAX_QTY
MR_OFF_TICK = 7  # price not a multiple of the instrument's tick
MR_OUTSIDE_BAND = 8  # price outside the instrument's band (the ladder)
MR_DUPLICATE_ORDER_ID = 9  # order id of a resting order
MR_UNKNOWN_ORDER = 10  # cancel/modify of an order not resting (or of another owner)
MR_BOOK_FULL = 11  # no free order slot for a DAY/GTC order
MR_OUTPUT_FULL = 12  # the command's records cannot fit in the output arrays at all
MR_USER = 13  # cancelled on request
MR_MASS_CANCEL = 14
MR_SMP_OLDEST = 15  # resting order cancelled by SMP (iLink ExecRestatementReason 103)
MR_SMP_NEWEST = 16  # incoming order cancelled by SMP (iLink ExecRestatementReason 107)
MR_IOC_REMAINDER = 17
MR_FOK_UNFILLABLE = 18
MR_SESSION_END = 19
MR_MODIFY_OVERFILL = 20  # IFM modify whose qty <= cum_qty: the order is cancelled
N_MATCH_REASONS = 21

MATCH_REASON_NAMES = (
    "none", "bad_op", "bad_instrument", "bad_side", "bad_tif", "bad_order_id", "bad_qty",
    "off_tick", "outside_band", "duplicate_order_id", "unknown_order", "book_full",
    "output_full", "user", "mass_cancel", "smp_oldest", "smp_newest", "ioc_remainder",
    "fok_unfillable", "session_end", "modify_overfill",
)

MATCH_MAX_QTY = 1_000_000_000  # keeps qty sums far from int64 overflow

# MATCH_MD.kind
MMD_BOOK = 1  # one order changed: MBP level (action, price_level) + MBO order fields
MMD_TRADE = 2  # one match: maker order_id, taker_order_id, size, aggressor side
MMD_REVEAL = 3  # a level moved up into the MBP depth after a delete: New at price_level=depth
MD_NO_ORDER_ACTION = 255  # MATCH_MD.order_action of rows that change no order (reveal, trade)

MATCH_CMD = np.dtype(
    [
        ("order_id", np.uint64),  # venue-assigned (tag 37 OrderID), unique among resting orders
        ("cl_ord_id", np.uint64),  # opaque, echoed on the records of this order
        ("price", np.int64),  # mantissa on the instrument's tick grid
        ("qty", np.int64),  # submit: order qty; modify: new qty (leaves, or total with IFM)
        ("smp_id", np.uint64),  # SelfMatchPreventionID (tag 2362); 0 = no SMP
        ("transact_time", np.uint64),  # venue clock (ns), copied onto every record
        ("instrument", np.int32),  # row of the engine (0..n_instruments-1); -1 = all (mass)
        ("owner", np.uint32),  # firm / session: SMP scope, cancel rights, routing
        ("op", np.uint8),
        ("side", np.uint8),  # SIDE_BUY / SIDE_SELL (0 = both for mass cancel)
        ("tif", np.uint8),
        ("smp_instr", np.uint8),  # SMP_CANCEL_NEWEST / SMP_CANCEL_OLDEST / 0
        ("flags", np.uint8),  # MCF_*
    ],
    align=True,
)

MATCH_EXEC = np.dtype(
    [
        ("transact_time", np.uint64),
        ("order_id", np.uint64),
        ("cl_ord_id", np.uint64),
        ("contra_order_id", np.uint64),  # fills: the other order of the match
        ("trade_id", np.uint64),  # fills: MDTradeEntryID shared with the MATCH_MD trade row
        ("priority", np.uint64),  # MDOrderPriority of the order after the event
        ("price", np.int64),  # the order's limit price
        ("last_px", np.int64),  # fills: the match price (the resting order's price)
        ("last_qty", np.int64),
        ("order_qty", np.int64),  # OrderQty: cum + leaves while working (rejects: qty sent)
        ("leaves_qty", np.int64),
        ("cum_qty", np.int64),
        ("instrument", np.int32),
        ("owner", np.uint32),
        ("contra_owner", np.uint32),
        ("cmd_index", np.uint32),  # row of the command (in the array passed) that caused it
        ("exec_type", np.uint8),  # MX_*
        ("reason", np.uint8),  # MR_*
        ("op", np.uint8),  # op of that command
        ("side", np.uint8),
        ("tif", np.uint8),
        ("aggressor", np.uint8),  # fills: 1 taker (AggressorIndicator), 0 maker
    ],
    align=True,
)

MATCH_MD = np.dtype(
    [
        ("transact_time", np.uint64),
        ("price", np.int64),
        ("size", np.int64),  # book/reveal: level qty after the change; trade: matched qty
        ("order_id", np.uint64),  # book: the order changed; trade: the resting (maker) order
        ("taker_order_id", np.uint64),  # trade: the aggressor
        ("order_priority", np.uint64),  # book: MDOrderPriority; trade: the maker's
        ("display_qty", np.int64),  # book: the order's qty after the change (0 on delete)
        ("trade_id", np.uint64),  # trade: MDTradeEntryID
        ("instrument", np.int32),
        ("num_orders", np.int32),  # book/reveal: orders at the level after the change
        ("price_level", np.int32),  # book: 1-based level (before a delete); reveal: depth
        ("cmd_index", np.uint32),
        ("kind", np.uint8),  # MMD_*
        ("side", np.uint8),  # book/reveal: side of the level; trade: aggressor side
        ("action", np.uint8),  # MDUpdateAction of the level: MD_NEW / MD_CHANGE / MD_DELETE
        ("order_action", np.uint8),  # MDUpdateAction of the order; MD_NO_ORDER_ACTION if none
    ],
    align=True,
)

# One aggregate level of a depth snapshot (MatchingEngine.depth).
MATCH_LEVEL = np.dtype([("price", np.int64), ("qty", np.int64), ("num_orders", np.int32)],
                       align=True)

# --- orders, execution reports, risk ---
# core/oms.py, core/risk.py, core/strategy, core/trading.py and the gateways.
# The whole trading state is ONE record of dtype TRADER (nested arrays: the
# instruments, the order table, the exec-report input and the order-action
# output), so the fused per-tick call `decide` passes one array for all of it.

# Capacities (compile-time: they size the TRADER record)
MAX_TRADED_INSTRUMENTS = 8
ORDER_SLOT_BITS = 9
MAX_ORDERS = 1 << ORDER_SLOT_BITS  # order table rows; cl_ord_id & (MAX_ORDERS-1) = row
MAX_ACTIONS = 128  # order actions one decide call can emit
MAX_REPORTS = 256  # execution reports one decide call can apply
MAX_LAYERS = 4  # quote layers per side
RATE_WINDOW_CAP = 1024  # timestamps kept per throttle (a rate limit cannot exceed it)
MAX_CANCEL_ATTEMPTS = 3  # cancels sent for one order before it is left to the operator

# Trader state machine: STARTING -> HALTED -> ACTIVE <-> REDUCING -> HALTED
TRADER_STARTING = 0
TRADER_HALTED = 1
TRADER_ACTIVE = 2
TRADER_REDUCING = 3
TRADER_STATE_NAMES = ("starting", "halted", "active", "reducing")

# ORDER_ACTION.action
ACT_NONE = 0
ACT_NEW = 1  # iLink NewOrderSingle
ACT_CANCEL = 2  # OrderCancelRequest
ACT_MODIFY = 3  # OrderCancelReplaceRequest (qty = new total order qty)
ACT_MASS_CANCEL = 4  # OrderMassActionRequest (security_id 0 = every instrument)

# Time in force: FIX tag 59, the same values as MTIF_* of the matching engine
TIF_DAY = MTIF_DAY
TIF_GTC = MTIF_GTC
TIF_IOC = MTIF_IOC
TIF_FOK = MTIF_FOK

# OMS order status (ORDER.status). FREE = row unused; the terminal states free
# the row at once (a late report then misses the cl_ord_id check and is counted).
OS_FREE = 0
OS_PENDING_NEW = 1
OS_WORKING = 2
OS_PARTIALLY_FILLED = 3
OS_FILLED = 4
OS_PENDING_CANCEL = 5
OS_PENDING_MODIFY = 6
OS_CANCELLED = 7
OS_REJECTED = 8
OS_EXPIRED = 9
ORDER_STATUS_NAMES = ("free", "pending_new", "working", "partially_filled", "filled",
                      "pending_cancel", "pending_modify", "cancelled", "rejected", "expired")

# EXEC_REPORT.kind (iLink 3: 522 new, 531 modify, 534 cancel, 525 trade, 523 reject,
# 535 cancel reject, 536 cancel/replace reject, 524 elimination, 532 status)
ER_NONE = 0
ER_NEW = 1  # new order acknowledged (order_id assigned)
ER_MODIFY = 2  # modify acknowledged: price, qty (total), leaves_qty are the new values
ER_CANCEL = 3  # cancelled (on request, mass cancel, cancel on disconnect)
ER_FILL = 4  # trade: price = last px, qty = last qty, leaves/cum after it, aggressor
ER_REJECT = 5  # new order rejected (reason = the venue's code)
ER_CANCEL_REJECT = 6
ER_MODIFY_REJECT = 7
ER_ELIMINATION = 8  # expired: IOC/FOK remainder, end of session
ER_STATUS = 9  # order status (reconciliation): ord_status (OS_*), leaves, cum, price
N_ER_KINDS = 10
ER_KIND_NAMES = ("none", "new", "modify", "cancel", "fill", "reject", "cancel_reject",
                 "modify_reject", "elimination", "status")

# Why an order action was refused, or why the trader/an instrument halted: one
# code space, index into the int64 counters TRADER.reject_counts / halt_counts.
RISK_OK = 0
RISK_HALTED = 1  # trader not ACTIVE/REDUCING: no new order or modify
RISK_REDUCE_ONLY = 2  # REDUCING and the order could increase the position
RISK_MAX_ORDER_QTY = 3
RISK_MAX_POSITION = 4  # worst-case position (filled + working + in flight) over the cap
RISK_MAX_NOTIONAL = 5  # gross worst-case notional over the cap
RISK_PRICE_COLLAR = 6  # too far from the reference price, or outside the exchange band
RISK_MAX_WORKING = 7
RISK_SUBMIT_RATE = 8  # new + modify throttle (sliding window)
RISK_CANCEL_RATE = 9  # cancel throttle (sliding window)
RISK_DAILY_LOSS = 10
RISK_DRAWDOWN = 11
RISK_STALE_DATA = 12
RISK_MD_RECOVERING = 13  # the feed says the book is not trustworthy / not trading
RISK_MODEL_NAN = 14  # NaN/inf alpha or volatility
RISK_GATEWAY_DOWN = 15
RISK_KILL_SWITCH = 16
RISK_NO_REFERENCE = 17  # no reference price (empty book)
RISK_BAD_ORDER = 18  # qty <= 0, price off tick or <= 0 where not allowed, bad side
RISK_ORDER_TABLE_FULL = 19
RISK_ACTIONS_FULL = 20  # output array full this tick
RISK_OPERATOR = 21  # halted / reducing by the operator
RISK_POSITION_BREACH = 22  # actual position over the cap (limit lowered): REDUCING
RISK_INSTRUMENT_DISABLED = 23
N_RISK_REASONS = 24
RISK_REASON_NAMES = (
    "ok", "halted", "reduce_only", "max_order_qty", "max_position", "max_notional",
    "price_collar", "max_working_orders", "submit_rate", "cancel_rate", "daily_loss",
    "drawdown", "stale_data", "md_recovering", "model_nan", "gateway_down", "kill_switch",
    "no_reference", "bad_order", "order_table_full", "actions_full", "operator",
    "position_breach", "instrument_disabled",
)

# OMS anomalies (index into TRADER.oms_counts); none of them raises
OMS_UNKNOWN_ORDER = 0  # report whose cl_ord_id matches no live order (late or foreign)
OMS_UNKNOWN_FILL = 1  # fill of such an order: applied to the position by security_id
OMS_UNKNOWN_INSTRUMENT = 2  # fill for a security we do not trade: cannot be applied
OMS_OVERFILL = 3  # cum_qty above the order qty
OMS_BAD_TRANSITION = 4  # report not expected in the order's state (applied if safe)
OMS_FILL_AFTER_CANCEL = 5  # fill while a cancel is in flight (the race; applied)
OMS_BAD_REPORT = 6  # unknown kind, qty <= 0 on a fill
OMS_CANCEL_GIVE_UP = 7  # MAX_CANCEL_ATTEMPTS cancels rejected for a live order
OMS_REPORTS_TRUNCATED = 8  # more reports than MAX_REPORTS passed to decide
OMS_LATE_REPORT = 9  # report for an order already done (a race: cancel reject after its fill)
N_OMS_EVENTS = 10
OMS_EVENT_NAMES = ("unknown_order", "unknown_fill", "unknown_instrument", "overfill",
                   "bad_transition", "fill_after_cancel", "bad_report", "cancel_give_up",
                   "reports_truncated", "late_report")

# Market-data status of an instrument, as the feed/books layer reports it
MDS_OK = 0
MDS_RECOVERING = 1  # gap, snapshot recovery in progress, channel reset
MDS_STALE = 2  # channel silent beyond its heartbeat interval
MDS_NOT_TRADING = 3  # SecurityTradingStatus other than ReadyToTrade
MDS_EMPTY = 4  # no book yet

# The market as decide sees it, one row per traded instrument (written at the end
# of each completed event by the books/feed layer). Empty side: NULL_I64.
MARKET_VIEW = np.dtype(
    [
        ("bid_px", np.int64),
        ("ask_px", np.int64),
        ("bid_qty", np.int64),
        ("ask_qty", np.int64),
        ("last_trade_px", np.int64),  # NULL_I64 if none
        ("high_limit", np.int64),  # exchange price band; NULL_I64 if unknown
        ("low_limit", np.int64),
        ("update_ns", np.uint64),  # our clock: when this row was last known current
        ("status", np.uint8),  # MDS_*
    ],
    align=True,
)

# One order action for the gateway (decide's output)
ORDER_ACTION = np.dtype(
    [
        ("cl_ord_id", np.uint64),
        ("order_id", np.uint64),  # exchange OrderID; 0 before the new-order ack
        ("price", np.int64),  # limit price mantissa (the instrument's price exponent)
        ("qty", np.int64),  # new/modify: total order qty; cancel: 0
        ("decide_ns", np.uint64),  # clock value passed to decide
        ("trigger_seq", np.uint32),  # MsgSeqNum of the market-data packet that triggered it
        ("security_id", np.int32),
        ("slot", np.int32),  # OMS order row
        ("instrument", np.uint8),  # row in TRADER.instruments
        ("action", np.uint8),  # ACT_*
        ("side", np.uint8),  # SIDE_BUY / SIDE_SELL
        ("tif", np.uint8),  # TIF_*
    ],
    align=True,
)

# One execution report from the gateway (decide's input)
EXEC_REPORT = np.dtype(
    [
        ("cl_ord_id", np.uint64),
        ("order_id", np.uint64),
        ("price", np.int64),  # acks: order price; fills: last px
        ("qty", np.int64),  # acks: total order qty; fills: last qty
        ("leaves_qty", np.int64),
        ("cum_qty", np.int64),
        ("fee", np.float64),  # venue-reported fee in currency (0 if the venue gives none)
        ("transact_ns", np.uint64),  # venue time
        ("recv_ns", np.uint64),  # our clock, when the gateway received it
        ("exec_id", np.uint64),
        ("security_id", np.int32),
        ("reason", np.int32),  # rejects: the venue's reason code
        ("kind", np.uint8),  # ER_*
        ("side", np.uint8),
        ("aggressor", np.uint8),  # fills: 1 taker, 0 maker
        ("ord_status", np.uint8),  # ER_STATUS: OS_* as the venue sees the order
    ],
    align=True,
)

# One row of the OMS order table
ORDER = np.dtype(
    [
        ("cl_ord_id", np.uint64),
        ("order_id", np.uint64),
        ("price", np.int64),
        ("qty", np.int64),  # total order qty (as acknowledged)
        ("leaves", np.int64),
        ("cum", np.int64),
        ("pending_price", np.int64),  # modify in flight: requested price
        ("pending_qty", np.int64),  # modify in flight: requested total qty (0 = none)
        ("exposure", np.int64),  # worst-case open qty counted in buy_open / sell_open
        ("sent_ns", np.uint64),
        ("ack_ns", np.uint64),
        ("trigger_seq", np.uint32),
        ("instrument", np.int32),
        ("status", np.uint8),  # OS_*
        ("side", np.uint8),
        ("tif", np.uint8),
        ("layer", np.int8),  # quote layer owning it; -1 = not the strategy's (adopted)
        ("acked", np.uint8),  # the venue has acknowledged it (order_id known)
        ("cancel_attempts", np.uint8),
    ],
    align=True,
)

# One traded instrument: static config, limits, strategy parameters and state
TRADED_INSTRUMENT = np.dtype(
    [
        # identity and contract
        ("security_id", np.int32),
        ("enabled", np.uint8),
        ("price_exponent", np.int8),
        ("tick", np.int64),  # min price increment, price mantissa
        ("tick_value", np.float64),  # currency per tick per contract (ES: 12.5)
        ("maker_fee", np.float64),  # exchange fee per contract when resting (currency)
        ("taker_fee", np.float64),  # exchange fee per contract when aggressing
        ("fee_per_contract", np.float64),  # clearing + broker + NFA, every fill
        # risk limits
        ("max_order_qty", np.int64),
        ("max_position", np.int64),  # cap on the worst-case position, each side
        ("collar_ticks", np.int64),  # max distance from the reference price
        # market maker (Avellaneda-Stoikov) parameters
        ("gamma", np.float64),  # risk aversion (1/ticks)
        ("k", np.float64),  # order arrival intensity decay (1/ticks)
        ("vol_horizon", np.float64),  # tau: horizon, in the volatility feature's time unit
        ("alpha_skew", np.float64),  # ticks of skew per unit of model alpha
        ("max_alpha_skew_ticks", np.float64),
        ("min_half_spread_ticks", np.float64),
        ("quote_size", np.int64),
        ("n_layers", np.int32),
        ("layer_spacing_ticks", np.int32),
        ("requote_ticks", np.int32),  # move a quote toward the market only this far or more
        ("at_risk_ticks", np.int32),  # move a quote away from the market this far or more
        # OMS state
        ("position", np.int64),  # signed, contracts
        ("buy_open", np.int64),  # worst-case open buy qty (working + in flight)
        ("sell_open", np.int64),
        ("live_orders", np.int32),
        ("pause_reason", np.int32),  # RISK_* that stops quoting this instrument (0 = none)
        ("open_cost", np.float64),  # entry value of the open position, ticks * contracts
        ("realised_ticks", np.float64),  # average-cost realised P&L, ticks * contracts
        ("fees", np.float64),  # currency
        ("volume", np.int64),  # contracts filled
        ("n_fills", np.int64),
        ("mark_ticks", np.float64),  # last mark (mid), ticks; NaN before the first
        ("realised", np.float64),  # currency
        ("unrealised", np.float64),  # currency
        ("net_pnl", np.float64),  # realised + unrealised - fees, currency
        # quoting state
        ("quote_slot", np.int32, (2, MAX_LAYERS)),  # order row per [side-1, layer]; -1 none
        ("desired_px", np.int64, (2, MAX_LAYERS)),
        ("desired_qty", np.int64, (2, MAX_LAYERS)),
        ("reservation_ticks", np.float64),  # last reservation price (for metrics)
        ("half_spread_ticks", np.float64),
    ],
    align=True,
)

# The whole trading state (one record; numpy views of its fields for Python)
TRADER = np.dtype(
    [
        ("state", np.uint8),  # TRADER_*
        ("kill_switch", np.uint8),  # set by the kill switch, cleared by resume only
        ("gateway_up", np.uint8),
        ("halt_on_data_fault", np.uint8),  # stale/recovering/NaN halts all, not one instrument
        ("reducing_auto", np.uint8),  # REDUCING was entered on a position breach
        ("halt_reason", np.int32),  # RISK_* of the last halt
        ("n_instruments", np.int32),
        ("live_orders", np.int32),
        ("adopted_orders", np.int32),  # live orders with layer -1 (swept by cancels)
        ("free_head", np.int32),  # FIFO ring of free order rows: a freed row is reused
        ("free_count", np.int32),  # last, so late reports still find their order
        ("free_slots", np.int32, (MAX_ORDERS,)),
        ("next_cl_seq", np.uint64),
        # global limits
        ("max_notional", np.float64),  # gross worst-case notional, currency
        ("max_working_orders", np.int32),
        ("submit_limit", np.int32),  # new + modify per window
        ("cancel_limit", np.int32),
        ("submit_window_ns", np.int64),
        ("cancel_window_ns", np.int64),
        ("max_daily_loss", np.float64),  # positive currency amount
        ("max_drawdown", np.float64),
        ("stale_ns", np.int64),
        # throttles: ring of send times, count = total ever sent
        ("submit_times", np.int64, (RATE_WINDOW_CAP,)),
        ("submit_count", np.int64),
        ("cancel_times", np.int64, (RATE_WINDOW_CAP,)),
        ("cancel_count", np.int64),
        # marked-to-market P&L across instruments, currency
        ("net_pnl", np.float64),
        ("day_start_pnl", np.float64),
        ("daily_pnl", np.float64),
        ("peak_pnl", np.float64),  # of daily_pnl, since the day start / last resume
        ("drawdown", np.float64),
        ("gross_notional", np.float64),
        # counters (metrics read these arrays without allocating)
        ("reject_counts", np.int64, (N_RISK_REASONS,)),
        ("halt_counts", np.int64, (N_RISK_REASONS,)),
        ("oms_counts", np.int64, (N_OMS_EVENTS,)),
        ("report_counts", np.int64, (N_ER_KINDS,)),
        ("action_counts", np.int64, (5,)),  # by ACT_*
        ("n_decides", np.int64),
        ("last_decide_ns", np.int64),
        ("instruments", TRADED_INSTRUMENT, (MAX_TRADED_INSTRUMENTS,)),
        ("orders", ORDER, (MAX_ORDERS,)),
        ("reports", EXEC_REPORT, (MAX_REPORTS,)),  # the gateway's poll writes here
        ("actions", ORDER_ACTION, (MAX_ACTIONS,)),  # decide writes here, the gateway sends
    ],
    align=True,
)


# ==========================================================================
# section: books and features -- owned by core/book and core/features
# ==========================================================================
# MBP books: int64 [n_instr, N_BOOK_SIDES, MAX_DEPTH, N_LEVEL_FIELDS], level-indexed
# as MDP 3.0 sends them (index 0 = MDPriceLevel 1). A blank level (never sent, or
# shifted out) has px = NULL_I64, qty = 0, orders = 0. The implied sides use only
# the first IMPLIED_DEPTH levels; the consolidated sides are rebuilt at each
# completed event by merging outright and implied by price (blank levels skipped).
MAX_DEPTH = 10
IMPLIED_DEPTH = 2
BOOK_BID = 0
BOOK_ASK = 1
BOOK_IMPLIED_BID = 2
BOOK_IMPLIED_ASK = 3
BOOK_CONS_BID = 4
BOOK_CONS_ASK = 5
N_BOOK_SIDES = 6
LV_PX = 0
LV_QTY = 1
LV_ORDERS = 2
N_LEVEL_FIELDS = 3

# Per-instrument state: int64 [n_instr, N_INST_FIELDS]. Prices are raw mantissas
# (exponent IS_PRICE_EXPONENT); NULL_I64 = not seen yet.
IS_SECURITY_ID = 0
IS_CHANNEL = 1  # ApplID (channel); -1 unknown
IS_DEPTH = 2  # outright depth (tag 264), 1..MAX_DEPTH
IS_IMPLIED_DEPTH = 3
IS_TICK = 4  # min price increment mantissa; 0 = unknown (inferred: IS_TICK_INFERRED)
IS_TICK_INFERRED = 5  # gcd of observed price differences while IS_TICK is 0
IS_PRICE_EXPONENT = 6
IS_RPT_SEQ = 7  # last applied RptSeq (0 = none yet)
IS_RPT_GAPS = 8  # RptSeq jumps seen
IS_GAP_PENDING = 9  # 1 after a RptSeq gap until a snapshot replaces the book
IS_STALE = 10  # rows skipped because RptSeq <= the last applied one
IS_LAST_TRADE_PX = 11
IS_LAST_TRADE_QTY = 12
IS_LAST_TRADE_SIDE = 13  # AggressorSide of the last trade
IS_LAST_TRADE_TIME = 14  # TransactTime of the last trade (0 = none)
IS_TRADE_VOLUME = 15  # sum of trade quantities applied (trade summary)
IS_TOTAL_VOLUME = 16  # last session volume sent (template 37, stat 'B' or 'e')
IS_SESSION_HIGH = 17
IS_SESSION_LOW = 18
IS_OPEN_PRICE = 19
IS_SETTLEMENT = 20
IS_SETTLEMENT_FLAGS = 21
IS_OPEN_INTEREST = 22
IS_HIGH_BID = 23
IS_LOW_OFFER = 24
IS_FIXING_PRICE = 25
IS_HIGH_LIMIT = 26
IS_LOW_LIMIT = 27
IS_TRADING_STATUS = 28  # last SecurityTradingStatus (0 = none yet)
IS_TRADING_EVENT = 29
IS_HALT_REASON = 30
IS_VIOL_CROSSED = 31  # completed events with a crossed/locked outright book
IS_VIOL_UNSORTED = 32  # ... with levels out of price order
IS_VIOL_NEGATIVE = 33  # ... with a negative quantity or order count
IS_BAD_LEVEL = 34  # book rows with a level outside 1..depth (dropped)
IS_EVENTS = 35  # completed events that changed this instrument
IS_UPDATES = 36  # book rows applied (MBP + MBO)
IS_TRADES = 37
IS_LAST_TIME = 38  # TransactTime of the last completed event
IS_LAST_MSG_SEQ = 39  # MsgSeqNum of the packet of the last completed event
IS_DIRTY = 40  # touched by the event in progress
IS_RING_HEAD = 41  # next write position in the ring
IS_RING_COUNT = 42  # snapshots in the ring (<= ring length)
IS_MBO_HEAD = 43  # first MBO price level of this instrument (-1 none)
IS_MBO_ORDERS = 44  # orders resting in the MBO book
IS_SNAPSHOTS = 45  # snapshots applied
IS_SNAPSHOT_KEY = 46  # (LastMsgSeqNumProcessed, RptSeq) of the last MBO snapshot chunk
IS_RESETS = 47  # book resets (entry 'J', ChannelReset)
IS_SNAPSHOT_PENDING = 48  # inside a snapshot message (its end completes the event)
# Clean-side tracking, so an event boundary need not rescan a side that stayed valid
# (core.book.mbp): levels 1..n filled, the rest blank, strictly sorted, no negative size.
IS_BID_CLEAN = 49  # n for a clean outright bid side; -1 = not known clean (rescan)
IS_ASK_CLEAN = 50  # the same for the ask side (IS_BID_CLEAN + BOOK_ASK)
IS_BID_BITS = 51  # invariant bits of the bid side at its last rescan (0 while clean)
IS_ASK_BITS = 52
IS_SIDES_TOUCHED = 53  # outright sides written in the event in progress (1 << side)
IS_IMPLIED_LIVE = 54  # implied levels written and not yet seen empty: merge at the boundary
N_INST_FIELDS = 55

# Invariant bits returned by the check at each completed event
INV_CROSSED = 1
INV_UNSORTED = 2
INV_NEGATIVE = 4

# Market-wide counters (int64 [N_MARKET_COUNTERS])
MC_PACKETS = 0
MC_ROWS = 1  # event rows applied
MC_EVENTS = 2  # completed events
MC_INSTRUMENTS_FULL = 3  # rows dropped: instrument table full
MC_STALE = 4  # rows skipped: RptSeq not newer
MC_RPT_GAPS = 5
MC_BAD_LEVEL = 6
MC_BAD_VALUE = 7  # unknown action / entry type / null price on a book row
MC_MBO_UNKNOWN_ORDER = 8  # update/delete of an order id not in the book
MC_MBO_POOL_FULL = 9  # order or level pool exhausted: order dropped
MC_CHANNEL_RESETS = 10
MC_GROUP_STATUS = 11  # SecurityStatus for a whole group (not applied per instrument)
MC_SNAPSHOTS = 12
MC_VIOLATIONS = 13  # completed events with any invariant violation
MC_COMPLETED_FULL = 14  # completed-instrument list full (entries lost)
N_MARKET_COUNTERS = 16

MARKET_COUNTER_NAMES = (
    "packets", "rows", "events", "instruments_full", "stale", "rpt_gaps", "bad_level",
    "bad_value", "mbo_unknown_order", "mbo_pool_full", "channel_resets", "group_status",
    "snapshots", "violations", "completed_full", "spare",
)

# ==========================================================================
# section: feed / sequencing -- owned by core/sequencing
# ==========================================================================
# core/sequencing.py arbitrates feeds A and B, detects gaps and recovers books
# from the snapshot loop. The trading core reads ``inst_status[i]`` (uint8, one
# per instrument row of the sequencer): an instrument is tradeable only when it
# equals INST_OK exactly (the STALE bit or any recovery state blocks it).

# Per-instrument market-data state (Sequencer.inst_status)
INST_EMPTY = 0  # row not in use
INST_OK = 1  # book known good: the only tradeable value
INST_RECOVERING = 2  # a gap hit this instrument: waiting for its snapshot
INST_SUSPECT = 3  # channel gap, no evidence yet: next contiguous RptSeq or a snapshot decides
INST_STATE_MASK = 0x0F
INST_STALE = 0x10  # bit: the instrument's channel is silent beyond its heartbeat interval

INST_STATE_NAMES = {INST_EMPTY: "empty", INST_OK: "ok", INST_RECOVERING: "recovering",
                    INST_SUSPECT: "suspect"}

# Channel lifecycle (chan[c, CH_STATE])
CHAN_IDLE = 0  # configured, no incremental packet yet
CHAN_RUNNING = 1

# Feeds and their roles (what a source tags each datagram with)
FEED_A = 0
FEED_B = 1
ROLE_INCREMENTAL = 0
ROLE_SNAPSHOT = 1  # market recovery (MBP snapshot loop, template 52)
ROLE_DEFINITION = 2  # instrument definition loop
ROLE_SNAPSHOT_MBO = 3  # MBO snapshot loop (template 53)
ROLE_NAMES = ("incremental", "snapshot", "definition", "snapshot_mbo")

# Sequencing counters per channel (Sequencer.counters[c, SQ_*], int64)
SQ_PACKETS_A = 0  # incremental packets received on feed A
SQ_PACKETS_B = 1
SQ_DELIVERED = 2  # incremental packets delivered (each sequence once, in order)
SQ_DUPLICATES = 3  # copies of a sequence already delivered (the other feed, resends)
SQ_LATE = 4  # copies of a sequence already declared lost (or too old to tell)
SQ_HELD = 5  # packets that arrived ahead of a missing one and waited
SQ_GAPS = 6  # gaps declared on the channel (lost on every feed)
SQ_GAP_PACKETS = 7  # sequences lost in those gaps
SQ_RPT_GAPS = 8  # RptSeq jumps on one instrument
SQ_RECOVERIES = 9  # instruments that entered RECOVERING or SUSPECT
SQ_RECOVERED = 10  # instruments back to OK from a snapshot
SQ_CONFIRMED = 11  # SUSPECT instruments cleared by a contiguous RptSeq
SQ_SNAPSHOT_PACKETS = 12
SQ_SNAPSHOTS_APPLIED = 13
SQ_SNAPSHOTS_SKIPPED = 14  # not needed, too old, or inconsistent with the buffer
SQ_BUFFERED = 15  # rows of recovering instruments buffered
SQ_REPLAYED = 16  # buffered rows applied after their snapshot
SQ_CHANNEL_RESETS = 17
SQ_SEQ_RESETS = 18  # MsgSeqNum restarted (ChannelReset with a lower sequence)
SQ_STALE = 19  # times the channel went STALE
SQ_ROWS_IN = 20
SQ_ROWS_OUT = 21
SQ_UNTRACKED = 22  # rows of instruments the sequencer does not track, passed through
# drops, by reason
SQ_DROP_SHORT = 23  # datagram shorter than the 12-byte packet header
SQ_DROP_TOO_BIG = 24  # ahead-of-sequence packet larger than a hold slot
SQ_DROP_OLD_RPT = 25  # row already reflected (RptSeq not newer, or covered by the snapshot)
SQ_DROP_BUFFER_FULL = 26  # recovery buffer overflow: rows lost, a newer snapshot is needed
SQ_DROP_OUT_FULL = 27  # output array full
SQ_DROP_RECOVERING_INFO = 28  # informational rows of a recovering instrument (trade order ids)
SQ_DROP_OBSOLETE = 29  # held packets discarded by a sequence reset
SQ_DROP_INSTRUMENTS_FULL = 30  # new instrument but the table is full (passed through)
N_SQ_COUNTERS = 32

SQ_COUNTER_NAMES = (
    "packets_a", "packets_b", "delivered", "duplicates", "late", "held", "gaps",
    "gap_packets", "rpt_gaps", "recoveries", "recovered", "confirmed", "snapshot_packets",
    "snapshots_applied", "snapshots_skipped", "buffered", "replayed", "channel_resets",
    "seq_resets", "stale", "rows_in", "rows_out", "untracked", "drop_short", "drop_too_big",
    "drop_old_rpt", "drop_buffer_full", "drop_out_full", "drop_recovering_info",
    "drop_obsolete", "drop_instruments_full", "spare",
)
