"""The hot-path MDP 3.0 decoder (core/sbe/mdp3.py) against independent references.

* ``reference_rows``: a naive normaliser written here from the documented row
  meaning (core/types.py), fed by the generic pure-Python codec. On every MDP
  capture in the reference set (UDP and MDP TCP), the kernel's rows equal it,
  row for row and field for field, with and without the typed fast paths.
* ``struct_book_rows``: a hand-written struct decoder of template 46/32 (offsets
  from CME's spec, not from our loader), compared on random valid messages.
* Wire facts from the reference README (sequence numbers, entry counts, the v5
  price 207775 with exponent -7), version handling, 32 vs 46, the facade.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import njit

from adapters.capture import read_capture
from core.sbe.codec import (
    decode_message,
    encode,
    encode_mdp_packet,
    iter_packet_messages,
)
from core.sbe.mdp3 import Mdp3Decoder, _decode_packet, build_plan, default_plan, plan_row
from core.sbe.schema import Schema, bundled_schema, select_schema
from core.types import (
    DROP_BAD_VALUE,
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
    N_DROP_REASONS,
)
from tests.conftest import PCAP_DIR

N64 = 2**63 - 1
NU64 = 2**64 - 1
N32 = 2**31 - 1
NU32 = 2**32 - 1
NU8 = 255

FIELDS: tuple[str, ...] = tuple(MD_EVENT.names or ())
COLUMN = {name: MD_EVENT[name] for name in FIELDS}


# --------------------------------------------------------------------------
# Reference normaliser: codec message dicts -> rows (dicts of MD_EVENT fields)
# --------------------------------------------------------------------------
def _or(v: Any, null: int) -> int:
    return null if v is None else int(v)


def _s64(v: Any, null: int = N64) -> int:
    """A uint64 (MDOrderPriority) as the int64 aux column holds it."""
    v = null if v is None else int(v)
    return v - 2**64 if v >= 2**63 else v


def _wrap(v: int, dtype: np.dtype) -> int:
    bits = dtype.itemsize * 8
    v &= (1 << bits) - 1
    return v - (1 << bits) if dtype.kind == "i" and v >> (bits - 1) else v


def _char(v: Any) -> int:
    return 0 if v is None else ord(v)


def _bits(v: Any, null: int = N64) -> int:
    """An int64 (price) stored in the uint64 order_id column."""
    return (null if v is None else int(v)) & NU64


def _exponent(schema_id: int, version: int, template_id: int) -> int:
    schema = select_schema(schema_id, version, template_id)
    assert schema is not None
    msg = schema.messages[template_id]
    for f in list(msg.fields) + [f for g in msg.groups for f in g.fields]:
        if f.exponent is not None and f.name.endswith(("Px", "Price")):
            return f.exponent
    # no price in the template: the schema's (legacy PRICE only in id 1 up to v8)
    return -7 if schema.id == 1 and schema.version <= 8 else -9


def _message_rows(m: dict[str, Any], offset: int, size: int) -> list[dict[str, Any]]:
    f = m["fields"]
    g = m["groups"]
    tid = m["template_id"]
    name = m["name"].rstrip("0123456789").removesuffix("LongQty")
    mei = _or(f.get("MatchEventIndicator"), 0)
    base = {"transact_time": _or(f.get("TransactTime"), 0), "match_event": mei,
            "template_id": tid}
    rows: list[dict[str, Any]] = []

    def row(kind: int, **kw: Any) -> dict[str, Any]:
        r = dict.fromkeys(FIELDS, 0)
        r.update(base)
        r["kind"] = kind
        r.update(kw)
        rows.append(r)
        return r

    if m["schema_id"] != 1:
        row(EV_OTHER, aux=offset, size=size)
    elif name == "MDIncrementalRefreshBook":
        book = []
        for e in g["NoMDEntries"]:
            book.append(row(
                EV_BOOK, price=_or(e["MDEntryPx"], N64), size=_or(e["MDEntrySize"], N64),
                security_id=e["SecurityID"], rpt_seq=e["RptSeq"],
                num_orders=_or(e["NumberOfOrders"], N32), price_level=e["MDPriceLevel"],
                action=e["MDUpdateAction"], entry_type=_char(e["MDEntryType"]),
                aux=_or(e.get("TradeableSize"), N64)))
        for o in g.get("NoOrderIDEntries", []):
            ref = o["ReferenceID"]
            if ref is None or not 1 <= ref <= len(book):
                continue
            b = book[ref - 1]
            row(EV_ORDER_REF, order_id=o["OrderID"], aux=_s64(o["MDOrderPriority"]),
                size=_or(o["MDDisplayQty"], N64), action=o["OrderUpdateAction"],
                price_level=ref, security_id=b["security_id"], rpt_seq=b["rpt_seq"],
                price=b["price"], entry_type=b["entry_type"])
    elif name == "MDIncrementalRefreshOrderBook":
        for e in g["NoMDEntries"]:
            row(EV_ORDER, order_id=_or(e["OrderID"], NU64), aux=_s64(e["MDOrderPriority"]),
                price=_or(e["MDEntryPx"], N64), size=_or(e["MDDisplayQty"], N64),
                security_id=e["SecurityID"], action=e["MDUpdateAction"],
                entry_type=_char(e["MDEntryType"]))
    elif name in ("MDIncrementalRefreshTradeSummary", "MDIncrementalRefreshTrade"):
        for e in g["NoMDEntries"]:
            aux_field = "TradeID" if "TradeID" in e else "MDTradeEntryID"
            row(EV_TRADE, price=e["MDEntryPx"], size=e["MDEntrySize"],
                security_id=e["SecurityID"], rpt_seq=e["RptSeq"],
                num_orders=_or(e["NumberOfOrders"], N32), side=_or(e["AggressorSide"], 0),
                action=e["MDUpdateAction"], entry_type=_char(e["MDEntryType"]),
                aux=_or(e[aux_field], N64) if aux_field in e else 0)
        for o in g.get("NoOrderIDEntries", []):
            row(EV_TRADE_ORDER, order_id=o["OrderID"], size=o["LastQty"])
    elif name == "MDIncrementalRefreshVolume":
        for e in g["NoMDEntries"]:
            row(EV_VOLUME, size=e["MDEntrySize"], security_id=e["SecurityID"],
                rpt_seq=e["RptSeq"], action=e["MDUpdateAction"],
                entry_type=_char(e["MDEntryType"]))
    elif name in ("MDIncrementalRefreshDailyStatistics", "MDIncrementalRefreshSessionStatistics",
                  "MDIncrementalRefreshLimitsBanding"):
        for e in g["NoMDEntries"]:
            flag = "SettlPriceType" if "SettlPriceType" in e else "OpenCloseSettlFlag"
            if "HighLimitPrice" in e:
                px, sz = _or(e["HighLimitPrice"], N64), _or(e["MaxPriceVariation"], N64)
                oid = _bits(e["LowLimitPrice"])
            else:
                px, sz, oid = _or(e["MDEntryPx"], N64), _or(e.get("MDEntrySize", 0), N64), 0
            row(EV_STAT, price=px, size=sz, order_id=oid, security_id=e["SecurityID"],
                rpt_seq=e["RptSeq"], action=_or(e["MDUpdateAction"], NU8),
                entry_type=_char(e["MDEntryType"]),
                aux=_or(e[flag], N64) if flag in e else 0)
    elif name == "ChannelReset":
        for e in g["NoMDEntries"]:
            row(EV_CHANNEL_RESET, aux=_or(e["ApplID"], N64),
                action=_or(e["MDUpdateAction"], NU8), entry_type=_char(e["MDEntryType"]))
        if not rows:
            row(EV_CHANNEL_RESET, aux=N64)
    elif name.startswith("Snapshot"):
        entries = g["NoMDEntries"]
        chunks = "CurrentChunk" in f
        root = row(
            EV_SNAPSHOT, security_id=f["SecurityID"],
            rpt_seq=f["CurrentChunk"] if chunks else _or(f.get("RptSeq"), NU32),
            aux=_or(f.get("LastMsgSeqNumProcessed"), N64), size=_or(f.get("TotNumReports"), N64),
            num_orders=len(entries), price=_or(f.get("HighLimitPrice"), N64),
            order_id=f["NoChunks"] if chunks else _bits(f.get("LowLimitPrice")),
            price_level=_or(f.get("MDSecurityTradingStatus"), NU8))
        for e in entries:
            if "OrderID" in e:
                extra = {"order_id": e["OrderID"], "aux": _s64(e["MDOrderPriority"]),
                         "size": e["MDDisplayQty"]}
            else:
                extra = {"aux": _or(e.get("TradeableSize"), N64),
                         "size": _or(e["MDEntrySize"], N64),
                         "num_orders": _or(e["NumberOfOrders"], N32),
                         "price_level": _or(e["MDPriceLevel"], NU8)}
            row(EV_SNAPSHOT_ENTRY, price=_or(e["MDEntryPx"], N64),
                entry_type=_char(e["MDEntryType"]), security_id=root["security_id"],
                rpt_seq=0 if chunks or "RptSeq" not in f else root["rpt_seq"], action=0,
                **extra)
    elif name in ("SecurityStatus", "SecurityStatusWorkup"):
        group = (f.get("SecurityGroup") or "").encode("latin-1")
        row(EV_STATUS, security_id=_or(f["SecurityID"], 0),
            aux=_or(f["SecurityTradingStatus"], N64), size=f["SecurityTradingEvent"],
            price_level=f["HaltReason"], order_id=int.from_bytes(group, "little"),
            price=_or(f["MDEntryPx"], N64) if "MDEntryPx" in f else 0)
    elif name.startswith("MDInstrumentDefinition"):
        row(EV_DEFINITION, security_id=f["SecurityID"], aux=offset, size=size)
    elif name == "AdminHeartbeat":
        row(EV_HEARTBEAT)
    else:
        row(EV_OTHER, aux=offset, size=size)
    if not rows:
        row(EV_NONE)
    recovery = name.startswith("Snapshot") or bool(mei & 0x20)
    for r in rows:
        r["price_exponent"] = _exponent(m["schema_id"], m["version"], tid)
        r["flags"] = FLAG_RECOVERY if recovery else 0
        for k, v in r.items():  # as the column stores it (an int8 -1 level is 255, ...)
            r[k] = _wrap(v, COLUMN[k])
    rows[-1]["flags"] |= FLAG_LAST_IN_MSG | (FLAG_END_OF_EVENT if mei & 0x80 else 0)
    return rows


def reference_rows(packet: bytes) -> list[dict[str, Any]]:
    """Rows the decoder must produce for a well-formed packet, via the generic codec."""
    header, msgs = iter_packet_messages(packet)
    out: list[dict[str, Any]] = []
    for i, (pos, size) in enumerate(msgs):
        m, _ = decode_message(packet, pos + 2, pos + size)
        for r in _message_rows(m, pos, size):
            r["msg_seq"] = header.msg_seq_num
            r["msg_index"] = i
            out.append(r)
    return out


def as_dicts(events: np.ndarray) -> list[dict[str, Any]]:
    return [{name: int(e[name]) for name in FIELDS} for e in events]


def assert_rows_equal(got: np.ndarray, want: list[dict[str, Any]]) -> None:
    rows = as_dicts(got)
    assert len(rows) == len(want), (len(rows), len(want))
    for i, (a, b) in enumerate(zip(rows, want, strict=True)):
        diff = {k: (a[k], b[k]) for k in FIELDS if a[k] != b[k]}
        assert not diff, f"row {i} ({b['kind']}, template {b['template_id']}): {diff}"


# --------------------------------------------------------------------------
# Real captures
# --------------------------------------------------------------------------
def _mdp_packets() -> list[tuple[str, int, bytes]]:
    out = []
    for path in sorted(PCAP_DIR.glob("mdp3_*.pcap")):
        for rec in read_capture(path):
            if rec.protocol in ("udp", "mdp-tcp"):
                out.append((path.name, rec.frame, rec.payload))
    return out


PACKETS = _mdp_packets() if PCAP_DIR.is_dir() else []
FAST = default_plan()
GENERIC = build_plan(fast_paths=False)


def test_every_mdp_capture_is_covered() -> None:
    names = {p[0] for p in PACKETS}
    on_disk = {p.name for p in PCAP_DIR.glob("mdp3_*.pcap")}
    assert names == on_disk and len(on_disk) >= 12


@pytest.mark.parametrize("plan", [FAST, GENERIC], ids=["fast", "generic"])
@pytest.mark.parametrize(("name", "frame", "packet"), PACKETS, ids=[p[0] for p in PACKETS])
def test_capture_rows_equal_the_codec(name: str, frame: int, packet: bytes,
                                      plan: np.ndarray) -> None:
    dec = Mdp3Decoder(plan=plan)
    rows = dec.decode(packet)
    assert not dec.drops.any(), dict(enumerate(dec.drops))
    assert_rows_equal(rows, reference_rows(packet))
    header, msgs = iter_packet_messages(packet)
    assert dec.header["msg_seq"] == header.msg_seq_num
    assert dec.header["sending_time"] == header.sending_time
    assert dec.header["n_messages"] == len(list(msgs))
    assert dec.header["n_events"] == len(rows)


def _capture(name: str) -> bytes:
    return next(p for n, _, p in PACKETS if n == name)


def test_readme_facts_template_46() -> None:
    dec = Mdp3Decoder()
    ev = dec.decode(_capture("mdp3_v9_udp_MDIncrementalRefreshBook46.pcap"))
    assert dec.header["msg_seq"] == 1028095
    assert int((ev["kind"] == EV_BOOK).sum()) == 23
    assert int((ev["kind"] == EV_ORDER_REF).sum()) == 16
    # the second 46 has no entries: one EV_NONE row carries its end of event
    assert ev[-1]["kind"] == EV_NONE and ev[-1]["flags"] & FLAG_END_OF_EVENT
    assert set(ev["price_exponent"]) == {-9}
    assert set(ev[ev["kind"] == EV_BOOK]["aux"]) == {N64}  # TradeableSize is v10+


def test_readme_facts_legacy_v5_price() -> None:
    ev = Mdp3Decoder().decode(_capture("mdp3_v5_udp_MDIncrementalRefreshBook32.pcap"))
    assert len(ev) == 2 and set(ev["security_id"]) == {13950}
    first = ev[0]
    assert first["price"] * 10.0 ** first["price_exponent"] == pytest.approx(207775)
    assert first["price_exponent"] == -7
    assert chr(first["entry_type"]) == "0" and first["action"] == 1  # Change, Bid


def test_readme_facts_order_book_47() -> None:
    ev = Mdp3Decoder().decode(_capture("mdp3_v9_udp_MDIncrementalRefreshOrderBook47.pcap"))
    assert len(ev) == 1
    e = ev[0]
    assert (e["kind"], e["order_id"], e["security_id"], e["action"], chr(e["entry_type"])) == (
        EV_ORDER, 76662054355, 532259, 0, "1")


def test_readme_facts_end_of_event_positions() -> None:
    ev = Mdp3Decoder().decode(_capture("mdp3_v9_udp_MDIncrementalRefreshVolume37.pcap"))
    last = ev[(ev["flags"] & FLAG_LAST_IN_MSG) != 0]
    assert len(last) == 7  # one row closes each of the 7 messages
    eoe = [int(m) for m in last["msg_index"][(last["flags"] & FLAG_END_OF_EVENT) != 0]]
    assert eoe == [2, 6]  # EndOfEvent on the 3rd and 7th messages


def test_readme_facts_long_qty_64_over_tcp() -> None:
    ev = Mdp3Decoder().decode(_capture("mdp3_v12_tcp_MDIncrementalRefreshBookLongQty64.pcap"))
    book = ev[ev["kind"] == EV_BOOK]
    assert len(book) == 1
    b = book[0]
    assert (b["security_id"], b["size"], b["price_level"], b["action"], chr(b["entry_type"])) == (
        11827320, 6000000, 4, 1, "1")
    assert b["price"] * 1e-9 == pytest.approx(1.20815)


def test_definition_rows_point_at_their_message() -> None:
    packet = _capture("mdp3_v5_udp_MDInstrumentDefinition27_29.pcap")
    ev = Mdp3Decoder().decode(packet)
    assert list(ev["kind"]) == [EV_DEFINITION] * 5
    for e in ev:
        pos, size = int(e["aux"]), int(e["size"])
        assert struct.unpack_from("<H", packet, pos)[0] == size
        m, _ = decode_message(packet, pos + 2, pos + size)
        assert m["template_id"] == e["template_id"]
        assert m["fields"]["SecurityID"] == e["security_id"]


def test_session_messages_of_schema_2_are_other_rows() -> None:
    for name in ("mdp3_tcp_sessmgmt_RequestAck206.pcap",
                 "mdp3_tcp_sessmgmt_SecurityListRequest208.pcap"):
        ev = Mdp3Decoder().decode(_capture(name))
        assert len(ev) == 1 and ev[0]["kind"] == EV_OTHER
        assert ev[0]["template_id"] in (206, 208)


# --------------------------------------------------------------------------
# Encoder-made messages
# --------------------------------------------------------------------------
def _packet(*messages: bytes, seq: int = 7, t: int = 1_700_000_000_000_000_000) -> bytes:
    return encode_mdp_packet(seq, t, list(messages))


def _book_entry(i: int, **kw: Any) -> dict[str, Any]:
    e = {"MDEntryPx": 4_500_250_000_000 + i * 250_000_000, "MDEntrySize": 10 + i,
         "SecurityID": 555 + (i % 3), "RptSeq": 100 + i, "NumberOfOrders": 1 + i,
         "MDPriceLevel": 1 + (i % 10), "MDUpdateAction": i % 3, "MDEntryType": "01EF"[i % 4]}
    e.update(kw)
    return e


def _order_ref(i: int, ref: int | None) -> dict[str, Any]:
    return {"OrderID": 9_000_000 + i, "MDOrderPriority": 77 + i, "MDDisplayQty": 5 + i,
            "ReferenceID": ref, "OrderUpdateAction": i % 3}


def _msg(template_id: int, schema: Schema, groups: dict[str, Any], version: int | None = None,
         mei: int = 0x84, **fields: Any) -> bytes:
    f = {"TransactTime": 1_700_000_000_123_456_789, "MatchEventIndicator": mei, **fields}
    return encode({"template_id": template_id, "fields": f, "groups": groups}, schema,
                  version=version)


V8 = bundled_schema(1, 8)
V9 = bundled_schema(1, 9)
V12 = bundled_schema(1, 12)
V13 = bundled_schema(1, 13)


def _strip(rows: np.ndarray, *names: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in names} for r in as_dicts(rows)]


def test_template_32_and_46_give_the_same_rows() -> None:
    entries = [_book_entry(i) for i in range(4)]
    orders = [_order_ref(i, 1 + (i % 4)) for i in range(5)]
    groups = {"NoMDEntries": entries, "NoOrderIDEntries": orders}
    legacy = _packet(_msg(32, V8, groups, version=8))
    new = _packet(_msg(46, V9, groups, version=9))
    a = Mdp3Decoder().decode(legacy).copy()
    b = Mdp3Decoder().decode(new).copy()
    assert len(a) == 9
    assert set(a["template_id"]) == {32} and set(b["template_id"]) == {46}
    assert set(a["price_exponent"]) == {-7} and set(b["price_exponent"]) == {-9}
    assert _strip(a, "template_id", "price_exponent") == _strip(
        b, "template_id", "price_exponent")


def test_field_newer_than_the_header_version_reads_null() -> None:
    entries = [_book_entry(0, TradeableSize=None), _book_entry(1, TradeableSize=3)]
    v13 = Mdp3Decoder().decode(_packet(_msg(46, V13, {"NoMDEntries": entries}, version=13)))
    assert list(v13["aux"]) == [N64, 3]
    # same layout, header version 9: bytes 27..30 are padding, whatever they hold
    raw = bytearray(_packet(_msg(46, V13, {"NoMDEntries": [_book_entry(1, TradeableSize=3)]},
                                 version=13)))
    struct.pack_into("<H", raw, 12 + 2 + 6, 9)  # version field of the SBE header
    v9 = Mdp3Decoder().decode(bytes(raw))
    assert list(v9["aux"]) == [N64]
    assert v9[0]["size"] == 11  # the rest of the entry still decodes


@pytest.mark.parametrize("version", [10, 11, 14, 200])
def test_versions_between_and_after_bundled_schemas(version: int) -> None:
    # v10/v11 decode with v12 (smallest bundled >= version), newer with v13
    row = plan_row(default_plan(), 1, version, 46)
    assert row is not None
    entries = [_book_entry(0, TradeableSize=42)]
    raw = bytearray(_packet(_msg(46, V13, {"NoMDEntries": entries}, version=13)))
    struct.pack_into("<H", raw, 12 + 2 + 6, version)
    ev = Mdp3Decoder().decode(bytes(raw))
    assert_rows_equal(ev, reference_rows(bytes(raw)))
    assert ev[0]["aux"] == 42


def test_unknown_trailing_bytes_are_stepped_over() -> None:
    entries = [_book_entry(i) for i in range(3)]
    plain = _packet(_msg(46, V9, {"NoMDEntries": entries, "NoOrderIDEntries": []}))
    # a root block 5 bytes longer and entries 6 bytes longer than the schema knows
    hdr = struct.pack("<HHHH", 11 + 5, 46, 1, 9)
    root = struct.pack("<QB2x", 1_700_000_000_123_456_789, 0x84) + b"\xaa" * 5
    body = b"".join(
        struct.pack("<qiiIiBBc", e["MDEntryPx"], e["MDEntrySize"], e["SecurityID"], e["RptSeq"],
                    e["NumberOfOrders"], e["MDPriceLevel"], e["MDUpdateAction"],
                    e["MDEntryType"].encode()) + b"\x00" * 5 + b"\xbb" * 6
        for e in entries)
    group = struct.pack("<HB", 32 + 6, 3) + body + struct.pack("<H5xB", 24, 0)
    wide = _packet(hdr + root + group)
    a = Mdp3Decoder().decode(plain).copy()
    b = Mdp3Decoder().decode(wide).copy()
    assert len(a) == 3
    assert as_dicts(a) == as_dicts(b)


def test_snapshot_status_reset_stats_and_trades_match_the_reference() -> None:
    v13 = V13
    msgs = [
        _msg(52, v13, {"NoMDEntries": [
            {"MDEntryPx": 100, "MDEntrySize": 5, "NumberOfOrders": 2, "MDPriceLevel": 1,
             "MDEntryType": "0", "OpenCloseSettlFlag": None, "SettlPriceType": 0,
             "TradingReferenceDate": None},
            {"MDEntryPx": None, "MDEntrySize": None, "NumberOfOrders": None,
             "MDPriceLevel": None, "MDEntryType": "6", "OpenCloseSettlFlag": None,
             "SettlPriceType": 3, "TradingReferenceDate": 19000}]},
             LastMsgSeqNumProcessed=1234, TotNumReports=10, SecurityID=555, RptSeq=99,
             LastUpdateTime=5, TradeDate=19000, MDSecurityTradingStatus=17,
             HighLimitPrice=120, LowLimitPrice=None, MaxPriceVariation=7),
        _msg(53, v13, {"NoMDEntries": [
            {"OrderID": 1, "MDOrderPriority": None, "MDEntryPx": 100, "MDDisplayQty": 3,
             "MDEntryType": "1"}]},
             LastMsgSeqNumProcessed=1234, TotNumReports=3, SecurityID=555, NoChunks=4,
             CurrentChunk=2),
        _msg(30, v13, {}, SecurityGroup="ES", Asset="ES", SecurityID=None, TradeDate=19000,
             SecurityTradingStatus=17, HaltReason=0, SecurityTradingEvent=4),
        _msg(30, v13, {}, mei=0x80, SecurityGroup="NQ", Asset="NQ", SecurityID=777,
             TradeDate=19000, SecurityTradingStatus=None, HaltReason=2, SecurityTradingEvent=0),
        _msg(4, v13, {"NoMDEntries": [{"ApplID": 310}]}),
        _msg(4, v13, {"NoMDEntries": []}),
        _msg(12, v13, {}),
        _msg(49, v13, {"NoMDEntries": [
            {"MDEntryPx": 4_500_000_000_000, "MDEntrySize": None, "SecurityID": 555,
             "RptSeq": 5, "TradingReferenceDate": 19000, "SettlPriceType": 3,
             "MDUpdateAction": 0, "MDEntryType": "6"}]}),
        _msg(50, v13, {"NoMDEntries": [
            {"HighLimitPrice": 10, "LowLimitPrice": -20, "MaxPriceVariation": None,
             "SecurityID": 555, "RptSeq": 6}]}),
        _msg(51, v13, {"NoMDEntries": [
            {"MDEntryPx": 11, "SecurityID": 555, "RptSeq": 7, "OpenCloseSettlFlag": 5,
             "MDUpdateAction": 0, "MDEntryType": "4", "MDEntrySize": 8}]}),
        _msg(48, v13, {"NoMDEntries": [
            {"MDEntryPx": 12, "MDEntrySize": 3, "SecurityID": 555, "RptSeq": 8,
             "NumberOfOrders": 2, "AggressorSide": None, "MDUpdateAction": 0,
             "MDTradeEntryID": None}],
            "NoOrderIDEntries": [{"OrderID": 5, "LastQty": 1}, {"OrderID": 6, "LastQty": 2}]}),
        _msg(37, v13, {"NoMDEntries": [
            {"MDEntrySize": 9, "SecurityID": 555, "RptSeq": 9, "MDUpdateAction": 0}]}),
        _msg(47, v13, {"NoMDEntries": [
            {"OrderID": None, "MDOrderPriority": 3, "MDEntryPx": None, "MDDisplayQty": None,
             "SecurityID": 555, "MDUpdateAction": 2, "MDEntryType": "0"}]}),
    ]
    packet = _packet(*msgs)
    for plan in (FAST, GENERIC):
        dec = Mdp3Decoder(plan=plan)
        ev = dec.decode(packet)
        assert not dec.drops.any()
        assert_rows_equal(ev, reference_rows(packet))
    kinds = [int(k) for k in ev["kind"]]
    assert kinds[:6] == [EV_SNAPSHOT, EV_SNAPSHOT_ENTRY, EV_SNAPSHOT_ENTRY, EV_SNAPSHOT,
                         EV_SNAPSHOT_ENTRY, EV_STATUS]
    status = ev[ev["kind"] == EV_STATUS]
    assert status[0]["security_id"] == 0 and status[0]["order_id"] == int.from_bytes(
        b"ES", "little")
    assert status[1]["aux"] == N64
    resets = ev[ev["kind"] == EV_CHANNEL_RESET]
    assert list(resets["aux"]) == [310, N64]
    limits = ev[(ev["kind"] == EV_STAT) & (ev["entry_type"] == ord("g"))]
    assert int(limits[0]["order_id"].astype(np.int64)) == -20 and limits[0]["size"] == N64
    snap = ev[ev["kind"] == EV_SNAPSHOT]
    assert snap[0]["num_orders"] == 2 and snap[0]["order_id"] == N64  # LowLimitPrice null
    assert (snap[1]["rpt_seq"], snap[1]["order_id"]) == (2, 4)  # CurrentChunk, NoChunks
    assert all(ev[ev["kind"] == EV_SNAPSHOT_ENTRY]["flags"] & FLAG_RECOVERY)


def test_invalid_reference_id_drops_that_row_only() -> None:
    entries = [_book_entry(0), _book_entry(1)]
    orders = [_order_ref(0, 2), _order_ref(1, 3), _order_ref(2, None), _order_ref(3, 0),
              _order_ref(4, 1)]
    dec = Mdp3Decoder()
    ev = dec.decode(_packet(_msg(46, V9, {"NoMDEntries": entries, "NoOrderIDEntries": orders})))
    assert dec.drops[DROP_BAD_VALUE] == 3
    refs = ev[ev["kind"] == EV_ORDER_REF]
    assert list(refs["price_level"]) == [2, 1]
    assert list(refs["security_id"]) == [ev[1]["security_id"], ev[0]["security_id"]]
    assert ev[-1]["flags"] & FLAG_LAST_IN_MSG


# --------------------------------------------------------------------------
# Independent struct-based decoder of the book path (46 / 32)
# --------------------------------------------------------------------------
def struct_book_rows(packet: bytes) -> list[tuple[Any, ...]]:
    """(kind, security_id, rpt_seq, price, size, num_orders, level, action, entry_type,
    order_id, priority) per entry, offsets as in CME's MDP 3.0 spec for 46/32."""
    out: list[tuple[Any, ...]] = []
    pos = 12
    while pos < len(packet):
        size, bl, _tid, _sid, _ver = struct.unpack_from("<HHHHH", packet, pos)
        p = pos + 10 + bl
        ebl, n = struct.unpack_from("<HB", packet, p)
        p += 3
        book = []
        for _ in range(n):
            px, qty, sec, rpt, no, lvl, act, et = struct.unpack_from("<qiiIiBBc", packet, p)
            book.append((EV_BOOK, sec, rpt, px, N64 if qty == N32 else qty,
                         no, lvl, act, et[0], 0, 0))
            p += ebl
        out.extend(book)
        if p < pos + size:
            obl, on = struct.unpack_from("<H5xB", packet, p)
            p += 8
            for _ in range(on):
                oid, prio, disp, ref, oact = struct.unpack_from("<QQiBB", packet, p)
                b = book[ref - 1]
                prio = N64 if prio == NU64 else prio - (prio >> 63 << 64)  # int64 bits
                out.append((EV_ORDER_REF, b[1], b[2], b[3], N64 if disp == N32 else disp, 0,
                            ref, oact, b[8], oid, prio))
                p += obl
        pos += size
    return out


