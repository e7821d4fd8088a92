"""Feed handler benchmark (issue 4): replay throughput and the cost of an empty busy-poll.

Figures:

* ``feed_replay_packets_per_s`` (target 1.0e6): incremental datagrams of feeds A
  and B (1 % loss on each, 1 % duplicates, 1 % reordering) through arbitration,
  the MDP decoder, the instrument gate and the books (core.market, features
  on), in packets per second: ``SequencedFeed.process_stream`` (one numba call
  for the batch) + ``MarketState.apply_events``.
* ``feed_replay_events_per_s`` (target 4.0e6): the same run in MD_EVENT rows out
  of the sequencer per second.
* ``feed_sequencing_packets_per_s``: arbitration + decode + gate only (no books).
* ``feed_datagram_call_p50_us`` / ``_p99_us``: one datagram through the live path
  from Python, one ``on_datagram`` call + one ``apply_events`` call per datagram.
* ``feed_empty_poll_ns`` (target 1000): one empty ``UdpSource.poll`` over feeds A
  and B (two sockets; one ``epoll_wait(0)`` from numba, the default path).
  ``feed_empty_poll_recv_ns``: the same with one libc ``recv`` per socket.
  ``feed_empty_poll_python_ns``: the portable path (``socket.recv_into`` and its
  BlockingIOError), for comparison. ``feed_empty_spin_round_ns``: one round of
  the busy-poll loop kept inside numba (``UdpSource.spin``).
* ``feed_recv_ns`` / ``feed_recvmsg_timestamp_ns``: receiving one queued datagram
  with plain ``recv`` vs ``recvmsg`` + the SO_TIMESTAMPNS control message.

Run: ``python -m perf.bench_feed [--out DIR] [--quick]``.
"""

from __future__ import annotations

import random
import socket
import time
from typing import Any

import numpy as np

from perf._common import base_parser, figure, now_iso, percentiles_us, write_result


