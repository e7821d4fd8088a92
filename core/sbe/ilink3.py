"""iLink 3 (CME order entry, SBE schema id 8) codecs: hot-path kernels + fast flat frames.

Every offset here is read from CME's schema (``schemas/ilink3_ilinkbinary_v9.xml``)
through ``core.sbe.schema`` when this module is imported; nothing is hand-typed.
numba freezes the module-level integers below into the kernels as constants.

Frame = SOFH (u16 length counting itself + u16 0xCAFE, both little-endian as CME
sends them) + SBE header (blockLength, templateId, schemaId, version) + root block
(+ group headers / var data). ``FRAME_HEADER`` = 12 bytes before the root block.

Three tools:

* ``FlatCodec`` (Python, ~2-5 us): any message whose groups are empty, encoded from
  / decoded to a dict of schema field names by one precompiled ``struct``. Used
  for the session layer, the exchange side and tests. Char fields are ``str``
  (trailing NULs stripped), nulls ``None``, a price composite is its mantissa, a
  multi-member composite is flattened as ``Name.member``.
* ``_encode_actions`` (njit; facade ``encode_actions``): ORDER_ACTION rows into
  NewOrderSingle514, OrderCancelReplaceRequest515, OrderCancelRequest516 and
  OrderMassActionRequest529 frames, each copied from a preset template
  (``new_order_memory``) and patched in place in the send buffer.
* ``_decode_frames`` (njit; facade ``decode_frames``): frames the exchange's byte
  stream and decodes every in-sequence execution report (522 new, 523 reject,
  524 elimination, 525 trade, 531 modify, 532 status, 534 cancel, 535/536 cancel
  and cancel/replace reject, 521 business reject) into an ``EXEC_REPORT`` row;
  anything else (session layer, gap, retransmission) is left to ``core.fixp``.

A kernel never raises on bad input: short blocks, unknown templates, foreign
ClOrdIDs are counted (``counters(gw)``) and skipped; a broken SOFH stops the
stream (``STOP_BAD``) for the session layer to terminate.

ClOrdID (20 chars) is the OMS ``cl_ord_id`` (u64) as 20 zero-padded digits, the
same on every request of an order, so the decoder gets the OMS row back from
every report without a lookup. OrderRequestID (u64, echoed on the reports) is
``trigger_seq << 32 | request counter``: the MsgSeqNum of the market-data packet
that triggered the request, for the venue's wire-to-wire latency measurement
(``trigger_seq_of``).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from core.sbe.schema import FieldLayout, MessageLayout, Schema, bundled_schema

__all__ = [
    "FRAME_HEADER",
    "ILINK3_SCHEMA_ID",
    "ILINK3_VERSION",
    "SCHEMA",
    "SOFH_ENCODING",
    "FlatCodec",
    "cl_ord_id_text",
    "decode_frames",
    "decode_report",
    "encode_actions",
    "flat_codec",
    "frame_info",
    "new_gateway_state",
    "new_order_memory",
    "order_request_id",
    "parse_cl_ord_id",
    "trigger_seq_of",
]

ILINK3_SCHEMA_ID = 8
ILINK3_VERSION = 9
SCHEMA: Schema = bundled_schema(ILINK3_SCHEMA_ID, ILINK3_VERSION)

SOFH_SIZE = 4
SOFH_ENCODING = 0xCAFE
SBE_HEADER = SCHEMA.header.size  # 8
FRAME_HEADER = SOFH_SIZE + SBE_HEADER  # root block starts here

_HDR_BLOCK_LENGTH = SOFH_SIZE + SCHEMA.header.member("blockLength").offset
_HDR_TEMPLATE_ID = SOFH_SIZE + SCHEMA.header.member("templateId").offset
_HDR_SCHEMA_ID = SOFH_SIZE + SCHEMA.header.member("schemaId").offset
_HDR_VERSION = SOFH_SIZE + SCHEMA.header.member("version").offset

_SOFH = struct.Struct("<HH")
_HEADER = struct.Struct("<HHHH")

CL_ORD_ID_LEN = SCHEMA.message(514).field("ClOrdID").length  # 20


# --------------------------------------------------------------------------
# Layout helpers (import time only)
# --------------------------------------------------------------------------
def _field(template_id: int, name: str) -> FieldLayout:
    return SCHEMA.message(template_id).field(name)


def _off(template_id: int, name: str) -> int:
    """Offset of a field's value from the start of the frame (SOFH included)."""
    f = _field(template_id, name)
    if f.kind == "composite":
        inner = f.mantissa if f.mantissa is not None else f.scalar_member
        if inner is None:
            raise ValueError(f"{template_id}.{name}: composite without a single value member")
        return FRAME_HEADER + f.offset + inner.offset
    if f.is_constant:
        raise ValueError(f"{template_id}.{name} is a constant (no bytes on the wire)")
    return FRAME_HEADER + f.offset


def _end(template_id: int, name: str) -> int:
    """Root-block bytes needed to hold the field (to check a wire blockLength)."""
    f = _field(template_id, name)
    return f.offset + f.size


def _block(template_id: int) -> int:
    return SCHEMA.message(template_id).block_length


def _enum(template_id: int, field_name: str, value_name: str) -> int:
    v = _field(template_id, field_name).enum_values[value_name]
    return ord(v) if isinstance(v, str) else int(v)


def _const(template_id: int, field_name: str) -> int:
    v = _field(template_id, field_name).constant
    if v is None:
        raise ValueError(f"{template_id}.{field_name} is not a constant")
    return ord(v) if isinstance(v, str) else int(v)


# --------------------------------------------------------------------------
# ClOrdID and OrderRequestID conventions
# --------------------------------------------------------------------------
def cl_ord_id_text(cl_ord_id: int) -> str:
    """The ClOrdID our encoder writes: the OMS cl_ord_id as 20 zero-padded digits."""
    if not 0 <= cl_ord_id < 2**64:
        raise ValueError("cl_ord_id is a u64")
    return f"{cl_ord_id:020d}"


def parse_cl_ord_id(text: str | bytes) -> int:
    """cl_ord_id from a ClOrdID we wrote; -1 if it is not 20 digits."""
    s = text.decode("latin-1") if isinstance(text, bytes | bytearray) else str(text)
    s = s.rstrip("\x00")
    if len(s) != CL_ORD_ID_LEN or not s.isdigit() or int(s) >= 2**64:
        return -1
    return int(s)


def order_request_id(trigger_seq: int, request: int) -> int:
    """OrderRequestID = MsgSeqNum of the triggering market data << 32 | request counter."""
    return ((trigger_seq & 0xFFFFFFFF) << 32) | (request & 0xFFFFFFFF)


def trigger_seq_of(order_request_id: int) -> int:
    """The market-data MsgSeqNum that triggered a request (the venue's latency probe)."""
    return (int(order_request_id) >> 32) & 0xFFFFFFFF


# --------------------------------------------------------------------------
# FlatCodec: one struct per template
# --------------------------------------------------------------------------
_FMT = {
    "char": "s", "int8": "b", "uint8": "B", "int16": "h", "uint16": "H", "int32": "i",
    "uint32": "I", "int64": "q", "uint64": "Q", "float": "f", "double": "d",
}


class _Slot:
    __slots__ = ("char", "enum_char", "fmt", "name", "null", "offset", "since", "size")

    def __init__(self, name: str, offset: int, f: FieldLayout, since: int) -> None:
        self.name = name
        self.offset = offset
        self.size = f.size
        self.char = f.primitive == "char"
        self.enum_char = self.char and f.kind == "enum"
        self.fmt = f"{f.length}s" if self.char else _FMT[f.primitive]
        self.null = f.null_value if f.presence == "optional" else None
        self.since = since


