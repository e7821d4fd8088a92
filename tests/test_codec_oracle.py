"""The generic codec on CME's real captures, checked against independent decoders.

* Every frame of every capture in ../shared/reference/pcap decodes without error,
  and the (templateId, MsgSize) lists match the reference README.
* UDP captures: every message equals PyPI ``sbedecoder``'s decoding with the
  matching schema XML, field for field.
* iLink 3 and MDP TCP captures: checked against a naive struct-based reader
  written here from the schema XML, and against the values the reference
  README lists.

sbedecoder 0.1.10 quirks (why the comparison maps some values, see ``_theirs``):
  - it has no null for enums: an optional enum (encodingType uInt8NULL) reports
    the raw 255 where we report None. We map its raw null to None.
  - ``TypeMessageField.value`` tests ``if self.null_value:``, so a nullValue of 0
    (charNULL) is never treated as null. No such field occurs in these captures;
    we compare raw values there.
  - a non-string char field comes back as ``bytes``; we report ``str``.
  - strings are cut at the first NUL (we strip trailing NULs): equal here because
    CME pads with NULs only.
  - it reads group fields without checking their sinceVersion, and uses the
    schema's blockLength for the root block instead of the wire one. With the
    schema that matches each capture's header version (what we pass it) neither
    matters, so every field is comparable.
  - it names message classes after the schema's ``description`` attribute (we use
    ``name``), so names are compared to the layout's description.
"""

from __future__ import annotations

import functools
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from adapters.capture import CaptureStats, read_capture
from core.sbe.codec import decode_message, iter_packet_messages
from core.sbe.schema import FieldLayout, Schema, bundled_schema, select_schema
from tests.conftest import PCAP_DIR

sbedecoder = pytest.importorskip("sbedecoder")
from sbedecoder.message import (  # noqa: E402
    CompositeMessageField,
    EnumMessageField,
    SetMessageField,
)

ALL_CAPTURES = sorted(PCAP_DIR.glob("*.pcap"))
UDP_CAPTURES = [p for p in ALL_CAPTURES if "_udp_" in p.name]

# (templateId, MsgSize) per message, as listed in ../shared/reference/README.md
README_MESSAGES = {
    "mdp3_v9_udp_MDIncrementalRefreshBook46.pcap": [(46, 1152), (46, 32)],
    "mdp3_v9_udp_MDIncrementalRefreshTradeSummary48.pcap": [
        (48, 112),
        (37, 40),
        (47, 104),
        (46, 64),
        (46, 64),
    ],
    "mdp3_v9_udp_MDIncrementalRefreshVolume37.pcap": [
        (37, 40),
        (46, 88),
        (46, 32),
        (48, 96),
        (37, 40),
        (46, 88),
        (46, 32),
    ],
    "mdp3_v8_udp_MDIncrementalRefreshTradeSummary42.pcap": [(42, 96), (37, 40), (32, 64)],
    "mdp3_v5_udp_MDIncrementalRefreshTradeSummary42.pcap": [(42, 160)],
}
README_SEQ = {
    "mdp3_v9_udp_MDIncrementalRefreshBook46.pcap": 1028095,
    "mdp3_v9_udp_MDIncrementalRefreshOrderBook47.pcap": 911525,
    "mdp3_v9_udp_MDIncrementalRefreshTradeSummary48.pcap": 884140,
    "mdp3_v9_udp_MDIncrementalRefreshVolume37.pcap": 1160087,
    "mdp3_v8_udp_MDIncrementalRefreshTradeSummary42.pcap": 17349477,
    "mdp3_v5_udp_MDIncrementalRefreshTradeSummary42.pcap": 19321415,
    "mdp3_v5_udp_MDInstrumentDefinition27_29.pcap": 2,
}


def _decode_capture(path: Path) -> list[dict[str, Any]]:
    """Every message of a capture, with its (templateId, MsgSize) and packet seq."""
    out = []
    stats = CaptureStats()
    for rec in read_capture(path, stats):
        if rec.protocol == "ilink3":
            msg, used = decode_message(rec.payload, 0)
            assert used == len(rec.payload), "SOFH length and message length disagree"
            out.append({"msg": msg, "size": len(rec.payload) + 4, "seq": None, "rec": rec})
            continue
        header, messages = iter_packet_messages(rec.payload)
        for pos, size in messages:
            msg, used = decode_message(rec.payload, pos + 2, pos + size)
            assert used == size - 2, f"{path.name}: message used {used} of MsgSize {size}"
            out.append(
                {"msg": msg, "size": size, "seq": header.msg_seq_num, "pos": pos, "rec": rec}
            )
    assert stats.malformed_total == 0, stats.malformed
    assert not stats.skipped, stats.skipped
    return out


