"""MBP books: the kernels (through ``MarketState``) against a naive book in plain Python.

``NaiveMarket`` re-implements CME's MDP 3.0 book rules with lists and dicts, row by
row, independently of the kernels. It is also used by the MBO, feature and market
tests.
"""

from __future__ import annotations

import glob
import itertools
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.market import MarketState
from core.types import (
    EV_BOOK,
    EV_CHANNEL_RESET,
    EV_ORDER,
    EV_ORDER_REF,
    EV_SNAPSHOT,
    EV_SNAPSHOT_ENTRY,
    EV_STAT,
    EV_STATUS,
    EV_TRADE,
    EV_VOLUME,
    FLAG_END_OF_EVENT,
    FLAG_LAST_IN_MSG,
    IS_BID_CLEAN,
    IS_DEPTH,
    IS_SECURITY_ID,
    MD_EVENT,
)

NULL = (1 << 63) - 1
NULL_I32 = (1 << 31) - 1
BID, ASK, IBID, IASK = "0", "1", "E", "F"
NEW, CHANGE, DELETE, DELETE_THRU, DELETE_FROM, OVERLAY = range(6)
MBO_SNAPSHOTS = (44, 53)
TOP_ORDERS = 59
PCAPS = os.path.join(os.environ.get("NANOARB_REFERENCE", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "reference")),
    "pcap")


# --------------------------------------------------------------------------
# naive reference
# --------------------------------------------------------------------------
@dataclass
class NaiveInstrument:
    sid: int
    depth: int = 10
    channel: int = -1
    rpt: int = 0
    sides: dict[str, list[tuple[int, int, int] | None]] = field(default_factory=dict)
    # order id -> (side, px, qty, priority)
    orders: dict[int, tuple[str, int, int, int]] = field(default_factory=dict)
    snap_key: int = -1

    def __post_init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.sides = {BID: [None] * self.depth, ASK: [None] * self.depth,
                      IBID: [None] * 2, IASK: [None] * 2}

    def levels(self) -> list[list[int | None]]:
        """Outright book as the CLI prints it: 10 x (bid px,q,o, ask px,q,o)."""
        out = []
        for k in range(10):
            row: list[int | None] = []
            for s in (BID, ASK):
                lv = self.sides[s][k] if k < self.depth else None
                row += list(lv) if lv is not None else [None, None, None]
            out.append(row)
        return out

    def consolidated(self, side: str) -> list[tuple[int, int, int]]:
        """Outright + implied merged by price (naively: sum quantities per price)."""
        imp = IBID if side == BID else IASK
        agg: dict[int, list[int]] = {}
        for lv in self.sides[side] + self.sides[imp]:
            if lv is not None:
                a = agg.setdefault(lv[0], [0, 0])
                a[0] += lv[1]
                a[1] += lv[2]
        prices = sorted(agg, reverse=(side == BID))[:10]
        return [(p, agg[p][0], agg[p][1]) for p in prices]


