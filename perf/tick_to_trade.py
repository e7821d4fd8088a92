"""Tick-to-trade, end to end: the exchange simulator and the daemon, two processes, two cores.

``python -m perf.tick_to_trade [--seconds N] [--rate R] [--out DIR] [--quick]``

Set-up (``daemon.demo``: the demo venue and the demo daemon config):

* the **venue** (``nanoarb venue``) on 127.0.0.1 with a busy loop (``--venue-loop
  wait``: sleeping in ``select`` between timers instead), pinned to one core. Its
  background order flow arrives as a Poisson process of ``--rate`` orders per
  second (the demo's Hawkes excitation switched off), every arrival
  time drawn from the seed in advance: an **open-loop schedule**. Nothing waits
  for the daemon: a slow response cannot hide the packets behind it, they queue
  in the socket and their latency counts from their kernel receive time
  (no coordinated omission);
* the **daemon** (``daemon.process.run_daemon``, demo mode: MDP 3.0 feeds A/B
  over UDP, iLink 3 over TCP, the default ONNX model, quoting from the start)
  in a child process pinned to the other core, without its control-plane
  process (``--control-plane`` to add it).

Two measurements, on two clocks that never mix:

(a) **in process** (daemon): for every tick that sent at least one order, the
    kernel receive timestamp of the datagram (SO_TIMESTAMPNS, CLOCK_REALTIME)
    to the moment the last order of the tick was handed to the kernel
    (``send`` returned), with the stages of the daemon's hot loop
    (``daemon.kernels.STAGE_NAMES``): receive (kernel timestamp -> the loop has
    the datagram: busy-poll and ``recvmsg``), decode + books + features
    (sequencing included), model, strategy + risk (market
    view, ``decide``), encode + send. The daemon keeps log-spaced histograms
    (1-2-5 buckets: too coarse for p99.9); the harness replaces its
    per-tick observer with one that also keeps every tick's raw stage stamps
    in a preallocated ring (after the send, outside the measured interval),
    so percentiles are exact;
(b) **wire to wire** (venue): the venue's send time of the triggering
    market-data packet to its receive time of the order (CLOCK_MONOTONIC, its
    latency record; the trigger is the MsgSeqNum the daemon puts in
    OrderRequestID). Per trigger, the first order (the tick's reaction);
    every order is in the JSON too.

Writes ``DIR/tick_to_trade.json`` (figures ``in_process_p50_us`` target 10,
``in_process_p99_us`` target 25, ``in_process_p999_us``, ``wire_to_wire_p50_us``
target 15, ``wire_to_wire_p99_us`` target 40; p50/p90/p99/p99.9/max/count per
stage), ``DIR/tick_to_trade.txt`` (the table) and ``DIR/tick_to_trade.png``
(``daemon.plots.latency_plot``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from daemon.kernels import _observe_tick as _daemon_observe_tick
from perf._common import DEFAULT_OUT, figure, now_iso, percentiles_us, write_result
from perf._numba_cache import refresh_cache_stamp

# the recorders inline the daemon's observer: rebuild their cache when it changes
refresh_cache_stamp(__file__, ["daemon/kernels.py", "core/types.py"])

TARGETS_US = {"in_process_p50_us": 10.0, "in_process_p99_us": 25.0,
              "wire_to_wire_p50_us": 15.0, "wire_to_wire_p99_us": 40.0}

# raw tick row: the hot loop's stamps [receive delta or -1, t0, t_decoded, t_model or -1,
# t_decided, t_sent] (perf_counter ns), then the number of orders sent
(R_RECV, R_T0, R_T1, R_T2, R_T3, R_T4, R_SENT, N_RAW) = range(8)
RING_AT = 8  # the raw rows start here in the recorder's stamps array
_observe_tick: Any = _daemon_observe_tick  # called with the daemon's arity, whatever it is
STAGES = ("receive", "decode_book_features", "model", "strategy_risk", "encode_send")
DEFAULT_SECONDS = 30.0
DEFAULT_RATE = 2000.0
QUICK_SECONDS = 6.0
QUICK_RATE = 1000.0

__all__ = [
    "figures_of",
    "hist_percentiles",
    "main",
    "stage_samples",
    "summarize",
    "text_table",
    "wire_samples",
]


# --------------------------------------------------------------------------
# analysis (pure)
# --------------------------------------------------------------------------
def stage_samples(raw: np.ndarray) -> dict[str, np.ndarray]:
    """Per-stage ns of the ticks that sent orders, and ``in_process`` (kernel receive ->
    sent) and ``loop_to_send`` (the loop has the datagram -> sent)."""
    r = np.asarray(raw, dtype=np.int64).reshape(-1, N_RAW)
    r = r[r[:, R_SENT] > 0]
    have_model = r[:, R_T2] >= 0
    t_before_decide = np.where(have_model, r[:, R_T2], r[:, R_T1])
    recv = r[:, R_RECV]
    out = {
        "receive": recv[recv >= 0],
        "decode_book_features": r[:, R_T1] - r[:, R_T0],
        "model": (r[:, R_T2] - r[:, R_T1])[have_model],
        "strategy_risk": r[:, R_T3] - t_before_decide,
        "encode_send": r[:, R_T4] - r[:, R_T3],
        "loop_to_send": r[:, R_T4] - r[:, R_T0],
    }
    ok = recv >= 0
    out["in_process"] = recv[ok] + (r[ok, R_T4] - r[ok, R_T0])
    return out


def wire_samples(rows: np.ndarray, first_per_trigger: bool = True) -> np.ndarray:
    """Wire-to-wire ns from the venue's latency record (rows with a known trigger);
    ``first_per_trigger``: only the first order the venue received for each trigger."""
    if rows.size == 0:
        return np.zeros(0, dtype=np.int64)
    w = rows["wire_to_wire_ns"].astype(np.int64)
    keep = w >= 0
    if not first_per_trigger:
        return w[keep]
    trig = rows["trigger_seq"].astype(np.int64)[keep]
    recv = rows["recv_ns"].astype(np.int64)[keep]
    w = w[keep]
    order = np.lexsort((recv, trig))  # by trigger, then arrival
    trig, w = trig[order], w[order]
    first = np.ones(trig.size, dtype=bool)
    first[1:] = trig[1:] != trig[:-1]
    return w[first]


def hist_percentiles(counts: np.ndarray, bounds_ns: np.ndarray) -> dict[str, float]:
    """Percentiles from one histogram row (buckets of ``bounds_ns``, +Inf, count, sum):
    the upper bound of the bucket holding each percentile (an over-estimate)."""
    c = np.asarray(counts, dtype=np.int64)[: bounds_ns.size + 1]
    n = int(c.sum())
    out: dict[str, float] = {"count": n}
    if n == 0:
        return out
    cum = np.cumsum(c)
    ub = np.concatenate((np.asarray(bounds_ns, dtype=np.float64), [np.inf]))
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)):
        out[name] = float(ub[int(np.searchsorted(cum, q * n))] / 1e3)
    out["max"] = float(ub[int(np.flatnonzero(c)[-1])] / 1e3)
    return out


def summarize(samples: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    return {name: percentiles_us(v) for name, v in samples.items()}


def figures_of(stats: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    ip = stats.get("in_process", {})
    ww = stats.get("wire_to_wire", {})
    nan = float("nan")

    def f(name: str, d: dict[str, float], key: str) -> dict[str, Any]:
        v = d.get(key, nan) if d.get("count", 0) else nan
        return figure(name, v, "us", TARGETS_US.get(name), "lower",
                      samples=int(d.get("count", 0)))

    return [
        f("in_process_p50_us", ip, "p50"),
        f("in_process_p99_us", ip, "p99"),
        f("in_process_p999_us", ip, "p999"),
        f("wire_to_wire_p50_us", ww, "p50"),
        f("wire_to_wire_p99_us", ww, "p99"),
    ]


def text_table(stats: dict[str, dict[str, float]]) -> str:
    head = f"{'stage':34s} {'count':>8s} {'p50':>9s} {'p90':>9s} {'p99':>9s} " \
           f"{'p99.9':>9s} {'max':>10s}   (us)"
    lines = [head, "-" * len(head)]
    for name, d in stats.items():
        if not d.get("count"):
            lines.append(f"{name:34s} {0:8d}")
            continue
        lines.append(f"{name:34s} {int(d['count']):8d} {d['p50']:9.2f} {d['p90']:9.2f} "
                     f"{d['p99']:9.2f} {d['p999']:9.2f} {d['max']:10.2f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# the daemon child: a raw per-tick sample ring behind the hot loop's observer
# --------------------------------------------------------------------------
@njit(cache=True)
def _keep_row(stamps, sent):
    """Append the tick's raw row to the ring kept in ``stamps`` itself: ``stamps[6]``
    counts the rows, row j is ``stamps[RING_AT + j*N_RAW:...]``; full: stop."""
    cap = (stamps.shape[0] - RING_AT) // N_RAW
    n = stamps[6]
    if n < cap:
        b = RING_AT + n * N_RAW
        for j in range(6):
            stamps[b + j] = stamps[j]
        stamps[b + R_SENT] = sent
        stamps[6] = n + 1


# The daemon's own observer (``daemon.kernels._observe_tick``: the shared histograms and
# sample rings) on ``stamps[:6]``, then the raw row. One per observer arity: the hot loop
# passes (hist, bounds, stamps, <sample rings...>, sent).
@njit(cache=True)
def _observe_and_record_1(hist, bounds, stamps, a, sent):
    _observe_tick(hist, bounds, stamps[:6], a, sent)
    _keep_row(stamps, sent)


@njit(cache=True)
def _observe_and_record_2(hist, bounds, stamps, a, b, sent):
    _observe_tick(hist, bounds, stamps[:6], a, b, sent)
    _keep_row(stamps, sent)


@njit(cache=True)
def _observe_and_record_3(hist, bounds, stamps, a, b, c, sent):
    _observe_tick(hist, bounds, stamps[:6], a, b, c, sent)
    _keep_row(stamps, sent)


_RECORDERS: dict[int, Any] = {5: _observe_and_record_1, 6: _observe_and_record_2,
                              7: _observe_and_record_3}


def recorder_stamps(capacity: int) -> np.ndarray:
    """A stamps array for the recorders: the 6 stamps, the count, the ring."""
    a = np.zeros(RING_AT + capacity * N_RAW, dtype=np.int64)
    a[:6] = -1
    return a


def recorded(stamps: np.ndarray) -> np.ndarray:
    """The raw rows kept so far: int64 [n, N_RAW]."""
    n = int(stamps[6])
    return stamps[RING_AT:RING_AT + n * N_RAW].reshape(n, N_RAW).copy()


def install_recorder(loop: Any, capacity: int) -> np.ndarray | None:
    """Put a recorder behind the hot loop's per-tick observer (after the send,
    outside what it measures), compiled for the observer's own signature; returns the
    stamps array holding the ring, None if the loop does not look as expected."""
    import daemon.kernels as dk

    stamps = getattr(loop, "stamps", None)
    if not (hasattr(loop, "_observe") and isinstance(stamps, np.ndarray)
            and stamps.shape == (6,) and stamps.dtype == np.int64):
        return None
    sigs = [s for s in dk._observe_tick.signatures if len(s) in _RECORDERS]
    if not sigs:
        return None
    big = recorder_stamps(capacity)
    big[:6] = stamps
    loop._observe = _RECORDERS[len(sigs[-1])].compile(sigs[-1])
    loop.stamps = big
    return big


class _VenueInfo:
    """What ``daemon.demo.daemon_config`` reads of a DemoVenue."""

    def __init__(self, ports: dict[str, int], order_entry_port: int) -> None:
        self.ports = ports
        self.order_entry_port = order_entry_port


def child_main(spec_path: str) -> int:
    """The daemon process: run it, then write what it measured."""
    import msgspec

    from daemon.demo import daemon_config
    from daemon.process import run_daemon

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    out = Path(spec["out_prefix"])
    venue: Any = _VenueInfo(spec["ports"], int(spec["order_entry_port"]))
    cfg = daemon_config(venue)
    cfg = msgspec.structs.replace(
        cfg,
        process=msgspec.structs.replace(
            cfg.process, cpu_affinity=[int(spec["core"])], sched_fifo=bool(spec["fifo"]),
            keep_warm_us=(cfg.process.keep_warm_us if spec.get("keep_warm_us") is None
                          else int(spec["keep_warm_us"])),
            keep_warm_send=cfg.process.keep_warm_send and bool(spec["keep_warm_send"])),
        metrics=msgspec.structs.replace(cfg.metrics, enabled=False),
        control=msgspec.structs.replace(cfg.control, socket=str(out) + ".sock"))
    state: dict[str, Any] = {"ring": None}

    def on_ready(loop: Any) -> None:
        state["ring"] = install_recorder(loop, int(spec["ring"]))

    result = run_daemon(cfg, mode="demo", control=bool(spec["control_plane"]), journal="",
                        max_seconds=float(spec["seconds"]), on_ready=on_ready)
    loop = result.loop
    t = result.engine.core.trader[0]
    ring = state["ring"]
    raw = recorded(ring) if ring is not None else np.zeros((0, N_RAW), dtype=np.int64)
    n = int(raw.shape[0])
    hist = np.asarray(getattr(loop, "hist", np.zeros((0, 0))), dtype=np.int64).copy()
    np.save(str(out) + ".raw.npy", raw)
    np.save(str(out) + ".hist.npy", hist)
    ttt = loop.tick_to_trade_ns() if hasattr(loop, "tick_to_trade_ns") else np.zeros(0)
    np.save(str(out) + ".ttt.npy", np.asarray(ttt, dtype=np.int64))
    from daemon.kernels import STAGE_NAMES
    from daemon.telemetry import LATENCY_BUCKETS_NS

    summary = {
        "recorder": ring is not None,
        "ring_full": ring is not None and n >= (ring.size - RING_AT) // N_RAW,
        "ticks_recorded": n,
        "datagrams": int(loop.counters[3]),
        "ticks": int(loop.counters[1]),
        "model_runs": int(loop.counters[2]),
        "keep_warm_us": int(loop.keep_warm_ns // 1000),
        "warm_runs": int(loop.warm_runs),
        "send_warm_runs": int(getattr(loop.send_warmer, "runs", 0)),
        "send_warm_errors": int(getattr(loop.send_warmer, "errors", 0)),
        "send_warm_error": loop.send_warm_error,
        "loop_iterations": int(loop.counters[0]),
        "decides": int(t["n_decides"]),
        "orders_new": int(t["action_counts"][1]),
        "orders_cancel": int(t["action_counts"][2]),
        "orders_modify": int(t["action_counts"][3]),
        "fills": int(t["report_counts"][4]),
        "final_state": int(t["state"]),
        "stopped_clean": bool(loop.stopped_clean),
        "warmup_ms": int(result.warmup_ms),
        "tuning_warnings": list(getattr(result.tuning, "warnings", []) or []),
        "hist_stages": list(STAGE_NAMES),
        "hist_bounds_ns": [int(b) for b in LATENCY_BUCKETS_NS],
        "affinity": sorted(os.sched_getaffinity(0)),
        "md_status": _md_status(result.engine),
    }
    Path(str(out) + ".json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return 0


def _md_status(engine: Any) -> dict[str, Any]:
    """The sequencer's view at the end (why a daemon that never quoted did not)."""
    seq = getattr(engine, "sequencer", None)
    rows = getattr(engine, "seq_rows", None)
    if seq is None or rows is None:
        return {}
    from core.types import INST_STATE_NAMES, SQ_COUNTER_NAMES

    st = [int(seq.inst_status[r]) for r in rows]
    return {"instruments": [INST_STATE_NAMES.get(x & 0x0F, str(x)) for x in st],
            "counters": {n: int(c) for n, c in zip(SQ_COUNTER_NAMES, seq.counters[0],
                                                   strict=False) if c}}


