"""perf/bench_model.py runs and writes the figures DESIGN.md names (no timing asserted here)."""

from __future__ import annotations

import json
from pathlib import Path

from perf import bench_model


def test_bench_model_quick_writes_its_figures(tmp_path: Path) -> None:
    assert bench_model.main(["--quick", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "model.json").read_text())
    assert doc["benchmark"] == "model"
    figs = {f["name"]: f for f in doc["figures"]}
    assert {"model_p50_us", "model_p99_us", "model_p999_us", "model_batch_rows_per_s",
            "model_pybind_p50_us", "model_trap_runoptions_p50_us"} <= set(figs)
    p50 = figs["model_p50_us"]
    assert p50["target"] == 4.0 and p50["better"] == "lower" and p50["met"] in (True, False)
    assert 0 < p50["value"] <= figs["model_p99_us"]["value"]
    assert figs["model_batch_rows_per_s"]["value"] > 0