@pytest.mark.parametrize("path", ALL_CAPTURES, ids=lambda p: p.name)
def test_every_frame_decodes(path: Path) -> None:
    decoded = _decode_capture(path)
    assert decoded, f"{path.name}: no messages"
    assert {d["rec"].frame for d in decoded} == {1}  # all reference captures have one frame
    if path.name in README_MESSAGES:
        got = [(d["msg"]["template_id"], d["size"]) for d in decoded]
        assert got == README_MESSAGES[path.name]
    if path.name in README_SEQ:
        assert {d["seq"] for d in decoded} == {README_SEQ[path.name]}


# --------------------------------------------------------------------------
# sbedecoder oracle (UDP captures)
# --------------------------------------------------------------------------
@functools.cache
def _oracle(schema_path: str) -> Any:
    schema = sbedecoder.MDPSchema()
    schema.parse(schema_path)
    return sbedecoder.SBEParser(sbedecoder.MDPMessageFactory(schema))


def _theirs(field: Any, layout: FieldLayout) -> Any:
    if isinstance(field, CompositeMessageField):
        parts = field.raw_value  # {member: value with null -> None, constants included}
        if layout.scalar_member is not None:
            return parts[layout.scalar_member.name]
        return parts
    if isinstance(field, EnumMessageField):
        raw = field.raw_value
        if layout.presence == "optional":
            raw_int = ord(raw) if isinstance(raw, str) else raw
            if raw_int == layout.null_value:
                return None  # sbedecoder has no null enums
        return raw
    if isinstance(field, SetMessageField):
        return field.raw_value
    if layout.presence == "optional" and layout.null_value == 0:
        # sbedecoder skips a falsy nullValue: compare the raw value instead
        raw = field.raw_value
        return None if raw in (0, b"\x00") else raw
    value = field.value
    if isinstance(value, bytes):  # a single, non-enum char
        value = value.decode("latin-1").rstrip("\x00")
    return value


def _compare_block(
    ours: dict[str, Any], fields: list[Any], layouts: tuple[FieldLayout, ...], where: str
) -> int:
    by_name = {f.original_name: f for f in fields}
    header = {"message_size", "blockLength", "templateId", "schemaId", "version"}
    assert set(by_name) - header == {lay.name for lay in layouts}, where
    assert list(ours) == [lay.name for lay in layouts], where
    for lay in layouts:
        theirs = _theirs(by_name[lay.name], lay)
        assert ours[lay.name] == theirs, (
            f"{where}.{lay.name}: ours {ours[lay.name]!r} != {theirs!r}"
        )
    return len(layouts)


def _compare(ours: dict[str, Any], theirs: Any, schema: Schema, size: int) -> int:
    layout = schema.messages[ours["template_id"]]
    assert type(theirs).__name__ == layout.description
    assert theirs.message_size.value == size
    assert theirs.template_id.value == ours["template_id"]
    assert theirs.schema_id.value == ours["schema_id"]
    assert theirs.version.value == ours["version"]
    assert theirs.block_length.value == ours["block_length"]
    n = _compare_block(ours["fields"], theirs.fields, layout.fields, layout.name)
    their_groups = {g.original_name: g for g in theirs.groups}
    assert set(their_groups) == set(ours["groups"]) == {g.name for g in layout.groups}
    for g in layout.groups:
        entries = ours["groups"][g.name]
        assert their_groups[g.name].num_groups == len(entries), g.name
        for i, (entry, their_entry) in enumerate(
            zip(entries, their_groups[g.name].repeating_groups, strict=True)
        ):
            n += _compare_block(entry, their_entry.fields, g.fields, f"{layout.name}.{g.name}[{i}]")
    return n