class FlatCodec:
    """Encode/decode one iLink 3 template whose groups are empty, as a whole frame.

    ``encode(values)`` -> frame bytes (SOFH included); missing fields are null
    (optional) or zero (required); groups are written empty, var data with
    length 0. ``decode(buf, pos)`` -> dict of the root block of the frame at
    ``pos`` (fields beyond the wire blockLength or newer than the header
    version are None; constants are given their value).
    """

    def __init__(self, template_id: int, schema: Schema = SCHEMA) -> None:
        msg: MessageLayout = schema.message(template_id)
        self.template_id = template_id
        self.name = msg.name
        self.block_length = msg.block_length
        self.schema = schema
        slots: list[_Slot] = []
        self.constants: dict[str, Any] = {}
        for f in msg.fields:
            if f.is_constant:
                self.constants[f.name] = f.constant
            elif f.kind == "composite":
                for m in f.members:
                    if m.is_constant:
                        continue
                    nm = f.name if f.scalar_member is m else f"{f.name}.{m.name}"
                    slots.append(_Slot(nm, f.offset + m.offset, m, f.since_version))
            else:
                slots.append(_Slot(f.name, f.offset, f, f.since_version))
        slots.sort(key=lambda s: s.offset)
        fmt = ["<"]
        pos = 0
        for s in slots:
            if s.offset < pos:
                raise ValueError(f"{msg.name}: overlapping field {s.name}")
            if s.offset > pos:
                fmt.append(f"{s.offset - pos}x")
            fmt.append(s.fmt)
            pos = s.offset + s.size
        if pos < msg.block_length:
            fmt.append(f"{msg.block_length - pos}x")
        self._slots = tuple(slots)
        self._index = {s.name: i for i, s in enumerate(slots)}
        # the root bytes every version of the message has (fields since version 0)
        self.min_block = max((s.offset + s.size for s in slots if s.since == 0), default=0)
        self._struct = struct.Struct("".join(fmt))
        if self._struct.size != msg.block_length:
            raise ValueError(f"{msg.name}: struct size {self._struct.size} != block length")
        # trailer: empty groups then empty var data
        tail = bytearray()
        for g in msg.groups:
            dim = bytearray(g.dimension.size)
            bl = g.dimension.member("blockLength")
            struct.pack_into("<" + _FMT[bl.primitive], dim, bl.offset, g.block_length)
            tail += dim
        for d in msg.var_data:
            tail += bytes(d.header_size)
        self._tail = bytes(tail)
        self.frame_length = FRAME_HEADER + msg.block_length + len(self._tail)
        self._defaults = [_default(s) for s in slots]
        self._prefix = _SOFH.pack(self.frame_length, SOFH_ENCODING) + _HEADER.pack(
            msg.block_length, template_id, schema.id, schema.version
        )

    def __repr__(self) -> str:
        return f"FlatCodec({self.name}, {self.frame_length} bytes)"

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self._slots)

    def offset(self, name: str) -> int:
        """Offset of the field from the start of the frame."""
        return FRAME_HEADER + self._slots[self._index[name]].offset

    @staticmethod
    def _value(s: _Slot, v: Any) -> Any:
        if s.char:
            if isinstance(v, str):
                return v.encode("latin-1")
            if isinstance(v, int):
                return bytes([v])
            return bytes(v)
        return v

    def encode(self, values: dict[str, Any]) -> bytes:
        vals = list(self._defaults)
        idx = self._index
        for k, v in values.items():
            i = idx.get(k)
            if i is None:
                if k in self.constants or k in ("Credentials",):
                    continue
                raise KeyError(f"{self.name} has no field {k!r}")
            if v is not None:
                vals[i] = self._value(self._slots[i], v)
        try:
            body = self._struct.pack(*vals)
        except struct.error as exc:
            raise ValueError(f"{self.name}: {exc}") from exc
        return self._prefix + body + self._tail

    def encode_into(self, buf: bytearray | memoryview, pos: int, values: dict[str, Any]) -> int:
        frame = self.encode(values)
        buf[pos : pos + len(frame)] = frame
        return pos + len(frame)

    def decode(self, buf: bytes | bytearray | memoryview, pos: int = 0) -> dict[str, Any]:
        """Root block of the frame at ``pos`` (SOFH first) as a dict.

        Raises ValueError (only) if the bytes cannot hold the frame they announce.
        """
        if len(buf) - pos < FRAME_HEADER:
            raise ValueError(f"{self.name}: {len(buf) - pos} bytes, a frame needs 12")
        bl, _tid, _sid, version = _HEADER.unpack_from(buf, pos + SOFH_SIZE)
        root = pos + FRAME_HEADER
        if root + min(bl, self.block_length) > len(buf):
            raise ValueError(f"{self.name}: blockLength {bl} overruns the frame")
        if bl < self.min_block:
            raise ValueError(f"{self.name}: blockLength {bl} < {self.min_block}")
        if bl >= self.block_length and version >= self.schema.version:
            raw = self._struct.unpack_from(buf, root)
        else:  # an older, shorter layout: read field by field within the wire block
            raw = tuple(
                struct.unpack_from("<" + s.fmt, buf, root + s.offset)[0]
                if s.offset + s.size <= bl and s.since <= version
                else _MISSING
                for s in self._slots
            )
        out: dict[str, Any] = {}
        for s, v in zip(self._slots, raw, strict=True):
            if v is _MISSING:
                out[s.name] = None
            elif s.char:
                if s.null is not None and v == bytes([int(s.null)]) * len(v):
                    out[s.name] = None
                else:
                    out[s.name] = v.rstrip(b"\x00").decode("latin-1")
            else:
                out[s.name] = None if s.null is not None and v == s.null else v
        out.update(self.constants)
        return out


_MISSING = object()


def _default(s: _Slot) -> Any:
    """Value of a field left out of ``encode``: its null, else zero / empty."""
    if s.null is None:
        return b"" if s.char else 0
    return bytes([int(s.null)]) if s.char else s.null
_CODECS: dict[int, FlatCodec] = {}


def flat_codec(template_id: int) -> FlatCodec:
    """The (cached) ``FlatCodec`` of a v9 template."""
    c = _CODECS.get(template_id)
    if c is None:
        c = FlatCodec(template_id)
        _CODECS[template_id] = c
    return c


def frame_info(buf: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int, int, int, int]:
    """(frame length, blockLength, templateId, schemaId, version) of the frame at ``pos``."""
    length, enc = _SOFH.unpack_from(buf, pos)
    if enc != SOFH_ENCODING:
        raise ValueError(f"SOFH encoding type 0x{enc:04X}, expected 0xCAFE")
    bl, tid, sid, ver = _HEADER.unpack_from(buf, pos + SOFH_SIZE)
    return length, bl, tid, sid, ver


# ==========================================================================
# Hot path: order encoder and execution-report decoder (numba)
# ==========================================================================
# Everything the kernels keep between calls lives in one int64 array, the
# gateway state ``gw`` (one array argument per call instead of four):
#
#   gw[0:8]     FIXP sequence numbers, shared with core.fixp (SEQ_* indices)
#   gw[8:12]    frame lengths of the four order-request templates
#   gw[16:24]   I/O results of the adapter's fused recv/send kernels (GW_IO_*)
#   gw[24:56]   counters (C_*)
#   gw[LIVE:]   MAX_ORDERS cl_ord_ids of the orders we believe live, by OMS row
#               (cl_ord_id & (MAX_ORDERS-1)): reconciliation finds the orders
#               the exchange no longer has
#   gw[RING:]   SENT_RING pairs (cl_ord_id, action | frame length << 8) by
#               SeqNum & (SENT_RING-1): what a BusinessReject / NotApplied refers to
#
# and the encoder's bytes live in one uint8 array ``mem`` (same reason):
#
#   mem[MEM_TPL:]    the four preset order-request frames, TPL_MAX bytes each
#   mem[MEM_STORE:]  copies of the last SENT_RING frames sent, by SeqNum (resend)
#   mem[MEM_OUT:]    the send buffer the encoder fills (OUT_CAP bytes)
#

import numba as nb  # noqa: E402
from numba import njit  # noqa: E402

