"""Run reports: the replay (backtest) report and the demo summary.

``replay_report(result)`` is a plain JSON-able dict built only from what the
run decided (counts, fills, positions, P&L): the same inputs give the same
bytes (``dumps_report``), which the tests check. Wall-clock figures (run time,
tick-to-trade) go to ``timings(result)``, kept apart on purpose; ``nanoarb
replay --timings`` adds them under their own key. Later analytics (Sharpe,
drawdown curves, plots) extend ``replay_report`` from ``fills``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from core.types import (
    ER_FILL,
    ER_KIND_NAMES,
    EXEC_REPORT,
    RISK_REASON_NAMES,
    TRADER_STATE_NAMES,
)

REPORT_VERSION = 1


def fills_of(result: Any) -> np.ndarray:
    """Every fill the run received (EXEC_REPORT rows, in order)."""
    rows = getattr(result.loop, "journal_reports", None)
    if rows is None or len(rows) == 0:
        return np.zeros(0, dtype=EXEC_REPORT)
    allr = np.concatenate(rows)
    return allr[allr["kind"] == ER_FILL]


def _r(x: float) -> float:
    return round(float(x), 6)


def instruments_summary(result: Any) -> list[dict[str, Any]]:
    core = result.engine.core
    t = core.trader[0]
    out = []
    for i, sym in enumerate(result.engine.symbols):
        ins = t["instruments"][i]
        out.append({
            "symbol": sym,
            "security_id": int(ins["security_id"]),
            "position": int(ins["position"]),
            "fills": int(ins["n_fills"]),
            "volume": int(ins["volume"]),
            "realised": _r(ins["realised"]),
            "unrealised": _r(ins["unrealised"]),
            "fees": _r(ins["fees"]),
            "net_pnl": _r(ins["net_pnl"]),
        })
    return out


def replay_report(result: Any, data: list[str]) -> dict[str, Any]:
    """The deterministic backtest report."""
    core = result.engine.core
    t = core.trader[0]
    fills = fills_of(result)
    h = hashlib.sha256()
    cols = ("cl_ord_id", "security_id", "side", "price", "qty", "aggressor", "transact_ns")
    for name in cols:
        h.update(np.ascontiguousarray(fills[name]).tobytes())
    loop = result.loop
    return {
        "report": "nanoarb-replay",
        "version": REPORT_VERSION,
        "data": list(data),
        "mode": result.engine.mode,
        "events": {
            "datagrams": int(loop.counters[3]),
            "decides": int(t["n_decides"]),
            "model_runs": int(loop.counters[2]),
        },
        "orders": {
            "new": int(t["action_counts"][1]),
            "cancel": int(t["action_counts"][2]),
            "modify": int(t["action_counts"][3]),
        },
        "reports": {ER_KIND_NAMES[i]: int(c) for i, c in enumerate(t["report_counts"]) if c},
        "risk_rejects": {RISK_REASON_NAMES[i]: int(c) for i, c in enumerate(t["reject_counts"])
                         if c},
        "fills": {"count": int(fills.size), "contracts": int(fills["qty"].sum()),
                  "sha256": h.hexdigest()},
        "final_state": TRADER_STATE_NAMES[int(t["state"])],
        "pnl": {"net": _r(t["net_pnl"]), "daily": _r(t["daily_pnl"]),
                "drawdown": _r(t["drawdown"])},
        "instruments": instruments_summary(result),
        "statistics": backtest_statistics(result, fills),
    }


def equity_curve(result: Any, fills: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times_ns, equity, positions[times, instruments]) of a replay, from its fills.

    Deterministic (market time only): one point per fill, each instrument marked at
    our last fill price in it (the replay keeps no mid history), and a last point at
    the end of the data with the trader's own mark (net P&L at the final mid)."""
    from core.backtest_stats import mark_to_market

    eng = result.engine
    t = eng.core.trader[0]
    n = len(eng.symbols)
    times = np.asarray(fills["transact_ns"], dtype=np.int64)
    equity = np.zeros(times.size, dtype=np.float64)
    pos = np.zeros((times.size, n), dtype=np.int64)
    for i in range(n):
        ins = t["instruments"][i]
        f = fills[fills["security_id"] == ins["security_id"]]
        if f.size == 0:
            continue
        ft = np.asarray(f["transact_ns"], dtype=np.int64)
        last = np.searchsorted(ft, times, side="right") - 1
        mark_px = np.asarray(f["price"], dtype=np.float64)[np.maximum(last, 0)]
        e, p = mark_to_market(ft, f["side"], f["price"], f["qty"], f["fee"], times, mark_px,
                              int(ins["tick"]), float(ins["tick_value"]))
        equity += e
        pos[:, i] = p
    end_ns = max(int(eng.clock.now_ns()), int(times[-1]) if times.size else 0)
    final_pos = np.array([int(t["instruments"][i]["position"]) for i in range(n)],
                         dtype=np.int64)
    return (np.append(times, end_ns), np.append(equity, float(t["net_pnl"])),
            np.vstack([pos, final_pos[None, :]]))


