"""Exchange simulator: is MDP 3.0 encoding a bottleneck of the venue?

The venue publishes every book change of every order as MDP 3.0 incrementals
(templates 46/47/48/37). Figures:

* ``venue_generic_encode_us``: the generic codec (``core.sbe.codec.encode`` +
  ``encode_mdp_packet``) on one typical event (a 46 with one level entry and one
  order entry), per event. Reference only: it is what the venue would pay
  without the kernel.
* ``venue_encode_events_per_s``: the njit encoder (``adapters.venue.encoder``) on
  the MATCH_MD records of a recorded stream of background-flow events (adds,
  cancels, trades), packets included. Target 2.5e5/s: at most 4 us an event,
  half the ~8 us of the two ``sendto`` (feeds A and B) that one packet costs, so
  sending, not encoding, bounds the venue.
* ``venue_events_per_s``: the venue core in process (``Exchange``: Hawkes flow
  generation + matching + encoding + fills routing), packets discarded instead
  of sent. Target 1e5/s: far above any flow the demo asks for.

Each figure is the best of ``--repeats`` runs; ``per_cpu_s`` discounts the time
a shared VM gave to other processes.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from adapters.clock import ManualClock
from adapters.venue.config import parse_venue_config
from adapters.venue.encoder import IncrementalEncoder, warm_up
from adapters.venue.venue import Exchange
from core.sbe.codec import encode, encode_mdp_packet
from core.sbe.schema import bundled_schema
from core.types import MATCH_MD
from perf._common import base_parser, figure, now_iso, write_result

CONFIG = """
[venue]
seed = 5
[order_entry]
enabled = false
[flow]
base_rate_hz = 20000.0
hawkes_alpha = 0.0
target_orders = 400
[[instruments]]
security_id = 5602
symbol = "ESZ5"
[[instruments]]
security_id = 2871
symbol = "CLZ5"
tick = 1_000_000_000
start_price = 7_500_000_000_000
band_ticks = 2000
"""


class NullTransport:
    def __init__(self) -> None:
        self.datagrams = 0

    def send(self, channel: str, data: Any) -> None:
        self.datagrams += 1

    def close(self) -> None:
        pass


def _timed(fn: Any) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - w0, time.thread_time() - c0


def bench_generic(n: int) -> float:
    schema = bundled_schema(1, 13)
    msg = {"template_id": 46, "fields": {"TransactTime": 1, "MatchEventIndicator": 0x84},
           "groups": {"NoMDEntries": [{
               "MDEntryPx": 500_000_000_000_000, "MDEntrySize": 12, "SecurityID": 5602,
               "RptSeq": 1, "NumberOfOrders": 4, "MDPriceLevel": 1, "MDUpdateAction": 1,
               "MDEntryType": "0"}],
               "NoOrderIDEntries": [{"OrderID": 123, "MDOrderPriority": 7, "MDDisplayQty": 3,
                                     "ReferenceID": 1, "OrderUpdateAction": 0}]}}
    t0 = time.perf_counter_ns()
    for k in range(n):
        encode_mdp_packet(k, 1, [encode(msg, schema, 13)])
    return (time.perf_counter_ns() - t0) / n / 1e3


def record_stream(seconds: float) -> tuple[np.ndarray, int]:
    """MATCH_MD rows of ``seconds`` of background flow (cmd_index = event number)."""
    cfg = parse_venue_config(CONFIG)
    clock = ManualClock()
    ex = Exchange(cfg, clock, NullTransport())
    rows: list[np.ndarray] = []
    events = 0
    orig = ex.publisher.publish

    def capture(mds: np.ndarray) -> int:
        nonlocal events
        r = mds.copy()
        if len(r):
            # one event per command of the batch, numbered across batches
            _, first = np.unique(r["cmd_index"], return_inverse=True)
            r["cmd_index"] = first + events
            events += int(first.max()) + 1
        rows.append(r)
        return orig(mds)

    ex.publisher.publish = capture  # type: ignore[method-assign]
    ex.seed_book(clock.now_ns())
    for _ in range(int(seconds * 1000)):
        clock.advance(1_000_000)
        ex.flow_step(clock.now_ns())
        ex.publisher.flush()
    return np.concatenate(rows) if rows else np.zeros(0, MATCH_MD), events


def bench_encoder(mds: np.ndarray, events: int, repeats: int) -> tuple[float, float]:
    enc = IncrementalEncoder([5602, 2871], [10, 10], buffer_bytes=len(mds) * 400 + (1 << 20),
                             max_packets=len(mds) + 16)
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        enc.clear()
        wall, cpu = _timed(lambda: enc.encode(mds, 1))
        best, best_cpu = min(best, wall), min(best_cpu, cpu)
    return events / best, events / max(best_cpu, 1e-9)


def bench_exchange(seconds: float, repeats: int) -> tuple[float, float, dict[str, int]]:
    best, best_cpu = float("inf"), float("inf")
    info: dict[str, int] = {}
    for _ in range(repeats):
        cfg = parse_venue_config(CONFIG)
        clock = ManualClock()
        ex = Exchange(cfg, clock, NullTransport())
        ex.seed_book(clock.now_ns())
        ex.publisher.flush()
        start = ex.publisher.encoder.counters()["events"]

        def run(ex: Exchange = ex, clock: ManualClock = clock) -> None:
            for _ in range(int(seconds * 1000)):
                clock.advance(1_000_000)
                ex.flow_step(clock.now_ns())
                ex.publisher.flush()

        wall, cpu = _timed(run)
        n = ex.publisher.encoder.counters()["events"] - start
        if wall < best:
            info = {"events": n, "packets": ex.publisher.stats["packets"],
                    "trades": ex.engine.n_trades}
        best, best_cpu = min(best, wall / n), min(best_cpu, cpu / n)
    return 1 / best, 1 / best_cpu, info


def main() -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    started = now_iso()
    warm_up()
    seconds = 0.5 if args.quick else 5.0
    generic_us = bench_generic(200 if args.quick else 5000)
    mds, events = record_stream(seconds)
    enc_rate, enc_cpu = bench_encoder(mds, events, args.repeats)
    ex_rate, ex_cpu, info = bench_exchange(seconds / 2, max(1, args.repeats // 2))
    figures = [
        figure("venue_generic_encode_us", generic_us, "us", None, "lower",
               note="generic codec, one 46 (1 level + 1 order entry) into a packet"),
        figure("venue_encode_events_per_s", enc_rate, "1/s", 2.5e5, "higher",
               per_cpu_s=enc_cpu, events=events, rows=len(mds),
               us_per_event=1e6 / enc_rate),
        figure("venue_events_per_s", ex_rate, "1/s", 1e5, "higher", per_cpu_s=ex_cpu,
               **info),
    ]
    path = write_result("venue", figures, args.out, started=started,
                        load_average=list(os.getloadavg()))
    for f in figures:
        print(f"{f['name']}: {f['value']:.4g} {f['unit']} (target {f['target']})")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
