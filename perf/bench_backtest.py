"""Backtest throughput (issue 9): a full replay of a long synthetic MDP 3.0 stream.

The stream: ``core.synthetic`` (ES and CL, MBP-10 books, Hawkes-clustered trades
and quotes) encoded as CME MDP 3.0 incremental packets (``perf._mdp_stream``;
one packet per match event, templates 46 and 48, ~1.3 entries per packet).
Built once before the clock starts; not timed.

The replay does everything the daemon's tick does except the sockets: decode,
books, features, the model (the shipped ``default.onnx``), strategy, risk and OMS
(``core.trading``), and the simulated venue (``adapters.sim_gateway``: latency
and queue-position fills). Two ways, measured on the same stream:

* **batched** (``run_batched``, the figure): per chunk of 16384 packets,
  (1) decode every packet, one njit call (``core.sbe.mdp3._decode_stream``);
  (2) books + features over all the rows, one njit call
  (``core.market._apply_events``, one record per completed event: top of book
  and the feature row); (3) the model over the chunk's feature matrix, one njit
  call (the SSM scan of ``core.model``, its recurrent state carried from chunk
  to chunk, one state per instrument); (4) strategy + risk + OMS + simulated
  venue packet by packet in ONE njit call (``_trade_chunk``): per packet the
  execution reports due, the venue's queue model on its rows, the market view
  of the instruments whose event completed, ``decide``, and the orders to the
  venue. Steps 1-3 can run ahead of step 4 because in a replay the market does
  not see our orders: features and model outputs do not depend on what we
  trade. What is batched: decode, books, features, model. What is not: the
  trading step and the venue, which run packet by packet in time order, exactly
  as live (only the Python crossings are gone).
* **per packet** (``run_per_packet``, the "before"): the daemon's hot-loop
  structure from Python, one packet at a time through each component's public
  entry point: ``MarketState``'s bound ``_on_packet`` (decode + books +
  features), the model runner's ``fast_step`` per completed event (onnxruntime
  C API), ``market_view_from_books``, ``SimGateway.poll/on_market_data/send``
  and ``TradingCore.tick``: ~10 Python -> numba crossings per packet.

Both give the same fills on the same stream (checked by tests/test_perf_harness.py
on a short one), so the difference is glue only.

Figures:

* ``backtest_events_per_s`` (target 3.55e6, the Rust reference system's full
  backtest): MD_EVENT rows (decoded book/trade entries) per second, batched.
* ``backtest_packets_per_s``, ``backtest_match_events_per_s``: the same run in
  packets and in completed match events.
* ``backtest_per_packet_events_per_s``: the per-packet glue, rows per second.
* ``backtest_glue_speedup``: batched / per packet.

The JSON also has the time of each stage of the batched run, and the run's
backtest report (``core.backtest_stats``): ``DIR/backtest_report.json`` and the
equity + inventory plot ``DIR/backtest_equity.png`` (``daemon.plots``).

Run: ``python -m perf.bench_backtest [--out DIR] [--quick] [--events N]``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from adapters.clock import ManualClock
from adapters.sim_gateway import (
    LatencyModel,
    SimGateway,
    SimInstrument,
    _on_events,
    _poll_entry,
    _send_entry,
)
from core.backtest_stats import backtest_summary
from core.feature_spec import N_FEATURES
from core.features import FS_FEATURES
from core.market import (
    REC_F_WIDTH,
    REC_I_WIDTH,
    RI_LEVELS,
    RI_ROW,
    RI_SEQ,
    RUN_N_REC,
    MarketState,
    _apply_events,
)
from core.model import C_N_LOGITS, _ssm_batch, load_model
from core.risk import InstrumentLimits, RiskLimits
from core.sbe.mdp3 import _decode_stream
from core.strategy.market_maker import MarketMakerParams
from core.trading import (
    InstrumentConfig,
    TradingCore,
    _decide,
    market_view_from_books,
    new_market_view,
)
from core.types import (
    DROP_EVENTS_FULL,
    ER_FILL,
    EV_TRADE,
    EXEC_REPORT,
    MD_EVENT,
    MDS_OK,
    NULL_I64,
    PACKET_HEADER,
    RISK_OK,
    TRADER_STATE_NAMES,
)
from perf._common import base_parser, figure, now_iso, write_result
from perf._mdp_stream import MdpStream, synthetic_stream
from perf._numba_cache import refresh_cache_stamp

# _trade_chunk inlines the trading core and the simulated venue: rebuild its cache when
# they change (numba keys a cache on this file only). Before the first @njit below.
refresh_cache_stamp(__file__, ["core/trading.py", "core/oms.py", "core/risk.py",
                               "core/strategy", "core/types.py", "adapters/sim_gateway.py"])

TARGET_EVENTS_PER_S = 3.55e6
CHUNK_PACKETS = 16384
LATENCY_NS = 50_000  # order entry and execution reports, each way (constant)
CURVE_EVERY_NS = 1_000_000  # equity/inventory sample at most once per ms of market time

# Traded: the synthetic ES and CL. tick_value: ES 0.25 pt x $50, CL $0.01 x 1000.
TICK_VALUE = {5602: 12.5, 2871: 10.0}
FEES = {"maker_fee": 0.20, "taker_fee": 0.55, "fee_per_contract": 0.10}
# curve/stat counters of _trade_chunk (int64 array)
K_DECIDES, K_ACTIONS, K_FILLS, K_CURVE, K_LAST_CURVE_NS, K_REC, N_K = range(7)
_I64: Any = np.int64  # (typed Any: mypy reads the kernels' int arguments as Python ints)


# --------------------------------------------------------------------------
# set-up
# --------------------------------------------------------------------------
class ReplayClock(ManualClock):
    """A ManualClock the replay sets to each packet's time."""

    __slots__ = ()

    def set_ns(self, t: int) -> None:
        if t > self.now_ns():
            self.advance(t - self.now_ns())


