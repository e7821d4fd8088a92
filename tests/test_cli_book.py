"""``nanoarb book``: rows from real captures equal the naive book; A/B dedup per channel;
depth from definitions; filters and formats."""

from __future__ import annotations

import argparse
import csv
import glob
import io
import os
import socket
from pathlib import Path

import dpkt

from core.feature_spec import FEATURE_NAMES
from core.sbe.codec import decode_packet, encode, encode_mdp_packet
from core.sbe.mdp3 import Mdp3Decoder
from core.sbe.schema import bundled_schema
from daemon.commands import book as book_cmd
from tests.test_book_mbp import PCAPS, NaiveMarket

SCHEMA = bundled_schema(1, 13)
T0 = 1_700_000_000_000_000_000


def _run(*argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    book_cmd.add_arguments(parser)
    args = parser.parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    rc = book_cmd.run(args, out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


def _csv_rows(text: str) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], rows[1:]


def _naive_cells(naive: NaiveMarket, depth: int = 10) -> list[list[str]]:
    out = []
    for seq, sid, levels in naive.records:
        cells = [str(seq), str(sid)]
        for k, lv in enumerate(levels):
            cells += ["" if (x is None or k >= depth) else str(x) for x in lv]
        out.append(cells)
    return out


def _write_pcap(path: Path, datagrams: list[tuple[int, bytes]]) -> None:
    """Ethernet/IPv4/UDP frames to 224.0.31.1:<port>."""
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh)
        for i, (port, payload) in enumerate(datagrams):
            udp = dpkt.udp.UDP(sport=40000, dport=port, data=payload)
            udp.ulen = len(udp)
            ip = dpkt.ip.IP(src=socket.inet_aton("10.0.0.1"), dst=socket.inet_aton("224.0.31.1"),
                            p=dpkt.ip.IP_PROTO_UDP, data=udp)
            ip.len = len(ip)
            eth = dpkt.ethernet.Ethernet(dst=b"\x01\x00\x5e\x00\x1f\x01", src=b"\x02" * 6,
                                         type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
            w.writepkt(bytes(eth), ts=1.0 + i)


def _book_packet(seq: int, sid: int, rpt: int, entries: list[tuple[int, str, int, int, int]]
                 ) -> bytes:
    msg = encode({"template_id": 46, "fields": {"TransactTime": T0 + seq,
                                                 "MatchEventIndicator": 0x84},
                  "groups": {"NoMDEntries": [
                      {"MDEntryPx": px, "MDEntrySize": q, "SecurityID": sid, "RptSeq": rpt + i,
                       "NumberOfOrders": 1, "MDPriceLevel": lvl, "MDUpdateAction": act,
                       "MDEntryType": et} for i, (act, et, lvl, px, q) in enumerate(entries)],
                      "NoOrderIDEntries": []}}, SCHEMA)
    return encode_mdp_packet(seq, T0, [msg])


def test_rows_from_reference_captures_equal_naive_book() -> None:
    files = sorted(glob.glob(os.path.join(PCAPS, "mdp3_v*_udp_*Refresh*.pcap")))
    assert len(files) >= 6
    rc, out, err = _run("--csv", *files)
    assert rc == 0, err
    header, rows = _csv_rows(out)
    assert header[:4] == ["seq", "security_id", "bid_px_1", "bid_qty_1"]
    assert len(header) == 2 + 60
    from adapters.capture import read_capture

    dec = Mdp3Decoder()
    naive = NaiveMarket()
    for f in files:
        for rec in read_capture(f):
            naive.run(dec.decode(rec.payload))
    assert rows == _naive_cells(naive)
    assert "duplicates=0" in err


def test_ab_copies_deduplicated_per_channel(tmp_path: Path) -> None:
    p1 = _book_packet(1, 7, 1, [(0, "0", 1, 100, 5)])
    p2 = _book_packet(2, 7, 2, [(0, "1", 1, 101, 3)])
    p3 = _book_packet(1, 8, 1, [(0, "0", 1, 50, 1)])  # same MsgSeqNum, other channel
    cap = tmp_path / "ab.pcap"
    _write_pcap(cap, [(14310, p1), (15310, p1), (15310, p2), (14310, p2), (14311, p3)])
    rc, out, err = _run("--csv", str(cap))
    assert rc == 0
    _, rows = _csv_rows(out)
    assert [(r[0], r[1]) for r in rows] == [("1", "7"), ("2", "7"), ("1", "8")]
    assert rows[1][2:8] == ["100", "5", "1", "101", "3", "1"]
    assert "duplicates=2" in err


def test_depth_from_definition_in_capture(tmp_path: Path) -> None:
    from adapters.capture import read_capture

    defs = next(iter(read_capture(os.path.join(
        PCAPS, "mdp3_v5_udp_MDInstrumentDefinition27_29.pcap"))))
    hdr, msgs = decode_packet(defs.payload)
    v5 = bundled_schema(1, 5)
    fut = next(m for m in msgs if m["template_id"] == 27)
    sid = fut["fields"]["SecurityID"]
    for ft in fut["groups"]["NoMDFeedTypes"]:
        if ft["MDFeedType"].strip("\x00").strip() == "GBX":
            ft["MarketDepth"] = 3
    defs_pkt = encode_mdp_packet(hdr.msg_seq_num, hdr.sending_time, [encode(fut, v5)])
    book_pkt = _book_packet(5, sid, 1, [(0, "0", i + 1, 1000 - i, 1) for i in range(5)])
    cap = tmp_path / "defs.pcap"
    _write_pcap(cap, [(14310, defs_pkt), (14310, book_pkt)])
    rc, out, _ = _run("--csv", str(cap))
    assert rc == 0
    _, rows = _csv_rows(out)
    assert len(rows) == 1
    cells = rows[0]
    assert cells[1] == str(sid)
    bid_px = [cells[2 + 6 * k] for k in range(10)]
    assert bid_px == ["1000", "999", "998"] + [""] * 7  # depth 3: the 4th and 5th New fell off


def test_filter_features_and_text_format(tmp_path: Path) -> None:
    cap = tmp_path / "two.pcap"
    _write_pcap(cap, [(14310, _book_packet(1, 7, 1, [(0, "0", 1, 100, 5), (0, "1", 1, 105, 1)])),
                      (14310, _book_packet(2, 8, 1, [(0, "0", 2, 50, 5)]))])
    rc, out, _ = _run("--csv", "--features", "--security-id", "7", str(cap))
    assert rc == 0
    header, rows = _csv_rows(out)
    assert header[-len(FEATURE_NAMES):] == list(FEATURE_NAMES)
    assert len(rows) == 1 and rows[0][1] == "7"
    feats = dict(zip(FEATURE_NAMES, (float(x) for x in rows[0][-len(FEATURE_NAMES):]),
                     strict=True))
    assert feats["spread_ticks"] == 1.0  # tick inferred from the only spread: 5
    rc, out, _ = _run(str(cap))
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["seq", "security_id", "bid_px_1"]
    # level-indexed: security 8 has only level 2; level 1 stays blank in place
    row8 = lines[2]
    assert row8.split()[:4] == ["2", "8", "50", "5"]
    assert row8.index("50") > lines[1].index("100")
