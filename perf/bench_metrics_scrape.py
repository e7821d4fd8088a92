"""Does scraping the metrics endpoint slow the hot loop? (issue 8: p99 moves by <= 10%).

Set-up: the daemon's hot loop (daemon.hotloop.HotLoop) in this process, busy-polling a
synthetic market (core.synthetic events released on a real-time schedule at
``--rate`` events/s) through the books, the model, the trading core and the
in-process simulated venue; the control plane as its real child process (uvloop,
prometheus-client on 127.0.0.1) reading the shared block. A scraper in a third
process (like Prometheus: never in the daemon) GETs /metrics every 100 ms in the
second phase only. As deployed, the hot loop is pinned to a core of its own and the
control plane and the scraper to the others (``daemon.process.keep_off_hot_cores``).

The tick time is measured by the hot loop itself: datagram in hand -> decided and
sent, every tick (HotLoop.tick_ns). Many short phases alternate (quiet, scraped, quiet,
scraped, ...; default 30 pairs of 1 s) so that drifts of a shared machine hit both
alike; one scraper process runs throughout, SIGSTOPped in the quiet phases.

Figures: ``hot_loop_tick_p99_us_quiet``, ``hot_loop_tick_p99_us_scraped`` and
``scrape_p99_ratio`` (scraped / quiet; target <= 1.10), with p50s beside them.
``scrape_p99_ratio_median_round``: the median of the per-round ratios.
``quiet_p99_aa_ratio``: quiet phases of odd rounds against those of even rounds, no
scrape in either: the figure's own noise floor on this machine (the scrape ratio
means something only where it stands out of that).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import msgspec
import numpy as np

from perf._common import base_parser, figure, now_iso, percentiles_us, write_result

TARGET_RATIO = 1.10

SCRAPER = r"""
import sys, time, urllib.request
url, period = sys.argv[1], float(sys.argv[2])
n = 0
nxt = time.monotonic()
while True:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            r.read()
        n += 1
    except OSError:
        pass
    nxt += period
    time.sleep(max(0.0, nxt - time.monotonic()))
