"""Encoder/decoder properties of the generic SBE codec.

* decode(encode(x)) == x for every template of every bundled schema, on random
  valid messages drawn from the layout (nulls, constants, older header versions,
  groups of 0..N entries, nested groups and var data where the schema has them).
* encode(decode(bytes)) == bytes for every message of the real captures.
* Version handling on the wire (blockLength, sinceVersion), framing helpers, and
  fuzzing: random/truncated bytes only ever raise DecodeError.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.capture import read_capture
from core.sbe.codec import (
    DecodeError,
    EncodeError,
    decode,
    decode_message,
    decode_packet,
    encode,
    encode_mdp_packet,
    encode_mdp_tcp_packet,
    encode_sofh,
    iter_packet_messages,
    split_mdp_tcp,
    split_sofh,
)
from core.sbe.schema import (
    PRIMITIVE_SIZES,
    FieldLayout,
    GroupLayout,
    MessageLayout,
    Schema,
    bundled_schema,
    bundled_schemas,
    load_schema,
    select_schema,
)
from tests.conftest import PCAP_DIR

_RANGES = {
    p: (
        (-(2 ** (8 * n - 1)), 2 ** (8 * n - 1) - 1)
        if p.startswith("int")
        else (0, 2 ** (8 * n) - 1)
    )
    for p, n in PRIMITIVE_SIZES.items()
    if p not in ("char", "float", "double")
}
_LATIN1_NO_NUL = st.characters(min_codepoint=1, max_codepoint=255)


# --------------------------------------------------------------------------
# strategies drawn from the layouts
# --------------------------------------------------------------------------
def _scalar(f: FieldLayout) -> st.SearchStrategy[Any]:
    optional = f.presence == "optional"
    null = f.null_value
    if f.primitive == "char":
        if f.kind == "enum":
            chars = st.characters(min_codepoint=0, max_codepoint=255)
            if f.enum_values:
                chars = st.sampled_from(sorted(str(v) for v in f.enum_values.values())) | chars
            base = chars.filter(lambda c: not optional or ord(c) != null)
            return st.none() | base if optional else base
        if f.length == 1:
            one = st.text(_LATIN1_NO_NUL, max_size=1)
            if optional:
                return st.none() | one.filter(lambda s: s != "" and ord(s) != null)
            return one
        return st.text(_LATIN1_NO_NUL, max_size=f.length)
    if f.primitive in ("float", "double"):
        floats = st.floats(allow_nan=False, width=32 if f.primitive == "float" else 64)
        return st.none() | floats if optional else floats
    lo, hi = _RANGES[f.primitive]
    ints = st.integers(lo, hi)
    if f.kind == "enum" and f.enum_values:
        ints = st.sampled_from(sorted(int(v) for v in f.enum_values.values())) | ints
    if f.length > 1:
        return st.lists(ints, min_size=f.length, max_size=f.length)
    if optional:
        return st.none() | ints.filter(lambda v: v != null)
    return ints


def _member_value(m: FieldLayout, version: int) -> st.SearchStrategy[Any]:
    if m.since_version > version:
        return st.none()
    if m.presence == "constant":
        return st.just(m.constant)
    if m.kind == "composite":
        return _composite(m, version)
    return _scalar(m)


def _composite(f: FieldLayout, version: int) -> st.SearchStrategy[Any]:
    if f.scalar_member is not None:
        return _member_value(f.scalar_member, version)
    return st.fixed_dictionaries({m.name: _member_value(m, version) for m in f.members})


def _field_value(f: FieldLayout, version: int) -> st.SearchStrategy[Any]:
    return _member_value(f, version)


def _block(
    fields: tuple[FieldLayout, ...], groups: tuple[GroupLayout, ...], datas: tuple, version: int
) -> st.SearchStrategy[dict[str, Any]]:
    d: dict[str, st.SearchStrategy[Any]] = {f.name: _field_value(f, version) for f in fields}
    for g in groups:
        d[g.name] = _group(g, version)
    for v in datas:
        if v.since_version > version:
            d[v.name] = st.none()
        elif v.data_primitive == "char":
            d[v.name] = st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=20)
        else:
            d[v.name] = st.binary(max_size=20)
    return st.fixed_dictionaries(d)


def _group(g: GroupLayout, version: int) -> st.SearchStrategy[list[dict[str, Any]]]:
    if g.since_version > version:
        return st.just([])
    return st.lists(_block(g.fields, g.groups, g.var_data, version), max_size=3)


@st.composite
def _messages(draw: st.DrawFn, schema: Schema, msg: MessageLayout) -> dict[str, Any]:
    # any header version from the one that introduced the template up to the schema's
    version = draw(st.integers(min(msg.since_version, schema.version), schema.version))
    fields = draw(_block(msg.fields, (), msg.var_data, version))
    groups = {g.name: draw(_group(g, version)) for g in msg.groups}
    return {
        "template_id": msg.id,
        "schema_id": schema.id,
        "version": version,
        "name": msg.name,
        "block_length": msg.block_length,
        "fields": fields,
        "groups": groups,
    }


TEMPLATES = [
    pytest.param(s.id, s.version, t, id=f"s{s.id}v{s.version}-{s.messages[t].name}")
    for s in bundled_schemas()
    for t in sorted(s.messages)
]


@pytest.mark.parametrize(("schema_id", "version", "template_id"), TEMPLATES)
def test_decode_encode_roundtrip(schema_id: int, version: int, template_id: int) -> None:
    schema = bundled_schema(schema_id, version)
    msg = schema.messages[template_id]

    @settings(
        max_examples=6,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        database=None,
    )
    @given(_messages(schema, msg))
    def roundtrip(x: dict[str, Any]) -> None:
        wire = encode(x, schema)
        assert decode(wire, schema=schema) == x
        _, used = decode_message(wire, 0, schema=schema)
        assert used == len(wire)
        # the framed form decodes to the same message
        _, (again,) = decode_packet(encode_mdp_packet(7, 99, [wire]), schema=schema)
        assert again == x

    roundtrip()


def test_every_template_is_covered() -> None:
    assert len(TEMPLATES) == sum(len(s.messages) for s in bundled_schemas())
    assert len(TEMPLATES) > 300


# --------------------------------------------------------------------------
# real captures: encode(decode(b)) == b
# --------------------------------------------------------------------------
def _zero_dimension_padding(data: bytes, schema: Schema, msg: dict[str, Any]) -> bytes:
    """Zero the padding bytes of groupSize8Byte dimensions (CME sends garbage there)."""
    out = bytearray(data)
    layout = schema.messages[msg["template_id"]]
    pos = 8 + msg["block_length"]
    for g in layout.groups:
        dim = g.dimension
        used = {i for m in dim.members for i in range(m.offset, m.offset + m.size)}
        for i in range(dim.size):
            if i not in used:
                out[pos + i] = 0
        bl = struct.unpack_from("<H", data, pos + dim.member("blockLength").offset)[0]
        pos += dim.size + bl * len(msg["groups"][g.name])
    return bytes(out)


@pytest.mark.parametrize("path", sorted(PCAP_DIR.glob("*.pcap")), ids=lambda p: p.name)
def test_real_messages_reencode_byte_for_byte(path: Any) -> None:
    n = 0
    for rec in read_capture(path):
        if rec.protocol == "ilink3":
            spans = [(0, len(rec.payload))]
        else:
            _, msgs = iter_packet_messages(rec.payload)
            spans = [(pos + 2, size - 2) for pos, size in msgs]
        for start, length in spans:
            original = rec.payload[start : start + length]
            msg = decode(original)
            schema = select_schema(msg["schema_id"], msg["version"], msg["template_id"])
            assert schema is not None
            again = encode(msg, schema)
            assert again == _zero_dimension_padding(original, schema, msg)
            n += 1
    assert n > 0


def test_v12_padding_really_is_nonzero() -> None:
    """Guard for the helper above: the v12 template-64 capture has FC 47 00 00 00 there."""
    (rec,) = read_capture(PCAP_DIR / "mdp3_v12_tcp_MDIncrementalRefreshBookLongQty64.pcap")
    _, msgs = iter_packet_messages(rec.payload)
    ((pos, size),) = list(msgs)
    tail = rec.payload[pos + size - 8 : pos + size]
    assert tail == bytes.fromhex("1800fc4700000000")


# --------------------------------------------------------------------------
# versions on the wire
# --------------------------------------------------------------------------
def test_field_newer_than_header_version_is_null() -> None:
    v13 = bundled_schema(1, 13)
    entry = {
        "MDEntryPx": 123, "MDEntrySize": 4, "SecurityID": 5, "RptSeq": 6, "NumberOfOrders": 1,
        "MDPriceLevel": 1, "MDUpdateAction": 0, "MDEntryType": "0", "TradeableSize": None,
    }  # fmt: skip
    x = {
        "template_id": 46, "version": 9, "fields": {"TransactTime": 1, "MatchEventIndicator": 128},
        "groups": {"NoMDEntries": [entry], "NoOrderIDEntries": []},
    }  # fmt: skip
    wire = bytearray(encode(x, v13))
    # a v9 sender leaves the TradeableSize bytes (offset 27 of the entry) as padding:
    # even non-zero padding must read as null because the header says version 9
    entry_at = 8 + 11 + 3
    wire[entry_at + 27 : entry_at + 31] = b"\x05\x00\x00\x00"
    got = decode(bytes(wire), schema=v13)
    assert got["groups"]["NoMDEntries"][0]["TradeableSize"] is None
    struct.pack_into("<H", wire, 6, 13)  # header version -> 13: now the field is real
    got13 = decode(bytes(wire), schema=v13)
    assert got13["groups"]["NoMDEntries"][0]["TradeableSize"] == 5


def test_wire_block_length_longer_and_shorter_than_schema() -> None:
    v9 = bundled_schema(1, 9)
    v13 = bundled_schema(1, 13)
    # a v13 template-54 message (224-byte block) decoded with the v9 layout (216):
    msg = {"template_id": 54, "fields": {"SecurityID": 42, "Symbol": "ESZ5"}, "groups": {}}
    fields13 = {f.name: None for f in v13.messages[54].fields}
    msg13 = dict(msg, fields={**fields13, **_required_defaults(v13.messages[54]), "SecurityID": 42})
    wire = encode(msg13, v13)
    assert struct.unpack_from("<H", wire, 0)[0] == 224
    as_v9 = decode(wire, schema=v9)  # unknown trailing 8 bytes are stepped over
    assert as_v9["fields"]["SecurityID"] == 42
    assert as_v9["block_length"] == 224
    assert [g for g in as_v9["groups"].values()] == [[], [], [], []]
    # and a shorter block than the layout: the missing trailing fields read as null
    short = dict(msg13, block_length=216, version=9)
    wire9 = encode(short, v13, version=9)
    back = decode(wire9, schema=v13)
    assert back["fields"]["SecurityID"] == 42
    assert back["fields"]["InstrumentGUID"] is None


def _required_defaults(msg: MessageLayout) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in msg.fields:
        if f.presence == "constant" or (f.since_version > 0 and f.presence == "optional"):
            continue
        if f.kind == "composite":
            if f.scalar_member is not None:
                out[f.name] = None if f.scalar_member.presence == "optional" else 0
            else:
                out[f.name] = {}
        elif f.primitive == "char":
            out[f.name] = "" if f.kind != "enum" else "A"
        elif f.presence != "optional":
            out[f.name] = 0
    return out


def test_encode_rejects_bad_values() -> None:
    v9 = bundled_schema(1, 9)
    base = {"template_id": 37, "fields": {"TransactTime": 1, "MatchEventIndicator": 0}}
    with pytest.raises(EncodeError) as e:
        encode({**base, "fields": {"TransactTime": -1, "MatchEventIndicator": 0}}, v9)
    assert e.value.reason == "bad_value"
    with pytest.raises(EncodeError) as e:
        encode({**base, "fields": {"TransactTime": None, "MatchEventIndicator": 0}}, v9)
    assert e.value.reason == "bad_value"
    with pytest.raises(EncodeError) as e:
        encode({"template_id": 9999, "fields": {}}, v9)
    assert e.value.reason == "unknown_template"
    entry = {"MDEntrySize": 1, "SecurityID": 2, "RptSeq": 3, "MDUpdateAction": 0}
    encode({**base, "groups": {"NoMDEntries": [entry] * 255}}, v9)  # numInGroup is a uint8
    with pytest.raises(EncodeError, match="numInGroup"):
        encode({**base, "groups": {"NoMDEntries": [entry] * 256}}, v9)
    # enum names are accepted and encode to their wire value
    ok = encode(
        {
            **base,
            "groups": {
                "NoMDEntries": [
                    {"MDEntrySize": 1, "SecurityID": 2, "RptSeq": 3, "MDUpdateAction": "Change"}
                ]
            },
        },
        v9,
    )
    assert decode(ok)["groups"]["NoMDEntries"][0]["MDUpdateAction"] == 1


# --------------------------------------------------------------------------
# schema features the bundled CME files do not use: nested groups, var data in
# groups, big-endian
# --------------------------------------------------------------------------
NESTED_XML = """<?xml version="1.0" encoding="UTF-8"?>
<sbe:messageSchema xmlns:sbe="http://fixprotocol.io/2016/sbe" package="t" id="77" version="3"
                   byteOrder="bigEndian">
  <types>
    <composite name="messageHeader">
      <type name="blockLength" primitiveType="uint16"/>
      <type name="templateId" primitiveType="uint16"/>
      <type name="schemaId" primitiveType="uint16"/><type name="version" primitiveType="uint16"/>
    </composite>
    <composite name="groupSizeEncoding">
      <type name="blockLength" primitiveType="uint16"/>
      <type name="numInGroup" primitiveType="uint16"/>
    </composite>
    <composite name="varStringEncoding">
      <type name="length" primitiveType="uint32" maxValue="1073741824"/>
      <type name="varData" primitiveType="uint8" length="0" characterEncoding="UTF-8"/>
    </composite>
    <type name="Qty" primitiveType="int32" presence="optional"/>
    <enum name="Side" encodingType="char"><validValue name="Buy">B</validValue>
      <validValue name="Sell">S</validValue></enum>
  </types>
  <sbe:message name="Order" id="1" blockLength="16">
    <field name="Id" id="1" type="uint64"/>
    <field name="Qty" id="2" type="Qty"/>
    <field name="Side" id="3" type="Side"/>
    <group name="Fills" id="10" dimensionType="groupSizeEncoding">
      <field name="Px" id="11" type="int64"/>
      <field name="Added" id="12" type="int16" sinceVersion="2"/>
      <group name="Legs" id="20" dimensionType="groupSizeEncoding">
        <field name="Leg" id="21" type="int32"/>
      </group>
      <data name="Note" id="22" type="varStringEncoding"/>
    </group>
    <data name="Text" id="30" type="varStringEncoding"/>
  </sbe:message>
