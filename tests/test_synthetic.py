"""The synthetic market: MDP-like framing, consistent MBP books, clustering, signal, knobs."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from core import synthetic as sy
from core.types import (
    ET_BID,
    ET_OFFER,
    ET_TRADE,
    EV_BOOK,
    EV_TRADE,
    FLAG_END_OF_EVENT,
    FLAG_LAST_IN_MSG,
    MD_CHANGE,
    MD_DELETE,
    MD_EVENT,
    MD_NEW,
    MEI_END_OF_EVENT,
    SIDE_BUY,
    SIDE_SELL,
)


class RefBook:
    """Naive MBP book of one instrument: per side a list of [price, size, orders], level 1 first."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.side: dict[int, list[list[int]]] = {ET_BID: [], ET_OFFER: []}

    def apply(self, r: np.void) -> None:
        book = self.side[int(r["entry_type"])]
        lv = int(r["price_level"]) - 1
        action = int(r["action"])
        assert 0 <= lv < self.depth
        if action == MD_NEW:
            assert lv <= len(book)
            book.insert(lv, [int(r["price"]), int(r["size"]), int(r["num_orders"])])
            del book[self.depth:]  # MBP: the level pushed past the depth is dropped silently
        elif action == MD_CHANGE:
            assert book[lv][0] == int(r["price"]), "Change must name the level's price"
            book[lv][1:] = [int(r["size"]), int(r["num_orders"])]
        elif action == MD_DELETE:
            assert book[lv][0] == int(r["price"]), "Delete must name the level's price"
            del book[lv]
        else:
            raise AssertionError(f"unexpected action {action}")

    def best(self) -> tuple[list[int], list[int]]:
        return self.side[ET_BID][0], self.side[ET_OFFER][0]


def replay(m: sy.SyntheticMarket) -> dict[str, np.ndarray]:
    """Per completed event: instrument, mid, L1 sizes, spread; checks book invariants."""
    books: dict[int, RefBook] = {}
    out: dict[str, list[float]] = {k: [] for k in ("sid", "mid", "bq", "aq", "spread")}
    pre: dict[int, tuple[list[int], list[int]] | None] = {}
    for r in m.events:
        sid = int(r["security_id"])
        b = books.setdefault(sid, RefBook(m.depth[sid]))
        if sid not in pre:
            pre[sid] = None if not b.side[ET_BID] else tuple(list(x) for x in b.best())  # type: ignore[assignment]
        if r["kind"] == EV_BOOK:
            b.apply(r)
        else:
            bid, ask = pre[sid]  # type: ignore[misc]
            # the first level hit is the best price on the other side before the event
            if int(r["side"]) == SIDE_BUY:
                assert int(r["price"]) >= ask[0]
            else:
                assert int(r["price"]) <= bid[0]
        if r["flags"] & FLAG_END_OF_EVENT:
            pre.pop(sid)
            tick = m.tick_size[sid]
            for s, sign in ((ET_BID, -1), (ET_OFFER, 1)):
                lv = b.side[s]
                assert len(lv) == b.depth, "book depth is kept full"
                px = [x[0] for x in lv]
                assert all(sign * (q - p) > 0 for p, q in itertools.pairwise(px))
                assert all(x[1] > 0 and x[2] > 0 for x in lv)
                assert all(p % tick == 0 for p in px)
            bid, ask = b.best()
            assert bid[0] < ask[0], "book never crossed"
            out["sid"].append(sid)
            out["mid"].append((bid[0] + ask[0]) / 2 / tick)
            out["bq"].append(bid[1])
            out["aq"].append(ask[1])
            out["spread"].append((ask[0] - bid[0]) / tick)
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def market() -> sy.SyntheticMarket:
    return sy.generate(20_000, seed=11)