class NaiveMarket:
    def __init__(self, depth: dict[int, int] | None = None) -> None:
        self.depth = depth or {}
        self.books: dict[int, NaiveInstrument] = {}
        self.touched: list[int] = []
        self.records: list[tuple[int, int, list[list[int | None]]]] = []

    def book(self, sid: int) -> NaiveInstrument:
        if sid not in self.books:
            self.books[sid] = NaiveInstrument(sid, depth=self.depth.get(sid, 10))
        return self.books[sid]

    def _touch(self, sid: int) -> None:
        if sid not in self.touched:
            self.touched.append(sid)

    def _rpt_ok(self, b: NaiveInstrument, rpt: int) -> bool:
        if rpt in (0, 0xFFFFFFFF):
            return True
        if b.rpt and rpt <= b.rpt:
            return False
        b.rpt = rpt
        return True

    @staticmethod
    def _level_op(lst: list[Any], action: int, level: int, entry: tuple[int, int, int]) -> None:
        n = len(lst)
        if action == DELETE_THRU:
            lst[:] = [None] * n
            return
        if not 1 <= level <= n:
            return
        i = level - 1
        if action in (CHANGE, OVERLAY):
            lst[i] = entry
        elif action == NEW:
            lst.insert(i, entry)
            del lst[n:]
        elif action == DELETE:
            del lst[i]
            lst.append(None)
        elif action == DELETE_FROM:
            lst[:] = lst[level:] + [None] * level

    def _order(self, b: NaiveInstrument, e: Any) -> None:
        oid = int(e["order_id"])
        et = chr(int(e["entry_type"]))
        if et == "J":
            b.orders.clear()
            return
        if et not in (BID, ASK):
            return
        act = int(e["action"])
        if act == DELETE:
            b.orders.pop(oid, None)
        elif act in (NEW, CHANGE):
            for other in self.books.values():  # an order id moves with its updates
                other.orders.pop(oid, None)
            b.orders[oid] = (et, int(e["price"]), _q(e["size"]), int(e["aux"]))

    def apply(self, e: Any) -> None:
        self._apply_row(e)
        kind = int(e["kind"])
        flags = int(e["flags"])
        if flags & FLAG_END_OF_EVENT or (flags & FLAG_LAST_IN_MSG and kind in (
                EV_SNAPSHOT, EV_SNAPSHOT_ENTRY)):
            for s in self.touched:
                self.records.append((int(e["msg_seq"]), s, self.books[s].levels()))
            self.touched = []

    def _apply_row(self, e: Any) -> None:
        kind = int(e["kind"])
        sid = int(e["security_id"])
        if kind == EV_BOOK:
            b = self.book(sid)
            if not self._rpt_ok(b, int(e["rpt_seq"])):
                return
            self._touch(sid)
            et = chr(int(e["entry_type"]))
            if et == "J":
                b.clear()
                b.orders.clear()
                return
            act = int(e["action"])
            if et not in b.sides or (int(e["price"]) == NULL and act != DELETE):
                return
            no = int(e["num_orders"])
            self._level_op(b.sides[et], act, int(e["price_level"]),
                           (int(e["price"]), _q(e["size"]), 0 if no == NULL_I32 else no))
        elif kind in (EV_ORDER, EV_ORDER_REF):
            b = self.book(sid)
            self._touch(sid)
            self._order(b, e)
        elif kind in (EV_TRADE, EV_VOLUME, EV_STAT):
            b = self.book(sid)
            if self._rpt_ok(b, int(e["rpt_seq"])):
                self._touch(sid)
        elif kind == EV_STATUS:
            if sid != 0:
                self.book(sid)
                self._touch(sid)
        elif kind == EV_CHANNEL_RESET:
            appl = int(e["aux"])
            for b in self.books.values():
                if b.channel == appl or b.channel < 0 or appl < 0:
                    b.clear()
                    b.orders.clear()
                    b.rpt = 0
                    self._touch(b.sid)
        elif kind == EV_SNAPSHOT:
            b = self.book(sid)
            self._touch(sid)
            tid = int(e["template_id"])
            if tid in MBO_SNAPSHOTS:
                if int(e["rpt_seq"]) == 1 or int(e["aux"]) != b.snap_key:
                    b.orders.clear()
                    b.snap_key = int(e["aux"])
            elif tid != TOP_ORDERS:
                b.clear()
                if int(e["rpt_seq"]) != 0xFFFFFFFF:
                    b.rpt = int(e["rpt_seq"])
        elif kind == EV_SNAPSHOT_ENTRY:
            tid = int(e["template_id"])
            if tid == TOP_ORDERS:
                return
            b = self.book(sid)
            self._touch(sid)
            et = chr(int(e["entry_type"]))
            if tid in MBO_SNAPSHOTS:
                if et in (BID, ASK):
                    b.orders[int(e["order_id"])] = (et, int(e["price"]), _q(e["size"]),
                                                    int(e["aux"]))
            elif et in b.sides and int(e["price"]) != NULL:
                lst = b.sides[et]
                lvl = int(e["price_level"])
                if 1 <= lvl <= len(lst):
                    no = int(e["num_orders"])
                    lst[lvl - 1] = (int(e["price"]), _q(e["size"]), 0 if no == NULL_I32 else no)

    def run(self, events: np.ndarray) -> NaiveMarket:
        for e in events:
            self.apply(e)
        return self


def _q(v: Any) -> int:
    v = int(v)
    return 0 if v == NULL else v


def kernel_levels(rec: dict[str, Any], i: int) -> list[list[int | None]]:
    out = []
    for row in rec["levels"][i].tolist():
        cells: list[int | None] = []
        for s in (0, 3):
            if row[s] == NULL:
                cells += [None, None, None]
            else:
                cells += row[s:s + 3]
        out.append(cells)
    return out


def assert_same_records(rec: dict[str, Any], naive: NaiveMarket) -> None:
    assert rec["security_id"].size == len(naive.records)
    for i, (seq, sid, levels) in enumerate(naive.records):
        assert int(rec["seq"][i]) == seq
        assert int(rec["security_id"][i]) == sid
        assert kernel_levels(rec, i) == levels, f"record {i} sid {sid}"