</sbe:messageSchema>
"""


@pytest.fixture(scope="module")
def nested_schema(tmp_path_factory: pytest.TempPathFactory) -> Schema:
    p = tmp_path_factory.mktemp("xml") / "nested.xml"
    p.write_text(NESTED_XML)
    return load_schema(p)


def test_nested_groups_and_var_data_roundtrip(nested_schema: Schema) -> None:
    msg = nested_schema.messages[1]

    @settings(max_examples=40, deadline=None, database=None)
    @given(_messages(nested_schema, msg))
    def roundtrip(x: dict[str, Any]) -> None:
        assert decode(encode(x, nested_schema), schema=nested_schema) == x

    roundtrip()


def test_nested_big_endian_wire_layout(nested_schema: Schema) -> None:
    x = {
        "template_id": 1, "version": 3,
        "fields": {"Id": 1, "Qty": None, "Side": "S", "Text": b"hi"},
        "groups": {"Fills": [{"Px": -2, "Added": 3, "Legs": [{"Leg": 9}], "Note": b""}]},
    }  # fmt: skip
    wire = encode(x, nested_schema)
    # written by hand from the XML: header, 16-byte root, group of one fill
    expected = (
        struct.pack(">HHHH", 16, 1, 77, 3)
        + struct.pack(">Qic", 1, -(2**31), b"S") + b"\x00" * 3
        + struct.pack(">HH", 10, 1) + struct.pack(">qh", -2, 3)
        + struct.pack(">HH", 4, 1) + struct.pack(">i", 9)
        + struct.pack(">I", 0)
        + struct.pack(">I", 2) + b"hi"
    )  # fmt: skip
    assert wire == expected
    assert decode(wire, schema=nested_schema) == {
        **x, "schema_id": 77, "name": "Order", "block_length": 16,
    }  # fmt: skip


# --------------------------------------------------------------------------
# framing
# --------------------------------------------------------------------------
def test_packet_framing_helpers() -> None:
    v9 = bundled_schema(1, 9)
    hb = encode({"template_id": 12, "fields": {}, "groups": {}}, v9)
    pkt = encode_mdp_packet(5, 6, [hb, hb])
    header, msgs = iter_packet_messages(pkt)
    assert (header.msg_seq_num, header.sending_time) == (5, 6)
    assert list(msgs) == [(12, 10), (22, 10)]  # MsgSize counts itself

    tcp = encode_mdp_tcp_packet(1, 2, [hb]) + encode_mdp_tcp_packet(3, 4, [hb, hb])
    frames = list(split_mdp_tcp(tcp))
    assert frames == [(2, 22), (26, 32)]
    assert decode_packet(tcp, 26, 26 + 32)[0].msg_seq_num == 3
    assert list(split_mdp_tcp(tcp[:-1])) == [(2, 22)]  # partial tail held back

    il = bundled_schema(8, 5)
    seq = encode({"template_id": 506, "fields": {
        "UUID": 1, "NextSeqNo": 2, "FaultToleranceIndicator": 1, "KeepAliveIntervalLapsed": 0,
    }}, il)  # fmt: skip
    stream = encode_sofh(seq) + encode_sofh(seq)
    assert stream[:4] == bytes([26, 0, 0xFE, 0xCA])  # little-endian, as CME sends it
    assert list(split_sofh(stream)) == [(4, 22), (30, 22)]
    assert list(split_sofh(stream[:-3])) == [(4, 22)]
    with pytest.raises(DecodeError) as e:
        list(split_sofh(b"\x1a\x00\xca\xfe" + seq))
    assert e.value.reason == "bad_framing"


# --------------------------------------------------------------------------
# fuzz: nothing but DecodeError escapes, nothing is read past the buffer
# --------------------------------------------------------------------------
def _real_packets() -> list[bytes]:
    return [r.payload for p in sorted(PCAP_DIR.glob("mdp3_*.pcap")) for r in read_capture(p)]


REAL_PACKETS = _real_packets()


@settings(max_examples=300, deadline=None, database=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_decode_error(data: bytes) -> None:
    try:
        decode_packet(data)
    except DecodeError as exc:
        assert exc.reason
    try:
        decode(data)
    except DecodeError as exc:
        assert exc.reason


@settings(max_examples=300, deadline=None, database=None)
@given(st.sampled_from(REAL_PACKETS), st.data())
def test_truncated_and_corrupted_packets(packet: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(packet)))
    truncated = packet[:cut]
    try:
        decode_packet(truncated)
    except DecodeError as exc:
        assert exc.reason in {"short_packet", "short_message", "short_block", "group_overrun"}
    corrupted = bytearray(packet)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(packet) - 1))
        corrupted[i] = data.draw(st.integers(0, 255))
    # decode from a memoryview of exactly the packet: reading past it would raise
    # something other than DecodeError (struct.error / IndexError)
    try:
        decode_packet(memoryview(bytes(corrupted)))
    except DecodeError as exc:
        assert exc.reason in {
            "short_packet", "short_message", "short_block", "group_overrun",
            "bad_schema", "unknown_template",
        }  # fmt: skip


def test_specific_bad_inputs_have_reasons() -> None:
    v9 = bundled_schema(1, 9)
    hb = encode({"template_id": 12, "fields": {}, "groups": {}}, v9)

    def reason(buf: bytes) -> str:
        with pytest.raises(DecodeError) as e:
            decode_packet(buf)
        return e.value.reason

    assert reason(b"\x00" * 11) == "short_packet"
    pkt = bytearray(encode_mdp_packet(1, 1, [hb]))
    struct.pack_into("<H", pkt, 12, 200)  # MsgSize overruns the packet
    assert reason(bytes(pkt)) == "short_message"
    pkt = bytearray(encode_mdp_packet(1, 1, [hb]))
    struct.pack_into("<H", pkt, 14 + 4, 99)  # wrong schema id
    assert reason(bytes(pkt)) == "bad_schema"
    pkt = bytearray(encode_mdp_packet(1, 1, [hb]))
    struct.pack_into("<H", pkt, 14 + 2, 4321)  # unknown template
    assert reason(bytes(pkt)) == "unknown_template"
    vol = encode(
        {"template_id": 37, "fields": {"TransactTime": 1, "MatchEventIndicator": 0},
         "groups": {"NoMDEntries": [
             {"MDEntrySize": 1, "SecurityID": 2, "RptSeq": 3, "MDUpdateAction": 0}
         ]}},
        v9,
    )  # fmt: skip
    pkt = bytearray(encode_mdp_packet(1, 1, [vol]))
    pkt[14 + 8 + 11 + 2] = 200  # numInGroup overruns the message
    assert reason(bytes(pkt)) == "group_overrun"
    pkt = bytearray(encode_mdp_packet(1, 1, [vol]))
    struct.pack_into("<H", pkt, 14, 500)  # root blockLength overruns the message
    assert reason(bytes(pkt)) == "short_block"
