"""Plots of the backtest report and the perf harness (matplotlib, the ``perf`` extra).

matplotlib is imported inside each function (Agg backend: no display needed), so
importing this module costs nothing and the daemon never loads it.

* ``latency_plot(stages, path)``: the latency distribution of each stage (samples in
  ns): left, a histogram on a log time axis; right, the percentile curve
  (HdrHistogram style: x = percentile on a 1/(1-p) scale, so p99, p99.9 and the
  tail are readable), p50/p99/p99.9 marked;
* ``equity_plot(times_ns, equity, position, path)``: equity (net P&L, marked) with
  its drawdown shaded, and the inventory as a step function, over time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["equity_plot", "latency_plot"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def latency_plot(stages: Mapping[str, np.ndarray], path: str | os.PathLike[str],
                 title: str = "latency", targets_us: Mapping[str, float] | None = None) -> Path:
    """Histogram and percentile curve of each stage's samples (ns) -> PNG at ``path``.

    ``targets_us`` draws horizontal lines on the percentile panel (name -> us)."""
    plt = _pyplot()
    fig, (ax_h, ax_p) = plt.subplots(1, 2, figsize=(13, 5))
    data = {k: np.asarray(v, dtype=np.float64) / 1e3 for k, v in stages.items()
            if np.asarray(v).size}
    if data:
        lo = max(min(float(v[v > 0].min()) if (v > 0).any() else 0.01 for v in data.values()),
                 0.01)
        hi = max(float(v.max()) for v in data.values())
        bins = np.logspace(np.log10(lo), np.log10(max(hi, lo * 10)), 80)
    pct = np.array([0, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.999])
    for name, us in data.items():
        ax_h.hist(np.clip(us, bins[0], None), bins=bins, histtype="step", label=name,
                  linewidth=1.4)
        ps = pct[pct < 100 * (1 - 1 / max(us.size, 2))]  # only percentiles the data resolves
        ax_p.plot(1 / (1 - ps / 100), np.percentile(us, ps), marker=".", label=name)
    ax_h.set_xscale("log")
    ax_h.set_yscale("log")
    ax_h.set_xlabel("latency (us)")
    ax_h.set_ylabel("samples")
    ax_h.set_title("distribution")
    ax_p.set_xscale("log")
    ax_p.set_yscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000, 100000]
    ax_p.set_xticks(ticks, ["p0", "p50", "p90", "p99", "p99.9", "p99.99", "p99.999"])
    ax_p.set_xlim(1, 1e5)
    ax_p.set_ylabel("latency (us)")
    ax_p.set_title("percentiles")
    for name, v in (targets_us or {}).items():
        ax_p.axhline(v, linestyle="--", linewidth=0.8, color="grey")
        ax_p.annotate(name, (1.05, v), fontsize=7, color="grey", va="bottom")
    for ax in (ax_h, ax_p):
        ax.grid(True, which="both", alpha=0.25)
        if data:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def equity_plot(times_ns: np.ndarray, equity: np.ndarray, position: np.ndarray | None,
                path: str | os.PathLike[str], title: str = "backtest",
                position_labels: Sequence[str] | None = None) -> Path:
    """Equity (drawdown shaded) and inventory over time -> PNG at ``path``.

    ``position`` is [n] or [n, instruments] (one step line each), sampled at ``times_ns``.
    """
    plt = _pyplot()
    t = np.asarray(times_ns, dtype=np.int64)
    e = np.asarray(equity, dtype=np.float64)
    x = (t - t[0]) / 1e9 if t.size else np.zeros(0)
    has_pos = position is not None and np.asarray(position).size > 0
    fig, axes = plt.subplots(2 if has_pos else 1, 1, figsize=(12, 7 if has_pos else 4),
                             sharex=True, squeeze=False)
    ax = axes[0, 0]
    ax.plot(x, e, linewidth=1.0, color="tab:blue", label="net P&L (marked)")
    if e.size:
        peak = np.maximum.accumulate(np.maximum(e, 0.0))
        ax.fill_between(x, e, peak, where=peak > e, color="tab:red", alpha=0.25,
                        step="post", label="drawdown")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel("P&L (currency)")
    ax.grid(True, alpha=0.25)
    ax.legend(fontsize=8, loc="upper left")
    if has_pos:
        p = np.asarray(position, dtype=np.float64)
        if p.ndim == 1:
            p = p[:, None]
        axp = axes[1, 0]
        for j in range(p.shape[1]):
            label = position_labels[j] if position_labels and j < len(position_labels) else \
                f"instrument {j}"
            axp.step(x, p[:, j], where="post", linewidth=0.9, label=label)
        axp.axhline(0, color="black", linewidth=0.6)
        axp.set_ylabel("position (contracts)")
        axp.grid(True, alpha=0.25)
        axp.legend(fontsize=8, loc="upper left")
    axes[-1, 0].set_xlabel("time since start (s)")
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