@dataclass
class Parts:
    """Everything one replay needs, fresh (nothing shared between runs)."""

    stream: MdpStream
    market: MarketState
    core: TradingCore
    sim: SimGateway
    clock: ReplayClock
    model: Any
    sids: list[int]
    ticks: list[int]
    slot_of_row: np.ndarray  # MarketState row -> traded slot (-1: not traded)
    traded_rows: np.ndarray
    market_view: np.ndarray
    features: np.ndarray
    alpha: np.ndarray


def make_parts(stream: MdpStream, latency_ns: int = LATENCY_NS) -> Parts:
    mk = stream.market
    sids = [int(i.security_id) for i in mk.config.instruments]
    ticks = [mk.tick_size[s] for s in sids]
    market = MarketState(max_instruments=16)
    for s, tk in zip(sids, ticks, strict=True):
        market.add_instrument(s, depth=mk.depth[s], tick=tk)
    params = MarketMakerParams(quote_size=1, n_layers=1, requote_ticks=1)
    limits = InstrumentLimits(max_order_qty=5, max_position=10, collar_ticks=20)
    cfgs = [InstrumentConfig(security_id=s, tick=tk, tick_value=TICK_VALUE.get(s, 10.0),
                             limits=limits, params=params, maker_fee=FEES["maker_fee"],
                             taker_fee=FEES["taker_fee"],
                             fee_per_contract=FEES["fee_per_contract"])
            for s, tk in zip(sids, ticks, strict=True)]
    # loss limits out of the way: the benchmark measures a trader that keeps quoting
    core = TradingCore(cfgs, RiskLimits(max_daily_loss=1e9, max_drawdown=1e9,
                                        submit_limit=200, cancel_limit=200))
    t0 = int(stream.market.events[0]["transact_time"]) if stream.n_rows else 0
    clock = ReplayClock(start_ns=t0)
    lat = LatencyModel.constant(latency_ns)
    sim = SimGateway(clock, [SimInstrument(s, tk, depth=mk.depth[s], maker_fee=FEES["maker_fee"],
                                           taker_fee=FEES["taker_fee"],
                                           fee_per_contract=FEES["fee_per_contract"])
                             for s, tk in zip(sids, ticks, strict=True)],
                     entry_latency=lat, response_latency=lat)
    sim.connect()
    core.finish_startup()
    core.set_gateway_up(True)
    if core.resume() != RISK_OK:
        raise RuntimeError("the trader refused to start")
    traded_rows = np.array([market.row(s) for s in sids], dtype=np.int64)
    slot_of_row = np.full(market.inst.shape[0], -1, dtype=np.int64)
    slot_of_row[traded_rows] = np.arange(len(sids))
    n = len(sids)
    market_view = new_market_view(n)
    features = np.zeros((n, N_FEATURES), dtype=np.float64)
    alpha = np.zeros(n, dtype=np.float64)
    core.bind(market_view, features, alpha)
    return Parts(stream=stream, market=market, core=core, sim=sim, clock=clock,
                 model=load_model(), sids=sids, ticks=ticks, slot_of_row=slot_of_row,
                 traded_rows=traded_rows, market_view=market_view, features=features,
                 alpha=alpha)


