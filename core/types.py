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

Field meaning by ``kind`` (unused fields are 0, nulls use the NULL_* values):

==================  =============================================================
kind                fields
==================  =============================================================
EV_BOOK             security_id, rpt_seq, price, size, num_orders, price_level,
                    action (MDUpdateAction), entry_type ('0','1','E','F','J'),
                    aux = TradeableSize (NULL_I64 when absent / older version)
EV_ORDER            MBO (template 47, 43 legacy): security_id, rpt_seq, order_id,
                    aux = MDOrderPriority, price, size = MDDisplayQty, action,
                    entry_type ('0','1')
EV_ORDER_REF        order-ID group of template 46: order_id, aux = MDOrderPriority,
                    size = MDDisplayQty, action = OrderUpdateAction, price_level
                    = ReferenceID (1-based index of the MD entry of this message);
                    security_id, price, entry_type copied from that entry
EV_TRADE            security_id, rpt_seq, price, size, num_orders,
                    side = AggressorSide (0 none, 1 buy, 2 sell), action,
                    aux = MDTradeEntryID
EV_TRADE_ORDER      order-ID group of template 48: order_id, size = LastQty
EV_VOLUME           security_id, rpt_seq, size = cleared/electronic volume, action
EV_STAT             security_id, rpt_seq, price, size (open interest / volume
                    for statistics that carry a quantity), entry_type
                    (MDEntryType: '4','6','7','8','B','C','N','O','W','g'), action,
                    aux = stat flags (SettlPriceType / OpenCloseSettlFlag);
                    limits banding ('g'): price = high limit, order_id = low limit
                    as int64 bits, size = max price variation
EV_STATUS           security_id (0 = whole group), aux = SecurityTradingStatus,
                    size = SecurityTradingEvent, price_level = HaltReason
EV_CHANNEL_RESET    (template 4) aux = ApplID of the channel
EV_HEARTBEAT        no fields
EV_SNAPSHOT         root of 52/53/38/69: security_id, rpt_seq, aux =
                    LastMsgSeqNumProcessed, size = TotNumReports,
                    num_orders = number of entries that follow
EV_SNAPSHOT_ENTRY   one entry of a snapshot: as EV_BOOK (or EV_ORDER for 53,
                    then order_id is set), action = MD_NEW
EV_DEFINITION       security_id, aux = byte offset of the message (its MsgSize field)
                    in the packet, size = MsgSize: definitions are not hot; the
                    Python InstrumentTable decodes them with the generic codec
EV_OTHER            any other message (admin, quote request, ...) decoded and
                    skipped; template_id tells which
==================  =============================================================

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
DROP_SHORT_PACKET = 0  # fewer bytes than the 12-byte packet header
DROP_SHORT_MESSAGE = 1  # MsgSize < header or overruns the packet
DROP_BAD_SCHEMA = 2  # schemaId not one we decode
DROP_UNKNOWN_TEMPLATE = 3  # templateId not in the schema for this version
DROP_SHORT_BLOCK = 4  # blockLength shorter than the fields we must read
DROP_GROUP_OVERRUN = 5  # group dimension overruns the message
DROP_EVENTS_FULL = 6  # output array full: rest of packet dropped
DROP_BAD_VALUE = 7  # a value the kernel cannot use (e.g. level 0)
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
# Normalised market-data event (64 bytes, aligned)
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

# Packet header as decoded (one row per packet handed to the decoder).
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

# ==========================================================================
# section: books and features -- owned by core/book and core/features
# ==========================================================================

# ==========================================================================
# section: feed / sequencing -- owned by core/sequencing
# ==========================================================================
