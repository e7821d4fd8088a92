"""The hot loop in-process: ticks through the simulated venue, kill switch, resume, reload,
the ctl mailbox, the journal ring, graceful stop. (The same with real processes and the
exchange simulator: tests/test_e2e_daemon.py.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np
import pytest

from core.types import (
    ACT_CANCEL,
    ACT_NEW,
    RISK_KILL_SWITCH,
    TRADER_ACTIVE,
    TRADER_HALTED,
)
from daemon.config import demo_config, risk_limits
from daemon.engine import build
from daemon.hotloop import (
    F_KILL,
    F_RELOAD,
    F_RESUME,
    F_STOP,
    MB_CMD,
    MB_REPLY,
    MB_REQ,
    MB_RESULT,
    HotLoop,
    Lifecycle,
    LoopParts,
    Shared,
)
from daemon.metrics import daemon_spec
from daemon.shm import Ring
from daemon.sources import ReplayClock
from daemon.telemetry import CMD_RESUME, J_EXEC_REPORT, J_ORDER_ACTION


def _loop(n_events: int = 3000, *, keep_warm_us: int = 0, keep_warm_send: bool = False,
          over_tcp: bool = False) -> tuple[HotLoop, Any]:
    """A warmed-up loop on a synthetic replay with the simulated venue; ``over_tcp``: the
    gateway says it sends over TCP (as Ilink3Gateway does; the sim gateway does not)."""
    cfg = demo_config()
    eng = build(cfg, mode="replay", data=[f"synthetic:{n_events}"], clock=ReplayClock())
    if over_tcp:
        eng.gateway.sends_over_tcp = True
    spec = daemon_spec(eng.symbols, journal_capacity=1 << 16)
    block = {key: np.zeros(shape, dtype=dt) for key, dt, shape in spec.layout()}
    new = msgspec.structs.replace(cfg, risk=msgspec.structs.replace(cfg.risk, max_position=1))
    parts = LoopParts(clock=eng.clock, source=eng.source, market=eng.market, core=eng.core,
                      gateway=eng.gateway, traded_rows=eng.traded_rows, runner=eng.runner,
                      sim=eng.sim, replay=True)
    loop = HotLoop(parts, Shared(block, spec),
                   on_reload=lambda: risk_limits(new, [None] * len(eng.traded)),
                   keep_warm_us=keep_warm_us, keep_warm_send=keep_warm_send)
    loop.warm_up()
    eng.core.finish_startup()
    eng.gateway.connect()
    loop._housekeeping()  # sees the gateway up (what the running loop does every ms)
    return loop, eng


def _feed(loop: HotLoop, eng: Any, n: int,
          after_each: Callable[[], None] | None = None) -> None:
    rx = loop.rx
    for _ in range(n):
        k = eng.source.poll(rx)
        if k <= 0:
            break
        eng.clock.set_ns(int(rx.events[k - 1]["transact_time"]))
        loop.on_datagram(k)
        if after_each is not None:
            after_each()


def _settle(loop: HotLoop, eng: Any, steps: int = 20) -> None:
    """Let the simulated venue answer (clock forward, reports polled and decided)."""
    for _ in range(steps):
        eng.clock.advance(1_000_000)
        n = eng.gateway.poll(loop.reports)
        if n:
            loop._decide_send(n, 0)


def _journal(loop: HotLoop) -> np.ndarray:
    return Ring(loop.block, "journal").drain()


def test_a_tick_sends_before_it_reads_the_gateway_and_decides_on_its_reports() -> None:
    """Market data first: in one datagram's call the tick decides without reports and
    its orders go out, then the gateway is polled, and reports found there are decided
    on before the call returns."""
    loop, eng = _loop()
    assert loop.resume() == 0
    gw, core = eng.gateway, loop.core
    calls: list[tuple[str, int]] = []
    send, poll = gw.send, gw.poll

    def rec_send(actions: Any, k: int) -> int:
        calls.append(("send", k))
        return int(send(actions, k))

    def rec_poll(reports: Any) -> int:
        n = int(poll(reports))
        calls.append(("poll", n))
        return n

    class RecordingCore:  # TradingCore has slots: wrap it to see its tick calls
        def __getattr__(self, name: str) -> Any:
            return getattr(core, name)

        def tick(self, n_rep: int, now: int, trigger: int) -> int:
            calls.append(("tick", n_rep))
            return int(core.tick(n_rep, now, trigger))

    counts = {"ticks_sent": 0, "reports_in_call": 0}

    def check_one_datagram() -> None:
        if not calls:
            return  # no completed event: nothing decided
        assert calls[0] == ("tick", 0), calls  # the market-data decide, without reports
        rest = calls[1:]
        if rest and rest[0][0] == "send":
            counts["ticks_sent"] += 1
            rest = rest[1:]
        assert rest and rest[0][0] == "poll", calls  # then, after the send, the gateway
        if rest[0][1] > 0:
            counts["reports_in_call"] += 1
            assert rest[1] == ("tick", rest[0][1]), calls  # decided on at once
        calls.clear()

    gw.send, gw.poll = rec_send, rec_poll
    loop.core = RecordingCore()  # type: ignore[assignment]
    _feed(loop, eng, 600, after_each=check_one_datagram)
    gw.send, gw.poll = send, poll
    loop.core = core
    assert counts["ticks_sent"] > 10
    assert counts["reports_in_call"] > 0, "reports due during a tick are read in the same call"


def test_ticks_quote_and_kill_switch_cancels_everything() -> None:
    loop, eng = _loop()
    assert loop.lifecycle == Lifecycle.READY
    t = eng.core.trader[0]
    assert int(t["state"]) == TRADER_HALTED
    assert loop.resume() == 0 and int(t["state"]) == TRADER_ACTIVE
    _feed(loop, eng, 400)
    _settle(loop, eng)
    assert eng.sim.resting(), "the market maker quotes at the simulated venue"
    assert loop.counters[2] > 0  # the model ran on completed events
    assert np.isfinite(loop.alpha).all()
    j = _journal(loop)
    sent = j[j["kind"] == J_ORDER_ACTION]
    assert sent.size >= int(t["action_counts"][ACT_NEW])  # every action journaled
    assert (j["kind"] == J_EXEC_REPORT).sum() > 0

    loop.flags |= F_KILL
    loop._handle_flags()
    assert int(t["state"]) == TRADER_HALTED and int(t["kill_switch"]) == 1
    assert int(t["halt_reason"]) == RISK_KILL_SWITCH
    j = _journal(loop)
    acts = j[j["kind"] == J_ORDER_ACTION]
    from core.types import ORDER_ACTION
    from daemon.telemetry import journal_payload

    assert (journal_payload(acts, ORDER_ACTION)["action"] == ACT_CANCEL).all()
    _settle(loop, eng)
    assert eng.sim.resting() == [] and int(t["live_orders"]) == 0
    _feed(loop, eng, 200)  # the market moves on: nothing new while halted
    _settle(loop, eng)
    assert eng.sim.resting() == []

    # resume through the ctl mailbox (what `nanoarb ctl resume` writes)
    mb = loop.mailbox
    mb[MB_CMD] = CMD_RESUME
    mb[MB_REQ] += 1
    loop._housekeeping()
    assert mb[MB_REPLY] == mb[MB_REQ] and mb[MB_RESULT] == 0
    assert int(t["state"]) == TRADER_ACTIVE and int(t["kill_switch"]) == 0
    _feed(loop, eng, 300)
    _settle(loop, eng)
    assert eng.sim.resting()


def test_reload_resume_flags_and_graceful_stop() -> None:
    loop, eng = _loop()
    t = eng.core.trader[0]
    loop.flags |= F_RESUME
    loop._handle_flags()
    assert int(t["state"]) == TRADER_ACTIVE
    loop.flags |= F_RELOAD
    loop._handle_flags()
    assert int(t["instruments"][0]["max_position"]) == 1  # SIGHUP: the new limits
    _feed(loop, eng, 300)
    _settle(loop, eng)
    assert abs(int(t["instruments"][0]["position"])) <= 1
    loop.flags |= F_STOP
    loop.run()  # handles the stop at once: halt, cancel all, wait for the acks
    assert loop.lifecycle == Lifecycle.STOPPED and loop.stopped_clean
    assert eng.sim.resting() == [] and int(t["live_orders"]) == 0
    assert int(t["state"]) == TRADER_HALTED


@pytest.mark.parametrize("n_events", [500])
def test_replay_loop_runs_to_the_end_of_the_data(n_events: int) -> None:
    loop, _eng = _loop(n_events)
    loop.resume()
    loop.journal_reports = []
    loop.run()
    assert loop.source_ended and loop.lifecycle == Lifecycle.STOPPED
    assert loop.counters[3] == n_events + 2  # every event (one opening per instrument)
    fills = sum(int(r.size) for r in loop.journal_reports)
    assert fills > 0


@pytest.mark.parametrize("over_tcp,enabled", [(True, True), (True, False), (False, True)])
def test_keep_warm_sends_through_the_warmer_only_for_a_gateway_over_tcp(
        over_tcp: bool, enabled: bool) -> None:
    # warm_up (STARTING) makes the warmer and warms once
    loop, _ = _loop(200, keep_warm_us=100, keep_warm_send=enabled, over_tcp=over_tcp)
    w = loop.send_warmer
    if not (over_tcp and enabled):
        assert w is None
        loop.keep_warm()
        assert loop.warm_runs == 1
        return
    assert w is not None and w.runs == 1 and loop.send_warm_error == ""
    for _ in range(3):
        loop.keep_warm()
    assert w.runs == 4 and w.errors == 0 and loop.warm_runs == 3
    loop.journal_reports = []
    loop.run()  # the replay ends: STOPPING closes the warmer with the rest
    assert loop.lifecycle == Lifecycle.STOPPED and w.closed


def test_keep_warm_runs_the_scratch_slot_and_leaves_the_traded_ones_alone() -> None:
    from adapters.md_sources import RxSlot, UdpSource
    from daemon.hotloop import LC_MODEL_RUNS

    loop, eng = _loop()
    _feed(loop, eng, 300)
    r = eng.runner
    n = loop.n
    assert r.n_slots == n + 1 and loop.warm_slot == n  # one scratch slot past the traded
    assert loop.counters[LC_MODEL_RUNS] > 0
    r.features[n] = r.features[0]  # a real input row, as the loop leaves it
    state, out, alpha = r.state[:n].copy(), r.out[:n].copy(), loop.alpha.copy()
    runs = int(loop.counters[LC_MODEL_RUNS])
    scratch_before = r.out[n].copy()
    for _ in range(3):
        loop.keep_warm()
    assert loop.warm_runs == 3
    assert np.array_equal(r.state[:n], state) and np.array_equal(r.out[:n], out)
    assert np.array_equal(loop.alpha, alpha)
    assert int(loop.counters[LC_MODEL_RUNS]) == runs  # not counted as the model's runs
    assert not np.array_equal(r.out[n], scratch_before)  # the scratch slot did run
    assert np.isfinite(r.out[n]).all()

    # an idle feed: the spin keeps warm every keep_warm_ns, and not at all when off
    idle = UdpSource([])
    idle.open()
    loop.p.source = idle
    loop.rx = RxSlot()
    loop.keep_warm_ns = 100_000
    loop.warm_runs = 0
    loop._spin()  # one housekeeping interval (1 ms)
    assert 3 <= loop.warm_runs <= 11
    loop.keep_warm_ns = 0
    loop.warm_runs = 0
    loop._spin()
    assert loop.warm_runs == 0
    assert np.array_equal(loop.alpha, alpha)
    idle.close()
