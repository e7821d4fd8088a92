"""A capture of the simulated market, replayed through the daemon's tick: deterministic.

`nanoarb venue --record` writes what the venue publishes (feeds A and B, snapshot and
definition loops) to a pcap; `nanoarb replay --config configs/replay.toml` runs it
through the sequencer (A/B arbitration), the decoder, the books, the model, strategy,
risk and the simulated gateway. Same capture: byte-identical report.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adapters.capture import read_capture

ROOT = Path(__file__).resolve().parent.parent
NANOARB = [sys.executable, "-m", "daemon.cli"]
VENUE_TOML = ROOT / "configs" / "venue.toml"
REPLAY_TOML = ROOT / "configs" / "replay.toml"
SECONDS = "12"

pytestmark = pytest.mark.e2e


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([*NANOARB, *args], capture_output=True, text=True, timeout=900,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _record(out: Path, config: Path = VENUE_TOML) -> dict:
    r = _run("venue", "--config", str(config), "--record", str(out), "--seconds", SECONDS)
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cap") / "market.pcap"
    _record(path)
    return path


def _replay(capture: Path, report: Path, *extra: str) -> dict:
    _run("replay", "--config", str(REPLAY_TOML), str(capture), "--report", str(report),
         *extra)
    return json.loads(report.read_text())


def test_recording_is_deterministic_and_a_real_capture(capture: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.pcap"
    summary = _record(again)
    assert again.read_bytes() == capture.read_bytes()
    recs = list(read_capture(capture))
    assert len(recs) == summary["datagrams"]
    ports = {int(r.dst.rsplit(":", 1)[1]) for r in recs}
    assert ports == {14310, 15310, 16310, 17310}  # configs/venue.toml: A, B, snapshot, defs
    # feeds A and B carry the same packets; timestamps never go back
    by_port: dict[int, list[bytes]] = {}
    for r in recs:
        by_port.setdefault(int(r.dst.rsplit(":", 1)[1]), []).append(r.payload)
    assert by_port[14310] == by_port[15310]
    ts = np.array([r.timestamp for r in recs])
    assert np.all(np.diff(ts) >= 0)


def test_replay_of_a_capture_is_byte_identical(capture: Path, tmp_path: Path) -> None:
    a = _replay(capture, tmp_path / "a.json")
    b_path = tmp_path / "b.json"
    _replay(capture, b_path)
    assert (tmp_path / "a.json").read_bytes() == b_path.read_bytes()
    # instruments come from the definitions in the capture (the config names only ids)
    assert [i["symbol"] for i in a["instruments"]] == ["ESZ5", "CLZ5"]
    assert a["fills"]["count"] > 0 and a["orders"]["new"] > 0
    # each instrument's position is what its fills add up to (the statistics are
    # computed from the fills, the instrument summary from the trader's state)
    stats = a["statistics"]
    assert stats["fills"] == a["fills"]["count"]
    for ins in a["instruments"]:
        inv = stats["instruments"][str(ins["security_id"])]["inventory"]
        assert inv["final"] == ins["position"]
    assert stats["total_pnl"] == pytest.approx(a["pnl"]["net"], abs=0.01)
    assert stats["fees"] > 0  # configs/replay.toml charges fees
    for key in ("sharpe_annualised", "max_drawdown", "trades"):
        assert key in stats
    assert set(stats["trades"]) >= {"win_rate", "profit_factor", "average_trade_pnl",
                                    "round_trips"}


def test_losses_on_feed_a_change_nothing(capture: Path, tmp_path: Path) -> None:
    """Feed A loses packets 2 s in; feed B has them: the same fills as the clean capture."""
    cfg = tmp_path / "venue.toml"
    cfg.write_text(VENUE_TOML.read_text() + '\n[[faults]]\nat_ms = 2000\nkind = "drop"\n'
                   'feed = "A"\ncount = 25\n')
    lossy = tmp_path / "lossy.pcap"
    _record(lossy, cfg)
    assert lossy.read_bytes() != capture.read_bytes()
    clean = _replay(capture, tmp_path / "clean.json")
    lost = _replay(lossy, tmp_path / "lossy.json")
    assert lost["fills"] == clean["fills"]  # count, contracts and the fills' sha256
    assert lost["instruments"] == clean["instruments"]


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                    reason="the plot needs the perf extra (matplotlib)")
def test_replay_plots_equity_and_inventory(capture: Path, tmp_path: Path) -> None:
    png = tmp_path / "equity.png"
    _replay(capture, tmp_path / "r.json", "--plot", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
