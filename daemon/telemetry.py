"""What the hot loop tells the control plane, and how: metric specs, log and journal records.

The hot loop never formats a log line or touches prometheus. It writes numbers:

* counters and gauges: the components' own preallocated arrays (decoder drops,
  sequencing counters, risk rejects, ...) are copied into the shared block during
  housekeeping (a few small ``np.copyto``), described by ``MetricSpec`` rows;
* latency histograms: fixed log-spaced bucket counts per stage;
* log events: fixed-size ``LOG_RECORD`` rows (an event code + four integer
  arguments) pushed to a ring; the control plane turns them into structlog JSON;
* the journal: every order action, execution report and fill as a
  ``JOURNAL_RECORD`` (raw bytes of the component's own row) pushed to a ring;
  the control plane appends and fsyncs them off the hot path.

``TelemetrySpec`` is plain JSON so the control-plane process can rebuild the same
shared-memory layout from the command line.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from daemon.shm import Layout, SharedBlock, ring_layout

# ---------------------------------------------------------------------------
# Log events: code -> (level, event name, argument names). The hot loop pushes
# (time, code, a0..a3); the control plane renders them with structlog.
# ---------------------------------------------------------------------------
LOG_RECORD = np.dtype(
    [("time_ns", np.int64), ("code", np.int32), ("level", np.int32), ("args", np.int64, (4,))],
    align=True,
)

LEVELS = ("debug", "info", "warning", "error", "critical")
DEBUG, INFO, WARNING, ERROR, CRITICAL = range(5)


@dataclass(frozen=True)
class LogEvent:
    code: int
    level: int
    event: str
    args: tuple[str, ...] = ()


LOG_EVENTS: dict[int, LogEvent] = {}


def log_event(code: int, level: int, event: str, *args: str) -> int:
    """Register a log event code (module import time, never in the tick)."""
    if code in LOG_EVENTS and LOG_EVENTS[code].event != event:
        raise ValueError(f"log code {code} already means {LOG_EVENTS[code].event!r}")
    if len(args) > 4:
        raise ValueError("a log event carries at most four integer arguments")
    LOG_EVENTS[code] = LogEvent(code, level, event, tuple(args))
    return code


# The daemon's own events; components add theirs with log_event().
EV_STATE = log_event(1, INFO, "trader_state", "old", "new", "reason")
EV_KILL_SWITCH = log_event(2, WARNING, "kill_switch", "working_orders")
EV_RESUME = log_event(3, INFO, "resume", "accepted")
EV_RELOAD = log_event(4, INFO, "risk_limits_reloaded")
EV_GATEWAY = log_event(5, WARNING, "gateway_connection", "connected")
EV_FEED_GAP = log_event(6, WARNING, "feed_gap", "channel", "expected", "received")
EV_RECOVERED = log_event(7, INFO, "instrument_recovered", "security_id", "rpt_seq")
EV_MODEL_NAN = log_event(8, ERROR, "model_output_not_finite", "security_id")
EV_RISK_REJECT = log_event(9, WARNING, "risk_reject", "reason", "security_id", "qty")
EV_JOURNAL_FULL = log_event(10, CRITICAL, "journal_ring_full", "lost")
EV_STOP = log_event(11, INFO, "stopping", "signal")
EV_READY = log_event(12, INFO, "ready", "warmup_ms")
EV_GATEWAY_READY = log_event(20, INFO, "gateway_reconciled", "adopted_orders")
EV_RESTORED = log_event(21, INFO, "restored_from_journal", "instruments", "fills",
                        "working_orders", "next_cl_seq")
EV_RELOAD_FAILED = log_event(22, WARNING, "risk_limits_reload_failed")
EV_STOP_TIMEOUT = log_event(23, WARNING, "stop_timeout", "live_orders")
EV_STOPPED = log_event(24, INFO, "stopped", "live_orders")
EV_HALT = log_event(25, WARNING, "halt", "reason", "live_orders")


def render_log(rec: np.void) -> dict[str, Any]:
    """One LOG_RECORD as a structlog event dict."""
    code = int(rec["code"])
    ev = LOG_EVENTS.get(code)
    out: dict[str, Any] = {"event": ev.event if ev else f"code_{code}"}
    out["level"] = LEVELS[int(rec["level"])] if 0 <= int(rec["level"]) < len(LEVELS) else "info"
    out["hot_time_ns"] = int(rec["time_ns"])
    names = ev.args if ev else ("a0", "a1", "a2", "a3")
    for i, name in enumerate(names):
        out[name] = int(rec["args"][i])
    return out


# ---------------------------------------------------------------------------
# Journal: raw rows of the components' dtypes, tagged with a kind.
# ---------------------------------------------------------------------------
JOURNAL_PAYLOAD = 120
JOURNAL_RECORD = np.dtype(
    [
        ("time_ns", np.int64),  # wall clock when the hot loop journaled it
        ("kind", np.uint16),
        ("length", np.uint16),
        ("_pad", np.uint32),
        ("payload", np.uint8, (JOURNAL_PAYLOAD,)),
    ],
    align=True,
)
J_ORDER_ACTION = 1
J_EXEC_REPORT = 2
J_STATE = 3  # trader state change: payload = int64[old, new, reason]
J_SESSION = 4  # a daemon run starts / stops cleanly: int64[pid, trading_day, event]
J_GATEWAY_SEQ = 5  # the iLink 3 session: int64[next_recv, next_send, recovering, uuid]


def journal_rows(kind: int, rows: np.ndarray, time_ns: int) -> np.ndarray:
    """Pack rows of any fixed-size dtype (at most JOURNAL_PAYLOAD bytes each) as journal rows."""
    itemsize = rows.dtype.itemsize
    if itemsize > JOURNAL_PAYLOAD:
        raise ValueError(f"{rows.dtype} is {itemsize} bytes, the journal holds {JOURNAL_PAYLOAD}")
    out = np.zeros(rows.shape[0], JOURNAL_RECORD)
    out["time_ns"] = time_ns
    out["kind"] = kind
    out["length"] = itemsize
    out["payload"][:, :itemsize] = np.ascontiguousarray(rows).view(np.uint8).reshape(-1, itemsize)
    return out


def journal_payload(rec: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    """The component rows back from journal rows of one kind."""
    n = dtype.itemsize
    return np.ascontiguousarray(rec["payload"][:, :n]).view(dtype).reshape(-1)


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------
# Latency histogram bucket upper bounds in ns: 1-2-5 steps from 500 ns to 10 ms.
LATENCY_BUCKETS_NS = np.array(
    [m * 10**e for e in range(2, 7) for m in (1, 2, 5)] + [10_000_000], dtype=np.int64
)[2:]
HIST_WIDTH = len(LATENCY_BUCKETS_NS) + 3  # buckets, +Inf, count, sum


@dataclass(frozen=True)
class MetricSpec:
    """One shared array exposed as a prometheus metric family.

    ``labels`` names the label of the array's last axis; ``label_values`` gives
    one value per element (e.g. drop reasons). ``kind`` is counter, gauge or
    histogram (then the array is int64 [n_series, HIST_WIDTH]: one count per
    bucket of LATENCY_BUCKETS_NS, the +Inf bucket, then total count and sum in ns;
    ``label_values`` names the series).
    """

    key: str
    name: str
    help: str
    kind: str
    size: int
    label: str = ""
    label_values: tuple[str, ...] = ()
    dtype: str = "int64"
    scale: float = 1.0  # multiply values (e.g. 1e-9 for ns -> s)


@dataclass
class TelemetrySpec:
    metrics: list[MetricSpec] = field(default_factory=list)
    log_capacity: int = 1 << 14
    journal_capacity: int = 1 << 16
    mailbox_size: int = 16

    def add(self, spec: MetricSpec) -> MetricSpec:
        if any(m.key == spec.key for m in self.metrics):
            raise ValueError(f"metric key {spec.key!r} defined twice")
        self.metrics.append(spec)
        return spec

    def layout(self) -> Layout:
        lay: list[tuple[str, Any, tuple[int, ...]]] = []
        for m in self.metrics:
            if m.kind == "histogram":
                lay.append((m.key, np.int64, (m.size, HIST_WIDTH)))
            else:
                lay.append((m.key, np.dtype(m.dtype), (m.size,)))
        lay += ring_layout("log", LOG_RECORD, self.log_capacity)
        lay += ring_layout("journal", JOURNAL_RECORD, self.journal_capacity)
        # mailbox: [0] request seq, [1] command, [2] arg, [8] reply seq, [9] result
        # heartbeat: [0] hot-loop iterations (watchdog), [1] pid, [2] state, [3] ready
        lay += [("mailbox", np.int64, (self.mailbox_size,)), ("heartbeat", np.int64, (8,))]
        return lay

    def to_json(self) -> str:
        return json.dumps(
            {
                "metrics": [asdict(m) for m in self.metrics],
                "log_capacity": self.log_capacity,
                "journal_capacity": self.journal_capacity,
                "mailbox_size": self.mailbox_size,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> TelemetrySpec:
        d = json.loads(text)
        metrics = [
            MetricSpec(**{**m, "label_values": tuple(m["label_values"])}) for m in d["metrics"]
        ]
        return cls(metrics, d["log_capacity"], d["journal_capacity"], d["mailbox_size"])

    def create(self, name: str | None = None) -> SharedBlock:
        return SharedBlock(self.layout(), name=name, create=True)

    def attach(self, name: str) -> SharedBlock:
        return SharedBlock(self.layout(), name=name, create=False)


def observe_latency(hist: np.ndarray, series: int, ns: int) -> None:
    """Add one sample to row ``series`` of a histogram array (Python side; kernels inline it)."""
    b = int(np.searchsorted(LATENCY_BUCKETS_NS, ns))
    hist[series, b] += 1
    hist[series, -2] += 1
    hist[series, -1] += ns


# Mailbox commands (ctl socket -> hot loop)
CMD_NONE = 0
CMD_STATUS = 1
CMD_HALT = 2
CMD_RESUME = 3
CMD_RELOAD = 4
CMD_STOP = 5
COMMANDS = {"status": CMD_STATUS, "halt": CMD_HALT, "resume": CMD_RESUME, "reload": CMD_RELOAD}
