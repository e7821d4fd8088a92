"""Instrument table filled from MDP 3.0 security definitions.

Definitions (templates 27 and 29 legacy; 54, 55, 56, 57, 58, 63 current; every
schema version) are not hot: they arrive on the instrument-definition feed or
at start-up. The hot decoder emits an ``EV_DEFINITION`` row per definition
(``aux`` = offset of the message's MsgSize in the packet, ``size`` = MsgSize)
and the feed handler hands the packet to ``InstrumentTable.update_from_packet``,
which decodes them with the generic codec into a preallocated numpy array of
``core.types.INSTRUMENT`` rows (kernels read it; Python looks rows up by
security id through a dict).

Units (see ``INSTRUMENT``): prices (``min_price_increment``, limits, trading
reference price) keep the mantissa and exponent of the schema version
(``price_exponent`` -7 for legacy PRICE, -9 for PRICE9, read from the layout);
``display_factor`` and ``contract_multiplier`` (UnitOfMeasureQty) are
rescaled to exponent -9 whatever the version. Nulls: ``NULL_I64`` for prices,
255 for an unknown trading status. Market depth comes from the NoMDFeedTypes
group: ``GBX`` (outright book) -> ``outright_depth``, ``GBI`` (implied book)
-> ``implied_depth``; ``mbo`` is set when a feed type ``MBO`` is listed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.sbe.codec import DecodeError, decode_message
from core.sbe.schema import Schema, select_schema
from core.types import EV_DEFINITION, INSTRUMENT, NULL_I64, PRICE9_EXPONENT

__all__ = ["DEFINITION_TEMPLATES", "SPREAD_TEMPLATES", "InstrumentTable"]

DEFINITION_TEMPLATES = frozenset({27, 29, 54, 55, 56, 57, 58, 63})
SPREAD_TEMPLATES = frozenset({29, 56})
_NULL_STATUS = 255


def _rescale(mantissa: int | None, exponent: int, target: int) -> int:
    """Mantissa at ``exponent`` -> mantissa at ``target`` (exact when target <= exponent)."""
    if mantissa is None:
        return int(NULL_I64)
    if exponent >= target:
        return mantissa * 10 ** (exponent - target)
    return mantissa // 10 ** (target - exponent)


def _clip_u8(value: Any) -> int:
    if value is None:
        return 0
    return max(0, min(int(value), 255))


class InstrumentTable:
    """Security id -> row of ``INSTRUMENT`` in a preallocated array.

    ``rows[:len(table)]`` are the instruments seen so far, in arrival order.
    Malformed definitions and a full table are counted, never raised
    (``decode_errors``, ``dropped_full``): the feed handler calls this inline.
    """

    def __init__(self, capacity: int = 4096) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.rows = np.zeros(capacity, dtype=INSTRUMENT)
        self.index: dict[int, int] = {}
        self.decode_errors = 0
        self.dropped_full = 0
        self.deleted = 0

    def __len__(self) -> int:
        return len(self.index) + self.deleted

    def __contains__(self, security_id: int) -> bool:
        return security_id in self.index

    @property
    def capacity(self) -> int:
        return len(self.rows)

    def row_of(self, security_id: int) -> int:
        """Row index of ``security_id``, or -1."""
        return self.index.get(security_id, -1)

    def get(self, security_id: int) -> np.void | None:
        i = self.index.get(security_id)
        return None if i is None else self.rows[i]

    def by_symbol(self, symbol: str) -> np.void | None:
        key = symbol.encode("latin-1")
        for i in self.index.values():
            if self.rows[i]["symbol"] == key:
                return self.rows[i]
        return None

    def set_trading_status(self, security_id: int, status: int) -> None:
        i = self.index.get(security_id)
        if i is not None:
            self.rows[i]["trading_status"] = _clip_u8(status)

    # -- updates ------------------------------------------------------------
    def update(self, message: dict[str, Any], schema: Schema | None = None) -> int:
        """Apply one decoded definition message; returns its row, or -1 if not one.

        ``schema`` is the schema it was decoded with (default: chosen from the
        header like the codec does); its layouts give the price exponents.
        """
        template_id = message["template_id"]
        if template_id not in DEFINITION_TEMPLATES or message.get("schema_id", 1) != 1:
            return -1
        if schema is None:
            schema = select_schema(1, message["version"], template_id)
            if schema is None:
                return -1
        layout = schema.messages[template_id]
        f = message["fields"]
        security_id = f.get("SecurityID")
        if security_id is None:
            self.decode_errors += 1
            return -1
        if f.get("SecurityUpdateAction") == "D":
            return self._delete(security_id)
        i = self.index.get(security_id)
        if i is None:
            n = len(self)
            if n >= len(self.rows):
                self.dropped_full += 1
                return -1
            i = self.index[security_id] = n
        r = self.rows[i]

        def exponent(name: str, default: int) -> int:
            try:
                e = layout.field(name).exponent
            except KeyError:
                return default
            return default if e is None else e

        px_exp = exponent("MinPriceIncrement", PRICE9_EXPONENT)
        r["security_id"] = security_id
        r["appl_id"] = f.get("ApplID") or 0
        r["symbol"] = (f.get("Symbol") or "").encode("latin-1")[:20]
        r["security_group"] = (f.get("SecurityGroup") or "").encode("latin-1")[:6]
        r["asset"] = (f.get("Asset") or "").encode("latin-1")[:6]
        r["price_exponent"] = px_exp
        r["min_price_increment"] = _rescale(f.get("MinPriceIncrement"), px_exp, px_exp)
        for src, dst in (
            ("HighLimitPrice", "high_limit_price"),
            ("LowLimitPrice", "low_limit_price"),
            ("TradingReferencePrice", "trading_reference_price"),
        ):
            r[dst] = _rescale(f.get(src), exponent(src, px_exp), px_exp)
        r["display_factor"] = _rescale(
            f.get("DisplayFactor"), exponent("DisplayFactor", -9), PRICE9_EXPONENT
        )
        r["contract_multiplier"] = _rescale(
            f.get("UnitOfMeasureQty"), exponent("UnitOfMeasureQty", -9), PRICE9_EXPONENT
        )
        status = f.get("MDSecurityTradingStatus")
        r["trading_status"] = _NULL_STATUS if status is None else _clip_u8(status)
        r["is_spread"] = 1 if template_id in SPREAD_TEMPLATES else 0
        outright = implied = mbo = 0
        for entry in message["groups"].get("NoMDFeedTypes", []):
            feed = (entry.get("MDFeedType") or "").strip().upper()
            depth = _clip_u8(entry.get("MarketDepth"))
            if feed == "GBX":
                outright = depth
            elif feed == "GBI":
                implied = depth
            elif feed.startswith("MBO"):
                mbo = 1
        r["outright_depth"] = outright
        r["implied_depth"] = implied
        r["mbo"] = mbo
        r["template_id"] = template_id
        r["version"] = message["version"]
        return i

    def _delete(self, security_id: int) -> int:
        i = self.index.pop(security_id, None)
        if i is None:
            return -1
        # the row stays as a tombstone so that row indices held elsewhere stay valid
        self.rows[i]["security_id"] = 0
        self.rows[i]["trading_status"] = _NULL_STATUS
        self.deleted += 1
        return i

    def update_from_bytes(self, buf: bytes | bytearray | memoryview, offset: int, size: int) -> int:
        """Decode the message whose MsgSize is at ``offset`` and apply it (-1 if not applied)."""
        try:
            msg, _ = decode_message(buf, offset + 2, offset + size)
        except DecodeError:
            self.decode_errors += 1
            return -1
        return self.update(msg)

    def update_from_packet(
        self,
        buf: bytes | bytearray | memoryview | np.ndarray,
        n: int,
        events: np.ndarray,
        n_events: int | None = None,
    ) -> int:
        """Apply the definitions the hot decoder flagged in ``events[:n_events]``.

        ``buf[:n]`` is the packet; each ``EV_DEFINITION`` row carries the MsgSize
        offset (``aux``) and MsgSize (``size``). Returns how many were applied.
        """
        data = buf[:n].tobytes() if isinstance(buf, np.ndarray) else bytes(buf[:n])
        rows = events[: len(events) if n_events is None else n_events]
        applied = 0
        for ev in rows[rows["kind"] == EV_DEFINITION]:
            offset, size = int(ev["aux"]), int(ev["size"])
            if offset < 0 or size < 10 or offset + size > n:
                self.decode_errors += 1
                continue
            if self.update_from_bytes(data, offset, size) >= 0:
                applied += 1
        return applied
