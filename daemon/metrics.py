"""The daemon's metrics: what the hot loop exposes and how its counters reach the shared block.

``daemon_spec(instruments)`` lists every metric family (``MetricSpec``) the
control plane serves; ``Publisher.publish()`` copies the components' own
preallocated counters into the shared arrays during housekeeping (a handful of
``np.copyto``/sums over small arrays, every few milliseconds, never in a tick).
The latency histograms are written in place by the hot loop's kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from core.types import (
    DROP_REASON_NAMES,
    ER_KIND_NAMES,
    MARKET_COUNTER_NAMES,
    OMS_EVENT_NAMES,
    RISK_REASON_NAMES,
    SQ_COUNTER_NAMES,
)
from daemon.kernels import STAGE_NAMES
from daemon.telemetry import MetricSpec, TelemetrySpec

ACTION_NAMES = ("none", "new", "cancel", "modify", "mass_cancel")
MD_ROLE_NAMES = ("incremental", "snapshot", "definition", "snapshot_mbo", "events")

# scalar gauges (one array, index = position here); `nanoarb ctl status` shows them too
GAUGES = (
    ("trader_state", "trader state: 0 starting, 1 halted, 2 active, 3 reducing"),
    ("kill_switch", "1 while the kill switch is engaged"),
    ("gateway_up", "1 while the order gateway is connected and reconciled"),
    ("net_pnl", "marked-to-market P&L net of fees, currency"),
    ("daily_pnl", "P&L of the trading day, currency"),
    ("drawdown", "drawdown from the day's peak, currency"),
    ("live_orders", "orders working or in flight"),
    ("gross_notional", "gross worst-case notional, currency"),
    ("lifecycle", "hot loop: 0 starting, 1 ready, 2 running, 3 stopping"),
)
G = {name: i for i, (name, _h) in enumerate(GAUGES)}
# the order gateway's session counters (Ilink3Gateway.stats; 0 for the sim/paper gateway)
GATEWAY_COUNTERS = ("connects", "disconnects", "handshake_failures", "reconciliations",
                    "reconcile_timeouts", "retransmit_requests", "messages_lost",
                    "not_applied", "resent", "synthesized", "cod_not_effective",
                    "protocol_errors")


def daemon_spec(symbols: Sequence[str], log_capacity: int = 1 << 14,
                journal_capacity: int = 1 << 16) -> TelemetrySpec:
    spec = TelemetrySpec(log_capacity=log_capacity, journal_capacity=journal_capacity)
    n = len(symbols)
    syms = tuple(symbols)
    sq = tuple(x for x in SQ_COUNTER_NAMES if x != "spare")
    mc = tuple(x for x in MARKET_COUNTER_NAMES if x != "spare")
    spec.add(MetricSpec("md_packets", "nanoarb_md_packets_total",
                        "market-data datagrams (or row batches) handled by the hot loop",
                        "counter", len(MD_ROLE_NAMES), "role", MD_ROLE_NAMES))
    spec.add(MetricSpec("sequencer", "nanoarb_feed_events_total",
                        "feed sequencing: packets per feed, duplicates, gaps, recoveries, drops",
                        "counter", len(sq), "event", sq))
    spec.add(MetricSpec("md_drops", "nanoarb_md_drops_total",
                        "market-data rows or packets dropped by the decoder, by reason",
                        "counter", len(DROP_REASON_NAMES), "reason", DROP_REASON_NAMES))
    spec.add(MetricSpec("book", "nanoarb_book_events_total",
                        "books layer: rows, events, stale rows, RptSeq gaps, resets",
                        "counter", len(mc), "event", mc))
    spec.add(MetricSpec("orders", "nanoarb_orders_total", "order actions sent, by action",
                        "counter", len(ACTION_NAMES), "action", ACTION_NAMES))
    spec.add(MetricSpec("reports", "nanoarb_exec_reports_total",
                        "execution reports, by kind (fill, reject, ...)",
                        "counter", len(ER_KIND_NAMES), "kind", ER_KIND_NAMES))
    spec.add(MetricSpec("risk_rejects", "nanoarb_risk_rejects_total",
                        "order actions refused by pre-trade risk, by reason",
                        "counter", len(RISK_REASON_NAMES), "reason", RISK_REASON_NAMES))
    spec.add(MetricSpec("halts", "nanoarb_halts_total", "halts and pauses, by reason",
                        "counter", len(RISK_REASON_NAMES), "reason", RISK_REASON_NAMES))
    spec.add(MetricSpec("oms", "nanoarb_oms_anomalies_total", "OMS anomalies, by kind",
                        "counter", len(OMS_EVENT_NAMES), "event", OMS_EVENT_NAMES))
    spec.add(MetricSpec("fills", "nanoarb_fills_total", "fills, by instrument", "counter",
                        n, "symbol", syms))
    spec.add(MetricSpec("volume", "nanoarb_filled_contracts_total",
                        "contracts filled, by instrument", "counter", n, "symbol", syms))
    spec.add(MetricSpec("position", "nanoarb_position", "net position (contracts)", "gauge",
                        n, "symbol", syms))
    spec.add(MetricSpec("inst_pnl", "nanoarb_instrument_pnl",
                        "net P&L per instrument, currency", "gauge", n, "symbol", syms,
                        dtype="float64"))
    spec.add(MetricSpec("inst_realised", "nanoarb_realised_pnl",
                        "realised P&L of the trading day per instrument (average cost), "
                        "currency, before fees", "gauge", n, "symbol", syms, dtype="float64"))
    spec.add(MetricSpec("inst_fees", "nanoarb_fees", "fees of the trading day per instrument, "
                        "currency", "gauge", n, "symbol", syms, dtype="float64"))
    spec.add(MetricSpec("gateway", "nanoarb_gateway_events_total",
                        "order-entry session: connects, disconnects, reconciliations, "
                        "retransmit requests, reports lost, ...", "counter",
                        len(GATEWAY_COUNTERS), "event", GATEWAY_COUNTERS))
    for name, help_ in GAUGES:
        spec.add(MetricSpec(f"g.{name}", f"nanoarb_{name}", help_, "gauge", 1,
                            dtype="float64"))
    spec.add(MetricSpec("model", "nanoarb_model_events_total",
                        "model: runs, non-finite outputs, onnxruntime errors", "counter", 3,
                        "event", ("runs", "nonfinite", "errors")))
    spec.add(MetricSpec("loop", "nanoarb_hot_loop_total",
                        "hot loop: iterations, ticks, journal rows lost, log rows lost",
                        "counter", 4, "what", ("iterations", "ticks", "journal_lost",
                                               "log_lost")))
    spec.add(MetricSpec("latency", "nanoarb_stage_latency_seconds",
                        "hot-loop stage latency", "histogram", len(STAGE_NAMES), "stage",
                        STAGE_NAMES, scale=1e-9))
    return spec


class Publisher:
    """Copies the components' counters into the shared block (housekeeping only)."""

    def __init__(self, block: Any, sequencer: Any, market: Any, core: Any,
                 loop_counters: np.ndarray, md_packets: np.ndarray,
                 model_ctl: np.ndarray | None, gateway: Any = None) -> None:
        self.b = block
        self.gateway_stats = getattr(gateway, "stats", None)
        self.seq = sequencer
        self.market = market
        self.core = core
        self.loop = loop_counters
        self.md_packets = md_packets
        self.model_ctl = model_ctl
        self.t = core.trader[0]
        self.insts = core.trader["instruments"][0]
        self.n = int(self.t["n_instruments"])
        self.gauges = np.zeros(len(GAUGES), dtype=np.float64)
        self._sq_n = len([x for x in SQ_COUNTER_NAMES if x != "spare"])
        self._mc_n = len([x for x in MARKET_COUNTER_NAMES if x != "spare"])

    def publish(self, lifecycle: int) -> None:
        b = self.b
        if self.seq is not None:
            np.sum(self.seq.counters[:, : self._sq_n], axis=0, out=b["sequencer"])
            b["md_drops"][:] = self.seq.drops + self.market.drops
        else:
            b["md_drops"][:] = self.market.drops
        b["book"][:] = self.market.counters[: self._mc_n]
        b["md_packets"][:] = self.md_packets
        t = self.t
        b["orders"][:] = t["action_counts"]
        b["reports"][:] = t["report_counts"]
        b["risk_rejects"][:] = t["reject_counts"]
        b["halts"][:] = t["halt_counts"]
        b["oms"][:] = t["oms_counts"]
        ins = self.insts[: self.n]
        b["fills"][:] = ins["n_fills"]
        b["volume"][:] = ins["volume"]
        b["position"][:] = ins["position"]
        b["inst_pnl"][:] = ins["net_pnl"]
        b["inst_realised"][:] = ins["realised"]
        b["inst_fees"][:] = ins["fees"]
        gs = self.gateway_stats
        if gs is not None:
            gw = b["gateway"]
            for i, name in enumerate(GATEWAY_COUNTERS):
                gw[i] = getattr(gs, name, 0)
        g = self.gauges
        g[G["trader_state"]] = t["state"]
        g[G["kill_switch"]] = t["kill_switch"]
        g[G["gateway_up"]] = t["gateway_up"]
        g[G["net_pnl"]] = t["net_pnl"]
        g[G["daily_pnl"]] = t["daily_pnl"]
        g[G["drawdown"]] = t["drawdown"]
        g[G["live_orders"]] = t["live_orders"]
        g[G["gross_notional"]] = t["gross_notional"]
        g[G["lifecycle"]] = lifecycle
        for name, i in G.items():
            b[f"g.{name}"][0] = g[i]
        if self.model_ctl is not None:
            from core.model import C_NONFINITE, C_RUN_ERRORS

            m = b["model"]
            m[0] = self.loop[2]  # model runs
            m[1] = self.model_ctl[C_NONFINITE]
            m[2] = self.model_ctl[C_RUN_ERRORS]
        b["loop"][:2] = self.loop[:2]
        b["loop"][2] = b["journal.tail"][1]
        b["loop"][3] = b["log.tail"][1]


__all__ = ["GATEWAY_COUNTERS", "GAUGES", "Publisher", "daemon_spec"]