from core.fixp import N_SEQ, SEQ_NEXT_RECV, SEQ_NEXT_SEND, SEQ_RECOVERING, SEQ_UUID  # noqa: E402
from core.types import (  # noqa: E402
    ACT_CANCEL,
    ACT_MASS_CANCEL,
    ACT_MODIFY,
    ACT_NEW,
    ER_CANCEL,
    ER_CANCEL_REJECT,
    ER_ELIMINATION,
    ER_FILL,
    ER_MODIFY,
    ER_MODIFY_REJECT,
    ER_NEW,
    ER_REJECT,
    ER_STATUS,
    EXEC_REPORT,
    MAX_ORDERS,
    ORDER_ACTION,
    OS_CANCELLED,
    OS_EXPIRED,
    OS_FILLED,
    OS_PARTIALLY_FILLED,
    OS_REJECTED,
    OS_WORKING,
)

SEQ_REQUEST = 4  # gw: low 32 bits of OrderRequestID (request counter)
SEQ_SLOW = 5  # gw: 1 = every business frame goes through Python (reconciliation)

# counters
C_FRAMES = 0  # business frames taken by the kernel
C_REPORTS = 1  # EXEC_REPORT rows written
C_UNKNOWN_TEMPLATE = 2  # business template without an OMS meaning (skipped, sequenced)
C_SHORT_BLOCK = 3  # blockLength too short for the fields we read (skipped, sequenced)
C_FOREIGN_CL_ORD_ID = 4  # ClOrdID that is not 20 digits (report written with cl_ord_id 0)
C_BUSINESS_REJECT = 5
C_MASS_ACTION_REPORT = 6
C_MASS_ACTION_REJECTED = 7
C_PENDING_REPORTS = 8  # ExecutionReportPendingCancel/Replace (informational)
C_ENCODED = 9  # order requests encoded
C_BAD_ACTION = 10  # action row with an unknown action (skipped)
C_OUT_FULL = 11  # send buffer full: actions left unsent
C_STATUS_UNDEFINED = 12  # ExecutionReportStatus with OrdStatus U (no such order)
N_COUNTERS = 32
COUNTER_NAMES = (
    "frames", "reports", "unknown_template", "short_block", "foreign_cl_ord_id",
    "business_reject", "mass_action_report", "mass_action_rejected", "pending_reports",
    "encoded", "bad_action", "out_full", "status_undefined",
)

GW_TPL_LEN = N_SEQ
GW_IO = 16
GW_IO_GOT = GW_IO + 0  # bytes received (0: peer closed, -1: see GW_IO_ERRNO)
GW_IO_POS = GW_IO + 1  # where decoding stopped
GW_IO_END = GW_IO + 2  # end of the valid bytes
GW_IO_STOP = GW_IO + 3  # STOP_* code
GW_IO_SENT = GW_IO + 4  # bytes the socket took (-1: see GW_IO_ERRNO)
GW_IO_ERRNO = GW_IO + 5
GW_COUNTERS = 24
GW_LIVE = GW_COUNTERS + N_COUNTERS
SENT_RING = 4096
GW_RING = GW_LIVE + MAX_ORDERS
GW_SIZE = GW_RING + 2 * SENT_RING
SLOT_MASK = MAX_ORDERS - 1

# stop codes of _decode_frames
STOP_DONE = 0  # everything complete was consumed (a partial frame may remain)
STOP_SLOW = 1  # the frame at pos needs the Python session layer
STOP_FULL = 2  # the report array is full
STOP_BAD = 3  # invalid SOFH: the stream is broken


def new_gateway_state() -> np.ndarray:
    """The int64 state array of one gateway (see the layout above)."""
    gw = np.zeros(GW_SIZE, dtype=np.int64)
    gw[SEQ_NEXT_RECV] = 1
    gw[SEQ_NEXT_SEND] = 1
    return gw


# -- template ids -----------------------------------------------------------
T_NEW_ORDER = 514
T_CANCEL_REPLACE = 515
T_CANCEL = 516
T_MASS_ACTION = 529
T_PARTY_DETAILS_ACK = 519
T_BUSINESS_REJECT = 521
T_EXEC_NEW = 522
T_EXEC_REJECT = 523
T_EXEC_ELIMINATION = 524
T_EXEC_TRADE = 525
T_EXEC_MODIFY = 531
T_EXEC_STATUS = 532
T_EXEC_CANCEL = 534
T_CANCEL_REJECT = 535
T_REPLACE_REJECT = 536
T_MASS_ACTION_REPORT = 562
T_PENDING_CANCEL = 564
T_PENDING_REPLACE = 565
FIRST_SESSION_TEMPLATE = 500
LAST_SESSION_TEMPLATE = 513

# -- per-template SeqNum / PossRetransFlag offsets (0 = the template has none) --
_MAX_TID = max(SCHEMA.messages) + 1


def _offset_table(name: str) -> np.ndarray:
    t = np.zeros(_MAX_TID, dtype=np.int64)
    for tid, m in SCHEMA.messages.items():
        if any(f.name == name for f in m.fields):
            t[tid] = _off(tid, name)
    return t


SEQNUM_OFFSET = _offset_table("SeqNum")
POSS_RETRANS_OFFSET = _offset_table("PossRetransFlag")

# -- order requests: frame lengths and field offsets -------------------------
N_ORDER_TEMPLATES = 4
TPL_NEW, TPL_REPLACE, TPL_CANCEL, TPL_MASS = 0, 1, 2, 3
ORDER_TEMPLATE_IDS = (T_NEW_ORDER, T_CANCEL_REPLACE, T_CANCEL, T_MASS_ACTION)
TPL_MAX = 256

NOS_LEN = FRAME_HEADER + _block(T_NEW_ORDER)
NOS_PRICE = _off(T_NEW_ORDER, "Price")
NOS_QTY = _off(T_NEW_ORDER, "OrderQty")
NOS_SECURITY_ID = _off(T_NEW_ORDER, "SecurityID")
NOS_SIDE = _off(T_NEW_ORDER, "Side")
NOS_SEQ = _off(T_NEW_ORDER, "SeqNum")
NOS_CL_ORD_ID = _off(T_NEW_ORDER, "ClOrdID")
NOS_REQUEST_ID = _off(T_NEW_ORDER, "OrderRequestID")
NOS_SENDING_TIME = _off(T_NEW_ORDER, "SendingTimeEpoch")
NOS_TIF = _off(T_NEW_ORDER, "TimeInForce")

OCR_LEN = FRAME_HEADER + _block(T_CANCEL_REPLACE)
OCR_PRICE = _off(T_CANCEL_REPLACE, "Price")
OCR_QTY = _off(T_CANCEL_REPLACE, "OrderQty")
OCR_SECURITY_ID = _off(T_CANCEL_REPLACE, "SecurityID")
OCR_SIDE = _off(T_CANCEL_REPLACE, "Side")
OCR_SEQ = _off(T_CANCEL_REPLACE, "SeqNum")
OCR_CL_ORD_ID = _off(T_CANCEL_REPLACE, "ClOrdID")
OCR_ORDER_ID = _off(T_CANCEL_REPLACE, "OrderID")
OCR_REQUEST_ID = _off(T_CANCEL_REPLACE, "OrderRequestID")
OCR_SENDING_TIME = _off(T_CANCEL_REPLACE, "SendingTimeEpoch")
OCR_TIF = _off(T_CANCEL_REPLACE, "TimeInForce")

OCX_LEN = FRAME_HEADER + _block(T_CANCEL)
OCX_ORDER_ID = _off(T_CANCEL, "OrderID")
OCX_SEQ = _off(T_CANCEL, "SeqNum")
OCX_CL_ORD_ID = _off(T_CANCEL, "ClOrdID")
OCX_REQUEST_ID = _off(T_CANCEL, "OrderRequestID")
OCX_SENDING_TIME = _off(T_CANCEL, "SendingTimeEpoch")
OCX_SECURITY_ID = _off(T_CANCEL, "SecurityID")
OCX_SIDE = _off(T_CANCEL, "Side")