def build_stream(n_packets: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(buf, offsets, meta) of the A/B arrivals of ``n_packets`` incremental packets."""
    from core.types import ROLE_INCREMENTAL
    from tests.helpers.feedsim import FeedSim, impair

    sim = FeedSim([1000 + k for k in range(8)], seed=seed)
    packets = [sim.next_packet() for _ in range(n_packets)]
    arrivals = impair(packets, random.Random(seed), loss_a=0.01, loss_b=0.01, dup=0.01,
                      reorder=0.01)
    sizes = np.array([len(p) for _, p in arrivals], dtype=np.int64)
    offsets = np.zeros(len(arrivals) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    buf = np.frombuffer(b"".join(p for _, p in arrivals), dtype=np.uint8).copy()
    meta = np.zeros((len(arrivals), 4), dtype=np.int64)
    meta[:, 1] = [f for f, _ in arrivals]
    meta[:, 2] = ROLE_INCREMENTAL
    meta[:, 3] = np.arange(len(arrivals)) * 1000
    return buf, offsets, meta


def _fresh() -> tuple[Any, Any]:
    from core.market import MarketState
    from core.sequencing import SequencedFeed, Sequencer, SequencerConfig

    feed = SequencedFeed(Sequencer(1, SequencerConfig(recover_on_start=False)),
                         out_capacity=1 << 22)
    return feed, MarketState(max_instruments=64)


def replay(buf: np.ndarray, offsets: np.ndarray, meta: np.ndarray,
           books: bool) -> tuple[float, int]:
    """Seconds for the whole stream and the rows produced (batch path)."""
    feed, market = _fresh()
    t0 = time.perf_counter_ns()
    rows, _, done = feed.process_stream(buf, offsets, meta)
    if books:
        market.apply_events(rows)
    dt = (time.perf_counter_ns() - t0) / 1e9
    assert done == meta.shape[0]
    return dt, int(rows.size)


def per_datagram(buf: np.ndarray, offsets: np.ndarray, meta: np.ndarray,
                 n: int) -> np.ndarray:
    from core.types import ROLE_INCREMENTAL

    feed, market = _fresh()
    samples = np.zeros(n, dtype=np.int64)
    packets = [buf[offsets[i]:offsets[i + 1]].copy() for i in range(n)]
    for i in range(n):
        p = packets[i]
        t0 = time.perf_counter_ns()
        rows = feed.on_datagram(ROLE_INCREMENTAL, p, p.size, 0, int(meta[i, 1]),
                                int(meta[i, 3]))
        if rows.size:
            market.apply_events(rows)
        samples[i] = time.perf_counter_ns() - t0
    return samples


def _udp_pair() -> tuple[Any, Any, list[int]]:
    from adapters.cme_config import ChannelConfig, Endpoint

    ports = []
    for _ in range(2):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        ports.append(s.getsockname()[1])
        s.close()
    ch = ChannelConfig(channel_id=1, endpoints=(
        Endpoint("incremental", "A", "127.0.0.1", ports[0]),
        Endpoint("incremental", "B", "127.0.0.1", ports[1])))
    return ch, None, ports


def empty_poll_ns(use_libc: bool, n: int, use_epoll: bool = True) -> float:
    from adapters.md_sources import RxSlot, UdpSource

    ch, _, _ = _udp_pair()
    src = UdpSource([ch], kernel_timestamps=False, use_libc=use_libc, rcvbuf_bytes=1 << 20,
                    use_epoll=use_epoll)
    src.open()
    rx = RxSlot()
    try:
        for _ in range(100):
            src.poll(rx)
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter_ns()
            for _ in range(n):
                src.poll(rx)
            best = min(best, (time.perf_counter_ns() - t0) / n)
        return best
    finally:
        src.close()


def spin_round_ns(n: int) -> float:
    from adapters.md_sources import RxSlot, UdpSource

    ch, _, _ = _udp_pair()
    src = UdpSource([ch], kernel_timestamps=False, rcvbuf_bytes=1 << 20)
    src.open()
    rx = RxSlot()
    try:
        src.spin(rx, 10)
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter_ns()
            src.spin(rx, n)
            best = min(best, (time.perf_counter_ns() - t0) / n)
        return best
    finally:
        src.close()


def recv_ns(timestamps: bool, n: int) -> float:
    """Per-datagram cost of draining ``n`` queued datagrams from one socket."""
    from adapters.md_sources import RxSlot, UdpSource

    ch, _, ports = _udp_pair()
    src = UdpSource([ch], feeds=("A",), kernel_timestamps=timestamps, rcvbuf_bytes=32 << 20)
    src.open()
    rx = RxSlot()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = bytes(200)
    try:
        best = float("inf")
        for _ in range(3):
            for _ in range(n):
                tx.sendto(payload, ("127.0.0.1", ports[0]))
            time.sleep(0.05)
            got = 0
            t0 = time.perf_counter_ns()
            while got < n:
                if src.poll(rx) > 0:
                    got += 1
            best = min(best, (time.perf_counter_ns() - t0) / n)
        return best
    finally:
        tx.close()
        src.close()


def main(argv: list[str] | None = None) -> int:
    args = base_parser(__doc__ or "").parse_args(argv)
    from adapters.md_sources import HAVE_LIBC_POLL

    started = now_iso()
    n_packets = 2_000 if args.quick else 20_000
    buf, offsets, meta = build_stream(n_packets)
    n_dgrams = meta.shape[0]
    # warm-up: compile every kernel on a prefix
    k = min(200, n_dgrams)
    replay(buf[:offsets[k]], offsets[:k + 1], meta[:k], True)
    per_datagram(buf, offsets, meta, 50)

    seq_best = min(replay(buf, offsets, meta, False)[0] for _ in range(3))
    runs = [replay(buf, offsets, meta, True) for _ in range(3)]
    full_best = min(r[0] for r in runs)
    rows = runs[0][1]
    calls = per_datagram(buf, offsets, meta, min(n_dgrams, 5_000))
    pct = percentiles_us(calls)

    figs = [
        figure("feed_replay_packets_per_s", n_dgrams / full_best, "1/s", 1.0e6, "higher",
               datagrams=n_dgrams, rows=rows),
        figure("feed_replay_events_per_s", rows / full_best, "1/s", 4.0e6, "higher"),
        figure("feed_sequencing_packets_per_s", n_dgrams / seq_best, "1/s"),
        figure("feed_datagram_call_p50_us", pct["p50"], "us", better="lower"),
        figure("feed_datagram_call_p99_us", pct["p99"], "us", better="lower"),
    ]
    n_poll = 20_000 if args.quick else 200_000
    if HAVE_LIBC_POLL:
        figs.append(figure("feed_empty_poll_ns", empty_poll_ns(True, n_poll), "ns", 1000.0,
                           "lower", sockets=2, path="epoll_wait(0), then recv the ready one"))
        figs.append(figure("feed_empty_poll_recv_ns", empty_poll_ns(True, n_poll, False), "ns",
                           better="lower", sockets=2, path="one recv per socket"))
        figs.append(figure("feed_empty_spin_round_ns", spin_round_ns(n_poll), "ns",
                           better="lower", sockets=2))
    figs.append(figure("feed_empty_poll_python_ns", empty_poll_ns(False, n_poll // 4), "ns",
                       better="lower", sockets=2))
    n_rx = 2_000 if args.quick else 20_000
    figs.append(figure("feed_recv_ns", recv_ns(False, n_rx), "ns", better="lower"))
    figs.append(figure("feed_recvmsg_timestamp_ns", recv_ns(True, n_rx), "ns",
                       better="lower"))
    path = write_result("feed", figs, args.out, started=started, quick=bool(args.quick))
    for f in figs:
        print(f"{f['name']:32s} {f['value']:14.1f} {f['unit']:4s} target={f['target']}"
              f" met={f['met']}")
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
