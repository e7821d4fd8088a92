"""Bad input into the hot MDP 3.0 decoder: always a counted drop, never an exception,
never a byte read past ``n``.

"Nothing read past the buffer" is checked by decoding the same bytes twice: from
an exact-size copy, and from the start of a larger buffer whose bytes after
``n`` are garbage. Any read past ``n`` would make the two results differ (the
garbage is drawn per example, and a second garbage pattern is tried too).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.sbe.codec import DecodeError, encode, encode_mdp_packet, iter_packet_messages
from core.sbe.mdp3 import Mdp3Decoder, build_plan, default_plan
from core.sbe.schema import Schema, bundled_schema, bundled_schemas
from core.types import (
    DROP_BAD_SCHEMA,
    DROP_EVENTS_FULL,
    DROP_GROUP_OVERRUN,
    DROP_SHORT_BLOCK,
    DROP_SHORT_MESSAGE,
    DROP_SHORT_PACKET,
    DROP_UNKNOWN_TEMPLATE,
    FLAG_LAST_IN_MSG,
    N_DROP_REASONS,
)
from tests.test_mdp3_decoder import PACKETS, as_dicts, assert_rows_equal, reference_rows

FAST = default_plan()
GENERIC = build_plan(fast_paths=False)
V9 = bundled_schema(1, 9)
V13 = bundled_schema(1, 13)


def decode_guarded(data: bytes, garbage: bytes, plan: np.ndarray = FAST,
                   capacity: int = 4096) -> tuple[list[dict[str, Any]], np.ndarray, Any]:
    """Rows/drops/header of ``data``, asserting they do not depend on bytes after it."""
    results = []
    for buf in (np.frombuffer(data, dtype=np.uint8).copy(),
                np.frombuffer(data + garbage, dtype=np.uint8).copy(),
                np.frombuffer(data + bytes(255 - b for b in garbage), dtype=np.uint8).copy()):
        dec = Mdp3Decoder(capacity=capacity, plan=plan)
        rows = as_dicts(dec.decode(buf, len(data)))
        results.append((rows, dec.drops.copy(), dec.header.tolist()))
    (rows, drops, header), *others = results
    for r, d, h in others:
        assert r == rows and np.array_equal(d, drops) and h == header
    return rows, drops, header


def _msg(template_id: int, schema: Schema, groups: dict[str, Any], **fields: Any) -> bytes:
    f = {"TransactTime": 1_700_000_000_000_000_000, "MatchEventIndicator": 0x84, **fields}
    return encode({"template_id": template_id, "fields": f, "groups": groups}, schema)


def _entry(i: int) -> dict[str, Any]:
    return {"MDEntryPx": 100 + i, "MDEntrySize": 1 + i, "SecurityID": 5, "RptSeq": i,
            "NumberOfOrders": 1, "MDPriceLevel": 1, "MDUpdateAction": 0, "MDEntryType": "0"}


BOOK_46 = _msg(46, V9, {"NoMDEntries": [_entry(i) for i in range(3)],
                        "NoOrderIDEntries": [{"OrderID": 1, "MDOrderPriority": 2,
                                              "MDDisplayQty": 3, "ReferenceID": 1,
                                              "OrderUpdateAction": 0}]})
VOLUME_37 = _msg(37, V9, {"NoMDEntries": [{"MDEntrySize": 9, "SecurityID": 5, "RptSeq": 1,
                                           "MDUpdateAction": 0}]})


def _packet(*messages: bytes) -> bytes:
    return encode_mdp_packet(11, 22, list(messages))


def _one_drop(drops: np.ndarray, reason: int) -> None:
    want = np.zeros(N_DROP_REASONS, dtype=np.int64)
    want[reason] = 1
    assert np.array_equal(drops, want), drops


# --------------------------------------------------------------------------
# Property tests
# --------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.binary(min_size=16, max_size=64))
def test_random_bytes(data: bytes, garbage: bytes) -> None:
    rows, drops, header = decode_guarded(data, garbage)
    if len(data) < 12:
        _one_drop(drops, DROP_SHORT_PACKET)
        assert rows == []
    assert header[4] == len(rows)  # n_events
    for r in rows:  # every message is closed by a LAST_IN_MSG row
        assert 0 <= r["kind"] <= 14
    if rows:
        assert rows[-1]["flags"] & FLAG_LAST_IN_MSG


@st.composite
def _mutated(draw: Any) -> bytes:
    """A real packet with a few bytes overwritten: valid framing, hostile values."""
    packet = bytearray(draw(st.sampled_from([p for _, _, p in PACKETS] + [
        _packet(BOOK_46, VOLUME_37)])))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(packet) - 1))
        packet[pos] = draw(st.integers(0, 255))
    return bytes(packet)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated(), st.binary(min_size=16, max_size=64))
def test_mutated_captures(packet: bytes, garbage: bytes) -> None:
    fast = decode_guarded(packet, garbage, FAST)
    generic = decode_guarded(packet, garbage, GENERIC)
    assert fast[0] == generic[0] and np.array_equal(fast[1], generic[1])
    try:
        want = reference_rows(packet)
    except (DecodeError, KeyError, ValueError, TypeError, AssertionError):
        return  # the codec refuses it: the kernel only had to survive and count
    if not fast[1].any():
        # accepted by both: same rows (ReferenceID faults drop rows in both)
        assert fast[0] == want


def test_every_prefix_of_every_capture() -> None:
    """Each truncation loses exactly the message it cuts, counted once."""
    for name, _, packet in PACKETS:
        full = reference_rows(packet)
        _, msgs = iter_packet_messages(packet)
        ends = [pos + size for pos, size in msgs]
        for n in range(len(packet) + 1):
            rows, drops, _ = decode_guarded(packet[:n], b"\xff" * 32)
            if n < 12:
                _one_drop(drops, DROP_SHORT_PACKET)
                continue
            complete = sum(1 for e in ends if e <= n)
            want = [r for r in full if r["msg_index"] < complete]
            assert rows == want, (name, n)
            if n in ends or n == 12:
                assert not drops.any(), (name, n, drops)
            else:
                _one_drop(drops, DROP_SHORT_MESSAGE)


# --------------------------------------------------------------------------
# One malformation at a time: the right reason, the rest of the packet survives
# --------------------------------------------------------------------------
def _decode(packet: bytes, capacity: int = 4096) -> tuple[list[dict[str, Any]], np.ndarray]:
    rows, drops, _ = decode_guarded(packet, b"\x00" * 40, capacity=capacity)
    return rows, drops


def test_msg_size_overrunning_the_packet() -> None:
    raw = bytearray(_packet(VOLUME_37, BOOK_46))
    second = 12 + 2 + len(VOLUME_37)
    struct.pack_into("<H", raw, second, len(BOOK_46) + 3)
    rows, drops = _decode(bytes(raw))
    _one_drop(drops, DROP_SHORT_MESSAGE)
    assert [r["template_id"] for r in rows] == [37]


@pytest.mark.parametrize("size", [0, 1, 9])
def test_msg_size_too_small(size: int) -> None:
    raw = bytearray(_packet(BOOK_46, VOLUME_37))
    struct.pack_into("<H", raw, 12, size)
    rows, drops = _decode(bytes(raw))
    _one_drop(drops, DROP_SHORT_MESSAGE)
    assert rows == []


def test_num_in_group_overrunning_the_message() -> None:
    raw = bytearray(_packet(BOOK_46, VOLUME_37))
    num_at = 12 + 2 + 8 + 11 + 2  # numInGroup of NoMDEntries
    assert raw[num_at] == 3
    raw[num_at] = 200
    rows, drops = _decode(bytes(raw))
    _one_drop(drops, DROP_GROUP_OVERRUN)
    assert [r["template_id"] for r in rows] == [37]  # the next message still decodes


def test_group_dimension_cut_by_the_message_end() -> None:
    msg = _msg(37, V9, {"NoMDEntries": []})[:-2]  # 8 + 11 + 1 byte of the dimension
    rows, drops = _decode(_packet(msg, VOLUME_37))
    _one_drop(drops, DROP_GROUP_OVERRUN)
    assert [r["template_id"] for r in rows] == [37]


def test_unknown_template() -> None:
    raw = bytearray(_packet(BOOK_46, VOLUME_37))
    struct.pack_into("<H", raw, 12 + 2 + 2, 250)
    rows, drops = _decode(bytes(raw))
    _one_drop(drops, DROP_UNKNOWN_TEMPLATE)
    assert [r["template_id"] for r in rows] == [37]


@pytest.mark.parametrize("schema_id", [0, 3, 8, 65535])
def test_wrong_schema_id(schema_id: int) -> None:
    raw = bytearray(_packet(BOOK_46, VOLUME_37))
    struct.pack_into("<H", raw, 12 + 2 + 4, schema_id)
    rows, drops = _decode(bytes(raw))
    _one_drop(drops, DROP_BAD_SCHEMA)
    assert [r["template_id"] for r in rows] == [37]


def test_root_block_longer_than_the_message() -> None:
    raw = bytearray(_packet(BOOK_46, VOLUME_37))
    struct.pack_into("<H", raw, 12 + 2, len(BOOK_46))
    rows, drops = _decode(bytes(raw))
    _one_drop(drops, DROP_SHORT_BLOCK)
    assert [r["template_id"] for r in rows] == [37]


def test_entry_block_shorter_than_its_fields() -> None:
    raw = bytearray(_packet(BOOK_46, VOLUME_37))
    struct.pack_into("<H", raw, 12 + 2 + 8 + 11, 20)  # entries of 20 bytes: 46 reads 27
    rows, drops = _decode(bytes(raw))
    _one_drop(drops, DROP_SHORT_BLOCK)
    assert [r["template_id"] for r in rows] == [37]


def test_root_block_shorter_than_its_fields() -> None:
    msg = struct.pack("<HHHH", 4, 46, 1, 9) + b"\x00" * 4 + struct.pack("<HB", 32, 0)
    rows, drops = _decode(_packet(msg, VOLUME_37))
    _one_drop(drops, DROP_SHORT_BLOCK)
    assert [r["template_id"] for r in rows] == [37]


def test_events_full_keeps_whole_messages() -> None:
    rows, drops = _decode(_packet(VOLUME_37, BOOK_46, VOLUME_37), capacity=3)
    _one_drop(drops, DROP_EVENTS_FULL)
    assert [r["template_id"] for r in rows] == [37]  # 46 needs 4 rows: not started


def test_capacity_of_one_row() -> None:
    rows, drops = _decode(_packet(VOLUME_37), capacity=1)
    assert len(rows) == 1 and not drops.any()
    dec = Mdp3Decoder(capacity=1)
    dec.decode(_packet(VOLUME_37, VOLUME_37))
    _one_drop(dec.drops, DROP_EVENTS_FULL)


def test_heartbeat_with_zero_block_and_trailing_bytes() -> None:
    hb = struct.pack("<HHHH", 0, 12, 1, 9) + b"\x99" * 7
    rows, drops = _decode(_packet(hb))
    assert not drops.any() and len(rows) == 1 and rows[0]["template_id"] == 12


# --------------------------------------------------------------------------
# Random valid messages of every template: the kernel equals the codec reference
# --------------------------------------------------------------------------
_MDP = [s for s in bundled_schemas() if s.id in (1, 2)]
_TEMPLATES = [(s, t) for s in _MDP for t in sorted(s.messages)]


def _value(draw: Any, f: Any) -> Any:
    if f.is_constant:
        return None
    if f.kind == "composite":
        if f.scalar_member is not None:
            return _value(draw, f.scalar_member)
        return {m.name: _value(draw, m) for m in f.members}
    if f.presence == "optional" and draw(st.booleans()):
        return None
    if f.primitive == "char":
        if f.kind == "enum":
            return draw(st.sampled_from(sorted(str(v) for v in f.enum_values.values())))
        return draw(st.text(alphabet="ABCXYZ019", max_size=f.length))
    if f.kind == "enum":
        return draw(st.sampled_from(sorted(int(v) for v in f.enum_values.values())))
    if f.primitive in ("float", "double"):
        return 0.0
    bits = {"int8": 8, "uint8": 8, "int16": 16, "uint16": 16, "int32": 32, "uint32": 32,
            "int64": 64, "uint64": 64}[f.primitive]
    signed = f.primitive.startswith("int")
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    vals = [draw(st.integers(lo, hi)) for _ in range(f.length)]
    if f.null_value is not None:
        vals = [v if v != f.null_value else lo + 1 for v in vals]
    return vals[0] if f.length == 1 else vals


@st.composite
def _any_message(draw: Any) -> bytes:
    schema, tid = draw(st.sampled_from(_TEMPLATES))
    msg = schema.messages[tid]
    fields = {f.name: _value(draw, f) for f in msg.fields}
    groups = {}
    for g in msg.groups:
        entries = []
        for _ in range(draw(st.integers(0, 3))):
            e = {f.name: _value(draw, f) for f in g.fields}
            if "ReferenceID" in e:
                e["ReferenceID"] = draw(st.integers(1, 3))
            for sub in g.groups:
                e[sub.name] = []
            entries.append(e)
        groups[g.name] = entries
    for d in msg.var_data:
        fields[d.name] = ""
    return encode({"template_id": tid, "fields": fields, "groups": groups}, schema)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_any_message(), min_size=1, max_size=4))
def test_random_messages_of_every_template(messages: list[bytes]) -> None:
    packet = encode_mdp_packet(5, 6, messages)
    for plan in (FAST, GENERIC):
        dec = Mdp3Decoder(plan=plan)
        rows = dec.decode(packet)
        assert dec.drops.sum() == dec.drops[7]  # only invalid ReferenceIDs may drop rows
        assert_rows_equal(rows, reference_rows(packet))
