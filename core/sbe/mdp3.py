"""Hot-path MDP 3.0 decoder: packets -> normalised ``MD_EVENT`` rows, in one numba call.

Three parts, in the stumpy style (private kernel, public facade that validates
and allocates):

``build_plan(schemas) -> np.ndarray``
    Turns the layouts of every bundled MDP schema (schema id 1: v5..v13, schema
    id 2: TCP session management) into ONE flat int64 array, the *plan*. Nothing
    in it is typed by hand except the mapping from schema field NAMES
    (MDEntryPx, SecurityID, ...) to event fields (``_KIND_FIELDS``). For each
    (schemaId, header version, templateId) the plan routes to a row that is
    already resolved for that version: the schema is chosen like
    :func:`core.sbe.schema.select_schema`, and a field whose sinceVersion is
    newer than the header version is marked "reads as null" at build time, so
    the kernel never compares versions.

``_decode_packet(buf, n, plan, events, start, drops, header) -> n_written``
    The numba kernel. Reads the 12-byte packet header and every message of
    ``buf[:n]``, writes rows into ``events[start:]``, the packet header into
    ``header[0]`` and counts every malformed input in ``drops[DROP_*]``. It never
    raises and never reads ``buf[n:]``: every read is inside a message whose
    MsgSize, root blockLength and group dimensions were checked first, and a
    message is written whole or not at all. Callable from other njit kernels
    (the book fuses it with its updates).

``Mdp3Decoder``
    Owns the preallocated events/drops/header arrays: ``decode(buf, n)`` for
    one packet, ``decode_many(packets)`` for a stream in one call.

The kernel reads each group entry one of two ways, both driven by the plan: a
*fast path* for groups whose fields all have their usual wire type (MDEntryPx
int64, MDEntrySize int32, SecurityID int32, RptSeq uint32, chars/enums uint8 -
46/32, 47/43, 48/42, 37, 49, 51: the build decides, per group, and records it),
with typed, branch-free reads; and a *generic path* (a switch on the wire type)
for the rest (LongQty 64-69, snapshots, limits, status...). Both give the same
rows: the tests run every case through both (``build_plan(fast_paths=False)``).

Plan layout (all int64)
-----------------------
``plan[:16]`` header (format, bases, sizes); ``plan[ROUTE_BASE:]`` the route,
indexed ``(schema_id * n_versions + min(version, n_versions - 1)) * 256 +
template_id`` -> row number, ROUTE_UNKNOWN_TEMPLATE or ROUTE_BAD_SCHEMA;
``plan[ROWS_BASE + row * ROW_WIDTH:]`` the rows (one per distinct resolved
layout, ~160). A row holds the template header (kinds, price exponent, root
bytes required, root mask), two group descriptors (dimension size, numInGroup
offset/width, bytes required per entry, fast flag) and three sections (root,
first group, second group), each with one spec of SPEC ints per event field.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from core.sbe.schema import (
    FieldLayout,
    GroupLayout,
    MessageLayout,
    Schema,
    bundled_index,
    bundled_schema,
)
from core.types import (
    DROP_BAD_SCHEMA,
    DROP_BAD_VALUE,
    DROP_EVENTS_FULL,
    DROP_GROUP_OVERRUN,
    DROP_SHORT_BLOCK,
    DROP_SHORT_MESSAGE,
    DROP_SHORT_PACKET,
    DROP_UNKNOWN_TEMPLATE,
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
    FLAG_RECOVERY,
    MD_EVENT,
    MD_NEW,
    MEI_END_OF_EVENT,
    MEI_RECOVERY_MSG,
    N_DROP_REASONS,
    PACKET_HEADER,
    PRICE9_EXPONENT,
)

__all__ = [
    "MDP_SCHEMA_IDS",
    "PACKET_HEADER_SIZE",
    "Mdp3Decoder",
    "build_plan",
    "default_plan",
    "plan_row",
]

PACKET_HEADER_SIZE = 12  # MsgSeqNum u32 + SendingTime u64
MESSAGE_HEADER_SIZE = 10  # MsgSize u16 + SBE header (blockLength, templateId, schemaId, version)
MDP_SCHEMA_IDS = (1, 2)  # market data, TCP recovery session management

# --------------------------------------------------------------------------
# Event-field slots: one spec per slot in every plan section
# --------------------------------------------------------------------------
S_TRANSACT_TIME = 0
S_PRICE = 1
S_SIZE = 2
S_ORDER_ID = 3
S_AUX = 4
S_SECURITY_ID = 5
S_RPT_SEQ = 6
S_NUM_ORDERS = 7
S_ACTION = 8
S_ENTRY_TYPE = 9
S_PRICE_LEVEL = 10
S_SIDE = 11
S_MATCH_EVENT = 12
N_SLOTS = 13
# ints per slot spec: [offset, code, raw null, value if null/absent] for the generic
# reader, then [keep, fixed, raw null, value if null] for the branch-free fast reader:
# value = (wire & keep) | fixed, then the null swap (a no-op where there is no null).
SPEC = 8

_SLOT_NAMES = (
    "transact_time", "price", "size", "order_id", "aux", "security_id", "rpt_seq",
    "num_orders", "action", "entry_type", "price_level", "side", "match_event",
)

# Null of each event field (MD_EVENT column type), as the int64 the kernel stores.
_SLOT_NULL = (
    -1,  # transact_time: UINT64 null
    int(np.int64(0x7FFFFFFFFFFFFFFF)),
    int(np.int64(0x7FFFFFFFFFFFFFFF)),
    -1,  # order_id: UINT64 null
    int(np.int64(0x7FFFFFFFFFFFFFFF)),
    0x7FFFFFFF,
    0xFFFFFFFF,
    0x7FFFFFFF,
    0xFF,
    0,  # entry_type: char null
    0xFF,
    0xFF,
    0,
)

# Read codes. > 0: read from the wire; CODE_NULLABLE bit: compare with the raw null.
CODE_NONE = 0  # not on the wire: the spec's value (absent, constant, newer than the version)
CODE_INHERIT = -1  # group entry takes the root's value (TransactTime, snapshot SecurityID...)
CODE_U8 = 1
CODE_I8 = 2
CODE_U16 = 3
CODE_I16 = 4
CODE_U32 = 5
CODE_I32 = 6
CODE_U64 = 7
CODE_I64 = 8
CODE_BYTES = 16  # + length (1..8): char array packed little-endian into an int64
CODE_NULLABLE = 0x100
_CODE_BY_PRIMITIVE = {
    "char": CODE_U8, "uint8": CODE_U8, "int8": CODE_I8, "uint16": CODE_U16,
    "int16": CODE_I16, "uint32": CODE_U32, "int32": CODE_I32, "uint64": CODE_U64,
    "int64": CODE_I64,
}
_SIZE_BY_PRIMITIVE = {"char": 1, "uint8": 1, "int8": 1, "uint16": 2, "int16": 2,
                      "uint32": 4, "int32": 4, "uint64": 8, "int64": 8}

# Plan header cells
P_FORMAT = 0
P_ROUTE_BASE = 1
P_ROWS_BASE = 2
P_ROW_WIDTH = 3
P_N_VERSIONS = 4
P_N_SCHEMA_IDS = 5
P_N_ROWS = 6
PLAN_FORMAT = 1
PLAN_HEADER = 16
N_TEMPLATE_IDS = 256
ROUTE_UNKNOWN_TEMPLATE = -1
ROUTE_BAD_SCHEMA = -2

# Row columns
R_TEMPLATE_ID = 0
R_SCHEMA_VERSION = 1
R_ROOT_KIND = 2  # kind of the row made from the root block (EV_NONE: no root row)
R_EMPTY_KIND = 3  # kind of the single row written when the message yields no other row
R_PRICE_EXP = 4
R_ROW_FLAGS = 5  # FLAG_RECOVERY for snapshot templates
R_ROOT_REQ = 6  # root bytes the kernel reads (wire blockLength must cover them)
R_N_GROUPS = 7  # groups to walk (0..2)
R_ROOT_MASK = 8  # bit per slot whose root value is not simply 0
R_GROUPS = 9
G_KIND = 0
G_PRESENT = 1  # 0 when the group is newer than the header version: no bytes on the wire
G_DIM_SIZE = 2
G_NUM_OFF = 3
G_NUM_WIDE = 4  # numInGroup is uint16 (groupSizeEncoding) rather than uint8
G_REQ = 5  # entry bytes the kernel reads
G_BL_OFF = 6
G_FAST = 7  # every field has its usual wire type: the kernel's typed fast path
G_WIDTH = 8
N_GROUPS = 2
SEC_ROOT = R_GROUPS + N_GROUPS * G_WIDTH
SEC_A = SEC_ROOT + N_SLOTS * SPEC
SEC_B = SEC_A + N_SLOTS * SPEC
ROW_WIDTH = SEC_B + N_SLOTS * SPEC

# --------------------------------------------------------------------------
# The only hand-written part: schema field names -> event fields, per kind
# --------------------------------------------------------------------------
_ROOT_CONTEXT = {"TransactTime": S_TRANSACT_TIME, "MatchEventIndicator": S_MATCH_EVENT}

_KIND_FIELDS: dict[int, dict[str, int]] = {
    EV_BOOK: {
        "MDEntryPx": S_PRICE, "MDEntrySize": S_SIZE, "SecurityID": S_SECURITY_ID,
        "RptSeq": S_RPT_SEQ, "NumberOfOrders": S_NUM_ORDERS, "MDPriceLevel": S_PRICE_LEVEL,
        "MDUpdateAction": S_ACTION, "MDEntryType": S_ENTRY_TYPE, "TradeableSize": S_AUX,
    },
    EV_ORDER: {
        "OrderID": S_ORDER_ID, "MDOrderPriority": S_AUX, "MDEntryPx": S_PRICE,
        "MDDisplayQty": S_SIZE, "SecurityID": S_SECURITY_ID, "MDUpdateAction": S_ACTION,
        "MDEntryType": S_ENTRY_TYPE,
    },
    EV_ORDER_REF: {
        "OrderID": S_ORDER_ID, "MDOrderPriority": S_AUX, "MDDisplayQty": S_SIZE,
        "ReferenceID": S_PRICE_LEVEL, "OrderUpdateAction": S_ACTION,
    },
    EV_TRADE: {
        "MDEntryPx": S_PRICE, "MDEntrySize": S_SIZE, "SecurityID": S_SECURITY_ID,
        "RptSeq": S_RPT_SEQ, "NumberOfOrders": S_NUM_ORDERS, "AggressorSide": S_SIDE,
        "MDUpdateAction": S_ACTION, "MDEntryType": S_ENTRY_TYPE, "MDTradeEntryID": S_AUX,
        "TradeID": S_AUX,
    },
    EV_TRADE_ORDER: {"OrderID": S_ORDER_ID, "LastQty": S_SIZE},
    EV_VOLUME: {
        "MDEntrySize": S_SIZE, "SecurityID": S_SECURITY_ID, "RptSeq": S_RPT_SEQ,
        "MDUpdateAction": S_ACTION, "MDEntryType": S_ENTRY_TYPE,
    },
    EV_STAT: {
        "MDEntryPx": S_PRICE, "MDEntrySize": S_SIZE, "SecurityID": S_SECURITY_ID,
        "RptSeq": S_RPT_SEQ, "MDUpdateAction": S_ACTION, "MDEntryType": S_ENTRY_TYPE,
        "SettlPriceType": S_AUX, "OpenCloseSettlFlag": S_AUX,
        # limits banding ('g')
        "HighLimitPrice": S_PRICE, "LowLimitPrice": S_ORDER_ID, "MaxPriceVariation": S_SIZE,
    },
    EV_CHANNEL_RESET: {**_ROOT_CONTEXT, "ApplID": S_AUX, "MDUpdateAction": S_ACTION,
                       "MDEntryType": S_ENTRY_TYPE},
    EV_SNAPSHOT_ENTRY: {
        "MDEntryPx": S_PRICE, "MDEntrySize": S_SIZE, "NumberOfOrders": S_NUM_ORDERS,
        "MDPriceLevel": S_PRICE_LEVEL, "MDEntryType": S_ENTRY_TYPE, "TradeableSize": S_AUX,
        # order-book snapshots (53, 44, 59)
        "OrderID": S_ORDER_ID, "MDOrderPriority": S_AUX, "MDDisplayQty": S_SIZE,
    },
    # root rows
    EV_STATUS: {
        **_ROOT_CONTEXT, "SecurityID": S_SECURITY_ID, "SecurityTradingStatus": S_AUX,
        "SecurityTradingEvent": S_SIZE, "HaltReason": S_PRICE_LEVEL,
        "SecurityGroup": S_ORDER_ID, "MDEntryPx": S_PRICE,
    },
    EV_SNAPSHOT: {
        **_ROOT_CONTEXT, "SecurityID": S_SECURITY_ID, "RptSeq": S_RPT_SEQ,
        "LastMsgSeqNumProcessed": S_AUX, "TotNumReports": S_SIZE,
        "HighLimitPrice": S_PRICE, "LowLimitPrice": S_ORDER_ID,
        "MDSecurityTradingStatus": S_PRICE_LEVEL,
        # order-book snapshots (53, 44) have chunks instead of RptSeq / limits
        "CurrentChunk": S_RPT_SEQ, "NoChunks": S_ORDER_ID,
    },
    EV_DEFINITION: {"MatchEventIndicator": S_MATCH_EVENT, "SecurityID": S_SECURITY_ID},
    EV_OTHER: dict(_ROOT_CONTEXT),
    EV_HEARTBEAT: {},
    EV_NONE: dict(_ROOT_CONTEXT),
}

_NULL_I64 = int(np.int64(0x7FFFFFFFFFFFFFFF))
# Where a field is missing from the layout, its event field reads as 0 ("unused"),
# except these, which read as null (as if the field were on the wire and null).
_NULL_WHEN_ABSENT: dict[int, dict[int, int]] = {
    EV_BOOK: {S_AUX: _NULL_I64},  # TradeableSize before v10
    EV_SNAPSHOT_ENTRY: {S_AUX: _NULL_I64},
    EV_SNAPSHOT: {S_RPT_SEQ: 0xFFFFFFFF, S_AUX: _NULL_I64, S_SIZE: _NULL_I64,
                  S_PRICE: _NULL_I64, S_ORDER_ID: _NULL_I64, S_PRICE_LEVEL: 0xFF},
    EV_CHANNEL_RESET: {S_AUX: _NULL_I64},  # a reset without entries: ApplID unknown
}
# A null wire value maps to the event field's null, except here.
_NULL_OVERRIDES: dict[tuple[int, int], int] = {
    (EV_STATUS, S_SECURITY_ID): 0,  # no SecurityID: the status applies to the whole group
    (EV_TRADE, S_SIDE): 0,  # no aggressor
}
_CONSTANT_SLOTS: dict[int, dict[int, int]] = {
    EV_SNAPSHOT_ENTRY: {S_ACTION: MD_NEW},
}
# Snapshot entries carry their root's SecurityID/RptSeq; every row its TransactTime/MEI.
_INHERITED = {"TransactTime": S_TRANSACT_TIME, "MatchEventIndicator": S_MATCH_EVENT,
              "SecurityID": S_SECURITY_ID, "RptSeq": S_RPT_SEQ}


def _message_kinds(msg: MessageLayout, schema_id: int) -> tuple[int, int, tuple[int, int]]:
    """(root kind, empty kind, (kind of group 1, kind of group 2)) from the message name."""
    if schema_id != 1:
        return EV_OTHER, EV_NONE, (EV_NONE, EV_NONE)
    base = msg.name.rstrip("0123456789").removesuffix("LongQty")
    entries_orders: dict[str, tuple[int, int]] = {
        "MDIncrementalRefreshBook": (EV_BOOK, EV_ORDER_REF),
        "MDIncrementalRefreshOrderBook": (EV_ORDER, EV_NONE),
        "MDIncrementalRefreshTradeSummary": (EV_TRADE, EV_TRADE_ORDER),
        "MDIncrementalRefreshTrade": (EV_TRADE, EV_NONE),
        "MDIncrementalRefreshVolume": (EV_VOLUME, EV_NONE),
        "MDIncrementalRefreshDailyStatistics": (EV_STAT, EV_NONE),
        "MDIncrementalRefreshSessionStatistics": (EV_STAT, EV_NONE),
        "MDIncrementalRefreshLimitsBanding": (EV_STAT, EV_NONE),
    }
    if base in entries_orders:
        return EV_NONE, EV_NONE, entries_orders[base]
    if base == "ChannelReset":
        return EV_NONE, EV_CHANNEL_RESET, (EV_CHANNEL_RESET, EV_NONE)
    if base in ("SnapshotFullRefresh", "SnapshotFullRefreshOrderBook",
                "SnapshotFullRefreshTCP", "SnapshotRefreshTopOrders"):
        return EV_SNAPSHOT, EV_NONE, (EV_SNAPSHOT_ENTRY, EV_NONE)
    if base in ("SecurityStatus", "SecurityStatusWorkup"):
        return EV_STATUS, EV_NONE, (EV_NONE, EV_NONE)
    if base.startswith("MDInstrumentDefinition"):
        return EV_DEFINITION, EV_NONE, (EV_NONE, EV_NONE)
    if base == "AdminHeartbeat":
        return EV_HEARTBEAT, EV_NONE, (EV_NONE, EV_NONE)
    return EV_OTHER, EV_NONE, (EV_NONE, EV_NONE)


# --------------------------------------------------------------------------
# Plan builder
# --------------------------------------------------------------------------
def _wire_of(f: FieldLayout) -> tuple[str, int | None, int]:
    """(primitive, raw null or None, length) of the integer actually on the wire."""
    if f.kind == "composite":
        m = f.mantissa or f.scalar_member
        if m is None:
            raise ValueError(f"composite field {f.name} ({f.type_name}) has no scalar member")
        null = m.null_value if m.presence == "optional" else None
        return m.primitive, (int(null) if null is not None else None), 1
    null = f.null_value if f.presence == "optional" else None
    return f.primitive, (int(null) if null is not None else None), f.length


def _to_i64(v: int) -> int:
    return int(np.array(v & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64).view(np.int64))


def _section(
    fields: Sequence[FieldLayout], kind: int, version: int, where: str,
    root_sources: dict[int, str] | None,
) -> tuple[list[int], int, dict[int, str]]:
    """Specs of one section, the bytes it reads, and slot -> source field name."""
    mapping = _KIND_FIELDS[kind]
    spec = [0] * (N_SLOTS * SPEC)
    for s, v in {**_NULL_WHEN_ABSENT.get(kind, {}), **_CONSTANT_SLOTS.get(kind, {})}.items():
        spec[s * SPEC + 3] = v
    required = 0
    sources: dict[int, str] = {}
    for f in fields:
        s_or_none = mapping.get(f.name)
        if s_or_none is None:
            continue
        s = s_or_none
        if s in sources:
            raise ValueError(f"{where}: {f.name} and {sources[s]} both map to {_SLOT_NAMES[s]}")
        sources[s] = f.name
        b = s * SPEC
        null_out = _NULL_OVERRIDES.get((kind, s), _SLOT_NULL[s])
        if f.since_version > version:
            spec[b + 1] = CODE_NONE
            spec[b + 3] = null_out
            continue
        if f.is_constant:
            c = f.constant
            spec[b + 1] = CODE_NONE
            spec[b + 3] = ord(c) if isinstance(c, str) else int(c or 0)
            continue
        prim, null, length = _wire_of(f)
        if s == S_ORDER_ID and prim == "int64":
            null_out = _NULL_I64  # a price (LowLimitPrice) carried as int64 bits
        if prim == "char" and length > 1:
            if length > 8:
                raise ValueError(f"{where}: {f.name} is a char[{length}], more than 8 bytes")
            code = CODE_BYTES + length
            size = 8  # read as one 8-byte load, then masked
        else:
            if prim not in _CODE_BY_PRIMITIVE or length != 1:
                raise ValueError(f"{where}: {f.name} has unsupported wire type {prim}[{length}]")
            code = _CODE_BY_PRIMITIVE[prim]
            size = _SIZE_BY_PRIMITIVE[prim]
        if null is not None:
            code |= CODE_NULLABLE
            spec[b + 2] = _to_i64(null)
        spec[b] = f.offset
        spec[b + 1] = code
        spec[b + 3] = null_out
        required = max(required, f.offset + size)
    if root_sources is not None:  # a group section: inherit context from the root
        for s, name in root_sources.items():
            if s not in sources and _INHERITED.get(name) == s:
                spec[s * SPEC + 1] = CODE_INHERIT
    for s in range(N_SLOTS):
        b = s * SPEC
        code, raw_null, out = spec[b + 1], spec[b + 2], spec[b + 3]
        if code > 0:  # on the wire: keep all bits; swap the raw null if there is one
            nullable = bool(code & CODE_NULLABLE)
            spec[b + 4:b + 8] = [-1, 0, raw_null if nullable else 0, out if nullable else 0]
        elif code == CODE_NONE:  # not on the wire: nothing kept, the value fixed
            spec[b + 4:b + 8] = [0, out, out, out]
    return spec, required, sources


def _price_exponent(msg: MessageLayout, default: int) -> int:
    fields = list(msg.fields) + [f for g in msg.groups for f in g.fields]
    for f in fields:
        if f.mantissa is not None and f.exponent is not None and f.name.endswith(("Px", "Price")):
            return f.exponent
    return default


def _schema_price_exponent(schema: Schema) -> int:
    """PRICE9's exponent if the schema has it (v9+), else its legacy PRICE's."""
    found = {_price_exponent(msg, 0) for msg in schema.messages.values()} - {0}
    if not found or PRICE9_EXPONENT in found:
        return PRICE9_EXPONENT
    return min(found)


# The usual wire type of each event field: a group whose fields all have it (or are
# absent / constant / inherited) takes the kernel's typed fast path. AUX is always
# read by the generic reader (TradeableSize i32, MDOrderPriority u64, flags u8...).
_FAST_CODES: dict[int, tuple[int, ...]] = {
    S_TRANSACT_TIME: (CODE_U64,),
    S_PRICE: (CODE_I64,),
    S_SIZE: (CODE_I32,),
    S_ORDER_ID: (CODE_U64, CODE_I64),
    S_SECURITY_ID: (CODE_I32,),
    S_RPT_SEQ: (CODE_U32,),
    S_NUM_ORDERS: (CODE_I32,),
    S_ACTION: (CODE_U8,),
    S_ENTRY_TYPE: (CODE_U8,),
    S_PRICE_LEVEL: (CODE_U8,),
    S_SIDE: (CODE_U8,),
    S_MATCH_EVENT: (CODE_U8,),
}


def _is_fast(spec: Sequence[int], required: int) -> bool:
    """Every field has its usual wire type, only TransactTime/MatchEventIndicator are
    inherited (the fast path takes them from the root), and an entry has >= 8 bytes
    (an absent field reads the entry's first bytes, then masks them away)."""
    if required < 8:
        return False
    for s, allowed in _FAST_CODES.items():
        code = spec[s * SPEC + 1]
        if code == CODE_INHERIT and s not in (S_TRANSACT_TIME, S_MATCH_EVENT):
            return False
        if code > 0 and (code & ~CODE_NULLABLE) not in allowed:
            return False
    return spec[S_TRANSACT_TIME * SPEC + 1] == CODE_INHERIT


def _group_desc(g: GroupLayout, kind: int, version: int, required: int) -> list[int]:
    bl = g.dimension.member("blockLength")
    num = g.dimension.member("numInGroup")
    if bl.primitive != "uint16" or num.primitive not in ("uint8", "uint16"):
        raise ValueError(f"group {g.name}: unsupported dimension {g.dimension.name}")
    if g.groups or g.var_data:
        raise ValueError(f"group {g.name}: nested groups / var data are not walked")
    desc = [0] * G_WIDTH
    desc[G_KIND] = kind
    desc[G_PRESENT] = 1 if g.since_version <= version else 0
    desc[G_DIM_SIZE] = g.dimension.size
    desc[G_NUM_OFF] = num.offset
    desc[G_NUM_WIDE] = 1 if num.primitive == "uint16" else 0
    desc[G_REQ] = required
    desc[G_BL_OFF] = bl.offset
    return desc


def _build_row(schema: Schema, msg: MessageLayout, version: int,
               fast_paths: bool) -> tuple[int, ...]:
    where = f"schema {schema.id} v{schema.version} template {msg.id} @v{version}"
    root_kind, empty_kind, group_kinds = _message_kinds(msg, schema.id)
    row = [0] * ROW_WIDTH
    row[R_TEMPLATE_ID] = msg.id
    row[R_SCHEMA_VERSION] = schema.version
    row[R_ROOT_KIND] = root_kind
    row[R_EMPTY_KIND] = empty_kind
    row[R_PRICE_EXP] = _price_exponent(msg, _schema_price_exponent(schema))
    recovery = EV_SNAPSHOT in (root_kind, *group_kinds) or EV_SNAPSHOT_ENTRY in group_kinds
    row[R_ROW_FLAGS] = FLAG_RECOVERY if recovery else 0
    # the root of an entries-only message feeds its empty row (a reset without entries)
    root_fields_kind = root_kind if root_kind != EV_NONE else empty_kind
    root_spec, root_req, root_sources = _section(
        msg.fields, root_fields_kind, version, where, None)
    row[SEC_ROOT:SEC_ROOT + N_SLOTS * SPEC] = root_spec
    row[R_ROOT_REQ] = root_req
    row[R_ROOT_MASK] = sum(1 << i for i in range(N_SLOTS)
                           if root_spec[i * SPEC + 1] != CODE_NONE or root_spec[i * SPEC + 3])
    # older layouts may lack the second group (32 before v7): nothing to walk there
    group_kinds = (group_kinds[0] if msg.groups else EV_NONE,
                   group_kinds[1] if len(msg.groups) > 1 else EV_NONE)
    walked = 0
    for gi in (1, 0):
        if group_kinds[gi] != EV_NONE:
            walked = gi + 1
            break
    row[R_N_GROUPS] = walked
    for gi in range(walked):
        g = msg.groups[gi]
        kind = group_kinds[gi]
        base = (SEC_A, SEC_B)[gi]
        fast = False
        if kind != EV_NONE:
            spec, req, _ = _section(g.fields, kind, version, f"{where} {g.name}", root_sources)
            row[base:base + N_SLOTS * SPEC] = spec
            fast = fast_paths and _is_fast(spec, req)
        else:
            req = 0
        desc = _group_desc(g, kind, version, req)
        desc[G_FAST] = 1 if fast else 0
        row[R_GROUPS + gi * G_WIDTH:R_GROUPS + (gi + 1) * G_WIDTH] = desc
    return tuple(row)


@functools.cache
def _since_versions(msg: MessageLayout) -> tuple[int, ...]:
    found = {f.since_version for f in msg.fields}
    for g in msg.groups:
        found.add(g.since_version)
        found.update(f.since_version for f in g.fields)
    return tuple(sorted(found))


def build_plan(schemas: Iterable[Schema] | None = None, *, fast_paths: bool = True) -> np.ndarray:
    """The decoder plan (flat int64 array) for ``schemas`` (default: the bundled MDP ones).

    Schema choice per (schemaId, version, templateId) follows ``select_schema``:
    among the schemas with that id defining the template, the smallest version
    >= the header version, else the newest below. ``fast_paths=False`` sends every
    group through the generic reader (the tests compare both).
    """
    if schemas is None:  # parse only the MDP schemas (not iLink's)
        schemas = [bundled_schema(sid, ver) for sid, ver, _, _ in bundled_index()
                   if sid in MDP_SCHEMA_IDS]
    schemas = list(schemas)
    if not schemas:
        raise ValueError("build_plan needs at least one schema")
    n_sids = max(s.id for s in schemas) + 1
    n_versions = max(s.version for s in schemas) + 2  # last index = "newer than any schema"
    route = np.full(n_sids * n_versions * N_TEMPLATE_IDS, ROUTE_BAD_SCHEMA, dtype=np.int64)
    rows: list[tuple[int, ...]] = []
    row_index: dict[tuple[int, ...], int] = {}
    by_id: dict[int, list[Schema]] = {}
    for s in schemas:
        by_id.setdefault(s.id, []).append(s)
    built: dict[tuple[int, int, int, tuple[bool, ...]], int] = {}
    for sid, group in by_id.items():
        for tid in range(N_TEMPLATE_IDS):
            having = [s for s in group if tid in s.messages]
            for v in range(n_versions):
                cell = (sid * n_versions + v) * N_TEMPLATE_IDS + tid
                if not having:
                    route[cell] = ROUTE_UNKNOWN_TEMPLATE
                    continue
                above = [s for s in having if s.version >= v]
                chosen = (min(above, key=lambda s: s.version) if above
                          else max(having, key=lambda s: s.version))
                msg = chosen.messages[tid]
                # the version only matters through the sinceVersions it reaches
                key = (sid, chosen.version, tid, tuple(sv <= v for sv in _since_versions(msg)))
                if key not in built:
                    row = _build_row(chosen, msg, v, fast_paths)
                    if row not in row_index:
                        row_index[row] = len(rows)
                        rows.append(row)
                    built[key] = row_index[row]
                route[cell] = built[key]
    header = np.zeros(PLAN_HEADER, dtype=np.int64)
    header[P_FORMAT] = PLAN_FORMAT
    header[P_ROUTE_BASE] = PLAN_HEADER
    header[P_ROWS_BASE] = PLAN_HEADER + route.size
    header[P_ROW_WIDTH] = ROW_WIDTH
    header[P_N_VERSIONS] = n_versions
    header[P_N_SCHEMA_IDS] = n_sids
    header[P_N_ROWS] = len(rows)
    body = np.array(rows, dtype=np.int64).reshape(-1)
    plan = np.concatenate([header, route, body])
    plan.setflags(write=False)
    return plan


@functools.cache
def default_plan() -> np.ndarray:
    """The plan of the bundled MDP schemas, built once per process (read-only)."""
    return build_plan()


def plan_row(plan: np.ndarray, schema_id: int, version: int, template_id: int) -> np.ndarray | None:
    """The plan row a message header routes to (for tests and tools), or None."""
    nv = int(plan[P_N_VERSIONS])
    if not 0 <= schema_id < plan[P_N_SCHEMA_IDS] or not 0 <= template_id < N_TEMPLATE_IDS:
        return None
    r = int(plan[plan[P_ROUTE_BASE] + (schema_id * nv + min(version, nv - 1)) * 256
                 + template_id])
    if r < 0:
        return None
    base = int(plan[P_ROWS_BASE]) + r * ROW_WIDTH
    return plan[base:base + ROW_WIDTH]


# --------------------------------------------------------------------------
# Kernel
# --------------------------------------------------------------------------
# Every kernel here is compiled with ``_nrt=False`` (numba's switch for its
# runtime; private, absent from its type stubs): none allocates, and without the
# runtime numba does not reference-count the arrays handed to a callee. With it,
# each call that passes an array costs two atomic operations (~20 ns each on this
# class of VM), which made a per-field helper 30x slower than the field read.
_kernel = njit(cache=True, _nrt=False)  # type: ignore[call-overload]

def _load_intrinsic(bits: int) -> Any:
    """An intrinsic ``(buf, pos) -> int64`` reading ``bits`` little-endian bits at any
    alignment: one unaligned load, no negative-index fix-up (callers check bounds)."""

    @intrinsic
    def load(typingctx: Any, buf: Any, pos: Any) -> Any:
        if not isinstance(buf, types.Array) or not isinstance(pos, types.Integer):
            return None

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            idx = context.cast(builder, args[1], signature.args[1], types.intp)
            ptr = builder.gep(ary.data, [idx])
            ity = ir.IntType(bits)
            value = builder.load(builder.bitcast(ptr, ity.as_pointer()), align=1)
            return value if bits == 64 else builder.zext(value, ir.IntType(64))

        return types.int64(buf, pos), codegen

    return load


_u16 = _load_intrinsic(16)
_u32 = _load_intrinsic(32)
_u64 = _load_intrinsic(64)


_u8 = _load_intrinsic(8)
_at = _u64  # on the int64 plan, an element index: plan[i] without the negative-index fix-up


# -- field readers: the value of one event field for the block that starts at ``p``,
# from its spec ``plan[b:b + SPEC]``. Specs are read from the plan at each use:
# copying them into locals once per group costs more than it saves (register
# spills), as most groups hold 1-4 entries.
@_kernel
def _get(buf: Any, p: int, plan: Any, sec: int, slot: int, root: int, sr: int) -> int:
    """Field ``slot`` of section ``sec`` for the block at ``p``, any wire type (a switch on
    the code): the generic path. An inherited field is read from the root block at
    ``root`` with the root section ``sr``."""
    b = sec + slot * SPEC
    code = _at(plan, b + 1)
    if code == CODE_INHERIT:  # (root specs never inherit)
        p = root
        b = sr + slot * SPEC
        code = _at(plan, b + 1)
    if code <= 0:
        return _at(plan, b + 3)
    q = p + _at(plan, b)
    c = code & 0xFF
    if c in (CODE_I64, CODE_U64):
        v = _u64(buf, q)
    elif c == CODE_I32:
        v = np.int64(np.int32(_u32(buf, q)))
    elif c == CODE_U32:
        v = _u32(buf, q)
    elif c == CODE_U8:
        v = _u8(buf, q)
    elif c == CODE_I8:
        v = np.int64(np.int8(_u8(buf, q)))
    elif c == CODE_U16:
        v = _u16(buf, q)
    elif c == CODE_I16:
        v = np.int64(np.int16(_u16(buf, q)))
    else:  # CODE_BYTES + length: a short char array, packed little-endian (the plan
        # counts 8 bytes as read, so the block check covers the wide load)
        v = _u64(buf, q)
        if c < CODE_BYTES + 8:
            v &= (np.int64(1) << (8 * (c - CODE_BYTES))) - 1
    if code & CODE_NULLABLE and v == _at(plan, b + 2):
        return _at(plan, b + 3)
    return v


# Branch-free readers of the fast path: the plan guarantees the wire type (G_FAST);
# value = (wire & keep) | fixed, then swap the raw null (spec ints 4..7). int64 and
# uint64 share one reader (same bits).
@_kernel
def _fast_64(buf: Any, p: int, plan: Any, b: int) -> int:
    v = (_u64(buf, p + _at(plan, b)) & _at(plan, b + 4)) | _at(plan, b + 5)
    return _at(plan, b + 7) if v == _at(plan, b + 6) else v


@_kernel
def _fast_i32(buf: Any, p: int, plan: Any, b: int) -> int:
    v = (int(np.int32(_u32(buf, p + _at(plan, b)))) & _at(plan, b + 4)) | _at(plan, b + 5)
    return _at(plan, b + 7) if v == _at(plan, b + 6) else v


@_kernel
def _fast_u32(buf: Any, p: int, plan: Any, b: int) -> int:
    v = (_u32(buf, p + _at(plan, b)) & _at(plan, b + 4)) | _at(plan, b + 5)
    return _at(plan, b + 7) if v == _at(plan, b + 6) else v


@_kernel
def _fast_u8(buf: Any, p: int, plan: Any, b: int) -> int:
    v = (_u8(buf, p + _at(plan, b)) & _at(plan, b + 4)) | _at(plan, b + 5)
    return _at(plan, b + 7) if v == _at(plan, b + 6) else v


@_kernel
def _root_value(buf: Any, root: int, plan: Any, sr: int, slot: int, mask: int) -> int:
    """A root field; the mask skips the slots that are simply 0 (most of them)."""
    if (mask >> slot) & 1 == 0:
        return 0
    return _get(buf, root, plan, sr, slot, root, sr)


@_kernel
def _write_root_row(events: Any, k: int, kind: int, buf: Any, root: int, plan: Any, sr: int,
                    mask: int, transact_time: int, match_event: int, aux: int, size: int,
                    num_orders: int, flags: int, price_exp: int, msg_seq: int, template_id: int,
                    msg_index: int) -> None:
    """The row made from a root block (status, snapshot, definition, empty message...)."""
    _write_row(events, k, kind, transact_time,
               _root_value(buf, root, plan, sr, S_PRICE, mask), size,
               _root_value(buf, root, plan, sr, S_ORDER_ID, mask), aux,
               _root_value(buf, root, plan, sr, S_SECURITY_ID, mask),
               _root_value(buf, root, plan, sr, S_RPT_SEQ, mask), num_orders,
               _root_value(buf, root, plan, sr, S_ACTION, mask),
               _root_value(buf, root, plan, sr, S_ENTRY_TYPE, mask),
               _root_value(buf, root, plan, sr, S_PRICE_LEVEL, mask),
               _root_value(buf, root, plan, sr, S_SIDE, mask), match_event, flags, price_exp,
               msg_seq, template_id, msg_index)


@_kernel
def _write_row(events: Any, k: int, kind: int, transact_time: int, price: int, size: int,
               order_id: int, aux: int, security_id: int, rpt_seq: int, num_orders: int,
               action: int, entry_type: int, price_level: int, side: int, match_event: int,
               flags: int, price_exp: int, msg_seq: int, template_id: int,
               msg_index: int) -> None:
    e = events[k]
    e.transact_time = np.uint64(transact_time)
    e.price = price
    e.size = size
    e.order_id = np.uint64(order_id)
    e.aux = aux
    e.security_id = np.int32(security_id)
    e.rpt_seq = np.uint32(rpt_seq)
    e.msg_seq = np.uint32(msg_seq)
    e.num_orders = np.int32(num_orders)
    e.template_id = np.uint16(template_id)
    e.kind = np.uint8(kind)
    e.action = np.uint8(action)
    e.entry_type = np.uint8(entry_type)
    e.price_level = np.uint8(price_level)
    e.side = np.uint8(side)
    e.match_event = np.uint8(match_event)
    e.flags = np.uint8(flags)
    e.price_exponent = np.int8(price_exp)
    e.msg_index = np.uint16(msg_index)


@_kernel
def _decode_packet(buf: Any, n: int, plan: Any, events: Any, start: int, drops: Any,
                   header: Any) -> int:
    """Decode the MDP packet ``buf[:n]`` into ``events[start:]``; return the rows written.

    ``header[0]`` receives the packet header (msg_seq, sending_time, n_messages,
    n_events). Malformed input is counted in ``drops`` and skipped: a bad
    message (schema, template, block, group) costs that message; lost framing
    (MsgSize) or a full ``events`` array costs the rest of the packet.
    """
    h = header[0]
    h.n_messages = 0
    h.n_events = 0
    if n < PACKET_HEADER_SIZE or n > buf.shape[0]:
        drops[DROP_SHORT_PACKET] += 1
        h.msg_seq = 0
        h.sending_time = 0
        return 0
    msg_seq = _u32(buf, 0)
    h.msg_seq = np.uint32(msg_seq)
    h.sending_time = np.uint64(_u64(buf, 4))
    cap = events.shape[0]
    route_base = _at(plan, P_ROUTE_BASE)
    rows_base = _at(plan, P_ROWS_BASE)
    width = _at(plan, P_ROW_WIDTH)
    n_versions = _at(plan, P_N_VERSIONS)
    n_sids = _at(plan, P_N_SCHEMA_IDS)
    k = start
    pos = PACKET_HEADER_SIZE
    msg_index = 0
    while pos < n:
        if n - pos < MESSAGE_HEADER_SIZE:
            drops[DROP_SHORT_MESSAGE] += 1
            break
        msg_size = _u16(buf, pos)
        if msg_size < MESSAGE_HEADER_SIZE or msg_size > n - pos:
            drops[DROP_SHORT_MESSAGE] += 1
            break
        p0 = pos
        end = pos + msg_size
        pos = end
        mi = msg_index
        msg_index += 1
        block_len = _u16(buf, p0 + 2)
        template_id = _u16(buf, p0 + 4)
        schema_id = _u16(buf, p0 + 6)
        version = _u16(buf, p0 + 8)
        if schema_id >= n_sids:
            drops[DROP_BAD_SCHEMA] += 1
            continue
        if template_id >= N_TEMPLATE_IDS:
            drops[DROP_UNKNOWN_TEMPLATE] += 1
            continue
        if version >= n_versions:
            version = n_versions - 1
        route = (schema_id * n_versions + version) * N_TEMPLATE_IDS + template_id
        r = _at(plan, route_base + route)
        if r < 0:
            drops[DROP_BAD_SCHEMA if r == ROUTE_BAD_SCHEMA else DROP_UNKNOWN_TEMPLATE] += 1
            continue
        row = rows_base + r * width
        root = p0 + MESSAGE_HEADER_SIZE
        if block_len > end - root or block_len < _at(plan, row + R_ROOT_REQ):
            drops[DROP_SHORT_BLOCK] += 1
            continue
        # -- walk the group dimensions: validate everything before writing anything
        gpos = root + block_len
        num_a = 0
        bl_a = 0
        pos_a = 0
        num_b = 0
        bl_b = 0
        pos_b = 0
        bad = -1
        for gi in range(_at(plan, row + R_N_GROUPS)):
            gd = row + R_GROUPS + gi * G_WIDTH
            if _at(plan, gd + G_PRESENT) == 0:
                continue
            dim = _at(plan, gd + G_DIM_SIZE)
            if end - gpos < dim:
                bad = DROP_GROUP_OVERRUN
                break
            bl = _u16(buf, gpos + _at(plan, gd + G_BL_OFF))
            if _at(plan, gd + G_NUM_WIDE):
                num = _u16(buf, gpos + _at(plan, gd + G_NUM_OFF))
            else:
                num = _u8(buf, gpos + _at(plan, gd + G_NUM_OFF))
            body = gpos + dim
            if bl * num > end - body:
                bad = DROP_GROUP_OVERRUN
                break
            if num > 0 and bl < _at(plan, gd + G_REQ):
                bad = DROP_SHORT_BLOCK
                break
            if gi == 0:
                num_a = num
                bl_a = bl
                pos_a = body
            else:
                num_b = num
                bl_b = bl
                pos_b = body
            gpos = body + bl * num
        if bad >= 0:
            drops[bad] += 1
            continue
        kind_root = _at(plan, row + R_ROOT_KIND)
        kind_a = _at(plan, row + R_GROUPS + G_KIND)
        kind_b = _at(plan, row + R_GROUPS + G_WIDTH + G_KIND)
        if kind_a == EV_NONE:
            num_a = 0
        if kind_b == EV_NONE:
            num_b = 0
        rows = num_a + num_b + (1 if kind_root != EV_NONE else 0)
        if rows > cap - k or cap - k < 1:
            drops[DROP_EVENTS_FULL] += 1
            break
        # -- the root: every row carries TransactTime and MatchEventIndicator; the
        # rest is read where used (the root row, inherited fields, an empty message)
        sr = row + SEC_ROOT
        mask = _at(plan, row + R_ROOT_MASK)
        r_tt = _root_value(buf, root, plan, sr, S_TRANSACT_TIME, mask)
        mei = _root_value(buf, root, plan, sr, S_MATCH_EVENT, mask)
        pexp = _at(plan, row + R_PRICE_EXP)
        flags = _at(plan, row + R_ROW_FLAGS)
        if mei & MEI_RECOVERY_MSG:
            flags |= FLAG_RECOVERY
        k0 = k
        if kind_root != EV_NONE:
            if kind_root in (EV_DEFINITION, EV_OTHER):
                # decoded off the hot path: tell Python where the message is
                aux = p0
                size = msg_size
            else:
                aux = _root_value(buf, root, plan, sr, S_AUX, mask)
                size = _root_value(buf, root, plan, sr, S_SIZE, mask)
            nord = num_a if kind_root == EV_SNAPSHOT else _root_value(
                buf, root, plan, sr, S_NUM_ORDERS, mask)
            _write_root_row(events, k, kind_root, buf, root, plan, sr, mask, r_tt, mei, aux,
                            size, nord, flags, pexp, msg_seq, template_id, mi)
            k += 1
        k_a = k  # row of the first entry of group 1 (ReferenceID targets)
        for gi in range(2):
            if gi == 0:
                kind = kind_a
                count = num_a
                base = pos_a
                stride = bl_a
                s = row + SEC_A
            else:
                kind = kind_b
                count = num_b
                base = pos_b
                stride = bl_b
                s = row + SEC_B
            if count == 0:
                continue
            fast = _at(plan, row + R_GROUPS + gi * G_WIDTH + G_FAST) != 0
            for i in range(count):
                p = base + i * stride
                if fast:  # the usual wire types: typed, branch-free reads
                    tt = r_tt  # groups carry no TransactTime
                    lvl = _fast_u8(buf, p, plan, s + S_PRICE_LEVEL * SPEC)
                    if kind == EV_ORDER_REF:  # these four come from the referenced entry
                        px = sec = rpt = et = 0
                    else:
                        px = _fast_64(buf, p, plan, s + S_PRICE * SPEC)
                        sec = _fast_i32(buf, p, plan, s + S_SECURITY_ID * SPEC)
                        rpt = _fast_u32(buf, p, plan, s + S_RPT_SEQ * SPEC)
                        et = _fast_u8(buf, p, plan, s + S_ENTRY_TYPE * SPEC)
                    sz = _fast_i32(buf, p, plan, s + S_SIZE * SPEC)
                    oid = _fast_64(buf, p, plan, s + S_ORDER_ID * SPEC)
                    nord = _fast_i32(buf, p, plan, s + S_NUM_ORDERS * SPEC)
                    act = _fast_u8(buf, p, plan, s + S_ACTION * SPEC)
                    side = _fast_u8(buf, p, plan, s + S_SIDE * SPEC)
                else:
                    tt = _get(buf, p, plan, s, S_TRANSACT_TIME, root, sr)
                    px = _get(buf, p, plan, s, S_PRICE, root, sr)
                    sz = _get(buf, p, plan, s, S_SIZE, root, sr)
                    oid = _get(buf, p, plan, s, S_ORDER_ID, root, sr)
                    sec = _get(buf, p, plan, s, S_SECURITY_ID, root, sr)
                    rpt = _get(buf, p, plan, s, S_RPT_SEQ, root, sr)
                    nord = _get(buf, p, plan, s, S_NUM_ORDERS, root, sr)
                    act = _get(buf, p, plan, s, S_ACTION, root, sr)
                    et = _get(buf, p, plan, s, S_ENTRY_TYPE, root, sr)
                    lvl = _get(buf, p, plan, s, S_PRICE_LEVEL, root, sr)
                    side = _get(buf, p, plan, s, S_SIDE, root, sr)
                aux = _get(buf, p, plan, s, S_AUX, root, sr)
                if kind == EV_ORDER_REF:
                    # ReferenceID: 1-based index of the MD entry this order sits on
                    if lvl < 1 or lvl > num_a or kind_a == EV_NONE:
                        drops[DROP_BAD_VALUE] += 1
                        continue
                    ref = events[k_a + lvl - 1]
                    sec = ref.security_id
                    px = ref.price
                    et = ref.entry_type
                    rpt = ref.rpt_seq
                _write_row(events, k, kind, tt, px, sz, oid, aux, sec, rpt, nord, act, et, lvl,
                           side, mei, flags, pexp, msg_seq, template_id, mi)
                k += 1
        if k == k0:
            # no entries: still one row, so the end-of-event bit is never lost
            _write_root_row(events, k, _at(plan, row + R_EMPTY_KIND), buf, root, plan, sr, mask,
                            r_tt, mei, _root_value(buf, root, plan, sr, S_AUX, mask),
                            _root_value(buf, root, plan, sr, S_SIZE, mask),
                            _root_value(buf, root, plan, sr, S_NUM_ORDERS, mask), flags, pexp,
                            msg_seq, template_id, mi)
            k += 1
        last = events[k - 1]
        f = last.flags | FLAG_LAST_IN_MSG
        if mei & MEI_END_OF_EVENT:
            f |= FLAG_END_OF_EVENT
        last.flags = np.uint8(f)
    h.n_messages = np.uint32(msg_index)
    h.n_events = np.uint32(k - start)
    return k - start


@_kernel
def _decode_stream(buf: Any, offsets: Any, plan: Any, events: Any, drops: Any,
                   headers: Any) -> int:
    """Decode packets ``buf[offsets[i]:offsets[i+1]]`` back to back; return the rows written.

    ``headers[i]`` gets packet i's header. Stops at the first packet that fills
    ``events`` (its ``n_events`` then counts what was written of it).
    """
    k = 0
    for i in range(offsets.shape[0] - 1):
        a = offsets[i]
        b = offsets[i + 1]
        full = drops[DROP_EVENTS_FULL]
        k += _decode_packet(buf[a:b], b - a, plan, events, k, drops, headers[i:i + 1])
        if drops[DROP_EVENTS_FULL] != full:
            break
    return k


# --------------------------------------------------------------------------
# Facade
# --------------------------------------------------------------------------
class Mdp3Decoder:
    """Preallocated MDP 3.0 packet decoder.

    ``decode(buf, n)`` returns a view of ``events`` (valid until the next call);
    ``drops`` counts malformed input by DROP_* reason; ``header`` is the
    PACKET_HEADER of the last packet. ``plan`` is the array to pass to
    ``_decode_packet`` when fusing it into another kernel.
    """

    def __init__(self, capacity: int = 4096, plan: np.ndarray | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.plan = default_plan() if plan is None else np.ascontiguousarray(plan, np.int64)
        if self.plan.size < PLAN_HEADER or self.plan[P_FORMAT] != PLAN_FORMAT:
            raise ValueError("not a decoder plan (see build_plan)")
        self.capacity = int(capacity)
        self.events = np.zeros(self.capacity, dtype=MD_EVENT)
        self.drops = np.zeros(N_DROP_REASONS, dtype=np.int64)
        self._header = np.zeros(1, dtype=PACKET_HEADER)
        self._scratch = np.zeros(65536, dtype=np.uint8)

    @property
    def header(self) -> np.void:
        """PACKET_HEADER row of the last decoded packet."""
        return self._header[0]

    def _as_buffer(self, data: Any) -> np.ndarray:
        if (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 1
                and data.flags.c_contiguous and data.flags.writeable):
            return data
        raw = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
        if raw.size > self._scratch.size:
            self._scratch = np.zeros(raw.size, dtype=np.uint8)
        self._scratch[:raw.size] = raw
        return self._scratch[:raw.size]

    def decode(self, buf: Any, n: int | None = None) -> np.ndarray:
        """Decode one packet (``buf[:n]``; bytes-like or uint8 array) -> view of the rows."""
        arr = self._as_buffer(buf)
        size = arr.size if n is None else int(n)
        if not 0 <= size <= arr.size:
            raise ValueError(f"n={size} outside the buffer (size {arr.size})")
        k = _decode_packet(arr, size, self.plan, self.events, 0, self.drops, self._header)
        return self.events[:k]

    def decode_many(self, packets: Iterable[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Decode a stream of packets in one kernel call -> (events, PACKET_HEADER per packet).

        Rows of packet i are ``events[cumsum(headers.n_events)[i-1]:...]``; an
        EV_DEFINITION row's ``aux`` is an offset inside its own packet. The
        output grows as needed (a new array, not the preallocated one).
        """
        chunks = [np.frombuffer(memoryview(p).cast("B"), dtype=np.uint8) for p in packets]
        offsets = np.zeros(len(chunks) + 1, dtype=np.int64)
        if chunks:
            np.cumsum([c.size for c in chunks], out=offsets[1:])
        buf = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint8)
        return self.decode_stream(buf, offsets)

    def decode_stream(self, buf: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decode the packets ``buf[offsets[i]:offsets[i+1]]`` in one kernel call.

        The output is sized from the stream (about one row per 16 bytes); should a
        packet still not fit, the call is redone with a larger array, so
        ``drops`` never counts events_full here.
        """
        buf = self._as_stream(buf)
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        if offsets.ndim != 1 or offsets.size < 1:
            raise ValueError("offsets must be a 1-D array of at least one offset")
        if offsets[0] < 0 or offsets[-1] > buf.size or np.any(np.diff(offsets) < 0):
            raise ValueError("offsets must be non-decreasing and inside the buffer")
        n_packets = offsets.size - 1
        headers = np.zeros(n_packets, dtype=PACKET_HEADER)
        capacity = max(self.capacity, int(buf.size) // 16 + 16)
        while True:
            events = np.zeros(capacity, dtype=MD_EVENT)
            drops = self.drops.copy()
            k = _decode_stream(buf, offsets, self.plan, events, drops, headers)
            if drops[DROP_EVENTS_FULL] == self.drops[DROP_EVENTS_FULL]:
                self.drops[:] = drops
                if n_packets:
                    self._header[0] = headers[-1]
                return events[:k], headers
            capacity *= 4

    @staticmethod
    def _as_stream(buf: Any) -> np.ndarray:
        if isinstance(buf, np.ndarray) and buf.dtype == np.uint8 and buf.flags.writeable:
            return np.ascontiguousarray(buf).reshape(-1)
        return np.frombuffer(memoryview(buf).cast("B"), dtype=np.uint8).copy()
