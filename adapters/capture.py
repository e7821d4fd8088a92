"""Read CME traffic from packet captures (pcap / pcapng) with dpkt.

``read_capture(path)`` yields ``CaptureRecord``s in capture order:

* UDP datagrams (MDP 3.0 multicast feeds): one record per datagram,
  ``protocol="udp"``, ``payload`` = the UDP payload (an MDP packet).
* TCP streams, reassembled per direction (ordered by sequence number,
  retransmitted bytes dropped, out-of-order segments held until the gap fills),
  then framed:

  - MDP 3.0 TCP (replay / EBS streams; the stream starts with ``FE CA``):
    ``protocol="mdp-tcp"``, one record per MDP packet, ``payload`` = the packet
    WITHOUT the 0xCAFE marker, i.e. the same bytes as a UDP payload
    (MsgSeqNum, SendingTime, MsgSize-prefixed messages).
  - iLink 3 (the stream starts with a SOFH, bytes 2..3 = ``FE CA``):
    ``protocol="ilink3"``, one record per message, ``payload`` = the SBE
    message without its 4-byte SOFH.

  For TCP, ``frame`` is the frame in which the packet/message begins.

Link layers: Ethernet (with 802.1Q / QinQ VLAN tags), Linux cooked (SLL),
raw IP and BSD loopback; IPv4 and IPv6. Anything malformed (truncated frame,
bad header, unframeable TCP bytes) is counted in ``CaptureStats`` with a
reason and skipped: reading never raises on bad packets, only on a file that
is not a capture at all (``CaptureError``).
"""

from __future__ import annotations

import bisect
import socket
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import dpkt

from core.sbe.codec import DecodeError, split_mdp_tcp, split_sofh

__all__ = ["CaptureError", "CaptureReader", "CaptureRecord", "CaptureStats", "read_capture"]

_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_CAFE = b"\xfe\xca"

DLT_NULL = 0
DLT_EN10MB = 1
DLT_RAW = (12, 14, 101)
DLT_LINUX_SLL = 113
DLT_LOOP = 108


class CaptureError(ValueError):
    """The file is not a pcap/pcapng capture this reader understands."""


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    frame: int  # 1-based frame number in the capture
    timestamp: float  # capture timestamp of that frame (s since epoch)
    src: str  # "ip:port"
    dst: str
    protocol: str  # "udp", "mdp-tcp", "ilink3"
    payload: bytes


@dataclass
class CaptureStats:
    frames: int = 0
    udp_datagrams: int = 0
    tcp_segments: int = 0
    records: int = 0
    retransmitted_segments: int = 0
    tcp_gaps: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # not UDP/TCP over IP
    malformed: Counter[str] = field(default_factory=Counter)  # bad bytes, by reason

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())


def _addr(ip: Any, port: int) -> str:
    if isinstance(ip, dpkt.ip6.IP6):
        return f"[{socket.inet_ntop(socket.AF_INET6, ip.src)}]:{port}"
    return f"{socket.inet_ntop(socket.AF_INET, ip.src)}:{port}"


def _daddr(ip: Any, port: int) -> str:
    if isinstance(ip, dpkt.ip6.IP6):
        return f"[{socket.inet_ntop(socket.AF_INET6, ip.dst)}]:{port}"
    return f"{socket.inet_ntop(socket.AF_INET, ip.dst)}:{port}"


def _seq_diff(a: int, b: int) -> int:
    """a - b in 32-bit sequence space (signed)."""
    d = (a - b) & 0xFFFFFFFF
    return d - 0x100000000 if d & 0x80000000 else d


class _TcpDirection:
    """One direction of a TCP connection: reassembly buffer + framing."""

    __slots__ = (
        "base",
        "buf",
        "dst",
        "next_seq",
        "pending",
        "protocol",
        "segments",
        "src",
    )

    def __init__(self, src: str, dst: str) -> None:
        self.src = src
        self.dst = dst
        self.next_seq: int | None = None
        self.buf = bytearray()
        self.base = 0  # stream offset of buf[0]
        self.segments: list[tuple[int, int, float]] = []  # (stream offset, frame, ts)
        self.pending: dict[int, tuple[bytes, int, float]] = {}
        self.protocol: str | None = None

    def append(self, data: bytes, frame: int, ts: float) -> None:
        self.segments.append((self.base + len(self.buf), frame, ts))
        self.buf.extend(data)

    def origin(self, pos: int) -> tuple[int, float]:
        """(frame, ts) of the segment holding stream offset ``pos``."""
        i = bisect.bisect_right(self.segments, (pos, 1 << 62, 0.0)) - 1
        _, frame, ts = self.segments[max(i, 0)]
        return frame, ts

    def consume(self, n: int) -> None:
        del self.buf[:n]
        self.base += n
        # keep the segment that holds the new first byte
        i = bisect.bisect_right(self.segments, (self.base, 1 << 62, 0.0)) - 1
        if i > 0:
            del self.segments[:i]

    def reset(self) -> None:
        """Drop buffered bytes (gap or unframeable data): framing restarts."""
        self.base += len(self.buf)
        self.buf.clear()
        self.segments.clear()
        self.protocol = None