_entry = st.fixed_dictionaries({
    "MDEntryPx": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 2)),
    "MDEntrySize": st.one_of(st.none(), st.integers(-(2**31), 2**31 - 2)),
    "SecurityID": st.integers(-(2**31), 2**31 - 1),
    "RptSeq": st.integers(0, 2**32 - 1),
    "NumberOfOrders": st.integers(0, 2**31 - 2),
    "MDPriceLevel": st.integers(0, 255),
    "MDUpdateAction": st.integers(0, 5),
    "MDEntryType": st.sampled_from("01EFJ"),
})


@st.composite
def _book_packet(draw: Any) -> bytes:
    messages = []
    for _ in range(draw(st.integers(1, 4))):
        entries = draw(st.lists(_entry, max_size=8))
        orders = [
            {"OrderID": draw(st.integers(0, 2**64 - 1)),
             "MDOrderPriority": draw(st.one_of(st.none(), st.integers(0, 2**64 - 2))),
             "MDDisplayQty": draw(st.one_of(st.none(), st.integers(0, 2**31 - 2))),
             "ReferenceID": draw(st.integers(1, len(entries))),
             "OrderUpdateAction": draw(st.integers(0, 2))}
            for _ in range(draw(st.integers(0, 6)) if entries else 0)]
        legacy = draw(st.booleans())
        schema, tid = (V8, 32) if legacy else (V9, 46)
        messages.append(_msg(tid, schema, {"NoMDEntries": entries, "NoOrderIDEntries": orders},
                             mei=draw(st.integers(0, 255))))
    return _packet(*messages, seq=draw(st.integers(0, 2**32 - 1)))


