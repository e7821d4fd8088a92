"""The fused decide step: bound entry point, market view, and a deterministic replay
through strategy, risk, OMS and the simulated venue."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from adapters.clock import ManualClock
from adapters.sim_gateway import LatencyModel, SimGateway, SimInstrument
from core.risk import InstrumentLimits, RiskLimits
from core.strategy.market_maker import MarketMakerParams
from core.trading import (
    VOL_COL,
    InstrumentConfig,
    TradingCore,
    market_view_from_books,
    new_market_view,
    set_market,
)
from core.types import (
    ACT_CANCEL,
    BOOK_CONS_ASK,
    BOOK_CONS_BID,
    ER_FILL,
    ET_BID,
    ET_OFFER,
    EV_BOOK,
    EV_TRADE,
    FLAG_END_OF_EVENT,
    INSTRUMENT,
    IS_GAP_PENDING,
    IS_HIGH_LIMIT,
    IS_LAST_TRADE_PX,
    IS_LOW_LIMIT,
    IS_TRADING_STATUS,
    LV_PX,
    LV_QTY,
    MAX_DEPTH,
    MAX_REPORTS,
    MD_CHANGE,
    MD_EVENT,
    MDS_EMPTY,
    MDS_NOT_TRADING,
    MDS_OK,
    MDS_RECOVERING,
    N_BOOK_SIDES,
    N_INST_FIELDS,
    N_LEVEL_FIELDS,
    NULL_I64,
    OMS_REPORTS_TRUNCATED,
    RISK_OK,
    SIDE_BUY,
    SIDE_SELL,
    TRADER_HALTED,
    TS_PRE_OPEN,
    TS_READY_TO_TRADE,
)

TICK = 25 * 10**9
ES, NQ = 5482, 7001


def make_core(quote_size: int = 1, layers: int = 2) -> TradingCore:
    p = MarketMakerParams(quote_size=quote_size, n_layers=layers, alpha_skew=1.0)
    il = InstrumentLimits(max_order_qty=5, max_position=6, collar_ticks=30)
    cfgs = [InstrumentConfig(security_id=ES, tick=TICK, tick_value=12.5, maker_fee=0.2,
                             taker_fee=0.6, fee_per_contract=0.15, limits=il, params=p),
            InstrumentConfig(security_id=NQ, tick=TICK, tick_value=5.0, limits=il, params=p)]
    core = TradingCore(cfgs, RiskLimits(submit_limit=200, cancel_limit=200), cl_ord_id_base=99)
    core.finish_startup()
    core.set_gateway_up(True)
    assert core.resume() == RISK_OK
    return core


def test_bound_tick_is_decide() -> None:
    a, b = make_core(), make_core()
    market = new_market_view(2)
    feats = a.features_buffer()
    feats[:, VOL_COL] = [1.0, 2.0]
    alpha = np.array([0.5, -0.5], dtype=np.float32)
    b.bind(market, feats, alpha)
    for step in range(6):
        now = 10**9 + step * 1000
        set_market(market, 0, (4000 + step) * TICK, (4001 + step) * TICK, now)
        set_market(market, 1, (15000 - step) * TICK, (15002 - step) * TICK, now)
        ka = a.decide(market, feats, alpha, 0, now, step)
        kb = b.tick(0, now, step)
        assert ka == kb
        assert a.actions[:ka].tobytes() == b.actions[:kb].tobytes()
    assert a.trader.tobytes() == b.trader.tobytes()
    with pytest.raises(ValueError):
        b.bind(market, feats[:, :3].copy(), alpha)
    with pytest.raises(ValueError):
        b.bind(market[:1], feats, alpha)


def test_market_view_from_the_books_arrays() -> None:
    books = np.zeros((3, N_BOOK_SIDES, MAX_DEPTH, N_LEVEL_FIELDS), dtype=np.int64)
    books[:, :, :, LV_PX] = NULL_I64
    inst = np.zeros((3, N_INST_FIELDS), dtype=np.int64)
    books[2, BOOK_CONS_BID, 0, LV_PX] = 4000 * TICK
    books[2, BOOK_CONS_BID, 0, LV_QTY] = 7
    books[2, BOOK_CONS_ASK, 0, LV_PX] = 4001 * TICK
    books[2, BOOK_CONS_ASK, 0, LV_QTY] = 9
    inst[2, IS_LAST_TRADE_PX] = 4000 * TICK
    inst[2, IS_HIGH_LIMIT] = 4100 * TICK
    inst[2, IS_LOW_LIMIT] = 3900 * TICK
    inst[2, IS_TRADING_STATUS] = TS_READY_TO_TRADE
    inst[0, IS_TRADING_STATUS] = TS_PRE_OPEN
    inst[1, IS_GAP_PENDING] = 1
    market = new_market_view(4)
    market_view_from_books(market, books, inst, np.array([2, 0, 1, -1]), 123)
    m = market[0]
    assert (m["bid_px"], m["bid_qty"], m["ask_px"], m["ask_qty"]) == (
        4000 * TICK, 7, 4001 * TICK, 9)
    assert (m["last_trade_px"], m["high_limit"], m["low_limit"]) == (
        4000 * TICK, 4100 * TICK, 3900 * TICK)
    assert m["update_ns"] == 123 and m["status"] == MDS_OK
    assert [int(x) for x in market["status"]] == [MDS_OK, MDS_NOT_TRADING, MDS_RECOVERING,
                                                  MDS_EMPTY]


def test_instrument_config_from_a_definition() -> None:
    row = np.zeros(1, dtype=INSTRUMENT)[0]
    row["security_id"] = ES
    row["min_price_increment"] = 25 * 10**9
    row["price_exponent"] = -9
    row["display_factor"] = 10**7  # 0.01
    row["contract_multiplier"] = 50 * 10**9
    cfg = InstrumentConfig.from_definition(row)
    assert cfg.tick == 25 * 10**9 and cfg.tick_value == pytest.approx(12.5)


def test_kill_switch_cancels_every_live_order_at_once() -> None:
    core = make_core()
    market = new_market_view(2)
    feats = core.features_buffer()
    set_market(market, 0, 4000 * TICK, 4001 * TICK, 10)
    set_market(market, 1, 15000 * TICK, 15001 * TICK, 10)
    k = core.decide(market, feats, np.zeros(2), 0, 10, 1)
    assert k == 8
    slots = sorted(int(s) for s in core.actions[:k]["slot"])
    k = core.kill_switch(20, trigger_seq=2)
    assert core.state == TRADER_HALTED
    assert sorted(int(s) for s in core.actions[:k]["slot"]) == slots
    assert set(core.actions[:k]["action"]) == {ACT_CANCEL}
    assert set(core.actions[:k]["trigger_seq"]) == {2}
    assert core.decide(market, feats, np.zeros(2), 0, 30, 3) == 0  # all in flight already


def test_too_many_reports_are_counted_not_overrun() -> None:
    core = make_core()
    market = new_market_view(2)
    core.decide(market, core.features_buffer(), np.zeros(2), MAX_REPORTS + 1, 10, 0)
    assert core.oms_counts[OMS_REPORTS_TRUNCATED] == 1


# --------------------------------------------------------------------------
# a deterministic replay: market data -> venue + decide -> gateway, twice
# --------------------------------------------------------------------------
def synthetic_packets(seed: int, n: int) -> list[tuple[int, np.ndarray]]:
    """(time ns, MD_EVENT rows) of a random walk with trades, for ES and NQ."""
    rng = np.random.default_rng(seed)
    t = 1_000_000_000
    mids = {ES: 4000, NQ: 15000}
    out = []
    for seq in range(n):
        t += int(rng.integers(5_000, 200_000))
        sid = ES if rng.random() < 0.6 else NQ
        mids[sid] += int(rng.integers(-1, 2))
        m = mids[sid]
        rows = []
        for et, p in ((ET_BID, m), (ET_OFFER, m + 1)):
            rows.append((EV_BOOK, et, p, int(rng.integers(1, 30)), 0))
        if rng.random() < 0.5:
            aggr = SIDE_BUY if rng.random() < 0.5 else SIDE_SELL
            p = m + 1 + int(rng.integers(0, 2)) if aggr == SIDE_BUY else m - int(
                rng.integers(0, 2))
            rows.append((EV_TRADE, 0, p, int(rng.integers(1, 12)), aggr))
        ev = np.zeros(len(rows), dtype=MD_EVENT)
        for i, (kind, et, p, q, side) in enumerate(rows):
            ev[i]["kind"] = kind
            ev[i]["entry_type"] = et
            ev[i]["action"] = MD_CHANGE
            ev[i]["security_id"] = sid
            ev[i]["price"] = p * TICK
            ev[i]["size"] = q
            ev[i]["side"] = side
            ev[i]["msg_seq"] = seq + 1
            ev[i]["transact_time"] = t
        ev[-1]["flags"] = FLAG_END_OF_EVENT
        out.append((t, ev))
    return out


def replay(seed: int, packets: list[tuple[int, np.ndarray]]) -> tuple[bytes, bytes, int]:
    clock = ManualClock(start_ns=packets[0][0])
    sim = SimGateway(clock, [SimInstrument(ES, TICK, maker_fee=0.2, taker_fee=0.6),
                             SimInstrument(NQ, TICK)],
                     LatencyModel.jitter(15_000, 10_000, seed),
                     LatencyModel.jitter(15_000, 10_000, seed + 1))
    sim.connect()
    core = make_core(quote_size=2, layers=2)
    market = new_market_view(2)
    feats = core.features_buffer()
    feats[:, VOL_COL] = 1.0
    alpha = np.zeros(2)
    core.bind(market, feats, alpha)
    row = {ES: 0, NQ: 1}
    log = hashlib.sha256()
    fills = 0
    for t, ev in packets:
        clock.advance(t - clock.now_ns())
        sim.on_market_data(ev)
        for e in ev:  # the books' job, in short: top of book of the instrument
            i = row[int(e["security_id"])]
            if e["kind"] == EV_BOOK:
                key = "bid_px" if e["entry_type"] == ET_BID else "ask_px"
                market[i][key] = e["price"]
                market[i]["bid_qty" if key == "bid_px" else "ask_qty"] = e["size"]
            market[i]["update_ns"] = t
            market[i]["status"] = MDS_OK
        alpha[:] = np.sin(t / 1e7)  # a deterministic stand-in for the model
        n = sim.poll(core.reports)
        log.update(core.reports[:n].tobytes())
        fills += int((core.reports[:n]["kind"] == ER_FILL).sum())
        k = core.tick(n, t, int(ev[0]["msg_seq"]))
        log.update(core.actions[:k].tobytes())
        sim.send(core.actions, k)
    return log.digest(), core.trader.tobytes(), fills


def test_replay_is_deterministic_byte_for_byte() -> None:
    packets = synthetic_packets(5, 1500)
    a = replay(3, packets)
    b = replay(3, packets)
    assert a[0] == b[0] and a[1] == b[1]
    assert a[2] > 10  # it traded
    c = replay(4, packets)  # other latencies: other fills
    assert c[0] != a[0]
