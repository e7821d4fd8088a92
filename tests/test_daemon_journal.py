"""The journal read back at start: positions, the day's P&L, working orders, ClOrdIDs;
and the hot loop's journal/latency kernels against plain-Python references."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from core.risk import RiskLimits
from core.trading import InstrumentConfig, TradingCore
from core.types import (
    ACT_CANCEL,
    ACT_NEW,
    ER_CANCEL,
    ER_FILL,
    ER_NEW,
    ER_STATUS,
    EXEC_REPORT,
    ORDER_ACTION,
    ORDER_SLOT_BITS,
    OS_WORKING,
    SIDE_BUY,
    SIDE_SELL,
)
from daemon.journal import (
    SESSION_CLEAN_STOP,
    SESSION_START,
    read_journal,
    restore_trader,
    scan_journal,
    session_row,
    trading_day,
)
from daemon.kernels import _journal_push, _observe_tick, byte_rows
from daemon.shm import Ring
from daemon.telemetry import (
    HIST_WIDTH,
    J_EXEC_REPORT,
    J_ORDER_ACTION,
    JOURNAL_RECORD,
    LATENCY_BUCKETS_NS,
    journal_rows,
    observe_latency,
)

DAY = 20250102
TICK = 25_000_000_000  # ES in PRICE9
TV = 12.5


def _action(cl: int, side: int, px: int, qty: int, kind: int = ACT_NEW) -> np.ndarray:
    a = np.zeros(1, ORDER_ACTION)
    a["cl_ord_id"], a["side"], a["price"], a["qty"], a["action"] = cl, side, px, qty, kind
    a["security_id"] = 5602
    return a


def _report(kind: int, cl: int, side: int, px: int, qty: int, leaves: int = 0, cum: int = 0,
            exec_id: int = 0, status: int = 0, sid: int = 5602) -> np.ndarray:
    r = np.zeros(1, EXEC_REPORT)
    r["kind"], r["cl_ord_id"], r["side"], r["price"], r["qty"] = kind, cl, side, px, qty
    r["leaves_qty"], r["cum_qty"], r["exec_id"], r["ord_status"] = leaves, cum, exec_id, status
    r["security_id"] = sid
    return r


def _cl(seq: int, slot: int) -> int:
    return (seq << ORDER_SLOT_BITS) | slot


def _rows(*parts: tuple[int, np.ndarray]) -> np.ndarray:
    return np.concatenate([p if k == 0 else journal_rows(k, p, 0) for k, p in parts])


def _avg_cost_reference(fills: list[tuple[int, int, int]]) -> tuple[int, float]:
    """Naive average-cost book: (position, realised currency) of (side, qty, px) fills."""
    pos, cost, realised = 0, 0.0, 0.0
    for side, qty, px in fills:
        for _ in range(qty):  # one contract at a time: the plainest possible arithmetic
            q = 1 if side == SIDE_BUY else -1
            if pos == 0 or (pos > 0) == (q > 0):
                cost += q * px / TICK
                pos += q
            else:
                avg = cost / pos
                realised += (1 if pos > 0 else -1) * (px / TICK - avg) * TV
                pos += q
                cost = avg * pos
    return pos, realised


def test_scan_restores_positions_pnl_working_orders_and_cl_ord_ids(tmp_path) -> None:
    px0 = 200_000 * TICK
    fills = [(SIDE_BUY, 2, px0), (SIDE_BUY, 1, px0 + TICK), (SIDE_SELL, 2, px0 + 3 * TICK),
             (SIDE_SELL, 3, px0 + 2 * TICK)]
    rows = [session_row(SESSION_START, 1, DAY - 1, 0),
            journal_rows(J_EXEC_REPORT, _report(ER_FILL, _cl(1, 1), SIDE_BUY, px0, 7, exec_id=1),
                         0),  # yesterday: not today's position
            journal_rows(J_ORDER_ACTION, _action(_cl(90, 3), SIDE_BUY, px0, 1), 0),
            session_row(SESSION_START, 2, DAY, 0)]
    for j, (side, qty, px) in enumerate(fills):
        cl = _cl(100 + j, j)
        rows.append(journal_rows(J_ORDER_ACTION, _action(cl, side, px, qty), 0))
        rows.append(journal_rows(J_EXEC_REPORT, _report(ER_NEW, cl, side, px, qty, qty), 0))
        rep = _report(ER_FILL, cl, side, px, qty, 0, qty, exec_id=1000 + j)
        rows.append(journal_rows(J_EXEC_REPORT, rep, 0))
        if j == 1:  # a retransmitted fill: counted once
            rows.append(journal_rows(J_EXEC_REPORT, rep, 0))
    # one order still working, one cancelled, one known only from a status report
    rows.append(journal_rows(J_ORDER_ACTION, _action(_cl(200, 7), SIDE_SELL, px0 + 9 * TICK, 1),
                             0))
    rows.append(journal_rows(J_EXEC_REPORT, _report(ER_NEW, _cl(200, 7), SIDE_SELL,
                                                    px0 + 9 * TICK, 1, 1), 0))
    rows.append(journal_rows(J_ORDER_ACTION, _action(_cl(201, 8), SIDE_BUY, px0, 1), 0))
    rows.append(journal_rows(J_ORDER_ACTION, _action(_cl(201, 8), SIDE_BUY, px0, 0, ACT_CANCEL),
                             0))
    rows.append(journal_rows(J_EXEC_REPORT, _report(ER_CANCEL, _cl(201, 8), SIDE_BUY, px0, 1), 0))
    rows.append(journal_rows(J_EXEC_REPORT, _report(ER_STATUS, _cl(150, 9), SIDE_BUY, px0 - TICK,
                                                    2, 2, 0, status=OS_WORKING), 0))
    data = np.concatenate(rows)
    path = tmp_path / "journal.bin"
    path.write_bytes(data.tobytes() + b"\x01\x02\x03")  # a torn last row is ignored
    back = read_journal(path)
    assert back.shape[0] == data.shape[0]
    st = scan_journal(back, DAY)
    assert st.sessions == 1 and not st.last_session_clean
    assert sorted(st.working) == [_cl(150, 9), _cl(200, 7)]
    assert st.next_cl_seq == 202  # above every ClOrdID ever journaled
    ref_pos, ref_realised = _avg_cost_reference(fills)
    assert st.position(5602) == ref_pos == -2
    core = TradingCore([InstrumentConfig(5602, TICK, TV)], RiskLimits())
    core.finish_startup()
    assert restore_trader(core, st) == {5602: ref_pos}
    inst = core.trader[0]["instruments"][0]
    assert inst["realised"] == pytest.approx(ref_realised)
    assert int(inst["n_fills"]) == len(fills)

    clean = np.concatenate([data, session_row(SESSION_CLEAN_STOP, 2, DAY, 0)])
    assert scan_journal(clean, DAY).last_session_clean
    assert scan_journal(clean, DAY + 1).fills == {}  # a new day starts flat


def test_trading_day_rolls_at_17h_chicago() -> None:
    chicago = dt.timezone(dt.timedelta(hours=-6))  # January: CST
    before = dt.datetime(2025, 1, 2, 16, 59, tzinfo=chicago)
    after = dt.datetime(2025, 1, 2, 17, 1, tzinfo=chicago)
    assert trading_day(int(before.timestamp() * 1e9)) == 20250102
    assert trading_day(int(after.timestamp() * 1e9)) == 20250103


def test_journal_push_kernel_equals_ring_push() -> None:
    rng = np.random.default_rng(3)
    acts = np.zeros(10, ORDER_ACTION)
    for name in ("cl_ord_id", "price", "qty", "security_id", "side"):
        acts[name] = rng.integers(0, 1000, 10)

    def block(cap: int) -> dict[str, np.ndarray]:
        return {"journal.records": np.zeros(cap, JOURNAL_RECORD),
                "journal.head": np.zeros(8, np.int64), "journal.tail": np.zeros(8, np.int64)}

    a, b = block(8), block(8)
    ring_b = Ring(b, "journal")
    for k in (3, 4, 5):  # the third push overflows: both count the same loss
        n = _journal_push(a["journal.records"], a["journal.head"], a["journal.tail"],
                          byte_rows(acts), k, J_ORDER_ACTION, 42)
        m = ring_b.push(journal_rows(J_ORDER_ACTION, acts[:k], 42))
        assert n == m
    assert np.array_equal(a["journal.records"], b["journal.records"])
    assert a["journal.tail"][1] == b["journal.tail"][1] == 4


def test_observe_tick_matches_reference() -> None:
    hist = np.zeros((6, HIST_WIDTH), np.int64)
    ref = np.zeros_like(hist)
    samples = np.zeros(5, np.int64)  # 4 slots + the count
    ticks = np.zeros(5, np.int64)
    rng = np.random.default_rng(1)
    for i in range(20):
        t = np.cumsum(rng.integers(0, 20_000_000, 5))
        stamps = np.array([int(rng.integers(0, 50_000)), *t], dtype=np.int64)
        if i % 3 == 0:
            stamps[3] = -1  # no model this tick
        sent = i % 2
        _observe_tick(hist, LATENCY_BUCKETS_NS, stamps, samples, ticks, sent)
        observe_latency(ref, 0, int(stamps[0]))
        observe_latency(ref, 1, int(stamps[2] - stamps[1]))
        prev = stamps[2]
        if stamps[3] >= 0:
            observe_latency(ref, 2, int(stamps[3] - stamps[2]))
            prev = stamps[3]
        observe_latency(ref, 3, int(stamps[4] - prev))
        if sent:
            observe_latency(ref, 4, int(stamps[5] - stamps[4]))
            observe_latency(ref, 5, int(stamps[5] - stamps[1]))
    assert np.array_equal(hist, ref)
    assert samples[-1] == 10 and ticks[-1] == 20


def test_fills_sharing_an_exec_id_all_count_and_a_resent_one_counts_once() -> None:
    px = 200_000 * TICK
    a = _report(ER_FILL, _cl(5, 1), SIDE_BUY, px, 1, 0, 1, exec_id=777)
    b = _report(ER_FILL, _cl(6, 2), SIDE_BUY, px, 2, 0, 2, exec_id=777)  # same match id
    rows = np.concatenate([session_row(SESSION_START, 1, DAY, 0),
                           journal_rows(J_EXEC_REPORT, a, 0), journal_rows(J_EXEC_REPORT, b, 0),
                           journal_rows(J_EXEC_REPORT, b, 0)])  # b retransmitted
    assert scan_journal(rows, DAY).position(5602) == 3


def test_the_last_order_session_sequence_is_restored() -> None:
    from core.fixp import SEQ_NEXT_RECV, SEQ_NEXT_SEND, SEQ_UUID, new_seq_array
    from daemon.telemetry import J_GATEWAY_SEQ

    rows = [session_row(SESSION_START, 1, DAY, 0)]
    seq = new_seq_array()
    uuid = (1 << 63) + 12345  # UUIDs are uint64: the top bit survives the int64 round trip
    for next_recv in (5, 9):
        seq[SEQ_NEXT_RECV], seq[SEQ_NEXT_SEND] = next_recv, next_recv + 100
        seq[SEQ_UUID] = np.int64(np.uint64(uuid).view(np.int64))
        # what the hot loop journals: the raw first four int64 of the array
        rows.append(journal_rows(J_GATEWAY_SEQ, seq[:4].view(np.uint8).reshape(1, 32)
                                 .view(np.dtype([("raw", np.uint8, (32,))])).reshape(1), 0))
    st = scan_journal(np.concatenate(rows), DAY)
    assert st.gateway_seq == (uuid, 9, 109)