def _kernel_book_rows(ev: np.ndarray) -> list[tuple[Any, ...]]:
    out = []
    for e in ev:
        if e["kind"] not in (EV_BOOK, EV_ORDER_REF):
            continue
        ref = e["kind"] == EV_ORDER_REF
        out.append((int(e["kind"]), int(e["security_id"]), int(e["rpt_seq"]), int(e["price"]),
                    int(e["size"]), 0 if ref else int(e["num_orders"]), int(e["price_level"]),
                    int(e["action"]), int(e["entry_type"]), int(e["order_id"]),
                    int(e["aux"]) if ref else 0))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_book_packet())
def test_book_path_equals_the_struct_reference(packet: bytes) -> None:
    for plan in (FAST, GENERIC):
        dec = Mdp3Decoder(plan=plan)
        ev = dec.decode(packet)
        assert not dec.drops.any()
        assert _kernel_book_rows(ev) == struct_book_rows(packet)
        assert_rows_equal(ev, reference_rows(packet))


# --------------------------------------------------------------------------
# Facade
# --------------------------------------------------------------------------
def test_decode_many_equals_packet_by_packet() -> None:
    packets = [p for _, _, p in PACKETS] * 3
    dec = Mdp3Decoder(capacity=64)  # the stream output grows past the capacity
    events, headers = dec.decode_many(packets)
    one = Mdp3Decoder()
    want: list[dict[str, Any]] = []
    for i, p in enumerate(packets):
        rows = as_dicts(one.decode(p))
        want.extend(rows)
        assert int(headers[i]["n_events"]) == len(rows)
        assert headers[i]["msg_seq"] == one.header["msg_seq"]
        assert headers[i]["sending_time"] == one.header["sending_time"]
    assert as_dicts(events) == want
    assert not dec.drops.any()
    assert dec.header["msg_seq"] == headers[-1]["msg_seq"]


