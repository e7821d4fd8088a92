"""End to end, real processes: the daemon (`nanoarb run`) against the exchange simulator.

One venue and one daemon per test, on free loopback ports (the harness is
tests/helpers/e2e.py, shared with test_e2e_venue_session.py). The daemon reports READY
through a NOTIFY_SOCKET the test listens on; the venue's control endpoint and its
latency record are the exchange's truth (working orders, request receive times on
CLOCK_MONOTONIC, the clock the test reads too).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from daemon.config import JournalConfig, MetricsConfig, demo_config
from daemon.demo import DemoVenue, config_toml, daemon_config, demo_credentials
from tests.helpers.e2e import (
    SESSION,
    START_TIMEOUT,
    Daemon,
    Notify,
    free_tcp_port,
    our_orders,
    until,
)

pytestmark = pytest.mark.e2e

TEMPLATE_CANCEL, TEMPLATE_MASS_ACTION = 516, 529

# The venue with a per-session fill tally on its control endpoint ("fills"): the
# exchange's own record of what each session bought and sold.
VENUE_WITH_FILLS = r"""
import json, sys
from adapters.venue.config import load_venue_config
from adapters.venue.venue import Venue
from core.types import MX_FILL

venue = Venue(load_venue_config(sys.argv[1]))
h = venue.handler
fills = []
on_execs, control = h.on_execs, venue.control

def tally(execs):
    for e in execs:
        lo = h.orders.get(int(e["order_id"]))
        if int(e["exec_type"]) == MX_FILL and lo is not None:
            fills.append([lo.session[0], lo.state.security_id, int(e["side"]),
                          int(e["last_qty"]), int(e["last_px"])])
    on_execs(execs)

def control2(req):
    if req.get("cmd") == "fills":
        return {"ok": True, "fills": fills[int(req.get("since", 0)):][:400],
                "total": len(fills)}
    return control(req)