class CaptureReader:
    """Iterate a capture file's records; ``stats`` is filled as you go."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.stats = CaptureStats()
        self._tcp: dict[tuple[str, str], _TcpDirection] = {}

    # -- file level ---------------------------------------------------------
    def _open_reader(self, fh: IO[bytes]) -> Any:
        magic = fh.read(4)
        fh.seek(0)
        try:
            if magic == _PCAPNG_MAGIC:
                return dpkt.pcapng.Reader(fh)
            return dpkt.pcap.Reader(fh)
        except (ValueError, dpkt.UnpackError, dpkt.NeedData, struct.error) as exc:
            raise CaptureError(f"{self.path}: not a pcap/pcapng file ({exc})") from exc

    def __iter__(self) -> Iterator[CaptureRecord]:
        with open(self.path, "rb") as fh:
            reader = self._open_reader(fh)
            linktype = reader.datalink()
            frame = 0
            it = iter(reader)
            while True:
                try:
                    ts, raw = next(it)
                except StopIteration:
                    break
                except (ValueError, dpkt.UnpackError, dpkt.NeedData, struct.error):
                    # a truncated record at the end of the file
                    self.stats.malformed["truncated_file"] += 1
                    break
                frame += 1
                self.stats.frames += 1
                try:
                    records = self._frame(frame, float(ts), bytes(raw), linktype)
                except (dpkt.UnpackError, dpkt.NeedData, struct.error, ValueError, IndexError):
                    self.stats.malformed["bad_frame"] += 1
                    continue
                for r in records:
                    self.stats.records += 1
                    yield r
        for direction in self._tcp.values():
            for r in self._flush(direction):
                self.stats.records += 1
                yield r

    # -- per frame ----------------------------------------------------------
    def _network(self, raw: bytes, linktype: int) -> Any:
        if linktype == DLT_EN10MB:
            eth = dpkt.ethernet.Ethernet(raw)
            return eth.data
        if linktype == DLT_LINUX_SLL:
            return dpkt.sll.SLL(raw).data
        if linktype in DLT_RAW:
            version = raw[0] >> 4 if raw else 0
            return dpkt.ip.IP(raw) if version == 4 else dpkt.ip6.IP6(raw) if version == 6 else raw
        if linktype in (DLT_NULL, DLT_LOOP):
            return dpkt.loopback.Loopback(raw).data
        self.stats.skipped[f"linktype_{linktype}"] += 1
        return None

    def _frame(self, frame: int, ts: float, raw: bytes, linktype: int) -> list[CaptureRecord]:
        ip = self._network(raw, linktype)
        if ip is None:
            return []
        if isinstance(ip, dpkt.ip.IP):
            if ip.mf or ip.offset:
                self.stats.skipped["ip_fragment"] += 1
                return []
        elif not isinstance(ip, dpkt.ip6.IP6):
            self.stats.skipped["not_ip"] += 1
            return []
        l4 = ip.data
        if isinstance(l4, dpkt.udp.UDP):
            if l4.ulen < 8 or len(l4.data) < l4.ulen - 8:
                self.stats.malformed["truncated_udp"] += 1
                return []
            self.stats.udp_datagrams += 1
            return [
                CaptureRecord(
                    frame,
                    ts,
                    _addr(ip, l4.sport),
                    _daddr(ip, l4.dport),
                    "udp",
                    bytes(l4.data[: l4.ulen - 8]),
                )
            ]
        if isinstance(l4, dpkt.tcp.TCP):
            if isinstance(ip, dpkt.ip.IP) and ip.len:
                expected = ip.len - ((ip._v_hl & 0xF) << 2)
                if (l4.off << 2) + len(l4.data) < expected:  # snaplen cut the segment
                    self.stats.malformed["truncated_tcp"] += 1
                    return []
            self.stats.tcp_segments += 1
            return self._tcp_segment(frame, ts, ip, l4)
        if ip.p in (dpkt.ip.IP_PROTO_UDP, dpkt.ip.IP_PROTO_TCP):
            self.stats.malformed["bad_l4_header"] += 1  # dpkt left the bytes raw
        else:
            self.stats.skipped["not_udp_tcp"] += 1
        return []

    # -- TCP ----------------------------------------------------------------
    def _tcp_segment(self, frame: int, ts: float, ip: Any, tcp: Any) -> list[CaptureRecord]:
        src, dst = _addr(ip, tcp.sport), _daddr(ip, tcp.dport)
        d = self._tcp.get((src, dst))
        if d is None:
            d = self._tcp[(src, dst)] = _TcpDirection(src, dst)
        seq = tcp.seq
        data = bytes(tcp.data)
        if tcp.flags & dpkt.tcp.TH_SYN:
            d.next_seq = (seq + 1) & 0xFFFFFFFF
            seq = d.next_seq
        if not data:
            return []
        if d.next_seq is None:
            d.next_seq = seq  # stream captured mid-connection
        diff = _seq_diff(seq, d.next_seq)
        if diff > 0:
            d.pending.setdefault(seq, (data, frame, ts))  # out of order: wait for the gap
            return []
        if diff < 0:
            if -diff >= len(data):
                self.stats.retransmitted_segments += 1
                return []
            data = data[-diff:]  # partial retransmission: keep only the new bytes
        self._deliver(d, data, frame, ts)
        self._drain_pending(d)
        return list(self._frame_stream(d, final=False))

    def _deliver(self, d: _TcpDirection, data: bytes, frame: int, ts: float) -> None:
        d.append(data, frame, ts)
        assert d.next_seq is not None
        d.next_seq = (d.next_seq + len(data)) & 0xFFFFFFFF

    def _drain_pending(self, d: _TcpDirection) -> None:
        while d.pending:
            assert d.next_seq is not None
            progressed = False
            for seq in list(d.pending):
                data, frame, ts = d.pending[seq]
                diff = _seq_diff(seq, d.next_seq)
                if diff > 0:
                    continue
                del d.pending[seq]
                if -diff >= len(data):
                    self.stats.retransmitted_segments += 1
                    continue
                self._deliver(d, data[-diff:] if diff < 0 else data, frame, ts)
                progressed = True
            if not progressed:
                return

    def _flush(self, d: _TcpDirection) -> Iterator[CaptureRecord]:
        yield from self._frame_stream(d, final=True)
        while d.pending:  # a gap never filled: resynchronise after it
            self.stats.tcp_gaps += 1
            if d.buf:
                self.stats.malformed["tcp_gap_tail"] += 1
            d.reset()
            assert d.next_seq is not None
            ref = d.next_seq
            first = min(d.pending, key=lambda s: _seq_diff(s, ref))
            d.next_seq = first
            self._drain_pending(d)
            yield from self._frame_stream(d, final=True)

    def _frame_stream(self, d: _TcpDirection, final: bool) -> Iterator[CaptureRecord]:
        while True:
            buf = d.buf
            if d.protocol is None:
                if len(buf) < 4:
                    break
                if buf[:2] == _CAFE:
                    d.protocol = "mdp-tcp"
                elif buf[2:4] == _CAFE:
                    d.protocol = "ilink3"
                else:
                    self.stats.malformed["unframed_tcp"] += 1
                    if not self._resync(d):
                        break
                    continue
            consumed = 0
            try:
                if d.protocol == "mdp-tcp":
                    for off, n in split_mdp_tcp(buf):
                        frame, ts = d.origin(d.base + off - 2)
                        yield CaptureRecord(
                            frame, ts, d.src, d.dst, "mdp-tcp", bytes(buf[off : off + n])
                        )
                        consumed = off + n
                else:
                    for off, n in split_sofh(buf):
                        frame, ts = d.origin(d.base + off - 4)
                        yield CaptureRecord(
                            frame, ts, d.src, d.dst, "ilink3", bytes(buf[off : off + n])
                        )
                        consumed = off + n
            except DecodeError as exc:
                d.consume(consumed)
                self.stats.malformed[f"tcp_{exc.reason}"] += 1
                if not self._resync(d):
                    break
                continue
            d.consume(consumed)
            break
        if final and d.buf:
            self.stats.malformed["tcp_partial_tail"] += 1
            d.reset()

    def _resync(self, d: _TcpDirection) -> bool:
        """Skip to the next plausible frame start; False if none is buffered."""
        marker_at = d.buf.find(_CAFE, 1)
        if marker_at < 0:
            d.consume(max(len(d.buf) - 3, 0))
            return False
        # 0xCAFE starts an MDP TCP packet but is bytes 2..3 of an iLink 3 SOFH
        start = marker_at if d.protocol == "mdp-tcp" else max(marker_at - 2, 0)
        d.consume(max(start, 1))
        return True


def read_capture(path: str | Path, stats: CaptureStats | None = None) -> Iterator[CaptureRecord]:
    """Records of a capture file (see the module docstring).

    Pass a ``CaptureStats`` to receive the counters (frames, malformed, ...).
    """
    reader = CaptureReader(path)
    if stats is not None:
        reader.stats = stats
    yield from reader
