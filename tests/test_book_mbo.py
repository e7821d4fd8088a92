"""MBO book kernels (order pool, OrderID map, per-level FIFO, queue position) against a
naive dict-and-sort reference."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.book.mbo import MBO_OK, MBO_POOL_FULL, MBO_UNKNOWN_ORDER, MboBook
from core.market import MarketState
from core.types import EV_ORDER, EV_ORDER_REF, EV_SNAPSHOT, EV_SNAPSHOT_ENTRY
from tests.test_book_mbp import NULL, Stream

NEW, UPDATE, DELETE = 0, 1, 2


class NaiveMbo:
    """Orders in a dict; a level's queue is its orders sorted by (priority, arrival)."""

    def __init__(self) -> None:
        self.orders: dict[int, list[int]] = {}  # id -> [row, side, px, qty, prio, arrival]
        self.clock = 0

    def apply(self, row: int, oid: int, side: int, px: int, qty: int, prio: int, act: int) -> int:
        o = self.orders.get(oid)
        if act == DELETE:
            if o is None:
                return MBO_UNKNOWN_ORDER
            del self.orders[oid]
            return MBO_OK
        self.clock += 1
        if o is None:
            self.orders[oid] = [row, side, px, qty, prio, self.clock]
            return MBO_UNKNOWN_ORDER if act == UPDATE else MBO_OK
        if o[:3] == [row, side, px] and o[4] == prio:
            o[3] = qty  # keeps its place
        else:
            self.orders[oid] = [row, side, px, qty, prio, self.clock]
        return MBO_OK

    def clear(self, row: int) -> None:
        self.orders = {k: v for k, v in self.orders.items() if v[0] != row}

    def side(self, row: int, side: int) -> list[tuple[int, int, int, list[tuple[int, int, int]]]]:
        by_px: dict[int, list[tuple[int, int, int, int]]] = {}
        for oid, (r, s, px, q, pr, arr) in self.orders.items():
            if r == row and s == side:
                by_px.setdefault(px, []).append((pr, arr, oid, q))
        out = []
        for px in sorted(by_px, reverse=(side == 0)):
            queue = sorted(by_px[px])
            out.append((px, sum(x[3] for x in queue), len(queue),
                        [(x[2], x[3], x[0]) for x in queue]))
        return out

    def queue_ahead(self, oid: int) -> tuple[int, int]:
        r, s, px, _, pr, arr = self.orders[oid]
        ahead = [v for v in self.orders.values()
                 if v[0] == r and v[1] == s and v[2] == px and (v[4], v[5]) < (pr, arr)]
        return sum(v[3] for v in ahead), len(ahead)


ops_strategy = st.lists(
    st.tuples(
        st.integers(0, 1),  # row
        st.integers(1, 40),  # order id (small: many updates/deletes of live ids)
        st.integers(0, 1),  # side
        st.integers(95, 105),  # price
        st.integers(1, 30),  # qty
        st.integers(0, 20),  # priority (ties happen)
        st.sampled_from((NEW, NEW, UPDATE, DELETE)),
    ),
    min_size=1, max_size=200,
)


def _check_same(book: MboBook, naive: NaiveMbo) -> None:
    for row in (0, 1):
        for side in (0, 1):
            assert book.side(row, side) == naive.side(row, side)
    for oid in naive.orders:
        assert book.queue_ahead(oid) == naive.queue_ahead(oid)
    assert book.n_orders == len(naive.orders)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops_strategy, st.integers(0, 3))
def test_property_mbo_matches_naive(ops: list[tuple[int, ...]], clear_every: int) -> None:
    book = MboBook(n_instr=2, max_orders=64)
    naive = NaiveMbo()
    for i, (row, oid, side, px, q, pr, act) in enumerate(ops):
        assert book.apply(row, oid, side, px, q, pr, act) == naive.apply(row, oid, side, px, q,
                                                                          pr, act)
        if clear_every and i % (17 * clear_every) == 16:
            book.clear(row)
            naive.clear(row)
    _check_same(book, naive)
    assert book.queue_ahead(10_000) == (-1, -1)


