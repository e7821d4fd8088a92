"""The hot loop: one thread, busy-polling the feed and the gateway, one tick per event.

Per datagram (DESIGN.md, "The hot path")::

    n = source.poll(rx)                                   # recv, never blocks
    rows = _sequence(rx.buf, n, ...)                      # A/B arbitration + decode + gate
    completed = _apply_events(rows, ...)                  # books + features, event boundaries
    _model_completed(...)                                 # features -> model -> alpha
    _market_view(...); k = core.tick(0, now, seq)         # OMS + risk + strategy + orders
    gateway.send(core.actions, k)                         # encode + send
    _observe_tick(...); _journal_push(...)                # after the send: stats, journal
    n_rep = gateway.poll(core.reports)                    # execution reports, then
    if n_rep: core.tick(n_rep, ...); gateway.send(...)    # decided on at once

``decide`` runs only at an event boundary (a packet that completed an event of
some instrument) or when execution reports arrived: never on a half-applied
event. Between datagrams (and when the feed is idle) the loop polls the
gateway; every ``HOUSEKEEPING_NS`` it leaves the spin for housekeeping: copy
counters into the shared block, the heartbeat, the mailbox of ``nanoarb ctl``,
the sequencer's timers and snapshot joins, gateway state changes, the trader
state journal and the periodic decide that cancels orders of a halted trader
even when the market is silent. Signal handlers only set a bit in ``flags``;
the loop looks at it on every iteration and acts between datagrams.

Keeping warm: when nothing has arrived for ``keep_warm_ns`` the loop runs the
model once on the runner's scratch slot (the last one, which no instrument
uses). With packets ~1 ms apart the model's weights, onnxruntime's code and
their TLB entries are evicted between packets on a shared 2-vCPU machine, and
the next real inference costs 2-5x its warm time; one scratch inference every
100 us keeps them resident for a few percent of a core that spins anyway.

Lifecycle: STARTING (built, nothing polled) -> ``warm_up()`` (every kernel and
the model called once on throw-away state) -> READY -> ``run()`` RUNNING ->
STOPPING (halt, cancel everything, wait for the acks with a timeout) -> STOPPED.

Nothing escapes the tick as an exception: the kernels count bad input; the
Python parts of the tick are calls into components that promise not to raise.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
from numba import typeof, types

from adapters.md_sources import END, ROLE_EVENTS, RxSlot
from core.feature_spec import N_FEATURES
from core.features import FS_FEATURES
from core.market import REC_F_WIDTH, REC_I_WIDTH, _apply_events
from core.model import model_step
from core.sequencing import _sequence, _sequence_idle
from core.trading import TradingCore, new_market_view
from core.types import (
    ER_FILL,
    EXEC_REPORT,
    MD_EVENT,
    RISK_OK,
    RISK_OPERATOR,
    ROLE_DEFINITION,
    ROLE_INCREMENTAL,
    ROLE_SNAPSHOT,
)
from daemon import kernels as dk
from daemon.telemetry import (
    CMD_HALT,
    CMD_RELOAD,
    CMD_RESUME,
    CMD_STATUS,
    CMD_STOP,
    EV_GATEWAY,
    EV_GATEWAY_READY,
    EV_HALT,
    EV_KILL_SWITCH,
    EV_RELOAD,
    EV_RELOAD_FAILED,
    EV_RESUME,
    EV_STATE,
    EV_STOP,
    EV_STOP_TIMEOUT,
    EV_STOPPED,
    INFO,
    J_EXEC_REPORT,
    J_GATEWAY_SEQ,
    J_ORDER_ACTION,
    LATENCY_BUCKETS_NS,
    WARNING,
)

HOUSEKEEPING_NS = 1_000_000  # leave the spin this often (timers, mailbox, heartbeat)
PUBLISH_NS = 10_000_000  # copy counters to the shared block
IDLE_DECIDE_NS = 5_000_000  # decide with no event at least this often (stale data, halts)
SEQ_TIMER_NS = 100_000  # sequencer gap/stale timers
SAMPLES = 1 << 18  # tick-to-trade samples kept for percentiles

# flag bits (signal handlers and the mailbox set them; the loop clears them)
F_KILL = 1
F_RESUME = 2
F_RELOAD = 4
F_STOP = 8

HB_ITER, HB_PID, HB_STATE, HB_READY = 0, 1, 2, 3
MB_REQ, MB_CMD, MB_ARG, MB_REPLY, MB_RESULT = 0, 1, 2, 8, 9
READY_STOPPING = -1

# loop counters (int64 array)
LC_ITER, LC_TICKS, LC_MODEL_RUNS, LC_DATAGRAMS = range(4)



class Lifecycle(IntEnum):
    STARTING = 0
    READY = 1
    RUNNING = 2
    STOPPING = 3
    STOPPED = 4


@dataclass
class LoopParts:
    """What the hot loop drives (built by daemon.engine from the config)."""

    clock: Any
    source: Any  # MdSource: poll(rx) -> n | 0 | END
    market: Any  # core.market.MarketState
    core: TradingCore
    gateway: Any  # Gateway protocol
    traded_rows: np.ndarray  # market row of each traded instrument (-1: not yet known)
    sequencer: Any = None  # core.sequencing.Sequencer (datagram sources)
    seq_rows: np.ndarray | None = None  # sequencer row of each traded instrument
    runner: Any = None  # core.model.ModelRunner (None: no model, alpha 0)
    sim: Any = None  # SimGateway to feed with market data (paper, replay)
    instruments: Any = None  # InstrumentTable for definitions seen on the feed
    appl_ids: tuple[int, ...] = ()  # CME channel id of each sequencer channel
    join: Callable[[int, int], Any] | None = None  # source.join(channel, role)
    leave: Callable[[int, int], Any] | None = None
    kernel_timestamps: bool = False  # rx.recv_ns is a wall-clock receive time
    replay: bool = False  # the clock follows the data (ManualClock-like, .set_ns)


@dataclass
class Shared:
    """The arrays the control plane reads (a SharedBlock, or plain arrays for tests)."""

    block: Any  # mapping name -> array
    spec: Any  # TelemetrySpec
    log_records: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        b = self.block
        self.log_records = b["log.records"]


class HotLoop:
    """The main thread's loop (see the module docstring)."""

    def __init__(self, parts: LoopParts, shared: Shared, *,
                 on_reload: Callable[[], Any] | None = None,
                 stop_timeout_s: float = 2.0,
                 notifier: Any = None,
                 keep_warm_us: int = 0, keep_warm_send: bool = False) -> None:
        self.p = parts
        self.shared = shared
        self.core = parts.core
        self.clock = parts.clock
        self.lifecycle = Lifecycle.STARTING
        self.on_reload = on_reload  # returns RiskLimits or raises
        self.stop_timeout_ns = int(stop_timeout_s * 1e9)
        self.notifier = notifier
        self.flags = 0
        self.stop_signal = 0
        self.keep_warm_ns = int(keep_warm_us) * 1000
        self.keep_warm_send = keep_warm_send
        self.send_warmer: Any = None  # adapters.net_warm.SendPathWarmer, made in warm_up
        self.send_warm_error = ""
        self.warm_runs = 0  # scratch inferences run while idle (not LC_MODEL_RUNS)
        self._stop_logged = False
        self.source_ended = False
        self.stopped_clean = False
        n = int(self.core.trader[0]["n_instruments"])
        self.n = n
        b = shared.block
        self.block = b
        self.hist = b["latency"]
        self.mailbox = b["mailbox"]
        self.heartbeat = b["heartbeat"]
        self.j_records = b["journal.records"]
        self.j_head = b["journal.head"]
        self.j_tail = b["journal.tail"]
        self.l_records = b["log.records"]
        self.l_head = b["log.head"]
        self.l_tail = b["log.tail"]
        self._last_req = int(self.mailbox[MB_REQ])
        # hot-path arrays, allocated once
        self.rx = RxSlot()
        self._rx_seq = self.rx.buf[:4].view("<u4")
        self.market_view = new_market_view(n)
        self.features = np.zeros((n, N_FEATURES), dtype=np.float64)
        self.alpha = np.zeros(n, dtype=np.float64)
        self.stamps = np.full(6, -1, dtype=np.int64)
        self.samples = np.zeros(SAMPLES + 1, dtype=np.int64)  # tick-to-trade, ns
        self.tick_samples = np.zeros(SAMPLES + 1, dtype=np.int64)  # every tick, ns
        self.counters = np.zeros(4, dtype=np.int64)
        self.md_packets = np.zeros(5, dtype=np.int64)
        self.bounds = LATENCY_BUCKETS_NS.copy()
        m = parts.market
        self.slot_of_row = np.full(m.inst.shape[0], -1, dtype=np.int64)
        self.traded_rows = np.ascontiguousarray(parts.traded_rows, dtype=np.int64)
        for i, r in enumerate(self.traded_rows):
            if r >= 0:
                self.slot_of_row[r] = i
        self.seq_rows = (np.full(n, -1, dtype=np.int64) if parts.seq_rows is None
                         else np.ascontiguousarray(parts.seq_rows, dtype=np.int64))
        seq = parts.sequencer
        self.seq_status = (seq.inst_status if seq is not None
                           else np.zeros(1, dtype=np.uint8))
        self.seq_arena = seq.arena if seq is not None else np.zeros(1, dtype=np.int64)
        cap = 1 << 16
        if seq is not None:
            cap = max(cap, 8 * seq.config.decode_rows)
        self.rows = np.zeros(cap, dtype=MD_EVENT)
        self._rec_i = np.zeros((0, REC_I_WIDTH), dtype=np.int64)
        self._rec_f = np.zeros((0, REC_F_WIDTH), dtype=np.float64)
        self.appl = np.array(list(parts.appl_ids) or [-1], dtype=np.int64)
        self.appl[self.appl <= 0] = -1
        self.n_channels = int(seq.n_channels) if seq is not None else 0
        self._want = (seq.chan[:, _CH_WANT_SNAPSHOT()] if seq is not None
                      else np.zeros(0, dtype=np.int64))
        self._joined = np.zeros(self.n_channels, dtype=np.int64)
        self.snapshot_role = ROLE_SNAPSHOT
        self.actions = self.core.actions
        self.reports = self.core.reports
        self._act_bytes = dk.byte_rows(self.actions)
        self._rep_bytes = dk.byte_rows(self.reports)
        # iLink 3: the session's sequence array (next_recv, next_send, recovering, uuid),
        # journaled with every tick's reports, so a restart re-establishes the same UUID
        # and the exchange retransmits what this process never read
        seq = getattr(getattr(parts.gateway, "session", None), "seq", None)
        self._gw_seq_bytes = (seq[:4].view(np.uint8).reshape(1, 32)
                              if isinstance(seq, np.ndarray) and seq.dtype == np.int64
                              else None)
        self.core.bind(self.market_view, self.features, self.alpha)
        if hasattr(parts.gateway, "bind"):
            parts.gateway.bind(self.reports, self.actions)
        r = parts.runner
        self.run_model_capi = r is not None and getattr(r, "backend", "") == "capi"
        # the scratch slot: a runner slot past the traded instruments (engine allocates it)
        self.warm_slot = n if r is not None and r.n_slots > n else -1
        if r is not None:
            self.model_in, self.model_ctl = r.features, r.ctl
            self.model_state, self.model_out = r.state, r.out
        else:
            self.model_in = np.zeros((max(n, 1), N_FEATURES), dtype=np.float32)
            self.model_ctl = np.zeros(32, dtype=np.int64)
            self.model_state = np.zeros((1, 2, 1), dtype=np.float32)
            self.model_out = np.zeros((1, 2), dtype=np.float32)
        self.last_state = int(self.core.trader[0]["state"])
        self.last_gateway_up = False
        self._gw_disconnects = 0  # the gateway's disconnect count at the last housekeeping
        self.gateway_ready_once = False
        self.on_gateway_ready: Callable[[], None] | None = None
        # without a control plane (replay, tests): the journal ring is drained here and
        # the execution reports kept for the report
        self.journal_reports: list[np.ndarray] | None = None
        self.publisher: Any = None  # daemon.metrics.Publisher
        self._bind_kernels()

    # ------------------------------------------------------------------ set-up
    def _bind_kernels(self) -> None:
        """Compiled entry points for our exact arrays: no per-call type dispatch."""
        i64, b1 = types.int64, types.boolean
        self._seq = _sequence.compile((
            types.Array(types.uint8, 1, "C"), i64, i64, i64, i64, i64,
            typeof(self.seq_arena), typeof(self.rows), i64))
        self._apply = _apply_events.compile((
            typeof(self.rows), i64, i64, typeof(self.p.market.arena), typeof(self._rec_i),
            typeof(self._rec_f)))
        self._apply_any = self._apply  # rx.events: the same MD_EVENT layout as rows
        self._seq_idle = _sequence_idle.compile((i64, i64, typeof(self.seq_arena),
                                                 typeof(self.rows), i64))
        self._model = dk._model_completed.compile((
            typeof(self.p.market.completed_rows), i64, typeof(self.slot_of_row),
            typeof(self.p.market.fstate), i64, i64, typeof(self.features),
            typeof(self.model_in), typeof(self.model_ctl), typeof(self.model_state),
            typeof(self.model_out), typeof(self.alpha), b1))
        self._warm_step = model_step.compile((
            typeof(self.model_ctl), typeof(self.model_state), typeof(self.model_out), i64))
        self._view = dk._market_view.compile((
            typeof(self.market_view), typeof(self.p.market.book), typeof(self.p.market.inst),
            typeof(self.traded_rows), typeof(self.seq_status), typeof(self.seq_rows), i64))
        self._observe = dk._observe_tick.compile((
            typeof(self.hist), typeof(self.bounds), typeof(self.stamps), typeof(self.samples),
            typeof(self.tick_samples), i64))
        self._jwrite = dk._journal_write.compile((
            typeof(self.j_records), i64, typeof(self.j_tail), typeof(self._act_bytes), i64,
            i64, i64))

    def install_signal_handlers(self) -> None:
        """Handlers only set a flag; the loop acts on it between datagrams."""
        def flag(bit: int) -> Callable[[int, Any], None]:
            def handler(signum: int, _frame: Any) -> None:
                self.flags |= bit
                if bit == F_STOP:
                    self.stop_signal = signum
            return handler

        signal.signal(signal.SIGUSR1, flag(F_KILL))
        signal.signal(signal.SIGUSR2, flag(F_RESUME))
        signal.signal(signal.SIGHUP, flag(F_RELOAD))
        signal.signal(signal.SIGTERM, flag(F_STOP))
        signal.signal(signal.SIGINT, flag(F_STOP))

    def warm_up(self) -> int:
        """Call every kernel of the tick once on throw-away copies; returns ms spent.

        The compiled entry points exist already (``_bind_kernels``); this runs
        them so that page faults, lazy symbol resolution and onnxruntime's first
        run happen now and not on the first market-data packet.
        """
        t0 = time.perf_counter_ns()
        from core.market import MarketState

        m = MarketState(max_instruments=4, ring_len=8, max_events=64, max_orders=64)
        rows = np.zeros(4, dtype=MD_EVENT)
        _apply_events(rows, 0, -1, m.arena, self._rec_i, self._rec_f)
        arena = self.p.market.arena
        self._apply(self.rows, 0, -1, arena, self._rec_i, self._rec_f)
        if self.p.sequencer is not None:
            self._seq(self.rx.buf, 0, 0, 0, 0, self.clock.now_ns(), self.seq_arena, self.rows,
                      0)
        st = self.model_state.copy()
        out = self.model_out.copy()
        alpha = self.alpha.copy()
        if self.run_model_capi and self.n:
            one = np.zeros(1, dtype=np.int64)
            self._model(one, 1, np.zeros(1, dtype=np.int64), self.p.market.fstate,
                        FS_FEATURES, N_FEATURES, self.features.copy(), self.model_in,
                        self.model_ctl, st, out, alpha, True)
        elif self.p.runner is not None:
            self.p.runner.step(0)
        if (self.keep_warm_ns and self.keep_warm_send and self.send_warmer is None
                and getattr(self.p.gateway, "sends_over_tcp", False)):
            from adapters.net_warm import SendPathWarmer

            try:
                self.send_warmer = SendPathWarmer()
            except OSError as e:  # no loopback TCP: run without it (kept for the status)
                self.send_warm_error = str(e)
        self.keep_warm()
        if self.p.runner is not None:
            self.p.runner.reset()
        self._view(self.market_view, self.p.market.book, self.p.market.inst, self.traded_rows,
                   self.seq_status, self.seq_rows, self.clock.now_ns())
        hist = np.zeros_like(self.hist)
        self._observe(hist, self.bounds, self.stamps, np.zeros(3, dtype=np.int64),
                      np.zeros(3, dtype=np.int64), 1)
        self._jwrite(np.zeros(2, dtype=self.j_records.dtype), 0, np.zeros(8, np.int64),
                     self._act_bytes, 0, 0, 0)
        if self.p.sequencer is not None:
            self._seq_idle(0, self.clock.now_ns(), self.seq_arena, self.rows, 0)
        # decide and every control path on a copy of the trader: the real one stays as is
        limits = _limits_of(self.core)
        probe = TradingCore(self.core.instruments_config, limits)
        probe.bind(self.market_view.copy(), self.features.copy(), self.alpha.copy())
        now = self.clock.now_ns()
        probe.tick(0, now, 0)
        probe.finish_startup()
        probe.set_gateway_up(True)
        probe.resume()
        probe.halt(RISK_OPERATOR)
        probe.kill_switch(now, 0)
        probe.resume()
        probe.set_gateway_up(False)
        probe.reload_limits(limits)
        from core.oms import apply_fill

        inst = probe.instruments_config[0]
        apply_fill(probe.trader, 0, 1, 1, inst.tick * 1000, False)
        self._warm_sim()
        self.warm_runs = 0  # counts idle runs only
        self.lifecycle = Lifecycle.READY
        return (time.perf_counter_ns() - t0) // 1_000_000

    def _warm_sim(self) -> None:
        """The simulated venue's kernels (paper, replay) on a throw-away venue."""
        from adapters.sim_gateway import SimGateway, SimInstrument

        if not isinstance(self.p.gateway, SimGateway):
            return
        from adapters.clock import ManualClock

        insts = [SimInstrument(security_id=c.security_id, tick=c.tick)
                 for c in self.core.instruments_config]
        sim = SimGateway(ManualClock(), insts)
        sim.connect()
        acts = self.actions.copy()
        sim.send(acts, 0)
        sim.poll(self.reports.copy())
        sim.on_market_data(self.rows[:0])
        sim.mass_cancel(0)
        sim.close()

    # ------------------------------------------------------------------ logs/journal
    def log(self, code: int, level: int, *args: int) -> None:
        """One LOG_RECORD into the ring (housekeeping and control paths only)."""
        h = int(self.l_head[0])
        cap = self.l_records.shape[0]
        if h - int(self.l_tail[0]) >= cap:
            self.l_tail[1] += 1
            return
        rec = self.l_records[h & (cap - 1)]
        rec["time_ns"] = self.clock.wall_ns()
        rec["code"] = code
        rec["level"] = level
        a = list(args)[:4] + [0] * (4 - min(len(args), 4))
        rec["args"] = a
        self.l_head[0] = h + 1

    def journal_raw(self, rows: np.ndarray) -> None:
        """Push ready-made JOURNAL_RECORD rows (session and state rows)."""
        from daemon.shm import Ring

        Ring(self.block, "journal").push(rows)

    def _journal_tick(self, n_rep: int, k: int) -> None:
        """The tick's reports and actions, and the order-entry session's sequence numbers
        after them, published together (a crash leaves all of them or none)."""
        wall = self.clock.wall_ns()
        recs, tail = self.j_records, self.j_tail
        h = int(self.j_head[0])
        if n_rep:
            h = self._jwrite(recs, h, tail, self._rep_bytes, n_rep, J_EXEC_REPORT, wall)
        if k:
            h = self._jwrite(recs, h, tail, self._act_bytes, k, J_ORDER_ACTION, wall)
        if self._gw_seq_bytes is not None:
            h = self._jwrite(recs, h, tail, self._gw_seq_bytes, 1, J_GATEWAY_SEQ, wall)
        self.j_head[0] = h

    # ------------------------------------------------------------------ the tick
    def _decide_send(self, n_rep: int, trigger_seq: int) -> int:
        """Market view, decide, send, journal (no stage stamps: idle and control paths)."""
        now = self.clock.now_ns()
        self._view(self.market_view, self.p.market.book, self.p.market.inst, self.traded_rows,
                   self.seq_status, self.seq_rows, now)
        k = self.core.tick(n_rep, now, trigger_seq)
        self.counters[LC_TICKS] += 1
        if k:
            self.p.gateway.send(self.actions, k)
        if n_rep or k:
            self._journal_tick(n_rep, k)
        return k

    def on_datagram(self, n: int) -> int:
        """One datagram (or batch of rows) through the whole tick; returns actions sent."""
        perf = time.perf_counter_ns
        rx = self.rx
        stamps = self.stamps
        t0 = perf()
        role = rx.role
        p = self.p
        if p.kernel_timestamps and rx.recv_ns > 0:
            stamps[0] = time.time_ns() - rx.recv_ns
        else:
            stamps[0] = -1
        now = self.clock.now_ns()
        if role == ROLE_EVENTS:
            self.md_packets[4] += 1
            rows = rx.events
            k_rows = n
            completed = self._apply_any(rows, n, -1, p.market.arena, self._rec_i, self._rec_f)
            trig = int(rows[n - 1]["msg_seq"]) if n else 0
        else:
            if role == ROLE_DEFINITION:
                self.md_packets[2] += 1
                self._on_definition(n)
                return 0
            self.md_packets[0 if role < ROLE_SNAPSHOT else 1] += 1
            c = rx.channel
            rows = self.rows
            k_rows = self._seq(rx.buf, n, c, rx.feed, role, now, self.seq_arena, rows, 0)
            completed = (self._apply(rows, k_rows, self.appl[c] if c < self.appl.shape[0]
                                     else -1, p.market.arena, self._rec_i, self._rec_f)
                         if k_rows else 0)
            # Only an incremental packet's MsgSeqNum names a packet the venue timed: a
            # snapshot-loop MsgSeqNum would pair the order with an unrelated old packet.
            trig = int(self._rx_seq[0]) if role == ROLE_INCREMENTAL else 0
        t1 = perf()
        if p.sim is not None and k_rows:
            p.sim.on_market_data(rows, k_rows)
        t2 = -1
        if completed:
            if self.run_model_capi:
                self.counters[LC_MODEL_RUNS] += self._model(
                    p.market.completed_rows, completed, self.slot_of_row, p.market.fstate,
                    FS_FEATURES, N_FEATURES, self.features, self.model_in, self.model_ctl,
                    self.model_state, self.model_out, self.alpha, True)
            else:
                self._model_python(completed)
            t2 = perf()
        if not completed:
            return 0
        # Market data first: the gateway's reports are read after the send. A report
        # that came in during this tick waits ~one tick (it is decided on just below),
        # and the tick does not pay a recv(2) and its Python (~3 us p50 in the
        # tick-to-trade harness). Risk stays exact: worst-case positions count every
        # live order as filled, so a fill not read yet cannot let an order through.
        self._view(self.market_view, p.market.book, p.market.inst, self.traded_rows,
                   self.seq_status, self.seq_rows, now)
        k = self.core.tick(0, now, trig)
        t3 = perf()
        if k:
            p.gateway.send(self.actions, k)
        t4 = perf()
        self.counters[LC_TICKS] += 1
        stamps[1] = t0
        stamps[2] = t1
        stamps[3] = t2
        stamps[4] = t3
        stamps[5] = t4
        self._observe(self.hist, self.bounds, stamps, self.samples, self.tick_samples, k)
        if k:
            self._journal_tick(0, k)
        n_rep = p.gateway.poll(self.reports)
        if n_rep:
            k += self._decide_send(n_rep, 0)
        return k

    def keep_warm(self) -> None:
        """One inference on the scratch slot: the weights and the code stay in cache;
        and one send through the ``SendPathWarmer`` (if any): the kernel's TCP path too.

        The scratch slot's state and output are its own; nothing the strategy reads
        changes. (A scratch trader's decide here as well made every stage slower in
        measurement: its own 107 KB of state evicts the real trader's.)"""
        r = self.p.runner
        if r is not None and self.warm_slot >= 0:
            if self.run_model_capi:
                self._warm_step(self.model_ctl, self.model_state, self.model_out,
                                self.warm_slot)
            else:
                r.step(self.warm_slot)
        w = self.send_warmer
        if w is not None:
            w.warm()
        self.warm_runs += 1

    def _model_python(self, completed: int) -> None:
        """Features (and the model through its Python entry) when the C API is not there."""
        p = self.p
        self._model(p.market.completed_rows, completed, self.slot_of_row, p.market.fstate,
                    FS_FEATURES, N_FEATURES, self.features, self.model_in, self.model_ctl,
                    self.model_state, self.model_out, self.alpha, False)  # features only
        r = p.runner
        if r is None:
            return
        for j in range(completed):
            row = int(p.market.completed_rows[j])
            s = int(self.slot_of_row[row]) if 0 <= row < self.slot_of_row.size else -1
            if s >= 0:
                ok = r.step(s)
                self.alpha[s] = float(r.alpha[s]) if ok else np.nan
                self.counters[LC_MODEL_RUNS] += 1

    def _on_definition(self, n: int) -> None:
        table = self.p.instruments
        if table is None:
            return
        from core.sbe.mdp3 import Mdp3Decoder

        dec = getattr(self, "_def_decoder", None)
        if dec is None:
            dec = self._def_decoder = Mdp3Decoder()
        rows = dec.decode(self.rx.buf, n)
        table.update_from_packet(self.rx.buf, n, rows)

    # ------------------------------------------------------------------ running
    def run(self, max_seconds: float | None = None, stop_when: Callable[[], bool] | None = None
            ) -> None:
        """RUNNING until a stop (signal, ctl, the source's end in replay, ``max_seconds``),
        then the graceful stop."""
        if self.lifecycle == Lifecycle.STARTING:
            raise RuntimeError("warm_up() before run()")
        self.lifecycle = Lifecycle.RUNNING
        self.heartbeat[HB_READY] = 1
        end_ns = (time.monotonic_ns() + int(max_seconds * 1e9)) if max_seconds else 0
        self._housekeeping(force_publish=True)
        while self.lifecycle == Lifecycle.RUNNING:
            if self.p.replay:
                self._spin_replay()
            else:
                self._spin()
            if self.flags:
                self._handle_flags()
            self._housekeeping()
            if self.source_ended and self.p.replay:
                self.flags |= F_STOP
            if end_ns and time.monotonic_ns() >= end_ns:
                self.flags |= F_STOP
            if stop_when is not None and stop_when():
                self.flags |= F_STOP
            if self.flags & F_STOP:
                self.lifecycle = Lifecycle.STOPPING
        self._stop()

    def _spin(self) -> None:
        """Busy-poll until housekeeping is due or a flag is set."""
        perf = time.perf_counter_ns
        poll = self.p.source.poll
        gw_poll = self.p.gateway.poll
        rx = self.rx
        reports = self.reports
        counters = self.counters
        t = perf()
        due = t + HOUSEKEEPING_NS
        keep_warm = self.keep_warm_ns
        warm_at = t + keep_warm
        iters = 0
        while True:
            n = poll(rx)
            if n > 0:
                counters[LC_DATAGRAMS] += 1
                self.on_datagram(n)
                warm_at = perf() + keep_warm
            elif n == END:
                self.source_ended = True
                break
            else:
                n_rep = gw_poll(reports)
                if n_rep:
                    self._decide_send(n_rep, 0)
                elif keep_warm and t >= warm_at:
                    self.keep_warm()
                    warm_at = perf() + keep_warm
            iters += 1
            t = perf()
            if self.flags or t >= due:
                break
        counters[LC_ITER] += iters

    def _spin_replay(self) -> None:
        """Replay: the clock jumps to each datagram's time; as fast as the CPU goes."""
        poll = self.p.source.poll
        gw_poll = self.p.gateway.poll
        rx = self.rx
        reports = self.reports
        clock = self.clock
        counters = self.counters
        for _ in range(4096):
            n = poll(rx)
            if n > 0:
                t = rx.recv_ns if rx.role != ROLE_EVENTS else int(rx.events[n - 1]
                                                                  ["transact_time"])
                if t > clock.now_ns():
                    clock.set_ns(t)
                n_rep = gw_poll(reports)  # reports due before this datagram
                if n_rep:
                    self._decide_send(n_rep, 0)
                counters[LC_DATAGRAMS] += 1
                self.on_datagram(n)
            elif n == END:
                self.source_ended = True
                break
            if self.flags:
                break
        counters[LC_ITER] += 1

    # ------------------------------------------------------------------ between datagrams
    def _housekeeping(self, force_publish: bool = False) -> None:
        now = self.clock.now_ns()
        hb = self.heartbeat
        hb[HB_ITER] += 1
        t = self.core.trader[0]
        state = int(t["state"])
        hb[HB_STATE] = state
        # the sequencer's timers (gap waits, stale channels) and the snapshot joins
        if self.p.sequencer is not None and not self.p.replay:
            if now >= getattr(self, "_next_seq_timer", 0):
                self._next_seq_timer = now + SEQ_TIMER_NS
                for c in range(self.n_channels):
                    k_rows = self._seq_idle(c, now, self.seq_arena, self.rows, 0)
                    if k_rows:
                        self._apply(self.rows, k_rows, self.appl[c], self.p.market.arena,
                                    self._rec_i, self._rec_f)
            self._sync_joins()
        # gateway connectivity
        gw = self.p.gateway
        up = bool(gw.is_connected())
        lost = int(getattr(getattr(gw, "stats", None), "disconnects", 0))
        if lost != self._gw_disconnects:
            self._gw_disconnects = lost
            if up and self.last_gateway_up:
                # lost and back between two housekeepings (a short backoff): the loss
                # still halts (HALTED until resumed), so it is seen as down first
                self.last_gateway_up = False
                self.core.set_gateway_up(False)
                self.log(EV_GATEWAY, WARNING, 0)
        if up != self.last_gateway_up:
            self.last_gateway_up = up
            if up:
                self._fresh_cancel_attempts()
            self.core.set_gateway_up(up)
            self.log(EV_GATEWAY, WARNING if not up else INFO, int(up))
            if up and not self.gateway_ready_once:
                self.gateway_ready_once = True
                self.log(EV_GATEWAY_READY, INFO, int(t["adopted_orders"]))
                if self.on_gateway_ready is not None:
                    self.on_gateway_ready()
        # mailbox (nanoarb ctl)
        req = int(self.mailbox[MB_REQ])
        if req != self._last_req:
            self._last_req = req
            self._mailbox(req)
        if self.flags:
            self._handle_flags()
        # a decide now and then: stale data, halted trader with live orders, timers
        if now - int(t["last_decide_ns"]) >= IDLE_DECIDE_NS:
            self._decide_send(0, 0)
        state = int(t["state"])
        if state != self.last_state:
            self.log(EV_STATE, INFO, self.last_state, state, int(t["halt_reason"]))
            from daemon.journal import state_row

            self.journal_raw(state_row(self.last_state, state, int(t["halt_reason"]),
                                       self.clock.wall_ns()))
            self.last_state = state
        self.drain_local_journal()
        if force_publish or now >= getattr(self, "_next_publish", 0):
            self._next_publish = now + PUBLISH_NS
            if self.publisher is not None:
                self.publisher.publish(int(self.lifecycle))
            self._gateway_events()
            if self.notifier is not None and now >= getattr(self, "_next_status", 0):
                self._next_status = now + 1_000_000_000
                self.notifier.status(self.status_line())

    def _fresh_cancel_attempts(self) -> None:
        """The session is (re)established and reconciled: the cancels refused while it
        was down never reached the exchange, so they do not count toward
        MAX_CANCEL_ATTEMPTS. Without this, a trader HALTED by the loss gives up on its
        orders within milliseconds (every decide's cancels refused locally) and leaves
        the orders that survived the disconnect (no cancel on disconnect) working."""
        self.core.trader["orders"][0]["cancel_attempts"][:] = 0

    def _gateway_events(self) -> None:
        """The gateway's session events (connects, handshakes, rejects: rare, text) as JSON
        lines on stderr (journald under systemd); the integer events go through the log
        ring."""
        drain = getattr(self.p.gateway, "drain_events", None)
        if drain is None:
            return
        for t_ns, kind, detail in drain():
            print(json.dumps({"event": f"gateway_{kind}", "detail": detail,
                              "level": "info", "hot_time_ns": t_ns}), file=sys.stderr,
                  flush=True)

    def drain_local_journal(self) -> None:
        if self.journal_reports is None:
            return
        from daemon.shm import Ring
        from daemon.telemetry import journal_payload

        rows = Ring(self.block, "journal").drain()
        rep = rows[rows["kind"] == J_EXEC_REPORT]
        if rep.size:
            self.journal_reports.append(journal_payload(rep, EXEC_REPORT))

    def _sync_joins(self) -> None:
        if self.p.join is None or self.p.leave is None:
            return
        for c in range(self.n_channels):
            want = int(self._want[c])
            if want != self._joined[c]:
                if want:
                    self.p.join(c, self.snapshot_role)
                else:
                    self.p.leave(c, self.snapshot_role)
                self._joined[c] = want

    def status_line(self) -> str:
        from core.types import TRADER_STATE_NAMES

        t = self.core.trader[0]
        return (f"{TRADER_STATE_NAMES[int(t['state'])]} pnl={float(t['net_pnl']):.2f} "
                f"orders={int(t['live_orders'])} fills={int(self._fills())}")

    def _fills(self) -> int:
        return int(self.core.trader[0]["report_counts"][ER_FILL])

    def _mailbox(self, req: int) -> None:
        cmd = int(self.mailbox[MB_CMD])
        result = 0
        if cmd == CMD_HALT:
            result = self.halt(RISK_OPERATOR)
        elif cmd == CMD_RESUME:
            result = self.resume()
        elif cmd == CMD_RELOAD:
            result = self.reload()
        elif cmd == CMD_STOP:
            self.flags |= F_STOP
        elif cmd != CMD_STATUS:
            result = -1
        self.mailbox[MB_RESULT] = result
        if self.publisher is not None:
            # the reply carries the gauges (`nanoarb ctl status`): publish them now, or a
            # status right after a resume could show the state of the last publish, 10 ms old
            self.publisher.publish(int(self.lifecycle))
            self._next_publish = self.clock.now_ns() + PUBLISH_NS
        self.mailbox[MB_REPLY] = req

    def _handle_flags(self) -> None:
        f = self.flags
        self.flags = f & F_STOP  # STOP stays set: run() turns it into STOPPING
        if f & F_KILL:
            self.kill_switch()
        if f & F_RESUME:
            self.resume()
        if f & F_RELOAD:
            self.reload()
        if f & F_STOP and not self._stop_logged:
            self._stop_logged = True
            self.log(EV_STOP, INFO, int(self.stop_signal))

    # ------------------------------------------------------------------ operator actions
    def kill_switch(self) -> int:
        """Halt, a cancel for every live order now, then the venue's mass cancel."""
        now = self.clock.now_ns()
        live = int(self.core.trader[0]["live_orders"])
        k = self.core.kill_switch(now, 0)
        if k:
            self.p.gateway.send(self.actions, k)
        self.p.gateway.mass_cancel(0)
        if k:
            self._journal_tick(0, k)
        self.log(EV_KILL_SWITCH, WARNING, live)
        return k

    def halt(self, reason: int = RISK_OPERATOR) -> int:
        """Operator halt: HALTED, every live order cancelled (no mass cancel)."""
        self.core.halt(reason)
        self.log(EV_HALT, WARNING, reason, int(self.core.trader[0]["live_orders"]))
        self._decide_send(0, 0)
        return 0

    def resume(self) -> int:
        """Back to ACTIVE if risk allows; RISK_OK or minus the refusal reason."""
        r = int(self.core.resume())
        self.log(EV_RESUME, INFO, int(r == RISK_OK))
        return 0 if r == RISK_OK else -r

    def reload(self) -> int:
        if self.on_reload is None:
            return -1
        try:
            limits = self.on_reload()
        except Exception:  # a bad file keeps the limits in force
            self.log(EV_RELOAD_FAILED, WARNING)
            return -1
        self.core.reload_limits(limits)
        self.log(EV_RELOAD, INFO)
        return 0

    # ------------------------------------------------------------------ stopping
    def _stop(self) -> None:
        """Halt, cancel all, wait for the acks (timeout), close the gateway."""
        self.lifecycle = Lifecycle.STOPPING
        self.heartbeat[HB_READY] = 1
        if self.notifier is not None:
            self.notifier.stopping("cancelling working orders")
        gw = self.p.gateway
        t = self.core.trader[0]
        self.core.halt(RISK_OPERATOR)
        k = self.core.kill_switch(self.clock.now_ns(), 0)
        if k:
            gw.send(self.actions, k)
            self._journal_tick(0, k)
        gw.mass_cancel(0)
        deadline = time.monotonic_ns() + self.stop_timeout_ns
        while int(t["live_orders"]) > 0 and time.monotonic_ns() < deadline:
            if self.p.replay:
                self.clock.set_ns(self.clock.now_ns() + 100_000)
            n_rep = gw.poll(self.reports)
            if n_rep:
                self._decide_send(n_rep, 0)
            elif now_due(self, 1_000_000):
                self._decide_send(0, 0)  # re-send cancels whose answer is overdue
        live = int(t["live_orders"])
        if live:
            self.log(EV_STOP_TIMEOUT, WARNING, live)
        gw.close()
        end = time.monotonic_ns() + 200_000_000
        while time.monotonic_ns() < end and not self.p.replay:
            n_rep = gw.poll(self.reports)
            if n_rep:
                self._decide_send(n_rep, 0)
            if not _gateway_busy(gw):
                break
        self.stopped_clean = live == 0
        if self.send_warmer is not None:
            self.send_warmer.close()
        self.log(EV_STOPPED, INFO, live)
        self.drain_local_journal()
        if self.publisher is not None:
            self.publisher.publish(int(Lifecycle.STOPPED))
        self.lifecycle = Lifecycle.STOPPED

    # ------------------------------------------------------------------ summary
    def tick_to_trade_ns(self) -> np.ndarray:
        """Every tick-to-trade kept (datagram in the loop -> orders sent), ns."""
        return _ring_values(self.samples)

    def tick_ns(self) -> np.ndarray:
        """The time of every tick kept (datagram in the loop -> decided, sent), ns."""
        return _ring_values(self.tick_samples)


