"""Shared helpers for benchmarks: the JSON result format of DESIGN.md and timing utilities."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def figure(
    name: str,
    value: float,
    unit: str,
    target: float | None = None,
    better: str = "higher",
    **extra: Any,
) -> dict[str, Any]:
    """One figure; ``met`` is computed from ``target`` and ``better`` (None when no target)."""
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', not {better!r}")
    met: bool | None
    if target is None:
        met = None
    elif better == "higher":
        met = bool(value >= target)
    else:
        met = bool(value <= target)
    out: dict[str, Any] = {
        "name": name,
        "value": float(value),
        "unit": unit,
        "target": None if target is None else float(target),
        "better": better,
        "met": met,
    }
    out.update(extra)
    return out


def write_result(
    benchmark: str,
    figures: Sequence[dict[str, Any]],
    out_dir: str | os.PathLike[str] | None = None,
    started: str | None = None,
    **extra: Any,
) -> Path:
    """Write ``DIR/<benchmark>.json`` in the project's benchmark format and return its path."""
    out = Path(out_dir) if out_dir is not None else DEFAULT_OUT
    out.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "benchmark": benchmark,
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "started": started or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "figures": list(figures),
    }
    doc.update(extra)
    path = out / f"{benchmark}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default=str(DEFAULT_OUT), help="directory for <benchmark>.json")
    p.add_argument("--quick", action="store_true", help="small sizes, for smoke tests")
    return p


def percentiles_us(samples_ns: np.ndarray) -> dict[str, float]:
    """p50/p90/p99/p99.9/max in microseconds of an array of nanosecond samples."""
    s = np.asarray(samples_ns, dtype=np.float64)
    if s.size == 0:
        return {
            "p50": float("nan"),
            "p90": float("nan"),
            "p99": float("nan"),
            "p999": float("nan"),
            "max": float("nan"),
            "count": 0,
        }
    q = np.percentile(s, [50, 90, 99, 99.9]) / 1e3
    return {
        "p50": float(q[0]),
        "p90": float(q[1]),
        "p99": float(q[2]),
        "p999": float(q[3]),
        "max": float(s.max() / 1e3),
        "count": int(s.size),
    }


def best_rate(fn: Any, n_items: int, repeats: int = 5) -> float:
    """Items per second of the fastest of ``repeats`` calls of ``fn()`` processing ``n_items``."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        best = min(best, time.perf_counter_ns() - t0)
    return n_items / (best / 1e9)
