"""The simulated market recorded to a capture: ``nanoarb venue --config FILE --record OUT``.

The venue runs offline on a manual clock that jumps from one deadline of the
venue (the next background order, snapshot, definition, heartbeat) to the next:
no socket is opened (order entry and the control endpoint are off) and a minute
of market takes about as long to record as the venue takes to compute it. Every
datagram the venue would send (incremental feeds A and B, the snapshot and the
definition loops) is written to a pcap file, addressed to the feed's configured
``host:port`` and stamped with the market's wall time in nanoseconds.

Same config (seed included) and same duration: byte-identical capture. It replays
like a capture of CME's feeds: ``nanoarb replay --config configs/replay.toml OUT``
(that config routes the venue's default ports to their roles).
"""

from __future__ import annotations

import socket
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from adapters.clock import ManualClock

__all__ = ["RecordingTransport", "record_capture", "write_pcap"]

# market time of a recording: 2026-11-20 14:30:00 UTC (CME RTH), not the host's clock
RECORD_EPOCH_NS = 1_795_185_000_000_000_000
_SRC_IP = "127.0.0.1"
_SRC_PORT = 40000


class RecordingTransport:
    """A venue transport that keeps (wall ns, feed, datagram) in send order."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.datagrams: list[tuple[int, str, bytes]] = []

    def send(self, channel: str, data: bytes | memoryview) -> None:
        self.datagrams.append((self.clock.wall_ns(), channel, bytes(data)))

    def close(self) -> None:
        pass


def write_pcap(path: str | Path, datagrams: list[tuple[int, str, bytes]],
               addresses: dict[str, tuple[str, int]]) -> int:
    """Ethernet/IPv4/UDP frames to ``path`` (pcap, nanosecond timestamps); returns the count."""
    import dpkt

    n = 0
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, nano=True, linktype=dpkt.pcap.DLT_EN10MB)
        for t_ns, channel, data in datagrams:
            host, port = addresses[channel]
            udp = dpkt.udp.UDP(sport=_SRC_PORT, dport=port, data=data)
            udp.ulen = len(udp)
            ip = dpkt.ip.IP(src=socket.inet_aton(_SRC_IP), dst=socket.inet_aton(host),
                            p=dpkt.ip.IP_PROTO_UDP, ttl=1, data=udp)
            ip.len = len(ip)
            eth = dpkt.ethernet.Ethernet(src=b"\x02\x00\x00\x00\x00\x01",
                                         dst=b"\x01\x00\x5e\x00\x00\x01",
                                         type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
            # Decimal keeps every nanosecond (a float second loses ~256 ns at this epoch)
            w.writepkt(bytes(eth), ts=Decimal(t_ns) / Decimal(1_000_000_000))
            n += 1
    return n


def record_capture(cfg: Any, path: str | Path, seconds: float,
                   start_ns: int = RECORD_EPOCH_NS) -> dict[str, Any]:
    """Run the venue of ``cfg`` (a VenueConfig) for ``seconds`` of market time and write
    everything it publishes to ``path``. Returns a summary (datagrams per feed, ...)."""
    from adapters.venue.publisher import DEFINITION, FEED_A, FEED_B, SNAPSHOT
    from adapters.venue.venue import Venue

    if seconds <= 0:
        raise ValueError("seconds must be > 0")
    replace = msgspec.structs.replace
    cfg = replace(cfg, order_entry=replace(cfg.order_entry, enabled=False),
                  control=replace(cfg.control, enabled=False))
    clock = ManualClock(start_ns=1_000_000_000, wall_offset_ns=start_ns - 1_000_000_000)
    transport = RecordingTransport(clock)
    venue = Venue(cfg, clock=clock, transport=transport)
    venue.start()
    end = clock.now_ns() + int(seconds * 1e9)
    while clock.now_ns() < end:
        venue.step()
        now = clock.now_ns()
        # jump to the next deadline; at least 1 us so a deadline in the past cannot stall
        clock.advance(max(min(venue.next_deadline(now), end) - now, 1_000))
    venue.stop()
    md = cfg.market_data
    addresses = {FEED_A: (md.incremental_a.host, md.incremental_a.port),
                 FEED_B: (md.incremental_b.host, md.incremental_b.port),
                 SNAPSHOT: (md.snapshot.host, md.snapshot.port),
                 DEFINITION: (md.definition.host, md.definition.port)}
    for ch, (host, _port) in addresses.items():
        addresses[ch] = (socket.gethostbyname(host) if host == "localhost" else host, _port)
    count = write_pcap(path, transport.datagrams, addresses)
    per_feed: dict[str, int] = {}
    for _t, ch, _d in transport.datagrams:
        per_feed[ch] = per_feed.get(ch, 0) + 1
    return {"event": "recorded", "path": str(path), "datagrams": count, "per_feed": per_feed,
            "seconds": seconds, "seq": venue.publisher.seq,
            "engine": venue.summary().get("engine")}
