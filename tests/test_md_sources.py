"""Market-data sources: pcap replay through the live path vs ``nanoarb decode``,
unicast UDP on 127.0.0.1 (A/B, kernel timestamps), pacing, joins."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from adapters.clock import ManualClock
from adapters.cme_config import ChannelConfig, Endpoint
from adapters.md_sources import END, HAVE_LIBC_POLL, FeedHandler, PcapSource, RxSlot, UdpSource
from core.sequencing import Sequencer, SequencerConfig
from core.types import (
    EV_BOOK,
    EV_ORDER,
    EV_ORDER_REF,
    EV_TRADE,
    EV_TRADE_ORDER,
    EV_VOLUME,
    FEED_A,
    FEED_B,
    ROLE_INCREMENTAL,
    ROLE_SNAPSHOT,
)
from tests.conftest import PCAP_DIR, REPO
from tests.helpers.feedsim import FeedSim, RefBooks

V9 = sorted(PCAP_DIR.glob("mdp3_v9_udp_*.pcap"))

# template -> [(group, kind, {event field: message field})]
_EXPECT = {
    46: [("NoMDEntries", EV_BOOK, {"price": "MDEntryPx", "size": "MDEntrySize",
                                    "security_id": "SecurityID", "rpt_seq": "RptSeq",
                                    "num_orders": "NumberOfOrders", "price_level": "MDPriceLevel",
                                    "action": "MDUpdateAction", "entry_type": "MDEntryType"}),
         ("NoOrderIDEntries", EV_ORDER_REF, {"order_id": "OrderID", "aux": "MDOrderPriority",
                                              "size": "MDDisplayQty", "price_level": "ReferenceID",
                                              "action": "OrderUpdateAction"})],
    47: [("NoMDEntries", EV_ORDER, {"order_id": "OrderID", "aux": "MDOrderPriority",
                                     "price": "MDEntryPx", "size": "MDDisplayQty",
                                     "security_id": "SecurityID", "action": "MDUpdateAction",
                                     "entry_type": "MDEntryType"})],
    48: [("NoMDEntries", EV_TRADE, {"price": "MDEntryPx", "size": "MDEntrySize",
                                     "security_id": "SecurityID", "rpt_seq": "RptSeq",
                                     "num_orders": "NumberOfOrders", "side": "AggressorSide",
                                     "action": "MDUpdateAction", "aux": "MDTradeEntryID"}),
         ("NoOrderIDEntries", EV_TRADE_ORDER, {"order_id": "OrderID", "size": "LastQty"})],
    37: [("NoMDEntries", EV_VOLUME, {"size": "MDEntrySize", "security_id": "SecurityID",
                                      "rpt_seq": "RptSeq", "action": "MDUpdateAction"})],
}


def _expected_rows(lines: list[str]) -> list[dict]:
    """Rows the decoder must produce, from ``nanoarb decode --json`` messages."""
    out = []
    index_in_packet: dict[int, int] = {}
    for line in lines:
        m = json.loads(line)
        seq = m["seq"]
        mi = index_in_packet.get(seq, 0)
        index_in_packet[seq] = mi + 1
        for group, kind, fields in _EXPECT[m["template_id"]]:
            for entry in m["groups"][group]:
                row = {"kind": kind, "template_id": m["template_id"], "msg_seq": seq,
                       "msg_index": mi}
                for ev_field, msg_field in fields.items():
                    v = entry[msg_field]
                    if v is None:
                        continue
                    row[ev_field] = ord(v) if isinstance(v, str) else v
                out.append(row)
    return out


@pytest.mark.parametrize("path", V9, ids=lambda p: p.name)
def test_live_path_replay_equals_nanoarb_decode(path: Path):
    r = subprocess.run([sys.executable, "-m", "daemon.cli", "decode", "--json", str(path)],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    expected = _expected_rows(r.stdout.splitlines())
    assert expected

    got: list[np.ndarray] = []
    src = PcapSource([path])
    # a capture joins mid-session: trust the first RptSeq of each instrument
    seq = Sequencer(1, SequencerConfig(recover_on_start=False))
    handler = FeedHandler(src, seq, on_rows=lambda rows, c: got.append(rows.copy()))
    handler.open()
    handler.run()
    assert handler.ended and handler.datagrams == len(src) == 1
    rows = np.concatenate(got)
    rows = rows[np.isin(rows["kind"], [EV_BOOK, EV_ORDER, EV_ORDER_REF, EV_TRADE,
                                       EV_TRADE_ORDER, EV_VOLUME])]
    assert rows.size == len(expected)
    for row, exp in zip(rows, expected, strict=True):
        for field, value in exp.items():
            assert int(row[field]) == value, (field, exp, row)
    c = seq.counter_dict(0)
    assert c["delivered"] == 1 and c["rpt_gaps"] == 0 and c["rows_out"] == c["rows_in"]


def _channel(base_port: int) -> ChannelConfig:
    return ChannelConfig(channel_id=310, endpoints=(
        Endpoint("incremental", "A", "127.0.0.1", base_port),
        Endpoint("incremental", "B", "127.0.0.1", base_port + 1),
        Endpoint("snapshot", "A", "127.0.0.1", base_port + 2)))


def _free_port_block(n: int = 3) -> int:
    for base in range(30000, 60000, 17):
        socks = []
        try:
            for k in range(n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", base + k))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free UDP ports")


@pytest.mark.parametrize("timestamps", [False, True])
@pytest.mark.parametrize(("use_libc", "use_epoll"), [(True, True), (True, False), (False, False)])
def test_unicast_a_b_feeds_on_loopback(timestamps: bool, use_libc: bool, use_epoll: bool):
    if use_libc and not HAVE_LIBC_POLL:
        pytest.skip("libc polling needs 64-bit Linux")
    base = _free_port_block()
    ch = _channel(base)
    src = UdpSource([ch], kernel_timestamps=timestamps, use_libc=use_libc,
                    rcvbuf_bytes=4 << 20, use_epoll=use_epoll)
    seq = Sequencer(1, SequencerConfig(recover_on_start=False), appl_ids=[310])
    ref = RefBooks()
    feeds_seen = set()

    def on_rows(rows: np.ndarray, c: int) -> None:
        ref.apply(rows)

    handler = FeedHandler(src, seq, on_rows=on_rows)
    handler.open()
    try:
        assert src.rcvbuf_effective >= 1 << 20
        sim = FeedSim([1, 2], seed=7)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        n = 100
        wall0 = time.time_ns()
        stamps = []
        for _ in range(n):
            p = sim.next_packet()
            tx.sendto(p, ("127.0.0.1", base))
            tx.sendto(p, ("127.0.0.1", base + 1))
        deadline = time.monotonic() + 60  # first call compiles
        while handler.datagrams < 2 * n and time.monotonic() < deadline:
            if handler.poll() >= 0 and handler.rx.recv_ns:
                stamps.append(handler.rx.recv_ns)
            feeds_seen.add(handler.rx.feed)
        tx.close()
    finally:
        handler.close()
    c = seq.counter_dict(0)
    assert handler.datagrams == 2 * n
    assert c["delivered"] == n and c["duplicates"] == n
    assert c["packets_a"] == n and c["packets_b"] == n
    assert feeds_seen == {FEED_A, FEED_B}
    for sid in (1, 2):
        assert ref.book(sid) == sim.book(sid)
    if timestamps:
        assert len(stamps) == 2 * n
        assert wall0 - 10**9 < min(stamps) <= max(stamps) < time.time_ns() + 10**9
    else:
        assert not stamps


def _poll_until(src: UdpSource, rx: RxSlot, timeout_s: float) -> int:
    """Poll until a datagram comes (its size) or ``timeout_s`` passes (0)."""
    deadline = time.monotonic() + timeout_s
    n = 0
    while n == 0 and time.monotonic() < deadline:
        n = src.poll(rx)
    return n


def test_join_and_leave_the_snapshot_feed():
    base = _free_port_block()
    src = UdpSource([_channel(base)], kernel_timestamps=False)
    src.open()
    try:
        assert src.joined(0, ROLE_INCREMENTAL) and not src.joined(0, ROLE_SNAPSHOT)
        assert src.join(0, ROLE_SNAPSHOT) == 1
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.sendto(b"\x01\x00\x00\x00" + bytes(8), ("127.0.0.1", base + 2))
        rx = RxSlot()
        n = _poll_until(src, rx, 30)
        assert n == 12 and rx.role == ROLE_SNAPSHOT
        src.leave(0, ROLE_SNAPSHOT)
        assert not src.joined(0, ROLE_SNAPSHOT)
        tx.close()
    finally:
        src.close()


@pytest.mark.skipif(not HAVE_LIBC_POLL, reason="libc polling needs 64-bit Linux")
def test_epoll_poll_takes_turns_between_busy_feeds_and_follows_joins():
    base = _free_port_block()
    src = UdpSource([_channel(base)], kernel_timestamps=False, use_epoll=True)
    src.open()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx = RxSlot()
    try:
        assert src._epfd >= 0
        for k in range(40):  # both feeds busy: 40 datagrams queued on each
            tx.sendto(bytes([k]) * 16, ("127.0.0.1", base))
            tx.sendto(bytes([k]) * 24, ("127.0.0.1", base + 1))
        assert _poll_until(src, rx, 30) > 0  # the first datagram (the first call compiles)
        feeds = [rx.feed]
        for _ in range(19):
            assert src.poll(rx) > 0
            feeds.append(rx.feed)
        # level-triggered, one event a call: the ready feeds take turns, none starves
        assert feeds.count(FEED_A) >= 5 and feeds.count(FEED_B) >= 5
        got = 20
        while src.poll(rx) > 0:
            got += 1
        assert got == 80 and src.poll(rx) == 0  # all read; an empty pass returns 0
        # a join and a leave rebuild the epoll set (the joined snapshot feed is read
        # through it in test_join_and_leave_the_snapshot_feed); the incremental stays in
        assert src.join(0, ROLE_SNAPSHOT) == 1
        src.leave(0, ROLE_SNAPSHOT)
        tx.sendto(bytes(20), ("127.0.0.1", base))
        n = _poll_until(src, rx, 10)
        assert n == 20 and rx.role == ROLE_INCREMENTAL and rx.feed == FEED_A
    finally:
        tx.close()
        src.close()
    assert src._epfd == -1 and src.poll(rx) == 0


def test_pcap_source_paced_by_capture_time(tmp_path: Path):
    import dpkt

    path = tmp_path / "paced.pcap"
    sim = FeedSim([1], seed=3)
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh)
        for k in range(3):
            udp = dpkt.udp.UDP(sport=1, dport=14310, data=sim.next_packet())
            udp.ulen = len(udp)
            ip = dpkt.ip.IP(src=socket.inet_aton("10.0.0.1"), dst=socket.inet_aton("224.0.31.1"),
                            p=dpkt.ip.IP_PROTO_UDP, data=udp)
            ip.len = len(ip)
            w.writepkt(bytes(dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP, data=ip)),
                       ts=100.0 + k * 0.010)
    clock = ManualClock()
    ch = ChannelConfig(channel_id=310, endpoints=(Endpoint("incremental", "B", "224.0.31.1",
                                                           14310),))
    src = PcapSource([path], channels=[ch], speed=2.0, clock=clock)
    src.open()
    rx = RxSlot()
    assert src.poll(rx) > 0 and rx.feed == FEED_B and rx.role == ROLE_INCREMENTAL
    assert src.poll(rx) == 0  # due 5 ms later at speed 2
    clock.advance(4_900_000)
    assert src.poll(rx) == 0
    clock.advance(200_000)
    assert src.poll(rx) > 0
    clock.advance(5_000_000)
    assert src.poll(rx) > 0
    assert src.poll(rx) == END
    _, offsets, meta = src.stream()
    assert offsets.size == 4 and meta.shape == (3, 4)


def test_pcap_stream_batch_equals_datagram_by_datagram():
    from core.sequencing import SequencedFeed

    src = PcapSource(V9)
    src.open()
    a = SequencedFeed(Sequencer(4, SequencerConfig(recover_on_start=False)))
    buf, offsets, meta = src.stream()
    meta = meta.copy()
    meta[:, 0] = np.arange(meta.shape[0])  # one channel per capture (separate sequences)
    batch, ends, done = a.process_stream(buf, offsets, meta)
    assert done == meta.shape[0]
    b = SequencedFeed(Sequencer(4, SequencerConfig(recover_on_start=False)))
    one = [b.on_datagram(ROLE_INCREMENTAL, buf[offsets[i]:offsets[i + 1]].copy(),
                         int(offsets[i + 1] - offsets[i]), i, 0, int(meta[i, 3])).copy()
           for i in range(meta.shape[0])]
    assert np.array_equal(batch, np.concatenate(one))
    assert ends[-1] == batch.size


class _ListSource:
    """Datagrams from a list, all incremental feed A of channel 0."""

    def __init__(self, packets: list[bytes]) -> None:
        self.packets = packets
        self.i = 0

    def open(self) -> None: ...

    def close(self) -> None: ...

    def poll(self, rx: RxSlot) -> int:
        if self.i >= len(self.packets):
            return END
        p = self.packets[self.i]
        self.i += 1
        rx.buf[:len(p)] = np.frombuffer(p, dtype=np.uint8)
        rx.channel, rx.role, rx.feed, rx.recv_ns = 0, ROLE_INCREMENTAL, FEED_A, 0
        return len(p)


def test_intraday_definitions_on_the_incremental_feed_reach_the_table():
    from core.sbe.instruments import InstrumentTable

    sim = FeedSim([11, 12], seed=1)
    packets = [*sim.definition_loop(), sim.next_packet()]  # MsgSeqNum 1, 2, then 1 again
    packets[-1] = (3).to_bytes(4, "little") + packets[-1][4:]
    table = InstrumentTable()
    seq = Sequencer(1, SequencerConfig(recover_on_start=False))
    handler = FeedHandler(_ListSource(packets), seq, instruments=table)
    handler.run()
    assert 11 in table and 12 in table
    assert seq.counter_dict(0)["delivered"] == 3