def _ring_values(ring: np.ndarray) -> np.ndarray:
    n = int(ring[-1])
    cap = ring.size - 1
    return ring[: min(n, cap)].copy()


def now_due(loop: HotLoop, every_ns: int) -> bool:
    now = loop.clock.now_ns()
    if now >= getattr(loop, "_next_stop_decide", 0):
        loop._next_stop_decide = now + every_ns  # type: ignore[attr-defined]
        return True
    return False


def _gateway_busy(gw: Any) -> bool:
    st = getattr(gw, "state", None)
    return st is not None and int(st) not in (0,)  # Ilink3: STOPPED == 0


def _limits_of(core: TradingCore) -> Any:
    """A RiskLimits equal to the installed one (for the warm-up probe)."""
    from core.risk import InstrumentLimits, RiskLimits

    t = core.trader[0]
    inst = t["instruments"]
    return RiskLimits(
        max_notional=float(t["max_notional"]), max_working_orders=int(t["max_working_orders"]),
        submit_limit=int(t["submit_limit"]), submit_window_ns=int(t["submit_window_ns"]),
        cancel_limit=int(t["cancel_limit"]), cancel_window_ns=int(t["cancel_window_ns"]),
        max_daily_loss=float(t["max_daily_loss"]), max_drawdown=float(t["max_drawdown"]),
        stale_ns=int(t["stale_ns"]), halt_on_data_fault=bool(t["halt_on_data_fault"]),
        instruments=tuple(InstrumentLimits(int(inst[i]["max_order_qty"]),
                                           int(inst[i]["max_position"]),
                                           int(inst[i]["collar_ticks"]))
                          for i in range(int(t["n_instruments"]))))


def _CH_WANT_SNAPSHOT() -> int:  # noqa: N802 - a constant of core.sequencing
    from core.sequencing import CH_WANT_SNAPSHOT

    return int(CH_WANT_SNAPSHOT)


__all__ = [
    "F_KILL",
    "F_RELOAD",
    "F_RESUME",
    "F_STOP",
    "HotLoop",
    "Lifecycle",
    "LoopParts",
    "Shared",
]