# --------------------------------------------------------------------------
# event construction
# --------------------------------------------------------------------------
class Stream:
    """Builds MD_EVENT rows; ``end()`` marks the last row as the end of an event."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.seq = 1

    def add(self, kind: int, **f: Any) -> None:
        f.setdefault("msg_seq", self.seq)
        f.setdefault("num_orders", 1)
        f.setdefault("transact_time", 1_000_000_000 * self.seq)
        f["kind"] = kind
        for k in ("entry_type",):
            if isinstance(f.get(k), str):
                f[k] = ord(f[k])
        self.rows.append(f)

    def end(self, snapshot: bool = False) -> None:
        if self.rows:
            self.rows[-1]["flags"] = self.rows[-1].get("flags", 0) | FLAG_LAST_IN_MSG | (
                0 if snapshot else FLAG_END_OF_EVENT)
        self.seq += 1

    def array(self) -> np.ndarray:
        ev = np.zeros(len(self.rows), dtype=MD_EVENT)
        for i, r in enumerate(self.rows):
            for k, v in r.items():
                ev[i][k] = v
        return ev


def replay_both(events: np.ndarray, depth: dict[int, int], max_instruments: int = 8
                ) -> tuple[MarketState, dict[str, Any], NaiveMarket]:
    state = MarketState(max_instruments=max_instruments, ring_len=4, max_orders=4096)
    for sid, d in depth.items():
        state.add_instrument(sid, depth=d)
    rec = state.apply_events(events, record=True)
    naive = NaiveMarket(depth)
    for sid in depth:  # registered instruments exist before any row (a reset touches them)
        naive.book(sid)
    naive.run(events)
    return state, rec, naive


# --------------------------------------------------------------------------
# unit cases of the MDP 3.0 rules
# --------------------------------------------------------------------------
def _book_rows(s: Stream, sid: int, ops: list[tuple[int, str, int, int, int]], rpt0: int) -> int:
    rpt = rpt0
    for act, et, lvl, px, q in ops:
        rpt += 1
        s.add(EV_BOOK, security_id=sid, rpt_seq=rpt, action=act, entry_type=et, price_level=lvl,
              price=px, size=q)
    s.end()
    return rpt


def test_new_and_delete_shift_levels() -> None:
    s = Stream()
    r = _book_rows(s, 7, [(NEW, BID, 1, 100, 1), (NEW, BID, 1, 101, 2), (NEW, BID, 3, 98, 3)], 0)
    r = _book_rows(s, 7, [(DELETE, BID, 1, 101, 0)], r)
    state, rec, naive = replay_both(s.array(), {7: 3})
    assert_same_records(rec, naive)
    assert state.levels_of(7, "bid") == [(100, 1, 1), (98, 3, 1), None]
    # after the first event: 101, 100, 98
    assert kernel_levels(rec, 0)[:3] == [[101, 2, 1, None, None, None],
                                          [100, 1, 1, None, None, None],
                                          [98, 3, 1, None, None, None]]


def test_new_at_full_depth_drops_last_level() -> None:
    s = Stream()
    _book_rows(s, 7, [(NEW, ASK, i + 1, 100 + i, 1) for i in range(3)] + [(NEW, ASK, 1, 99, 5)], 0)
    state, rec, naive = replay_both(s.array(), {7: 3})
    assert state.levels_of(7, "ask") == [(99, 5, 1), (100, 1, 1), (101, 1, 1)]
    assert_same_records(rec, naive)


def test_level_never_sent_stays_blank_in_place() -> None:
    s = Stream()
    _book_rows(s, 9, [(CHANGE, BID, 3, 95, 4), (OVERLAY, ASK, 2, 105, 1)], 0)
    state, rec, naive = replay_both(s.array(), {})
    assert state.levels_of(9, "bid")[:4] == [None, None, (95, 4, 1), None]
    assert state.levels_of(9, "ask")[:3] == [None, (105, 1, 1), None]
    assert len(state.levels_of(9, "bid")) == 10  # no definition: depth 10
    assert_same_records(rec, naive)


def test_mirrored_apply_equals_the_plain_apply_on_each_side() -> None:
    """``_mbp_apply_mirrored`` (a clean side and its consolidated view in one pass, moving
    nothing past the filled levels) leaves both as ``_mbp_apply`` leaves the side, for
    every action, level (in and out of range) and fill of a clean side of every depth."""
    from core.book.mbp import _mbp_apply, _mbp_apply_mirrored, new_books
    from core.types import BOOK_ASK, BOOK_BID, BOOK_CONS_BID

    cases = 0
    for depth in (1, 2, 3, 5, 10):
        for filled in range(depth + 1):
            for side in (BOOK_BID, BOOK_ASK):
                sign = 1 if side == BOOK_BID else -1
                clean = new_books(1)
                for i in range(filled):
                    clean[0, side, i] = (1000 - sign * 10 * i, 5 + i, 1 + i)
                clean[0, BOOK_CONS_BID + side] = clean[0, side]
                for action in (NEW, CHANGE, DELETE, DELETE_THRU, DELETE_FROM, OVERLAY, 9):
                    for level in range(depth + 2):
                        ref = clean.copy()
                        got = clean.copy()
                        px = 1000 - sign * (10 * level - 15)
                        rc_ref = _mbp_apply(ref, 0, side, level, action, px, 7, 3, depth)
                        rc = _mbp_apply_mirrored(got, 0, side, BOOK_CONS_BID + side, level,
                                                 action, px, 7, 3, depth, filled)
                        where = (depth, filled, side, action, level)
                        assert rc == rc_ref, where
                        assert (got[0, side] == ref[0, side]).all(), where
                        assert (got[0, BOOK_CONS_BID + side] == ref[0, side]).all(), where
                        cases += 1
    assert cases == 2 * 7 * sum((d + 1) * (d + 2) for d in (1, 2, 3, 5, 10))


def test_delete_thru_and_delete_from() -> None:
    s = Stream()
    r = _book_rows(s, 7, [(NEW, BID, i + 1, 100 - i, i + 1) for i in range(5)]
                   + [(NEW, ASK, i + 1, 101 + i, i + 1) for i in range(5)], 0)
    r = _book_rows(s, 7, [(DELETE_FROM, BID, 2, 0, 0), (DELETE_THRU, ASK, 0, 0, 0)], r)
    state, rec, naive = replay_both(s.array(), {7: 5})
    assert state.levels_of(7, "bid") == [(98, 3, 1), (97, 4, 1), (96, 5, 1), None, None]
    assert state.levels_of(7, "ask") == [None] * 5
    assert_same_records(rec, naive)


def test_out_of_depth_level_is_counted_and_dropped() -> None:
    s = Stream()
    _book_rows(s, 7, [(NEW, BID, 4, 100, 1), (NEW, BID, 0, 100, 1), (NEW, BID, 1, 99, 1)], 0)
    state, rec, naive = replay_both(s.array(), {7: 3})
    assert state.levels_of(7, "bid") == [(99, 1, 1), None, None]
    assert state.counter_dict()["bad_level"] == 2
    assert_same_records(rec, naive)


def test_implied_book_and_consolidated_view() -> None:
    s = Stream()
    _book_rows(s, 7, [(NEW, BID, 1, 100, 5), (NEW, BID, 2, 99, 3), (NEW, IBID, 1, 100, 2),
                      (NEW, IBID, 2, 98, 7), (NEW, ASK, 1, 102, 4), (NEW, IASK, 1, 101, 1)], 0)
    state, _, naive = replay_both(s.array(), {7: 2})
    nb = naive.books[7]
    assert state.levels_of(7, "implied_bid") == [(100, 2, 1), (98, 7, 1)]
    got_bid = [lv for lv in state.levels_of(7, "cons_bid") if lv is not None]
    got_ask = [lv for lv in state.levels_of(7, "cons_ask") if lv is not None]
    assert got_bid == nb.consolidated(BID) == [(100, 7, 2), (99, 3, 1), (98, 7, 1)]
    assert got_ask == nb.consolidated(ASK)


def test_book_reset_entry_clears_instrument() -> None:
    s = Stream()
    r7 = _book_rows(s, 7, [(NEW, BID, 1, 100, 5), (NEW, ASK, 1, 101, 4)], 0)
    _book_rows(s, 8, [(NEW, BID, 1, 50, 5)], 0)
    s.add(EV_BOOK, security_id=7, rpt_seq=r7 + 1, action=NEW, entry_type="J", price=NULL)
    s.end()
    state, rec, naive = replay_both(s.array(), {})
    assert state.levels_of(7, "bid")[0] is None and state.levels_of(7, "ask")[0] is None
    assert state.levels_of(8, "bid")[0] == (50, 5, 1)
    assert_same_records(rec, naive)


def test_rpt_seq_stale_rows_skipped_and_gaps_counted() -> None:
    s = Stream()
    r = _book_rows(s, 7, [(NEW, BID, 1, 100, 5)], 10)  # joins mid-session at RptSeq 11
    s.add(EV_BOOK, security_id=7, rpt_seq=r, action=CHANGE, entry_type=BID, price_level=1,
          price=100, size=99)  # duplicate RptSeq: stale
    s.end()
    s.add(EV_BOOK, security_id=7, rpt_seq=r + 5, action=CHANGE, entry_type=BID, price_level=1,
          price=100, size=7)  # gap
    s.end()
    state, rec, naive = replay_both(s.array(), {})
    assert state.levels_of(7, "bid")[0] == (100, 7, 1)
    assert state.rpt_seq(7) == r + 5
    c = state.counter_dict()
    assert c["stale"] == 1 and c["rpt_gaps"] == 1
    assert_same_records(rec, naive)


def test_snapshot_replaces_book_and_sets_rpt_seq() -> None:
    s = Stream()
    _book_rows(s, 7, [(NEW, BID, 1, 100, 5), (NEW, BID, 2, 99, 5), (NEW, ASK, 1, 101, 4)], 0)
    s.add(EV_SNAPSHOT, security_id=7, rpt_seq=40, template_id=52, num_orders=2, price=NULL,
          order_id=np.uint64(NULL), price_level=17)
    s.add(EV_SNAPSHOT_ENTRY, security_id=7, rpt_seq=40, template_id=52, entry_type=BID,
          price_level=1, price=98, size=3)
    s.add(EV_SNAPSHOT_ENTRY, security_id=7, rpt_seq=40, template_id=52, entry_type=ASK,
          price_level=2, price=103, size=2)
    s.end(snapshot=True)
    _book_rows(s, 7, [(CHANGE, BID, 1, 98, 1)], 39)  # RptSeq 40: already in the snapshot
    _book_rows(s, 7, [(CHANGE, BID, 1, 98, 2)], 40)
    state, rec, naive = replay_both(s.array(), {})
    assert state.levels_of(7, "bid")[:2] == [(98, 2, 1), None]
    assert state.levels_of(7, "ask")[:2] == [None, (103, 2, 1)]
    assert state.rpt_seq(7) == 41
    assert state.counter_dict()["stale"] == 1
    assert_same_records(rec, naive)


def test_channel_reset_empties_books_of_that_channel_only() -> None:
    s = Stream()
    r7 = _book_rows(s, 7, [(NEW, BID, 1, 100, 5)], 0)
    _book_rows(s, 8, [(NEW, BID, 1, 50, 5)], 0)
    s.add(EV_CHANNEL_RESET, aux=310)
    s.end()
    _book_rows(s, 7, [(NEW, BID, 1, 101, 1)], 0)  # RptSeq restarts at 1 after the reset
    state = MarketState(max_instruments=4, ring_len=0)
    state.add_instrument(7, channel=310)
    state.add_instrument(8, channel=311)
    state.apply_events(s.array())
    assert state.levels_of(7, "bid")[:2] == [(101, 1, 1), None]
    assert state.levels_of(8, "bid")[0] == (50, 5, 1)
    assert state.rpt_seq(7) == 1 and r7 == 1


def test_event_spanning_calls_completes_once() -> None:
    s = Stream()
    s.add(EV_BOOK, security_id=7, rpt_seq=1, action=NEW, entry_type=BID, price_level=1,
          price=100, size=1, flags=FLAG_LAST_IN_MSG)
    s.add(EV_BOOK, security_id=7, rpt_seq=2, action=NEW, entry_type=ASK, price_level=1,
          price=101, size=1)
    s.end()
    ev = s.array()
    state = MarketState(max_instruments=4, ring_len=0)
    assert state.apply_events(ev[:1]) == 0  # no end of event yet: nothing completed
    assert state.apply_events(ev[1:]) == 1
    assert state.counter_dict()["events"] == 1


def test_invariant_violations_counted_per_instrument() -> None:
    s = Stream()
    r = _book_rows(s, 7, [(NEW, BID, 1, 100, 5), (NEW, ASK, 1, 100, 4)], 0)  # locked
    r = _book_rows(s, 7, [(CHANGE, BID, 1, 100, -1)], r)  # negative, still locked
    r = _book_rows(s, 7, [(NEW, ASK, 2, 99, 1), (DELETE, BID, 1, 0, 0)], r)  # unsorted asks
    state, _, _ = replay_both(s.array(), {})
    assert state.violations(7) == {"crossed": 2, "unsorted": 1, "negative": 1}


def test_instrument_table_full_is_counted() -> None:
    s = Stream()
    for sid in (1, 2, 3):
        _book_rows(s, sid, [(NEW, BID, 1, 100, 5)], 0)
    state = MarketState(max_instruments=2, ring_len=0)
    assert state.apply_events(s.array()) == 2
    assert state.counter_dict()["instruments_full"] == 1
    assert state.row(3) is None


# --------------------------------------------------------------------------
# property tests
# --------------------------------------------------------------------------
@st.composite
def arbitrary_streams(draw: Any) -> tuple[np.ndarray, dict[int, int]]:
    """Any mix of book rows (every action, level 0..11, nulls, stale/gapped RptSeq),
    trades, resets and snapshots, for three instruments."""
    depth = {sid: draw(st.integers(1, 10)) for sid in (1, 2, 3)}
    s = Stream()
    rpt = {1: 0, 2: 0, 3: 0}
    for _ in range(draw(st.integers(1, 25))):
        for _ in range(draw(st.integers(1, 5))):
            sid = draw(st.sampled_from((1, 2, 3)))
            what = draw(st.integers(0, 99))
            step = draw(st.sampled_from((1, 1, 1, 1, 1, 1, 0, 2)))
            rpt[sid] += step
            if what < 80:
                s.add(EV_BOOK, security_id=sid, rpt_seq=rpt[sid],
                      action=draw(st.sampled_from((0, 0, 1, 1, 2, 2, 3, 4, 5, 7))),
                      entry_type=draw(st.sampled_from((BID, ASK, BID, ASK, IBID, IASK, "J"))),
                      price_level=draw(st.integers(0, 11)),
                      price=draw(st.one_of(st.integers(90, 110), st.just(NULL))),
                      size=draw(st.integers(0, 50)),
                      num_orders=draw(st.one_of(st.integers(0, 5), st.just(NULL_I32))))
            elif what < 88:
                s.add(EV_TRADE, security_id=sid, rpt_seq=rpt[sid], price=100, size=3, side=1)
            elif what < 92:
                s.add(EV_CHANNEL_RESET, aux=-1)
            else:
                s.end()
                n = draw(st.integers(0, 4))
                s.add(EV_SNAPSHOT, security_id=sid, rpt_seq=rpt[sid], template_id=52,
                      num_orders=n, price=NULL, order_id=np.uint64(NULL), price_level=255)
                for _ in range(n):
                    s.add(EV_SNAPSHOT_ENTRY, security_id=sid, rpt_seq=rpt[sid], template_id=52,
                          entry_type=draw(st.sampled_from((BID, ASK, IBID, IASK, "2"))),
                          price_level=draw(st.integers(1, 10)),
                          price=draw(st.integers(90, 110)), size=draw(st.integers(1, 9)))
                s.end(snapshot=True)
                continue
        s.end()
    return s.array(), depth


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arbitrary_streams())
def test_property_arbitrary_streams_match_naive(case: tuple[np.ndarray, dict[int, int]]) -> None:
    events, depth = case
    _, rec, naive = replay_both(events, depth)
    assert_same_records(rec, naive)


class TrueBook:
    """The exchange side: every price level of one instrument, from which a valid MBP
    message stream (top ``depth`` levels) is derived."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.bids: dict[int, list[int]] = {}  # px -> [qty, orders]
        self.asks: dict[int, list[int]] = {}

    def top(self, side: str) -> list[tuple[int, int, int]]:
        d = self.bids if side == BID else self.asks
        prices = sorted(d, reverse=(side == BID))[:self.depth]
        return [(p, d[p][0], d[p][1]) for p in prices]

    @staticmethod
    def diff(old: list[tuple[int, int, int]], new: list[tuple[int, int, int]],
             depth: int) -> list[tuple[int, int, tuple[int, int, int]]]:
        """MBP messages turning view ``old`` into ``new``: deletes, then news, then changes;
        a sweep of the top n levels as DeleteFrom, an emptied side as DeleteThru, a single
        in-place price change as Overlay."""
        ops: list[tuple[int, int, tuple[int, int, int]]] = []
        if old and not new:
            return [(DELETE_THRU, 1, (0, 0, 0))]
        cur = list(old)
        newp = [x[0] for x in new]
        gone = [i for i, x in enumerate(cur) if x[0] not in newp]
        if len(old) == len(new) and len(gone) == 1 and new[gone[0]][0] not in [x[0] for x in old]:
            i = gone[0]
            if all(old[j] == new[j] for j in range(len(old)) if j != i):
                return [(OVERLAY, i + 1, new[i])]
        n_top = 0
        while n_top < len(cur) and cur[n_top][0] not in newp:
            n_top += 1
        if n_top >= 2:
            ops.append((DELETE_FROM, n_top, (0, 0, 0)))
            cur = cur[n_top:]
        i = 0
        while i < len(cur):
            if cur[i][0] not in newp:
                ops.append((DELETE, i + 1, cur[i]))
                del cur[i]
            else:
                i += 1
        for i, x in enumerate(new):
            if i >= len(cur) or cur[i][0] != x[0]:
                ops.append((NEW, i + 1, x))
                cur.insert(i, x)
                del cur[depth:]
        for i, x in enumerate(new):
            if cur[i] != x:
                ops.append((CHANGE, i + 1, x))
                cur[i] = x
        assert cur == new
        return ops


