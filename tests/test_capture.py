"""Capture reading: pcap/pcapng, VLAN, UDP, TCP reassembly and framing, bad frames."""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from typing import Any

import dpkt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.capture import CaptureError, CaptureStats, read_capture
from core.sbe.codec import decode, encode, encode_mdp_tcp_packet, encode_sofh
from core.sbe.schema import bundled_schema
from tests.conftest import PCAP_DIR

CLIENT = ("10.0.0.1", 40000)
SERVER = ("10.0.0.2", 9000)


def _ip(src: tuple[str, int], dst: tuple[str, int], l4: dpkt.Packet, proto: int) -> dpkt.ip.IP:
    ip = dpkt.ip.IP(
        src=socket.inet_aton(src[0]), dst=socket.inet_aton(dst[0]), p=proto, data=l4, ttl=64
    )
    ip.len = len(ip)
    return ip


def udp_frame(
    payload: bytes,
    src: tuple[str, int] = ("192.168.1.5", 14310),
    dst: tuple[str, int] = ("224.0.31.1", 14310),
    vlan: int | None = None,
) -> bytes:
    udp = dpkt.udp.UDP(sport=src[1], dport=dst[1], data=payload)
    udp.ulen = len(udp)
    ip = _ip(src, dst, udp, dpkt.ip.IP_PROTO_UDP)
    if vlan is None:
        eth = dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
        return bytes(eth)
    # hand-built 802.1Q header: dst, src, 0x8100, TCI, 0x0800
    return (
        b"\x01\x00\x5e\x00\x1f\x01" + b"\x02" * 6 + struct.pack(">HHH", 0x8100, vlan, 0x0800)
        + bytes(ip)
    )  # fmt: skip


def tcp_frame(
    src: tuple[str, int],
    dst: tuple[str, int],
    seq: int,
    payload: bytes,
    flags: int = dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH,
) -> bytes:
    tcp = dpkt.tcp.TCP(sport=src[1], dport=dst[1], seq=seq, flags=flags, data=payload)
    ip = _ip(src, dst, tcp, dpkt.ip.IP_PROTO_TCP)
    return bytes(dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


def write_pcap(path: Path, frames: list[bytes], linktype: int = dpkt.pcap.DLT_EN10MB) -> Path:
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh, linktype=linktype)
        for i, f in enumerate(frames):
            w.writepkt(f, ts=1000.0 + i)
    return path


def _heartbeat() -> bytes:
    return encode({"template_id": 12, "fields": {}, "groups": {}}, bundled_schema(1, 9))


def _sequence(n: int) -> bytes:
    return encode(
        {"template_id": 506, "fields": {
            "UUID": 77, "NextSeqNo": n, "FaultToleranceIndicator": 1, "KeepAliveIntervalLapsed": 0,
        }},
        bundled_schema(8, 5),
    )  # fmt: skip


def test_reference_captures_read_cleanly() -> None:
    paths = sorted(PCAP_DIR.glob("*.pcap"))
    assert len(paths) == 14
    for p in paths:
        stats = CaptureStats()
        recs = list(read_capture(p, stats))
        assert len(recs) == 1 and stats.frames == 1 and stats.malformed_total == 0, p.name
        expected = (
            "ilink3" if p.name.startswith("ilink3") else "udp" if "_udp_" in p.name else "mdp-tcp"
        )
        assert recs[0].protocol == expected, p.name


def test_udp_with_and_without_vlan(tmp_path: Path) -> None:
    from core.sbe.codec import encode_mdp_packet

    pkt1 = encode_mdp_packet(1, 11, [_heartbeat()])
    pkt2 = encode_mdp_packet(2, 22, [_heartbeat(), _heartbeat()])
    path = write_pcap(tmp_path / "u.pcap", [udp_frame(pkt1), udp_frame(pkt2, vlan=310)])
    stats = CaptureStats()
    recs = list(read_capture(path, stats))
    assert [(r.frame, r.protocol, r.payload) for r in recs] == [(1, "udp", pkt1), (2, "udp", pkt2)]
    assert recs[1].src == "192.168.1.5:14310" and recs[1].dst == "224.0.31.1:14310"
    assert recs[0].timestamp == pytest.approx(1000.0)
    assert stats.udp_datagrams == 2