"""


class PacedSource:
    """Release the rows of an MdSource on a real-time schedule (``rate`` polls per s)."""

    def __init__(self, inner: Any, rate: float) -> None:
        self.inner = inner
        self.period_ns = int(1e9 / rate)
        self.next_ns = 0

    def open(self) -> None:
        self.inner.open()
        self.next_ns = time.monotonic_ns()

    def close(self) -> None:
        self.inner.close()

    def poll(self, rx: Any) -> int:
        now = time.monotonic_ns()
        if now < self.next_ns:
            return 0
        self.next_ns += self.period_ns
        if now - self.next_ns > 50 * self.period_ns:  # fell behind: do not burst
            self.next_ns = now
        return int(self.inner.poll(rx))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(rate: float, phase_s: float, rounds: int) -> dict[str, Any]:
    from adapters.clock import MonotonicClock
    from daemon.config import demo_config
    from daemon.engine import build
    from daemon.hotloop import HotLoop, LoopParts, Shared
    from daemon.metrics import Publisher, daemon_spec
    from daemon.process import keep_off_hot_cores, start_control_plane
    from daemon.tuning import freeze_gc

    port = _free_port()
    base = demo_config()
    # as deployed: the hot loop on a core of its own (the last one), the control plane
    # and the scraper kept off it (on a one-CPU machine everything shares it)
    cpus = sorted(os.sched_getaffinity(0))
    hot = [cpus[-1]] if len(cpus) > 1 else []
    cfg = msgspec.structs.replace(
        base, metrics=msgspec.structs.replace(base.metrics, enabled=True, port=port),
        risk=msgspec.structs.replace(base.risk, start_active=True),
        process=msgspec.structs.replace(base.process, cpu_affinity=hot))
    n_events = int(rate * phase_s * 2 * rounds + rate * 5)
    eng = build(cfg, mode="replay", data=[f"synthetic:{n_events}"], clock=MonotonicClock())
    spec = daemon_spec(eng.symbols)
    block = spec.create()
    tmp = tempfile.mkdtemp(prefix="nanoarb-bench-")
    cp = start_control_plane(spec, block, cfg, journal="", control_socket="", tmpdir=tmp)
    if hot:
        os.sched_setaffinity(0, hot)
    source = PacedSource(eng.source, rate)
    parts = LoopParts(clock=eng.clock, source=source, market=eng.market, core=eng.core,
                      gateway=eng.gateway, traded_rows=eng.traded_rows, runner=eng.runner,
                      sim=eng.sim, replay=False)
    loop = HotLoop(parts, Shared(block, spec))
    loop.publisher = Publisher(block, None, eng.market, eng.core, loop.counters,
                               loop.md_packets, eng.runner.ctl if eng.runner else None)
    loop.warm_up()
    eng.core.finish_startup()
    eng.gateway.connect()
    loop.resume()
    source.open()
    freeze_gc()
    url = f"http://127.0.0.1:{port}/metrics"
    quiet: list[np.ndarray] = []
    scraped: list[np.ndarray] = []
    scrapes = [0]
    state: dict[str, Any] = {"phase": -1, "until": time.monotonic() + 2.0}

    # one scraper for the whole run, stopped (SIGSTOP: it costs nothing) in quiet
    # phases and continued in scraped ones: no interpreter start-up inside a phase
    scraper = subprocess.Popen([sys.executable, "-c", SCRAPER, url, "0.1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    keep_off_hot_cores(scraper.pid, hot)

    def controller() -> bool:
        now = time.monotonic()
        if now < state["until"]:
            return False
        ph = state["phase"]
        if ph >= 0:  # close the phase: keep its samples
            (scraped if ph % 2 else quiet).append(loop.tick_ns())
            if ph % 2:
                scrapes[0] += int(phase_s / 0.1)
        ph += 1
        if ph >= 2 * rounds:
            return True
        os.kill(scraper.pid, signal.SIGCONT if ph % 2 else signal.SIGSTOP)
        loop.tick_samples[-1] = 0
        state["phase"] = ph
        state["until"] = time.monotonic() + phase_s
        return False

    try:
        loop.run(stop_when=controller)
    finally:
        scraper.kill()  # SIGKILL ends a SIGSTOPped process too
        scraper.wait()
        block["heartbeat"][3] = -1
        cp.wait(timeout=10)
        eng.close()
        block.close()  # unlinks the segment (it is not in the resource tracker)
    q = np.concatenate(quiet) if quiet else np.zeros(0, np.int64)
    s = np.concatenate(scraped) if scraped else np.zeros(0, np.int64)
    # the measurement's own noise floor: quiet phases of even rounds against those of
    # odd rounds (an A/A comparison: no scrape in either)
    qa = np.concatenate(quiet[0::2]) if quiet else q
    qb = np.concatenate(quiet[1::2]) if len(quiet) > 1 else q
    per_round = [float(np.percentile(sc, 99) / np.percentile(qu, 99))
                 for qu, sc in zip(quiet, scraped, strict=False) if qu.size and sc.size]
    return {"quiet": percentiles_us(q), "scraped": percentiles_us(s),
            "quiet_even_rounds": percentiles_us(qa), "quiet_odd_rounds": percentiles_us(qb),
            "round_p99_ratios": per_round,
            "scrapes": scrapes[0], "hot_loop_cpus": hot, "rate": rate, "phase_s": phase_s,
            "rounds": rounds,
            "fills": int(eng.core.trader[0]["report_counts"][4])}


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=5000.0, help="market events per second")
    p.add_argument("--phase", type=float, default=1.0, help="seconds per phase")
    p.add_argument("--rounds", type=int, default=30, help="quiet + scraped pairs")
    a = p.parse_args(argv)
    from daemon.numba_cache import use_source_cache

    use_source_cache()  # the daemon's kernel cache (before numba is imported)
    started = now_iso()
    if a.quick:
        a.phase, a.rounds = 0.5, 6
    r = run(a.rate, a.phase, a.rounds)
    qp99, sp99 = r["quiet"]["p99"], r["scraped"]["p99"]
    ratio = sp99 / qp99 if qp99 > 0 else float("nan")
    figs = [
        figure("hot_loop_tick_p50_us_quiet", r["quiet"]["p50"], "us", better="lower"),
        figure("hot_loop_tick_p50_us_scraped", r["scraped"]["p50"], "us", better="lower"),
        figure("hot_loop_tick_p99_us_quiet", qp99, "us", better="lower"),
        figure("hot_loop_tick_p99_us_scraped", sp99, "us", better="lower"),
        figure("scrape_p99_ratio", ratio, "x", TARGET_RATIO, better="lower"),
        figure("scrape_p99_ratio_median_round", float(np.median(r["round_p99_ratios"]))
               if r["round_p99_ratios"] else float("nan"), "x", better="lower"),
        figure("quiet_p99_aa_ratio", r["quiet_odd_rounds"]["p99"] / r["quiet_even_rounds"]["p99"]
               if r["quiet_even_rounds"]["p99"] > 0 else float("nan"), "x", better="lower"),
    ]
    path = write_result("metrics_scrape", figs, a.out, started, detail=r,
                        pid=os.getpid())
    for f in figs:
        print(f"{f['name']:32s} {f['value']:10.3f} {f['unit']}"
              + (f"  (target {f['target']}, met {f['met']})" if f["target"] else ""))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
