"""`nanoarb decode`, run as the real console script on real captures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.sbe.schema import bundled_schema
from tests.conftest import PCAP_DIR, SCHEMA_DIR

KEYS = [
    "frame", "src", "dst", "seq", "sending_time", "template_id", "schema_id", "version",
    "name", "fields", "groups",
]  # fmt: skip


def _nanoarb() -> str:
    beside = Path(sys.executable).with_name("nanoarb")
    found = str(beside) if beside.exists() else shutil.which("nanoarb")
    if found is None:
        pytest.fail("the nanoarb console script is not installed (pip install -e .)")
    return found


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [_nanoarb(), "decode", *args], capture_output=True, text=True, timeout=120
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def decode_json(*paths: Path | str, extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    proc = run("--json", *extra, *map(str, paths))
    lines = proc.stdout.splitlines()
    out = [json.loads(line) for line in lines]
    for obj in out:
        assert list(obj) == KEYS
    return out


def test_v9_book_capture() -> None:
    msgs = decode_json(PCAP_DIR / "mdp3_v9_udp_MDIncrementalRefreshBook46.pcap")
    assert len(msgs) == 2
    first = msgs[0]
    assert first["frame"] == 1
    assert first["seq"] == 1028095
    assert first["dst"] == "224.0.28.20:14361"
    assert (first["template_id"], first["schema_id"], first["version"]) == (46, 1, 9)
    assert first["name"] == "MDIncrementalRefreshBook46"
    assert len(first["groups"]["NoMDEntries"]) == 23
    assert len(first["groups"]["NoOrderIDEntries"]) == 16
    assert first["sending_time"] == msgs[1]["sending_time"] > 1_500_000_000 * 10**9
    # every field the v9 layout defines is present, in schema order
    layout = bundled_schema(1, 9).messages[46]
    assert list(first["fields"]) == [f.name for f in layout.fields]
    for entry in first["groups"]["NoMDEntries"]:
        assert list(entry) == [f.name for f in layout.group("NoMDEntries").fields]
        assert isinstance(entry["MDEntryPx"], int)  # PRICENULL9 -> the mantissa
        assert entry["MDEntryType"] in {"0", "1", "E", "F"}


def test_nulls_are_null_not_omitted() -> None:
    msgs = decode_json(PCAP_DIR / "mdp3_v9_udp_MDIncrementalRefreshTradeSummary48.pcap")
    implied = msgs[-1]["groups"]["NoMDEntries"][0]
    assert implied["MDEntryType"] == "E"
    assert "NumberOfOrders" in implied and implied["NumberOfOrders"] is None


def test_v5_definitions_symbols_and_composites() -> None:
    msgs = decode_json(PCAP_DIR / "mdp3_v5_udp_MDInstrumentDefinition27_29.pcap")
    assert [m["template_id"] for m in msgs] == [29, 29, 27, 29, 27]
    assert {m["fields"]["Symbol"] for m in msgs if m["template_id"] == 27} == {"ESZ5", "ESU6"}
    esz5 = next(m for m in msgs if m["fields"]["Symbol"] == "ESZ5")
    assert esz5["fields"]["MinPriceIncrement"] == 25 * 10**7  # legacy exponent -7, raw
    assert esz5["fields"]["MaturityMonthYear"] == {
        "year": 2015, "month": 12, "day": None, "week": None,
    }  # fmt: skip
    assert esz5["groups"]["NoMDFeedTypes"] == [{"MDFeedType": "GBX", "MarketDepth": 10}]


def test_ilink3_has_null_packet_fields() -> None:
    (msg,) = decode_json(PCAP_DIR / "ilink3_v5_tcp_Sequence506.pcap")
    assert msg["seq"] is None and msg["sending_time"] is None
    assert (msg["schema_id"], msg["template_id"], msg["name"]) == (8, 506, "Sequence506")
    assert msg["fields"]["UUID"] == 1585839227794207
    assert msg["fields"]["NextSeqNo"] == 3
    assert msg["src"] == "10.2.227.54:53408"


def test_all_reference_captures_at_once() -> None:
    paths = sorted(PCAP_DIR.glob("*.pcap"))
    msgs = decode_json(*paths)
    # 2 iLink + 2 session + 2 v12 TCP + 7 v5 + 3 v8 + 15 v9 messages (reference README)
    assert len(msgs) == 31
    assert {m["schema_id"] for m in msgs} == {1, 2, 8}
    assert {m["version"] for m in msgs} == {0, 5, 8, 9, 12}
    text = run(*map(str, paths)).stdout.splitlines()
    assert len(text) == 31
    assert any("seq=1028095" in line and "MDIncrementalRefreshBook46" in line for line in text)


def test_explicit_schema_option() -> None:
    """--schema v13 on a v9 capture: v13 fields newer than the header version are null."""
    msgs = decode_json(
        PCAP_DIR / "mdp3_v9_udp_MDIncrementalRefreshBook46.pcap",
        extra=("--schema", str(SCHEMA_DIR / "mdp3_templates_FixBinary_v13.xml")),
    )
    entry = msgs[0]["groups"]["NoMDEntries"][0]
    assert "TradeableSize" in entry and entry["TradeableSize"] is None
    assert msgs[0]["version"] == 9


def test_multi_frame_capture_and_errors(tmp_path: Path) -> None:
    from core.sbe.codec import encode, encode_mdp_packet
    from tests.test_capture import udp_frame, write_pcap

    hb = encode({"template_id": 12, "fields": {}, "groups": {}}, bundled_schema(1, 9))
    good = [udp_frame(encode_mdp_packet(seq, seq * 10, [hb])) for seq in (1, 2, 3)]
    bad = udp_frame(encode_mdp_packet(4, 40, [hb[:2] + b"\x39\x30" + hb[4:]]))  # template 12345
    path = write_pcap(tmp_path / "f.pcap", [good[0], good[1], bad, good[2]])
    proc = run("--json", str(path), check=False)
    assert proc.returncode == 1
    assert "frame 3" in proc.stderr and "unknown_template" in proc.stderr
    got = [(m["frame"], m["seq"], m["name"]) for m in map(json.loads, proc.stdout.splitlines())]
    assert got == [
        (1, 1, "AdminHeartbeat12"),
        (2, 2, "AdminHeartbeat12"),
        (4, 3, "AdminHeartbeat12"),
    ]


def test_missing_file_fails_cleanly(tmp_path: Path) -> None:
    proc = run(str(tmp_path / "nope.pcap"), check=False)
    assert proc.returncode == 1
    assert "nope.pcap" in proc.stderr
    assert "Traceback" not in proc.stderr