def test_same_seed_same_bytes_other_seed_differs() -> None:
    a = sy.generate(3000, seed=5)
    b = sy.generate(3000, seed=5)
    c = sy.generate(3000, seed=6)
    assert a.events.dtype == MD_EVENT
    assert a.events.tobytes() == b.events.tobytes()
    assert np.array_equal(a.fair_value_ticks, b.fair_value_ticks)
    assert a.events.tobytes() != c.events.tobytes()


def test_framing_like_the_mdp3_decoder(market: sy.SyntheticMarket) -> None:
    e = market.events
    assert set(np.unique(e["kind"]).tolist()) == {EV_BOOK, EV_TRADE}
    assert np.all(e["price_exponent"] == -9)
    assert np.all(np.diff(e["transact_time"].astype(np.int64)) >= 0)
    seq = e["msg_seq"].astype(np.int64)
    assert seq[0] == 1 and np.all(np.diff(seq) >= 0) and np.all(np.diff(seq) <= 1)
    # one packet = one match event: END_OF_EVENT exactly on the packet's last row
    last_of_packet = np.r_[seq[1:] != seq[:-1], True]
    assert np.array_equal((e["flags"] & FLAG_END_OF_EVENT) != 0, last_of_packet)
    assert int(np.sum(last_of_packet)) == market.n_events
    # messages: LAST_IN_MSG closes each (packet, msg_index); trades come first (template 48)
    key = seq * 4 + e["msg_index"]
    last_of_msg = np.r_[key[1:] != key[:-1], True]
    assert np.array_equal((e["flags"] & FLAG_LAST_IN_MSG) != 0, last_of_msg)
    assert np.all(e["template_id"][e["kind"] == EV_TRADE] == sy.TEMPLATE_TRADE)
    assert np.all(e["template_id"][e["kind"] == EV_BOOK] == sy.TEMPLATE_BOOK)
    assert np.all(e["msg_index"][e["kind"] == EV_TRADE] == 0)
    assert np.all((e["match_event"][last_of_packet] & MEI_END_OF_EVENT) != 0)
    assert np.all((e["match_event"][~last_of_packet & (e["kind"] == EV_BOOK)]
                   & MEI_END_OF_EVENT) != 0), "the book message carries the end-of-event bit"
    trades = e[e["kind"] == EV_TRADE]
    assert np.all(np.isin(trades["side"], (SIDE_BUY, SIDE_SELL)))
    assert np.all(trades["entry_type"] == ET_TRADE) and np.all(trades["size"] > 0)
    assert np.all(np.diff(trades["aux"]) == 1), "MDTradeEntryID counts trades"
    for sid in market.tick_size:
        rpt = e["rpt_seq"][e["security_id"] == sid].astype(np.int64)
        assert rpt[0] == 1 and np.all(np.diff(rpt) == 1), "RptSeq counts every entry"
        assert np.all(e["price"][e["security_id"] == sid] % market.tick_size[sid] == 0)


def test_books_are_consistent_mbp(market: sy.SyntheticMarket) -> None:
    rows = replay(market)
    assert rows["mid"].size == market.n_events
    assert np.array_equal(rows["sid"], market.event_security_id)
    assert rows["spread"].min() >= 1
    # ES-like default: mostly one tick wide, as a liquid future is
    assert np.mean(rows["spread"] == 1) > 0.5


def test_replay_features_mid_matches_reference_book(market: sy.SyntheticMarket) -> None:
    features = pytest.importorskip("core.features")
    rep = features.replay_features(market.events, market.tick_size, market.depth)
    rows = replay(market)
    assert np.array_equal(rep["security_id"], rows["sid"])
    tick = np.array([market.tick_size[int(s)] for s in rows["sid"]], np.float64)
    np.testing.assert_allclose(rep["mid"] / tick, rows["mid"])
    assert np.all(np.isfinite(rep["features"]))