@pytest.mark.parametrize("path", UDP_CAPTURES, ids=lambda p: p.name)
def test_udp_capture_equals_sbedecoder(path: Path) -> None:
    compared = 0
    for rec in read_capture(path):
        _, messages = iter_packet_messages(rec.payload)
        positions = list(messages)
        ours = [decode_message(rec.payload, pos + 2, pos + size)[0] for pos, size in positions]
        versions = {m["version"] for m in ours}
        assert len(versions) == 1
        for m in ours:
            found = select_schema(1, m["version"], m["template_id"])
            assert found is not None and found.version == m["version"]  # the matching XML
            schema = found
        # sbedecoder re-wraps class-level field objects for each message of a
        # template: compare each message as the generator yields it.
        n_theirs = 0
        for m, t, (_, size) in zip(
            ours, _oracle(schema.path).parse(rec.payload, offset=12), positions, strict=True
        ):
            compared += _compare(m, t, schema, size)
            n_theirs += 1
        assert n_theirs == len(ours)
    assert compared > 0


def test_v9_book_capture_first_message_shape() -> None:
    decoded = _decode_capture(PCAP_DIR / "mdp3_v9_udp_MDIncrementalRefreshBook46.pcap")
    first = decoded[0]["msg"]
    assert len(first["groups"]["NoMDEntries"]) == 23
    assert len(first["groups"]["NoOrderIDEntries"]) == 16
    # v9 has no TradeableSize (sinceVersion 10): not even present as a key
    assert "TradeableSize" not in first["groups"]["NoMDEntries"][0]


def test_v12_tcp_values_from_readme() -> None:
    (book,) = _decode_capture(PCAP_DIR / "mdp3_v12_tcp_MDIncrementalRefreshBookLongQty64.pcap")
    msg = book["msg"]
    assert (msg["template_id"], msg["version"]) == (64, 12)
    (entry,) = msg["groups"]["NoMDEntries"]
    assert entry["SecurityID"] == 11827320
    assert entry["MDEntryPx"] == 1_208_150_000  # 1.20815 at exponent -9
    assert entry["MDEntrySize"] == 6_000_000
    assert entry["MDPriceLevel"] == 4
    assert entry["MDUpdateAction"] == 1  # Change
    assert entry["MDEntryType"] == "1"  # Offer
    # groupSize8Byte padding is not zero here (FC 47 00 00 00) and must be ignored
    assert msg["groups"]["NoOrderIDEntries"] == []

    (snap,) = _decode_capture(PCAP_DIR / "mdp3_v12_tcp_SnapshotFullRefreshTCPLongQty68.pcap")
    msg = snap["msg"]
    assert (msg["template_id"], msg["block_length"]) == (68, 37)
    assert msg["fields"]["SecurityID"] == 11827320
    entries = msg["groups"]["NoMDEntries"]
    assert len(entries) == 10
    assert {"w", "x"} <= {e["MDEntryType"] for e in entries}  # market best offer/bid
    assert bundled_schema(1, 12).messages[68].group("NoMDEntries").block_length == 23


def test_session_management_values() -> None:
    (ack,) = _decode_capture(PCAP_DIR / "mdp3_tcp_sessmgmt_RequestAck206.pcap")
    assert (ack["msg"]["schema_id"], ack["msg"]["template_id"]) == (2, 206)
    assert ack["msg"]["block_length"] == 6
    (req,) = _decode_capture(PCAP_DIR / "mdp3_tcp_sessmgmt_SecurityListRequest208.pcap")
    assert (req["msg"]["schema_id"], req["msg"]["template_id"], req["msg"]["block_length"]) == (
        2,
        208,
        5,
    )
    assert req["rec"].dst.endswith(":9232")  # client -> server


# --------------------------------------------------------------------------
# iLink 3: naive reader written from the XML (independent of core.sbe.schema)
# --------------------------------------------------------------------------
_FMT = {
    "char": "c", "int8": "b", "uint8": "B", "int16": "h", "uint16": "H",
    "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q",
}  # fmt: skip


def _naive_types(xml: str) -> dict[str, ET.Element]:
    root = ET.parse(xml).getroot()
    types = next(el for el in root if el.tag.endswith("types"))
    return {t.get("name", ""): t for t in types}