h.on_execs = tally
venue.exchange.handler = h
venue.control = control2
venue.install_signal_handlers()
print(json.dumps(venue.start()), flush=True)
print(json.dumps({"event": "stopped", **venue.run(None)}, default=str), flush=True)
"""


@pytest.fixture
def env() -> dict[str, str]:
    return dict(os.environ, **demo_credentials())


def test_daemon_trades_kill_switch_resume_and_stops(tmp_path: Path, env: dict[str, str]) -> None:
    venue = DemoVenue(tmp_path / "venue", env=env, latency_file=str(tmp_path / "lat.npy"))
    venue.start(START_TIMEOUT)
    d = Daemon(tmp_path, venue, env)
    try:
        d.start()  # READY=1 arrived on our NOTIFY_SOCKET
        until(lambda: our_orders(venue), 60, 0.05, "our quotes at the venue")
        st = d.ctl("status")
        assert st["ok"] and st["nanoarb_trader_state"] == 2  # ACTIVE (start_active, clean)
        assert d.metric("nanoarb_orders_total", '{action="new"}') > 0
        assert d.metric("nanoarb_md_packets_total", '{role="incremental"}') > 0
        assert d.metric("nanoarb_feed_events_total", '{event="delivered"}') > 0
        assert "nanoarb_stage_latency_seconds_bucket" in d.metrics()

        # SIGUSR1: kill switch. Every order gone from the venue; HALTED, still up.
        t_sig = time.monotonic_ns()
        os.kill(d.pid, signal.SIGUSR1)
        until(lambda: not our_orders(venue), 5, 0.001, "no working order at the venue")
        st = until(lambda: (s := d.ctl("status"))["nanoarb_kill_switch"] == 1 and s, 5)
        assert st["nanoarb_trader_state"] == 1  # HALTED
        time.sleep(0.5)
        assert not our_orders(venue)  # nothing new while halted
        assert d.proc is not None and d.proc.poll() is None
        t_resume = time.monotonic_ns()

        # SIGUSR2: resume; quoting again
        os.kill(d.pid, signal.SIGUSR2)
        until(lambda: our_orders(venue), 30, 0.02, "quotes after resume")
        assert d.ctl("status")["nanoarb_trader_state"] == 2

        # ctl halt / resume go through the same paths
        assert d.ctl("halt")["ok"]
        until(lambda: not our_orders(venue), 5, 0.005, "halted by ctl")
        assert d.ctl("resume")["ok"]

        # SIGTERM: graceful stop, everything cancelled, exit 0
        os.kill(d.pid, signal.SIGTERM)
        assert d.wait(60) == 0, d.log.read_text()[-3000:]
        assert not our_orders(venue)
        assert d.notify is not None
        d.notify.wait_for("STOPPING=1", 5)
    finally:
        d.kill()
        venue.stop()
    # the venue's record: every request after the signal arrived within 10 ms of it.
    # An order decided just before the signal may still be in flight (TCP keeps the
    # order): after the first cancel only cancels follow, until the resume.
    rec = np.load(tmp_path / "lat.npy")
    after = rec[(rec["recv_ns"] >= t_sig) & (rec["recv_ns"] < t_resume)]
    templates = after["template_id"].tolist()
    kill = {TEMPLATE_CANCEL, TEMPLATE_MASS_ACTION}
    first_cancel = next(i for i, t in enumerate(templates) if t in kill)
    assert set(templates[first_cancel:]) <= kill, templates
    assert int(after["recv_ns"].max()) - t_sig < 10_000_000
    # the journal (fsync'd by the control plane) holds the run, ended cleanly
    from daemon.journal import read_journal, scan_journal, trading_day

    js = scan_journal(read_journal(d.journal), trading_day(time.time_ns()))
    assert js.last_session_clean and js.actions > 0 and not js.working


def test_bad_config_exits_nonzero_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('mode = "live"\n[risk]\nmax_position = "ten"\n')
    r = subprocess.run([sys.executable, "-m", "daemon.cli", "run", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "risk.max_position" in r.stderr


def _avg_cost_realised(fills: list[list[int]], tick: int, tick_value: float) -> tuple[int, float]:
    pos, cost, realised = 0, 0.0, 0.0
    for _sess, _sid, side, qty, px in fills:
        q = qty if side == 1 else -qty
        p = px / tick
        if pos == 0 or (pos > 0) == (q > 0):
            cost += q * p
            pos += q
        else:
            closing = min(abs(q), abs(pos))
            sgn = 1 if pos > 0 else -1
            avg = cost / pos
            realised += sgn * closing * (p - avg) * tick_value
            pos -= sgn * closing
            rest = abs(q) - closing
            cost = avg * pos if pos else 0.0
            if pos == 0 and rest:
                pos = -sgn * rest
                cost = pos * p
    return pos, realised


def test_kill_9_then_restart_restores_positions_and_pnl(tmp_path: Path,
                                                        env: dict[str, str]) -> None:
    script = tmp_path / "venue_with_fills.py"
    script.write_text(VENUE_WITH_FILLS)
    venue = DemoVenue(tmp_path / "venue", env=env, base_rate_hz=400.0)
    # the same venue process, with the fill tally
    orig_start = venue.start

    def start_wrapped(timeout_s: float = START_TIMEOUT) -> dict[str, Any]:
        import select

        venue.proc = subprocess.Popen([sys.executable, str(script), str(venue.config_path)],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      text=True, env=dict(env, PYTHONPATH=str(Path.cwd())))
        assert venue.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            r, _, _ = select.select([venue.proc.stdout], [], [], 0.5)
            if r:
                line = venue.proc.stdout.readline()
                if line.startswith("{") and json.loads(line).get("event") == "ready":
                    venue.ready = json.loads(line)
                    return venue.ready
        raise AssertionError("venue not ready")

    del orig_start
    start_wrapped()
    # loss limits out of the way: the resume after the restart must not be refused
    # because the restored positions moved against us meanwhile
    d = Daemon(tmp_path, venue, env, loss_limits=1e9)
    try:
        d.start()
        until(lambda: d.ctl("status").get("iterations", 0) and
               sum(d.metric("nanoarb_fills_total", f'{{symbol="{s}"}}')
                   for s in ("ESZ5", "CLZ5")) >= 3, 120, 0.2, "a few fills")
        d.kill()  # kill -9 in the middle of trading
        time.sleep(0.3)  # cancel on disconnect at the venue
        assert not our_orders(venue)
        d.start()  # the restart: journal restore, reconciliation
        st = until(lambda: (s := d.ctl("status")).get("nanoarb_gateway_up") == 1 and s, 60,
                    0.05, "reconciled")
        assert st["nanoarb_trader_state"] == 1  # HALTED: the previous run crashed
        time.sleep(0.5)
        assert not our_orders(venue)  # and it sends nothing on its own
        fills: list[list[int]] = []
        while True:
            got = venue.request({"cmd": "fills", "since": len(fills)})
            fills += [f for f in got["fills"] if f[0] == SESSION]
            if len(got["fills"]) == 0 or len(fills) >= got["total"]:
                break
        terms = {"ESZ5": (5602, 25_000_000_000, 12.5), "CLZ5": (2871, 1_000_000_000, 10.0)}
        for sym, (sid, tick, tv) in terms.items():
            mine = [f for f in fills if f[1] == sid]
            pos, realised = _avg_cost_realised(mine, tick, tv)
            assert d.metric("nanoarb_position", f'{{symbol="{sym}"}}') == pos
            assert d.metric("nanoarb_realised_pnl", f'{{symbol="{sym}"}}') == pytest.approx(
                realised, abs=1e-6)
        # no ClOrdID reused: the resumed daemon's orders are new ones
        reply = d.ctl("resume")
        assert reply["ok"], reply
        until(lambda: our_orders(venue), 30, 0.05, "quotes after the operator resumed")
        os.kill(d.pid, signal.SIGTERM)
        assert d.wait(60) == 0
    finally:
        d.kill()
        venue.stop()
    from core.types import ACT_NEW, ORDER_ACTION
    from daemon.journal import read_journal
    from daemon.telemetry import J_ORDER_ACTION, journal_payload

    rows = read_journal(d.journal)
    acts = journal_payload(rows[rows["kind"] == J_ORDER_ACTION], ORDER_ACTION)
    new_ids = acts["cl_ord_id"][acts["action"] == ACT_NEW]
    assert new_ids.size > 0 and np.unique(new_ids).size == new_ids.size  # never reused


def test_paper_mode_trades_on_live_data_and_sends_nothing(tmp_path: Path,
                                                          env: dict[str, str]) -> None:
    """`nanoarb paper`: the venue's market data, fills from the in-process queue model."""
    from daemon.config import GatewayConfig

    venue = DemoVenue(tmp_path / "venue", env=env)
    venue.start(START_TIMEOUT)
    port = free_tcp_port()
    base = demo_config()
    cfg = daemon_config(venue, base=base,
                        metrics=MetricsConfig(enabled=True, bind="127.0.0.1", port=port),
                        journal=JournalConfig(path="", fsync=False),
                        risk=msgspec.structs.replace(base.risk, start_active=True))
    cfg = msgspec.structs.replace(cfg, mode="paper", gateway=GatewayConfig(kind="paper",
                                                                            latency_ns=50_000))
    path = tmp_path / "paper.toml"
    path.write_bytes(config_toml(cfg))
    sock = tmp_path / "notify.sock"
    notify = Notify(sock)
    log = open(tmp_path / "paper.log", "w", encoding="utf-8")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "paper", "--config", str(path),
                             "--control-socket", str(tmp_path / "ctl.sock")],
                            env=dict(env, NOTIFY_SOCKET=str(sock)), stdout=log, stderr=log)
    log.close()
    try:
        notify.wait_for("READY=1", START_TIMEOUT)

        def fills() -> float:
            url = f"http://127.0.0.1:{port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as r:
                text = r.read().decode()
            m = re.findall(r'^nanoarb_exec_reports_total\{kind="(new|fill)"\} (\S+)$', text, re.M)
            return sum(float(v) for _k, v in m)

        until(lambda: fills() > 0, 60, 0.2, "simulated acks or fills")
        assert venue.request({"cmd": "orders", "session": SESSION})["orders"] == []
        status = venue.request({"cmd": "status"})
        assert status["orders"]["requests"] == 0  # nothing left the process
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == 0, (tmp_path / "paper.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        venue.stop()
