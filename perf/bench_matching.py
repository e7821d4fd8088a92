"""Matching engine throughput: submits without / with a match, cancels, modifies, call cost.

Batch figures time ``MatchingEngine.process`` on arrays of commands (one njit call
per batch of ``--batch`` commands, outputs drained between batches, as a venue
would). Books are built before the clock starts. Each scenario runs
``--repeats`` times on a fresh engine; the best run is reported. Rate figures
also carry ``per_cpu_s``: the same rate over the thread's CPU time, which
discounts the time a shared VM gave to other processes (the load average is
recorded in the JSON).

Scenario (ES-like: PRICE9 mantissas, tick 0.25 = 250_000_000, 4 instruments):

* no match: DAY orders, bids 1..50 ticks below the mid and asks 1..50 above
  (nothing crosses), qty 1..10: every submit rests (accept record + MD row).
* with match: marketable IOC orders, alternately buy and sell, qty 1..5,
  against a book of 2 x 100_000 resting orders on 100 levels a side: every
  submit trades (1-3 makers typically).
* cancels: every order of a 1M-order book, in random order.
* modifies: price change by one tick away from the market (priority lost,
  no match), on a full book.
* per call: one command from Python through ``submit()`` (the facade's
  argument handling included) and through ``process()`` on a 1-row array, and
  the bare cost of one njit call with the engine's arguments and no command.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from core.matching import MatchingEngine, _process, warm_up
from core.types import (
    MATCH_CMD,
    MCMD_CANCEL,
    MCMD_MODIFY,
    MCMD_SUBMIT,
    MTIF_DAY,
    MTIF_IOC,
    SIDE_BUY,
    SIDE_SELL,
)
from perf._common import base_parser, figure, now_iso, write_result

TICK = 250_000_000  # ES: 0.25 in PRICE9
MID = 5_000 * 1_000_000_000
N_INSTRUMENTS = 4
BAND_TICKS = 4_096
TARGET_SUBMITS = 8.3e6  # the Rust engine among our references


def new_engine(max_orders: int, batch: int) -> MatchingEngine:
    return MatchingEngine(
        N_INSTRUMENTS, max_orders, TICK, MID - BAND_TICKS * TICK, MID + BAND_TICKS * TICK,
        mbp_depth=10, exec_capacity=4 * batch + 64, md_capacity=4 * batch + 64)


def passive_orders(n: int, rng: np.random.Generator, first_id: int = 1) -> np.ndarray:
    c = np.zeros(n, dtype=MATCH_CMD)
    c["op"] = MCMD_SUBMIT
    c["order_id"] = np.arange(first_id, first_id + n)
    c["instrument"] = rng.integers(0, N_INSTRUMENTS, n)
    side = rng.integers(1, 3, n)
    c["side"] = side
    offset = rng.integers(1, 51, n) * TICK
    c["price"] = np.where(side == SIDE_BUY, MID - offset, MID + offset)
    c["qty"] = rng.integers(1, 11, n)
    c["tif"] = MTIF_DAY
    c["owner"] = rng.integers(1, 9, n)
    c["transact_time"] = np.arange(n)
    return c


def run_batches(eng: MatchingEngine, cmds: np.ndarray, batch: int) -> tuple[int, int]:
    """Process ``cmds`` in batches; returns (wall ns, thread CPU ns) spent inside process()."""
    wall = cpu = 0
    for start in range(0, len(cmds), batch):
        sub = cmds[start:start + batch]
        k = 0
        while k < len(sub):
            c0 = time.thread_time_ns()
            t0 = time.perf_counter_ns()
            k = eng.process(sub, k)
            wall += time.perf_counter_ns() - t0
            cpu += time.thread_time_ns() - c0
            eng.clear_outputs()
    return wall, cpu


def best_of(repeats: int, setup: Callable[[], tuple[MatchingEngine, np.ndarray]],
            batch: int) -> tuple[float, float, MatchingEngine]:
    """Best commands/s over ``repeats`` fresh runs, in wall-clock and in thread CPU time
    (the second discounts time the VM gave to other processes), and the last engine."""
    best_wall = best_cpu = float("inf")
    eng: MatchingEngine | None = None
    n = 0
    for _ in range(repeats):
        eng, cmds = setup()
        n = len(cmds)
        wall, cpu = run_batches(eng, cmds, batch)
        best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu)
    assert eng is not None
    return n / (best_wall / 1e9), n / (best_cpu / 1e9), eng


def per_call_us(fn: Callable[[int], Any], n: int, repeats: int) -> float:
    best = float("inf")
    for r in range(repeats):
        t0 = time.perf_counter_ns()
        for i in range(n):
            fn(r * n + i)
        best = min(best, time.perf_counter_ns() - t0)
    return best / n / 1e3


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__ or "")
    p.add_argument("--orders", type=int, default=1_000_000, help="submits/cancels per run")
    p.add_argument("--batch", type=int, default=4_096, help="commands per process() call")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    if args.quick:
        args.orders, args.repeats = 100_000, 2
    n, batch, repeats = args.orders, args.batch, args.repeats
    started = now_iso()
    warm_up()
    rng = np.random.default_rng(42)

    # 1. Submits that rest.
    passive = passive_orders(n, rng)
    rate_rest, cpu_rest, eng = best_of(repeats, lambda: (new_engine(n, batch), passive), batch)
    assert eng.n_resting == n and eng.n_trades == 0

    # 2. Submits that trade, against a deep book.
    book_n = 200_000
    book = passive_orders(book_n, rng)
    book["price"] = np.where(book["side"] == SIDE_BUY,
                             MID - rng.integers(0, 100, book_n) * TICK,
                             MID + rng.integers(1, 101, book_n) * TICK)
    n_aggr = min(n, 100_000)
    aggr = np.zeros(n_aggr, dtype=MATCH_CMD)
    aggr["op"] = MCMD_SUBMIT
    aggr["order_id"] = np.arange(book_n + 1, book_n + 1 + n_aggr)
    aggr["instrument"] = rng.integers(0, N_INSTRUMENTS, n_aggr)
    aggr["side"] = np.where(np.arange(n_aggr) % 2 == 0, SIDE_BUY, SIDE_SELL)
    # Limit 100 ticks through the mid: always marketable while the book lasts.
    aggr["price"] = np.where(aggr["side"] == SIDE_BUY, MID + 100 * TICK, MID - 100 * TICK)
    aggr["qty"] = rng.integers(1, 6, n_aggr)
    aggr["tif"] = MTIF_IOC
    aggr["owner"] = 99

    def with_book() -> tuple[MatchingEngine, np.ndarray]:
        e = new_engine(book_n + n_aggr, batch)
        run_batches(e, book, batch)
        return e, aggr

    rate_match, cpu_match, eng = best_of(repeats, with_book, batch)
    trades = eng.n_trades  # the book was built without a trade
    assert trades >= n_aggr, "every aggressive submit should have traded"
    fills_per_submit = trades / n_aggr

    # 3. Cancels of a full book, random order.
    cancels = np.zeros(n, dtype=MATCH_CMD)
    cancels["op"] = MCMD_CANCEL
    cancels["order_id"] = rng.permutation(passive["order_id"])
    cancels["owner"] = passive["owner"][cancels["order_id"].astype(np.int64) - 1]

    def full_book(then: np.ndarray) -> Callable[[], tuple[MatchingEngine, np.ndarray]]:
        def setup() -> tuple[MatchingEngine, np.ndarray]:
            e = new_engine(n, batch)
            run_batches(e, passive, batch)
            return e, then
        return setup

    rate_cancel, cpu_cancel, eng = best_of(repeats, full_book(cancels), batch)
    assert eng.n_resting == 0

    # 4. Modifies: one tick further from the market (priority lost, no match).
    mods = np.zeros(n, dtype=MATCH_CMD)
    mods["op"] = MCMD_MODIFY
    perm = rng.permutation(n)
    src = passive[perm]
    mods["order_id"] = src["order_id"]
    mods["owner"] = src["owner"]
    mods["price"] = np.where(src["side"] == SIDE_BUY, src["price"] - TICK,
                             src["price"] + TICK)
    mods["qty"] = src["qty"]
    rate_modify, cpu_modify, eng = best_of(repeats, full_book(mods), batch)
    assert eng.n_resting == n and eng.reject_counts() == {}

    # 5. Per call from Python.
    n_calls = 20_000 if args.quick else 100_000
    e1 = new_engine(n_calls * repeats + 1, 1)
    prices = passive["price"]
    sides = passive["side"]

    def one_submit(i: int) -> None:
        e1.submit(0, i + 1, int(sides[i % n]), int(prices[i % n]), 1)
        e1.clear_outputs()

    call_submit = per_call_us(one_submit, n_calls, repeats)
    e2 = new_engine(n_calls * repeats + 1, 1)
    one = np.zeros(1, dtype=MATCH_CMD)
    one["op"] = MCMD_SUBMIT
    one["qty"] = 1

    def one_process(i: int) -> None:
        one["order_id"] = i + 1
        one["side"] = sides[i % n]
        one["price"] = prices[i % n]
        e2.process(one)
        e2.clear_outputs()

    call_process = per_call_us(one_process, n_calls, repeats)
    arrays = e2.arrays

    def bare(_i: int) -> None:
        _process(one, 0, 0, *arrays)

    call_bare = per_call_us(bare, n_calls, repeats)

    def cpu(rate: float) -> float:
        return round(rate, -3)

    figures = [
        figure("matching_submits_per_s", rate_rest, "1/s", TARGET_SUBMITS, "higher",
               per_cpu_s=cpu(cpu_rest), note=f"submits that rest, batches of {batch}"),
        figure("matching_submits_with_match_per_s", rate_match, "1/s", None, "higher",
               per_cpu_s=cpu(cpu_match),
               note=f"marketable IOC submits, {fills_per_submit:.2f} fills each"),
        figure("matching_fills_per_s", rate_match * fills_per_submit, "1/s", None, "higher"),
        figure("matching_cancels_per_s", rate_cancel, "1/s", None, "higher",
               per_cpu_s=cpu(cpu_cancel), note=f"random order, book of {n}"),
        figure("matching_modifies_per_s", rate_modify, "1/s", None, "higher",
               per_cpu_s=cpu(cpu_modify), note="price change one tick away, no match"),
        figure("matching_call_submit_us", call_submit, "us", None, "lower",
               note="one submit through MatchingEngine.submit() from Python"),
        figure("matching_call_process_us", call_process, "us", None, "lower",
               note="one submit through process() on a 1-row array, fields set in Python"),
        figure("matching_call_bare_us", call_bare, "us", None, "lower",
               note="njit call with the engine's 11 arguments and no command"),
    ]
    path = write_result("matching", figures, args.out, started=started,
                        params=dict(orders=n, batch=batch, repeats=repeats,
                                    instruments=N_INSTRUMENTS),
                        load_average=list(os.getloadavg()))
    for f in figures:
        print(f"{f['name']:36s} {f['value']:>14,.3f} {f['unit']}"
              + (f"  [per CPU second {f['per_cpu_s']:,.0f}]" if "per_cpu_s" in f else "")
              + (f"  (target {f['target']:,.0f}: {'met' if f['met'] else 'NOT met'})"
                 if f["target"] is not None else ""))
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
