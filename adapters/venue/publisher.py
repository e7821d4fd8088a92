"""MDP 3.0 out: the incremental feeds A and B, the snapshot loop and the definition loop.

``IncrementalPublisher`` turns matching-engine records into packets with the njit
encoder (``adapters.venue.encoder``), keeps them pending until ``flush()`` and
then sends each one on feed A and feed B (byte-identical payloads, as CME),
applying the armed feed faults, and records the send time of every MsgSeqNum
(``latency.SendTimes``) right after its first ``sendto``. Admin messages
(AdminHeartbeat12 when the channel is idle, SecurityStatus30, ChannelReset4) are
built with the generic codec: they are rare.

``SnapshotLoop``: every ``interval`` one SnapshotFullRefresh52 per instrument, one
per packet, MsgSeqNum 1..N restarting each loop, TotNumReports = N. Each
snapshot is the engine's book at the moment the loop runs, after every pending
incremental was flushed, so LastMsgSeqNumProcessed (the channel's last packet
sent) and RptSeq (the instrument's last entry sent) describe exactly that book.

``DefinitionLoop``: MDInstrumentDefinitionFuture54 per instrument, same cycling.

``Transport``: where bytes go. ``UdpTransport`` sends to 127.0.0.1 ports or
multicast groups (IP_MULTICAST_IF on the configured interface, loopback on so a
local client hears it); ``CaptureTransport`` keeps them in memory (tests,
determinism checks).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from adapters.clock import Clock
from adapters.venue.encoder import IncrementalEncoder
from adapters.venue.faults import FeedFaults
from adapters.venue.latency import SendTimes
from core.sbe.codec import encode, encode_mdp_packet
from core.types import MEI_END_OF_EVENT, TS_READY_TO_TRADE

__all__ = [
    "FEED_A",
    "FEED_B",
    "CaptureTransport",
    "DefinitionLoop",
    "IncrementalPublisher",
    "InstrumentInfo",
    "SnapshotLoop",
    "Transport",
    "UdpTransport",
]

FEED_A = "A"
FEED_B = "B"
SNAPSHOT = "snapshot"
DEFINITION = "definition"
_FEEDS = (FEED_A, FEED_B)
NS_PER_DAY = 86_400 * 1_000_000_000


class Transport(Protocol):
    def send(self, channel: str, data: bytes | memoryview) -> None: ...

    def close(self) -> None: ...


class CaptureTransport:
    """Keeps every datagram: ``sent[channel]`` = list of bytes, ``log`` = (channel, bytes)."""

    def __init__(self) -> None:
        self.sent: dict[str, list[bytes]] = {c: [] for c in (*_FEEDS, SNAPSHOT, DEFINITION)}
        self.log: list[tuple[str, bytes]] = []

    def send(self, channel: str, data: bytes | memoryview) -> None:
        b = bytes(data)
        self.sent.setdefault(channel, []).append(b)
        self.log.append((channel, b))

    def close(self) -> None:
        pass


class UdpTransport:
    """One UDP socket per channel, sending to 127.0.0.1 or a multicast group."""

    def __init__(self, addresses: dict[str, tuple[str, int]], *, interface: str = "127.0.0.1",
                 ttl: int = 1, sndbuf: int = 4 << 20) -> None:
        self.addresses = dict(addresses)
        self.socks: dict[str, socket.socket] = {}
        self.errors = 0
        for channel, (host, _port) in self.addresses.items():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            if ipaddress.ip_address(_resolve(host)).is_multicast:
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                             socket.inet_aton(interface))
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            elif _resolve(host) != "127.0.0.1":
                s.close()
                raise ValueError(f"{channel}: {host} is neither 127.0.0.1 nor multicast")
            s.setblocking(False)
            self.socks[channel] = s
        self._dest = {c: (_resolve(h), p) for c, (h, p) in self.addresses.items()}

    def send(self, channel: str, data: bytes | memoryview) -> None:
        try:
            self.socks[channel].sendto(data, self._dest[channel])
        except (BlockingIOError, InterruptedError, ConnectionRefusedError):
            # a full socket buffer or an ICMP port-unreachable from a unicast peer
            # that is not listening: the datagram is lost, as UDP is
            self.errors += 1

    def close(self) -> None:
        for s in self.socks.values():
            s.close()
        self.socks.clear()


def _resolve(host: str) -> str:
    return "127.0.0.1" if host == "localhost" else host


@dataclass
class InstrumentInfo:
    """Static definition of an instrument as the venue publishes it."""

    security_id: int
    symbol: str
    group: str
    asset: str
    tick: int  # PRICE9 mantissa
    display_factor: int  # Decimal9 mantissa
    multiplier: int  # UnitOfMeasureQty, Decimal9 mantissa
    depth: int
    band_low: int
    band_high: int
    reference_price: int
    maturity: str  # YYYYMM
    market_segment_id: int = 64
    max_trade_vol: int = 3000


# --------------------------------------------------------------------------
# Admin / loop messages (generic codec)
# --------------------------------------------------------------------------
def heartbeat_message(schema: Any, version: int) -> bytes:
    return encode({"template_id": 12, "fields": {}, "groups": {}}, schema, version)


def channel_reset_message(schema: Any, version: int, transact_time: int, appl_id: int) -> bytes:
    return encode({"template_id": 4,
                   "fields": {"TransactTime": transact_time,
                              "MatchEventIndicator": MEI_END_OF_EVENT},
                   "groups": {"NoMDEntries": [{"ApplID": appl_id}]}}, schema, version)


def security_status_message(schema: Any, version: int, info: InstrumentInfo, status: int,
                            transact_time: int, halt_reason: int = 0) -> bytes:
    return encode({"template_id": 30, "fields": {
        "TransactTime": transact_time, "SecurityGroup": info.group, "Asset": info.asset,
        "SecurityID": info.security_id, "TradeDate": transact_time // NS_PER_DAY,
        "MatchEventIndicator": MEI_END_OF_EVENT, "SecurityTradingStatus": status,
        "HaltReason": halt_reason, "SecurityTradingEvent": 0}, "groups": {}}, schema, version)


def snapshot_message(schema: Any, version: int, info: InstrumentInfo, *, last_seq: int,
                     tot: int, rpt_seq: int, transact_time: int, status: int,
                     bids: np.ndarray, asks: np.ndarray, trade_date: int) -> bytes:
    entries = []
    for entry_type, levels in (("0", bids), ("1", asks)):
        for k, lv in enumerate(levels):
            entries.append({"MDEntryPx": int(lv["price"]), "MDEntrySize": int(lv["qty"]),
                            "NumberOfOrders": int(lv["num_orders"]), "MDPriceLevel": k + 1,
                            "TradingReferenceDate": None, "OpenCloseSettlFlag": None,
                            "SettlPriceType": 0, "MDEntryType": entry_type})
    return encode({"template_id": 52, "fields": {
        "LastMsgSeqNumProcessed": last_seq, "TotNumReports": tot,
        "SecurityID": info.security_id, "RptSeq": rpt_seq, "TransactTime": transact_time,
        "LastUpdateTime": transact_time, "TradeDate": trade_date,
        "MDSecurityTradingStatus": status, "HighLimitPrice": info.band_high,
        "LowLimitPrice": info.band_low, "MaxPriceVariation": None},
        "groups": {"NoMDEntries": entries}}, schema, version)


def definition_message(schema: Any, version: int, info: InstrumentInfo, *, tot: int,
                       appl_id: int, status: int, update_time: int, mbo: bool) -> bytes:
    feeds = [{"MDFeedType": "GBX", "MarketDepth": info.depth}]
    if mbo:
        feeds.append({"MDFeedType": "MBO", "MarketDepth": 0})
    return encode({"template_id": 54, "fields": {
        "MatchEventIndicator": 0, "TotNumReports": tot, "SecurityUpdateAction": "A",
        "LastUpdateTime": update_time, "MDSecurityTradingStatus": status, "ApplID": appl_id,
        "MarketSegmentID": info.market_segment_id, "UnderlyingProduct": 5,
        "SecurityExchange": "XCME", "SecurityGroup": info.group, "Asset": info.asset,
        "Symbol": info.symbol, "SecurityID": info.security_id, "SecurityType": "FUT",
        "CFICode": "FFIXSX",
        "MaturityMonthYear": {"year": int(info.maturity[:4]), "month": int(info.maturity[4:6]),
                              "day": None, "week": None},
        "Currency": "USD", "SettlCurrency": "USD", "MatchAlgorithm": "F", "MinTradeVol": 1,
        "MaxTradeVol": info.max_trade_vol, "MinPriceIncrement": info.tick,
        "DisplayFactor": info.display_factor, "MainFraction": None, "SubFraction": None,
        "PriceDisplayFormat": None, "UnitOfMeasure": "IPNT",
        "UnitOfMeasureQty": info.multiplier, "TradingReferencePrice": info.reference_price,
        "SettlPriceType": 0, "OpenInterestQty": None, "ClearedVolume": None,
        "HighLimitPrice": info.band_high, "LowLimitPrice": info.band_low,
        "MaxPriceVariation": None, "DecayQuantity": None, "DecayStartDate": None,
        "OriginalContractSize": None, "ContractMultiplier": None,
        "ContractMultiplierUnit": None, "FlowScheduleType": None,
        "MinPriceIncrementAmount": None, "UserDefinedInstrument": "N",
        "TradingReferenceDate": None},
        "groups": {"NoEvents": [], "NoMDFeedTypes": feeds, "NoInstAttrib": [],
                   "NoLotTypeRules": []}}, schema, version)


# --------------------------------------------------------------------------
# Incremental feeds
# --------------------------------------------------------------------------
class IncrementalPublisher:
    """Pending incremental packets of one channel and how they reach feeds A and B."""

    def __init__(self, instruments: Sequence[InstrumentInfo], transport: Transport,
                 clock: Clock, *, channel_id: int, version: int = 13, mbo: bool = True,
                 max_packet: int = 1420, heartbeat_ns: int = 1_000_000_000,
                 send_times: SendTimes | None = None, faults: FeedFaults | None = None,
                 buffer_bytes: int = 1 << 23) -> None:
        self.instruments = list(instruments)
        self.transport = transport
        self.clock = clock
        self.channel_id = channel_id
        self.encoder = IncrementalEncoder([i.security_id for i in instruments],
                                          [i.depth for i in instruments], version=version,
                                          mbo=mbo, max_packet=max_packet,
                                          buffer_bytes=buffer_bytes)
        self.schema = self.encoder.schema
        self.version = version
        self.heartbeat_ns = heartbeat_ns
        self.send_times = send_times or SendTimes()
        self.faults = faults or FeedFaults()
        self.status = np.full(len(self.instruments), TS_READY_TO_TRADE, dtype=np.int64)
        self._held: list[tuple[int, bytes] | None] = [None, None]  # reordered, per feed
        self.last_send_ns = clock.now_ns()
        self.stats = {"packets": 0, "datagrams": 0, "heartbeats": 0, "channel_resets": 0}
        self._heartbeat = heartbeat_message(self.schema, version)

    @property
    def seq(self) -> int:
        """MsgSeqNum of the last packet created (sent once flushed)."""
        return self.encoder.seq

    def publish(self, mds: np.ndarray) -> int:
        """Encode matching-engine records (MATCH_MD) as pending packets; returns events."""
        if len(mds) == 0:
            return 0
        return self.encoder.encode(mds, self.clock.wall_ns())

    def publish_message(self, message: bytes, *, new_packet: bool = True) -> None:
        self.encoder.append(message, self.clock.wall_ns(), new_packet=new_packet)

    def security_status(self, row: int, status: int) -> None:
        self.status[row] = status
        self.publish_message(security_status_message(
            self.schema, self.version, self.instruments[row], status, self.clock.wall_ns()),
            new_packet=False)

    def channel_reset(self) -> None:
        """ChannelReset4 in its own packet; RptSeq restarts (the caller re-sends the books)."""
        self.publish_message(channel_reset_message(self.schema, self.version,
                                                   self.clock.wall_ns(), self.channel_id))
        self.encoder.close_packet()
        self.encoder.reset_rpt_seq()
        self.stats["channel_resets"] += 1

    def flush(self) -> int:
        """Send every pending packet on A and B; returns packets sent."""
        enc = self.encoder
        enc.close_packet()
        n = enc.n_packets
        if n == 0:
            return 0
        buf = memoryview(enc.buf)  # type: ignore[arg-type]
        bounds = enc.packets()
        send = self.transport.send
        now_ns = self.clock.now_ns
        faults = self.faults
        for k in range(n):
            start, end, seq = int(bounds[k, 0]), int(bounds[k, 1]), int(bounds[k, 2])
            data = buf[start:end]
            if not faults.active and self._held[0] is None and self._held[1] is None:
                send(FEED_A, data)
                t = now_ns()
                send(FEED_B, data)
                self.send_times.record(seq, t)
                self.stats["datagrams"] += 2
            else:
                self._send_faulty(seq, data)
        self.stats["packets"] += n
        self.last_send_ns = self.clock.now_ns()
        enc.clear()
        return n

    def _send_faulty(self, seq: int, data: memoryview) -> None:
        faults = self.faults
        if faults.take_gap(seq):
            return
        sent_at = -1
        for feed in (0, 1):
            kind = faults.take(feed, seq)
            if kind == "drop":
                continue
            if kind == "reorder":
                held = self._held[feed]
                self._held[feed] = (self.clock.now_ns(), bytes(data))
                if held is not None:  # two in a row: the older one goes now
                    self.transport.send(_FEEDS[feed], held[1])
                continue
            self.transport.send(_FEEDS[feed], data)
            self.stats["datagrams"] += 1
            if sent_at < 0:
                sent_at = self.clock.now_ns()
            if kind == "duplicate":
                self.transport.send(_FEEDS[feed], data)
                self.stats["datagrams"] += 1
            held = self._held[feed]
            if held is not None:
                self._held[feed] = None
                self.transport.send(_FEEDS[feed], held[1])
                self.stats["datagrams"] += 1
        if sent_at >= 0:
            self.send_times.record(seq, sent_at)

    def on_timer(self, now_ns: int) -> None:
        """Release reordered packets held too long; heartbeat an idle channel."""
        for feed in (0, 1):
            held = self._held[feed]
            if held is not None and now_ns - held[0] >= self.faults.hold_ns:
                self._held[feed] = None
                self.transport.send(_FEEDS[feed], held[1])
        if now_ns - self.last_send_ns >= self.heartbeat_ns:
            self.publish_message(self._heartbeat)
            self.stats["heartbeats"] += 1
            self.flush()


# --------------------------------------------------------------------------
# Snapshot and definition loops
# --------------------------------------------------------------------------
class SnapshotLoop:
    """SnapshotFullRefresh52 of every instrument, one per packet, every ``interval_ns``."""

    def __init__(self, publisher: IncrementalPublisher, book: Callable[[int, int], Any],
                 transport: Transport, clock: Clock, interval_ns: int) -> None:
        self.pub = publisher
        self.book = book  # (row, depth) -> (bids, asks) MATCH_LEVEL arrays
        self.transport = transport
        self.clock = clock
        self.interval_ns = interval_ns
        self.next_ns = clock.now_ns()
        self.cycles = 0

    def packets(self) -> list[bytes]:
        """One loop's packets (built now, from the current book and sequence state)."""
        pub = self.pub
        wall = self.clock.wall_ns()
        trade_date = wall // NS_PER_DAY
        n = len(pub.instruments)
        out = []
        for row, info in enumerate(pub.instruments):
            bids, asks = self.book(row, info.depth)
            t = pub.encoder.last_time(row) or wall
            msg = snapshot_message(pub.schema, pub.version, info, last_seq=pub.seq, tot=n,
                                   rpt_seq=pub.encoder.rpt_seq(row), transact_time=t,
                                   status=int(pub.status[row]), bids=bids, asks=asks,
                                   trade_date=trade_date)
            out.append(encode_mdp_packet(row + 1, wall, [msg]))
        return out

    def on_timer(self, now_ns: int) -> bool:
        if now_ns < self.next_ns:
            return False
        self.next_ns = now_ns + self.interval_ns
        self.pub.flush()  # the snapshot must not describe unsent incrementals
        for p in self.packets():
            self.transport.send(SNAPSHOT, p)
        self.cycles += 1
        return True


class DefinitionLoop:
    """MDInstrumentDefinitionFuture54 of every instrument, one per packet, every interval."""

    def __init__(self, publisher: IncrementalPublisher, transport: Transport, clock: Clock,
                 interval_ns: int) -> None:
        self.pub = publisher
        self.transport = transport
        self.clock = clock
        self.interval_ns = interval_ns
        self.next_ns = clock.now_ns()
        self.cycles = 0
        self.update_time = clock.wall_ns()

    def packets(self) -> list[bytes]:
        pub = self.pub
        wall = self.clock.wall_ns()
        n = len(pub.instruments)
        return [encode_mdp_packet(row + 1, wall, [definition_message(
            pub.schema, pub.version, info, tot=n, appl_id=pub.channel_id,
            status=int(pub.status[row]), update_time=self.update_time, mbo=pub.encoder.mbo)])
            for row, info in enumerate(pub.instruments)]

    def on_timer(self, now_ns: int) -> bool:
        if now_ns < self.next_ns:
            return False
        self.next_ns = now_ns + self.interval_ns
        for p in self.packets():
            self.transport.send(DEFINITION, p)
        self.cycles += 1
        return True