def test_decode_accepts_arrays_views_and_bytes() -> None:
    packet = _capture("mdp3_v9_udp_MDIncrementalRefreshTradeSummary48.pcap")
    want = as_dicts(Mdp3Decoder().decode(packet))
    buf = np.zeros(4096, dtype=np.uint8)
    buf[:len(packet)] = np.frombuffer(packet, dtype=np.uint8)
    dec = Mdp3Decoder()
    assert as_dicts(dec.decode(buf, len(packet))) == want
    assert as_dicts(dec.decode(memoryview(bytearray(packet)))) == want
    assert as_dicts(dec.decode(np.frombuffer(packet, dtype=np.uint8))) == want  # read-only
    with pytest.raises(ValueError):
        dec.decode(buf, 5000)


def test_small_capacity_counts_events_full() -> None:
    packet = _capture("mdp3_v9_udp_MDIncrementalRefreshVolume37.pcap")
    dec = Mdp3Decoder(capacity=3)
    ev = dec.decode(packet)
    assert dec.drops.shape == (N_DROP_REASONS,)
    assert dec.drops.sum() == 1 and dec.drops[6] == 1  # DROP_EVENTS_FULL
    assert len(ev) == 3  # whole messages only: 37 (1 row), then 46 (2 rows)
    assert list(ev["msg_index"]) == [0, 1, 1]


def test_plan_is_read_only_and_rebuilds_identically(tmp_path: Path) -> None:
    plan = default_plan()
    assert not plan.flags.writeable
    assert np.array_equal(plan, build_plan())
    with pytest.raises(ValueError):
        Mdp3Decoder(plan=np.zeros(4, dtype=np.int64))


@njit(cache=True)
def _fused_sum(buf: Any, n: int, plan: Any, events: Any, drops: Any, header: Any) -> Any:
    """What the book does: decode inside its own kernel, then use the rows."""
    k = _decode_packet(buf, n, plan, events, 0, drops, header)
    total = 0
    for i in range(k):
        total += events[i].size + events[i].security_id
    return k, total


def test_kernel_is_callable_from_another_kernel() -> None:
    packet = _capture("mdp3_v9_udp_MDIncrementalRefreshTradeSummary48.pcap")
    buf = np.frombuffer(packet, dtype=np.uint8).copy()
    dec = Mdp3Decoder()
    k, total = _fused_sum(buf, len(packet), dec.plan, dec.events, dec.drops, dec._header)
    want = Mdp3Decoder().decode(packet)
    assert k == len(want)
    assert total == int(want["size"].astype(np.int64).sum() + want["security_id"].sum())