@dataclass
class RunResult:
    seconds: float
    rows: int
    packets: int
    completed: int  # (event, instrument) completions
    decides: int
    actions: int
    fills: np.ndarray  # EXEC_REPORT rows of kind ER_FILL, in order
    curve_ns: np.ndarray
    curve_pnl: np.ndarray
    curve_pos: np.ndarray  # [samples, instruments]
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage (batched)
    cpu_seconds: float = 0.0  # process CPU time of the run (batched)


def _final_sample(parts: Parts, ns: list[np.ndarray], pnl: list[np.ndarray],
                  pos: list[np.ndarray]) -> None:
    """The equity curve ends with the trader's final state, at the last packet's time."""
    t = parts.core.trader[0]
    ns.append(np.array([parts.clock.now_ns()], dtype=np.int64))
    pnl.append(np.array([float(t["net_pnl"])]))
    pos.append(np.array([[int(t["instruments"][i]["position"])
                          for i in range(len(parts.sids))]], dtype=np.int64))


# --------------------------------------------------------------------------
# the batched replay
# --------------------------------------------------------------------------
@njit(cache=True)
def _record_fills(reports, n, fills, k):
    for j in range(n):
        if reports[j].kind == ER_FILL and k[K_FILLS] < fills.shape[0]:
            fills[k[K_FILLS]] = reports[j]
            k[K_FILLS] += 1