# --------------------------------------------------------------------------
# the orchestrator
# --------------------------------------------------------------------------
def _pin(pid: int, core: int) -> list[int]:
    import psutil

    p = psutil.Process(pid)
    p.cpu_affinity([core])
    for th in p.threads():  # numba/onnxruntime may have started threads
        with contextlib.suppress(OSError):
            os.sched_setaffinity(th.id, [core])
    return list(p.cpu_affinity())


def _venue_toml(venue: Any, rate: float, seed: int, latency_file: str,
                venue_loop: str = "busy") -> str:
    from daemon.demo import venue_toml

    text = venue_toml(venue.ports, seed=seed, latency_file=latency_file, base_rate_hz=rate,
                      loop=venue_loop)
    marker = f"base_rate_hz = {rate}"
    if marker not in text:
        raise RuntimeError("the demo venue TOML changed: cannot set the arrival schedule")
    # Poisson arrivals: no Hawkes excitation, so the schedule is a fixed-rate open loop
    return text.replace(marker, marker + "\nhawkes_alpha = 0.0", 1)


def _cores(arg: str | None) -> tuple[int, int]:
    avail = sorted(os.sched_getaffinity(0))
    if arg:
        d, v = (int(x) for x in arg.split(","))
        return d, v
    if len(avail) >= 2:
        return avail[-1], avail[-2]
    return avail[0], avail[0]


