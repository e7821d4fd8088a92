"""Unit tests of the matching engine, one rule at a time, on hand-worked books."""

from __future__ import annotations

import numpy as np
import pytest

from core.matching import MatchingEngine, make_commands
from core.types import (
    MATCH_CMD,
    MCMD_CANCEL,
    MCMD_SUBMIT,
    MD_CHANGE,
    MD_DELETE,
    MD_NEW,
    MD_NO_ORDER_ACTION,
    MMD_BOOK,
    MMD_REVEAL,
    MMD_TRADE,
    MR_BAD_INSTRUMENT,
    MR_BAD_OP,
    MR_BAD_ORDER_ID,
    MR_BAD_QTY,
    MR_BAD_SIDE,
    MR_BAD_TIF,
    MR_BOOK_FULL,
    MR_DUPLICATE_ORDER_ID,
    MR_FOK_UNFILLABLE,
    MR_IOC_REMAINDER,
    MR_MASS_CANCEL,
    MR_MODIFY_OVERFILL,
    MR_OFF_TICK,
    MR_OUTPUT_FULL,
    MR_OUTSIDE_BAND,
    MR_SESSION_END,
    MR_SMP_NEWEST,
    MR_SMP_OLDEST,
    MR_UNKNOWN_ORDER,
    MR_USER,
    MTIF_DAY,
    MTIF_FOK,
    MTIF_GTC,
    MTIF_IOC,
    MX_ACCEPTED,
    MX_CANCELLED,
    MX_EXPIRED,
    MX_FILL,
    MX_MODIFIED,
    MX_REJECTED,
    SIDE_BUY,
    SIDE_SELL,
    SMP_CANCEL_NEWEST,
    SMP_CANCEL_OLDEST,
)

BUY, SELL = SIDE_BUY, SIDE_SELL


def engine(**kw: int) -> MatchingEngine:
    args = dict(n_instruments=1, max_orders=32, tick=25, band_low=0, band_high=10_000,
                mbp_depth=3)
    args.update(kw)
    return MatchingEngine(args.pop("n_instruments"), args.pop("max_orders"), args.pop("tick"),
                          args.pop("band_low"), args.pop("band_high"),
                          mbp_depth=args.pop("mbp_depth"), **args)


def fills(eng: MatchingEngine) -> list[tuple[int, int, int, int, int]]:
    """(order_id, last_px, last_qty, leaves, aggressor) of every fill so far."""
    e = eng.execs
    f = e[e["exec_type"] == MX_FILL]
    return [(int(r["order_id"]), int(r["last_px"]), int(r["last_qty"]), int(r["leaves_qty"]),
             int(r["aggressor"])) for r in f]


def last_exec(eng: MatchingEngine) -> tuple[int, int, int]:
    r = eng.execs[-1]
    return int(r["order_id"]), int(r["exec_type"]), int(r["reason"])


def queue(eng: MatchingEngine, side: int, price: int) -> list[int]:
    for p, q in eng.book(0, side):
        if p == price:
            return [oid for oid, _, _ in q]
    return []


# --------------------------------------------------------------------------
# Price-time priority and fills
# --------------------------------------------------------------------------
def test_better_price_first_then_time_at_the_resting_price() -> None:
    eng = engine()
    eng.submit(0, 1, SELL, 5000, 3)
    eng.submit(0, 2, SELL, 4975, 2)
    eng.submit(0, 3, SELL, 5000, 4)
    eng.clear_outputs()
    eng.submit(0, 10, BUY, 5025, 6)  # crosses both levels, better price first
    assert fills(eng) == [
        (10, 4975, 2, 4, 1), (2, 4975, 2, 0, 0),  # the 4975 offer first
        (10, 5000, 3, 1, 1), (1, 5000, 3, 0, 0),  # then order 1 (earlier) at 5000
        (10, 5000, 1, 0, 1), (3, 5000, 1, 3, 0),  # then order 3, partly
    ]
    assert eng.book(0, SELL) == [(5000, [(3, 3, 3)])]
    assert eng.book(0, BUY) == []
    assert eng.n_trades == 3 and eng.volume == 6