@njit(cache=True)
def _trade_chunk(events, headers, n_packets, rec_i, rec_f, rec_alpha, rec_ok, n_rec,
                 slot_of_row, sids, trader, market, features, alpha, reports, actions, venue,
                 mbo, entry_lat, resp_lat, fills, curve_ns, curve_pnl, curve_pos, k):
    """Strategy + risk + OMS + simulated venue over one chunk's packets, in time order.

    Per packet, as the daemon's replay loop: execution reports due by its time
    (decide on them), the venue's queue model on its rows, then for the traded
    instruments whose event completed in it: market view, features, model alpha
    (precomputed, in ``rec_alpha``), poll, decide, send.
    """
    n_slots = sids.shape[0]
    t = trader[0]
    lo = 0
    r = k[K_REC]
    cap_reports = reports.shape[0]
    for p in range(n_packets):
        h = headers[p]
        n = _I64(h.n_events)
        seq = _I64(h.msg_seq)
        now = _I64(h.sending_time)
        # reports that reached us before this packet
        nr = _poll_entry(venue, resp_lat, reports, cap_reports, now)
        if nr > 0:
            _record_fills(reports, nr, fills, k)
            a = _decide(trader, market, features, alpha, nr, now, 0)
            k[K_DECIDES] += 1
            if a > 0:
                _send_entry(venue, entry_lat, actions, a, now)
                k[K_ACTIONS] += a
        # the venue sees the market data (queue positions, fills)
        _on_events(venue, mbo, resp_lat, events[lo:lo + n], n, now)
        for j in range(lo, lo + n):
            e = events[j]
            if e.kind == EV_TRADE and e.price != NULL_I64:
                for s in range(n_slots):
                    if sids[s] == e.security_id:
                        market[s].last_trade_px = e.price
        lo += n
        # completed events of this packet
        touched = False
        while r < n_rec and rec_i[r, RI_SEQ] == seq:
            row = rec_i[r, RI_ROW]
            s = slot_of_row[row] if 0 <= row < slot_of_row.shape[0] else -1
            if s >= 0:
                m = market[s]
                m.bid_px = rec_i[r, RI_LEVELS]
                m.bid_qty = rec_i[r, RI_LEVELS + 1]
                m.ask_px = rec_i[r, RI_LEVELS + 3]
                m.ask_qty = rec_i[r, RI_LEVELS + 4]
                m.status = MDS_OK
                for f in range(features.shape[1]):
                    features[s, f] = rec_f[r, 1 + f]
                alpha[s] = rec_alpha[r] if rec_ok[r] else np.nan
                touched = True
            r += 1
        if not touched:
            continue
        for s in range(n_slots):  # as the daemon's market view: current as of now
            market[s].update_ns = now
        nr = _poll_entry(venue, resp_lat, reports, cap_reports, now)
        _record_fills(reports, nr, fills, k)
        a = _decide(trader, market, features, alpha, nr, now, seq)
        k[K_DECIDES] += 1
        if a > 0:
            _send_entry(venue, entry_lat, actions, a, now)
            k[K_ACTIONS] += a
        c = k[K_CURVE]
        if c < curve_ns.shape[0] and now - k[K_LAST_CURVE_NS] >= CURVE_EVERY_NS:
            curve_ns[c] = now
            curve_pnl[c] = t.net_pnl
            for s in range(n_slots):
                curve_pos[c, s] = t.instruments[s].position
            k[K_CURVE] = c + 1
            k[K_LAST_CURVE_NS] = now
    k[K_REC] = r
    return lo