@st.composite
def valid_streams(draw: Any) -> tuple[np.ndarray, dict[int, int], dict[int, TrueBook]]:
    """Exchange-consistent streams for two instruments: orders added, cancelled, sweeps
    of several levels, sides emptied, snapshots mid-stream (also after lost messages)."""
    depth = {sid: draw(st.integers(1, 10)) for sid in (1, 2)}
    true = {sid: TrueBook(depth[sid]) for sid in (1, 2)}
    s = Stream()
    rpt = {1: 0, 2: 0}
    for _ in range(draw(st.integers(1, 30))):
        sid = draw(st.sampled_from((1, 2)))
        tb = true[sid]
        old = {BID: tb.top(BID), ASK: tb.top(ASK)}
        side = draw(st.sampled_from((BID, ASK)))
        d = tb.bids if side == BID else tb.asks
        act = draw(st.integers(0, 9))
        if act < 5:
            px = draw(st.integers(80, 99)) if side == BID else draw(st.integers(100, 119))
            lvl = d.setdefault(px, [0, 0])
            lvl[0] += draw(st.integers(1, 20))
            lvl[1] += 1
        elif act < 7 and d:
            px = draw(st.sampled_from(sorted(d)))
            del d[px]
        elif act < 8 and d:
            for px in sorted(d, reverse=(side == BID))[:draw(st.integers(1, 4))]:
                del d[px]
        elif act < 9:
            d.clear()
        lost = draw(st.integers(0, 19)) == 0  # messages lost: only a snapshot repairs it
        for sd in (BID, ASK):
            for op, lvl_no, (px, q, o) in TrueBook.diff(old[sd], tb.top(sd), tb.depth):
                rpt[sid] += 1
                if not lost:
                    s.add(EV_BOOK, security_id=sid, rpt_seq=rpt[sid], action=op, entry_type=sd,
                          price_level=lvl_no, price=px, size=q, num_orders=o)
        if not lost:
            s.end()
        if lost or draw(st.integers(0, 9)) == 0:
            tops = [(sd, i + 1, x) for sd in (BID, ASK) for i, x in enumerate(tb.top(sd))]
            s.add(EV_SNAPSHOT, security_id=sid, rpt_seq=rpt[sid], template_id=52,
                  num_orders=len(tops), price=NULL, order_id=np.uint64(NULL), price_level=255)
            for sd, lvl_no, (px, q, o) in tops:
                s.add(EV_SNAPSHOT_ENTRY, security_id=sid, rpt_seq=rpt[sid], template_id=52,
                      entry_type=sd, price_level=lvl_no, price=px, size=q, num_orders=o)
            s.end(snapshot=True)
    return s.array(), depth, true


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_streams())
def test_property_valid_streams_rebuild_the_exchange_book(
        case: tuple[np.ndarray, dict[int, int], dict[int, TrueBook]]) -> None:
    events, depth, true = case
    state, rec, naive = replay_both(events, depth)
    assert_same_records(rec, naive)
    for sid, tb in true.items():
        if state.row(sid) is None:
            continue
        for side, name in ((BID, "bid"), (ASK, "ask")):
            got = [lv for lv in state.levels_of(sid, name)]
            want = tb.top(side)
            assert got == want + [None] * (tb.depth - len(want))
        assert state.violations(sid) == {"crossed": 0, "unsorted": 0, "negative": 0}