def test_queue_ahead_is_quantity_in_front_at_the_same_price() -> None:
    book = MboBook(n_instr=1)
    for oid, q, pr in ((1, 5, 10), (2, 7, 11), (3, 2, 12), (4, 9, 5)):
        book.apply(0, oid, 0, 100, q, pr, NEW)
    book.apply(0, 9, 0, 99, 50, 1, NEW)  # other price: not ahead
    assert book.queue_ahead(4) == (0, 0)  # lowest MDOrderPriority is first
    assert book.queue_ahead(3) == (9 + 5 + 7, 3)
    book.apply(0, 1, 0, 100, 3, 10, UPDATE)  # size decrease keeps priority
    assert book.queue_ahead(3) == (9 + 3 + 7, 3)
    book.apply(0, 1, 0, 100, 30, 13, UPDATE)  # size increase: new priority, back of queue
    assert book.queue_ahead(1) == (9 + 7 + 2, 3)
    book.apply(0, 2, 0, 100, 0, 11, DELETE)
    assert book.queue_ahead(1) == (9 + 2, 2)


def test_pool_full_is_reported_and_recovers() -> None:
    book = MboBook(n_instr=1, max_orders=4)
    codes = [book.apply(0, oid, 1, 100 + oid, 1, oid, NEW) for oid in range(6)]
    assert codes == [MBO_OK] * 4 + [MBO_POOL_FULL] * 2
    book.apply(0, 0, 1, 100, 1, 0, DELETE)
    assert book.apply(0, 99, 1, 101, 1, 99, NEW) == MBO_OK
    assert book.n_orders == 4


def test_map_survives_heavy_churn() -> None:
    """Backward-shift deletion: thousands of inserts/deletes through a small table."""
    rng = np.random.default_rng(7)
    book = MboBook(n_instr=1, max_orders=128)
    naive = NaiveMbo()
    live: list[int] = []
    next_id = (1 << 40)  # large ids like CME's
    for _ in range(5000):
        if live and (len(live) >= 120 or rng.random() < 0.5):
            oid = live.pop(int(rng.integers(len(live))))
            assert book.apply(0, oid, 0, 0, 0, 0, DELETE) == naive.apply(0, oid, 0, 0, 0, 0,
                                                                         DELETE) == MBO_OK
        else:
            next_id += int(rng.integers(1, 1000))
            px = int(rng.integers(90, 110))
            book.apply(0, next_id, int(px >= 100), px, 1, next_id, NEW)
            naive.apply(0, next_id, int(px >= 100), px, 1, next_id, NEW)
            live.append(next_id)
    for oid in live:
        assert book.queue_ahead(oid) == naive.queue_ahead(oid)
    assert book.side(0, 0) == naive.side(0, 0)


def _orders(state: MarketState, sid: int) -> dict[int, tuple[str, int, int]]:
    out = {}
    for side in ("bid", "ask"):
        for px, _, _, q in state.mbo_side(sid, side):
            for oid, qty, _ in q:
                out[oid] = (side, px, qty)
    return out


def test_market_state_mbo_from_47_46_and_snapshot_53() -> None:
    s = Stream()
    s.add(EV_ORDER, security_id=5, order_id=11, aux=1, price=100, size=3, action=NEW,
          entry_type="0")
    s.add(EV_ORDER, security_id=5, order_id=12, aux=2, price=100, size=4, action=NEW,
          entry_type="0")
    s.add(EV_ORDER_REF, security_id=5, order_id=13, aux=3, price=101, size=1, action=NEW,
          entry_type="1")
    s.end()
    s.add(EV_ORDER_REF, security_id=5, order_id=11, aux=1, price=100, size=0, action=DELETE,
          entry_type="0")
    s.end()
    # MBO snapshot in two chunks: the first clears, the second adds
    for chunk, (oid, px) in enumerate(((21, 99), (22, 102)), start=1):
        s.add(EV_SNAPSHOT, security_id=5, rpt_seq=chunk, aux=777, template_id=53,
              num_orders=1, price=NULL)
        s.add(EV_SNAPSHOT_ENTRY, security_id=5, rpt_seq=chunk, template_id=53, order_id=oid,
              aux=oid, price=px, size=2, entry_type="0" if px < 100 else "1")
        s.end(snapshot=True)
    state = MarketState(max_instruments=2, ring_len=0, max_orders=64)
    ev = s.array()
    state.apply_events(ev[:4])
    assert _orders(state, 5) == {12: ("bid", 100, 4), 13: ("ask", 101, 1)}
    assert state.queue_ahead(12) == (0, 0)
    state.apply_events(ev[4:])
    assert _orders(state, 5) == {21: ("bid", 99, 2), 22: ("ask", 102, 2)}
    assert state.queue_ahead(12) is None