def run_batched(parts: Parts, chunk_packets: int = CHUNK_PACKETS) -> RunResult:
    """The batched replay of the whole stream (see the module docstring)."""
    st = parts.stream
    market = parts.market
    core = parts.core
    sim = parts.sim
    model = parts.model
    n_slots = len(parts.sids)
    n_packets = st.n_packets
    offsets = st.offsets
    # preallocated for the largest chunk: a book/trade entry is >= 32 bytes on the wire
    starts = np.arange(0, n_packets, chunk_packets)
    ends = np.minimum(starts + chunk_packets, n_packets)
    max_bytes = int((offsets[ends] - offsets[starts]).max()) if n_packets else 0
    ev_cap = max_bytes // 32 + 64
    events = np.zeros(ev_cap, dtype=MD_EVENT)
    headers = np.zeros(chunk_packets, dtype=PACKET_HEADER)
    drops = np.zeros_like(market.drops)
    rec_cap = 4 * chunk_packets + 64
    rec_i = np.zeros((rec_cap, REC_I_WIDTH), dtype=np.int64)
    rec_f = np.zeros((rec_cap, REC_F_WIDTH), dtype=np.float64)
    X = np.zeros((rec_cap, N_FEATURES), dtype=np.float32)
    gid = np.zeros(rec_cap, dtype=np.int64)
    logits = np.zeros((rec_cap, 0), dtype=np.float32)  # alpha only: no logit is kept
    rec_alpha = np.zeros(rec_cap, dtype=np.float32)
    rec_ok = np.zeros(rec_cap, dtype=np.bool_)
    w = model._ssm_weights()
    if w is None:
        raise RuntimeError("the batched replay needs the SSM model (core.train's export)")
    a_, c_, B_, W_, b_ = w
    B_, W_ = np.ascontiguousarray(B_), np.ascontiguousarray(W_)
    mu = model.info.class_mean_ticks.astype(np.float64).ravel()
    h_alpha = int(model.info.alpha_horizon)
    # one recurrent state per traded instrument, plus one for untraded rows
    last = np.zeros((n_slots + 1, a_.shape[0]), dtype=np.float32)
    group_of_row = parts.slot_of_row.copy()
    group_of_row[group_of_row < 0] = n_slots
    fills = np.zeros(1 << 20, dtype=EXEC_REPORT)
    curve_cap = max(chunk_packets, 1)
    curve_ns = np.zeros(curve_cap, dtype=np.int64)
    curve_pnl = np.zeros(curve_cap, dtype=np.float64)
    curve_pos = np.zeros((curve_cap, n_slots), dtype=np.int64)
    out_ns: list[np.ndarray] = []
    out_pnl: list[np.ndarray] = []
    out_pos: list[np.ndarray] = []
    k = np.zeros(N_K, dtype=np.int64)
    k[K_LAST_CURVE_NS] = -(1 << 62)
    sids = np.array(parts.sids, dtype=np.int64)
    stages = {"decode": 0.0, "books_features": 0.0, "model": 0.0, "trading_venue": 0.0}
    rows = completed = 0
    pc = time.perf_counter
    cpu_start = time.process_time()
    t_start = pc()
    for p0, p1 in zip(starts, ends, strict=True):
        t0 = pc()
        nk = int(_decode_stream(st.buf, offsets[p0:p1 + 1], market.plan, events, drops,
                                headers))
        if drops[DROP_EVENTS_FULL]:
            raise RuntimeError("event buffer too small")
        t1 = pc()
        market.run[RUN_N_REC] = 0
        _apply_events(events, nk, -1, market.arena, rec_i, rec_f)
        m = int(market.run[RUN_N_REC])  # one record per completed (event, instrument)
        completed += m
        if m >= rec_cap:
            raise RuntimeError("record buffer too small")
        t2 = pc()
        X[:m] = rec_f[:m, 1:]
        gid[:m] = group_of_row[rec_i[:m, RI_ROW]]
        _ssm_batch(X[:m], gid[:m], a_, c_, B_, W_, b_, mu, h_alpha, last, logits[:m],
                   rec_alpha[:m], rec_ok[:m])
        t3 = pc()
        k[K_CURVE] = 0
        k[K_REC] = 0
        _trade_chunk(events, headers, p1 - p0, rec_i, rec_f, rec_alpha, rec_ok, m,
                     parts.slot_of_row, sids, core.trader, parts.market_view, parts.features,
                     parts.alpha, core.reports, core.actions, sim.venue, sim.mbo,
                     sim.entry_latency.samples, sim.response_latency.samples, fills,
                     curve_ns, curve_pnl, curve_pos, k)
        t4 = pc()
        c = int(k[K_CURVE])
        out_ns.append(curve_ns[:c].copy())
        out_pnl.append(curve_pnl[:c].copy())
        out_pos.append(curve_pos[:c].copy())
        rows += nk
        stages["decode"] += t1 - t0
        stages["books_features"] += t2 - t1
        stages["model"] += t3 - t2
        stages["trading_venue"] += t4 - t3
    seconds = pc() - t_start
    cpu_seconds = time.process_time() - cpu_start
    parts.clock.set_ns(int(headers[(n_packets - 1) % chunk_packets]["sending_time"])
                       if n_packets else 0)
    _final_sample(parts, out_ns, out_pnl, out_pos)
    return RunResult(seconds=seconds, rows=rows, packets=n_packets, completed=completed,
                     decides=int(k[K_DECIDES]), actions=int(k[K_ACTIONS]),
                     fills=fills[:int(k[K_FILLS])].copy(),
                     curve_ns=np.concatenate(out_ns), curve_pnl=np.concatenate(out_pnl),
                     curve_pos=np.concatenate(out_pos),
                     stages=stages, cpu_seconds=cpu_seconds)