def test_fill_records_carry_contra_and_shared_trade_id() -> None:
    eng = engine()
    eng.submit(0, 1, BUY, 5000, 5, owner=7, cl_ord_id=111)
    eng.submit(0, 2, SELL, 5000, 2, owner=8, cl_ord_id=222)
    e = eng.execs
    taker, maker = e[-2], e[-1]
    assert (taker["order_id"], taker["contra_order_id"], taker["contra_owner"]) == (2, 1, 7)
    assert (maker["order_id"], maker["contra_order_id"], maker["contra_owner"]) == (1, 2, 8)
    assert maker["cl_ord_id"] == 111 and taker["cl_ord_id"] == 222
    assert (maker["leaves_qty"], maker["cum_qty"], maker["order_qty"]) == (3, 2, 5)
    assert taker["trade_id"] == maker["trade_id"] != 0
    m = eng.mds
    trade = m[m["kind"] == MMD_TRADE][0]
    assert (trade["trade_id"], trade["order_id"], trade["taker_order_id"]) == (
        taker["trade_id"], 1, 2)
    assert (trade["price"], trade["size"], trade["side"]) == (5000, 2, SELL)
    # The maker's partial fill as MBP level 1 Change and MBO order Change.
    after = m[-1]
    assert (after["kind"], after["action"], after["order_action"]) == (MMD_BOOK, MD_CHANGE,
                                                                        MD_CHANGE)
    assert (after["price_level"], after["size"], after["display_qty"]) == (1, 3, 3)


def test_accept_comes_first_and_priority_grows() -> None:
    eng = engine()
    eng.submit(0, 1, BUY, 5000, 1)
    eng.submit(0, 2, BUY, 5000, 1)
    e = eng.execs
    assert list(e["exec_type"]) == [MX_ACCEPTED, MX_ACCEPTED]
    assert e[1]["priority"] > e[0]["priority"]
    assert eng.queue_position(2) == (1, 1)
    assert eng.queue_position(1) == (0, 0)


# --------------------------------------------------------------------------
# Time in force
# --------------------------------------------------------------------------
def test_ioc_fills_what_it_can_and_the_rest_expires() -> None:
    eng = engine()
    eng.submit(0, 1, SELL, 5000, 2)
    eng.clear_outputs()
    eng.submit(0, 2, BUY, 5025, 5, MTIF_IOC)
    assert fills(eng) == [(2, 5000, 2, 3, 1), (1, 5000, 2, 0, 0)]
    assert last_exec(eng) == (2, MX_EXPIRED, MR_IOC_REMAINDER)
    assert eng.execs[-1]["cum_qty"] == 2 and eng.execs[-1]["leaves_qty"] == 0
    assert eng.book(0, BUY) == [] and eng.book(0, SELL) == []


def test_ioc_without_match_never_rests() -> None:
    eng = engine()
    eng.submit(0, 1, BUY, 5000, 5, MTIF_IOC)
    assert last_exec(eng) == (1, MX_EXPIRED, MR_IOC_REMAINDER)
    assert eng.book(0, BUY) == [] and len(eng.mds) == 0


def test_fok_all_or_nothing() -> None:
    eng = engine()
    eng.submit(0, 1, SELL, 5000, 2)
    eng.submit(0, 2, SELL, 5025, 2)
    eng.clear_outputs()
    eng.submit(0, 3, BUY, 5025, 5, MTIF_FOK)  # 4 available: nothing trades
    assert fills(eng) == [] and last_exec(eng) == (3, MX_EXPIRED, MR_FOK_UNFILLABLE)
    assert len(eng.mds) == 0
    assert eng.book(0, SELL) == [(5000, [(1, 2, 1)]), (5025, [(2, 2, 2)])]
    eng.submit(0, 4, BUY, 5000, 3, MTIF_FOK)  # only 2 at or below 5000
    assert last_exec(eng) == (4, MX_EXPIRED, MR_FOK_UNFILLABLE)
    eng.clear_outputs()
    eng.submit(0, 5, BUY, 5025, 4, MTIF_FOK)  # exactly 4: fills across two levels
    assert [f[:3] for f in fills(eng)] == [(5, 5000, 2), (1, 5000, 2), (5, 5025, 2),
                                           (2, 5025, 2)]
    assert eng.book(0, SELL) == []


def test_gtc_survives_session_end_day_does_not() -> None:
    eng = engine()
    eng.submit(0, 1, BUY, 5000, 1, MTIF_DAY)
    eng.submit(0, 2, BUY, 5000, 1, MTIF_GTC)
    eng.submit(0, 3, SELL, 6000, 1, MTIF_DAY)
    eng.clear_outputs()
    eng.expire_day_orders()
    e = eng.execs
    assert [(int(r["order_id"]), int(r["exec_type"]), int(r["reason"])) for r in e] == [
        (1, MX_EXPIRED, MR_SESSION_END), (3, MX_EXPIRED, MR_SESSION_END)]
    assert eng.book(0, BUY) == [(5000, [(2, 1, 2)])] and eng.book(0, SELL) == []


