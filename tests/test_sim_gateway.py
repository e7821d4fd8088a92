"""Simulated venue: latency, queue position (exact MBO, probabilistic MBP), fills, fees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.clock import ManualClock
from adapters.gateway import Gateway
from adapters.ilink3_gateway import Ilink3Gateway
from adapters.sim_gateway import (
    SIMR_DISCONNECTED,
    SIMR_FOK_UNFILLABLE,
    SIMR_IOC_REMAINDER,
    SIMR_UNKNOWN_ORDER,
    LatencyModel,
    SimGateway,
    SimInstrument,
)
from core.types import (
    ACT_CANCEL,
    ACT_MODIFY,
    ACT_NEW,
    ER_CANCEL,
    ER_CANCEL_REJECT,
    ER_ELIMINATION,
    ER_FILL,
    ER_MODIFY,
    ER_MODIFY_REJECT,
    ER_NEW,
    ER_REJECT,
    ET_BID,
    ET_OFFER,
    EV_ORDER,
    EV_TRADE_ORDER,
    EXEC_REPORT,
    FLAG_END_OF_EVENT,
    MAX_REPORTS,
    MD_CHANGE,
    MD_DELETE,
    MD_EVENT,
    MD_NEW,
    ORDER_ACTION,
    SIDE_BUY,
    SIDE_SELL,
    TIF_DAY,
    TIF_FOK,
    TIF_IOC,
)

TICK = 25 * 10**9
SID = 5482
US = 1_000


def px(ticks: int) -> int:
    return ticks * TICK


class Venue:
    """A sim gateway, a clock and helpers to send and collect."""

    def __init__(self, entry: LatencyModel | None = None, resp: LatencyModel | None = None,
                 mbo: bool = False, power: float = 1.0, maker: float = 0.0, taker: float = 0.0,
                 per: float = 0.0) -> None:
        self.clock = ManualClock()
        self.gw = SimGateway(self.clock, [SimInstrument(SID, TICK, mbo=mbo, maker_fee=maker,
                                                        taker_fee=taker, fee_per_contract=per)],
                             entry, resp, queue_power=power)
        self.gw.connect()
        self.out = np.zeros(MAX_REPORTS, dtype=EXEC_REPORT)
        self.got: list[np.void] = []
        self.next_cl = 1

    def action(self, act: int, side: int = SIDE_BUY, price: int = 0, qty: int = 0,
               cl: int | None = None, tif: int = TIF_DAY) -> int:
        a = np.zeros(1, dtype=ORDER_ACTION)
        if cl is None:
            cl = self.next_cl
            self.next_cl += 1
        a[0]["cl_ord_id"] = cl
        a[0]["action"] = act
        a[0]["side"] = side
        a[0]["price"] = price
        a[0]["qty"] = qty
        a[0]["tif"] = tif
        a[0]["security_id"] = SID
        assert self.gw.send(a, 1) == 1
        return cl

    def new(self, side: int, ticks: int, qty: int, tif: int = TIF_DAY) -> int:
        return self.action(ACT_NEW, side, px(ticks), qty, tif=tif)

    def poll(self) -> list[np.void]:
        n = self.gw.poll(self.out)
        rows = [self.out[i].copy() for i in range(n)]
        self.got.extend(rows)
        return rows

    def settle(self) -> list[np.void]:
        self.clock.advance(10**9)
        self.gw.advance()
        return self.poll()

    def ahead(self, cl: int) -> float:
        for o in self.gw.resting():
            if o["cl_ord_id"] == cl:
                return float(o["queue_ahead"])
        raise KeyError(cl)

    def mbo(self, action: int, order_id: int, side: int, ticks: int, qty: int,
            priority: int) -> None:
        e = np.zeros(1, dtype=MD_EVENT)
        e[0]["kind"] = EV_ORDER
        e[0]["security_id"] = SID
        e[0]["order_id"] = order_id
        e[0]["action"] = action
        e[0]["entry_type"] = ET_BID if side == SIDE_BUY else ET_OFFER
        e[0]["price"] = px(ticks)
        e[0]["size"] = qty
        e[0]["aux"] = priority
        e[0]["flags"] = FLAG_END_OF_EVENT
        self.gw.on_market_data(e)

    def trade_order(self, order_id: int, qty: int) -> None:
        e = np.zeros(1, dtype=MD_EVENT)
        e[0]["kind"] = EV_TRADE_ORDER
        e[0]["order_id"] = order_id
        e[0]["size"] = qty
        self.gw.on_market_data(e)


def kinds(rows: list[np.void]) -> list[int]:
    return [int(r["kind"]) for r in rows]


def test_both_implement_the_gateway_interface() -> None:
    assert isinstance(SimGateway(ManualClock(), [SimInstrument(SID, TICK)]), Gateway)
    assert issubclass(Ilink3Gateway, Gateway)


# --------------------------------------------------------------------------
# latency
# --------------------------------------------------------------------------
def test_constant_latency_is_respected_both_ways() -> None:
    v = Venue(LatencyModel.constant(40 * US), LatencyModel.constant(25 * US))
    v.gw.on_book(SID, SIDE_SELL, px(4001), 3)
    t0 = v.clock.now_ns()
    cl = v.new(SIDE_BUY, 4001, 2)  # marketable: fills on arrival at t0 + 40 us
    v.clock.advance(40 * US - 1)
    v.gw.on_book(SID, SIDE_SELL, px(4001), 1)  # the level shrinks before we arrive
    assert v.poll() == []
    v.clock.advance(1)  # arrives now, acked and filled at t0 + 40 us
    v.gw.advance()
    v.clock.advance(25 * US - 1)
    assert v.poll() == []
    v.clock.advance(1)
    rows = v.poll()
    assert kinds(rows) == [ER_NEW, ER_FILL]
    assert all(int(r["transact_ns"]) == t0 + 40 * US for r in rows)
    assert all(int(r["recv_ns"]) == t0 + 65 * US for r in rows)
    assert int(rows[1]["qty"]) == 1 and int(rows[1]["cl_ord_id"]) == cl  # only what was left


def test_jitter_is_seeded_and_never_reorders_the_session() -> None:
    def run(seed: int) -> list[tuple[int, int]]:
        v = Venue(LatencyModel.jitter(10 * US, 30 * US, seed),
                  LatencyModel.jitter(10 * US, 30 * US, seed + 7))
        for i in range(200):
            v.new(SIDE_BUY, 3990 - i % 5, 1)
            v.clock.advance(3 * US)
        v.settle()
        return [(int(r["cl_ord_id"]), int(r["recv_ns"])) for r in v.got]

    a, b, c = run(1), run(1), run(2)
    assert a == b and a != c
    assert [cl for cl, _ in a] == list(range(1, 201))  # requests and acks stay in order
    times = [t for _, t in a]
    assert times == sorted(times)
    assert len(set(np.diff(times))) > 10  # it does jitter


def test_latency_sampled_from_a_file(tmp_path: Path) -> None:
    f = tmp_path / "lat.txt"
    f.write_text("12.5\n30\n7\n")
    m = LatencyModel.from_file(f, seed=3, unit_ns=1000.0)
    assert set(np.unique(m.samples)) == {7_000, 12_500, 30_000}
    assert np.array_equal(m.samples, LatencyModel.from_file(f, seed=3, unit_ns=1000.0).samples)
    with pytest.raises(ValueError):
        LatencyModel(np.array([-1]), "bad")


# --------------------------------------------------------------------------
# queue position, MBO: exact
# --------------------------------------------------------------------------
def test_mbo_cancels_ahead_advance_the_queue_and_behind_do_not() -> None:
    v = Venue(mbo=True)
    v.mbo(MD_NEW, 11, SIDE_BUY, 4000, 5, priority=1)
    v.mbo(MD_NEW, 12, SIDE_BUY, 4000, 3, priority=2)
    v.mbo(MD_NEW, 13, SIDE_BUY, 3999, 9, priority=3)  # another price
    cl = v.new(SIDE_BUY, 4000, 2)
    v.gw.advance()
    assert v.ahead(cl) == 8
    v.mbo(MD_NEW, 14, SIDE_BUY, 4000, 4, priority=4)  # joins behind us
    assert v.ahead(cl) == 8
    v.mbo(MD_DELETE, 12, SIDE_BUY, 4000, 0, priority=2)  # ahead cancels
    assert v.ahead(cl) == 5
    v.mbo(MD_CHANGE, 11, SIDE_BUY, 4000, 2, priority=1)  # ahead reduces, keeps priority
    assert v.ahead(cl) == 2
    v.mbo(MD_DELETE, 14, SIDE_BUY, 4000, 0, priority=4)  # behind cancels
    assert v.ahead(cl) == 2
    v.mbo(MD_CHANGE, 11, SIDE_BUY, 4000, 6, priority=5)  # qty up: CME requeues it behind us
    assert v.ahead(cl) == 0
    assert v.gw.levels(SID, SIDE_BUY) == [(px(4000), 6), (px(3999), 9)]


def test_mbo_trade_of_an_order_behind_us_fills_us_first() -> None:
    v = Venue(mbo=True, maker=0.3, per=0.1)
    v.mbo(MD_NEW, 11, SIDE_SELL, 4001, 2, priority=1)
    cl = v.new(SIDE_SELL, 4001, 3)
    v.gw.advance()
    v.mbo(MD_NEW, 12, SIDE_SELL, 4001, 5, priority=2)
    v.trade_order(11, 2)  # the order ahead trades: we are not filled by that
    assert [r for r in v.poll() if r["kind"] == ER_FILL] == []
    v.trade_order(12, 4)  # the order behind trades: the first 3 of those were ours
    fills = [r for r in v.poll() if r["kind"] == ER_FILL]
    assert [(int(f["qty"]), int(f["price"]), int(f["aggressor"])) for f in fills] == [
        (3, px(4001), 0)]
    assert float(fills[0]["fee"]) == pytest.approx(3 * 0.4)
    assert int(fills[0]["cl_ord_id"]) == cl and v.gw.resting() == []


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_mbo_queue_ahead_equals_the_naive_sum_of_orders_ahead(data: st.DataObject) -> None:
    v = Venue(mbo=True)
    book: dict[int, tuple[int, int, int]] = {}  # order id -> (ticks, qty, priority)
    prio = 0
    next_id = 100
    ours: list[tuple[int, int, int]] = []  # (cl, ticks, priority when we joined)
    for _ in range(data.draw(st.integers(5, 50))):
        op = data.draw(st.sampled_from(["add", "add", "cancel", "reduce", "move", "bump",
                                        "join"]))
        if op == "add" or not book:
            prio += 1
            next_id += 1
            t = data.draw(st.integers(3998, 4000))
            q = data.draw(st.integers(1, 9))
            book[next_id] = (t, q, prio)
            v.mbo(MD_NEW, next_id, SIDE_BUY, t, q, prio)
        elif op == "join":
            t = data.draw(st.integers(3998, 4000))
            cl = v.new(SIDE_BUY, t, 1)
            v.gw.advance()
            ours.append((cl, t, prio))
        else:
            oid = data.draw(st.sampled_from(sorted(book)))
            t, q, p = book[oid]
            if op == "cancel":
                del book[oid]
                v.mbo(MD_DELETE, oid, SIDE_BUY, t, 0, p)
            elif op == "reduce" and q > 1:
                book[oid] = (t, q - 1, p)
                v.mbo(MD_CHANGE, oid, SIDE_BUY, t, q - 1, p)
            elif op == "move":
                prio += 1
                t2 = data.draw(st.integers(3998, 4000))
                book[oid] = (t2, q, prio)
                v.mbo(MD_CHANGE, oid, SIDE_BUY, t2, q, prio)
            elif op == "bump":
                prio += 1
                book[oid] = (t, q + 2, prio)
                v.mbo(MD_CHANGE, oid, SIDE_BUY, t, q + 2, prio)
        for cl, t, p_join in ours:
            naive = sum(q for (tt, q, p) in book.values() if tt == t and p <= p_join)
            assert v.ahead(cl) == naive
        levels: dict[int, int] = {}
        for tt, q, _ in book.values():
            levels[px(tt)] = levels.get(px(tt), 0) + q
        assert v.gw.levels(SID, SIDE_BUY) == sorted(levels.items(), reverse=True)


# --------------------------------------------------------------------------
# queue position, MBP: probabilistic
# --------------------------------------------------------------------------
def test_mbp_unexplained_decrease_is_a_proportional_cancel() -> None:
    v = Venue()
    v.gw.on_book(SID, SIDE_BUY, px(4000), 10, MD_NEW)
    cl = v.new(SIDE_BUY, 4000, 1)
    v.gw.advance()
    assert v.ahead(cl) == 10
    v.gw.on_book(SID, SIDE_BUY, px(4000), 14)  # joiners go behind us
    assert v.ahead(cl) == 10
    v.gw.on_book(SID, SIDE_BUY, px(4000), 7)  # 7 cancelled, 10 of 14 were ahead
    assert v.ahead(cl) == pytest.approx(10 - 7 * 10 / 14)


def test_mbp_power_weights_cancels_toward_the_back() -> None:
    v = Venue(power=2.0)
    v.gw.on_book(SID, SIDE_BUY, px(4000), 4, MD_NEW)
    cl = v.new(SIDE_BUY, 4000, 1)
    v.gw.advance()
    v.gw.on_book(SID, SIDE_BUY, px(4000), 12)  # 4 ahead, 8 behind
    v.gw.on_book(SID, SIDE_BUY, px(4000), 9)  # 3 cancelled
    assert v.ahead(cl) == pytest.approx(4 - 3 * 16 / (16 + 64))


def test_mbp_trades_consume_the_queue_then_fill_and_explain_the_decrease() -> None:
    v = Venue(maker=0.25)
    v.gw.on_book(SID, SIDE_SELL, px(4001), 6, MD_NEW)
    cl = v.new(SIDE_SELL, 4001, 3)
    v.gw.advance()
    v.gw.on_trade(SID, px(4001), 4, SIDE_BUY)
    assert v.ahead(cl) == 2 and [r for r in v.poll() if r["kind"] == ER_FILL] == []
    v.gw.on_book(SID, SIDE_SELL, px(4001), 2)  # the 4 traded: explained, no cancel
    assert v.ahead(cl) == 2
    v.gw.on_trade(SID, px(4001), 4, SIDE_BUY)  # 2 ahead, then 2 of ours
    fills = [r for r in v.poll() if r["kind"] == ER_FILL]
    assert [(int(f["qty"]), int(f["leaves_qty"])) for f in fills] == [(2, 1)]
    assert float(fills[0]["fee"]) == pytest.approx(0.5)
    assert v.ahead(cl) == 0


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["level", "trade"]), st.integers(0, 20)),
                    min_size=1, max_size=40),
       start=st.integers(1, 20), power=st.sampled_from([0.5, 1.0, 2.0]))
def test_mbp_queue_matches_a_naive_model(ops: list[tuple[str, int]], start: int,
                                         power: float) -> None:
    v = Venue(power=power)
    v.gw.on_book(SID, SIDE_BUY, px(4000), start, MD_NEW)
    cl = v.new(SIDE_BUY, 4000, 1000)
    v.gw.advance()
    level, ahead, credit, filled = start, float(start), 0.0, 0
    for op, x in ops:
        if op == "level":
            if x < level:
                dec = level - x
                explained = min(dec, credit)
                credit -= explained
                un = dec - explained
                if un > 0 and ahead > 0:
                    behind = max(level - ahead, 0.0)
                    ahead -= un * ahead**power / (ahead**power + behind**power)
                ahead = max(min(ahead, x), 0.0)
            level = x
            v.gw.on_book(SID, SIDE_BUY, px(4000), x)
        else:
            if x == 0:
                continue
            avail = x - ahead
            ahead = max(ahead - x, 0.0)
            credit += x
            if avail >= 1:
                filled += int(np.floor(avail))
            v.gw.on_trade(SID, px(4000), x, SIDE_SELL)
        assert v.ahead(cl) == pytest.approx(ahead, abs=1e-9)
    got = sum(int(r["qty"]) for r in v.poll() if r["kind"] == ER_FILL)
    assert got == filled


# --------------------------------------------------------------------------
# through fills, aggressive orders, modify, cancel
# --------------------------------------------------------------------------
def test_trade_through_fills_in_full_at_our_price_as_maker() -> None:
    v = Venue(maker=0.2, taker=0.9, per=0.05)
    v.gw.on_book(SID, SIDE_BUY, px(4000), 50, MD_NEW)
    cl = v.new(SIDE_BUY, 4000, 4)
    v.gw.advance()
    v.gw.on_trade(SID, px(3999), 1, SIDE_SELL)  # traded below us: the level went
    f = [r for r in v.poll() if r["kind"] == ER_FILL]
    assert [(int(r["qty"]), int(r["price"]), int(r["aggressor"])) for r in f] == [
        (4, px(4000), 0)]
    assert float(f[0]["fee"]) == pytest.approx(4 * 0.25) and int(f[0]["cl_ord_id"]) == cl


def test_opposite_best_reaching_our_price_fills_us() -> None:
    v = Venue()
    v.gw.on_book(SID, SIDE_SELL, px(4003), 5, MD_NEW)
    v.new(SIDE_BUY, 4001, 2)
    v.gw.advance()
    v.gw.on_book(SID, SIDE_SELL, px(4002), 5, MD_NEW)
    assert [r for r in v.poll() if r["kind"] == ER_FILL] == []
    v.gw.on_book(SID, SIDE_SELL, px(4001), 5, MD_NEW)
    assert [int(r["qty"]) for r in v.poll() if r["kind"] == ER_FILL] == [2]


def test_aggressive_day_ioc_and_fok() -> None:
    v = Venue(taker=1.0)
    v.gw.on_book(SID, SIDE_SELL, px(4001), 2, MD_NEW, end_of_event=False)
    v.gw.on_book(SID, SIDE_SELL, px(4002), 3, MD_NEW)
    v.new(SIDE_BUY, 4001, 5, tif=TIF_IOC)  # 2 at 4001, the rest eliminated
    rows = v.settle()
    assert kinds(rows) == [ER_NEW, ER_FILL, ER_ELIMINATION]
    assert int(rows[1]["qty"]) == 2 and int(rows[1]["aggressor"]) == 1
    assert float(rows[1]["fee"]) == pytest.approx(2.0)
    assert int(rows[2]["reason"]) == SIMR_IOC_REMAINDER
    v.gw.on_book(SID, SIDE_SELL, px(4001), 2, MD_NEW)  # the level is shown again
    v.new(SIDE_BUY, 4002, 6, tif=TIF_FOK)  # 5 available: nothing
    rows = v.settle()
    assert kinds(rows) == [ER_NEW, ER_ELIMINATION]
    assert int(rows[1]["reason"]) == SIMR_FOK_UNFILLABLE
    cl = v.new(SIDE_BUY, 4002, 6)  # DAY: takes 2 + 3, rests 1 at 4002 at the front
    rows = v.settle()
    assert [(int(r["kind"]), int(r["qty"])) for r in rows] == [
        (ER_NEW, 6), (ER_FILL, 2), (ER_FILL, 3)]
    assert v.ahead(cl) == 0 and v.gw.resting()[0]["leaves"] == 1


def test_modify_keeps_priority_on_qty_down_and_loses_it_otherwise() -> None:
    v = Venue()
    v.gw.on_book(SID, SIDE_BUY, px(4000), 10, MD_NEW)
    cl = v.new(SIDE_BUY, 4000, 5)
    v.gw.advance()
    v.gw.on_book(SID, SIDE_BUY, px(4000), 20)
    v.gw.on_trade(SID, px(4000), 6, SIDE_SELL)  # 6 of the 10 ahead traded
    assert v.ahead(cl) == 4
    v.action(ACT_MODIFY, SIDE_BUY, px(4000), 3, cl=cl)
    v.settle()
    assert v.ahead(cl) == 4  # qty down: same place
    v.action(ACT_MODIFY, SIDE_BUY, px(4000), 4, cl=cl)
    v.settle()
    assert v.ahead(cl) == 20  # qty up: back of the (displayed) level
    v.gw.on_book(SID, SIDE_BUY, px(3999), 7, MD_NEW)
    v.action(ACT_MODIFY, SIDE_BUY, px(3999), 4, cl=cl)
    rows = v.settle()
    assert v.ahead(cl) == 7 and ER_MODIFY in kinds(rows)


def test_cancel_and_modify_of_unknown_orders_are_rejected() -> None:
    v = Venue()
    v.action(ACT_CANCEL, cl=77)
    v.action(ACT_MODIFY, price=px(4000), qty=1, cl=78)
    rows = v.settle()
    assert kinds(rows) == [ER_CANCEL_REJECT, ER_MODIFY_REJECT]
    assert all(int(r["reason"]) == SIMR_UNKNOWN_ORDER for r in rows)
    v.action(ACT_NEW, side=SIDE_BUY, price=px(4000) + 1, qty=1)  # off tick
    assert kinds(v.settle()) == [ER_REJECT]


def test_disconnect_cancels_resting_orders_and_refuses_sends() -> None:
    v = Venue(LatencyModel.constant(10 * US), LatencyModel.constant(10 * US))
    a = v.new(SIDE_BUY, 3990, 1)
    v.settle()
    b = v.new(SIDE_BUY, 3991, 1)  # still on the wire when the session drops
    lost = v.gw.disconnect()
    assert lost == 1 and not v.gw.is_connected()
    acts = np.zeros(1, dtype=ORDER_ACTION)
    acts[0] = (99, 0, px(3992), 1, 0, 0, SID, 0, 0, ACT_NEW, SIDE_BUY, TIF_DAY)
    assert v.gw.send(acts, 1) == 0
    rows = v.poll()  # local rejects come back at once
    assert sorted((int(r["cl_ord_id"]), int(r["kind"]), int(r["reason"])) for r in rows) == [
        (b, ER_REJECT, SIMR_DISCONNECTED), (99, ER_REJECT, SIMR_DISCONNECTED)]
    v.gw.connect()
    rows = v.settle()  # what the venue did meanwhile arrives on reconnect
    assert [(int(r["cl_ord_id"]), int(r["kind"])) for r in rows] == [(a, ER_CANCEL)]
    assert v.gw.resting() == []


# --------------------------------------------------------------------------
# determinism
# --------------------------------------------------------------------------
def random_session(seed: int, mbo: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = Venue(LatencyModel.jitter(5 * US, 20 * US, seed), LatencyModel.jitter(5 * US, 20 * US,
                                                                               seed + 1),
              mbo=mbo, maker=0.1, taker=0.4)
    oid = 1000
    live: list[int] = []
    for _ in range(400):
        v.clock.advance(int(rng.integers(1, 30)) * US)
        r = rng.random()
        t = 4000 + int(rng.integers(-3, 4))
        side = SIDE_BUY if t <= 4000 else SIDE_SELL
        if r < 0.35:
            if mbo:
                oid += 1
                v.mbo(MD_NEW, oid, side, t, int(rng.integers(1, 9)), oid)
            else:
                v.gw.on_book(SID, side, px(t), int(rng.integers(0, 20)))
        elif r < 0.55:
            v.gw.on_trade(SID, px(t), int(rng.integers(1, 10)),
                          SIDE_SELL if side == SIDE_BUY else SIDE_BUY)
        elif r < 0.8:
            live.append(v.new(side, t, int(rng.integers(1, 5))))
        elif live:
            v.action(ACT_CANCEL, cl=live.pop(int(rng.integers(0, len(live)))))
        v.poll()
    v.settle()
    return np.array(v.got, dtype=EXEC_REPORT)


def canonical_bytes(rows: np.ndarray) -> bytes:
    # field by field: padding bytes between fields carry no meaning (and no guarantee)
    return b"".join(rows[name].tobytes() for name in EXEC_REPORT.names)


@pytest.mark.parametrize("mbo", [False, True])
def test_same_seed_same_fills_byte_for_byte(mbo: bool) -> None:
    rows = random_session(11, mbo)
    a = canonical_bytes(rows)
    assert a == canonical_bytes(random_session(11, mbo))
    assert a != canonical_bytes(random_session(12, mbo))
    assert (rows["kind"] == ER_FILL).sum() > 0
