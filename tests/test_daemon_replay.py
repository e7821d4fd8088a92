"""`nanoarb replay`: the daemon's tick through the simulated venue, deterministic."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

NANOARB = [sys.executable, "-m", "daemon.cli"]


def _replay(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NANOARB, "replay", "synthetic:3000", "--start-active",
                           "--report", str(out), *extra],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.e2e
def test_replay_is_deterministic_and_trades(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    ra = _replay(a)
    assert ra.returncode == 0, ra.stderr
    rb = _replay(b)
    assert rb.returncode == 0, rb.stderr
    assert a.read_bytes() == b.read_bytes()  # same inputs: same fills, same bytes
    rep = json.loads(a.read_text())
    assert rep["fills"]["count"] > 0 and rep["orders"]["new"] > 0
    assert rep["events"]["datagrams"] == 3000 + 2  # one opening event per instrument
    # the position in the report is what the fills add up to
    filled = sum(i["fills"] for i in rep["instruments"])
    assert filled == rep["fills"]["count"]


@pytest.mark.e2e
def test_replay_bad_config_names_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[risk]\nmax_order_qty = 'five'\n")
    r = subprocess.run([*NANOARB, "replay", "synthetic:10", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "risk.max_order_qty" in r.stderr