# --------------------------------------------------------------------------
# Modify (CME cancel/replace priority rules)
# --------------------------------------------------------------------------
def test_modify_qty_down_keeps_priority() -> None:
    eng = engine()
    eng.submit(0, 1, BUY, 5000, 5)
    eng.submit(0, 2, BUY, 5000, 5)
    prio = eng.order(1)["priority"]  # type: ignore[index]
    eng.modify(1, 5000, 3)
    assert eng.order(1)["priority"] == prio  # type: ignore[index]
    assert queue(eng, BUY, 5000) == [1, 2]
    assert eng.best_bid(0) == (5000, 8, 2)
    eng.clear_outputs()
    eng.submit(0, 9, SELL, 5000, 1)
    assert fills(eng)[1][0] == 1  # still first in line


def test_modify_qty_up_loses_priority() -> None:
    eng = engine()
    eng.submit(0, 1, BUY, 5000, 5)
    eng.submit(0, 2, BUY, 5000, 5)
    prio2 = eng.order(2)["priority"]  # type: ignore[index]
    eng.modify(1, 5000, 6)
    assert eng.order(1)["priority"] > prio2  # type: ignore[index]
    assert queue(eng, BUY, 5000) == [2, 1]
    assert eng.queue_position(1) == (1, 5)
    m = eng.mds[-1]
    assert (m["action"], m["order_action"], m["size"], m["display_qty"]) == (
        MD_CHANGE, MD_CHANGE, 11, 6)
    assert m["order_priority"] == eng.order(1)["priority"]  # type: ignore[index]
    eng.clear_outputs()
    eng.submit(0, 9, SELL, 5000, 1)
    assert fills(eng)[1][0] == 2


def test_modify_price_change_loses_priority_even_back_to_the_same_price() -> None:
    eng = engine()
    eng.submit(0, 1, BUY, 5000, 5)
    eng.submit(0, 2, BUY, 5000, 5)
    eng.modify(1, 4975, 5)
    eng.modify(1, 5000, 5)
    assert queue(eng, BUY, 5000) == [2, 1]
    assert eng.execs[-1]["exec_type"] == MX_MODIFIED


def test_modify_same_everything_is_acknowledged_without_book_change() -> None:
    eng = engine()
    eng.submit(0, 1, BUY, 5000, 5, cl_ord_id=1)
    eng.clear_outputs()
    eng.modify(1, 5000, 5, cl_ord_id=2)
    assert last_exec(eng) == (1, MX_MODIFIED, 0)
    assert eng.execs[-1]["cl_ord_id"] == 2
    assert len(eng.mds) == 0


def test_modify_through_the_market_trades_as_aggressor() -> None:
    eng = engine()
    eng.submit(0, 1, SELL, 5050, 2)
    eng.submit(0, 2, BUY, 5000, 5)
    eng.clear_outputs()
    eng.modify(2, 5050, 5)
    assert eng.execs[0]["exec_type"] == MX_MODIFIED
    assert fills(eng) == [(2, 5050, 2, 3, 1), (1, 5050, 2, 0, 0)]
    assert eng.book(0, BUY)[0][0] == 5050 and eng.book(0, BUY)[0][1][0][:2] == (2, 3)
    kinds = [(int(r["kind"]), int(r["price"]), int(r["action"])) for r in eng.mds]
    assert kinds == [(MMD_BOOK, 5000, MD_DELETE), (MMD_TRADE, 5050, MD_NEW),
                     (MMD_BOOK, 5050, MD_DELETE), (MMD_BOOK, 5050, MD_NEW)]


