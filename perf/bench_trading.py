"""The trading step: decide (OMS + risk + market maker + order manager) and the simulated venue.

Scenario: 2 traded instruments (ES-like: PRICE9 mantissas, tick 25e9), 2 quote
layers a side, a random walk of the best bid/ask (one instrument moves on each
tick, by -1/0/+1 tick) with trades through the book, the in-process simulated
venue at zero latency acknowledging and filling, so that ticks carry the usual
mix of execution reports and requotes.

Figures:

* ``decide_call_p50_us`` / ``p99`` / ``p999``: one ``TradingCore.tick`` from Python
  (the bound entry point: the hot loop's call), per tick, timed one by one with
  ``perf_counter_ns`` (its ~50 ns included). Target: a couple of us per tick.
* ``decide_dispatch_p50_us``: the same step through the generic numba dispatcher
  (``TradingCore.decide``): what ``bind`` saves.
* ``decide_kernel_ns``: the kernel alone, mean per tick, called in a numba loop
  (no Python, no dispatch), quotes live and the market moving.
* ``sim_venue_events_per_s``: market-data rows through the simulated venue's
  queue model (MBP, our orders resting), in batches of 1024.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from numba import njit

from adapters.clock import ManualClock
from adapters.sim_gateway import SimGateway, SimInstrument
from core.risk import InstrumentLimits, RiskLimits
from core.strategy.market_maker import MarketMakerParams
from core.trading import VOL_COL, InstrumentConfig, TradingCore, _decide, new_market_view
from core.types import (
    ACT_NEW,
    ET_BID,
    ET_OFFER,
    EV_BOOK,
    EV_TRADE,
    FLAG_END_OF_EVENT,
    MD_CHANGE,
    MD_EVENT,
    MDS_OK,
    ORDER_ACTION,
    RISK_OK,
    SIDE_BUY,
    SIDE_SELL,
)
from perf._common import base_parser, figure, now_iso, percentiles_us, write_result

TICK = 25 * 10**9
SIDS = (5482, 7001)
TARGET_DECIDE_US = 2.0  # "a couple of us at most" per tick (issue 6)


def make_core() -> TradingCore:
    p = MarketMakerParams(quote_size=1, n_layers=2, alpha_skew=1.0)
    il = InstrumentLimits(max_order_qty=5, max_position=50, collar_ticks=50)
    cfgs = [InstrumentConfig(security_id=s, tick=TICK, tick_value=12.5, limits=il, params=p)
            for s in SIDS]
    core = TradingCore(cfgs, RiskLimits(submit_limit=1024, submit_window_ns=1,
                                        cancel_limit=1024, cancel_window_ns=1,
                                        stale_ns=10**15, max_daily_loss=1e12,
                                        max_drawdown=1e12, max_notional=1e15))
    core.finish_startup()
    core.set_gateway_up(True)
    assert core.resume() == RISK_OK
    return core


def market_packets(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    mids = [4000, 15000]
    out = []
    for _ in range(n):
        i = int(rng.integers(0, 2))
        mids[i] += int(rng.integers(-1, 2))
        m = mids[i]
        ev = np.zeros(3, dtype=MD_EVENT)
        for j, (et, p) in enumerate(((ET_BID, m), (ET_OFFER, m + 1))):
            ev[j]["kind"] = EV_BOOK
            ev[j]["entry_type"] = et
            ev[j]["price"] = p * TICK
            ev[j]["size"] = int(rng.integers(1, 20))
        aggr = SIDE_BUY if rng.random() < 0.5 else SIDE_SELL
        ev[2]["kind"] = EV_TRADE
        ev[2]["side"] = aggr
        ev[2]["price"] = (m + 1 if aggr == SIDE_BUY else m) * TICK
        ev[2]["size"] = int(rng.integers(1, 10))
        ev["action"] = MD_CHANGE
        ev["security_id"] = SIDS[i]
        ev[2]["flags"] = FLAG_END_OF_EVENT
        out.append(ev)
    return out


def run_ticks(n: int, seed: int, bound: bool) -> np.ndarray:
    """Replay n packets through venue + decide; returns the decide call times (ns)."""
    clock = ManualClock()
    sim = SimGateway(clock, [SimInstrument(s, TICK) for s in SIDS])
    sim.connect()
    core = make_core()
    market = new_market_view(2)
    feats = core.features_buffer()
    feats[:, VOL_COL] = 1.0
    alpha = np.zeros(2)
    core.bind(market, feats, alpha)
    row = {s: i for i, s in enumerate(SIDS)}
    times = np.empty(n, dtype=np.int64)
    pc = time.perf_counter_ns
    for j, ev in enumerate(market_packets(n, seed)):
        clock.advance(50_000)
        now = clock.now_ns()
        sim.on_market_data(ev)
        i = row[int(ev[0]["security_id"])]
        market[i]["bid_px"] = ev[0]["price"]
        market[i]["ask_px"] = ev[1]["price"]
        market[i]["update_ns"] = now
        market[i]["status"] = MDS_OK
        nr = sim.poll(core.reports)
        if bound:
            t0 = pc()
            k = core.tick(nr, now, j)
            times[j] = pc() - t0
        else:
            t0 = pc()
            k = core.decide(market, feats, alpha, nr, now, j)
            times[j] = pc() - t0
        sim.send(core.actions, k)
    return times


@njit(cache=True)
def _kernel_loop(trader: Any, market: Any, feats: Any, alpha: Any, n: int, tick: int) -> int:
    """n ticks of decide with the bid/ask walking; orders stay pending (no venue)."""
    actions = 0
    for j in range(n):
        i = j % 2
        step = ((j * 7919) % 3) - 1
        market[i].bid_px += step * tick
        market[i].ask_px += step * tick
        market[i].update_ns = 1_000_000 + j
        actions += _decide(trader, market, feats, alpha, 0, 1_000_000 + j, j)
    return actions


def kernel_ns(n: int) -> float:
    core = make_core()
    market = new_market_view(2)
    for i, base in enumerate((4000, 15000)):
        market[i]["bid_px"] = base * TICK
        market[i]["ask_px"] = (base + 1) * TICK
        market[i]["status"] = MDS_OK
    feats = core.features_buffer()
    feats[:, VOL_COL] = 1.0
    alpha = np.zeros(2)
    _kernel_loop(core.trader, market, feats, alpha, 10, TICK)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter_ns()
        _kernel_loop(core.trader, market, feats, alpha, n, TICK)
        best = min(best, (time.perf_counter_ns() - t0) / n)
    return best


def venue_events_per_s(n_batches: int, seed: int) -> float:
    clock = ManualClock()
    sim = SimGateway(clock, [SimInstrument(s, TICK) for s in SIDS])
    sim.connect()
    packets = market_packets(n_batches * 342, seed)
    batch = np.concatenate(packets)[: n_batches * 1024].reshape(n_batches, 1024)
    # a few resting orders of ours on both sides, far enough not to fill at once
    acts = np.zeros(8, dtype=ORDER_ACTION)
    for j in range(8):
        acts[j]["cl_ord_id"] = j + 1
        acts[j]["action"] = ACT_NEW
        acts[j]["security_id"] = SIDS[j % 2]
        acts[j]["side"] = SIDE_BUY if j < 4 else SIDE_SELL
        base = 4000 if j % 2 == 0 else 15000
        acts[j]["price"] = (base - 30 if j < 4 else base + 30) * TICK
        acts[j]["qty"] = 1
    sim.send(acts, 8)
    sim.advance()
    sim.on_market_data(batch[0])
    t0 = time.perf_counter_ns()
    for b in range(n_batches):
        sim.on_market_data(batch[b])
    dt = time.perf_counter_ns() - t0
    return n_batches * 1024 / (dt / 1e9)


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__ or "")
    p.add_argument("--ticks", type=int, default=200_000)
    args = p.parse_args(argv)
    n = 20_000 if args.quick else args.ticks
    started = now_iso()
    run_ticks(2_000, 1, True)  # warm-up: compile and first calls
    run_ticks(2_000, 1, False)
    bound = percentiles_us(run_ticks(n, 7, True)[1000:])
    dispatch = percentiles_us(run_ticks(n // 4, 7, False)[1000:])
    k_ns = kernel_ns(n)
    venue = venue_events_per_s(max(n // 1024, 20), 3)
    figures = [
        figure("decide_call_p50_us", bound["p50"], "us", TARGET_DECIDE_US, "lower"),
        figure("decide_call_p99_us", bound["p99"], "us", None, "lower"),
        figure("decide_call_p999_us", bound["p999"], "us", None, "lower"),
        figure("decide_dispatch_p50_us", dispatch["p50"], "us", None, "lower"),
        figure("decide_kernel_ns", k_ns, "ns", None, "lower"),
        figure("sim_venue_events_per_s", venue, "1/s", None, "higher"),
    ]
    path = write_result("trading", figures, args.out, started=started, ticks=n)
    for f in figures:
        print(f"{f['name']:28s} {f['value']:14.3f} {f['unit']:4s} target {f['target']}")
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
