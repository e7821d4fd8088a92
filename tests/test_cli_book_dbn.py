"""``nanoarb book`` on Databento DBN files, run as the real console script.

Expected values are computed here from the records as databento-dbn itself reads
them (prices in display units x 1e9, converted with the DisplayFactor of the
definition record: mantissa = price * 1e9 // display_factor), never from our
DBN adapter or book code. The MBO expectations come from a naive dict-of-orders
book. Synthetic DBN files are written with databento-dbn from the reference
files' own metadata and records.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import random
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import databento_dbn as dbn
import pytest

from core.feature_spec import FEATURE_NAMES
from daemon.commands.book import is_dbn, parse_display_factor
from tests.conftest import DBN_DIR, PCAP_DIR

DEFN = DBN_DIR / "databento-python_GLBX.MDP3_test_data.definition.dbn.zst"
MBP10 = DBN_DIR / "dbn-repo_test_data.mbp-10.v3.dbn.zst"
MBO = DBN_DIR / "dbn-repo_test_data.mbo.v3.dbn"
TRADES = DBN_DIR / "dbn-repo_test_data.trades.v3.dbn.zst"
PCAP = PCAP_DIR / "mdp3_v9_udp_MDIncrementalRefreshVolume37.pcap"
ESH1 = 5482
LEVELS = 10
UNDEF = dbn.UNDEF_PRICE
Row = list[str]


# -- running the console script ----------------------------------------------------------
def _nanoarb() -> str:
    beside = Path(sys.executable).with_name("nanoarb")
    found = str(beside) if beside.exists() else shutil.which("nanoarb")
    if found is None:
        pytest.fail("the nanoarb console script is not installed (pip install -e .)")
    return found


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_nanoarb(), "book", *map(str, args)], capture_output=True,
                          text=True, timeout=600)


def _book_csv(*args: str | Path) -> tuple[Row, list[Row], str]:
    proc = _run("--csv", *args)
    assert proc.returncode == 0, proc.stderr
    table = list(csv.reader(io.StringIO(proc.stdout)))
    return table[0], table[1:], proc.stderr


# -- reading DBN independently -------------------------------------------------------------
def _read(path: Path) -> list[Any]:
    data = path.read_bytes()
    zst = data[:4] == b"\x28\xb5\x2f\xfd"
    compression: Any = dbn.Compression.ZSTD if zst else dbn.Compression.NONE
    dec = dbn.DBNDecoder(compression=compression)
    dec.write(data)
    return list(dec.decode())


def _definition() -> Any:
    (defn,) = [r for r in _read(DEFN) if isinstance(r, dbn.InstrumentDefMsg)]
    return defn


def _mantissa(price: int, display_factor: int) -> int:
    assert price * 10**9 % display_factor == 0  # ES prices are exact in Globex units
    return price * 10**9 // display_factor


def _row(seq: int, sid: int, bids: list[tuple[int, int, int]], asks: list[tuple[int, int, int]],
         depth: int = LEVELS) -> Row:
    """A ``--csv`` row: level k = bid (px, qty, orders) then ask; blank when absent."""
    cells = [str(seq), str(sid)]
    for k in range(LEVELS):
        for side in (bids, asks):
            cells += [str(x) for x in side[k]] if k < min(len(side), depth) else ["", "", ""]
    return cells


def _write_dbn(path: Path, metadata: Any, records: Iterable[Any]) -> Path:
    path.write_bytes(metadata.encode() + b"".join(bytes(r) for r in records))
    return path


def _zstd_raw_frame(data: bytes) -> bytes:
    """A valid zstd frame holding ``data`` uncompressed (one raw block), without a
    zstd library: magic, frame header (no checksum, 128 KiB window), block header."""
    assert len(data) < 1 << 17
    block = 1 | (len(data) << 3)  # last block, type raw, size
    return b"\x28\xb5\x2f\xfd" + bytes([0x00, 7 << 3]) + block.to_bytes(3, "little") + data


# -- a naive MBO book ----------------------------------------------------------------------
class NaiveMbo:
    """Databento MBO semantics with dicts: Add/Modify set an order, Cancel takes its size
    off (removed at 0), cleaR empties the instrument, Trade/Fill/None leave the book."""

    def __init__(self, display_factor: int, depth: int = LEVELS) -> None:
        self.df = display_factor
        self.depth = depth
        self.orders: dict[tuple[int, int], tuple[str, int, int]] = {}
        self.rows: list[Row] = []
        self._event: set[int] = set()

    def apply(self, rec: Any) -> None:
        action, side = str(rec.action), str(rec.side)
        iid, key = rec.instrument_id, (rec.instrument_id, rec.order_id)
        if action in ("A", "M"):
            self.orders[key] = (side, rec.price, rec.size)
        elif action == "C" and key in self.orders:
            s, px, size = self.orders[key]
            if size > rec.size:
                self.orders[key] = (s, px, size - rec.size)
            else:
                del self.orders[key]
        elif action == "R":
            self.orders = {k: v for k, v in self.orders.items() if k[0] != iid}
        if action != "F":  # a fill alone does not touch the book
            self._event.add(iid)
        if rec.flags & dbn.F_LAST:
            for sid in sorted(self._event):
                self.rows.append(_row(rec.sequence, sid, self.side(sid, "B"),
                                      self.side(sid, "A"), self.depth))
            self._event.clear()

    def side(self, iid: int, side: str) -> list[tuple[int, int, int]]:
        agg: dict[int, list[int]] = {}
        for (i, _), (s, px, size) in self.orders.items():
            if i == iid and s == side:
                lv = agg.setdefault(px, [0, 0])
                lv[0] += size
                lv[1] += 1
        best = sorted(agg, reverse=side == "B")
        return [(_mantissa(px, self.df), agg[px][0], agg[px][1]) for px in best]


def _mbo(seq: int, action: str, side: str, price: int, size: int, order_id: int,
         last: bool = True) -> Any:
    return dbn.MBOMsg(publisher_id=1, instrument_id=ESH1, ts_event=1609160400000000000 + seq,
                      ts_recv=1609160400000001000 + seq, order_id=order_id, price=price,
                      size=size, action=getattr(dbn.Action, _ACTIONS[action]),
                      side=getattr(dbn.Side, _SIDES[side]), flags=dbn.F_LAST if last else 0,
                      sequence=seq)


_ACTIONS = {"A": "ADD", "C": "CANCEL", "M": "MODIFY", "R": "CLEAR", "T": "TRADE", "F": "FILL"}
_SIDES = {"B": "BID", "A": "ASK", "N": "NONE"}
_TICK = 250_000_000  # 0.25 in DBN units


def _synthetic_mbo(seed: int = 4) -> tuple[Any, list[Any]]:
    """Reference MBO metadata and records, preceded by the Adds of the two orders they
    cancel and followed by a random session: adds, modifies (size and price), full
    cancels, trade+fill+cancel events, multi-record events and a book clear."""
    ref = _read(MBO)
    metadata, ref_cancels = ref[0], ref[1:]
    rng = random.Random(seed)
    best_bid, best_ask = 3_720_250_000_000, 3_720_500_000_000
    recs: list[Any] = []
    live: dict[int, tuple[str, int, int]] = {}
    seq = 1_170_000
    next_id = 700_000_000_000

    def add(side: str, px: int, size: int, oid: int | None = None, last: bool = True) -> None:
        nonlocal seq, next_id
        if oid is None:
            next_id += rng.randrange(1, 50)
            oid = next_id
        seq += 1
        recs.append(_mbo(seq, "A", side, px, size, oid, last))
        live[oid] = (side, px, size)

    def price(side: str) -> int:
        k = rng.randrange(14)
        return best_bid - k * _TICK if side == "B" else best_ask + k * _TICK

    for c in ref_cancels:  # the reference cancels must find their orders
        add(str(c.side), c.price, c.size, c.order_id)
    for _ in range(40):
        side = rng.choice("BA")
        add(side, price(side), rng.randrange(1, 60))
    recs += ref_cancels
    for c in ref_cancels:
        del live[c.order_id]
    seq = max(seq, max(c.sequence for c in ref_cancels))
    for step in range(320):
        roll = rng.random()
        if step == 200:  # book clear, then a rebuild in one multi-record event
            seq += 1
            recs.append(_mbo(seq, "R", "N", UNDEF, 0, 0))
            live.clear()
            for j in range(6):
                side = "BA"[j % 2]
                add(side, price(side), rng.randrange(1, 20), last=j == 5)
        elif roll < 0.35 or len(live) < 8:
            n = rng.choice((1, 1, 1, 3))  # sometimes several adds in one event
            for j in range(n):
                side = rng.choice("BA")
                add(side, price(side), rng.randrange(1, 60), last=j == n - 1)
        elif roll < 0.6:
            oid = rng.choice(sorted(live))
            side, px, size = live[oid]
            if rng.random() < 0.5:
                px = price(side)
            size = rng.randrange(1, 60)
            seq += 1
            recs.append(_mbo(seq, "M", side, px, size, oid))
            live[oid] = (side, px, size)
        elif roll < 0.85:
            oid = rng.choice(sorted(live))
            side, px, size = live.pop(oid)
            seq += 1
            recs.append(_mbo(seq, "C", side, px, size, oid))
        else:  # an aggressor takes a whole resting order: trade, fill, cancel in one event
            oid = rng.choice(sorted(live))
            side, px, size = live.pop(oid)
            aggressor = "A" if side == "B" else "B"
            for action, s, last in (("T", aggressor, False), ("F", side, False),
                                    ("C", side, True)):
                seq += 1
                recs.append(_mbo(seq, action, s, px, size, oid if action != "T" else 0, last))
    return metadata, recs


# -- tests ---------------------------------------------------------------------------------
def test_detection_by_content_not_name(tmp_path: Path) -> None:
    assert is_dbn(MBO) and is_dbn(MBP10) and is_dbn(DEFN)
    assert not is_dbn(PCAP)
    renamed = tmp_path / "book.pcap"
    shutil.copy(MBP10, renamed)
    assert is_dbn(renamed)
    wrapped = tmp_path / "mbo.bin"
    wrapped.write_bytes(_zstd_raw_frame(MBO.read_bytes()))
    assert is_dbn(wrapped)
    other = tmp_path / "notes.dbn.zst"
    other.write_bytes(_zstd_raw_frame(b"not a DBN stream, just text " * 4))
    assert not is_dbn(other)
    assert parse_display_factor("0.01") == (None, 10_000_000)
    assert parse_display_factor("5482=0.0001") == (5482, 100_000)
    for bad in ("0", "-1", "1e-10", "x=0.01", "abc"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"display factor|FACTOR"):
            parse_display_factor(bad)


def _mbp10_rows(depth: int = LEVELS) -> list[Row]:
    """The rows the MBP-10 file should print: its books, prices in Globex mantissas."""
    df = _definition().display_factor
    books = [r for r in _read(MBP10) if isinstance(r, dbn.MBP10Msg)]
    # the values the reference README names, as databento-dbn reads them
    assert (books[0].levels[0].pretty_bid_px, books[0].levels[0].pretty_ask_px) == \
        (3720.25, 3720.50)
    return [_row(b.sequence, b.instrument_id,
                 [(_mantissa(lv.bid_px, df), lv.bid_sz, lv.bid_ct) for lv in b.levels
                  if lv.bid_px != UNDEF],
                 [(_mantissa(lv.ask_px, df), lv.ask_sz, lv.ask_ct) for lv in b.levels
                  if lv.ask_px != UNDEF], depth) for b in books]


def _mbo_reference_rows() -> list[Row]:
    naive = NaiveMbo(_definition().display_factor)
    for rec in _read(MBO)[1:]:
        naive.apply(rec)
    return naive.rows


def test_mbp10_rows_are_the_file_book_in_globex_mantissas() -> None:
    expected = _mbp10_rows()
    header, rows, err = _book_csv(DEFN, MBP10)
    assert header[:8] == ["seq", "security_id", "bid_px_1", "bid_qty_1", "bid_orders_1",
                          "ask_px_1", "ask_qty_1", "ask_orders_1"]
    assert rows == expected
    assert rows[0][2] == str(372025 * 10**9) and rows[0][5] == str(372050 * 10**9)
    assert "dbn_files=2" in err and "skipped" not in err


def test_display_factor_option_and_missing_factor(tmp_path: Path) -> None:
    with_defn = _mbp10_rows()
    renamed = tmp_path / "esh1-book"  # no extension: found by its zstd + DBN content
    shutil.copy(MBP10, renamed)
    _, rows, _ = _book_csv("--display-factor", "0.01", renamed)
    assert rows == with_defn
    _, rows, _ = _book_csv("--display-factor", "5482=0.01", "--display-factor", "1=0.5", MBP10)
    assert rows == with_defn
    _, rows, err = _book_csv(MBP10)  # no factor: nothing is guessed, the drop is reported
    assert rows == []
    assert "no_display_factor=2" in err and "--display-factor" in err


def test_mbo_reference_file_against_naive_book() -> None:
    _, rows, err = _book_csv(DEFN, MBO)
    assert rows == _mbo_reference_rows()
    # both records cancel orders placed before the file starts: counted, book stays empty
    assert [r[0] for r in rows] == ["1170352", "1170353"] and set(rows[0][2:]) == {""}
    assert "mbo_unknown_order=2" in err


def test_mbo_session_against_naive_book(tmp_path: Path) -> None:
    metadata, recs = _synthetic_mbo()
    path = _write_dbn(tmp_path / "session.mbo.dbn", metadata, recs)
    naive = NaiveMbo(_definition().display_factor)
    for rec in _read(path)[1:]:  # as databento-dbn reads the file back
        naive.apply(rec)
    assert len(naive.rows) > 300
    assert max(sum(c != "" for c in r[2::6]) for r in naive.rows) == LEVELS  # >10 bid prices
    assert any(set(r[2:]) == {""} for r in naive.rows)  # the clear
    _, rows, err = _book_csv(DEFN, path)
    assert rows == naive.rows
    assert "mbo_unknown_order=0" in err


def _spread_ticks(rows: list[Row], header: Row) -> float:
    return float(rows[-1][header.index("spread_ticks")])


def test_definition_tick_and_depth_apply_to_dbn_books(tmp_path: Path) -> None:
    metadata = _read(MBO)[0]
    # best bid 3720.25, best ask 3720.75; every price difference is a multiple of 0.5
    book = [("B", 3_720_250_000_000, 5), ("B", 3_719_750_000_000, 7), ("B", 3_720_250_000_000, 2),
            ("A", 3_720_750_000_000, 4), ("A", 3_721_250_000_000, 9)]
    recs = [_mbo(100 + i, "A", s, px, q, 900 + i) for i, (s, px, q) in enumerate(book)]
    path = _write_dbn(tmp_path / "two-ticks.dbn", metadata, recs)
    defn = _definition()
    tick = _mantissa(defn.min_price_increment, defn.display_factor)  # 0.25 -> 25e9
    spread = _mantissa(3_720_750_000_000 - 3_720_250_000_000, defn.display_factor)
    header, rows, _ = _book_csv("--features", DEFN, path)
    assert header[-len(FEATURE_NAMES):] == list(FEATURE_NAMES)
    assert _spread_ticks(rows, header) == spread / tick == 2.0
    # without a definition the tick is inferred from the book (gcd of the differences)
    header, rows, _ = _book_csv("--features", "--display-factor", "0.01", path)
    prices = [_mantissa(px, defn.display_factor) for _, px, _ in book]
    inferred = math.gcd(*(abs(a - b) for a in prices for b in prices if a != b))
    assert _spread_ticks(rows, header) == spread / inferred == 1.0
    # a definition's market_depth bounds the book
    defn.market_depth = 3
    shallow = _write_dbn(tmp_path / "depth3.definition.dbn", _read(DEFN)[0], [defn])
    _, rows, _ = _book_csv(shallow, MBP10)
    assert rows == _mbp10_rows(depth=3)
    assert _mbp10_rows()[0][2 + 6 * 3] != ""  # the file has a 4th level


def test_captures_and_dbn_mixed_in_order(tmp_path: Path) -> None:
    _, capture_rows, _ = _book_csv(PCAP)
    # MBO after MBP-10 of the same instrument: the order book replaces the price book
    dbn_rows = _mbp10_rows() + _mbo_reference_rows()
    assert capture_rows
    fake_pcap = tmp_path / "mbp10.pcap"  # DBN under a capture's name
    shutil.copy(MBP10, fake_pcap)
    wrapped = tmp_path / "mbo.bin"  # plain DBN inside a zstd frame
    wrapped.write_bytes(_zstd_raw_frame(MBO.read_bytes()))
    _, rows, err = _book_csv(DEFN, PCAP, fake_pcap, wrapped)
    assert rows == capture_rows + dbn_rows  # the definition file itself yields no row
    assert "packets=1" in err and "dbn_files=3" in err


def test_zstd_that_is_not_dbn_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "junk.dbn.zst"
    bad.write_bytes(_zstd_raw_frame(b"\x00" * 64))
    proc = _run(bad)
    assert proc.returncode == 1
    assert f"{bad}: zstd-compressed but not DBN" in proc.stderr