def test_modify_quantity_is_open_qty_by_default_and_total_with_ifm() -> None:
    eng = engine()
    eng.submit(0, 1, BUY, 5000, 15)
    eng.submit(0, 2, SELL, 5000, 2)  # order 1: cum 2, leaves 13
    eng.modify(1, 5000, 10)  # CME default: 10 left open
    assert eng.order(1)["leaves"] == 10 and eng.order(1)["order_qty"] == 12  # type: ignore[index]
    eng.modify(1, 5000, 8, ifm=True)  # IFM: 8 in total, 2 done -> 6 open
    assert eng.order(1)["leaves"] == 6  # type: ignore[index]
    eng.clear_outputs()
    eng.modify(1, 5000, 2, ifm=True)  # already filled for 2: nothing left
    assert last_exec(eng) == (1, MX_CANCELLED, MR_MODIFY_OVERFILL)
    assert eng.order(1) is None and eng.book(0, BUY) == []


# --------------------------------------------------------------------------
# Self-match prevention
# --------------------------------------------------------------------------
def test_smp_default_cancels_resting_and_keeps_matching() -> None:
    eng = engine()
    eng.submit(0, 1, SELL, 5000, 2, owner=5, smp_id=77)  # own order first in line
    eng.submit(0, 2, SELL, 5000, 2, owner=6, smp_id=77)  # same SMP ID, other firm
    eng.clear_outputs()
    eng.submit(0, 3, BUY, 5000, 2, owner=5, smp_id=77)
    e = eng.execs
    assert [(int(r["order_id"]), int(r["exec_type"]), int(r["reason"])) for r in e] == [
        (3, MX_ACCEPTED, 0), (1, MX_CANCELLED, MR_SMP_OLDEST), (3, MX_FILL, 0),
        (2, MX_FILL, 0)]
    assert eng.book(0, SELL) == [] and eng.book(0, BUY) == []


def test_smp_cancel_oldest_explicit_equals_default() -> None:
    for instr in (0, SMP_CANCEL_OLDEST):
        eng = engine()
        eng.submit(0, 1, SELL, 5000, 2, owner=5, smp_id=77)
        eng.submit(0, 3, BUY, 5000, 2, owner=5, smp_id=77, smp_instr=instr)
        assert eng.order(1) is None
        assert eng.book(0, BUY) == [(5000, [(3, 2, 2)])]


def test_smp_cancel_newest_cancels_the_incoming_remainder() -> None:
    eng = engine()
    eng.submit(0, 1, SELL, 5000, 2, owner=6)
    eng.submit(0, 2, SELL, 5000, 2, owner=5, smp_id=77)
    eng.submit(0, 4, SELL, 5000, 2, owner=6)
    eng.clear_outputs()
    eng.submit(0, 3, BUY, 5000, 6, owner=5, smp_id=77, smp_instr=SMP_CANCEL_NEWEST)
    assert fills(eng) == [(3, 5000, 2, 4, 1), (1, 5000, 2, 0, 0)]
    assert last_exec(eng) == (3, MX_CANCELLED, MR_SMP_NEWEST)
    assert eng.execs[-1]["cum_qty"] == 2
    assert queue(eng, SELL, 5000) == [2, 4]  # the resting own order stays
    assert eng.book(0, BUY) == []


def test_no_smp_without_an_smp_id_or_across_firms() -> None:
    eng = engine()
    eng.submit(0, 1, SELL, 5000, 1, owner=5)
    eng.submit(0, 2, BUY, 5000, 1, owner=5)  # same firm, no SMP ID: trades (wash risk is
    assert len(fills(eng)) == 2  # the client's to manage, as at CME)
    eng.submit(0, 3, SELL, 5000, 1, owner=5, smp_id=1)
    eng.submit(0, 4, BUY, 5000, 1, owner=6, smp_id=1)  # same ID, other firm: trades
    assert len(fills(eng)) == 4


def test_fok_does_not_count_own_orders() -> None:
    eng = engine()
    eng.submit(0, 1, SELL, 5000, 3, owner=5, smp_id=9)
    eng.submit(0, 2, SELL, 5000, 2, owner=6)
    eng.clear_outputs()
    eng.submit(0, 3, BUY, 5000, 3, MTIF_FOK, owner=5, smp_id=9)  # only 2 tradable
    assert last_exec(eng) == (3, MX_EXPIRED, MR_FOK_UNFILLABLE)
    assert queue(eng, SELL, 5000) == [1, 2]  # nothing cancelled by an unfillable FOK
    eng.clear_outputs()
    eng.submit(0, 4, BUY, 5000, 2, MTIF_FOK, owner=5, smp_id=9)
    assert [(int(r["order_id"]), int(r["exec_type"])) for r in eng.execs] == [
        (4, MX_ACCEPTED), (1, MX_CANCELLED), (4, MX_FILL), (2, MX_FILL)]