def test_pcapng(tmp_path: Path) -> None:
    from core.sbe.codec import encode_mdp_packet

    pkt = encode_mdp_packet(9, 9, [_heartbeat()])
    path = tmp_path / "u.pcapng"
    with open(path, "wb") as fh:
        w = dpkt.pcapng.Writer(fh)
        w.writepkt(udp_frame(pkt), ts=5.5)
        w.writepkt(udp_frame(pkt, vlan=7), ts=6.5)
    recs = list(read_capture(path))
    assert [(r.frame, r.payload, r.timestamp) for r in recs] == [(1, pkt, 5.5), (2, pkt, 6.5)]


def test_tcp_reassembly_out_of_order_and_retransmission(tmp_path: Path) -> None:
    """iLink 3 stream split across segments, reordered and partly retransmitted."""
    msgs = [encode_sofh(_sequence(n)) for n in range(1, 5)]  # 26 bytes each
    stream = b"".join(msgs)
    isn = 1_000
    segs = [  # (seq offset, bytes) — message 1 ends inside segment 2
        (0, stream[0:20]),
        (20, stream[20:40]),
        (40, stream[40:104]),
    ]
    frames = [
        tcp_frame(CLIENT, SERVER, isn, b"", flags=dpkt.tcp.TH_SYN),  # 1
        tcp_frame(CLIENT, SERVER, isn + 1 + segs[0][0], segs[0][1]),  # 2
        tcp_frame(CLIENT, SERVER, isn + 1 + segs[2][0], segs[2][1]),  # 3 (early)
        tcp_frame(SERVER, CLIENT, 5_000, encode_sofh(_sequence(99))),  # 4 other direction
        tcp_frame(CLIENT, SERVER, isn + 1 + segs[0][0], segs[0][1]),  # 5 full retransmission
        tcp_frame(CLIENT, SERVER, isn + 1 + 10, stream[10:40]),  # 6 partial overlap, fills gap
    ]
    path = write_pcap(tmp_path / "t.pcap", frames)
    stats = CaptureStats()
    recs = list(read_capture(path, stats))
    got = [(r.frame, r.src, decode(r.payload)["fields"]["NextSeqNo"]) for r in recs]
    assert got == [
        (4, "10.0.0.2:9000", 99),
        (2, "10.0.0.1:40000", 1),  # begins in frame 2, completed by frame 6
        (6, "10.0.0.1:40000", 2),  # begins at stream byte 26: in frame 6's new bytes
        (3, "10.0.0.1:40000", 3),
        (3, "10.0.0.1:40000", 4),
    ]
    assert all(r.protocol == "ilink3" for r in recs)
    assert stats.retransmitted_segments == 1
    assert stats.malformed_total == 0


def test_mdp_tcp_packets_spanning_segments(tmp_path: Path) -> None:
    p1 = encode_mdp_tcp_packet(1, 10, [_heartbeat()])
    p2 = encode_mdp_tcp_packet(2, 20, [_heartbeat(), _heartbeat()])
    stream = p1 + p2
    frames = [
        tcp_frame(SERVER, CLIENT, 7, stream[:30]),
        tcp_frame(SERVER, CLIENT, 7 + 30, stream[30:]),
    ]
    recs = list(read_capture(write_pcap(tmp_path / "m.pcap", frames)))
    assert [(r.frame, r.protocol, r.payload) for r in recs] == [
        (1, "mdp-tcp", p1[2:]),
        (1, "mdp-tcp", p2[2:]),  # p2 starts at byte 24, inside frame 1
    ]


def test_tcp_gap_is_counted_and_framing_resyncs(tmp_path: Path) -> None:
    msgs = [encode_sofh(_sequence(n)) for n in range(1, 4)]
    frames = [
        tcp_frame(CLIENT, SERVER, 100, msgs[0]),
        # msgs[1] never captured
        tcp_frame(CLIENT, SERVER, 100 + 52, msgs[2]),
    ]
    stats = CaptureStats()
    recs = list(read_capture(write_pcap(tmp_path / "g.pcap", frames), stats))
    assert [decode(r.payload)["fields"]["NextSeqNo"] for r in recs] == [1, 3]
    assert [r.frame for r in recs] == [1, 2]
    assert stats.tcp_gaps == 1