def backtest_statistics(result: Any, fills: np.ndarray) -> dict[str, Any]:
    """The report's statistics (core.backtest_stats): P&L, annualised Sharpe, profit
    factor, max drawdown, win rate, average trade, trades, fees, inventory."""
    from core.backtest_stats import backtest_summary

    eng = result.engine
    t = eng.core.trader[0]
    insts = {int(t["instruments"][i]["security_id"]): (int(t["instruments"][i]["tick"]),
                                                        float(t["instruments"][i]["tick_value"]))
             for i in range(len(eng.symbols))}
    times, equity, _pos = equity_curve(result, fills)
    start = int(getattr(eng.clock, "first_ns", 0)) or (int(times[0]) if times.size else 0)
    return backtest_summary(fills, insts, times, equity, start, max(int(times[-1]), start))


def percentiles_us(samples_ns: np.ndarray) -> dict[str, float]:
    if samples_ns.size == 0:
        return {}
    q = np.percentile(samples_ns, [50, 90, 99, 99.9]) / 1000.0
    return {"p50": round(float(q[0]), 2), "p90": round(float(q[1]), 2),
            "p99": round(float(q[2]), 2), "p99.9": round(float(q[3]), 2),
            "n": int(samples_ns.size)}


def timings(result: Any) -> dict[str, Any]:
    """Wall-clock figures of a run (not deterministic: kept out of the replay report)."""
    secs = max((result.stopped_ns - result.started_ns) / 1e9, 1e-9)
    return {
        "seconds": round(secs, 3),
        "warmup_ms": result.warmup_ms,
        "datagrams_per_s": round(int(result.loop.counters[3]) / secs, 1),
        "tick_to_trade_us": percentiles_us(result.loop.tick_to_trade_ns()),
    }


def dumps_report(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True) + "\n"


def demo_summary(result: Any) -> dict[str, Any]:
    """What `nanoarb demo` prints: events, quotes, fills, P&L, position, tick-to-trade."""
    t = result.engine.core.trader[0]
    loop = result.loop
    return {
        "events": int(loop.counters[3]),
        "decides": int(t["n_decides"]),
        "quotes": int(t["action_counts"][1]) + int(t["action_counts"][3]),
        "cancels": int(t["action_counts"][2]),
        "fills": int(t["report_counts"][ER_FILL]),
        "pnl": _r(t["net_pnl"]),
        "state": TRADER_STATE_NAMES[int(t["state"])],
        "instruments": instruments_summary(result),
        **timings(result),
    }


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"events (datagrams)  {s['events']}",
        f"decisions           {s['decides']}",
        f"quotes sent         {s['quotes']} (new + modify), {s['cancels']} cancels",
        f"fills               {s['fills']}",
        f"P&L (net, marked)   {s['pnl']:.2f}",
        f"trader state        {s['state']}",
    ]
    for ins in s["instruments"]:
        lines.append(f"  {ins['symbol']:<8} position {ins['position']:+d}  fills {ins['fills']}"
                     f"  realised {ins['realised']:.2f}  net {ins['net_pnl']:.2f}")
    ttt = s.get("tick_to_trade_us") or {}
    if ttt:
        lines.append(f"tick-to-trade (us)  p50 {ttt['p50']}  p90 {ttt['p90']}  p99 {ttt['p99']}"
                     f"  p99.9 {ttt['p99.9']}  (n={ttt['n']}, in process: datagram in the "
                     "loop -> order sent)")
    else:
        lines.append("tick-to-trade       no order was sent")
    lines.append(f"run time            {s['seconds']} s (warm-up {s['warmup_ms']} ms)")
    return "\n".join(lines)


__all__ = ["backtest_statistics", "demo_summary", "dumps_report", "equity_curve",
           "format_summary", "replay_report", "timings"]
