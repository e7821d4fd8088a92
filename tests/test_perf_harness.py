"""The perf harness: perf.all over a tiny benchmark directory, the synthetic MDP stream, the
batched backtest glue against the per-packet one, and the tick-to-trade statistics."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

FAKE_OK = '''
from perf._common import base_parser, figure, write_result
args = base_parser("ok").parse_args()
write_result("fake_ok", [
    figure("fast_p50_us", 3.0, "us", 10.0, "lower"),
    figure("slow_rate", 5.0, "1/s", 50.0, "higher"),
    figure("info_only", 1.0 if args.quick else 0.0, "x"),
], args.out)
'''
FAKE_FAIL = '''
import sys
print("something broke", file=sys.stderr)
sys.exit(3)
'''
FAKE_SILENT = '''
from perf._common import base_parser
base_parser("silent").parse_args()
'''
FAKE_SLOW = '''
import time
time.sleep(60)
'''
FAKE_HARNESS = '''
from perf._common import base_parser, figure, write_result
args = base_parser("harness").parse_args()
write_result("tick_to_trade", [figure("in_process_p50_us", 12.0, "us", 10.0, "lower")], args.out)
'''


@pytest.fixture()
def fake_bench_dir(tmp_path: Path) -> Path:
    d = tmp_path / "benches"
    d.mkdir()
    for name, body in (("bench_ok", FAKE_OK), ("bench_fail", FAKE_FAIL),
                       ("bench_silent", FAKE_SILENT), ("bench_slow", FAKE_SLOW),
                       ("tick_to_trade", FAKE_HARNESS), ("helper_not_a_bench", FAKE_FAIL)):
        (d / f"{name}.py").write_text(textwrap.dedent(body), encoding="utf-8")
    return d


def test_perf_all_summary(fake_bench_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    out.mkdir()
    # a stale result from an earlier run must not be reported as this run's
    (out / "stale.json").write_text(json.dumps({"benchmark": "stale", "figures": [
        {"name": "old", "value": 1.0, "unit": "x", "target": None, "better": "higher",
         "met": None}]}), encoding="utf-8")
    import os
    os.utime(out / "stale.json", (1_000_000, 1_000_000))
    r = subprocess.run([sys.executable, "-m", "perf.all", "--out", str(out), "--quick",
                        "--bench-dir", str(fake_bench_dir), "--timeout", "10"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr  # one failed: exit 1, the others still ran
    doc = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    # same shape as every result file
    assert doc["benchmark"] == "summary"
    for key in ("python", "cpu", "started", "figures"):
        assert key in doc
    runs = {r["module"]: r for r in doc["runs"]}
    assert list(runs) == ["bench_fail", "bench_ok", "bench_silent", "bench_slow",
                          "tick_to_trade"]  # sorted benches, then the harness; no helper
    assert runs["bench_ok"]["status"] == "ok" and runs["bench_ok"]["results"] == ["fake_ok.json"]
    assert runs["bench_fail"]["status"] == "failed" and runs["bench_fail"]["returncode"] == 3
    assert "something broke" in runs["bench_fail"]["output_tail"]
    assert runs["bench_silent"]["status"] == "no_result"
    assert runs["bench_slow"]["status"] == "timeout"
    assert runs["tick_to_trade"]["status"] == "ok"
    assert (out / runs["bench_fail"]["log"]).is_file()
    figs = {f["name"]: f for f in doc["figures"]}
    assert set(figs) == {"fast_p50_us", "slow_rate", "info_only", "in_process_p50_us"}
    for f in doc["figures"]:
        for key in ("name", "value", "unit", "target", "better", "met", "source"):
            assert key in f
    assert figs["fast_p50_us"]["met"] is True and figs["fast_p50_us"]["source"] == "fake_ok"
    assert figs["slow_rate"]["met"] is False
    assert figs["info_only"]["met"] is None and figs["info_only"]["value"] == 1.0  # --quick
    assert figs["in_process_p50_us"]["source"] == "tick_to_trade"
    assert not figs["in_process_p50_us"]["met"]
    assert doc["counts"] == {"benchmarks": 5, "benchmarks_ok": 2, "figures": 4, "met": 1,
                             "missed": 2, "no_target": 1}
    assert "fast_p50_us" in r.stdout  # the table


def test_perf_all_only_and_skip(fake_bench_dir: Path, tmp_path: Path) -> None:
    from perf.all import run_all

    out = tmp_path / "r"
    _, runs = run_all(out, quick=True, only=["ok", "tick_to_trade"], skip=["tick_to_trade"],
                      bench_dir=fake_bench_dir, echo=False)
    assert [r["module"] for r in runs] == ["bench_ok"]
    assert runs[0]["status"] == "ok"


def test_discover_real_perf_dir() -> None:
    from perf.all import discover

    names = [p.stem for p in discover()]
    assert "bench_backtest" in names
    assert names == sorted(n for n in names if n.startswith("bench_")) + (
        ["tick_to_trade"] if "tick_to_trade" in names else [])


# --------------------------------------------------------------------------
# the synthetic MDP 3.0 stream
# --------------------------------------------------------------------------
def test_stream_decodes_to_the_rows_encoded() -> None:
    from core.sbe.mdp3 import Mdp3Decoder
    from perf._mdp_stream import synthetic_stream

    s = synthetic_stream(3000, seed=11)
    dec = Mdp3Decoder()
    rows, headers = dec.decode_stream(s.buf, s.offsets)
    assert not dec.drops.any()
    src = s.market.events
    assert rows.size == src.size
    for name in src.dtype.names or ():
        assert np.array_equal(rows[name], src[name]), name
    assert np.array_equal(headers["msg_seq"], np.unique(src["msg_seq"]))
    assert s.n_packets == s.market.n_events  # one packet per match event


# --------------------------------------------------------------------------
# the backtest: batched glue == per-packet glue
# --------------------------------------------------------------------------
def test_batched_replay_equals_per_packet_replay() -> None:
    from perf._mdp_stream import synthetic_stream
    from perf.bench_backtest import backtest_report, make_parts, run_batched, run_per_packet

    s = synthetic_stream(6000, seed=5)
    a = make_parts(s)
    ra = run_batched(a, chunk_packets=1024)  # several chunks: state carried across them
    b = make_parts(s)
    rb = run_per_packet(b)
    assert ra.rows == rb.rows == s.n_rows
    assert ra.decides == rb.decides and ra.actions == rb.actions
    assert len(ra.fills) > 10
    for name in ("cl_ord_id", "price", "qty", "side", "transact_ns", "fee"):
        assert np.array_equal(ra.fills[name], rb.fills[name]), name
    ta, tb = a.core.trader[0], b.core.trader[0]
    assert ta["net_pnl"] == tb["net_pnl"]
    assert np.array_equal(ra.curve_pnl, rb.curve_pnl)
    assert np.array_equal(ra.curve_pos, rb.curve_pos)
    rep = backtest_report(a, ra)
    assert rep["fills"] == len(ra.fills)
    assert rep["total_pnl"] == float(ta["net_pnl"])  # the curve ends on the final state
    json.dumps(rep)  # JSON-able


# --------------------------------------------------------------------------
# tick-to-trade analysis
# --------------------------------------------------------------------------
def _raw(rows: list[tuple[int, ...]]) -> np.ndarray:
    from perf.tick_to_trade import N_RAW

    return np.array(rows, dtype=np.int64).reshape(-1, N_RAW)


def test_stage_samples_reference() -> None:
    from perf.tick_to_trade import stage_samples

    raw = _raw([
        # recv,  t0,   t1,   t2,   t3,   t4, sent
        (4000, 1000, 3000, 6000, 7000, 11000, 2),
        (-1, 20000, 21000, -1, 23000, 26000, 1),  # no kernel timestamp, no model run
        (900, 30000, 30500, 31000, 31200, 31300, 0),  # sent nothing: not a tick-to-trade
    ])
    s = stage_samples(raw)
    assert list(s["receive"]) == [4000]
    assert list(s["decode_book_features"]) == [2000, 1000]
    assert list(s["model"]) == [3000]
    assert list(s["strategy_risk"]) == [1000, 2000]  # from the model's end, else the decode's
    assert list(s["encode_send"]) == [4000, 3000]
    assert list(s["loop_to_send"]) == [10000, 6000]
    assert list(s["in_process"]) == [4000 + 10000]  # kernel receive -> sent, where known
    # the stages of a tick add up to the loop's part of it
    full = s["decode_book_features"][0] + s["model"][0] + s["strategy_risk"][0] + \
        s["encode_send"][0]
    assert full == s["loop_to_send"][0]


def test_wire_samples_first_per_trigger() -> None:
    from adapters.venue.latency import LATENCY_ROW
    from perf.tick_to_trade import wire_samples

    rows = np.zeros(6, dtype=LATENCY_ROW)
    # (trigger, recv, wire): trigger 7 has two orders, the later one listed first
    for i, (trig, recv, w) in enumerate([(7, 500, 40), (7, 480, 20), (9, 900, 15),
                                          (0, 950, -1), (11, 990, 33), (12, 999, -1)]):
        rows[i]["trigger_seq"] = trig
        rows[i]["recv_ns"] = recv
        rows[i]["wire_to_wire_ns"] = w
    assert sorted(wire_samples(rows)) == [15, 20, 33]
    assert sorted(wire_samples(rows, first_per_trigger=False)) == [15, 20, 33, 40]
    assert wire_samples(rows[:0]).size == 0


def test_hist_percentiles_reference() -> None:
    from perf.tick_to_trade import hist_percentiles

    bounds = np.array([1000, 2000, 5000], dtype=np.int64)
    counts = np.array([50, 40, 9, 1, 100, 0], dtype=np.int64)  # + Inf, count, sum columns
    p = hist_percentiles(counts, bounds)
    assert p["count"] == 100
    assert (p["p50"], p["p90"], p["p99"]) == (1.0, 2.0, 5.0)
    assert p["p999"] == float("inf") and p["max"] == float("inf")
    assert hist_percentiles(np.zeros(6, np.int64), bounds) == {"count": 0}


def test_figures_have_targets() -> None:
    from perf.tick_to_trade import figures_of

    ip = {"p50": 9.0, "p90": 12.0, "p99": 30.0, "p999": 50.0, "max": 90.0, "count": 1000}
    stats: dict[str, dict[str, float]] = {"in_process": ip, "wire_to_wire": {"count": 0}}
    figs = {f["name"]: f for f in figures_of(stats)}
    assert figs["in_process_p50_us"]["met"] is True and figs["in_process_p50_us"]["target"] == 10
    assert figs["in_process_p99_us"]["met"] is False and figs["in_process_p99_us"]["target"] == 25
    assert figs["in_process_p999_us"]["target"] is None
    assert np.isnan(figs["wire_to_wire_p50_us"]["value"])  # no sample: no number, not met
    assert figs["wire_to_wire_p50_us"]["met"] is False
    assert figs["wire_to_wire_p99_us"]["target"] == 40


def test_recorder_keeps_the_daemon_observer() -> None:
    import daemon.kernels as dk
    from daemon.telemetry import HIST_WIDTH, LATENCY_BUCKETS_NS
    from perf.tick_to_trade import _RECORDERS, N_RAW, R_SENT, recorded, recorder_stamps

    rng = np.random.default_rng(3)
    bounds = LATENCY_BUCKETS_NS.copy()
    # the observer's own arity: (hist, bounds, stamps, <sample rings...>, sent)
    n_args = dk._observe_tick.py_func.__code__.co_argcount
    assert n_args in _RECORDERS, "the daemon's observer changed: add a recorder for it"
    _observe_and_record: Any = _RECORDERS[n_args]
    observe_tick: Any = dk._observe_tick
    n_extra = n_args - 4
    h_ref = np.zeros((dk.N_STAGES, HIST_WIDTH), np.int64)
    h_got = np.zeros_like(h_ref)
    rings_ref = [np.zeros(17, np.int64) for _ in range(n_extra)]
    rings_got = [np.zeros(17, np.int64) for _ in range(n_extra)]
    big = recorder_stamps(5)  # room for 5 ticks
    seen = []
    for i in range(8):
        t0 = int(rng.integers(0, 10**9))
        st = np.array([int(rng.integers(-1, 30_000)), t0, t0 + 2000, -1 if i % 3 else t0 + 5000,
                       t0 + 7000, t0 + 9000 + i], np.int64)
        sent = i % 2
        observe_tick(h_ref, bounds, st, *rings_ref, sent)
        big[:6] = st
        _observe_and_record(h_got, bounds, big, *rings_got, sent)
        seen.append((st.copy(), sent))
    assert np.array_equal(h_got, h_ref)  # the daemon's histograms and rings untouched
    for a, b in zip(rings_got, rings_ref, strict=True):
        assert np.array_equal(a, b)
    raw = recorded(big)
    assert raw.shape == (5, N_RAW)  # full: the first five ticks kept, the rest dropped
    for j in range(5):
        st, sent = seen[j]
        assert list(raw[j, :6]) == list(st) and raw[j, R_SENT] == sent
