"""iLink 3 codecs: the real captures, the flat frame codec, the order encoder and the
execution-report decoder (numba), each against an independent reference.

* Captures (schema v5): every root field equals PyPI ``sbedecoder``'s reading,
  the values the reference README lists, and values read by hand from the hex.
* ``FlatCodec`` against the generic codec (``core.sbe.codec``) on random values of
  every v9 template, both directions.
* The njit encoder: random ORDER_ACTION rows, frames decoded by the generic
  codec, compared with a naive expectation written here.
* The njit decoder: random execution reports encoded by the generic codec,
  decoded to EXEC_REPORT rows, compared with a naive mapping written here.
* Random and truncated bytes never make the kernel raise.
"""

from __future__ import annotations

import contextlib
import re
import struct
from pathlib import Path
from typing import Any

import dpkt
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import fixp
from core.sbe import codec
from core.sbe import ilink3 as il
from core.sbe.schema import bundled_schema
from core.types import (
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
    ORDER_ACTION,
    OS_CANCELLED,
    OS_EXPIRED,
    OS_FILLED,
    OS_PARTIALLY_FILLED,
    OS_REJECTED,
    OS_WORKING,
)
from tests.conftest import PCAP_DIR

V5 = bundled_schema(8, 5)
V9 = bundled_schema(8, 9)
SETTINGS = settings(max_examples=60, deadline=None)


@pytest.fixture(scope="module", autouse=True)
def _compiled() -> None:
    il.warm_up()


def _tcp_payload(name: str) -> bytes:
    with (PCAP_DIR / name).open("rb") as f:
        payloads = [dpkt.ethernet.Ethernet(buf).data.data.data for _ts, buf in dpkt.pcap.Reader(f)]
    assert len(payloads) == 1
    return bytes(payloads[0])


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _sbedecoder_fields(frame: bytes) -> tuple[dict[str, Any], list[Any]]:
    sbedecoder = pytest.importorskip("sbedecoder")
    schema = sbedecoder.SBESchema(include_message_size_header=False,
                                  use_description_as_message_name=False)
    schema.parse(str(Path(V5.path)))
    tid = struct.unpack_from("<H", frame, 6)[0]
    msg = schema.get_message_type(tid)()
    msg.wrap(frame, 4)
    fields = {}
    for f in msg.fields:
        raw = f.raw_value if type(f).__name__ == "EnumMessageField" else f.value
        fields[_norm(f.name)] = raw
    return fields, list(msg.groups)


# --------------------------------------------------------------------------
# The bundled captures
# --------------------------------------------------------------------------
def test_sequence_capture_decodes_field_for_field() -> None:
    frame = _tcp_payload("ilink3_v5_tcp_Sequence506.pcap")
    length, bl, tid, sid, ver = il.frame_info(frame)
    assert (length, bl, tid, sid, ver) == (len(frame), 14, 506, 8, 5)
    assert frame[:4] == b"\x1a\x00\xfe\xca"  # SOFH little-endian, as CME writes it
    got = il.FlatCodec(506, V5).decode(frame)
    # README: UUID 1585839227794207, NextSeqNo 3, FTI Primary
    primary = V5.message(506).field("FaultToleranceIndicator").enum_values["Primary"]
    assert got == {"UUID": 1585839227794207, "NextSeqNo": 3, "FaultToleranceIndicator": primary,
                   "KeepAliveIntervalLapsed": 0}
    theirs, _ = _sbedecoder_fields(frame)
    for name, v in got.items():
        assert theirs[_norm(name)] == v, name
    # the same bytes decode the same with the v9 layout (the message did not change)
    assert il.flat_codec(506).decode(frame) == got