OMA_LEN = FRAME_HEADER + _block(T_MASS_ACTION)
OMA_REQUEST_ID = _off(T_MASS_ACTION, "OrderRequestID")
OMA_SEQ = _off(T_MASS_ACTION, "SeqNum")
OMA_SENDING_TIME = _off(T_MASS_ACTION, "SendingTimeEpoch")
OMA_SECURITY_ID = _off(T_MASS_ACTION, "SecurityID")
OMA_SCOPE = _off(T_MASS_ACTION, "MassActionScope")
SCOPE_INSTRUMENT = _enum(T_MASS_ACTION, "MassActionScope", "Instrument")
SCOPE_ALL = _enum(T_MASS_ACTION, "MassActionScope", "All")
INT32_NULL = int(_field(T_MASS_ACTION, "SecurityID").null_value or 0)
UINT64_NULL_BITS = np.int64(-1)  # uInt64NULL (2**64-1) as int64 bits

for _L in (NOS_LEN, OCR_LEN, OCX_LEN, OMA_LEN):
    assert _L <= TPL_MAX

OUT_CAP = 1 << 16  # > MAX_ACTIONS frames of the longest request
MEM_TPL = 0
MEM_STORE = N_ORDER_TEMPLATES * TPL_MAX
MEM_OUT = MEM_STORE + SENT_RING * TPL_MAX
MEM_SIZE = MEM_OUT + OUT_CAP
assert _field(T_NEW_ORDER, "ClOrdID").length == CL_ORD_ID_LEN == 20