# --------------------------------------------------------------------------
# Rejects
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("instrument", "order_id", "side", "price", "qty", "tif", "reason"),
    [
        (1, 1, BUY, 5000, 1, MTIF_DAY, MR_BAD_INSTRUMENT),
        (-1, 1, BUY, 5000, 1, MTIF_DAY, MR_BAD_INSTRUMENT),
        (0, 1, 0, 5000, 1, MTIF_DAY, MR_BAD_SIDE),
        (0, 1, BUY, 5000, 1, 2, MR_BAD_TIF),
        (0, 0, BUY, 5000, 1, MTIF_DAY, MR_BAD_ORDER_ID),
        (0, 1, BUY, 5000, 0, MTIF_DAY, MR_BAD_QTY),
        (0, 1, BUY, 5000, -3, MTIF_DAY, MR_BAD_QTY),
        (0, 1, BUY, 5000, 2_000_000_000, MTIF_DAY, MR_BAD_QTY),
        (0, 1, BUY, 5010, 1, MTIF_DAY, MR_OFF_TICK),
        (0, 1, BUY, 10_025, 1, MTIF_DAY, MR_OUTSIDE_BAND),
        (0, 1, BUY, -25, 1, MTIF_DAY, MR_OUTSIDE_BAND),
    ],
)
def test_submit_rejects(instrument: int, order_id: int, side: int, price: int, qty: int,
                        tif: int, reason: int) -> None:
    eng = engine()
    eng.submit(instrument, order_id, side, price, qty, tif, cl_ord_id=42)
    r = eng.execs[-1]
    assert (r["exec_type"], r["reason"], r["op"], r["cl_ord_id"]) == (MX_REJECTED, reason,
                                                                       MCMD_SUBMIT, 42)
    assert eng.n_resting == 0 and len(eng.mds) == 0
    assert sum(eng.reject_counts().values()) == 1


def test_duplicate_id_unknown_order_and_other_owners_order() -> None:
    eng = engine()
    eng.submit(0, 1, BUY, 5000, 1, owner=3)
    eng.submit(0, 1, SELL, 6000, 1, owner=3)
    assert last_exec(eng) == (1, MX_REJECTED, MR_DUPLICATE_ORDER_ID)
    eng.cancel(99, owner=3)
    assert last_exec(eng) == (99, MX_REJECTED, MR_UNKNOWN_ORDER)
    eng.cancel(1, owner=4)  # not yours
    assert last_exec(eng) == (1, MX_REJECTED, MR_UNKNOWN_ORDER)
    eng.modify(1, 5025, 1, owner=4)
    assert last_exec(eng) == (1, MX_REJECTED, MR_UNKNOWN_ORDER)
    eng.modify(1, 5010, 1, owner=3)
    assert last_exec(eng) == (1, MX_REJECTED, MR_OFF_TICK)
    eng.modify(1, 5000, 0, owner=3)
    assert last_exec(eng) == (1, MX_REJECTED, MR_BAD_QTY)
    eng.cancel(1, owner=3)
    assert last_exec(eng) == (1, MX_CANCELLED, MR_USER)
    eng.cancel(1, owner=3)
    assert last_exec(eng) == (1, MX_REJECTED, MR_UNKNOWN_ORDER)
    assert eng.reject_counts() == {"duplicate_order_id": 1, "unknown_order": 4,
                                   "off_tick": 1, "bad_qty": 1}


def test_bad_op_and_book_full() -> None:
    eng = engine(max_orders=2)
    cmds = make_commands(1)
    cmds[0]["op"] = 77
    eng.process(cmds)
    assert (eng.execs[-1]["exec_type"], eng.execs[-1]["reason"]) == (MX_REJECTED, MR_BAD_OP)
    eng.submit(0, 1, BUY, 5000, 1)
    eng.submit(0, 2, BUY, 5000, 1)
    eng.submit(0, 3, BUY, 5000, 1)
    assert last_exec(eng) == (3, MX_REJECTED, MR_BOOK_FULL)
    eng.submit(0, 4, SELL, 5000, 1, MTIF_IOC)  # IOC needs no slot
    assert fills(eng)[0][0] == 4
    eng.submit(0, 5, BUY, 5000, 1)  # a slot was freed by the fill
    assert eng.n_resting == 2


