"""Schema XML -> layouts: checked against the XML itself and hand-computed layouts."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from core.sbe.schema import (
    Schema,
    SchemaError,
    bundled_schema,
    bundled_schemas,
    load_schema,
    select_schema,
)
from tests.conftest import SCHEMA_DIR

INT64_MAX = 2**63 - 1


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def test_every_bundled_schema_loads_with_all_messages() -> None:
    schemas = bundled_schemas()
    assert [(s.id, s.version) for s in schemas] == [
        (1, 5), (1, 6), (1, 8), (1, 9), (1, 12), (1, 13), (2, 0), (8, 5), (8, 8), (8, 9)
    ]  # fmt: skip
    for s in schemas:
        text = Path(s.path).read_text()
        ids = {int(i) for i in re.findall(r'<ns2:message name="[^"]+" id="(\d+)"', text)}
        assert set(s.messages) == ids, s.path
        assert s.byte_order == "little"
        assert s.header.size == 8


@pytest.mark.parametrize("schema", bundled_schemas(), ids=lambda s: Path(s.path).name)
def test_layout_offsets_match_the_xml(schema: Schema) -> None:
    """Every declared offset/blockLength/sinceVersion is what the layout says, no overlap."""
    root = ET.parse(schema.path).getroot()
    for el in root:
        if _local(el.tag) != "message":
            continue
        msg = schema.messages[int(el.get("id", "0"))]
        assert msg.block_length == int(el.get("blockLength", "0"))
        assert msg.since_version == int(el.get("sinceVersion", "0"))
        blocks = [(el, msg.fields, msg.block_length, msg.name)]
        for gel in el:
            if _local(gel.tag) == "group":
                g = msg.group(gel.get("name", ""))
                assert g.block_length == int(gel.get("blockLength", "0"))
                assert g.since_version == int(gel.get("sinceVersion", "0"))
                assert g.dimension.name == gel.get("dimensionType")
                blocks.append((gel, g.fields, g.block_length, f"{msg.name}.{g.name}"))
        for bel, fields, block_length, where in blocks:
            xml_fields = [f for f in bel if _local(f.tag) == "field"]
            assert [f.name for f in fields] == [f.get("name") for f in xml_fields], where
            spans = []
            for lay, fel in zip(fields, xml_fields, strict=True):
                if fel.get("offset") is not None:
                    assert lay.offset == int(fel.get("offset", "0")), f"{where}.{lay.name}"
                assert lay.since_version == int(fel.get("sinceVersion", "0"))
                assert lay.id == int(fel.get("id", "0"))
                if lay.size:
                    spans.append((lay.offset, lay.offset + lay.size, lay.name))
            assert all(end <= block_length for _, end, _ in spans), where
            spans.sort()
            for a, b in itertools.pairwise(spans):
                assert a[1] <= b[0], f"{where}: {a} overlaps {b}"


def test_mdp_v13_book_entry_layout() -> None:
    g = bundled_schema(1, 13).messages[46].group("NoMDEntries")
    px = g.field("MDEntryPx")
    assert (px.kind, px.offset, px.size, px.exponent) == ("composite", 0, 8, -9)
    assert px.mantissa is not None and px.mantissa.null_value == INT64_MAX
    assert px.scalar_member is px.mantissa
    ts = g.field("TradeableSize")
    assert (ts.offset, ts.size, ts.primitive, ts.since_version) == (27, 4, "int32", 10)
    assert ts.null_value == 2**31 - 1 and ts.dtype == np.dtype("<i4")
    et = g.field("MDEntryType")
    assert (et.kind, et.primitive, et.offset) == ("enum", "char", 26)
    assert et.enum_values["ImpliedBid"] == "E"
    size = g.field("MDEntrySize")
    assert size.presence == "optional" and size.null_value == 2**31 - 1
    # v9 has no TradeableSize, same 32-byte entry
    g9 = bundled_schema(1, 9).messages[46].group("NoMDEntries")
    assert g9.block_length == g.block_length == 32
    assert "TradeableSize" not in [f.name for f in g9.fields]


def test_group_dimensions_come_from_the_schema() -> None:
    msg = bundled_schema(1, 9).messages[46]
    plain = msg.group("NoMDEntries").dimension
    assert (plain.name, plain.size) == ("groupSize", 3)
    assert plain.member("numInGroup").offset == 2
    eight = msg.group("NoOrderIDEntries").dimension
    assert (eight.name, eight.size) == ("groupSize8Byte", 8)
    assert eight.member("blockLength").offset == 0
    assert (eight.member("numInGroup").offset, eight.member("numInGroup").primitive) == (7, "uint8")


def test_constants_take_no_bytes() -> None:
    g = bundled_schema(1, 9).messages[48].group("NoMDEntries")
    et = g.field("MDEntryType")
    assert (et.presence, et.constant, et.size) == ("constant", "2", 0)
    reset = bundled_schema(1, 13).messages[4].group("NoMDEntries")
    assert reset.field("MDEntryType").constant == "J"
    assert reset.field("MDUpdateAction").constant == 0
    assert reset.field("ApplID").offset == 0
    hmac = bundled_schema(2, 0).messages[200].field("HMACVersion")
    assert (hmac.constant, hmac.size) == ("CME-1-SHA-256", 0)


def test_legacy_price_exponent_and_block_growth() -> None:
    px5 = bundled_schema(1, 5).messages[32].group("NoMDEntries").field("MDEntryPx")
    assert px5.exponent == -7
    assert bundled_schema(1, 5).messages[27].field("DisplayFactor").exponent == -7
    assert bundled_schema(1, 9).messages[54].block_length == 216
    assert bundled_schema(1, 13).messages[54].block_length == 224
    assert bundled_schema(1, 13).messages[54].field("InstrumentGUID").since_version == 10


def test_optional_enum_null_comes_from_its_encoding_type() -> None:
    side = bundled_schema(1, 9).messages[48].group("NoMDEntries").field("AggressorSide")
    assert (side.kind, side.presence, side.null_value) == ("enum", "optional", 255)
    mei = bundled_schema(1, 9).messages[46].field("MatchEventIndicator")
    assert mei.kind == "set" and mei.set_choices["EndOfEvent"] == 7
    var = bundled_schema(8, 5).messages[500].var_data
    assert [(v.name, v.length.primitive, v.header_size, v.data_primitive) for v in var] == [
        ("Credentials", "uint16", 2, "char")
    ]


def test_select_schema() -> None:
    def v(schema_id: int, version: int, template_id: int) -> int | None:
        s = select_schema(schema_id, version, template_id)
        return None if s is None else s.version

    assert v(1, 9, 46) == 9
    assert v(1, 10, 46) == 12  # no v10/v11 bundled: the next newer one that has it
    assert v(1, 11, 46) == 12
    assert v(1, 13, 46) == 13
    assert v(1, 14, 46) == 13  # newer than anything bundled: newest below
    assert v(1, 5, 32) == 5
    assert v(1, 7, 32) == 8
    assert v(1, 13, 32) == 9  # legacy template, removed in v10
    assert v(1, 12, 64) == 12
    assert v(2, 0, 206) == 0
    assert v(8, 5, 506) == 5
    assert v(8, 6, 506) == 8
    assert v(1, 9, 9999) is None
    assert v(99, 1, 1) is None


SYNTHETIC = """<?xml version="1.0" encoding="UTF-8"?>
<sbe:messageSchema xmlns:sbe="http://fixprotocol.io/2016/sbe" package="x" id="5" version="4"
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
    <composite name="Price">
      <type name="mantissa" primitiveType="int64" presence="optional"/>
      <type name="exponent" primitiveType="int8" presence="constant">-2</type>
    </composite>
    <composite name="Outer">
      <ref name="px" type="Price"/>
      <type name="tag" primitiveType="char" length="3"/>
      <enum name="side" encodingType="uint8"><validValue name="B">1</validValue></enum>
    </composite>
    <type name="U16" primitiveType="uint16" presence="optional"/>
    <type name="F" primitiveType="float" presence="optional"/>
    <enum name="Kind" encodingType="char">
      <validValue name="A">a</validValue><validValue name="Z">z</validValue>
    </enum>
  </types>
  <sbe:message name="M" id="3">
    <field name="a" id="1" type="uint32"/>
    <field name="k" id="2" type="Kind" presence="constant" valueRef="Kind.Z"/>
    <field name="o" id="3" type="Outer"/>
    <field name="u" id="4" type="U16" sinceVersion="2"/>
    <field name="f" id="5" type="F"/>
    <group name="G" id="6" dimensionType="groupSizeEncoding">
      <field name="x" id="7" type="int8"/>
    </group>
  </sbe:message>
