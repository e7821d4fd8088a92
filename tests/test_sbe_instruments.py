"""InstrumentTable from real (v5) and encoder-made (v13) definitions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from adapters.capture import read_capture
from core.sbe.codec import decode_packet, encode, encode_mdp_packet, iter_packet_messages
from core.sbe.instruments import InstrumentTable
from core.sbe.schema import FieldLayout, MessageLayout, bundled_schema
from core.types import EV_BOOK, EV_DEFINITION, INSTRUMENT, MD_EVENT, NULL_I64
from tests.conftest import PCAP_DIR


def _minimal(f: FieldLayout) -> Any:
    if f.presence == "optional":
        return None
    if f.kind == "composite":
        if f.scalar_member is not None:
            return None if f.scalar_member.presence == "optional" else 0
        return {m.name: (None if m.presence == "optional" else 0) for m in f.members}
    if f.kind == "enum":
        return sorted(f.enum_values.values(), key=str)[0]
    return "" if f.primitive == "char" else 0


def definition(template_id: int, version: int = 13, **fields: Any) -> dict[str, Any]:
    layout: MessageLayout = bundled_schema(1, version).messages[template_id]
    values = {f.name: _minimal(f) for f in layout.fields if f.presence != "constant"}
    groups = fields.pop("groups", {})
    values.update(fields)
    return {"template_id": template_id, "version": version, "fields": values, "groups": groups}


def table_from(*messages: dict[str, Any], capacity: int = 8) -> InstrumentTable:
    t = InstrumentTable(capacity)
    v13 = bundled_schema(1, 13)
    for m in messages:
        wire = encode(m, v13)
        _, (decoded,) = decode_packet(encode_mdp_packet(1, 1, [wire]))
        t.update(decoded)
    return t


def test_v5_definition_capture() -> None:
    t = InstrumentTable(16)
    (rec,) = read_capture(PCAP_DIR / "mdp3_v5_udp_MDInstrumentDefinition27_29.pcap")
    _, msgs = decode_packet(rec.payload)
    for m in msgs:
        assert t.update(m) >= 0
    assert len(t) == 5
    assert t.rows.dtype == INSTRUMENT
    es = t.by_symbol("ESZ5")
    assert es is not None
    # reference README: MinPriceIncrement 25, DisplayFactor 0.01, UnitOfMeasureQty 50
    assert es["price_exponent"] == -7
    assert es["min_price_increment"] * 10.0 ** es["price_exponent"] == pytest.approx(25)
    assert es["display_factor"] == 10_000_000  # 0.01 at exponent -9
    assert es["contract_multiplier"] == 50 * 10**9
    assert (es["outright_depth"], es["implied_depth"], es["mbo"]) == (10, 0, 0)
    assert (es["security_group"], es["asset"], es["appl_id"]) == (b"ES", b"ES", 310)
    assert es["is_spread"] == 0 and es["template_id"] == 27 and es["version"] == 5
    row = t.get(13950)
    assert row is not None and row["symbol"] == b"ESZ5"
    assert t.by_symbol("ESU6") is not None
    # spreads: negative TradingReferencePrice (-670 and -1280), no UnitOfMeasureQty
    spread = t.by_symbol("ESM6-ESU6")
    assert spread is not None and spread["is_spread"] == 1
    assert spread["trading_reference_price"] == -670 * 10**7
    assert t.by_symbol("ESM6-ESZ6")["trading_reference_price"] == -1280 * 10**7  # type: ignore[index]
    assert spread["contract_multiplier"] == NULL_I64
    assert spread["high_limit_price"] == NULL_I64


def test_v13_future_feed_types_and_exponents() -> None:
    feeds = [
        {"MDFeedType": "GBX", "MarketDepth": 10},
        {"MDFeedType": "GBI", "MarketDepth": 2},
        {"MDFeedType": "MBO", "MarketDepth": 0},
    ]
    fut = definition(
        54, SecurityID=42, Symbol="NQH6", SecurityGroup="NQ", Asset="NQ", ApplID=310,
        MinPriceIncrement=250_000_000, DisplayFactor=10_000_000, UnitOfMeasureQty=20 * 10**9,
        HighLimitPrice=22_000 * 10**9, LowLimitPrice=None, TradingReferencePrice=21_000 * 10**9,
        MDSecurityTradingStatus=17, groups={"NoMDFeedTypes": feeds},
    )  # fmt: skip
    t = table_from(fut)
    r = t.get(42)
    assert r is not None
    assert r["price_exponent"] == -9
    assert r["min_price_increment"] == 250_000_000
    assert r["display_factor"] == 10_000_000
    assert r["contract_multiplier"] == 20 * 10**9
    assert (r["high_limit_price"], r["low_limit_price"]) == (22_000 * 10**9, NULL_I64)
    assert r["trading_reference_price"] == 21_000 * 10**9
    assert (r["outright_depth"], r["implied_depth"], r["mbo"]) == (10, 2, 1)
    assert (r["trading_status"], r["template_id"], r["version"]) == (17, 54, 13)


@pytest.mark.parametrize("template_id", [54, 55, 56, 57, 58, 63])
def test_every_current_definition_template(template_id: int) -> None:
    msg = definition(
        template_id, SecurityID=1000 + template_id, Symbol=f"S{template_id}",
        MinPriceIncrement=5 * 10**6, DisplayFactor=10**9,
        groups={"NoMDFeedTypes": [{"MDFeedType": "GBX", "MarketDepth": 5}]},
    )  # fmt: skip
    r = table_from(msg).get(1000 + template_id)
    assert r is not None
    assert r["symbol"] == f"S{template_id}".encode()
    assert r["min_price_increment"] == 5 * 10**6 and r["display_factor"] == 10**9
    assert r["outright_depth"] == 5
    assert r["is_spread"] == (1 if template_id == 56 else 0)


def test_update_in_place_delete_and_capacity() -> None:
    a = definition(54, SecurityID=1, Symbol="A", MDSecurityTradingStatus=21)
    a2 = definition(54, SecurityID=1, Symbol="A", MDSecurityTradingStatus=17)
    b = definition(54, SecurityID=2, Symbol="B")
    c = definition(54, SecurityID=3, Symbol="C")
    t = table_from(a, b, a2, capacity=2)
    assert len(t) == 2 and t.row_of(1) == 0 and t.row_of(2) == 1
    assert t.get(1)["trading_status"] == 17  # type: ignore[index]
    t2 = table_from(a, b, c, capacity=2)
    assert 3 not in t2 and t2.dropped_full == 1
    t.set_trading_status(2, 2)
    assert t.get(2)["trading_status"] == 2  # type: ignore[index]
    delete = definition(54, SecurityID=1, Symbol="A", SecurityUpdateAction="D")
    t3 = table_from(a, delete)
    assert 1 not in t3 and t3.get(1) is None and t3.rows[0]["security_id"] == 0


def test_update_from_packet_with_decoder_events() -> None:
    v13 = bundled_schema(1, 13)
    hb = encode({"template_id": 12, "fields": {}, "groups": {}}, v13)
    d1 = encode(definition(54, SecurityID=7, Symbol="X7"), v13)
    d2 = encode(definition(56, SecurityID=8, Symbol="X7-X8"), v13)
    packet = encode_mdp_packet(5, 5, [hb, d1, d2])
    _, it = iter_packet_messages(packet)
    spans = list(it)
    events = np.zeros(8, dtype=MD_EVENT)
    events[0]["kind"] = EV_BOOK  # not a definition: ignored
    for row, (pos, size) in zip((1, 2), spans[1:], strict=True):
        events[row]["kind"] = EV_DEFINITION
        events[row]["aux"] = pos
        events[row]["size"] = size
    events[3]["kind"] = EV_DEFINITION  # bogus: offset/size past the packet
    events[3]["aux"] = len(packet) - 4
    events[3]["size"] = 40
    buf = np.zeros(2048, dtype=np.uint8)
    buf[: len(packet)] = np.frombuffer(packet, dtype=np.uint8)
    t = InstrumentTable(4)
    assert t.update_from_packet(buf, len(packet), events, 4) == 2
    assert t.get(7)["symbol"] == b"X7" and t.get(8)["is_spread"] == 1  # type: ignore[index]
    assert t.decode_errors == 1


def test_non_definitions_are_ignored() -> None:
    t = InstrumentTable(2)
    msg = {"template_id": 46, "schema_id": 1, "version": 9, "fields": {}, "groups": {}}
    assert t.update(msg) == -1 and len(t) == 0