# --------------------------------------------------------------------------
# event boundaries: consolidated view and invariant checks against a full rescan
# --------------------------------------------------------------------------
CONS_DEPTH = 10  # MAX_DEPTH: levels of the consolidated view
O_BID, O_ASK, I_BID, I_ASK, C_BID, C_ASK = range(6)  # book sides as core.types orders them


def naive_boundary(book_row: list[list[list[int]]], depth: int
                   ) -> tuple[list[list[tuple[int, int, int]]], int]:
    """What an event boundary must leave, from the raw levels of one instrument, in plain
    Python: the consolidated view of each side (outright and implied merged in price
    order, blanks skipped, equal prices summed; on an unsorted side, the order a two-way
    merge walks it in) and the invariant bits (1 crossed, 2 unsorted, 4 negative)."""

    def filled(side: int, n: int) -> list[tuple[int, int, int]]:
        return [(px, q, o) for px, q, o in book_row[side][:n] if px != NULL]

    bits = 0
    cons = []
    for out, imp, sign in ((O_BID, I_BID, 1), (O_ASK, I_ASK, -1)):
        mine, implied = filled(out, depth), filled(imp, 2)
        for lv in (mine, implied):
            if any(q < 0 or o < 0 for _, q, o in lv):
                bits |= 4
            if any(sign * (a[0] - b[0]) <= 0 for a, b in itertools.pairwise(lv)):
                bits |= 2
        merged: list[tuple[int, int, int]] = []
        i = j = 0
        while len(merged) < CONS_DEPTH and (i < len(mine) or j < len(implied)):
            if i < len(mine) and (j == len(implied) or sign * (mine[i][0] - implied[j][0]) >= 0):
                px, q, o = mine[i]
                if j < len(implied) and implied[j][0] == px:
                    q, o = q + implied[j][1], o + implied[j][2]
                    j += 1
                merged.append((px, q, o))
                i += 1
            else:
                merged.append(implied[j])
                j += 1
        cons.append(merged)
    best = [filled(s, depth) for s in (O_BID, O_ASK)]
    if best[0] and best[1] and best[0][0][0] >= best[1][0][0]:
        bits |= 1
    return cons, bits


