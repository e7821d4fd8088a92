"""``nanoarb book FILE... [--security-id N] [--csv] [--features] [--display-factor [SID=]F]``:
rebuild books from captures and Databento DBN files.

Replays the MDP 3.0 packets of the captures, in order, from empty books (a capture
starts mid-session: what comes is applied, no snapshot is awaited). A and B copies
of a packet are deduplicated by MsgSeqNum per channel; without a channel
configuration a UDP stream's channel is its destination port mod 1000 (CME's
convention for the A/B feeds of one channel), a TCP stream's its server port mod
1000. Definitions found in the capture set each instrument's depth (tag 264) and
tick; an instrument never defined gets depth 10.

A file is DBN when it starts with ``DBN`` (or is a zstd frame whose content does),
whatever its name; files are applied in the order given, captures and DBN mixed.
DBN records become MD_EVENT rows (``adapters.dbn_source``: prices converted to
Globex mantissas with the instrument's DisplayFactor, from a DBN or MDP definition
seen earlier or ``--display-factor``) and go through the same
``MarketState.apply_events`` as decoded packets. DBN definitions set depth
(market_depth) and tick. MBP-10/MBP-1 records replace the book (a snapshot each);
MBO records feed the MBO book, and at each event end (F_LAST) its best levels
(quantity and order count per price) become the instrument's outright book, so the
rows and features of an MBO file are those of its order book.

One row per completed event (MatchEventIndicator end of event, DBN F_LAST) per
changed instrument: ``seq`` (MsgSeqNum; DBN ``sequence``), ``security_id``, then for
levels 1..depth ``bid_px bid_qty bid_orders ask_px ask_qty ask_orders``; prices are
raw mantissas as on the wire (exponent -9, or -7 for legacy templates), the book is
level-indexed as MDP 3.0 sends it and a level never sent is blank. ``--features``
appends the feature vector (``core.feature_spec``).
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

HELP = ("Rebuild MDP 3.0 order books (and features) from pcap captures and Databento DBN "
        "files, one row per event.")

_LEVEL_FIELDS = ("bid_px", "bid_qty", "bid_orders", "ask_px", "ask_qty", "ask_orders")
_WIDTHS = (16, 8, 6, 16, 8, 6)
_MAX_LEVELS = 10

_DBN_MAGIC = b"DBN"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_SNIFF_CHUNK = 1 << 16
_SNIFF_LIMIT = 1 << 24  # a zstd frame that yields no DBN metadata in 16 MiB is not DBN
_DBN_BATCH = 1 << 16  # rows per apply_events call for MBP/trades/status files


def is_dbn(path: str | Path) -> bool:
    """True if ``path`` holds DBN: plain (``DBN`` + version byte) or zstd-compressed.

    The name does not matter. A zstd frame is decompressed (by databento-dbn) only
    until its first record: DBN metadata means DBN, anything else does not.
    """
    with open(path, "rb") as fh:
        head = fh.read(4)
        if head[:3] == _DBN_MAGIC:
            return True
        if head != _ZSTD_MAGIC:
            return False
        import databento_dbn as dbn

        zstd: Any = dbn.Compression.ZSTD
        dec = dbn.DBNDecoder(compression=zstd)
        chunk = head
        fed = 0
        try:
            while chunk and fed < _SNIFF_LIMIT:
                dec.write(chunk)
                fed += len(chunk)
                first = dec.decode()
                if first:
                    return isinstance(first[0], dbn.Metadata)
                chunk = fh.read(_SNIFF_CHUNK)
        except (dbn.DBNError, RuntimeError, ValueError):  # a bad zstd frame, or not DBN
            return False
        return False


def _starts_with(path: str | Path, magic: bytes) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(magic)) == magic


def parse_display_factor(text: str) -> tuple[int | None, int]:
    """``[SECURITY_ID=]FACTOR`` -> (security_id or None for every instrument, factor
    as a Decimal9 mantissa, e.g. 0.01 -> 10_000_000)."""
    sid_s, sep, f_s = text.rpartition("=")
    try:
        sid = int(sid_s) if sep else None
        factor = Decimal(f_s) * 1_000_000_000
    except (ValueError, InvalidOperation):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected FACTOR or SECURITY_ID=FACTOR, e.g. 0.01 or 5482=0.01") from None
    if factor <= 0 or factor != factor.to_integral_value():
        raise argparse.ArgumentTypeError(
            f"{text!r}: a display factor is a positive multiple of 1e-9")
    return sid, int(factor)


class _FactorsWithDefault(dict[int, int]):
    """Display factors by instrument, with one factor for instruments not listed."""

    def __init__(self, known: dict[int, int], default: int) -> None:
        super().__init__(known)
        self.default = default

    def get(self, key: int, default: Any = None) -> Any:
        # DbnSource asks .get(iid) / .get(iid, 0): a missing instrument gets the fallback
        return super().get(key, self.default)


_PROJECT: Callable[..., None] | None = None


def _mbo_projector() -> Callable[..., None]:
    """The kernel writing the best MBO levels into the outright MBP book (compiled once,
    cached; built lazily so ``nanoarb --help`` does not import numba)."""
    global _PROJECT
    if _PROJECT is not None:
        return _PROJECT
    import numpy as np
    from numba import njit

    from core.book.mbo import ML_COUNT, ML_NEXT, ML_PX, ML_QTY, ML_SIDE
    from core.book.mbp import NO_NRT, _side_unclean
    from core.types import (
        BOOK_ASK,
        BOOK_BID,
        IS_DEPTH,
        IS_MBO_HEAD,
        IS_SECURITY_ID,
        LV_ORDERS,
        LV_PX,
        LV_QTY,
        MAX_DEPTH,
        NULL_I64,
    )

    @njit(cache=True, **NO_NRT)
    def _mbo_best_levels_to_book(inst, levels, book, touched, n_touched, mbo_sids):
        """For each of ``touched[:n_touched]`` whose SecurityID is in ``mbo_sids`` (sorted):
        outright book := its best MBO levels, up to its depth."""
        for k in range(n_touched):
            row = touched[k]
            sid = inst[row, IS_SECURITY_ID]
            pos = np.searchsorted(mbo_sids, sid)
            if pos == mbo_sids.size or mbo_sids[pos] != sid:
                continue
            # the MBO levels of an instrument are an unsorted chain: one pass, insertion
            # into the best `depth` of each side (bids high first, asks low first)
            depth = inst[row, IS_DEPTH]
            for side in (BOOK_BID, BOOK_ASK):
                _side_unclean(inst, row, side)  # written here, not by _mbp_apply: rescan
                for i in range(MAX_DEPTH):
                    book[row, side, i, LV_PX] = NULL_I64
                    book[row, side, i, LV_QTY] = 0
                    book[row, side, i, LV_ORDERS] = 0
            n_bid = 0
            n_ask = 0
            lv = inst[row, IS_MBO_HEAD]
            while lv != -1:
                is_bid = levels[lv, ML_SIDE] == 0
                side = BOOK_BID if is_bid else BOOK_ASK
                n = n_bid if is_bid else n_ask
                px = levels[lv, ML_PX]
                i = n
                while i > 0:
                    ahead = book[row, side, i - 1, LV_PX]
                    if (px > ahead) if is_bid else (px < ahead):
                        i -= 1
                    else:
                        break
                if i < depth:
                    j = n if n < depth else depth - 1
                    while j > i:
                        book[row, side, j, LV_PX] = book[row, side, j - 1, LV_PX]
                        book[row, side, j, LV_QTY] = book[row, side, j - 1, LV_QTY]
                        book[row, side, j, LV_ORDERS] = book[row, side, j - 1, LV_ORDERS]
                        j -= 1
                    book[row, side, i, LV_PX] = px
                    book[row, side, i, LV_QTY] = levels[lv, ML_QTY]
                    book[row, side, i, LV_ORDERS] = levels[lv, ML_COUNT]
                    if n < depth:
                        n += 1
                if is_bid:
                    n_bid = n
                else:
                    n_ask = n
                lv = levels[lv, ML_NEXT]

    _PROJECT = _mbo_best_levels_to_book
    return _PROJECT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("captures", nargs="+", metavar="FILE",
                        help="pcap/pcapng capture or Databento DBN file (plain or zstd), "
                             "recognised by content; applied in the order given")
    parser.add_argument("--security-id", type=int, metavar="N",
                        help="print only this instrument's rows")
    parser.add_argument("--csv", action="store_true", help="comma-separated, with a header row")
    parser.add_argument("--features", action="store_true", help="append the feature columns")
    parser.add_argument("--display-factor", type=parse_display_factor, action="append",
                        default=[], metavar="[SID=]F",
                        help="DBN prices: DisplayFactor of instrument SID (or of every "
                             "instrument without a definition), e.g. 0.01 for ES; a "
                             "definition in the input takes precedence (repeatable)")


def _channel_of(rec: Any) -> int:
    # feeds A and B of channel xxx use ports 14xxx / 15xxx; TCP: the server's port
    addr = rec.dst if rec.protocol == "udp" else rec.src
    try:
        return int(addr.rsplit(":", 1)[1]) % 1000
    except (IndexError, ValueError):
        return -1


class BookReplay:
    """Capture -> deduplicated packets -> decoder -> MarketState, yielding records;
    DBN file -> ``DbnSource`` rows -> the same MarketState.

    ``display_factors`` (SecurityID -> DisplayFactor as a Decimal9 mantissa) converts
    DBN prices; definitions (DBN or MDP) add to it. ``default_display_factor`` (if
    not 0) serves instruments without one.
    """

    def __init__(self, max_instruments: int = 4096, max_orders: int = 1 << 18,
                 display_factors: dict[int, int] | None = None,
                 default_display_factor: int = 0) -> None:
        from core.market import MarketState
        from core.sbe.instruments import InstrumentTable
        from core.sbe.mdp3 import Mdp3Decoder

        self.state = MarketState(max_instruments=max_instruments, ring_len=0,
                                 max_orders=max_orders)
        self.decoder = Mdp3Decoder()
        self.instruments = InstrumentTable()
        self.seen: dict[int, set[int]] = {}
        self.packets = 0
        self.duplicates = 0
        self.display_factors: dict[int, int] = dict(display_factors or {})
        self.default_display_factor = default_display_factor
        self.dbn_files = 0
        self.dbn_rows = 0
        self.dbn_skipped: Counter[str] = Counter()

    def _define(self, payload: bytes, events: Any) -> None:
        from core.types import EV_DEFINITION

        if not (events["kind"] == EV_DEFINITION).any():
            return
        self.instruments.update_from_packet(payload, len(payload), events)
        for ev in events[events["kind"] == EV_DEFINITION]:
            rec = self.instruments.get(int(ev["security_id"]))
            if rec is None:
                continue
            self._add_instrument(rec)

    def _add_instrument(self, rec: Any) -> None:
        """Register one INSTRUMENT row (MDP or DBN definition): depth, tick, channel, and
        its DisplayFactor for later DBN prices."""
        from core.types import MAX_DEPTH, NULL_I64

        depth = int(rec["outright_depth"]) or MAX_DEPTH
        tick = int(rec["min_price_increment"])
        self.state.add_instrument(
            int(rec["security_id"]), depth=min(depth, MAX_DEPTH),
            tick=max(tick, 0) if tick != NULL_I64 else 0,
            channel=int(rec["appl_id"]) if int(rec["appl_id"]) > 0 else -1)
        df = int(rec["display_factor"])
        if 0 < df != NULL_I64:
            self.display_factors[int(rec["security_id"])] = df

    def packet(self, payload: bytes, channel: int) -> dict[str, Any] | None:
        """Apply one packet; None if it is a duplicate (A/B) or too short."""
        import numpy as np

        if len(payload) < 12:
            return None
        seq = int.from_bytes(payload[:4], "little")
        seen = self.seen.setdefault(channel, set())
        if seq in seen:
            self.duplicates += 1
            return None
        seen.add(seq)
        self.packets += 1
        events = self.decoder.decode(np.frombuffer(payload, dtype=np.uint8).copy())
        self._define(payload, events)
        rec: dict[str, Any] = self.state.apply_events(events, channel=channel, record=True)
        return rec

    def dbn(self, path: str | Path) -> Iterator[dict[str, Any]]:
        """Apply one DBN file; yield the records of each apply_events call."""
        import databento_dbn
        import numpy as np

        from adapters.dbn_source import DbnSource
        from core.types import EV_ORDER

        src = DbnSource([path], display_factors=self.display_factors)
        if self.default_display_factor > 0:
            src.display_factors = _FactorsWithDefault(src.display_factors,
                                                      self.default_display_factor)
        try:
            src.open()
        except databento_dbn.DBNError as exc:  # a truncated or corrupt file
            raise ValueError(f"{path}: {exc}") from exc
        self.dbn_files += 1
        self.dbn_rows += len(src)
        self.dbn_skipped.update(src.stats)
        for rec in src.instruments:
            self._add_instrument(rec)
        self.display_factors.update(src.display_factors)
        rows = src.rows
        if rows.size == 0:
            return
        is_order = rows["kind"] == EV_ORDER
        if is_order.any():
            yield from self._dbn_mbo(rows, np.unique(rows["security_id"][is_order]))
            return
        # MBP-10/MBP-1/trades/status: whole records in batches (bounded record memory)
        ends = src.record_end
        start = 0
        while start < rows.size:
            first = int(np.searchsorted(ends, start, side="right"))  # next record's index
            fit = int(np.searchsorted(ends, start + _DBN_BATCH, side="right"))
            stop = int(ends[max(fit, first + 1) - 1])  # whole records; at least one
            yield self.state.apply_events(rows[start:stop], record=True)
            start = stop

    def _dbn_mbo(self, rows: Any, mbo_sids: Any) -> Iterator[dict[str, Any]]:
        """MBO rows event by event: apply the event without completing it, write the best
        MBO levels of its instruments into their outright books, then complete it (a
        heartbeat row carrying the end-of-event bit), so records and features see them."""
        import numpy as np

        from core.market import RUN_N_TOUCHED
        from core.types import EV_HEARTBEAT, FLAG_END_OF_EVENT, MD_EVENT

        project = _mbo_projector()
        state = self.state
        sids = np.ascontiguousarray(np.sort(mbo_sids.astype(np.int64)))
        end = np.zeros(1, dtype=MD_EVENT)
        end["kind"] = EV_HEARTBEAT
        end["flags"] = FLAG_END_OF_EVENT
        flags = rows["flags"]
        bounds = np.flatnonzero(flags & FLAG_END_OF_EVENT) + 1
        start = 0
        for stop in bounds.tolist():
            flags[stop - 1] = int(flags[stop - 1]) & ~FLAG_END_OF_EVENT  # rows are ours
            state.apply_events(rows[start:stop])
            project(state.inst, state.levels, state.book, state.touched,
                    int(state.run[RUN_N_TOUCHED]), sids)
            seq = int(rows["msg_seq"][stop - 1])
            end["msg_seq"] = seq
            if state.apply_events(end):
                yield self._completed_records(seq)
            start = stop
        if start < rows.size:  # an event left open at the end of the file stays open
            state.apply_events(rows[start:])

    def _completed_records(self, seq: int) -> dict[str, Any]:
        """The records ``apply_events(record=True)`` would return for the instruments the
        last call completed (read back from the state: nothing changed since; avoids
        sizing a record buffer for every instrument on each event)."""
        import numpy as np

        from core.types import BOOK_ASK, BOOK_BID, IS_LAST_TIME, IS_SECURITY_ID, MAX_DEPTH

        state = self.state
        done = state.completed()
        m = done.size
        assert BOOK_ASK == BOOK_BID + 1
        sides = state.book[done, BOOK_BID:BOOK_ASK + 1]  # [m, 2, depth, (px, qty, orders)]
        return {
            "security_id": state.inst[done, IS_SECURITY_ID].astype(np.int32),
            "seq": np.full(m, seq, dtype=np.uint32),
            "time": state.inst[done, IS_LAST_TIME].astype(np.uint64),
            "row": done,
            "levels": sides.transpose(0, 2, 1, 3).reshape(m, MAX_DEPTH, 6),
            "features": state.features[done].astype(np.float32),
        }

    def run(self, paths: list[str]) -> Iterator[tuple[dict[str, Any], int]]:
        """Yield (records of a packet or DBN batch, index) for every record, files in order."""
        from adapters.capture import read_capture

        for path in paths:
            if is_dbn(path):
                batches: Iterator[dict[str, Any]] = self.dbn(path)
            elif _starts_with(path, _ZSTD_MAGIC):
                raise ValueError(f"{path}: zstd-compressed but not DBN "
                                 "(decompress a capture first)")
            else:
                batches = (out for rec in read_capture(path)
                           if rec.protocol in ("udp", "mdp-tcp")
                           and (out := self.packet(rec.payload, _channel_of(rec))) is not None)
            for out in batches:
                for i in range(out["security_id"].size):
                    yield out, i


def _header(features: bool) -> list[str]:
    from core.feature_spec import FEATURE_NAMES

    cols = ["seq", "security_id"]
    for lv in range(1, _MAX_LEVELS + 1):
        cols += [f"{f}_{lv}" for f in _LEVEL_FIELDS]
    if features:
        cols += list(FEATURE_NAMES)
    return cols


def format_row(rec: dict[str, Any], i: int, depth: int, features: bool) -> list[str]:
    """The cells of record ``i``: levels beyond ``depth`` and blank levels are empty."""
    from core.types import NULL_I64

    cells = [str(int(rec["seq"][i])), str(int(rec["security_id"][i]))]
    for k, lv in enumerate(rec["levels"][i].tolist()):  # Python ints: no numpy scalars
        for side in (0, 3):
            px = lv[side]
            if k >= depth or px == NULL_I64:
                cells += ["", "", ""]
            else:
                cells += [str(px), str(lv[side + 1]), str(lv[side + 2])]
    if features:
        cells += [f"{float(x):.6g}" for x in rec["features"][i]]
    return cells


def _text(cells: list[str], features: bool) -> str:
    parts = [f"{cells[0]:>10}", f"{cells[1]:>10}"]
    body = cells[2:2 + 6 * _MAX_LEVELS]
    for j, c in enumerate(body):
        parts.append(f"{c:>{_WIDTHS[j % 6]}}")
    if features:
        parts += [f"{c:>12}" for c in cells[2 + 6 * _MAX_LEVELS:]]
    return " ".join(parts).rstrip()


def run(args: argparse.Namespace, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    from core.types import IS_DEPTH

    out = out or sys.stdout
    err = err or sys.stderr
    factors = {sid: f for sid, f in args.display_factor if sid is not None}
    default = next((f for sid, f in reversed(args.display_factor) if sid is None), 0)
    replay = BookReplay(display_factors=factors, default_display_factor=default)
    header = _header(args.features)
    if args.csv:
        out.write(",".join(header) + "\n")
    else:
        out.write(_text(header, args.features) + "\n")
    rows = 0
    try:
        for rec, i in replay.run(list(args.captures)):
            sid = int(rec["security_id"][i])
            if args.security_id is not None and sid != args.security_id:
                continue
            depth = int(replay.state.inst[int(rec["row"][i]), IS_DEPTH])
            cells = format_row(rec, i, depth, args.features)
            out.write((",".join(cells) if args.csv else _text(cells, args.features)) + "\n")
            rows += 1
    except BrokenPipeError:  # `| head`: the reader is gone, not an error
        return 0
    except (OSError, ValueError) as exc:
        err.write(f"nanoarb book: {exc}\n")
        return 1
    c = replay.state.counter_dict()
    drops = int(replay.state.drops.sum()) + int(replay.decoder.drops.sum())
    err.write(
        f"packets={replay.packets} duplicates={replay.duplicates} rows={rows} "
        f"events={c['events']} instruments={replay.state.n_instruments} "
        f"violations={c['violations']} stale={c['stale']} rpt_gaps={c['rpt_gaps']} "
        f"decode_drops={drops}"
        + (f" dbn_files={replay.dbn_files} dbn_rows={replay.dbn_rows} "
           f"mbo_unknown_order={c['mbo_unknown_order']}" if replay.dbn_files else "") + "\n")
    if replay.dbn_skipped:
        skipped = " ".join(f"{k}={v}" for k, v in sorted(replay.dbn_skipped.items()))
        err.write(f"nanoarb book: DBN records skipped: {skipped}")
        err.write(" (no DisplayFactor: put a definition file first, or --display-factor)\n"
                  if replay.dbn_skipped["no_display_factor"] else "\n")
    return 0
