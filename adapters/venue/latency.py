"""The venue's latency record: wire-to-wire time of every order it receives.

For each order request (NewOrderSingle, cancel/replace, cancel, mass action) the
venue keeps one row: when it was received (the acceptor's monotonic clock,
CLOCK_MONOTONIC, read right after ``recv``), the MsgSeqNum of the market-data
packet that triggered it, and when the venue sent that packet (same clock, read
right after ``sendto``). The daemon's iLink encoder puts the trigger in the
upper 32 bits of OrderRequestID (``core.sbe.ilink3.trigger_seq_of``:
``trigger_seq << 32 | request counter``), a field CME echoes and lets the
customer fill freely.

    wire_to_wire_ns = recv_ns - trigger_send_ns

i.e. venue packet out -> daemon decode, decide, encode -> venue order in: the
tick-to-trade of the daemon plus both loopback hops, measured on one clock.
It is -1 when the request names no trigger (0) or the trigger is older than
the send-time ring (``SendTimes``, preallocated, ``md_ring`` packets).

The record is a preallocated ring of ``LATENCY_ROW`` (oldest rows overwritten
when full, counted in ``overwritten``), written at exit as ``.npy`` (the
structured array, oldest first) or ``.jsonl``; ``read_latency_file`` reads
either back for the perf harness. The kernel RX timestamp column is 0: the
acceptor reads with ``recv`` (no ancillary data), see ``rx_kernel_ns``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from core.sbe.ilink3 import trigger_seq_of

__all__ = ["LATENCY_ROW", "LatencyRecord", "SendTimes", "read_latency_file"]

LATENCY_ROW = np.dtype(
    [
        ("recv_ns", np.int64),  # CLOCK_MONOTONIC when the venue read the request
        ("trigger_send_ns", np.int64),  # CLOCK_MONOTONIC when the venue sent the trigger; -1
        ("wire_to_wire_ns", np.int64),  # recv_ns - trigger_send_ns; -1 if unknown
        ("rx_kernel_ns", np.int64),  # kernel receive timestamp (CLOCK_REALTIME), 0 if none
        ("order_request_id", np.uint64),
        ("order_id", np.uint64),  # venue OrderID of the order (0 for a reject / mass action)
        ("trigger_seq", np.uint32),  # MsgSeqNum of the triggering packet (0 = none given)
        ("seq_num", np.uint32),  # iLink SeqNum of the request
        ("template_id", np.uint16),
        ("session", np.uint16),  # index of the session in the venue config
        ("cl_ord_id", "S20"),
    ],
    align=True,
)

_NAMES: tuple[str, ...] = tuple(LATENCY_ROW.names or ())


class SendTimes:
    """MsgSeqNum -> send time of the last ``capacity`` incremental packets (a ring)."""

    __slots__ = ("mask", "seqs", "times")

    def __init__(self, capacity: int = 1 << 20) -> None:
        if capacity <= 0 or capacity & (capacity - 1):
            raise ValueError("capacity must be a power of two")
        self.mask = capacity - 1
        self.seqs = np.zeros(capacity, dtype=np.int64)
        self.times = np.zeros(capacity, dtype=np.int64)

    def record(self, seq: int, t_ns: int) -> None:
        i = seq & self.mask
        self.seqs[i] = seq
        self.times[i] = t_ns

    def lookup(self, seq: int) -> int:
        """Send time of ``seq``, -1 if unknown (never sent, or overwritten since)."""
        i = seq & self.mask
        if seq <= 0 or self.seqs[i] != seq:
            return -1
        return int(self.times[i])


class LatencyRecord:
    """One row per order request received (see the module docstring)."""

    def __init__(self, send_times: SendTimes, capacity: int = 1 << 20) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be > 0")
        self.send_times = send_times
        self.rows = np.zeros(capacity, dtype=LATENCY_ROW)
        self.n = 0  # rows written, lifetime

    @property
    def overwritten(self) -> int:
        return max(0, self.n - len(self.rows))

    def record(self, recv_ns: int, template_id: int, session: int, order_request_id: int,
               seq_num: int, cl_ord_id: str, order_id: int = 0, rx_kernel_ns: int = 0) -> int:
        """Add a row; returns its index in the ring."""
        i = self.n % len(self.rows)
        self.n += 1
        trigger = trigger_seq_of(order_request_id)
        sent = self.send_times.lookup(trigger) if trigger else -1
        r = self.rows[i]
        r["recv_ns"] = recv_ns
        r["trigger_send_ns"] = sent
        r["wire_to_wire_ns"] = recv_ns - sent if sent >= 0 else -1
        r["rx_kernel_ns"] = rx_kernel_ns
        r["order_request_id"] = int(order_request_id) & 0xFFFFFFFFFFFFFFFF
        r["order_id"] = order_id
        r["trigger_seq"] = trigger
        r["seq_num"] = seq_num
        r["template_id"] = template_id
        r["session"] = session
        r["cl_ord_id"] = cl_ord_id.encode("latin-1")[:20]
        return i

    def set_order_id(self, index: int, order_id: int) -> None:
        self.rows[index]["order_id"] = order_id

    def ordered(self) -> np.ndarray:
        """The rows kept, oldest first (a copy)."""
        cap = len(self.rows)
        if self.n <= cap:
            return self.rows[: self.n].copy()
        k = self.n % cap
        return np.concatenate([self.rows[k:], self.rows[:k]])

    def summary(self) -> dict[str, Any]:
        rows = self.ordered()
        w = rows["wire_to_wire_ns"]
        w = w[w >= 0]
        out: dict[str, Any] = {"orders": int(self.n), "kept": len(rows),
                               "with_trigger": len(w), "overwritten": self.overwritten}
        if len(w):
            q = np.percentile(w, [50, 99, 99.9]) / 1e3
            out.update(wire_to_wire_p50_us=float(q[0]), wire_to_wire_p99_us=float(q[1]),
                       wire_to_wire_p999_us=float(q[2]),
                       wire_to_wire_max_us=float(w.max() / 1e3),
                       wire_to_wire_min_us=float(w.min() / 1e3))
        return out

    def write(self, path: str | Path) -> Path:
        """Write the rows kept, oldest first: ``.npy`` (structured array) or ``.jsonl``."""
        p = Path(path)
        rows = self.ordered()
        tmp = p.with_name(p.name + ".tmp")
        if p.suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, rows)
        elif p.suffix == ".jsonl":
            with open(tmp, "w", encoding="utf-8") as fh:
                for r in rows:
                    d = {name: (r[name].decode("latin-1") if name == "cl_ord_id"
                                else int(r[name])) for name in _NAMES}
                    fh.write(json.dumps(d) + "\n")
        else:
            raise ValueError("latency file must end in .npy or .jsonl")
        tmp.replace(p)
        return p


def read_latency_file(path: str | Path) -> np.ndarray:
    """A latency file written by the venue, as a ``LATENCY_ROW`` array."""
    p = Path(path)
    if p.suffix == ".npy":
        arr = np.load(p, allow_pickle=False)
        if arr.dtype != LATENCY_ROW:
            raise ValueError(f"{p}: not a venue latency record")
        return arr
    lines = [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line]
    out = np.zeros(len(lines), dtype=LATENCY_ROW)
    for i, d in enumerate(lines):
        for name in _NAMES:
            out[i][name] = d[name].encode("latin-1") if name == "cl_ord_id" else d[name]
    return out