def test_unframeable_tcp_bytes_are_counted_then_resynced(tmp_path: Path) -> None:
    good = encode_sofh(_sequence(5))
    frames = [tcp_frame(CLIENT, SERVER, 1, b"\x01\x02\x03\x04\x05garbage" + good)]
    stats = CaptureStats()
    recs = list(read_capture(write_pcap(tmp_path / "x.pcap", frames), stats))
    assert [decode(r.payload)["fields"]["NextSeqNo"] for r in recs] == [5]
    assert stats.malformed_total >= 1


def test_malformed_frames_are_counted_not_raised(tmp_path: Path) -> None:
    from core.sbe.codec import encode_mdp_packet

    good = udp_frame(encode_mdp_packet(1, 1, [_heartbeat()]))
    truncated = good[:40]  # cut inside the UDP header/payload
    garbage = b"\xff" * 5
    arp = bytes(dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_ARP, data=b"\x00" * 28))
    path = write_pcap(tmp_path / "bad.pcap", [garbage, truncated, arp, good])
    stats = CaptureStats()
    recs = list(read_capture(path, stats))
    assert [r.frame for r in recs] == [4]
    assert stats.frames == 4
    assert stats.malformed_total == 2
    assert sum(stats.skipped.values()) == 1


def test_raw_ip_and_sll_linktypes(tmp_path: Path) -> None:
    from core.sbe.codec import encode_mdp_packet

    pkt = encode_mdp_packet(3, 3, [_heartbeat()])
    ip = bytes(dpkt.ethernet.Ethernet(udp_frame(pkt)).data)
    raw = write_pcap(tmp_path / "raw.pcap", [ip], linktype=101)
    assert [r.payload for r in read_capture(raw)] == [pkt]
    sll = struct.pack(">HHH8sH", 0, 1, 6, b"\x02" * 6 + b"\x00\x00", 0x0800) + ip
    path = write_pcap(tmp_path / "sll.pcap", [sll], linktype=113)
    assert [r.payload for r in read_capture(path)] == [pkt]


def test_truncated_file_and_non_capture(tmp_path: Path) -> None:
    from core.sbe.codec import encode_mdp_packet

    good = udp_frame(encode_mdp_packet(1, 1, [_heartbeat()]))
    path = write_pcap(tmp_path / "cut.pcap", [good, good])
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    stats = CaptureStats()
    assert [r.frame for r in read_capture(path, stats)] == [1]
    assert stats.malformed_total == 1
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a capture at all")
    with pytest.raises(CaptureError):
        list(read_capture(junk))


_FUZZ_BASE: list[bytes] = []


def _fuzz_base() -> list[bytes]:
    if not _FUZZ_BASE:
        for p in sorted(PCAP_DIR.glob("*.pcap")):
            with open(p, "rb") as fh:
                _FUZZ_BASE.extend(bytes(raw) for _, raw in dpkt.pcap.Reader(fh))
    return _FUZZ_BASE


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.data())
def test_fuzzed_frames_never_raise(tmp_path_factory: pytest.TempPathFactory, data: Any) -> None:
    """Real frames with random bytes flipped, cut short or replaced: counted, never raised."""
    frames = []
    for _ in range(data.draw(st.integers(1, 6))):
        frame = bytearray(data.draw(st.sampled_from(_fuzz_base())))
        for _ in range(data.draw(st.integers(0, 6))):
            frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(0, len(frame)))
        frames.append(bytes(frame[:cut]) if data.draw(st.booleans()) else bytes(frame))
    if data.draw(st.booleans()):
        frames.append(data.draw(st.binary(max_size=200)))
    path = write_pcap(tmp_path_factory.mktemp("fuzz") / "f.pcap", frames)
    stats = CaptureStats()
    recs = list(read_capture(path, stats))
    assert stats.frames == len(frames)
    assert all(isinstance(r.payload, bytes) for r in recs)