def test_quote_cancel_capture_decodes_field_for_field() -> None:
    frame = _tcp_payload("ilink3_v5_tcp_QuoteCancel528.pcap")
    length, bl, tid, sid, ver = il.frame_info(frame)
    assert (length, bl, tid, sid, ver) == (80, 52, 528, 8, 5)
    got = il.FlatCodec(528, V5).decode(frame)
    # read by hand from the hex dump, offsets from the v5 schema
    hand = {
        "PartyDetailsListReqID": 1,
        "SendingTimeEpoch": 0x16020862219D9FC4,  # 2020-04-02, the capture's day
        "ManualOrderIndicator": 0,
        "SeqNum": 2,
        "SenderID": "TS",
        "Location": "US",
        "QuoteID": 100,
        "QuoteCancelType": 4,  # cancel all quotes
        "LiquidityFlag": None,
    }
    assert got == hand
    theirs, groups = _sbedecoder_fields(frame)
    for name, v in got.items():
        t = theirs[_norm(name)]
        assert (None if t == 255 and v is None else t) == v, name
    # groups: one quote entry "[N/A]" (cancel all), no quote sets
    full = codec.decode(frame, 4, schema=V5)
    assert full["groups"] == {"NoQuoteEntries": [{"SecurityGroup": "[N/A]", "SecurityID": None}],
                              "NoQuoteSets": []}
    entries = [[(e.name, e.value) for e in g.fields] for g in groups[0]]
    assert entries == [[("security_group", "[N/A]"), ("security_id", None)]]
    assert list(groups[1]) == []


def test_captured_sequence_drives_the_session_and_the_kernel() -> None:
    """Real bytes through our stack: the kernel leaves the session message to
    Python; a client expecting SeqNum 1 sees NextSeqNo 3 and asks for 1..2."""
    frame = _tcp_payload("ilink3_v5_tcp_Sequence506.pcap")
    buf = np.frombuffer(frame, dtype=np.uint8)
    gw = il.new_gateway_state()
    reports = np.zeros(4, EXEC_REPORT)
    assert il.decode_frames(buf, 0, len(buf), reports, 0, gw, 0) == (0, 0, il.STOP_SLOW)
    client = fixp.FixpClient(fixp.SessionIdentity("ABC", "FIRM1"),
                             fixp.Credentials("AKID", "a2V5"), seq=gw[: fixp.N_SEQ])
    client.state = fixp.SessionState.ESTABLISHED
    client.uuid = 1585839227794207
    client.on_message(506, il.FlatCodec(506, V5).decode(frame), 0, 0)
    out, _ = client.drain()
    (rr,) = [s.fields for s in out if s.template_id == fixp.RETRANSMIT_REQUEST]
    assert (rr["UUID"], rr["FromSeqNo"], rr["MsgCount"]) == (1585839227794207, 1, 2)
    assert gw[il.SEQ_RECOVERING] == 1 and gw[il.SEQ_NEXT_RECV] == 3


def test_captured_business_message_is_sequenced_by_the_kernel() -> None:
    frame = _tcp_payload("ilink3_v5_tcp_QuoteCancel528.pcap")  # SeqNum 2
    buf = np.frombuffer(frame * 2, dtype=np.uint8)
    gw = il.new_gateway_state()
    reports = np.zeros(4, EXEC_REPORT)
    gw[il.SEQ_NEXT_RECV] = 2
    pos, n, stop = il.decode_frames(buf, 0, len(buf), reports, 0, gw, 0)
    # taken in order (no OMS meaning: counted), then the copy is out of sequence
    assert (pos, n, stop) == (80, 0, il.STOP_SLOW)
    assert gw[il.SEQ_NEXT_RECV] == 3
    assert il.counters(gw)["unknown_template"] == 1


# --------------------------------------------------------------------------
# FlatCodec against the generic codec
# --------------------------------------------------------------------------
_INT_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-(2**15), 2**15 - 1),
              "uint16": (0, 2**16 - 1), "int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1),
              "int64": (-(2**63), 2**63 - 1), "uint64": (0, 2**64 - 1)}
_PRINTABLE = st.characters(min_codepoint=33, max_codepoint=126)


