"""Databento DBN replay: price conversion to Globex mantissas and books built from it.

Expected values are read from the files by databento-dbn itself (its own
``pretty_*`` float fields) and from the files' documented content (ESH1 bid
3720.25 / ask 3720.50 at the top of the MBP-10 book, DisplayFactor 0.01).
"""

from __future__ import annotations

import numpy as np
import pytest

from adapters.dbn_source import DbnSource, dbn_price_to_mantissa, display_price, read_dbn
from adapters.md_sources import END, FeedHandler, RxSlot
from core.sequencing import Sequencer, SequencerConfig
from core.types import (
    ET_BID,
    ET_OFFER,
    EV_DEFINITION,
    EV_ORDER,
    EV_SNAPSHOT,
    EV_STATUS,
    EV_TRADE,
    FLAG_END_OF_EVENT,
    MD_DELETE,
    NULL_I64,
    SIDE_SELL,
    TS_NEW_PRICE_INDICATION,
    TS_PRE_OPEN,
    TS_READY_TO_TRADE,
)
from tests.conftest import DBN_DIR

DEFN = DBN_DIR / "databento-python_GLBX.MDP3_test_data.definition.dbn.zst"
MBP10 = DBN_DIR / "dbn-repo_test_data.mbp-10.v3.dbn.zst"
MBP1 = DBN_DIR / "dbn-repo_test_data.mbp-1.v3.dbn.zst"
MBO = DBN_DIR / "dbn-repo_test_data.mbo.v3.dbn"
TRADES = DBN_DIR / "dbn-repo_test_data.trades.v3.dbn.zst"
STATUS = DBN_DIR / "dbn-repo_test_data.status.v3.dbn.zst"
ESH1 = 5482


def test_price_conversion_is_exact_integer_arithmetic():
    # 3720.25 with DisplayFactor 0.01 is Globex 372025
    assert dbn_price_to_mantissa(3_720_250_000_000, 10_000_000) == 372025 * 10**9
    # DisplayFactor 0.0001 (e.g. FX): 1.20815 -> 12081.5
    assert dbn_price_to_mantissa(1_208_150_000, 100_000) == 12_081_500_000_000
    # negative spread prices, factor 1
    assert dbn_price_to_mantissa(-6_700_000_000, 10**9) == -6_700_000_000
    assert dbn_price_to_mantissa(int(NULL_I64), 10_000_000) == int(NULL_I64)
    assert display_price(372025 * 10**9, 10_000_000) == pytest.approx(3720.25)


def test_zstd_and_plain_files_decode():
    for path in (DEFN, MBP10, MBP1, MBO, TRADES, STATUS):
        recs = read_dbn(path)
        assert len(recs) >= 2, path  # metadata + records


def test_definition_gives_the_display_factor_and_instrument():
    src = DbnSource([DEFN])
    src.open()
    assert src.display_factors == {ESH1: 10_000_000}
    (inst,) = src.instruments
    assert inst["security_id"] == ESH1 and inst["symbol"] == b"ESH1"
    assert inst["min_price_increment"] == 25 * 10**9  # 0.25 display = 25 Globex units
    assert inst["outright_depth"] == 10 and inst["appl_id"] == 310
    assert inst["high_limit_price"] == 395350 * 10**9  # 3953.5
    assert src.rows["kind"].tolist() == [EV_DEFINITION]


def _pretty_levels(path):
    """Top levels of the last MBP-10 record as databento-dbn prints them (floats)."""
    import databento_dbn as dbn

    last = [r for r in read_dbn(path) if isinstance(r, dbn.MBP10Msg)][-1]
    return ([(lv.pretty_bid_px, lv.bid_sz, lv.bid_ct) for lv in last.levels],
            [(lv.pretty_ask_px, lv.ask_sz, lv.ask_ct) for lv in last.levels])


def test_mbp10_replay_builds_the_book_with_globex_prices():
    from core.market import MarketState

    src = DbnSource([DEFN, MBP10])
    src.open()
    assert not src.stats
    market = MarketState(max_instruments=8)
    market.add_instruments_from(src.instruments)
    handler = FeedHandler(src, Sequencer(1, SequencerConfig(recover_on_start=False)),
                          market=market)
    handler.open()
    handler.run()
    assert handler.ended and handler.rows == len(src)
    bids = [x for x in market.levels_of(ESH1, "bid") if x]
    asks = [x for x in market.levels_of(ESH1, "ask") if x]
    # the values the file's documentation names
    assert bids[0][0] == 372025 * 10**9 and asks[0][0] == 372050 * 10**9
    assert display_price(bids[0][0], 10_000_000) == pytest.approx(3720.25)
    assert display_price(asks[0][0], 10_000_000) == pytest.approx(3720.50)
    # every level against databento-dbn's own reading of the last record
    pb, pa = _pretty_levels(MBP10)
    assert len(bids) == len(asks) == 10
    for (px, sz, ct), (ppx, psz, pct) in zip(bids + asks, pb + pa, strict=True):
        assert display_price(px, 10_000_000) == pytest.approx(ppx)
        assert (sz, ct) == (psz, pct)
    assert bids[1][1] == 30  # level 2 bid size changed in the second record (31 -> 30)


def test_mbo_trades_status_rows():
    src = DbnSource([MBO, TRADES, STATUS, MBP1], display_factors={ESH1: 10_000_000})
    src.open()
    rows = src.rows
    orders = rows[rows["kind"] == EV_ORDER]
    assert orders.size == 2
    assert orders["price"].tolist() == [372275 * 10**9, 372300 * 10**9]  # 3722.75, 3723
    assert set(orders["action"].tolist()) == {MD_DELETE}
    assert set(orders["entry_type"].tolist()) == {ET_OFFER}
    assert orders["order_id"].tolist() == [647784973705, 647784973631]
    assert orders["msg_seq"].tolist() == [1170352, 1170353]
    assert np.all(orders["flags"] & FLAG_END_OF_EVENT)
    trades = rows[rows["kind"] == EV_TRADE]
    assert trades["price"].tolist() == [372025 * 10**9] * 2
    assert trades["size"].tolist() == [5, 21]
    assert set(trades["side"].tolist()) == {SIDE_SELL}
    status = rows[rows["kind"] == EV_STATUS]
    assert status["aux"].tolist() == [TS_READY_TO_TRADE, TS_PRE_OPEN, TS_PRE_OPEN,
                                      TS_NEW_PRICE_INDICATION]
    snaps = rows[rows["kind"] == EV_SNAPSHOT]
    assert snaps.size == 2  # MBP-1: one level each side after each update
    tops = rows[(rows["kind"] != EV_SNAPSHOT) & (rows["template_id"] == 52)]
    assert sorted(set(tops["entry_type"].tolist())) == [ET_BID, ET_OFFER]


def test_unknown_display_factor_is_counted_not_guessed():
    src = DbnSource([MBP10])
    src.open()
    assert len(src) == 0 and src.stats["no_display_factor"] == 2


def test_poll_hands_out_whole_records():
    src = DbnSource([DEFN, MBP10])
    src.open()
    rx = RxSlot(events_capacity=25)
    sizes = []
    while (n := src.poll(rx)) != END:
        assert n > 0
        sizes.append(n)
        assert rx.events[n - 1]["flags"] & FLAG_END_OF_EVENT or rx.events[0]["kind"] == \
            EV_DEFINITION
    assert sum(sizes) == len(src) and max(sizes) <= 25