def _dispersion(m: sy.SyntheticMarket, window_ns: int) -> float:
    t = m.events["transact_time"][(m.events["flags"] & FLAG_END_OF_EVENT) != 0].astype(np.int64)
    counts = np.bincount((t - t[0]) // window_ns)
    return float(counts.var() / counts.mean())


def test_hawkes_arrivals_cluster() -> None:
    hawkes = sy.generate(20_000, seed=3)
    poisson = sy.generate(20_000, sy.SyntheticConfig(hawkes_alpha=0.0, base_rate_hz=1000.0), seed=3)
    # counts in 10 ms windows: Poisson has variance/mean ~ 1, self-excitation inflates it
    assert 0.8 < _dispersion(poisson, 10_000_000) < 1.25
    assert _dispersion(hawkes, 10_000_000) > 2.0


def test_order_flow_leads_the_mid() -> None:
    m = sy.generate(40_000, seed=4)
    rows = replay(m)
    for sid in m.tick_size:
        k = rows["sid"] == sid
        mid = rows["mid"][k]
        imb = (rows["bq"][k] - rows["aq"][k]) / (rows["bq"][k] + rows["aq"][k])
        gap = m.fair_value_ticks[m.event_security_id == sid] - mid
        h = 10
        move = mid[h:] - mid[:-h]
        n = move.size
        # weak but real: significant at many standard errors (1/sqrt(n) under no signal)
        assert np.corrcoef(imb[:-h], move)[0, 1] > 8 / np.sqrt(n)
        assert np.corrcoef(gap[:-h], move)[0, 1] > 0.2


def test_no_signal_no_fair_value_lead() -> None:
    m = sy.generate(20_000, sy.SyntheticConfig(signal=0.0), seed=4)
    rows = replay(m)
    sid = m.config.instruments[0].security_id
    k = rows["sid"] == sid
    mid = rows["mid"][k]
    gap = m.fair_value_ticks[m.event_security_id == sid] - mid
    move = mid[10:] - mid[:-10]
    assert abs(np.corrcoef(gap[:-10], move)[0, 1]) < 0.1


def _long_run_std(m: sy.SyntheticMarket, sid: int) -> float:
    rows = replay(m)
    mid = rows["mid"][rows["sid"] == sid]
    return float(np.std(mid[1000::1000][1:] - mid[1000::1000][:-1]))


def test_volatility_and_spread_knobs() -> None:
    es = sy.ES
    calm = sy.SyntheticConfig(instruments=(dataclasses.replace(es, volatility_ticks=0.3),))
    wild = sy.SyntheticConfig(instruments=(dataclasses.replace(es, volatility_ticks=4.0),))
    a, b = sy.generate(30_000, calm, seed=2), sy.generate(30_000, wild, seed=2)
    assert _long_run_std(b, es.security_id) > 2 * _long_run_std(a, es.security_id)
    wide = sy.generate(10_000, sy.SyntheticConfig(min_spread_ticks=3), seed=2)
    rows = replay(wide)
    assert rows["spread"].min() >= 3
    assert rows["spread"].mean() > replay(sy.generate(10_000, seed=2))["spread"].mean() + 1


def test_parse_spec_and_validation() -> None:
    assert sy.parse_spec("synthetic:200000") == 200000
    assert sy.parse_spec("synthetic:200_000") == 200000
    assert sy.parse_spec("capture.pcap") is None
    for bad in ("synthetic:", "synthetic:0", "synthetic:-5", "synthetic:abc"):
        with pytest.raises(ValueError):
            sy.parse_spec(bad)
    with pytest.raises(ValueError, match="branching"):
        sy.SyntheticConfig(hawkes_alpha=3000.0, hawkes_beta=2000.0)
    with pytest.raises(ValueError, match="duplicate"):
        sy.SyntheticConfig(instruments=(sy.ES, sy.ES))
    with pytest.raises(ValueError, match="multiple of tick"):
        sy.SyntheticConfig(instruments=(dataclasses.replace(sy.ES, start_price=10),))
    assert sy.generate(0).events.size == 2 * 2 * sy.MAX_DEPTH  # only the opening books
