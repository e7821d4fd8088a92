"""The journal: what was sent and what the venue said, append-only, read back at start.

The hot loop pushes every order action (ORDER_ACTION rows, as sent) and every
execution report (EXEC_REPORT rows, as received) into the shared journal ring
(``daemon.kernels._journal_push``); the control plane appends them to the file
and fsyncs (daemon/controlplane.py). The file is a plain array of
``JOURNAL_RECORD`` rows; a row torn by a crash in the middle of a write is
ignored.

Besides the trading rows, each run writes ``J_SESSION`` rows: ``SESSION_START``
when it starts and ``SESSION_CLEAN_STOP`` when it stopped gracefully, with the
trading day. A previous run without a clean stop is a crash: the restarted
daemon never goes ACTIVE on its own.

``restore_from_journal`` rebuilds, for the current trading day: positions and
realised P&L per instrument (the fills replayed through the OMS's own
arithmetic, ``core.oms.apply_fill``, each ``exec_id`` once), the orders the
journal believes still working (to reconcile with what the venue reports), and
the next ClOrdID sequence, so that no ClOrdID is ever reused.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.types import (
    ACT_CANCEL,
    ACT_MODIFY,
    ACT_NEW,
    ER_CANCEL,
    ER_ELIMINATION,
    ER_FILL,
    ER_MODIFY,
    ER_NEW,
    ER_REJECT,
    ER_STATUS,
    EXEC_REPORT,
    ORDER_ACTION,
    ORDER_SLOT_BITS,
    OS_CANCELLED,
    OS_EXPIRED,
    OS_FILLED,
    OS_REJECTED,
)
from daemon.telemetry import (
    J_EXEC_REPORT,
    J_GATEWAY_SEQ,
    J_ORDER_ACTION,
    J_SESSION,
    J_STATE,
    JOURNAL_RECORD,
    journal_payload,
    journal_rows,
)

SESSION_START = 1
SESSION_CLEAN_STOP = 2

# CME Globex's trading day starts at 17:00 Chicago time the evening before.
_CHICAGO: Any
try:
    from zoneinfo import ZoneInfo

    _CHICAGO = ZoneInfo("America/Chicago")
except Exception:  # no tz database: CST all year round (off by one hour in summer)
    _CHICAGO = dt.timezone(dt.timedelta(hours=-6))


def trading_day(wall_ns: int) -> int:
    """The CME trading day (YYYYMMDD) of a wall-clock time: days roll at 17:00 Chicago."""
    t = dt.datetime.fromtimestamp(wall_ns / 1e9, tz=_CHICAGO) + dt.timedelta(hours=7)
    return t.year * 10000 + t.month * 100 + t.day


SESSION_ROW = np.dtype([("pid", np.int64), ("trading_day", np.int64), ("event", np.int64)])
# core.fixp's sequence array as the hot loop journals it (its first four int64)
GATEWAY_SEQ_ROW = np.dtype([("next_recv", np.int64), ("next_send", np.int64),
                            ("recovering", np.int64), ("uuid", np.int64)])
STATE_ROW = np.dtype([("old", np.int64), ("new", np.int64), ("reason", np.int64)])


def session_row(event: int, pid: int, day: int, wall_ns: int) -> np.ndarray:
    return journal_rows(J_SESSION, np.array([(pid, day, event)], dtype=SESSION_ROW), wall_ns)


def state_row(old: int, new: int, reason: int, wall_ns: int) -> np.ndarray:
    return journal_rows(J_STATE, np.array([(old, new, reason)], dtype=STATE_ROW), wall_ns)


def read_journal(path: str | Path) -> np.ndarray:
    """Every whole JOURNAL_RECORD row of the file (none if it does not exist)."""
    p = Path(path)
    if not p.exists():
        return np.zeros(0, dtype=JOURNAL_RECORD)
    data = p.read_bytes()
    n = len(data) // JOURNAL_RECORD.itemsize  # a torn last row is dropped
    return np.frombuffer(data[: n * JOURNAL_RECORD.itemsize], dtype=JOURNAL_RECORD).copy()


@dataclass
class WorkingOrder:
    cl_ord_id: int
    security_id: int
    side: int
    price: int
    qty: int
    cum: int = 0
    order_id: int = 0


@dataclass
class JournalState:
    """What the journal says about the current trading day."""

    trading_day: int
    # security_id -> list of fills (side, qty, price, aggressor, fee)
    fills: dict[int, list[tuple[int, int, int, int, float]]] = field(default_factory=dict)
    working: dict[int, WorkingOrder] = field(default_factory=dict)  # cl_ord_id -> order
    max_cl_ord_id: int = 0
    sessions: int = 0  # runs today
    last_session_clean: bool = True  # False: the previous run crashed
    rows: int = 0
    actions: int = 0
    reports: int = 0
    # the order-entry session as of the last journaled tick: (uuid, next_recv, next_send)
    gateway_seq: tuple[int, int, int] | None = None

    @property
    def next_cl_seq(self) -> int:
        """A ClOrdID sequence above every one ever journaled (the OMS's cl_ord_id_base)."""
        return (self.max_cl_ord_id >> ORDER_SLOT_BITS) + 1

    def position(self, security_id: int) -> int:
        return sum(q if s == 1 else -q for s, q, _p, _a, _f in self.fills.get(security_id, []))


_DONE = {ER_CANCEL, ER_REJECT, ER_ELIMINATION}
_DONE_STATUS = {OS_CANCELLED, OS_EXPIRED, OS_FILLED, OS_REJECTED}


def scan_journal(rows: np.ndarray, day: int) -> JournalState:
    """Fold the journal rows of trading day ``day`` (and the ClOrdIDs of every day)."""
    st = JournalState(trading_day=day)
    st.rows = int(rows.shape[0])
    in_day = False
    seen_exec: set[tuple[int, int, int, int]] = set()
    for i in range(rows.shape[0]):
        rec = rows[i : i + 1]
        kind = int(rec["kind"][0])
        if kind == J_SESSION:
            srow = journal_payload(rec, SESSION_ROW)[0]
            sday, event = int(srow["trading_day"]), int(srow["event"])
            if event == SESSION_START:
                in_day = sday == day
                if in_day:
                    st.sessions += 1
                    st.last_session_clean = False
                else:
                    st.fills.clear()
                    st.working.clear()
                    st.last_session_clean = True
            elif event == SESSION_CLEAN_STOP and in_day:
                st.last_session_clean = True
            continue
        if kind == J_ORDER_ACTION:
            a = journal_payload(rec, ORDER_ACTION)[0]
            st.actions += 1
            cl = int(a["cl_ord_id"])
            st.max_cl_ord_id = max(st.max_cl_ord_id, cl)
            if in_day and int(a["action"]) == ACT_NEW:
                st.working[cl] = WorkingOrder(cl, int(a["security_id"]), int(a["side"]),
                                              int(a["price"]), int(a["qty"]))
            elif in_day and int(a["action"]) in (ACT_CANCEL, ACT_MODIFY):
                pass  # the venue's answer decides
            continue
        if kind == J_GATEWAY_SEQ:
            g = journal_payload(rec, GATEWAY_SEQ_ROW)[0]
            uuid = int(np.int64(g["uuid"]).view(np.uint64))
            st.gateway_seq = (uuid, int(g["next_recv"]), int(g["next_send"])) if uuid else None
            continue
        if kind != J_EXEC_REPORT:
            continue
        r = journal_payload(rec, EXEC_REPORT)[0]
        st.reports += 1
        cl = int(r["cl_ord_id"])
        st.max_cl_ord_id = max(st.max_cl_ord_id, cl)
        if not in_day:
            continue
        k = int(r["kind"])
        if k == ER_FILL:
            # a report seen twice (retransmission) counts once; ExecID alone is not the
            # key: a venue may give the fills of one match the same id
            key = (int(r["exec_id"]), cl, int(r["cum_qty"]), int(r["qty"]))
            if key in seen_exec:
                continue
            seen_exec.add(key)
            sid = int(r["security_id"])
            st.fills.setdefault(sid, []).append(
                (int(r["side"]), int(r["qty"]), int(r["price"]), int(r["aggressor"]),
                 float(r["fee"])))
            w = st.working.get(cl)
            if w is not None:
                w.cum = int(r["cum_qty"])
                if int(r["leaves_qty"]) <= 0:
                    del st.working[cl]
        elif k in _DONE:
            st.working.pop(cl, None)
        elif k in (ER_NEW, ER_MODIFY):
            w = st.working.get(cl)
            if w is None:
                w = st.working[cl] = WorkingOrder(cl, int(r["security_id"]), int(r["side"]),
                                                  int(r["price"]), int(r["qty"]))
            w.order_id = int(r["order_id"])
            w.price = int(r["price"])
            w.qty = int(r["qty"])
        elif k == ER_STATUS:
            if int(r["ord_status"]) in _DONE_STATUS or int(r["leaves_qty"]) <= 0:
                st.working.pop(cl, None)
            else:
                st.working[cl] = WorkingOrder(cl, int(r["security_id"]), int(r["side"]),
                                              int(r["price"]), int(r["qty"]),
                                              int(r["cum_qty"]), int(r["order_id"]))
    return st


def restore_trader(core: Any, state: JournalState) -> dict[int, int]:
    """Replay the day's fills into the TradingCore's instruments (OMS arithmetic).

    Returns {security_id: restored position}; fills of instruments not traded now
    are left out (and reported by the caller).
    """
    from core.oms import apply_fill

    index = {int(c.security_id): i for i, c in enumerate(core.instruments_config)}
    out: dict[int, int] = {}
    for sid, fills in state.fills.items():
        i = index.get(sid)
        if i is None:
            continue
        for side, qty, price, aggressor, _fee in fills:
            apply_fill(core.trader, i, side, qty, price, bool(aggressor))
        out[sid] = int(core.trader[0]["instruments"][i]["position"])
    return out


__all__ = [
    "SESSION_CLEAN_STOP",
    "SESSION_START",
    "JournalState",
    "WorkingOrder",
    "read_journal",
    "restore_trader",
    "scan_journal",
    "session_row",
    "state_row",
    "trading_day",
]