def _boundaries(events: np.ndarray) -> list[int]:
    """Indexes just past each row that completes an event (as the kernel decides)."""
    f = events["flags"]
    snap = np.isin(events["kind"], (EV_SNAPSHOT, EV_SNAPSHOT_ENTRY))
    ends = (f & FLAG_END_OF_EVENT != 0) | ((f & FLAG_LAST_IN_MSG != 0) & snap)
    return [*(np.flatnonzero(ends) + 1).tolist(), events.size]


def assert_boundaries_match_rescan(events: np.ndarray, depth: dict[int, int]) -> int:
    """Apply ``events`` one event at a time; after each, every completed instrument's
    consolidated view and the violations it counted equal ``naive_boundary`` of its
    levels. Returns how many (event, instrument) completions were checked."""
    n_sids = np.unique(events["security_id"]).size
    state = MarketState(max_instruments=n_sids + 8, ring_len=4, max_orders=1 << 16)
    for sid, d in depth.items():
        state.add_instrument(sid, depth=d)
    start = checked = 0
    bit_field = {1: "crossed", 2: "unsorted", 4: "negative"}
    for stop in _boundaries(events):
        if stop <= start:
            continue
        before = {int(sid): state.violations(int(sid))
                  for sid in state.inst[:state.n_instruments, IS_SECURITY_ID]}
        state.apply_events(events[start:stop], features=False)
        start = stop
        for r in state.completed().tolist():
            sid = int(state.inst[r, IS_SECURITY_ID])
            cons, bits = naive_boundary(state.book[r].tolist(), int(state.inst[r, IS_DEPTH]))
            for side, want in ((C_BID, cons[0]), (C_ASK, cons[1])):
                got = [tuple(lv) for lv in state.book[r, side].tolist() if lv[0] != NULL]
                assert got == want, f"event ending at row {stop - 1}, sid {sid}, side {side}"
                assert all(lv[0] == NULL for lv in state.book[r, side, len(want):].tolist())
            for side in (O_BID, O_ASK):  # a side tracked as clean really is
                n = int(state.inst[r, IS_BID_CLEAN + side])
                if n >= 0:
                    px = state.book[r, side, :, 0].tolist()
                    assert all(p != NULL for p in px[:n]) and all(p == NULL for p in px[n:])
                    assert px[:n] == sorted(px[:n], reverse=side == O_BID) and len(
                        set(px[:n])) == n
                    assert (state.book[r, side, :n, 1:] >= 0).all()
            was = before.get(sid, {"crossed": 0, "unsorted": 0, "negative": 0})
            now = state.violations(sid)
            assert {k: now[k] - was[k] for k in now} == {
                name: int(bool(bits & b)) for b, name in bit_field.items()}, f"sid {sid}"
            checked += 1
    return checked