def run(seconds: float, rate: float, out: Path, *, seed: int = 7, cores: str | None = None,
        control_plane: bool = False, fifo: bool = False, plot: bool = True,
        keep_raw: bool = False, timeout_s: float = 900.0,
        keep_warm_us: int | None = None, venue_loop: str = "busy",
        keep_warm_send: bool = True) -> dict[str, Any]:
    from adapters.venue.config import load_venue_config
    from adapters.venue.latency import read_latency_file
    from daemon.demo import DemoVenue, demo_credentials

    started = now_iso()
    d_core, v_core = _cores(cores)
    env = dict(os.environ)
    env.update(demo_credentials())
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p)
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nanoarb-t2t-") as tmp:
        lat_file = str(Path(tmp) / "latency.npy")
        venue = DemoVenue(tmp, env=env, seed=seed, latency_file=lat_file, base_rate_hz=rate)
        venue.config_path.write_text(_venue_toml(venue, rate, seed, lat_file, venue_loop),
                                     encoding="utf-8")
        vcfg = load_venue_config(venue.config_path)
        if vcfg.flow.hawkes_alpha != 0.0 or vcfg.venue.loop != venue_loop:
            raise RuntimeError("the venue config did not take the harness's settings")
        child: subprocess.Popen[bytes] | None = None
        try:
            print(f"[tick_to_trade] venue starting (core {v_core}; first run compiles)",
                  file=sys.stderr, flush=True)
            venue.start()
            assert venue.proc is not None
            v_aff = _pin(venue.proc.pid, v_core)
            prefix = Path(tmp) / "daemon"
            spec = {"ports": venue.ports, "order_entry_port": venue.order_entry_port,
                    "core": d_core, "fifo": fifo, "control_plane": control_plane,
                    "seconds": seconds, "ring": int(max(seconds * rate * 8, 1 << 16)),
                    "keep_warm_us": keep_warm_us, "keep_warm_send": keep_warm_send,
                    "out_prefix": str(prefix)}
            spec_path = Path(tmp) / "spec.json"
            spec_path.write_text(json.dumps(spec), encoding="utf-8")
            print(f"[tick_to_trade] daemon starting (core {d_core}), {seconds} s at "
                  f"{rate} arrivals/s", file=sys.stderr, flush=True)
            with open(Path(tmp) / "daemon.log", "wb") as log:
                child = subprocess.Popen(
                    [sys.executable, "-m", "perf.tick_to_trade", "--child", str(spec_path)],
                    env=env, cwd=repo, stdout=log, stderr=subprocess.STDOUT)
                rc = child.wait(timeout=timeout_s + seconds)
            if rc != 0:
                raise RuntimeError(f"the daemon exited with {rc}: "
                                   f"{(Path(tmp) / 'daemon.log').read_text()[-3000:]}")
        finally:
            if child is not None and child.poll() is None:
                child.kill()
                child.wait()
            venue.stop()
            out.mkdir(parents=True, exist_ok=True)
            for name in ("daemon.log", "venue.stderr"):  # kept for post-mortems
                src = Path(tmp) / name
                if src.exists():
                    (out / f"tick_to_trade_{name.replace('.', '_')}.txt").write_text(
                        src.read_text(encoding="utf-8", errors="replace")[-200_000:],
                        encoding="utf-8")
        load = os.getloadavg()
        dsum = json.loads(Path(str(prefix) + ".json").read_text(encoding="utf-8"))
        raw = np.load(str(prefix) + ".raw.npy")
        hist = np.load(str(prefix) + ".hist.npy")
        ttt = np.load(str(prefix) + ".ttt.npy")
        rows = read_latency_file(lat_file) if Path(lat_file).exists() else None
        if keep_raw:  # post-mortems: the venue's latency record, the daemon's raw ticks
            if rows is not None:
                np.save(out / "tick_to_trade_venue_latency.npy", rows)
            np.save(out / "tick_to_trade_daemon_ticks.npy", raw)
    if rows is None:
        notes.append("the venue wrote no latency record: no wire-to-wire figures")
        rows = np.zeros(0, dtype=[("wire_to_wire_ns", "i8"), ("trigger_seq", "u4"),
                                  ("recv_ns", "i8")])
    samples = stage_samples(raw)
    if dsum["orders_new"] + dsum["orders_modify"] + dsum["orders_cancel"] == 0:
        notes.append(f"the daemon sent no order (final trader state {dsum['final_state']}, "
                     f"market data {dsum.get('md_status', {}).get('instruments')}): "
                     "nothing to measure")
    stats: dict[str, dict[str, float]] = {}
    if not dsum["recorder"]:
        notes.append("raw tick ring not installed (the hot loop changed): stages from the "
                     "daemon's histograms (bucket upper bounds); in_process is the daemon's "
                     "own tick-to-trade samples (the loop has the datagram -> sent), WITHOUT "
                     "the receive stage")
        bounds = np.asarray(dsum["hist_bounds_ns"], dtype=np.int64)
        for i, name in enumerate(dsum["hist_stages"]):
            if i < hist.shape[0]:
                stats[name] = hist_percentiles(hist[i], bounds)
        stats["in_process"] = percentiles_us(ttt)
    else:
        ordered = ("in_process", *STAGES, "loop_to_send")
        stats = {name: percentiles_us(samples[name]) for name in ordered}
        if samples["receive"].size < samples["loop_to_send"].size:
            notes.append("some ticks had no kernel receive timestamp: in_process counts "
                         "only those that had one")
    wire_first = wire_samples(rows, first_per_trigger=True)
    wire_all = wire_samples(rows, first_per_trigger=False)
    suspect = int((wire_all > 1_000_000_000).sum())
    if suspect:
        notes.append(f"{suspect} order(s) more than 1 s after their trigger packet "
                     "(the daemon names only incremental packets as triggers): kept in "
                     "the figures")
    stats["wire_to_wire"] = percentiles_us(wire_first)
    stats["wire_to_wire_every_order"] = percentiles_us(wire_all)
    figures = figures_of(stats)
    table = text_table(stats)
    measured = [s for s in STAGES if stats.get(s, {}).get("count")]
    worst = max(measured, key=lambda s: stats[s]["p50"]) if measured else "none measured"
    header = (f"tick-to-trade: {seconds} s, {rate} arrivals/s (Poisson, open loop), daemon "
              f"core {d_core}, venue core {v_core} ({venue_loop} loop), keep-warm "
              f"{dsum.get('keep_warm_us', 0)} us (send path "
              f"{'too' if dsum.get('send_warm_runs') else 'not'}), load average {load[0]:.2f}\n"
              f"largest stage at p50: {worst}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "tick_to_trade.txt").write_text(header + "\n" + table + "\n", encoding="utf-8")
    plot_path = None
    if plot and dsum["recorder"]:
        try:
            from daemon.plots import latency_plot

            shown = {k: samples[k] for k in ("in_process", *STAGES)}
            shown["wire_to_wire"] = wire_first
            plot_path = str(latency_plot(
                shown, out / "tick_to_trade.png",
                title=f"tick-to-trade ({seconds:g} s at {rate:g}/s, loopback, 2 processes)",
                targets_us={"p50 target 10": 10.0, "p99 target 25": 25.0}))
        except ImportError:
            notes.append("matplotlib not installed (the perf extra): no plot")
    path = write_result(
        "tick_to_trade", figures, out, started=started, stages=stats,
        largest_stage_p50=worst, daemon=dsum,
        venue=venue.summary,
        setup={"seconds": seconds, "rate_per_s": rate, "seed": seed, "daemon_core": d_core,
               "venue_core": v_core, "venue_affinity": v_aff, "control_plane": control_plane,
               "sched_fifo": fifo, "load_average": list(load), "arrivals": "poisson",
               "venue_loop": venue_loop},
        wire_orders=int(wire_all.size), wire_suspect_over_1s=suspect, notes=notes,
        table=table.splitlines(), plot=plot_path)
    print(header)
    print(table)
    for n in notes:
        print("note:", n)
    print(path)
    return {"path": str(path), "stats": stats, "figures": figures}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--seconds", type=float, default=None,
                   help=f"measurement time (default {DEFAULT_SECONDS:g}, quick {QUICK_SECONDS:g})")
    p.add_argument("--rate", type=float, default=None,
                   help=f"venue arrivals per second (default {DEFAULT_RATE:g})")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--cores", default=None, metavar="DAEMON,VENUE",
                   help="CPU of each process (default: the last two this process may use)")
    p.add_argument("--control-plane", action="store_true",
                   help="also run the daemon's control-plane process")
    p.add_argument("--fifo", action="store_true", help="SCHED_FIFO for the daemon")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--keep-warm-us", type=int, default=None, metavar="US",
                   help="the daemon's process.keep_warm_us (default: the config's; 0: off)")
    p.add_argument("--keep-raw", action="store_true",
                   help="also write the raw daemon ticks and the venue's latency record (.npy)")
    p.add_argument("--no-keep-warm-send", action="store_true",
                   help="keep-warm without the send path (process.keep_warm_send = false)")
    p.add_argument("--venue-loop", choices=("busy", "wait"), default="busy",
                   help="the venue spins (default) or sleeps in select until its next timer "
                        "or an order: frees the venue's core, e.g. to see what a spinning "
                        "neighbour costs the daemon")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child_main(args.child)
    seconds = args.seconds or (QUICK_SECONDS if args.quick else DEFAULT_SECONDS)
    rate = args.rate or (QUICK_RATE if args.quick else DEFAULT_RATE)
    t0 = time.monotonic()
    run(seconds, rate, Path(args.out), seed=args.seed, cores=args.cores,
        control_plane=args.control_plane, fifo=args.fifo, plot=not args.no_plot,
        keep_raw=args.keep_raw, keep_warm_us=args.keep_warm_us, venue_loop=args.venue_loop,
        keep_warm_send=not args.no_keep_warm_send)
    print(f"[tick_to_trade] done in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