def _value_strategy(prim: str, length: int, null: Any, enum_values: dict[str, Any],
                    is_char_enum: bool) -> st.SearchStrategy[Any]:
    if prim == "char":
        if is_char_enum:
            base = st.sampled_from([v for v in enum_values.values()])
        else:
            base = st.text(_PRINTABLE, max_size=length)
    else:
        lo, hi = _INT_RANGE[prim]
        base = st.integers(lo, hi).filter(lambda v: v != null)
    return st.one_of(st.none(), base) if null is not None else base


def _message_strategy(tid: int) -> st.SearchStrategy[dict[str, Any]]:
    msg = V9.message(tid)
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for f in msg.fields:
        if f.is_constant:
            continue
        if f.kind == "composite":
            for m in f.members:
                if m.is_constant:
                    continue
                key = f.name if f.scalar_member is m else f"{f.name}.{m.name}"
                parts[key] = _value_strategy(m.primitive, m.length, m.null_value, {}, False)
        else:
            char_enum = f.kind == "enum" and f.primitive == "char"
            null = f.null_value if f.presence == "optional" else None
            if f.primitive == "char" and not char_enum:
                null = None  # an empty string is how a null/blank text reads back
            parts[f.name] = _value_strategy(f.primitive, f.length, null, f.enum_values, char_enum)
    return st.fixed_dictionaries(parts)


