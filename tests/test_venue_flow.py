"""Background order flow and determinism of the venue (in process, manual clock)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from adapters.clock import ManualClock
from adapters.venue.config import parse_venue_config
from adapters.venue.faults import FaultSpec
from adapters.venue.flow import (
    FLOW_ID_BIT,
    GI_RNG,
    BackgroundFlow,
    FlowInstrument,
    _uniform,
    is_flow_order,
)
from adapters.venue.publisher import CaptureTransport
from adapters.venue.venue import Venue
from core.market import MarketState
from core.sbe.codec import decode_packet
from core.types import SIDE_BUY, SIDE_SELL

CONFIG = """
[venue]
seed = {seed}
[market_data]
snapshot_interval_ms = 100
definition_interval_ms = 400
heartbeat_interval_ms = 50
[order_entry]
enabled = false
[control]
enabled = false
[flow]
base_rate_hz = 300.0
[[instruments]]
security_id = 5602
symbol = "ESZ5"
weight = 2.0
[[instruments]]
security_id = 2871
symbol = "CLZ5"
tick = 1_000_000_000
start_price = 7_500_000_000_000
band_ticks = 2000
volatility_ticks = 2.5
"""


def run_venue(seed: int, steps: int = 1500, step_ns: int = 1_000_000,
              actions: dict[int, Any] | None = None) -> tuple[Venue, CaptureTransport]:
    clock = ManualClock()
    tr = CaptureTransport()
    v = Venue(parse_venue_config(CONFIG.format(seed=seed)), clock=clock, transport=tr)
    v.start()
    for k in range(steps):
        clock.advance(step_ns)
        if actions and k in actions:
            actions[k](v)
        v.step()
    return v, tr


ACTIONS = {
    300: lambda v: v.control({"cmd": "order", "security_id": 5602, "side": "buy",
                              "price": 500_025_000_000_000, "qty": 7, "tif": "ioc"}),
    500: lambda v: v.apply_fault(FaultSpec(kind="drop", feed="A", count=2)),
    700: lambda v: v.apply_fault(FaultSpec(kind="channel_reset")),
    900: lambda v: v.control({"cmd": "flow", "enabled": False}),
    1000: lambda v: v.control({"cmd": "flow", "enabled": True}),
}


def test_same_seed_same_inputs_same_stream() -> None:
    _, a = run_venue(11, actions=ACTIONS)
    _, b = run_venue(11, actions=ACTIONS)
    assert len(a.log) > 500
    assert a.log == b.log
    _, c = run_venue(12, actions=ACTIONS)
    assert [x for ch, x in c.log if ch == "A"] != [x for ch, x in a.log if ch == "A"]


def test_client_book_follows_the_stream_through_a_channel_reset() -> None:
    v, tr = run_venue(5, steps=1200, actions={600: ACTIONS[700]})
    ms = MarketState(max_instruments=4)
    for info in v.exchange.infos:
        ms.add_instrument(info.security_id, info.depth, info.tick)
    resets = 0
    first_after_reset: list[int] = []
    for p in tr.sent["A"]:
        _h, msgs = decode_packet(p)
        if any(m["template_id"] == 4 for m in msgs):
            resets += 1
        elif resets and not first_after_reset:
            first_after_reset = [e["RptSeq"] for m in msgs if m["template_id"] == 46
                                 for e in m["groups"]["NoMDEntries"]][:1]
        a = np.frombuffer(p, dtype=np.uint8)
        ms.on_packet(a, len(a))
    assert resets == 1 and first_after_reset == [1]
    assert ms.counter_dict()["channel_resets"] == 1
    assert ms.counter_dict()["mbo_unknown_order"] == 0
    for k, info in enumerate(v.exchange.infos):
        book = v.exchange.book(info.security_id)
        assert [list(x) for x in ms.levels_of(info.security_id, "bid") if x] == book["bids"]
        assert [list(x) for x in ms.levels_of(info.security_id, "ask") if x] == book["asks"]
        mbo = [o for _p, _q, _c, q in ms.mbo_side(info.security_id, "bid") for o, _x, _y in q]
        assert mbo == [o for _p, q in v.exchange.engine.book(k, SIDE_BUY) for o, _x, _y in q]
        assert ms.rpt_seq(info.security_id) == book["rpt_seq"]


def test_flow_pool_matches_the_engine() -> None:
    v, _ = run_venue(9, steps=1000)
    ex = v.exchange
    assert ex.engine.n_trades > 10
    for k in range(len(ex.infos)):
        resting = sum(1 for side in (SIDE_BUY, SIDE_SELL) for _p, q in ex.engine.book(k, side)
                      for oid, _q, _pr in q if is_flow_order(oid))
        assert resting == ex.flow.resting(k)
        bids, asks = ex.engine.depth(k, 1)
        assert len(bids) == 1 and len(asks) == 1 and bids[0]["price"] < asks[0]["price"]


def _arrival_times(alpha: float, beta: float, seconds: float, rate: float = 200.0
                   ) -> np.ndarray:
    ins = [FlowInstrument(1, 10_000, 1_000, 19_000, 0.0, 1.0)]
    fl = BackgroundFlow(ins, seed=4, owner=0, start_ns=0, wall_offset_ns=0,
                        base_rate_hz=rate, hawkes_alpha=alpha, hawkes_beta=beta,
                        target_orders=20_000, batch=1 << 16)
    fl.seed_book(0, 5, 5)
    times = []
    for step in range(1, int(seconds) + 1):
        cmds = fl.due(step * 1_000_000_000)
        times.append(cmds["transact_time"].astype(np.int64))
    return np.concatenate(times) / 1e9


def _dispersion(t: np.ndarray, seconds: float, bin_s: float = 0.05) -> float:
    counts = np.histogram(t, bins=int(seconds / bin_s), range=(0, seconds))[0]
    return float(counts.var() / counts.mean())


def test_hawkes_arrivals_cluster_and_poisson_does_not() -> None:
    seconds = 60.0
    hawkes = _arrival_times(600.0, 1000.0, seconds)
    poisson = _arrival_times(0.0, 1000.0, seconds)
    # stationary rate mu / (1 - alpha/beta)
    assert abs(len(hawkes) / seconds - 200.0 / 0.4) < 0.15 * 500.0
    assert abs(len(poisson) / seconds - 200.0) < 0.1 * 200.0
    assert 0.8 < _dispersion(poisson, seconds) < 1.25
    assert _dispersion(hawkes, seconds) > 2.0


def test_fair_price_diffuses_at_the_configured_volatility() -> None:
    ins = [FlowInstrument(1, 100_000, 10_000, 190_000, 3.0, 1.0)]
    fl = BackgroundFlow(ins, seed=8, owner=0, start_ns=0, wall_offset_ns=0,
                        base_rate_hz=400.0, hawkes_alpha=0.0, target_orders=20_000,
                        batch=1 << 16)
    marks = []
    for s in range(1, 801):
        fl.due(s * 1_000_000_000)
        marks.append(fl.fair_price(0))
    steps = np.diff(np.array(marks))
    assert abs(steps.std() - 3.0) < 0.6
    assert abs(steps.mean()) < 0.5


def test_generator_matches_a_reference_splitmix64() -> None:
    gi = np.zeros(8, dtype=np.int64)
    gi[GI_RNG] = 12345
    state = 12345
    mask = (1 << 64) - 1
    for _ in range(50):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z ^= z >> 31
        assert _uniform(gi) == pytest.approx(((z >> 11) + 0.5) / 2.0**53, abs=0, rel=1e-15)


def test_flow_order_ids_are_above_session_ids() -> None:
    v, _ = run_venue(2, steps=50)
    ids = [oid for k in range(2) for side in (SIDE_BUY, SIDE_SELL)
           for _p, q in v.exchange.engine.book(k, side) for oid, _q, _pr in q]
    assert ids and all(oid & FLOW_ID_BIT for oid in ids)
