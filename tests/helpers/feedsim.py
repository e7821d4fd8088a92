"""A small CME-like MDP 3.0 publisher for feed-handler tests.

It keeps a reference MBP book per instrument (prices as ticks), produces random
but valid incremental packets (template 46, one RptSeq per entry and
instrument, MsgSeqNum per packet), the matching snapshot loop (template 52,
LastMsgSeqNumProcessed = last packet sent), ChannelReset (template 4) and
instrument definitions (template 54). Every message is built with the project's
generic SBE encoder (core.sbe.codec), not by hand.

``impair(packets, ...)`` turns a clean packet list into the arrival order of
feeds A and B with loss on one feed, loss on both, duplicates and reordering.

``RefBooks`` is the naive pure-Python MBP book builder the tests use as the
reference: it applies sequenced MD_EVENT rows (book entries, snapshots,
channel resets) the way CME documents price-level book management.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.sbe.codec import encode, encode_mdp_packet
from core.sbe.schema import bundled_schema
from core.types import (
    EV_BOOK,
    EV_CHANNEL_RESET,
    EV_SNAPSHOT,
    EV_SNAPSHOT_ENTRY,
    MD_CHANGE,
    MD_DELETE,
    MD_DELETE_FROM,
    MD_DELETE_THRU,
    MD_NEW,
    MD_OVERLAY,
)

SCHEMA = bundled_schema(1, 9)
TICK = 250_000_000  # 0.25 in PRICE9
BID, ASK = "0", "1"
MEI_END = 0x80
MEI_QUOTE = 0x04


@dataclass
class _Inst:
    sid: int
    rpt: int = 0
    # side -> list of [tick, qty, orders], best first
    levels: dict[str, list[list[int]]] = field(default_factory=lambda: {BID: [], ASK: []})


class FeedSim:
    """Deterministic MBP publisher for ``security_ids`` on channel ``appl_id``."""

    def __init__(self, security_ids: list[int], seed: int = 1, depth: int = 10,
                 appl_id: int = 310, start_seq: int = 1, t0: int = 1_600_000_000_000_000_000):
        self.rng = random.Random(seed)
        self.depth = depth
        self.appl_id = appl_id
        self.insts = {sid: _Inst(sid) for sid in security_ids}
        self.seq = start_seq - 1  # last MsgSeqNum sent
        self.time = t0

    # -- book generation ----------------------------------------------------
    def _entry(self, inst: _Inst, side: str) -> dict[str, Any]:
        lv = inst.levels[side]
        bid = side == BID
        lo, hi = (100, 149) if bid else (150, 199)
        r = self.rng.random()
        if lv and r < 0.45:
            k = self.rng.randrange(len(lv))
            lv[k][1] = self.rng.randint(1, 500)
            lv[k][2] = self.rng.randint(1, 40)
            action, level, (tick, qty, orders) = 1, k + 1, lv[k]
        elif lv and (r < 0.7 or len(lv) >= self.depth):
            k = self.rng.randrange(len(lv))
            tick, qty, orders = lv.pop(k)
            action, level = 2, k + 1
        else:
            used = {x[0] for x in lv}
            free = [t for t in range(lo, hi + 1) if t not in used]
            tick = self.rng.choice(free)
            qty, orders = self.rng.randint(1, 500), self.rng.randint(1, 40)
            lv.append([tick, qty, orders])
            lv.sort(key=lambda x: -x[0] if bid else x[0])
            level = next(i for i, x in enumerate(lv) if x[0] == tick) + 1
            action = 0
        inst.rpt += 1
        return {"MDEntryPx": tick * TICK, "MDEntrySize": qty, "SecurityID": inst.sid,
                "RptSeq": inst.rpt, "NumberOfOrders": orders, "MDPriceLevel": level,
                "MDUpdateAction": action, "MDEntryType": side}

    def _message_46(self, entries: list[dict[str, Any]], last: bool) -> bytes:
        self.time += 1000
        return encode({"template_id": 46, "fields": {
            "TransactTime": self.time, "MatchEventIndicator": MEI_QUOTE | (MEI_END if last else 0)},
            "groups": {"NoMDEntries": entries, "NoOrderIDEntries": []}}, SCHEMA)

    def next_packet(self, touch: list[int] | None = None) -> bytes:
        """One incremental packet: 1-2 messages, 1-4 entries on random (or given) instruments."""
        sids = list(self.insts)
        n_msgs = self.rng.randint(1, 2)
        msgs = []
        for m in range(n_msgs):
            entries = []
            for _ in range(self.rng.randint(1, 4)):
                sid = self.rng.choice(touch if touch else sids)
                entries.append(self._entry(self.insts[sid], self.rng.choice((BID, ASK))))
            msgs.append(self._message_46(entries, last=m == n_msgs - 1))
        self.seq += 1
        self.time += 1000
        return encode_mdp_packet(self.seq, self.time, msgs)

    def channel_reset_packet(self) -> bytes:
        """ChannelReset: every book empties and RptSeq restarts (MsgSeqNum goes on)."""
        for inst in self.insts.values():
            inst.rpt = 0
            inst.levels = {BID: [], ASK: []}
        self.time += 1000
        msg = encode({"template_id": 4, "fields": {"TransactTime": self.time,
                                                   "MatchEventIndicator": MEI_END},
                      "groups": {"NoMDEntries": [{"MDUpdateAction": 0, "MDEntryType": "J",
                                                  "ApplID": self.appl_id}]}}, SCHEMA)
        self.seq += 1
        return encode_mdp_packet(self.seq, self.time, [msg])

    # -- snapshot loop ------------------------------------------------------
    def snapshot_message(self, sid: int, tot: int) -> bytes:
        inst = self.insts[sid]
        entries = []
        for side in (BID, ASK):
            for k, (tick, qty, orders) in enumerate(inst.levels[side]):
                entries.append({"MDEntryPx": tick * TICK, "MDEntrySize": qty,
                                "NumberOfOrders": orders, "MDPriceLevel": k + 1,
                                "TradingReferenceDate": None, "OpenCloseSettlFlag": None,
                                "SettlPriceType": 0, "MDEntryType": side})
        return encode({"template_id": 52, "fields": {
            "LastMsgSeqNumProcessed": self.seq, "TotNumReports": tot, "SecurityID": sid,
            "RptSeq": inst.rpt, "TransactTime": self.time, "LastUpdateTime": self.time,
            "TradeDate": 18000, "MDSecurityTradingStatus": 17, "HighLimitPrice": None,
            "LowLimitPrice": None, "MaxPriceVariation": None},
            "groups": {"NoMDEntries": entries}}, SCHEMA)

    def snapshot_loop(self) -> list[bytes]:
        """One snapshot packet per instrument, MsgSeqNum 1..N (the loop's own numbering)."""
        sids = sorted(self.insts)
        return [encode_mdp_packet(k + 1, self.time, [self.snapshot_message(sid, len(sids))])
                for k, sid in enumerate(sids)]

    # -- definitions --------------------------------------------------------
    def definition_loop(self, symbol_prefix: str = "ES") -> list[bytes]:
        sids = sorted(self.insts)
        out = []
        for k, sid in enumerate(sids):
            msg = encode({"template_id": 54, "fields": {
                "MatchEventIndicator": 0, "TotNumReports": len(sids),
                "SecurityUpdateAction": "A", "LastUpdateTime": self.time,
                "MDSecurityTradingStatus": 17, "ApplID": self.appl_id, "MarketSegmentID": 64,
                "UnderlyingProduct": 5, "SecurityExchange": "XCME", "SecurityGroup": "ES",
                "Asset": "ES", "Symbol": f"{symbol_prefix}{k}", "SecurityID": sid,
                "SecurityType": "FUT", "CFICode": "FFIXSX",
                "MaturityMonthYear": {"year": 2021, "month": 3, "day": None, "week": None},
                "Currency": "USD", "SettlCurrency": "USD", "MatchAlgorithm": "F",
                "MinTradeVol": 1, "MaxTradeVol": 3000, "MinPriceIncrement": TICK,
                "DisplayFactor": 10_000_000, "MainFraction": None, "SubFraction": None,
                "PriceDisplayFormat": None, "UnitOfMeasure": "IPNT",
                "UnitOfMeasureQty": 50_000_000_000, "TradingReferencePrice": None,
                "SettlPriceType": 0, "OpenInterestQty": None, "ClearedVolume": None,
                "HighLimitPrice": None, "LowLimitPrice": None, "MaxPriceVariation": None,
                "DecayQuantity": None, "DecayStartDate": None, "OriginalContractSize": None,
                "ContractMultiplier": None, "ContractMultiplierUnit": None,
                "FlowScheduleType": None, "MinPriceIncrementAmount": None,
                "UserDefinedInstrument": "N", "TradingReferenceDate": None},
                "groups": {"NoEvents": [], "NoMDFeedTypes": [{"MDFeedType": "GBX",
                                                              "MarketDepth": self.depth}],
                           "NoInstAttrib": [], "NoLotTypeRules": []}}, SCHEMA)
            out.append(encode_mdp_packet(k + 1, self.time, [msg]))
        return out

    def book(self, sid: int) -> dict[str, list[tuple[int, int, int]]]:
        """The publisher's own book: side -> [(price mantissa, qty, orders)], best first."""
        return {side: [(t * TICK, q, o) for t, q, o in lv]
                for side, lv in self.insts[sid].levels.items()}


def impair(packets: list[bytes], rng: random.Random, *, loss_a: float = 0.0,
           loss_b: float = 0.0, dup: float = 0.0, reorder: float = 0.0,
           lost_both: frozenset[int] = frozenset(), b_lag: float = 2.5) -> list[tuple[int, bytes]]:
    """Arrival order [(feed, packet)] of both feeds.

    Packet i is dropped on feed A with ``loss_a``, on B with ``loss_b``, on both
    if i is in ``lost_both``; a copy is duplicated with ``dup``; a copy is
    swapped with the next packet of its feed with ``reorder``. Copies arrive in
    publication order, feed B a fixed 0..``b_lag`` packets behind A (two network
    paths, each in order except for the swaps).
    """
    timed: list[tuple[float, int, bytes]] = []
    lag = rng.uniform(0.0, b_lag)  # each path keeps its own order
    for f, loss in ((0, loss_a), (1, loss_b)):
        lst: list[tuple[int, bytes]] = []
        for i, p in enumerate(packets):
            if i in lost_both or rng.random() < loss:
                continue
            lst.append((i, p))
            if rng.random() < dup:
                lst.append((i, p))
        k = 0
        while k < len(lst) - 1:
            # neighbours swap contents, arrival slots stay (a displacement of one)
            if lst[k + 1][0] - lst[k][0] == 1 and rng.random() < reorder:
                (ia, pa), (ib, pb) = lst[k], lst[k + 1]
                lst[k], lst[k + 1] = (ia, pb), (ib, pa)
                k += 2
            else:
                k += 1
        for i, p in lst:
            t = float(i) if f == 0 else i + lag
            timed.append((t, f, p))
    timed.sort(key=lambda x: x[0])
    return [(f, p) for _, f, p in timed]


class RefBooks:
    """Naive MBP books from sequenced MD_EVENT rows (the tests' reference)."""

    def __init__(self, depth: int = 10) -> None:
        self.depth = depth
        self.books: dict[int, dict[int, list[tuple[int, int, int] | None]]] = {}

    def _side(self, sid: int, et: int) -> list[tuple[int, int, int] | None]:
        b = self.books.setdefault(sid, {ord(BID): [None] * self.depth,
                                        ord(ASK): [None] * self.depth})
        return b[et]

    def apply(self, rows: np.ndarray) -> None:
        for r in rows:
            kind = int(r["kind"])
            sid = int(r["security_id"])
            if kind == EV_CHANNEL_RESET:
                self.books.clear()
            elif kind == EV_SNAPSHOT:
                self.books.pop(sid, None)
                self._side(sid, ord(BID))
            elif kind == EV_SNAPSHOT_ENTRY and int(r["entry_type"]) in (ord(BID), ord(ASK)):
                lv = self._side(sid, int(r["entry_type"]))
                k = int(r["price_level"]) - 1
                if 0 <= k < self.depth:
                    lv[k] = (int(r["price"]), int(r["size"]), int(r["num_orders"]))
            elif kind == EV_BOOK and int(r["entry_type"]) in (ord(BID), ord(ASK)):
                self._book(sid, r)

    def _book(self, sid: int, r: Any) -> None:
        lv = self._side(sid, int(r["entry_type"]))
        action = int(r["action"])
        k = int(r["price_level"]) - 1
        val = (int(r["price"]), int(r["size"]), int(r["num_orders"]))
        if action == MD_DELETE_THRU:
            lv[:] = [None] * self.depth
        elif not 0 <= k < self.depth:
            return
        elif action == MD_NEW:
            lv.insert(k, val)
            del lv[self.depth:]
        elif action in (MD_CHANGE, MD_OVERLAY):
            lv[k] = val
        elif action == MD_DELETE:
            del lv[k]
            lv.append(None)
        elif action == MD_DELETE_FROM:
            del lv[: k + 1]
            lv.extend([None] * (self.depth - len(lv)))

    def book(self, sid: int) -> dict[str, list[tuple[int, int, int]]]:
        """side -> [(price, qty, orders)] of the non-blank levels, best first."""
        b = self.books.get(sid)
        if b is None:
            return {BID: [], ASK: []}
        return {BID: [x for x in b[ord(BID)] if x is not None],
                ASK: [x for x in b[ord(ASK)] if x is not None]}
