"""The daemon's metric families, and the Grafana dashboard that reads them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from daemon.metrics import GAUGES, daemon_spec

DASHBOARD = Path(__file__).resolve().parents[1] / "configs" / "grafana_dashboard.json"


def test_dashboard_queries_only_metrics_the_daemon_serves() -> None:
    spec = daemon_spec(["ESZ5", "CLZ5"])
    served = set()
    for m in spec.metrics:
        served.add(m.name)
        if m.kind == "histogram":
            served |= {m.name + s for s in ("_bucket", "_count", "_sum")}
    text = DASHBOARD.read_text()
    used = set(re.findall(r"nanoarb_[a-z_]+", text))
    used.discard("nanoarb_")
    assert used, "the dashboard queries nothing"
    assert used <= served, sorted(used - served)
    panels = json.loads(text)["panels"]
    assert {p["title"] for p in panels} >= {"Trader state", "Kill switch", "Stage latency p99"}


def test_spec_layout_is_consistent() -> None:
    spec = daemon_spec(["A"])
    keys = [m.key for m in spec.metrics]
    assert len(keys) == len(set(keys))
    lay = {k: (np.dtype(dt), shape) for k, dt, shape in spec.layout()}
    for name, _help in GAUGES:
        assert lay[f"g.{name}"][1] == (1,)
    assert lay["latency"][1][0] == 6  # one histogram row per stage