@st.composite
def nearly_valid_streams(draw: Any) -> tuple[np.ndarray, dict[int, int]]:
    """Mostly valid price-level updates (prices strictly between their neighbours, no
    holes), so sides stay clean for long stretches, with a few entries that break a
    side: out of price order, a hole, a negative size or order count, a cross."""
    depth = {sid: draw(st.integers(1, 10)) for sid in (1, 2)}
    model = {(sid, et): [None] * depth[sid] for sid in depth for et in (BID, ASK)}
    s = Stream()
    rpt = dict.fromkeys(depth, 0)
    for _ in range(draw(st.integers(1, 40))):
        for _ in range(draw(st.integers(1, 4))):
            sid = draw(st.sampled_from(sorted(depth)))
            et = draw(st.sampled_from((BID, ASK)))
            lst = model[(sid, et)]
            n = sum(lv is not None for lv in lst)
            sign = 1 if et == BID else -1
            act = draw(st.sampled_from((NEW, NEW, CHANGE, CHANGE, OVERLAY, DELETE, DELETE,
                                        DELETE_FROM, DELETE_THRU)))
            lvl = draw(st.integers(1, max(1, min(n + (act in (NEW, CHANGE, OVERLAY)),
                                                 depth[sid]))))
            # a price strictly between the neighbours the entry will have
            above = lst[lvl - 2][0] if lvl >= 2 and lst[lvl - 2] else (
                10_000 if et == BID else 20_000)
            nxt = lvl - 1 if act == NEW else lvl
            below = lst[nxt][0] if nxt < len(lst) and lst[nxt] else (
                above - sign * 4_000)
            lo, hi = sorted((above, below))
            px = draw(st.integers(lo + 1, hi - 1)) if hi - lo > 1 else hi
            size, orders = draw(st.integers(0, 50)), draw(st.integers(0, 5))
            broken = draw(st.integers(0, 99))
            if broken < 4:
                px = draw(st.integers(0, 30_000))  # anywhere: unsorted or crossed
            elif broken < 6:
                lvl = min(n + 2, 11)  # leaves a hole (or is out of the book)
            elif broken < 8:
                size, orders = draw(st.sampled_from(((-1, 1), (3, -1))))
            if act == DELETE_FROM:
                lvl = draw(st.integers(1, depth[sid]))
            rpt[sid] += 1
            s.add(EV_BOOK, security_id=sid, rpt_seq=rpt[sid], action=act, entry_type=et,
                  price_level=lvl, price=px, size=size, num_orders=orders)
            NaiveMarket._level_op(lst, act, lvl, (px, size, orders))
        s.end()
    return s.array(), depth


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nearly_valid_streams())
def test_property_boundaries_equal_a_full_rescan_on_nearly_valid_streams(
        case: tuple[np.ndarray, dict[int, int]]) -> None:
    events, depth = case
    assert_boundaries_match_rescan(events, depth)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arbitrary_streams())