def _naive_read(types: dict[str, ET.Element], type_name: str, buf: bytes, pos: int) -> Any:
    t = types[type_name]
    tag = t.tag.rsplit("}", 1)[-1]
    if tag in ("enum", "set"):
        enc = types[t.get("encodingType", "")]
        return _naive_read(types, enc.get("name", ""), buf, pos)
    if tag == "composite":
        out, p = {}, pos
        for m in t:
            prim = m.get("primitiveType", "")
            if m.get("presence") == "constant":
                out[m.get("name")] = int(m.text or "0")
                continue
            p = pos + int(m.get("offset", p - pos))
            out[m.get("name")] = struct.unpack_from("<" + _FMT[prim], buf, p)[0]
            p += struct.calcsize(_FMT[prim])
        return out
    prim = t.get("primitiveType", "")
    length = int(t.get("length", "1"))
    if t.get("presence") == "constant":
        return (t.text or "").strip()
    if prim == "char":
        return buf[pos : pos + length].rstrip(b"\x00").decode("latin-1")
    return struct.unpack_from("<" + _FMT[prim], buf, pos)[0]


def _naive_null(types: dict[str, ET.Element], type_name: str) -> Any:
    t = types[type_name]
    if t.tag.rsplit("}", 1)[-1] in ("enum", "set"):
        t = types[t.get("encodingType", "")]
    nv = t.get("nullValue")
    return None if nv is None or t.get("presence") != "optional" else int(nv)


@pytest.mark.parametrize(
    "capture", ["ilink3_v5_tcp_Sequence506.pcap", "ilink3_v5_tcp_QuoteCancel528.pcap"]
)
def test_ilink3_field_for_field_against_naive_reader(capture: str) -> None:
    schema = bundled_schema(8, 5)
    types = _naive_types(schema.path)
    (item,) = _decode_capture(PCAP_DIR / capture)
    rec, msg = item["rec"], item["msg"]
    buf = rec.payload
    root = ET.parse(schema.path).getroot()
    xml_msg = next(
        m for m in root if m.tag.endswith("message") and int(m.get("id", "0")) == msg["template_id"]
    )
    block_length = struct.unpack_from("<H", buf, 0)[0]
    assert block_length == int(xml_msg.get("blockLength", "0"))
    pos = 8 + block_length
    checked = 0
    for el in xml_msg:
        tag = el.tag.rsplit("}", 1)[-1]
        if tag == "field":
            expected = _naive_read(types, el.get("type", ""), buf, 8 + int(el.get("offset", "0")))
            if expected == _naive_null(types, el.get("type", "")):
                expected = None
            got = msg["fields"][el.get("name", "")]
            if isinstance(expected, dict):
                layout_field = schema.messages[msg["template_id"]].field(el.get("name", ""))
                nulls = {m.name: m.null_value for m in layout_field.members}
                expected = {k: (None if v == nulls.get(k) else v) for k, v in expected.items()}
                if layout_field.scalar_member is not None:
                    expected = expected[layout_field.scalar_member.name]
            assert got == expected, el.get("name")
            checked += 1
        elif tag == "group":
            bl, count = struct.unpack_from("<HB", buf, pos)
            assert bl == int(el.get("blockLength", "0"))
            pos += 3
            entries = msg["groups"][el.get("name", "")]
            assert len(entries) == count
            for entry in entries:
                for f in el:
                    if f.get("offset") is None:
                        continue
                    expected = _naive_read(
                        types, f.get("type", ""), buf, pos + int(f.get("offset", "0"))
                    )
                    if expected == _naive_null(types, f.get("type", "")):
                        expected = None
                    assert entry[f.get("name", "")] == expected, f.get("name")
                    checked += 1
                pos += bl
    assert checked >= 4


def test_ilink3_sequence_values_from_readme() -> None:
    (item,) = _decode_capture(PCAP_DIR / "ilink3_v5_tcp_Sequence506.pcap")
    msg = item["msg"]
    assert (msg["schema_id"], msg["template_id"], msg["version"]) == (8, 506, 5)
    assert msg["name"] == "Sequence506"
    assert msg["fields"]["UUID"] == 1585839227794207
    assert msg["fields"]["NextSeqNo"] == 3
    fti = bundled_schema(8, 5).messages[506].field("FaultToleranceIndicator")
    assert fti.enum_values["Primary"] == msg["fields"]["FaultToleranceIndicator"]
    assert item["seq"] is None