# --------------------------------------------------------------------------
# the per-packet replay ("before": the hot loop's structure, from Python)
# --------------------------------------------------------------------------
def run_per_packet(parts: Parts, n_packets: int | None = None) -> RunResult:
    st = parts.stream
    market = parts.market
    core = parts.core
    sim = parts.sim
    clock = parts.clock
    n_packets = st.n_packets if n_packets is None else min(n_packets, st.n_packets)
    on_packet = market.bind_on_packet()
    arena = market.arena
    runner = parts.model.runner(n_slots=len(parts.sids))
    step = runner.fast_step()
    h3 = int(runner.ctl[C_N_LOGITS])
    slot_of_row = parts.slot_of_row
    completed_rows = market.completed_rows
    fstate = market.fstate
    feats = parts.features
    alpha = parts.alpha
    view = parts.market_view
    header = market.header
    events = market.events
    reports = core.reports
    actions = core.actions
    fills: list[np.ndarray] = []
    curve: list[tuple[int, float, list[int]]] = []
    t_rec = core.trader[0]
    last_curve = -(1 << 62)
    rows = completed = decides = n_actions = 0
    buf = st.buf
    offs = st.offsets
    packets = [buf[offs[i]:offs[i + 1]] for i in range(n_packets)]
    times = [int(p[4:12].view("<u8")[0]) for p in packets]
    seqs = [int(p[:4].view("<u4")[0]) for p in packets]
    pc = time.perf_counter
    t_start = pc()
    for i in range(n_packets):
        pk = packets[i]
        now = times[i]
        clock.set_ns(now)
        nr = sim.poll(reports)
        if nr:
            fills.append(reports[:nr][reports[:nr]["kind"] == ER_FILL].copy())
            a = core.tick(nr, now, 0)
            decides += 1
            if a:
                sim.send(actions, a)
                n_actions += a
        c = int(on_packet(pk, pk.size, -1, arena))
        nrows = int(header[0]["n_events"])
        rows += nrows
        sim.on_market_data(events, nrows)
        if not c:
            continue
        completed += c
        touched = False
        for j in range(c):
            row = int(completed_rows[j])
            s = int(slot_of_row[row])
            if s < 0:
                continue
            feats[s] = fstate[row, FS_FEATURES:FS_FEATURES + N_FEATURES]
            runner.features[s] = feats[s]
            alpha[s] = runner.out[s, h3] if step(s) else np.nan
            touched = True
        if not touched:
            continue
        market_view_from_books(view, market.book, market.inst, parts.traded_rows, now)
        nr = sim.poll(reports)
        if nr:
            fills.append(reports[:nr][reports[:nr]["kind"] == ER_FILL].copy())
        a = core.tick(nr, now, seqs[i])
        decides += 1
        if a:
            sim.send(actions, a)
            n_actions += a
        if now - last_curve >= CURVE_EVERY_NS:
            curve.append((now, float(t_rec["net_pnl"]),
                          [int(t_rec["instruments"][s]["position"])
                           for s in range(len(parts.sids))]))
            last_curve = now
    seconds = pc() - t_start
    runner.close()
    n_slots = len(parts.sids)
    c_ns = [np.array([c[0] for c in curve], dtype=np.int64)]
    c_pnl = [np.array([c[1] for c in curve], dtype=np.float64)]
    c_pos = [np.array([c[2] for c in curve], dtype=np.int64).reshape(-1, n_slots)]
    _final_sample(parts, c_ns, c_pnl, c_pos)
    return RunResult(seconds=seconds, rows=rows, packets=n_packets, completed=completed,
                     decides=decides, actions=n_actions,
                     fills=np.concatenate(fills) if fills else np.zeros(0, EXEC_REPORT),
                     curve_ns=np.concatenate(c_ns), curve_pnl=np.concatenate(c_pnl),
                     curve_pos=np.concatenate(c_pos))


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
def backtest_report(parts: Parts, res: RunResult) -> dict[str, Any]:
    """The run's statistics (core.backtest_stats) and what the trader ended with."""
    ev = parts.stream.market.events
    start = int(ev[0]["transact_time"]) if ev.size else 0
    end = max(int(parts.clock.now_ns()), start)
    inst = {s: (tk, TICK_VALUE.get(s, 10.0)) for s, tk in zip(parts.sids, parts.ticks,
                                                            strict=True)}
    out = backtest_summary(res.fills, inst, res.curve_ns, res.curve_pnl, start, end)
    t = parts.core.trader[0]
    out["trader"] = {
        "final_state": TRADER_STATE_NAMES[int(t["state"])],
        "net_pnl": float(t["net_pnl"]),
        "decides": int(t["n_decides"]),
        "orders_new": int(t["action_counts"][1]),
        "orders_cancel": int(t["action_counts"][2]),
        "orders_modify": int(t["action_counts"][3]),
        "positions": {str(s): int(t["instruments"][i]["position"])
                      for i, s in enumerate(parts.sids)},
    }
    out["venue"] = parts.sim.counters()
    out["latency_ns_each_way"] = LATENCY_NS
    return out