# --------------------------------------------------------------------------
# Market data: MBP levels, MBO orders, reveal
# --------------------------------------------------------------------------
def test_md_levels_as_mbp_publishes_them() -> None:
    eng = engine(mbp_depth=2)
    eng.submit(0, 1, BUY, 5000, 1)
    eng.submit(0, 2, BUY, 4950, 2)
    eng.submit(0, 3, BUY, 4975, 3)  # between: level 2, pushes 4950 to level 3
    eng.submit(0, 4, BUY, 4975, 1)  # same level: Change
    rows = [(int(r["price"]), int(r["price_level"]), int(r["action"]), int(r["size"]),
             int(r["num_orders"]), int(r["order_action"])) for r in eng.mds]
    assert rows == [(5000, 1, MD_NEW, 1, 1, MD_NEW), (4950, 2, MD_NEW, 2, 1, MD_NEW),
                    (4975, 2, MD_NEW, 3, 1, MD_NEW), (4975, 2, MD_CHANGE, 4, 2, MD_NEW)]
    eng.clear_outputs()
    eng.cancel(1)  # level 1 goes: 4950 moves up into the 2-deep view
    rows = [(int(r["kind"]), int(r["price"]), int(r["price_level"]), int(r["action"]),
             int(r["size"]), int(r["order_action"])) for r in eng.mds]
    assert rows == [(MMD_BOOK, 5000, 1, MD_DELETE, 0, MD_DELETE),
                    (MMD_REVEAL, 4950, 2, MD_NEW, 2, MD_NO_ORDER_ACTION)]
    eng.clear_outputs()
    eng.cancel(2)  # level 2 of 2: nothing below to reveal
    assert [int(r["kind"]) for r in eng.mds] == [MMD_BOOK]


def test_mbo_fields_on_book_rows() -> None:
    eng = engine()
    eng.submit(0, 11, SELL, 5100, 4)
    eng.submit(0, 12, SELL, 5100, 6)
    r = eng.mds[-1]
    assert (r["order_id"], r["display_qty"], r["order_priority"], r["side"]) == (
        12, 6, eng.order(12)["priority"], SELL)  # type: ignore[index]
    eng.clear_outputs()
    eng.cancel(11)
    r = eng.mds[-1]
    assert (r["order_id"], r["order_action"], r["action"], r["size"], r["num_orders"]) == (
        11, MD_DELETE, MD_CHANGE, 6, 1)


# --------------------------------------------------------------------------
# Mass cancel, capacity, ladder edges
# --------------------------------------------------------------------------
def test_mass_cancel_only_the_owners_orders() -> None:
    eng = engine(n_instruments=2)
    eng.submit(0, 1, BUY, 5000, 1, owner=1)
    eng.submit(0, 2, BUY, 5000, 1, owner=2)
    eng.submit(1, 3, SELL, 6000, 1, owner=1)
    eng.submit(0, 4, SELL, 6000, 1, owner=1)
    eng.clear_outputs()
    eng.mass_cancel(1, instrument=0, side=BUY)
    assert [int(r["order_id"]) for r in eng.execs] == [1]
    eng.clear_outputs()
    eng.mass_cancel(1)
    assert sorted(int(r["order_id"]) for r in eng.execs) == [3, 4]
    assert set(eng.execs["reason"]) == {MR_MASS_CANCEL}
    assert eng.n_resting == 1 and eng.order(2) is not None


def test_process_stops_when_outputs_are_full_and_resumes() -> None:
    eng = engine(exec_capacity=16, md_capacity=16)
    cmds = np.zeros(40, dtype=MATCH_CMD)
    cmds["op"] = MCMD_SUBMIT
    cmds["order_id"] = np.arange(1, 41)
    cmds["side"] = BUY
    cmds["price"] = 5000
    cmds["qty"] = 1
    k = eng.process(cmds)
    assert 0 < k < 40 and len(eng.execs) <= 16
    seen = []
    while True:
        seen += [int(r["cmd_index"]) for r in eng.execs]
        eng.clear_outputs()
        if k == 40:
            break
        k = eng.process(cmds, k)
    assert seen == list(range(40)) and eng.n_resting == 32  # 32 = max_orders
    assert eng.reject_counts() == {"book_full": 8}