def test_property_boundaries_equal_a_full_rescan_on_arbitrary_streams(
        case: tuple[np.ndarray, dict[int, int]]) -> None:
    events, depth = case
    assert_boundaries_match_rescan(events, depth)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_streams())
def test_property_boundaries_equal_a_full_rescan_on_valid_streams(
        case: tuple[np.ndarray, dict[int, int], dict[int, TrueBook]]) -> None:
    events, depth, _ = case
    assert_boundaries_match_rescan(events, depth)


def test_boundaries_equal_a_full_rescan_on_the_benchmark_stream() -> None:
    """The benchmark's long stream keeps every side clean (levels 1-5 filled, New/Delete
    pairs): the path where the boundary does no rescan at all."""
    from perf.bench_book import synthetic_events

    events = synthetic_events(3000, n_instr=4)
    events["security_id"] -= 1000  # sids 1..4
    assert assert_boundaries_match_rescan(events, dict.fromkeys(range(1, 5), 10)) > 2500


# --------------------------------------------------------------------------
# reference captures
# --------------------------------------------------------------------------
def _capture_events() -> tuple[np.ndarray, list[int]]:
    from adapters.capture import read_capture
    from core.sbe.mdp3 import Mdp3Decoder

    dec = Mdp3Decoder()
    chunks = []
    templates: list[int] = []
    files = sorted(glob.glob(os.path.join(PCAPS, "mdp3_v*_udp_*.pcap")))
    assert files, f"no reference captures under {PCAPS}"
    for path in files:
        for rec in read_capture(path):
            ev = dec.decode(rec.payload).copy()
            chunks.append(ev)
            templates += [int(t) for t in ev["template_id"]]
    return np.concatenate(chunks), templates


def test_reference_captures_match_naive_book() -> None:
    events, templates = _capture_events()
    assert 32 in templates and 46 in templates  # legacy and current through the same code
    state, rec, naive = replay_both(events, {}, max_instruments=64)
    assert rec["security_id"].size > 20
    assert_same_records(rec, naive)
    for sid, nb in naive.books.items():
        assert [lv for lv in state.levels_of(sid, "bid")] == nb.sides[BID]
        assert [lv for lv in state.levels_of(sid, "ask")] == nb.sides[ASK]
        want_orders = {oid: (0 if v[0] == BID else 1, v[1], v[2]) for oid, v in nb.orders.items()}
        got_orders = {}
        for side in ("bid", "ask"):
            for px, _, _, q in state.mbo_side(sid, side):
                for oid, qty, _prio in q:
                    got_orders[oid] = (0 if side == "bid" else 1, px, qty)
        assert got_orders == want_orders


def test_reference_captures_boundaries_equal_a_full_rescan() -> None:
    events, _ = _capture_events()
    assert assert_boundaries_match_rescan(events, {}) >= 20  # every completion of the captures


def test_legacy_template_32_builds_the_book() -> None:
    events, _ = _capture_events()
    legacy = events[(events["template_id"] == 32) & (events["kind"] == EV_BOOK)]
    assert legacy.size >= 2
    state = MarketState(max_instruments=8, ring_len=0)
    state.apply_events(legacy)
    for e in legacy:  # each Change/New entry sits at its stated level
        side = "bid" if int(e["entry_type"]) == ord(BID) else "ask"
        lv = state.levels_of(int(e["security_id"]), side)[int(e["price_level"]) - 1]
        assert lv is not None and lv[0] == int(e["price"]) and lv[1] == int(e["size"])
        assert int(e["price_exponent"]) == -7


@pytest.mark.parametrize("depth", [1, 5, 10])
def test_depth_from_definition_limits_levels(depth: int) -> None:
    s = Stream()
    _book_rows(s, 7, [(NEW, BID, i + 1, 100 - i, 1) for i in range(10)], 0)
    state, rec, naive = replay_both(s.array(), {7: depth})
    assert len(state.levels_of(7, "bid")) == depth
    assert_same_records(rec, naive)
