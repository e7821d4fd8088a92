"""Databento DBN replay (GLBX.MDP3): MBO, MBP-1/MBP-10, trades, definitions, status
-> ``MD_EVENT`` rows, through the ``MdSource`` interface (adapters/md_sources.py).

DBN is not CME's wire format: Databento rebuilds it from MDP 3.0 MBO. Prices
are int64 in display units of 1e-9 (3720.25 = 3_720_250_000_000); CME sends
Globex units, price = display / DisplayFactor. Rows produced here carry the
Globex PRICE9 mantissa, like the MDP decoder's:

    mantissa = dbn_price * 1e9 / display_factor_1e-9        (exact integers)

so ESH1 (DisplayFactor 0.01) at 3720.25 becomes 372025 * 1e9. The display
factor of each instrument comes from the DBN definition records replayed
first (or ``display_factors={instrument_id: factor_1e-9}``); DBN
``instrument_id`` is CME's SecurityID. Rows of an instrument whose display
factor is unknown are dropped and counted (``stats``).

Mapping (template_id is the CME template carrying the same information):

=============  ==============================================================
MBO            add/cancel/modify -> EV_ORDER (MD_NEW/DELETE/CHANGE, 47);
               trade -> EV_TRADE (48, side = aggressor); fill ->
               EV_TRADE_ORDER; clear -> EV_BOOK entry 'J' (book reset, 46)
MBP-10/MBP-1   the book after each update -> EV_SNAPSHOT + one EV_SNAPSHOT_ENTRY
               per non-empty level (52); a trade action also -> EV_TRADE first
trades         EV_TRADE (48)
status         EV_STATUS (30): aux = SecurityTradingStatus mapped from the
               action, size = trading event
definition     an INSTRUMENT row (``instruments``) + EV_DEFINITION (54), aux -1
=============  ==============================================================

F_LAST on a record sets FLAG_END_OF_EVENT on its last row; F_SNAPSHOT sets
FLAG_RECOVERY. ``msg_seq`` is the DBN ``sequence`` (the venue's MsgSeqNum).
``.zst`` files are decompressed by databento-dbn itself.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adapters.md_sources import END, ROLE_EVENTS, RxSlot
from core.types import (
    ET_BID,
    ET_BOOK_RESET,
    ET_OFFER,
    ET_TRADE,
    EV_BOOK,
    EV_DEFINITION,
    EV_ORDER,
    EV_SNAPSHOT,
    EV_SNAPSHOT_ENTRY,
    EV_STATUS,
    EV_TRADE,
    EV_TRADE_ORDER,
    FLAG_END_OF_EVENT,
    FLAG_LAST_IN_MSG,
    FLAG_RECOVERY,
    INSTRUMENT,
    MD_CHANGE,
    MD_DELETE,
    MD_EVENT,
    MD_NEW,
    NULL_I64,
    PRICE9_EXPONENT,
    SIDE_BUY,
    SIDE_NONE,
    SIDE_SELL,
    TS_CLOSE,
    TS_CROSS,
    TS_NEW_PRICE_INDICATION,
    TS_NO_CHANGE,
    TS_NOT_AVAILABLE,
    TS_POST_CLOSE,
    TS_PRE_CROSS,
    TS_PRE_OPEN,
    TS_READY_TO_TRADE,
    TS_TRADING_HALT,
    TS_UNKNOWN,
)

__all__ = ["DbnSource", "dbn_price_to_mantissa", "display_price", "read_dbn"]

_UNDEF_PRICE = int(NULL_I64)
_F_LAST = 0x80
_F_SNAPSHOT = 0x20
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# DBN StatusAction -> CME SecurityTradingStatus (tag 326)
_STATUS = {
    0: TS_NO_CHANGE, 1: TS_PRE_OPEN, 2: TS_PRE_CROSS, 3: TS_PRE_OPEN, 4: TS_CROSS,
    5: TS_PRE_OPEN, 6: TS_NEW_PRICE_INDICATION, 7: TS_READY_TO_TRADE, 8: TS_TRADING_HALT,
    9: TS_TRADING_HALT, 10: TS_TRADING_HALT, 11: TS_PRE_OPEN, 12: TS_CLOSE,
    13: TS_POST_CLOSE, 14: TS_NO_CHANGE, 15: TS_NOT_AVAILABLE,
}


def dbn_price_to_mantissa(price: int, display_factor: int) -> int:
    """DBN price (display units x 1e9) -> Globex PRICE9 mantissa; NULL stays NULL.

    ``display_factor`` is CME's DisplayFactor x 1e9 (0.01 -> 10_000_000). Exact
    when the price is a multiple of the factor's step (always, for real ticks);
    otherwise rounded to nearest.
    """
    if price == _UNDEF_PRICE:
        return _UNDEF_PRICE
    num = price * 1_000_000_000
    q, r = divmod(num, display_factor)
    if r * 2 >= display_factor:
        q += 1
    return q


def _char(v: Any) -> str:
    s = str(v)
    return s[0] if s else " "


def _side_entry(side: str) -> int:
    return ET_BID if side == "B" else ET_OFFER if side == "A" else 0


def _aggressor(side: str) -> int:
    # DBN trade side is the aggressor's: 'A' = sell aggressor (hit the bid)
    return SIDE_BUY if side == "B" else SIDE_SELL if side == "A" else SIDE_NONE


def read_dbn(path: str | Path) -> list[Any]:
    """Every record of a DBN file (plain or zstd), metadata first."""
    import databento_dbn as dbn

    data = Path(path).read_bytes()
    zst = data[:4] == _ZSTD_MAGIC
    compression: Any = dbn.Compression.ZSTD if zst else dbn.Compression.NONE
    dec = dbn.DBNDecoder(compression=compression)
    dec.write(data)
    return list(dec.decode())


class DbnSource:
    """Replay DBN files (in the given order) as MD_EVENT row batches.

    ``open()`` converts every record (definitions first if you list their file
    first); ``poll(rx)`` copies the next whole records into ``rx.events`` and
    returns the row count (``rx.role = ROLE_EVENTS``), ``END`` when done.
    ``rows``/``record_end`` hold the whole conversion; ``instruments`` the
    INSTRUMENT rows built from definition records; ``stats`` what was skipped.
    """

    def __init__(self, paths: Sequence[str | Path], display_factors: dict[int, int] | None = None,
                 channel: int = 0) -> None:
        self.paths = [Path(p) for p in paths]
        self.display_factors: dict[int, int] = dict(display_factors or {})
        self.channel = channel
        self.stats: Counter[str] = Counter()
        self.rows = np.zeros(0, dtype=MD_EVENT)
        self.record_end = np.zeros(0, dtype=np.int64)
        self.instruments = np.zeros(0, dtype=INSTRUMENT)
        self._pos = 0
        self._rec = 0

    # -- conversion -----------------------------------------------------------
    def open(self) -> None:
        rows: list[tuple[Any, ...]] = []
        ends: list[int] = []
        inst: list[np.void] = []
        for path in self.paths:
            for rec in read_dbn(path):
                n0 = len(rows)
                self._convert(rec, rows, inst)
                if len(rows) > n0:
                    ends.append(len(rows))
        self.rows = np.array(rows, dtype=MD_EVENT) if rows else np.zeros(0, dtype=MD_EVENT)
        self.record_end = np.array(ends, dtype=np.int64)
        self.instruments = (np.array(inst, dtype=INSTRUMENT) if inst
                            else np.zeros(0, dtype=INSTRUMENT))
        self._pos = 0
        self._rec = 0

    def close(self) -> None:
        self._rec = self.record_end.size

    def __len__(self) -> int:
        return int(self.rows.size)

    def poll(self, rx: RxSlot) -> int:
        if self._rec >= self.record_end.size:
            return END
        cap = rx.events.size
        start = self._pos
        r = self._rec
        end = start
        while r < self.record_end.size and self.record_end[r] - start <= cap:
            end = int(self.record_end[r])
            r += 1
        if end == start:  # one record larger than the slot: cannot happen with 4096 rows
            self.stats["record_too_large"] += 1
            self._rec += 1
            self._pos = int(self.record_end[self._rec - 1])
            return 0
        n = end - start
        rx.events[:n] = self.rows[start:end]
        rx.role = ROLE_EVENTS
        rx.channel = self.channel
        rx.recv_ns = 0
        self._pos = end
        self._rec = r
        return n

    def _px(self, iid: int, price: int) -> int | None:
        df = self.display_factors.get(iid)
        if df is None or df <= 0:
            return None
        return dbn_price_to_mantissa(int(price), df)

    @staticmethod
    def _row(kind: int, tmpl: int, rec: Any, *, price: int = _UNDEF_PRICE, size: int = 0,
             order_id: int = 0, aux: int = 0, rpt: int = 0, num_orders: int = 0,
             action: int = 0, entry_type: int = 0, level: int = 0, side: int = 0,
             flags: int = 0) -> tuple[Any, ...]:
        ts = int(rec.ts_event)
        return (ts if ts != (1 << 64) - 1 else 0, price, size, order_id, aux,
                int(rec.instrument_id), rpt, int(getattr(rec, "sequence", 0)) & 0xFFFFFFFF,
                num_orders, tmpl, kind, action, entry_type, level, side, 0, flags,
                PRICE9_EXPONENT, 0)

    def _convert(self, rec: Any, rows: list[tuple[Any, ...]], inst: list[np.void]) -> None:
        import databento_dbn as dbn

        flags_in = int(getattr(rec, "flags", 0))
        base = FLAG_RECOVERY if flags_in & _F_SNAPSHOT else 0
        n0 = len(rows)
        if isinstance(rec, dbn.Metadata):
            return
        if isinstance(rec, dbn.InstrumentDefMsg):
            self._definition(rec, inst)
            rows.append(self._row(EV_DEFINITION, 54, rec, aux=-1, flags=base))
        elif isinstance(rec, dbn.StatusMsg):
            action = int(rec.action.value if hasattr(rec.action, "value") else rec.action)
            event = int(rec.trading_event.value if hasattr(rec.trading_event, "value")
                        else rec.trading_event)
            rows.append(self._row(EV_STATUS, 30, rec, aux=_STATUS.get(action, TS_UNKNOWN),
                                  size=event, level=0xFF, flags=base))
        elif isinstance(rec, dbn.MBOMsg):
            if not self._mbo(rec, rows, base):
                return
        elif isinstance(rec, dbn.MBP10Msg | dbn.MBP1Msg | dbn.TradeMsg):
            if not self._mbp(rec, rows, base):
                return
        else:
            self.stats[f"unsupported_{type(rec).__name__}"] += 1
            return
        if len(rows) > n0:
            last = list(rows[-1])
            f = last[16] | FLAG_LAST_IN_MSG
            if flags_in & _F_LAST:
                f |= FLAG_END_OF_EVENT
            last[16] = f
            rows[-1] = tuple(last)

    def _mbo(self, rec: Any, rows: list[tuple[Any, ...]], flags: int) -> bool:
        action = _char(rec.action)
        side = _char(rec.side)
        iid = int(rec.instrument_id)
        if action == "R":  # clear book
            rows.append(self._row(EV_BOOK, 46, rec, action=MD_NEW, entry_type=ET_BOOK_RESET,
                                  flags=flags))
            return True
        px = self._px(iid, rec.price)
        if px is None:
            self.stats["no_display_factor"] += 1
            return False
        if action == "T":
            rows.append(self._row(EV_TRADE, 48, rec, price=px, size=int(rec.size),
                                  side=_aggressor(side), entry_type=ET_TRADE, flags=flags))
        elif action == "F":
            rows.append(self._row(EV_TRADE_ORDER, 48, rec, order_id=int(rec.order_id),
                                  size=int(rec.size), flags=flags))
        elif action in ("A", "C", "M"):
            act = {"A": MD_NEW, "C": MD_DELETE, "M": MD_CHANGE}[action]
            et = _side_entry(side)
            if not et:
                self.stats["mbo_no_side"] += 1
                return False
            rows.append(self._row(EV_ORDER, 47, rec, price=px, size=int(rec.size),
                                  order_id=int(rec.order_id), action=act, entry_type=et,
                                  flags=flags))
        else:
            self.stats[f"mbo_action_{action}"] += 1
            return False
        return True

    def _mbp(self, rec: Any, rows: list[tuple[Any, ...]], flags: int) -> bool:
        import databento_dbn as dbn

        iid = int(rec.instrument_id)
        if self.display_factors.get(iid, 0) <= 0:
            self.stats["no_display_factor"] += 1
            return False
        if _char(rec.action) == "T":
            px = self._px(iid, rec.price)
            rows.append(self._row(EV_TRADE, 48, rec, price=px if px is not None else _UNDEF_PRICE,
                                  size=int(rec.size), side=_aggressor(_char(rec.side)),
                                  entry_type=ET_TRADE, flags=flags))
        if isinstance(rec, dbn.TradeMsg):
            return True
        entries: list[tuple[Any, ...]] = []
        for k, lv in enumerate(rec.levels):
            for et, px, sz, ct in ((ET_BID, lv.bid_px, lv.bid_sz, lv.bid_ct),
                                   (ET_OFFER, lv.ask_px, lv.ask_sz, lv.ask_ct)):
                if int(px) == _UNDEF_PRICE or int(sz) == 0:
                    continue
                entries.append(self._row(EV_SNAPSHOT_ENTRY, 52, rec, price=self._px(iid, px)
                                         or 0, size=int(sz), num_orders=int(ct),
                                         action=MD_NEW, entry_type=et, level=k + 1,
                                         rpt=0xFFFFFFFF, flags=flags | FLAG_RECOVERY))
        # the book after this update, as a snapshot: the root clears, entries refill
        rows.append(self._row(EV_SNAPSHOT, 52, rec, aux=int(rec.sequence), rpt=0xFFFFFFFF,
                              num_orders=len(entries), order_id=int(NULL_I64), level=0xFF,
                              flags=flags | FLAG_RECOVERY))
        rows.extend(entries)
        return True

    def _definition(self, rec: Any, inst: list[np.void]) -> None:
        iid = int(rec.instrument_id)
        df = int(rec.display_factor)
        if df > 0 and df != _UNDEF_PRICE:
            self.display_factors[iid] = df
        r = np.zeros(1, dtype=INSTRUMENT)[0]
        r["security_id"] = iid
        r["appl_id"] = int(rec.appl_id)
        r["symbol"] = str(rec.raw_symbol).encode()[:20]
        r["security_group"] = str(rec.group).encode()[:6]
        r["asset"] = str(rec.asset).encode()[:6]
        r["display_factor"] = df
        r["price_exponent"] = PRICE9_EXPONENT
        r["min_price_increment"] = self._px(iid, int(rec.min_price_increment)) or _UNDEF_PRICE
        r["outright_depth"] = min(max(int(rec.market_depth), 0), 255)
        r["implied_depth"] = min(max(int(rec.market_depth_implied), 0), 255)
        r["trading_status"] = 255
        r["is_spread"] = 1 if int(rec.leg_count) > 0 else 0
        r["contract_multiplier"] = int(rec.unit_of_measure_qty)
        for field, v in (("high_limit_price", rec.high_limit_price),
                         ("low_limit_price", rec.low_limit_price)):
            px = self._px(iid, int(v))
            r[field] = _UNDEF_PRICE if px is None else px
        r["trading_reference_price"] = _UNDEF_PRICE
        r["template_id"] = 54
        inst.append(r)


def display_price(mantissa: int, display_factor: int) -> float:
    """Globex PRICE9 mantissa -> display price (for humans and tests)."""
    if mantissa == _UNDEF_PRICE:
        return math.nan
    return mantissa * display_factor / 1e18