def _rate(n: int, s: float) -> float:
    return n / s if s > 0 else 0.0


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__ or "")
    p.add_argument("--events", type=int, default=2_000_000,
                   help="synthetic match events in the stream")
    p.add_argument("--per-packet", type=int, default=100_000,
                   help="packets replayed by the per-packet glue (it is slow)")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    n_events = 100_000 if args.quick else args.events
    n_pp = min(20_000 if args.quick else args.per_packet, n_events)
    started = now_iso()
    # warm-up: compile / load every kernel on a short stream
    small = synthetic_stream(2000, seed=1)
    run_batched(make_parts(small), chunk_packets=512)
    run_per_packet(make_parts(small), 500)
    t0 = time.perf_counter()
    stream = synthetic_stream(n_events, seed=7)
    build_s = time.perf_counter() - t0
    parts = make_parts(stream)
    res = run_batched(parts)
    report = backtest_report(parts, res)
    pp = run_per_packet(make_parts(stream), n_pp)
    rate = _rate(res.rows, res.seconds)
    pp_rate = _rate(pp.rows, pp.seconds)
    figures = [
        figure("backtest_events_per_s", rate, "1/s", TARGET_EVENTS_PER_S, "higher"),
        figure("backtest_packets_per_s", _rate(res.packets, res.seconds), "1/s"),
        figure("backtest_match_events_per_s", _rate(res.completed, res.seconds), "1/s"),
        figure("backtest_per_packet_events_per_s", pp_rate, "1/s"),
        figure("backtest_events_per_cpu_s", _rate(res.rows, res.cpu_seconds), "1/s"),
        figure("backtest_glue_speedup", rate / pp_rate if pp_rate else 0.0, "x"),
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "backtest_report.json").write_text(json.dumps(report, indent=2) + "\n",
                                              encoding="utf-8")
    plot = None
    if not args.no_plot:
        try:
            from daemon.plots import equity_plot

            syms = [i.symbol for i in stream.market.config.instruments]
            plot = str(equity_plot(res.curve_ns, res.curve_pnl, res.curve_pos,
                                   out / "backtest_equity.png",
                                   title=f"synthetic replay, {n_events} events",
                                   position_labels=syms))
        except ImportError:  # matplotlib is in the perf extra
            plot = None
    stage_total = sum(res.stages.values()) or 1.0
    path = write_result(
        "backtest", figures, args.out, started=started,
        stream={"match_events": n_events, "rows": res.rows, "packets": res.packets,
                "bytes": int(stream.buf.size), "build_seconds": round(build_s, 3)},
        batched={"seconds": res.seconds, "cpu_seconds": res.cpu_seconds,
                 "decides": res.decides, "actions": res.actions,
                 "fills": len(res.fills),
                 "stage_seconds": {k: round(v, 4) for k, v in res.stages.items()},
                 "stage_share": {k: round(v / stage_total, 3) for k, v in res.stages.items()}},
        per_packet={"packets": pp.packets, "rows": pp.rows, "seconds": pp.seconds,
                    "decides": pp.decides},
        report="backtest_report.json", plot=plot)
    for f in figures:
        print(f"{f['name']:34s} {f['value']:14.1f} {f['unit']:4s} target {f['target']}")
    for name, v in res.stages.items():
        print(f"  stage {name:16s} {v:8.3f} s  ({v / stage_total:5.1%})")
    print(f"  pnl {report['total_pnl']:.2f}  fills {report['fills']}  "
          f"sharpe {report['sharpe_annualised']}  state {report['trader']['final_state']}")
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
