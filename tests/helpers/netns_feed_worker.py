"""Multicast feed scenario, run inside a private network namespace (tests/test_feed_netns.py).

``python -m tests.helpers.netns_feed_worker scenario '<json>'`` runs the scenario
twice (clean, then impaired) and prints one JSON line with, per run, the final
books (core.market.MarketState), the sequencer counters and instrument states,
plus the publisher's own final books. ``publish '<json>'`` is the publisher,
started by ``scenario`` as a child process (it inherits the namespace).

The publisher (tests/helpers/feedsim.py) sends, on CME-like groups:
* the instrument definition loop (template 54) while the handler starts;
* incrementals on feeds A and B in ``impair`` order (loss on one feed, loss on
  both, duplicates, reordering) with a ChannelReset in the middle;
* the snapshot loop (template 52), one packet after each incremental, its
  content the state at the last ``snap_every``-th packet; after the stream, a
  clean tail and the final loop until ``tail_s`` passes.

The handler is the production path: UdpSource (multicast joins on 127.0.0.1)
-> FeedHandler -> Sequencer -> MarketState, definitions via load_definitions
into an InstrumentTable, every instrument late-joined (waits for a snapshot).
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import time
from typing import Any

from tests.helpers.feedsim import FeedSim, impair

IFACE = "127.0.0.1"
APPL_ID = 310
INC_A = ("224.0.31.1", 14310)
INC_B = ("224.0.32.1", 15310)
SNAP_A = ("224.0.31.22", 14311)
SNAP_B = ("224.0.32.22", 15311)
DEFN_A = ("224.0.31.43", 14312)
SIDS = [5482, 5483, 5484, 5485]


def channel_config() -> Any:
    from adapters.cme_config import ChannelConfig, Endpoint

    eps = [Endpoint("incremental", "A", *INC_A), Endpoint("incremental", "B", *INC_B),
           Endpoint("snapshot", "A", *SNAP_A), Endpoint("snapshot", "B", *SNAP_B),
           Endpoint("definition", "A", *DEFN_A)]
    return ChannelConfig(channel_id=APPL_ID, label="netns test", endpoints=tuple(eps))


def build(spec: dict[str, Any]) -> tuple[FeedSim, list[bytes], dict[int, list[bytes]], int]:
    """Deterministic publication: (sim at the end, packets, snapshot loops by seq, reset seq)."""
    sim = FeedSim(SIDS, seed=spec["seed"], appl_id=APPL_ID)
    packets: list[bytes] = []
    loops: dict[int, list[bytes]] = {}
    reset_seq = -1
    for i in range(spec["n_packets"]):
        if i == spec["reset_at"]:
            packets.append(sim.channel_reset_packet())
            reset_seq = sim.seq
        else:
            packets.append(sim.next_packet())
        if i % spec["snap_every"] == 0:
            loops[sim.seq] = sim.snapshot_loop()
    for _ in range(2):  # clean tail: a loss at the end shows only when a packet follows
        packets.append(sim.next_packet())
    loops[sim.seq] = sim.snapshot_loop()
    return sim, packets, loops, reset_seq


def publish(spec: dict[str, Any]) -> None:
    sim, packets, loops, reset_seq = build(spec)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(IFACE))
    tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    pace = spec["pace_us"] / 1e6
    defs = sim.definition_loop()
    for _ in range(spec["definition_loops"]):
        for p in defs:
            tx.sendto(p, DEFN_A)
            time.sleep(pace)
    body = packets[:-2]
    tail = packets[-2:]
    rng = random.Random(spec["seed"] + 1)
    if spec["impaired"]:
        lost_both = frozenset(spec["lost_both"]) - {spec["reset_at"]}
        arrivals = impair(body, rng, loss_a=spec["loss_a"], loss_b=spec["loss_b"],
                          dup=spec["dup"], reorder=spec["reorder"], lost_both=lost_both)
    else:
        arrivals = [(f, p) for p in body for f in (0, 1)]
    arrivals += [(f, p) for p in tail for f in (0, 1)]
    loop: list[bytes] = []
    k = 0
    sent: set[int] = set()
    for feed, p in arrivals:
        tx.sendto(p, INC_A if feed == 0 else INC_B)
        s = int.from_bytes(p[:4], "little")
        if s not in sent:
            sent.add(s)
            if s in loops:
                loop = loops[s]
        if loop:  # the snapshot loop runs beside the incrementals, on A and B
            tx.sendto(loop[k % len(loop)], SNAP_A if k % 2 == 0 else SNAP_B)
            k += 1
        time.sleep(pace)
    loop = loops[max(loops)]
    end = time.monotonic() + spec["tail_s"]
    while time.monotonic() < end:
        tx.sendto(loop[k % len(loop)], SNAP_A if k % 2 == 0 else SNAP_B)
        k += 1
        time.sleep(0.0005)
    del reset_seq


def warm_up(timestamps: bool) -> None:
    """Compile every kernel of the path before the publisher starts, as the daemon
    does before READY (a first call compiling for seconds would make the handler
    miss the start of the snapshot loop)."""
    import numpy as np

    from adapters.md_sources import RxSlot, UdpSource
    from core.market import MarketState
    from core.sequencing import SequencedFeed, Sequencer, SequencerConfig
    from core.types import ROLE_INCREMENTAL, ROLE_SNAPSHOT

    sim = FeedSim([1], seed=0)
    feed = SequencedFeed(Sequencer(1, SequencerConfig(recover_on_start=True)))
    market = MarketState(max_instruments=4)
    for p in [sim.next_packet() for _ in range(3)]:
        b = np.frombuffer(p, dtype=np.uint8).copy()
        market.apply_events(feed.on_datagram(ROLE_INCREMENTAL, b, b.size, 0, 0, 1))
    for p in sim.snapshot_loop():
        b = np.frombuffer(p, dtype=np.uint8).copy()
        market.apply_events(feed.on_datagram(ROLE_SNAPSHOT, b, b.size, 0))
    feed.on_idle(10**12)
    src = UdpSource([channel_config()], interface=IFACE, kernel_timestamps=timestamps)
    src.open()
    src.poll(RxSlot())
    src.close()


def run_handler(spec: dict[str, Any]) -> dict[str, Any]:
    from adapters.md_sources import FeedHandler, UdpSource, load_definitions
    from core.market import MarketState
    from core.sbe.instruments import InstrumentTable
    from core.sequencing import Sequencer, SequencerConfig
    from core.types import ROLE_DEFINITION

    warm_up(spec["timestamps"])
    ch = channel_config()
    inc = UdpSource([ch], interface=IFACE, kernel_timestamps=spec["timestamps"])
    inc.open()  # join the incrementals first: the kernel queues them meanwhile
    defs = UdpSource([ch], interface=IFACE, kernel_timestamps=False)
    defs.join(0, ROLE_DEFINITION)
    pub = subprocess.Popen([sys.executable, "-m", "tests.helpers.netns_feed_worker",
                            "publish", json.dumps(spec)])
    try:
        table = InstrumentTable()
        n_defs = load_definitions(defs, table, timeout_s=20)
        defs.close()
        seq = Sequencer(1, SequencerConfig(recover_on_start=True, reorder_slack=3,
                                           gap_timeout_ns=20_000_000), appl_ids=[APPL_ID])
        market = MarketState(max_instruments=64)
        market.add_instruments_from(table)
        for rec in table.rows[:len(table)]:
            seq.add_instrument(int(rec["security_id"]), 0)  # late join: wait for snapshots
        handler = FeedHandler(inc, seq, market=market)
        handler.sync_joins()
        last = spec["n_packets"] + 2
        start = time.monotonic()
        joined_snapshot = False

        def done() -> bool:
            nonlocal joined_snapshot
            joined_snapshot |= inc.joined(0, 1)
            # also wait until no instrument still needs its snapshot: on a loaded
            # machine the queued incrementals can all be read before the first
            # snapshot arrives, and the publisher keeps the loop going in its tail
            return (seq.next_seq(0) > last and seq.pending(0) == 0
                    and not seq.wants_snapshot(0))

        handler.run(until=done, max_ns=int(spec["timeout_s"] * 1e9))
        elapsed = time.monotonic() - start
    finally:
        pub.wait(timeout=60)
        inc.close()
    books = {str(sid): {"bid": [list(x) for x in market.levels_of(sid, "bid") if x],
                        "ask": [list(x) for x in market.levels_of(sid, "ask") if x]}
             for sid in SIDS}
    return {
        "definitions": n_defs,
        "instruments": len(table),
        "books": books,
        "counters": seq.counter_dict(0),
        "status": {str(sid): seq.status(sid) for sid in SIDS},
        "next_seq": seq.next_seq(0),
        "pending": seq.pending(0),
        "joined_snapshot_after": inc.joined(0, 1),
        "elapsed_s": elapsed,
        "market": market.counter_dict(),
        "rcvbuf": inc.rcvbuf_effective,
    }


def scenario(spec: dict[str, Any]) -> dict[str, Any]:
    sim, _, _, reset_seq = build(spec)
    truth = {str(sid): {"bid": [list(x) for x in sim.book(sid)["0"]],
                        "ask": [list(x) for x in sim.book(sid)["1"]]} for sid in SIDS}
    clean = run_handler({**spec, "impaired": False})
    impaired = run_handler({**spec, "impaired": True})
    return {"truth": truth, "clean": clean, "impaired": impaired, "reset_seq": reset_seq,
            "last_seq": spec["n_packets"] + 2}


def main(argv: list[str]) -> int:
    mode, spec = argv[0], json.loads(argv[1])
    if mode == "publish":
        publish(spec)
        return 0
    print(json.dumps(scenario(spec)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