def test_command_larger_than_the_outputs_is_rejected_without_effect() -> None:
    eng = engine(exec_capacity=16, md_capacity=64)
    for i in range(10):
        eng.submit(0, i + 1, SELL, 5000, 1)
    eng.clear_outputs()
    eng.submit(0, 99, BUY, 5000, 10)  # 10 makers: 2 + 2*10 exec rows > 16
    assert last_exec(eng) == (99, MX_REJECTED, MR_OUTPUT_FULL)
    assert eng.best_ask(0) == (5000, 10, 10) and len(eng.mds) == 0
    assert not eng.submit(0, 98, BUY, 5000, 7)  # 7 makers fit, but not behind the reject
    eng.clear_outputs()
    assert eng.submit(0, 98, BUY, 5000, 7)
    assert eng.best_ask(0) == (5000, 3, 3) and len(eng.execs) == 15  # accept + 14 fills


def test_ladder_across_bitmap_words_and_band_edges() -> None:
    eng = MatchingEngine(1, 64, 1, 1000, 1299, mbp_depth=10)  # 300 ticks: 5 words
    for oid, px in enumerate([1000, 1063, 1064, 1127, 1128, 1299], start=1):
        eng.submit(0, oid, BUY, px, oid)
    bids, asks = eng.depth(0, 10)
    assert [int(p) for p in bids["price"]] == [1299, 1128, 1127, 1064, 1063, 1000]
    assert list(bids["qty"]) == [6, 5, 4, 3, 2, 1] and len(asks) == 0
    for oid in (6, 5, 4):
        eng.cancel(oid)
    assert eng.best_bid(0) == (1064, 3, 1)
    eng.submit(0, 20, SELL, 1000, 100, MTIF_IOC)  # sweeps every level down to 1000
    assert eng.best_bid(0) is None and eng.volume == 6
    eng.submit(0, 21, SELL, 1000, 1)
    eng.submit(0, 22, SELL, 1299, 1)
    assert eng.best_ask(0) == (1000, 1, 1)
    eng.cancel(21)
    assert eng.best_ask(0) == (1299, 1, 1)


def test_uint64_ids_round_trip() -> None:
    eng = engine()
    big = (1 << 64) - 3
    eng.submit(0, big, BUY, 5000, 1, smp_id=(1 << 63) + 1, cl_ord_id=(1 << 64) - 1)
    assert int(eng.execs[-1]["order_id"]) == big
    assert int(eng.execs[-1]["cl_ord_id"]) == (1 << 64) - 1
    assert eng.order(big)["smp_id"] == (1 << 63) + 1  # type: ignore[index]
    assert eng.book(0, BUY)[0][1][0][0] == big
    eng.cancel(big)
    assert last_exec(eng) == (big, MX_CANCELLED, MR_USER)


def test_many_orders_hash_table_churn() -> None:
    """Ids colliding in the table, removed in every order, are all still found."""
    rng = np.random.default_rng(3)
    eng = engine(max_orders=512, exec_capacity=1 << 12, md_capacity=1 << 12)
    ids = rng.choice(1 << 40, size=512, replace=False) + 1
    for oid in ids:
        eng.submit(0, int(oid), BUY, 25 * int(rng.integers(1, 100)), 1)
    assert eng.n_resting == 512
    order = rng.permutation(512)
    for j, k in enumerate(order):
        eng.clear_outputs()
        eng.cancel(int(ids[k]))
        assert last_exec(eng)[1] == MX_CANCELLED
        if j % 64 == 0:
            assert all(eng.order(int(ids[m])) is not None for m in order[j + 1:])
    assert eng.n_resting == 0 and eng.best_bid(0) is None


def test_cancel_records_cmd_index_of_the_batch() -> None:
    eng = engine()
    cmds = make_commands(3)
    cmds["op"] = [MCMD_SUBMIT, MCMD_SUBMIT, MCMD_CANCEL]
    cmds["order_id"] = [1, 2, 1]
    cmds["side"] = BUY
    cmds["price"] = 5000
    cmds["qty"] = 1
    cmds["transact_time"] = [10, 20, 30]
    assert eng.process(cmds) == 3
    assert list(eng.execs["cmd_index"]) == [0, 1, 2]
    assert list(eng.execs["transact_time"]) == [10, 20, 30]
    assert list(eng.mds["cmd_index"]) == [0, 1, 2]


@pytest.mark.parametrize(
    "kw",
    [dict(tick=0), dict(band_low=10), dict(band_high=-25), dict(max_orders=0),
     dict(exec_capacity=8), dict(mbp_depth=-1), dict(tick=[25, 25])],
)
def test_constructor_validates(kw: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        engine(**kw)