</sbe:messageSchema>
"""


def test_synthetic_schema_hand_computed(tmp_path: Path) -> None:
    p = tmp_path / "s.xml"
    p.write_text(SYNTHETIC)
    s = load_schema(p)
    assert (s.id, s.version, s.byte_order) == (5, 4, "big")
    m = s.messages[3]
    by = {f.name: f for f in m.fields}
    # no offsets in the XML: sequential, constants take no bytes
    assert [(f.name, f.offset, f.size) for f in m.fields] == [
        ("a", 0, 4), ("k", 4, 0), ("o", 4, 12), ("u", 16, 2), ("f", 18, 4)
    ]  # fmt: skip
    assert m.block_length == 22  # computed: no blockLength attribute
    assert by["a"].dtype == np.dtype(">u4")
    assert by["k"].constant == "z"
    outer = by["o"]
    assert [(x.name, x.offset, x.size, x.kind) for x in outer.members] == [
        ("px", 0, 8, "composite"), ("tag", 8, 3, "primitive"), ("side", 11, 1, "enum")
    ]  # fmt: skip
    assert outer.scalar_member is None
    px = outer.member("px")
    assert px.exponent == -2 and px.mantissa is not None
    assert px.mantissa.null_value == -(2**63)  # SBE default null for an optional int64
    assert by["u"].null_value == 2**16 - 1 and by["u"].since_version == 2
    assert np.isnan(by["f"].null_value)  # type: ignore[arg-type]
    g = m.group("G")
    assert (g.block_length, g.dimension.size, g.fields[0].offset) == (1, 4, 0)


def test_bad_schema_files_raise_schema_error(tmp_path: Path) -> None:
    p = tmp_path / "bad.xml"
    p.write_text("<notxml")
    with pytest.raises(SchemaError):
        load_schema(p)
    p.write_text(SYNTHETIC.replace('type="Kind" presence', 'type="Nope" presence'))
    with pytest.raises(SchemaError, match="Nope"):
        load_schema(p)


def test_schemas_are_package_data() -> None:
    assert {Path(s.path).parent for s in bundled_schemas()} == {SCHEMA_DIR.resolve()}


def test_bundled_index_agrees_with_the_parsed_schemas() -> None:
    from core.sbe.schema import bundled_index

    assert [(i, v, ids) for i, v, ids, _ in bundled_index()] == [
        (s.id, s.version, frozenset(s.messages)) for s in bundled_schemas()
    ]