def build_order_templates(
    *,
    sender_id: str,
    location: str,
    party_details_list_req_id: int,
    manual_order_indicator: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Preset frames of the four order requests, (templates u8[4, 256], lengths i64[4]).

    Static fields (operator, location, party details, OrdType limit, OFM override
    on, ...) are set once here; the kernel patches the per-order fields. OFMOverride
    is Enabled because our OMS's modify quantity is the new TOTAL order quantity
    (CME's in-flight mitigation: leaves = qty - cum); with it Disabled CME would read
    it as the new open quantity and a modify after a partial fill would overfill.
    """
    static: dict[str, Any] = {
        "SenderID": sender_id,
        "Location": location,
        "PartyDetailsListReqID": party_details_list_req_id,
        "ManualOrderIndicator": manual_order_indicator,
    }
    per: dict[int, dict[str, Any]] = {
        T_NEW_ORDER: {"OrdType": "2", "ExecInst": 0, "TimeInForce": 0},
        T_CANCEL_REPLACE: {"OrdType": "2", "ExecInst": 0, "TimeInForce": 0,
                           "OFMOverride": 1},  # Enabled: qty is the total (see above)
        T_CANCEL: {},
        T_MASS_ACTION: {"MassActionScope": SCOPE_ALL},
    }
    tpl = np.zeros((N_ORDER_TEMPLATES, TPL_MAX), dtype=np.uint8)
    lens = np.zeros(N_ORDER_TEMPLATES, dtype=np.int64)
    for i, tid in enumerate(ORDER_TEMPLATE_IDS):
        codec_ = flat_codec(tid)
        fields = dict(static)
        fields.update(per[tid])
        frame = codec_.encode({k: v for k, v in fields.items() if k in codec_.field_names})
        tpl[i, : len(frame)] = np.frombuffer(frame, dtype=np.uint8)
        lens[i] = len(frame)
    return tpl, lens


def new_order_memory(
    gw: np.ndarray,
    *,
    sender_id: str,
    location: str,
    party_details_list_req_id: int,
    manual_order_indicator: int = 0,
) -> np.ndarray:
    """The encoder's uint8 memory with the templates installed (lengths go into ``gw``)."""
    if gw.dtype != np.int64 or gw.shape != (GW_SIZE,):
        raise TypeError("gw must come from new_gateway_state()")
    tpl, lens = build_order_templates(
        sender_id=sender_id, location=location,
        party_details_list_req_id=party_details_list_req_id,
        manual_order_indicator=manual_order_indicator,
    )
    mem = np.zeros(MEM_SIZE, dtype=np.uint8)
    mem[MEM_TPL:MEM_STORE] = tpl.reshape(-1)
    gw[GW_TPL_LEN : GW_TPL_LEN + N_ORDER_TEMPLATES] = lens
    return mem


# -- byte helpers (little-endian) ---------------------------------------------
@njit(cache=True)
def _put_u8(b, o, v):
    b[o] = np.uint8(v & 0xFF)


@njit(cache=True)
def _put_u16(b, o, v):
    b[o] = np.uint8(v & 0xFF)
    b[o + 1] = np.uint8((v >> 8) & 0xFF)


@njit(cache=True)
def _put_u32(b, o, v):
    x = np.int64(v)
    b[o] = np.uint8(x & 0xFF)
    b[o + 1] = np.uint8((x >> 8) & 0xFF)
    b[o + 2] = np.uint8((x >> 16) & 0xFF)
    b[o + 3] = np.uint8((x >> 24) & 0xFF)


@njit(cache=True)
def _put_i64(b, o, v):
    x = np.int64(v)
    for i in range(8):
        b[o + i] = np.uint8((x >> (8 * i)) & 0xFF)


@njit(cache=True)
def _get_u16(b, o):
    return np.int64(b[o]) | (np.int64(b[o + 1]) << 8)


@njit(cache=True)
def _get_u32(b, o):
    return (np.int64(b[o]) | (np.int64(b[o + 1]) << 8) | (np.int64(b[o + 2]) << 16)
            | (np.int64(b[o + 3]) << 24))


@njit(cache=True)
def _get_i32(b, o):
    v = _get_u32(b, o)
    return v - (np.int64(1) << 32) if v >= (np.int64(1) << 31) else v


@njit(cache=True)
def _get_i64(b, o):
    v = np.int64(0)
    for i in range(8):
        v |= np.int64(b[o + i]) << (8 * i)
    return v


@njit(cache=True)
def _put_decimal20(b, o, v):
    """u64 as 20 zero-padded ASCII digits (the ClOrdID)."""
    x = np.uint64(v)
    ten = np.uint64(10)
    for i in range(19, -1, -1):
        b[o + i] = np.uint8(np.uint64(48) + x % ten)
        x = x // ten


@njit(cache=True)
def _get_decimal20(b, o):
    """ClOrdID digits -> u64; returns (value, ok)."""
    x = np.uint64(0)
    ten = np.uint64(10)
    limit = np.uint64(1844674407370955161)  # (2**64 - 1) // 10
    for i in range(20):
        c = b[o + i]
        if c < 48 or c > 57:
            return np.uint64(0), False
        d = np.uint64(c - np.uint8(48))
        if x > limit or (x == limit and d > np.uint64(5)):
            return np.uint64(0), False  # above u64: not one of ours
        x = x * ten + d
    return x, True


@njit(cache=True)
def _fnv1a(b, o, n):
    """64-bit FNV-1a of a NUL-padded string field (ExecID -> EXEC_REPORT.exec_id)."""
    h = np.uint64(0xCBF29CE484222325)
    p = np.uint64(0x100000001B3)
    for i in range(n):
        c = b[o + i]
        if c == 0:
            break
        h = (h ^ np.uint64(c)) * p
    return h


# -- encoder ---------------------------------------------------------------------
@njit(cache=True)
def _encode_actions(actions, k, mem, gw, sending_ns):
    """Encode ``actions[:k]`` (ORDER_ACTION) into ``mem[MEM_OUT:]``; returns bytes written.

    Each frame is the preset template copied and patched; SeqNums come from
    ``gw[SEQ_NEXT_SEND]``. A copy goes to the store slot of its SeqNum (for a
    resend after NotApplied). Stops early (counted) if the send buffer is full.
    """
    pos = 0
    cap = OUT_CAP
    for i in range(k):
        a = actions[i]
        act = a.action
        if act == ACT_NEW:
            t = TPL_NEW
        elif act == ACT_MODIFY:
            t = TPL_REPLACE
        elif act == ACT_CANCEL:
            t = TPL_CANCEL
        elif act == ACT_MASS_CANCEL:
            t = TPL_MASS
        else:
            gw[GW_COUNTERS + C_BAD_ACTION] += 1
            continue
        n = gw[GW_TPL_LEN + t]
        if pos + n > cap:
            gw[GW_COUNTERS + C_OUT_FULL] += k - i
            break
        # 1-D views: the copy loops vectorise (no aliasing doubt about tpl_len)
        src = mem[MEM_TPL + t * TPL_MAX : MEM_TPL + t * TPL_MAX + n]
        d = mem[MEM_OUT + pos : MEM_OUT + pos + n]
        for j in range(n):
            d[j] = src[j]
        seq = gw[SEQ_NEXT_SEND]
        gw[SEQ_NEXT_SEND] = seq + 1
        req = (gw[SEQ_REQUEST] + 1) & 0xFFFFFFFF
        gw[SEQ_REQUEST] = req
        request_id = (np.int64(a.trigger_seq) << 32) | req
        cl = a.cl_ord_id
        if t == TPL_NEW:
            _put_i64(d, NOS_PRICE, a.price)
            _put_u32(d, NOS_QTY, a.qty)
            _put_u32(d, NOS_SECURITY_ID, a.security_id)
            _put_u8(d, NOS_SIDE, a.side)
            _put_u32(d, NOS_SEQ, seq)
            _put_decimal20(d, NOS_CL_ORD_ID, cl)
            _put_i64(d, NOS_REQUEST_ID, request_id)
            _put_i64(d, NOS_SENDING_TIME, sending_ns)
            _put_u8(d, NOS_TIF, a.tif)
            gw[GW_LIVE + np.int64(cl & np.uint64(SLOT_MASK))] = np.int64(cl)
        elif t == TPL_REPLACE:
            _put_i64(d, OCR_PRICE, a.price)
            _put_u32(d, OCR_QTY, a.qty)
            _put_u32(d, OCR_SECURITY_ID, a.security_id)
            _put_u8(d, OCR_SIDE, a.side)
            _put_u32(d, OCR_SEQ, seq)
            _put_decimal20(d, OCR_CL_ORD_ID, cl)
            if a.order_id != 0:  # else null: the exchange finds the order by ClOrdID
                _put_i64(d, OCR_ORDER_ID, a.order_id)
            _put_i64(d, OCR_REQUEST_ID, request_id)
            _put_i64(d, OCR_SENDING_TIME, sending_ns)
            _put_u8(d, OCR_TIF, a.tif)
        elif t == TPL_CANCEL:
            if a.order_id != 0:
                _put_i64(d, OCX_ORDER_ID, a.order_id)
            _put_u32(d, OCX_SEQ, seq)
            _put_decimal20(d, OCX_CL_ORD_ID, cl)
            _put_i64(d, OCX_REQUEST_ID, request_id)
            _put_i64(d, OCX_SENDING_TIME, sending_ns)
            _put_u32(d, OCX_SECURITY_ID, a.security_id)
            _put_u8(d, OCX_SIDE, a.side)
        else:
            _put_i64(d, OMA_REQUEST_ID, request_id)
            _put_u32(d, OMA_SEQ, seq)
            _put_i64(d, OMA_SENDING_TIME, sending_ns)
            if a.security_id != 0:
                _put_u32(d, OMA_SECURITY_ID, a.security_id)
                _put_u8(d, OMA_SCOPE, SCOPE_INSTRUMENT)
        ring = seq & (SENT_RING - 1)
        r = GW_RING + 2 * ring
        gw[r] = np.int64(cl)
        gw[r + 1] = act | (n << 8)
        row = mem[MEM_STORE + ring * TPL_MAX : MEM_STORE + ring * TPL_MAX + n]
        for j in range(n):
            row[j] = d[j]
        gw[GW_COUNTERS + C_ENCODED] += 1
        pos += n
    return pos


# -- decoder ---------------------------------------------------------------------
# field offsets of the execution reports (from the frame start); every field the
# decoder reads is registered, so MIN_BLOCK (the smallest wire blockLength that
# holds them all) cannot miss one
_READS: dict[int, list[str]] = {}


def _rd(template_id: int, name: str) -> int:
    _READS.setdefault(template_id, []).append(name)
    return _off(template_id, name)


ER_NEW_CL = _rd(T_EXEC_NEW, "ClOrdID")
ER_NEW_OID = _rd(T_EXEC_NEW, "OrderID")
ER_NEW_PX = _rd(T_EXEC_NEW, "Price")
ER_NEW_QTY = _rd(T_EXEC_NEW, "OrderQty")
ER_NEW_SEC = _rd(T_EXEC_NEW, "SecurityID")
ER_NEW_SIDE = _rd(T_EXEC_NEW, "Side")
ER_NEW_TT = _rd(T_EXEC_NEW, "TransactTime")
ER_NEW_EXEC = _rd(T_EXEC_NEW, "ExecID")

ER_REJ_CL = _rd(T_EXEC_REJECT, "ClOrdID")
ER_REJ_OID = _rd(T_EXEC_REJECT, "OrderID")
ER_REJ_PX = _rd(T_EXEC_REJECT, "Price")
ER_REJ_QTY = _rd(T_EXEC_REJECT, "OrderQty")
ER_REJ_SEC = _rd(T_EXEC_REJECT, "SecurityID")
ER_REJ_SIDE = _rd(T_EXEC_REJECT, "Side")
ER_REJ_TT = _rd(T_EXEC_REJECT, "TransactTime")
ER_REJ_REASON = _rd(T_EXEC_REJECT, "OrdRejReason")
ER_REJ_EXEC = _rd(T_EXEC_REJECT, "ExecID")

ER_ELIM_CL = _rd(T_EXEC_ELIMINATION, "ClOrdID")
ER_ELIM_OID = _rd(T_EXEC_ELIMINATION, "OrderID")
ER_ELIM_PX = _rd(T_EXEC_ELIMINATION, "Price")
ER_ELIM_QTY = _rd(T_EXEC_ELIMINATION, "OrderQty")
ER_ELIM_CUM = _rd(T_EXEC_ELIMINATION, "CumQty")
ER_ELIM_SEC = _rd(T_EXEC_ELIMINATION, "SecurityID")
ER_ELIM_SIDE = _rd(T_EXEC_ELIMINATION, "Side")
ER_ELIM_TT = _rd(T_EXEC_ELIMINATION, "TransactTime")
ER_ELIM_EXEC = _rd(T_EXEC_ELIMINATION, "ExecID")

ER_TRD_CL = _rd(T_EXEC_TRADE, "ClOrdID")
ER_TRD_OID = _rd(T_EXEC_TRADE, "OrderID")
ER_TRD_LASTPX = _rd(T_EXEC_TRADE, "LastPx")
ER_TRD_LASTQTY = _rd(T_EXEC_TRADE, "LastQty")
ER_TRD_CUM = _rd(T_EXEC_TRADE, "CumQty")
ER_TRD_LEAVES = _rd(T_EXEC_TRADE, "LeavesQty")
ER_TRD_SEC = _rd(T_EXEC_TRADE, "SecurityID")
ER_TRD_SIDE = _rd(T_EXEC_TRADE, "Side")
ER_TRD_TT = _rd(T_EXEC_TRADE, "TransactTime")
ER_TRD_AGG = _rd(T_EXEC_TRADE, "AggressorIndicator")
ER_TRD_EXEC = _rd(T_EXEC_TRADE, "ExecID")

ER_MOD_CL = _rd(T_EXEC_MODIFY, "ClOrdID")
ER_MOD_OID = _rd(T_EXEC_MODIFY, "OrderID")
ER_MOD_PX = _rd(T_EXEC_MODIFY, "Price")
ER_MOD_QTY = _rd(T_EXEC_MODIFY, "OrderQty")
ER_MOD_CUM = _rd(T_EXEC_MODIFY, "CumQty")
ER_MOD_LEAVES = _rd(T_EXEC_MODIFY, "LeavesQty")
ER_MOD_SEC = _rd(T_EXEC_MODIFY, "SecurityID")
ER_MOD_SIDE = _rd(T_EXEC_MODIFY, "Side")
ER_MOD_TT = _rd(T_EXEC_MODIFY, "TransactTime")
ER_MOD_EXEC = _rd(T_EXEC_MODIFY, "ExecID")

ER_ST_CL = _rd(T_EXEC_STATUS, "ClOrdID")
ER_ST_OID = _rd(T_EXEC_STATUS, "OrderID")
ER_ST_PX = _rd(T_EXEC_STATUS, "Price")
ER_ST_QTY = _rd(T_EXEC_STATUS, "OrderQty")
ER_ST_CUM = _rd(T_EXEC_STATUS, "CumQty")
ER_ST_LEAVES = _rd(T_EXEC_STATUS, "LeavesQty")
ER_ST_SEC = _rd(T_EXEC_STATUS, "SecurityID")
ER_ST_SIDE = _rd(T_EXEC_STATUS, "Side")
ER_ST_TT = _rd(T_EXEC_STATUS, "TransactTime")
ER_ST_STATUS = _rd(T_EXEC_STATUS, "OrdStatus")
ER_ST_EXEC = _rd(T_EXEC_STATUS, "ExecID")

ER_CXL_CL = _rd(T_EXEC_CANCEL, "ClOrdID")
ER_CXL_OID = _rd(T_EXEC_CANCEL, "OrderID")
ER_CXL_PX = _rd(T_EXEC_CANCEL, "Price")
ER_CXL_QTY = _rd(T_EXEC_CANCEL, "OrderQty")
ER_CXL_CUM = _rd(T_EXEC_CANCEL, "CumQty")
ER_CXL_SEC = _rd(T_EXEC_CANCEL, "SecurityID")
ER_CXL_SIDE = _rd(T_EXEC_CANCEL, "Side")
ER_CXL_TT = _rd(T_EXEC_CANCEL, "TransactTime")
ER_CXL_REASON = _rd(T_EXEC_CANCEL, "ExecRestatementReason")
ER_CXL_EXEC = _rd(T_EXEC_CANCEL, "ExecID")

ER_CR_CL = _rd(T_CANCEL_REJECT, "ClOrdID")
ER_CR_OID = _rd(T_CANCEL_REJECT, "OrderID")
ER_CR_TT = _rd(T_CANCEL_REJECT, "TransactTime")
ER_CR_REASON = _rd(T_CANCEL_REJECT, "CxlRejReason")
ER_CR_EXEC = _rd(T_CANCEL_REJECT, "ExecID")

ER_RR_CL = _rd(T_REPLACE_REJECT, "ClOrdID")
ER_RR_OID = _rd(T_REPLACE_REJECT, "OrderID")
ER_RR_TT = _rd(T_REPLACE_REJECT, "TransactTime")
ER_RR_REASON = _rd(T_REPLACE_REJECT, "CxlRejReason")
ER_RR_EXEC = _rd(T_REPLACE_REJECT, "ExecID")

BR_REF_SEQ = _rd(T_BUSINESS_REJECT, "RefSeqNum")
BR_REASON = _rd(T_BUSINESS_REJECT, "BusinessRejectReason")
BR_TT = _rd(T_BUSINESS_REJECT, "SendingTimeEpoch")

MAR_RESPONSE = _rd(T_MASS_ACTION_REPORT, "MassActionResponse")

EXEC_ID_LEN = _field(T_EXEC_NEW, "ExecID").length
EXEC_RESTATEMENT_NULL = int(_field(T_EXEC_CANCEL, "ExecRestatementReason").null_value or 255)
UINT32_NULL = int(_field(T_BUSINESS_REJECT, "RefSeqNum").null_value or 0)

MIN_BLOCK = np.zeros(_MAX_TID, dtype=np.int64)
for _tid, _names in _READS.items():
    MIN_BLOCK[_tid] = max(_end(_tid, n) for n in _names)

# OrderStatus (tag 39) chars of ExecutionReportStatus -> OMS status
_ORD_STATUS = _field(T_EXEC_STATUS, "OrdStatus").enum_values
OS_CHAR_NEW = ord(str(_ORD_STATUS["New"]))
OS_CHAR_PARTIAL = ord(str(_ORD_STATUS["PartiallyFilled"]))
OS_CHAR_FILLED = ord(str(_ORD_STATUS["Filled"]))
OS_CHAR_CANCELLED = ord(str(_ORD_STATUS["Cancelled"]))
OS_CHAR_REPLACED = ord(str(_ORD_STATUS["Replaced"]))
OS_CHAR_PENDING_CANCEL = ord(str(_ORD_STATUS["PendingCancel"]))
OS_CHAR_REJECTED = ord(str(_ORD_STATUS["Rejected"]))
OS_CHAR_EXPIRED = ord(str(_ORD_STATUS["Expired"]))
OS_CHAR_PENDING_REPLACE = ord(str(_ORD_STATUS["PendingReplace"]))
OS_CHAR_UNDEFINED = ord(str(_ORD_STATUS["Undefined"]))


@njit(cache=True)
def _map_ord_status(c, cum):
    if c == OS_CHAR_FILLED:
        return OS_FILLED
    if c == OS_CHAR_CANCELLED:
        return OS_CANCELLED
    if c == OS_CHAR_REJECTED:
        return OS_REJECTED
    if c == OS_CHAR_EXPIRED:
        return OS_EXPIRED
    if c == OS_CHAR_UNDEFINED:
        return 0
    # New, Replaced, pending states: working (partially filled if anything filled)
    return OS_PARTIALLY_FILLED if cum > 0 else OS_WORKING


@njit(cache=True)
def _cl_ord_id(b, o, gw):
    v, ok = _get_decimal20(b, o)
    if not ok:
        gw[GW_COUNTERS + C_FOREIGN_CL_ORD_ID] += 1
    return v


@njit(cache=True)
def _forget(gw, cl):
    """The order is gone at the exchange: drop it from the live mirror."""
    i = GW_LIVE + np.int64(cl & np.uint64(SLOT_MASK))
    if gw[i] == np.int64(cl):
        gw[i] = 0


@njit(cache=True)
def _decode_report(b, p, tid, bl, reports, n, gw, recv_ns):
    """One business frame at ``p`` -> at most one EXEC_REPORT row at ``reports[n]``.

    Returns the number of rows written (0 or 1). Unknown / informational
    templates and short blocks write nothing and are counted.
    """
    if tid >= MIN_BLOCK.shape[0]:
        gw[GW_COUNTERS + C_UNKNOWN_TEMPLATE] += 1
        return 0
    need = MIN_BLOCK[tid]
    if need == 0:
        if tid in (T_PENDING_CANCEL, T_PENDING_REPLACE):
            gw[GW_COUNTERS + C_PENDING_REPORTS] += 1
        else:
            gw[GW_COUNTERS + C_UNKNOWN_TEMPLATE] += 1
        return 0
    if bl < need:
        gw[GW_COUNTERS + C_SHORT_BLOCK] += 1
        return 0
    if tid == T_MASS_ACTION_REPORT:
        gw[GW_COUNTERS + C_MASS_ACTION_REPORT] += 1
        if b[p + MAR_RESPONSE] == 0:
            gw[GW_COUNTERS + C_MASS_ACTION_REJECTED] += 1
        return 0
    r = reports[n]
    r.fee = 0.0
    r.recv_ns = recv_ns
    r.reason = 0
    r.aggressor = 0
    r.ord_status = 0
    r.leaves_qty = -1
    r.cum_qty = 0
    if tid == T_EXEC_NEW:
        cl = _cl_ord_id(b, p + ER_NEW_CL, gw)
        r.kind = ER_NEW
        r.order_id = _get_i64(b, p + ER_NEW_OID)
        r.price = _get_i64(b, p + ER_NEW_PX)
        r.qty = _get_u32(b, p + ER_NEW_QTY)
        r.leaves_qty = r.qty
        r.security_id = _get_i32(b, p + ER_NEW_SEC)
        r.side = b[p + ER_NEW_SIDE]
        r.transact_ns = _get_i64(b, p + ER_NEW_TT)
        r.exec_id = _fnv1a(b, p + ER_NEW_EXEC, EXEC_ID_LEN)
    elif tid == T_EXEC_TRADE:
        cl = _cl_ord_id(b, p + ER_TRD_CL, gw)
        r.kind = ER_FILL
        r.order_id = _get_i64(b, p + ER_TRD_OID)
        r.price = _get_i64(b, p + ER_TRD_LASTPX)
        r.qty = _get_u32(b, p + ER_TRD_LASTQTY)
        r.cum_qty = _get_u32(b, p + ER_TRD_CUM)
        r.leaves_qty = _get_u32(b, p + ER_TRD_LEAVES)
        r.security_id = _get_i32(b, p + ER_TRD_SEC)
        r.side = b[p + ER_TRD_SIDE]
        r.aggressor = b[p + ER_TRD_AGG]
        r.transact_ns = _get_i64(b, p + ER_TRD_TT)
        r.exec_id = _fnv1a(b, p + ER_TRD_EXEC, EXEC_ID_LEN)
        if r.leaves_qty == 0:
            _forget(gw, cl)
    elif tid == T_EXEC_CANCEL:
        cl = _cl_ord_id(b, p + ER_CXL_CL, gw)
        r.kind = ER_CANCEL
        r.order_id = _get_i64(b, p + ER_CXL_OID)
        r.price = _get_i64(b, p + ER_CXL_PX)
        r.qty = _get_u32(b, p + ER_CXL_QTY)
        r.cum_qty = _get_u32(b, p + ER_CXL_CUM)
        r.leaves_qty = 0
        r.security_id = _get_i32(b, p + ER_CXL_SEC)
        r.side = b[p + ER_CXL_SIDE]
        rs = b[p + ER_CXL_REASON]
        r.reason = 0 if rs == EXEC_RESTATEMENT_NULL else rs
        r.transact_ns = _get_i64(b, p + ER_CXL_TT)
        r.exec_id = _fnv1a(b, p + ER_CXL_EXEC, EXEC_ID_LEN)
        _forget(gw, cl)
    elif tid == T_EXEC_MODIFY:
        cl = _cl_ord_id(b, p + ER_MOD_CL, gw)
        r.kind = ER_MODIFY
        r.order_id = _get_i64(b, p + ER_MOD_OID)
        r.price = _get_i64(b, p + ER_MOD_PX)
        r.qty = _get_u32(b, p + ER_MOD_QTY)
        r.cum_qty = _get_u32(b, p + ER_MOD_CUM)
        r.leaves_qty = _get_u32(b, p + ER_MOD_LEAVES)
        r.security_id = _get_i32(b, p + ER_MOD_SEC)
        r.side = b[p + ER_MOD_SIDE]
        r.transact_ns = _get_i64(b, p + ER_MOD_TT)
        r.exec_id = _fnv1a(b, p + ER_MOD_EXEC, EXEC_ID_LEN)
        if r.leaves_qty == 0:
            _forget(gw, cl)
    elif tid == T_EXEC_REJECT:
        cl = _cl_ord_id(b, p + ER_REJ_CL, gw)
        r.kind = ER_REJECT
        r.order_id = _get_i64(b, p + ER_REJ_OID)
        r.price = _get_i64(b, p + ER_REJ_PX)
        r.qty = _get_u32(b, p + ER_REJ_QTY)
        r.leaves_qty = 0
        r.security_id = _get_i32(b, p + ER_REJ_SEC)
        r.side = b[p + ER_REJ_SIDE]
        r.reason = _get_u16(b, p + ER_REJ_REASON)
        r.transact_ns = _get_i64(b, p + ER_REJ_TT)
        r.exec_id = _fnv1a(b, p + ER_REJ_EXEC, EXEC_ID_LEN)
        _forget(gw, cl)
    elif tid == T_EXEC_ELIMINATION:
        cl = _cl_ord_id(b, p + ER_ELIM_CL, gw)
        r.kind = ER_ELIMINATION
        r.order_id = _get_i64(b, p + ER_ELIM_OID)
        r.price = _get_i64(b, p + ER_ELIM_PX)
        r.qty = _get_u32(b, p + ER_ELIM_QTY)
        r.cum_qty = _get_u32(b, p + ER_ELIM_CUM)
        r.leaves_qty = 0
        r.security_id = _get_i32(b, p + ER_ELIM_SEC)
        r.side = b[p + ER_ELIM_SIDE]
        r.transact_ns = _get_i64(b, p + ER_ELIM_TT)
        r.exec_id = _fnv1a(b, p + ER_ELIM_EXEC, EXEC_ID_LEN)
        _forget(gw, cl)
    elif tid == T_EXEC_STATUS:
        c = b[p + ER_ST_STATUS]
        if c == OS_CHAR_UNDEFINED:
            # "no such order" / end of an empty mass status: nothing for the OMS
            gw[GW_COUNTERS + C_STATUS_UNDEFINED] += 1
            return 0
        cl = _cl_ord_id(b, p + ER_ST_CL, gw)
        r.kind = ER_STATUS
        r.order_id = _get_i64(b, p + ER_ST_OID)
        r.price = _get_i64(b, p + ER_ST_PX)
        r.qty = _get_u32(b, p + ER_ST_QTY)
        r.cum_qty = _get_u32(b, p + ER_ST_CUM)
        r.leaves_qty = _get_u32(b, p + ER_ST_LEAVES)
        r.security_id = _get_i32(b, p + ER_ST_SEC)
        r.side = b[p + ER_ST_SIDE]
        r.ord_status = _map_ord_status(c, r.cum_qty)
        r.transact_ns = _get_i64(b, p + ER_ST_TT)
        r.exec_id = _fnv1a(b, p + ER_ST_EXEC, EXEC_ID_LEN)
        if r.ord_status != OS_WORKING and r.ord_status != OS_PARTIALLY_FILLED:
            _forget(gw, cl)
    elif tid in (T_CANCEL_REJECT, T_REPLACE_REJECT):
        if tid == T_CANCEL_REJECT:
            cl = _cl_ord_id(b, p + ER_CR_CL, gw)
            r.kind = ER_CANCEL_REJECT
            r.order_id = _get_i64(b, p + ER_CR_OID)
            r.reason = _get_u16(b, p + ER_CR_REASON)
            r.transact_ns = _get_i64(b, p + ER_CR_TT)
            r.exec_id = _fnv1a(b, p + ER_CR_EXEC, EXEC_ID_LEN)
        else:
            cl = _cl_ord_id(b, p + ER_RR_CL, gw)
            r.kind = ER_MODIFY_REJECT
            r.order_id = _get_i64(b, p + ER_RR_OID)
            r.reason = _get_u16(b, p + ER_RR_REASON)
            r.transact_ns = _get_i64(b, p + ER_RR_TT)
            r.exec_id = _fnv1a(b, p + ER_RR_EXEC, EXEC_ID_LEN)
        r.price = 0
        r.qty = 0
        r.security_id = 0
        r.side = 0
    elif tid == T_BUSINESS_REJECT:
        # refers to one of our requests by SeqNum: find it in the sent ring
        gw[GW_COUNTERS + C_BUSINESS_REJECT] += 1
        ref = _get_u32(b, p + BR_REF_SEQ)
        if ref == UINT32_NULL:
            return 0
        slot = GW_RING + 2 * (ref & (SENT_RING - 1))
        act = gw[slot + 1] & 0xFF
        cl = np.uint64(gw[slot])
        if act == ACT_NEW:
            r.kind = ER_REJECT
            _forget(gw, cl)
        elif act == ACT_MODIFY:
            r.kind = ER_MODIFY_REJECT
        elif act == ACT_CANCEL:
            r.kind = ER_CANCEL_REJECT
        else:
            return 0
        r.order_id = 0
        r.price = 0
        r.qty = 0
        r.leaves_qty = 0
        r.security_id = 0
        r.side = 0
        r.reason = _get_u16(b, p + BR_REASON)
        r.transact_ns = _get_i64(b, p + BR_TT)
        r.exec_id = 0
    else:
        return 0
    r.cl_ord_id = cl
    gw[GW_COUNTERS + C_REPORTS] += 1
    return 1


@njit(cache=True)
def _decode_frames(buf, pos, end, reports, n, max_n, gw, recv_ns):
    """Frame and decode the in-order business messages of ``buf[pos:end]``.

    Returns (new pos, rows in ``reports``, stop code). Takes a frame only if it
    is a business message with SeqNum == gw[SEQ_NEXT_RECV], not a retransmission,
    and no recovery is running; anything else stops with STOP_SLOW at that frame
    for the Python session layer (core.fixp).
    """
    while end - pos >= FRAME_HEADER:
        length = _get_u16(buf, pos)
        if _get_u16(buf, pos + 2) != SOFH_ENCODING or length < FRAME_HEADER:
            return pos, n, STOP_BAD
        if end - pos < length:
            return pos, n, STOP_DONE
        tid = _get_u16(buf, pos + _HDR_TEMPLATE_ID)
        if tid <= LAST_SESSION_TEMPLATE or tid >= SEQNUM_OFFSET.shape[0]:
            return pos, n, STOP_SLOW
        if _get_u16(buf, pos + _HDR_SCHEMA_ID) != ILINK3_SCHEMA_ID:
            return pos, n, STOP_SLOW
        so = SEQNUM_OFFSET[tid]
        bl = _get_u16(buf, pos + _HDR_BLOCK_LENGTH)
        if so == 0 or gw[SEQ_RECOVERING] != 0 or gw[SEQ_SLOW] != 0 or so + 4 > FRAME_HEADER + bl:
            return pos, n, STOP_SLOW
        if _get_u32(buf, pos + so) != gw[SEQ_NEXT_RECV]:
            return pos, n, STOP_SLOW
        pr = POSS_RETRANS_OFFSET[tid]
        if pr != 0 and pr < FRAME_HEADER + bl and buf[pos + pr] != 0:
            return pos, n, STOP_SLOW
        if n >= max_n:
            return pos, n, STOP_FULL
        gw[SEQ_NEXT_RECV] += 1
        gw[GW_COUNTERS + C_FRAMES] += 1
        n += _decode_report(buf, pos, tid, bl, reports, n, gw, recv_ns)
        pos += length
    return pos, n, STOP_DONE


# -- Python wrappers (validate, then call the kernels) -------------------------------
def encode_actions(actions: np.ndarray, k: int, mem: np.ndarray, gw: np.ndarray,
                   sending_ns: int) -> int:
    """Encode ``actions[:k]`` into ``mem[MEM_OUT:]`` (bytes written). See ``_encode_actions``."""
    if actions.dtype != ORDER_ACTION:
        raise TypeError("actions must have dtype ORDER_ACTION")
    if gw.dtype != np.int64 or gw.shape != (GW_SIZE,):
        raise TypeError("gw must come from new_gateway_state()")
    if mem.dtype != np.uint8 or mem.shape != (MEM_SIZE,):
        raise TypeError("mem must come from new_order_memory()")
    k = max(0, min(int(k), len(actions)))
    return int(_encode_actions(actions, k, mem, gw, int(sending_ns)))


def sent_frame(mem: np.ndarray, gw: np.ndarray, seq: int) -> bytes | None:
    """The frame sent with SeqNum ``seq`` if still in the store, else None."""
    ring = seq & (SENT_RING - 1)
    n = int(gw[GW_RING + 2 * ring + 1]) >> 8
    if n < FRAME_HEADER:
        return None
    at = MEM_STORE + ring * TPL_MAX
    frame = mem[at : at + n].tobytes()
    tid = int.from_bytes(frame[_HDR_TEMPLATE_ID:_HDR_TEMPLATE_ID + 2], "little")
    so = int(SEQNUM_OFFSET[tid]) if tid < len(SEQNUM_OFFSET) else 0
    if so == 0 or int.from_bytes(frame[so:so + 4], "little") != seq:
        return None  # overwritten by a later SeqNum
    return frame


def sent_request(gw: np.ndarray, seq: int) -> tuple[int, int]:
    """(cl_ord_id, ACT_*) of the request sent with SeqNum ``seq`` (ring entry)."""
    r = GW_RING + 2 * (seq & (SENT_RING - 1))
    return int(gw[r]) & (2**64 - 1), int(gw[r + 1]) & 0xFF


def record_sent(mem: np.ndarray, gw: np.ndarray, seq: int, frame: bytes, cl_ord_id: int = 0,
                action: int = 0) -> None:
    """Keep a business frame sent from Python (mass status, party details) in the store."""
    ring = seq & (SENT_RING - 1)
    fits = len(frame) <= TPL_MAX
    if fits:
        at = MEM_STORE + ring * TPL_MAX
        mem[at : at + len(frame)] = np.frombuffer(frame, dtype=np.uint8)
    cl = cl_ord_id & (2**64 - 1)
    gw[GW_RING + 2 * ring] = cl - 2**64 if cl >= 2**63 else cl
    gw[GW_RING + 2 * ring + 1] = action | ((len(frame) if fits else 0) << 8)


def decode_frames(buf: np.ndarray, pos: int, end: int, reports: np.ndarray, n: int,
                  gw: np.ndarray, recv_ns: int) -> tuple[int, int, int]:
    """Decode in-order execution reports of ``buf[pos:end]``; see ``_decode_frames``."""
    if reports.dtype != EXEC_REPORT:
        raise TypeError("reports must have dtype EXEC_REPORT")
    if buf.dtype != np.uint8 or gw.dtype != np.int64 or gw.shape[0] != GW_SIZE:
        raise TypeError("buf must be uint8 and gw a gateway state (new_gateway_state)")
    p, m, stop = _decode_frames(buf, int(pos), int(end), reports, int(n), len(reports), gw,
                                int(recv_ns))
    return int(p), int(m), int(stop)


def decode_report(frame: bytes | np.ndarray, reports: np.ndarray, n: int, gw: np.ndarray,
                  recv_ns: int) -> int:
    """Decode one business frame (SOFH first) into ``reports[n]``; returns rows written."""
    b = np.frombuffer(frame, dtype=np.uint8) if isinstance(frame, bytes | bytearray) else frame
    if len(b) < FRAME_HEADER or n >= len(reports):
        return 0
    tid = int(b[_HDR_TEMPLATE_ID]) | (int(b[_HDR_TEMPLATE_ID + 1]) << 8)
    bl = int(b[_HDR_BLOCK_LENGTH]) | (int(b[_HDR_BLOCK_LENGTH + 1]) << 8)
    if FRAME_HEADER + bl > len(b):
        gw[GW_COUNTERS + C_SHORT_BLOCK] += 1
        return 0
    return int(_decode_report(b, 0, tid, bl, reports, int(n), gw, int(recv_ns)))


def counters(gw: np.ndarray) -> dict[str, int]:
    """The kernel counters by name (control plane; allocates)."""
    return {name: int(gw[GW_COUNTERS + i]) for i, name in enumerate(COUNTER_NAMES)}


def seq_num_of(frame: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int, bool]:
    """(templateId, SeqNum or -1, PossRetransFlag) of the frame at ``pos``."""
    bl, tid = struct.unpack_from("<HH", frame, pos + SOFH_SIZE)
    so = int(SEQNUM_OFFSET[tid]) if tid < len(SEQNUM_OFFSET) else 0
    if so == 0 or so + 4 > FRAME_HEADER + bl:
        return tid, -1, False
    seq = struct.unpack_from("<I", frame, pos + so)[0]
    pr = int(POSS_RETRANS_OFFSET[tid])
    poss = pr != 0 and pr < FRAME_HEADER + bl and frame[pos + pr] != 0
    return tid, seq, bool(poss)


_ = (nb, SEQ_UUID)  # re-exported names used by the gateway


def warm_up() -> None:
    """Compile (or load from cache) the kernels before a session starts."""
    gw = new_gateway_state()
    mem = new_order_memory(gw, sender_id="W", location="W", party_details_list_req_id=0)
    acts = np.zeros(4, dtype=ORDER_ACTION)
    acts["action"] = (ACT_NEW, ACT_MODIFY, ACT_CANCEL, ACT_MASS_CANCEL)
    acts["qty"] = 1
    n = encode_actions(acts, 4, mem, gw, 0)
    out = mem[MEM_OUT : MEM_OUT + n].copy()
    reports = np.zeros(4, dtype=EXEC_REPORT)
    gw[SEQ_NEXT_RECV] = 1
    decode_frames(out, 0, n, reports, 0, gw, 0)
    decode_report(out[:n], reports, 0, gw, 0)
