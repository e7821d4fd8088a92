"""``nanoarb book CAPTURE... [--security-id N] [--csv] [--features]``: rebuild books from captures.

Replays the MDP 3.0 packets of the captures, in order, from empty books (a capture
starts mid-session: what comes is applied, no snapshot is awaited). A and B copies
of a packet are deduplicated by MsgSeqNum per channel; without a channel
configuration a UDP stream's channel is its destination port mod 1000 (CME's
convention for the A/B feeds of one channel), a TCP stream's its server port mod
1000. Definitions found in the capture set each instrument's depth (tag 264) and
tick; an instrument never defined gets depth 10.

One row per completed event (MatchEventIndicator end of event) per changed
instrument: ``seq`` (MsgSeqNum), ``security_id``, then for levels 1..depth
``bid_px bid_qty bid_orders ask_px ask_qty ask_orders``; prices are raw mantissas
as on the wire (exponent -9, or -7 for legacy templates), the book is level-indexed
as MDP 3.0 sends it and a level never sent is blank. ``--features`` appends the
feature vector (``core.feature_spec``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import IO, Any

HELP = "Rebuild MDP 3.0 order books (and features) from pcap captures, one row per event."

_LEVEL_FIELDS = ("bid_px", "bid_qty", "bid_orders", "ask_px", "ask_qty", "ask_orders")
_WIDTHS = (16, 8, 6, 16, 8, 6)
_MAX_LEVELS = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("captures", nargs="+", metavar="CAPTURE", help="pcap or pcapng file")
    parser.add_argument("--security-id", type=int, metavar="N",
                        help="print only this instrument's rows")
    parser.add_argument("--csv", action="store_true", help="comma-separated, with a header row")
    parser.add_argument("--features", action="store_true", help="append the feature columns")


def _channel_of(rec: Any) -> int:
    # feeds A and B of channel xxx use ports 14xxx / 15xxx; TCP: the server's port
    addr = rec.dst if rec.protocol == "udp" else rec.src
    try:
        return int(addr.rsplit(":", 1)[1]) % 1000
    except (IndexError, ValueError):
        return -1


class BookReplay:
    """Capture -> deduplicated packets -> decoder -> MarketState, yielding records."""

    def __init__(self, max_instruments: int = 4096, max_orders: int = 1 << 18) -> None:
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

    def _define(self, payload: bytes, events: Any) -> None:
        from core.types import EV_DEFINITION, MAX_DEPTH

        if not (events["kind"] == EV_DEFINITION).any():
            return
        self.instruments.update_from_packet(payload, len(payload), events)
        for ev in events[events["kind"] == EV_DEFINITION]:
            rec = self.instruments.get(int(ev["security_id"]))
            if rec is None:
                continue
            depth = int(rec["outright_depth"]) or MAX_DEPTH
            self.state.add_instrument(
                int(rec["security_id"]), depth=min(depth, MAX_DEPTH),
                tick=max(int(rec["min_price_increment"]), 0)
                if int(rec["min_price_increment"]) != (1 << 63) - 1 else 0,
                channel=int(rec["appl_id"]) if int(rec["appl_id"]) > 0 else -1)

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

    def run(self, paths: list[str]) -> Iterator[tuple[dict[str, Any], int]]:
        """Yield (records of a packet, index) for every record of every packet."""
        from adapters.capture import read_capture

        for path in paths:
            for rec in read_capture(path):
                if rec.protocol not in ("udp", "mdp-tcp"):
                    continue
                out = self.packet(rec.payload, _channel_of(rec))
                if out is None:
                    continue
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
    lv = rec["levels"][i]
    for k in range(_MAX_LEVELS):
        for side in (0, 3):
            px = int(lv[k, side])
            if k >= depth or px == NULL_I64:
                cells += ["", "", ""]
            else:
                cells += [str(px), str(int(lv[k, side + 1])), str(int(lv[k, side + 2]))]
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
    replay = BookReplay()
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
        f"decode_drops={drops}\n")
    return 0