def _codec_fields_flat(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            for mk, mv in v.items():
                out[f"{k}.{mk}"] = mv
        else:
            out[k] = v
    return out


@pytest.mark.parametrize("tid", sorted(V9.messages), ids=lambda t: V9.message(t).name)
def test_flat_codec_agrees_with_generic_codec(tid: int) -> None:
    fc = il.flat_codec(tid)

    @settings(max_examples=15, deadline=None)
    @given(values=_message_strategy(tid))
    def check(values: dict[str, Any]) -> None:
        frame = fc.encode(values)
        assert len(frame) == fc.frame_length == il.frame_info(frame)[0]
        mine = fc.decode(frame)
        theirs = codec.decode(frame, 4, schema=V9)
        assert theirs["template_id"] == tid and theirs["version"] == V9.version
        assert all(g == [] for g in theirs["groups"].values())
        flat = _codec_fields_flat(theirs["fields"])
        flat.pop("Credentials", None)
        expect = {k: (None if v == "" and fc._slots[fc._index[k]].null is not None else v)
                  for k, v in values.items()}
        for k, v in expect.items():
            assert mine[k] == v or (v == "" and mine[k] is None), k
            assert flat[k] == mine[k] or (mine[k] in ("", None) and flat[k] in ("", None)), k
        # and the other way: the generic encoder's bytes read back by FlatCodec
        body = codec.encode(theirs, V9)
        assert fc.decode(codec.encode_sofh(body)) == mine

    check()


def test_flat_codec_reads_an_older_shorter_block() -> None:
    """A v5 NewOrderSingle (no DiscretionPrice/ReservationPrice) through the v9 codec."""
    fields = {"Price": 123, "OrderQty": 4, "SecurityID": 9, "Side": 1, "SeqNum": 7,
              "SenderID": "OP", "ClOrdID": "X", "PartyDetailsListReqID": 1,
              "OrderRequestID": 2, "SendingTimeEpoch": 3, "Location": "US", "OrdType": "2",
              "TimeInForce": 0, "ManualOrderIndicator": 0, "ExecInst": 0}
    body = codec.encode({"template_id": 514, "fields": fields}, V5)
    frame = codec.encode_sofh(body)
    assert il.frame_info(frame)[1] == V5.message(514).block_length < V9.message(514).block_length
    got = il.flat_codec(514).decode(frame)
    assert {k: got[k] for k in fields} == fields
    assert got["DiscretionPrice"] is None and got["ReservationPrice"] is None


# --------------------------------------------------------------------------
# The order encoder (njit) against the generic codec
# --------------------------------------------------------------------------
_U32 = st.integers(0, 2**32 - 1)
_ACTION = st.fixed_dictionaries({
    "cl_ord_id": st.integers(0, 2**64 - 1),
    "order_id": st.one_of(st.just(0), st.integers(1, 2**64 - 2)),
    "price": st.integers(-(2**63), 2**63 - 2),
    "qty": _U32,
    "trigger_seq": _U32,
    "security_id": st.integers(-(2**31), 2**31 - 2),
    "action": st.sampled_from([ACT_NEW, ACT_MODIFY, ACT_CANCEL, ACT_MASS_CANCEL]),
    "side": st.sampled_from([1, 2]),
    "tif": st.sampled_from([0, 1, 3, 4]),
})


def _expected_request(a: dict[str, Any], seq: int, req: int, sending: int) -> tuple[int, dict]:
    """What the frame of one action must say (naive reference)."""
    static = {"SenderID": "OPER01", "Location": "US,IL", "PartyDetailsListReqID": 4242,
              "ManualOrderIndicator": 0, "SeqNum": seq, "SendingTimeEpoch": sending,
              "OrderRequestID": (a["trigger_seq"] << 32) | req}
    cl = f"{a['cl_ord_id']:020d}"
    oid = a["order_id"] or None
    if a["action"] == ACT_NEW:
        return 514, dict(static, Price=a["price"], OrderQty=a["qty"],
                         SecurityID=a["security_id"], Side=a["side"], ClOrdID=cl,
                         TimeInForce=a["tif"], OrdType="2", ExecInst=0, StopPx=None,
                         MinQty=None, DisplayQty=None, ExpireDate=None)
    if a["action"] == ACT_MODIFY:
        return 515, dict(static, Price=a["price"], OrderQty=a["qty"],
                         SecurityID=a["security_id"], Side=a["side"], ClOrdID=cl, OrderID=oid,
                         TimeInForce=a["tif"], OrdType="2", OFMOverride=1, ExecInst=0)
    if a["action"] == ACT_CANCEL:
        return 516, dict(static, ClOrdID=cl, OrderID=oid, SecurityID=a["security_id"],
                         Side=a["side"])
    scope = "Instrument" if a["security_id"] != 0 else "All"
    return 529, dict(static, MassActionType="3",
                     SecurityID=a["security_id"] if a["security_id"] != 0 else None,
                     MassActionScope=V9.message(529).field("MassActionScope").enum_values[scope],
                     Side=None, OrdType=None, TimeInForce=None)


@SETTINGS
@given(actions=st.lists(_ACTION, min_size=1, max_size=8), sending=st.integers(0, 2**63 - 1),
       first_seq=st.integers(1, 2**31), first_req=_U32)
def test_order_encoder_roundtrip(actions: list[dict[str, Any]], sending: int, first_seq: int,
                                 first_req: int) -> None:
    gw = il.new_gateway_state()
    mem = il.new_order_memory(gw, sender_id="OPER01", location="US,IL",
                              party_details_list_req_id=4242)
    gw[il.SEQ_NEXT_SEND] = first_seq
    gw[il.SEQ_REQUEST] = first_req
    rows = np.zeros(len(actions), ORDER_ACTION)
    for i, a in enumerate(actions):
        for k, v in a.items():
            rows[i][k] = v
    n = il.encode_actions(rows, len(rows), mem, gw, sending)
    out = mem[il.MEM_OUT : il.MEM_OUT + n].tobytes()
    pos = 0
    for i, a in enumerate(actions):
        seq = first_seq + i
        req = (first_req + i + 1) & 0xFFFFFFFF
        tid, want = _expected_request(a, seq, req, sending)
        length = il.frame_info(out, pos)[0]
        assert length == 4 + 8 + V9.message(tid).block_length
        msg = codec.decode(out, pos + 4, pos + length, schema=V9)
        assert msg["template_id"] == tid
        got = msg["fields"]
        for k, v in want.items():
            assert got[k] == v, (tid, k)
        # the store keeps the frame for a resend; the ring knows what it was
        assert il.sent_frame(mem, gw, seq) == out[pos : pos + length]
        assert il.sent_request(gw, seq) == (a["cl_ord_id"], a["action"])
        assert il.trigger_seq_of(got["OrderRequestID"]) == a["trigger_seq"]
        assert il.parse_cl_ord_id(got.get("ClOrdID") or "0" * 20) in (a["cl_ord_id"], 0)
        pos += length
    assert pos == n
    assert gw[il.SEQ_NEXT_SEND] == first_seq + len(actions)
    # new orders enter the live mirror by OMS row
    for a in actions:
        if a["action"] == ACT_NEW:
            slot = a["cl_ord_id"] & il.SLOT_MASK
            last = [b for b in actions if b["action"] == ACT_NEW
                    and b["cl_ord_id"] & il.SLOT_MASK == slot][-1]
            assert int(gw[il.GW_LIVE + slot]) & (2**64 - 1) == last["cl_ord_id"]


def test_encoder_skips_unknown_actions_and_stops_when_full() -> None:
    gw = il.new_gateway_state()
    mem = il.new_order_memory(gw, sender_id="A", location="B", party_details_list_req_id=1)
    rows = np.zeros(3, ORDER_ACTION)
    rows["action"] = (ACT_NEW, 9, ACT_CANCEL)
    n = il.encode_actions(rows, 3, mem, gw, 0)
    assert n == il.NOS_LEN + il.OCX_LEN
    assert il.counters(gw)["bad_action"] == 1 and il.counters(gw)["encoded"] == 2
    many = np.zeros(il.OUT_CAP // il.NOS_LEN + 5, ORDER_ACTION)
    many["action"] = ACT_NEW
    n = il.encode_actions(many, len(many), mem, gw, 0)
    assert n == (il.OUT_CAP // il.NOS_LEN) * il.NOS_LEN
    assert il.counters(gw)["out_full"] == 5


# --------------------------------------------------------------------------
# The execution-report decoder (njit) against a naive mapping
# --------------------------------------------------------------------------
_STATUS_TO_OS = {"0": OS_WORKING, "5": OS_WORKING, "6": OS_WORKING, "E": OS_WORKING,
                 "1": OS_PARTIALLY_FILLED, "2": OS_FILLED, "4": OS_CANCELLED, "8": OS_REJECTED,
                 "C": OS_EXPIRED}
_KIND = {522: ER_NEW, 525: ER_FILL, 531: ER_MODIFY, 534: ER_CANCEL, 523: ER_REJECT,
         524: ER_ELIMINATION, 532: ER_STATUS, 535: ER_CANCEL_REJECT, 536: ER_MODIFY_REJECT}

_REPORT = st.fixed_dictionaries({
    "tid": st.sampled_from(sorted(_KIND)),
    "cl": st.integers(0, 2**64 - 1),
    "order_id": st.integers(0, 2**64 - 2),
    "price": st.integers(-(2**63), 2**63 - 2),
    "last_px": st.integers(-(2**63), 2**63 - 2),
    "qty": _U32, "last_qty": _U32, "cum": _U32, "leaves": _U32,
    "security_id": st.integers(-(2**31), 2**31 - 2),
    "side": st.sampled_from([1, 2]),
    "transact": st.integers(0, 2**64 - 1),
    "reason": st.integers(0, 2**16 - 1),
    "restatement": st.one_of(st.none(), st.sampled_from([8, 9, 100, 103, 107])),
    "aggressor": st.sampled_from([0, 1]),
    "status": st.sampled_from(sorted(_STATUS_TO_OS)),
    "exec_id": st.text(_PRINTABLE, min_size=1, max_size=40),
})


def _report_message(r: dict[str, Any], seq: int) -> dict[str, Any]:
    f: dict[str, Any] = {
        "SeqNum": seq, "UUID": 1, "ExecID": r["exec_id"], "SenderID": "OP",
        "ClOrdID": f"{r['cl']:020d}", "PartyDetailsListReqID": 1, "OrderID": r["order_id"],
        "Price": r["price"], "TransactTime": r["transact"], "SendingTimeEpoch": 5,
        "OrderRequestID": 7, "Location": "US", "SecurityID": r["security_id"],
        "OrderQty": r["qty"], "CumQty": r["cum"], "LeavesQty": r["leaves"], "OrdType": "2",
        "Side": r["side"], "ManualOrderIndicator": 0, "PossRetransFlag": 0, "ExecInst": 0,
        "LastPx": r["last_px"], "LastQty": r["last_qty"], "SecExecID": 1, "MDTradeEntryID": 1,
        "SideTradeID": 1, "OrdStatus": r["status"], "AggressorIndicator": r["aggressor"],
        "Ownership": 0, "OrdRejReason": r["reason"], "CxlRejReason": r["reason"],
        "ExecRestatementReason": r["restatement"], "Text": "t",
    }
    if r["tid"] == 525:
        f["OrdStatus"] = 2 if r["leaves"] == 0 else 1
    msg = V9.message(r["tid"])
    names = {x.name for x in msg.fields if not x.is_constant}
    return {"template_id": r["tid"], "fields": {k: v for k, v in f.items() if k in names}}


def _fnv1a(text: str) -> int:
    h = 0xCBF29CE484222325
    for c in text.encode():
        h = ((h ^ c) * 0x100000001B3) & (2**64 - 1)
    return h


def _expected_report(r: dict[str, Any], recv_ns: int) -> dict[str, Any] | None:
    """The EXEC_REPORT row the decoder must write (naive reference)."""
    tid = r["tid"]
    if tid == 532 and r["status"] == "U":
        return None
    e = {"cl_ord_id": r["cl"], "kind": _KIND[tid], "recv_ns": recv_ns, "fee": 0.0,
         "transact_ns": r["transact"], "exec_id": _fnv1a(r["exec_id"]), "reason": 0,
         "aggressor": 0, "ord_status": 0, "order_id": r["order_id"], "cum_qty": 0}
    if tid in (535, 536):
        e.update(price=0, qty=0, leaves_qty=-1, security_id=0, side=0, reason=r["reason"])
        return e
    e.update(price=r["price"], qty=r["qty"], security_id=r["security_id"], side=r["side"])
    if tid == 522:
        e["leaves_qty"] = r["qty"]
    elif tid == 525:
        e.update(price=r["last_px"], qty=r["last_qty"], cum_qty=r["cum"], leaves_qty=r["leaves"],
                 aggressor=r["aggressor"])
    elif tid == 531:
        e.update(cum_qty=r["cum"], leaves_qty=r["leaves"])
    elif tid == 534:
        e.update(cum_qty=r["cum"], leaves_qty=0, reason=r["restatement"] or 0)
    elif tid == 523:
        e.update(leaves_qty=0, reason=r["reason"])
    elif tid == 524:
        e.update(cum_qty=r["cum"], leaves_qty=0)
    elif tid == 532:
        os_ = _STATUS_TO_OS[r["status"]]
        if os_ == OS_WORKING and r["cum"] > 0:
            os_ = OS_PARTIALLY_FILLED
        e.update(cum_qty=r["cum"], leaves_qty=r["leaves"], ord_status=os_)
    return e


@SETTINGS
@given(reports=st.lists(_REPORT, min_size=1, max_size=10), recv_ns=st.integers(0, 2**63 - 1))
def test_report_decoder_against_naive_mapping(reports: list[dict[str, Any]], recv_ns: int) -> None:
    stream = b"".join(codec.encode_sofh(codec.encode(_report_message(r, i + 1), V9))
                      for i, r in enumerate(reports))
    buf = np.frombuffer(stream, dtype=np.uint8)
    gw = il.new_gateway_state()
    out = np.zeros(16, EXEC_REPORT)
    pos, n, stop = il.decode_frames(buf, 0, len(buf), out, 0, gw, recv_ns)
    assert (pos, stop) == (len(buf), il.STOP_DONE)
    want = [e for e in (_expected_report(r, recv_ns) for r in reports) if e is not None]
    assert n == len(want)
    for row, e in zip(out[:n], want, strict=True):
        got = {k: row[k].item() for k in e}
        assert got == e
    assert gw[il.SEQ_NEXT_RECV] == len(reports) + 1


def test_business_reject_maps_to_the_request_it_refers_to() -> None:
    gw = il.new_gateway_state()
    mem = il.new_order_memory(gw, sender_id="A", location="B", party_details_list_req_id=1)
    rows = np.zeros(3, ORDER_ACTION)
    rows["action"] = (ACT_NEW, ACT_MODIFY, ACT_CANCEL)
    rows["cl_ord_id"] = (1 << 9 | 7, 2 << 9 | 8, 3 << 9 | 9)
    il.encode_actions(rows, 3, mem, gw, 0)
    stream = b""
    for i, ref in enumerate((1, 2, 3, None)):
        m = {"template_id": 521, "fields": {
            "SeqNum": i + 1, "UUID": 1, "Text": "no", "SendingTimeEpoch": 77, "RefSeqNum": ref,
            "BusinessRejectReason": 5, "PossRetransFlag": 0, "RefMsgType": "D"}}
        stream += codec.encode_sofh(codec.encode(m, V9))
    out = np.zeros(8, EXEC_REPORT)
    buf = np.frombuffer(stream, dtype=np.uint8)
    _pos, n, _stop = il.decode_frames(buf, 0, len(buf), out, 0, gw, 1)
    assert n == 3
    assert [(int(r["cl_ord_id"]), int(r["kind"]), int(r["reason"])) for r in out[:3]] == [
        (1 << 9 | 7, ER_REJECT, 5), (2 << 9 | 8, ER_MODIFY_REJECT, 5),
        (3 << 9 | 9, ER_CANCEL_REJECT, 5)]
    assert il.counters(gw)["business_reject"] == 4
    assert gw[il.GW_LIVE + 7] == 0  # the rejected new order left the live mirror


# --------------------------------------------------------------------------
# Kernel stops and robustness
# --------------------------------------------------------------------------
def _report_frame(tid: int, seq: int, **over: Any) -> bytes:
    r = {"tid": tid, "cl": 5, "order_id": 9, "price": 1, "last_px": 1, "qty": 2, "last_qty": 1,
         "cum": 1, "leaves": 1, "security_id": 3, "side": 1, "transact": 4, "reason": 0,
         "restatement": None, "aggressor": 0, "status": "0", "exec_id": "E"}
    m = _report_message(r, seq)
    m["fields"].update(over)
    return codec.encode_sofh(codec.encode(m, V9))


def test_kernel_stops_where_python_must_decide() -> None:
    out = np.zeros(2, EXEC_REPORT)
    f1, f2, f3 = (_report_frame(522, s) for s in (1, 2, 3))

    def run(stream: bytes, **gwset: int) -> tuple[int, int, int]:
        gw = il.new_gateway_state()
        for k, v in gwset.items():
            gw[getattr(il, k)] = v
        b = np.frombuffer(stream, dtype=np.uint8)
        return il.decode_frames(b, 0, len(b), out, 0, gw, 0)

    assert run(f1 + f3) == (len(f1), 1, il.STOP_SLOW)  # gap at SeqNum 3
    assert run(f1 + f2[:-1]) == (len(f1), 1, il.STOP_DONE)  # partial frame stays
    assert run(f1 + f2 + f3) == (len(f1) + len(f2), 2, il.STOP_FULL)  # reports full
    assert run(f1, SEQ_RECOVERING=1) == (0, 0, il.STOP_SLOW)
    assert run(f1, SEQ_SLOW=1) == (0, 0, il.STOP_SLOW)
    assert run(_report_frame(522, 1, PossRetransFlag=1)) == (0, 0, il.STOP_SLOW)
    assert run(b"\x20\x00\xfe\xcb" + f1[4:]) == (0, 0, il.STOP_BAD)  # wrong encoding type
    assert run(b"\x05\x00\xfe\xca" + f1[4:]) == (0, 0, il.STOP_BAD)  # length < header
    seqmsg = il.flat_codec(506).encode({"UUID": 1, "NextSeqNo": 1})
    assert run(seqmsg) == (0, 0, il.STOP_SLOW)
    # a short block is sequenced and counted, not decoded
    short = bytearray(f1)
    short[4:6] = struct.pack("<H", 100)
    gw = il.new_gateway_state()
    b = np.frombuffer(struct.pack("<H", 112) + bytes(short[2:112]), dtype=np.uint8)
    assert il.decode_frames(b, 0, len(b), out, 0, gw, 0) == (112, 0, il.STOP_DONE)
    assert il.counters(gw)["short_block"] == 1 and gw[il.SEQ_NEXT_RECV] == 2


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=600), cut=st.integers(0, 600), next_recv=st.integers(0, 3))
def test_kernel_never_raises_on_random_bytes(data: bytes, cut: int, next_recv: int) -> None:
    valid = _report_frame(525, 1) + _report_frame(534, 2)
    for stream in (data, valid[:cut], valid[:cut] + data, b"\x40\x00\xfe\xca" + data):
        buf = np.frombuffer(stream, dtype=np.uint8) if stream else np.zeros(0, np.uint8)
        gw = il.new_gateway_state()
        gw[il.SEQ_NEXT_RECV] = next_recv
        out = np.zeros(4, EXEC_REPORT)
        pos, n, stop = il.decode_frames(buf, 0, len(buf), out, 0, gw, 0)
        assert 0 <= pos <= len(buf) and 0 <= n <= 4
        assert stop in (il.STOP_DONE, il.STOP_SLOW, il.STOP_FULL, il.STOP_BAD)
        rest = len(buf) - pos
        if rest and stop == il.STOP_DONE:  # only an incomplete frame may be left
            assert rest < 12 or rest < int.from_bytes(stream[pos : pos + 2], "little")


def test_cl_ord_id_and_request_id_conventions() -> None:
    assert il.cl_ord_id_text(513) == "00000000000000000513"
    assert il.parse_cl_ord_id("00000000000000000513") == 513
    assert il.parse_cl_ord_id(b"00000000000000000513\x00") == 513
    assert il.parse_cl_ord_id("ABC") == -1
    assert il.parse_cl_ord_id("99999999999999999999") == -1  # above u64
    assert il.trigger_seq_of(il.order_request_id(123456, 7)) == 123456
    # the kernel refuses a 20-digit ClOrdID above u64 as foreign, like the parser
    f = _report_frame(522, 1, ClOrdID="99999999999999999999")
    gw = il.new_gateway_state()
    out = np.zeros(1, EXEC_REPORT)
    b = np.frombuffer(f, dtype=np.uint8)
    il.decode_frames(b, 0, len(b), out, 0, gw, 0)
    assert il.counters(gw)["foreign_cl_ord_id"] == 1 and out[0]["cl_ord_id"] == 0


@settings(max_examples=200, deadline=None)
@given(tid=st.sampled_from(sorted(V9.messages)), data=st.binary(max_size=400),
       cut=st.integers(0, 400))
def test_flat_codec_refuses_bad_bytes_with_value_error_only(tid: int, data: bytes,
                                                            cut: int) -> None:
    fc = il.flat_codec(tid)
    good = fc.encode({})
    for b in (data, good[:cut], good[:12] + data):
        with contextlib.suppress(ValueError):  # anything else fails the test
            fc.decode(b)
