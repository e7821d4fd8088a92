"""Fault injection of the venue: what goes wrong on the wire, on purpose.

Market data (applied by the publisher to each incremental packet as it is sent):

* ``drop`` on feed A or B: the next ``count`` packets are not sent on that feed
  (the other feed still carries them: arbitration fills the hole);
* ``duplicate``: the next ``count`` packets go out twice on that feed;
* ``reorder``: each of the next ``count`` packets is held and sent after the
  following packet of that feed (or after ``hold_ns`` if the feed goes quiet);
* ``gap``: the next ``count`` packets are lost on both feeds (their MsgSeqNums
  are used, so clients see a real gap and recover from the snapshot loop);
* ``channel_reset``: ChannelReset4, then every book re-sent as New entries.

Order entry (applied by the venue through the acceptor's hooks and the order
handler): ``disconnect`` (abrupt TCP close: cancel on disconnect), ``reject``
(the next ``count`` order requests are rejected), ``delay`` (the next ``count``
requests reach the matching engine ``delay_ms`` later), ``delay_reports``
(execution reports leave ``delay_ms`` late, until a ``delay_reports`` with
``delay_ms`` 0), ``drop_report`` (the next ``count`` business messages to the
session get their SeqNum and are stored but never sent: a sequence gap the
client must detect and recover by RetransmitRequest), ``halt``/``resume``
(SecurityStatus and order rejection while halted).

Faults come from the config (``[[faults]]`` with ``at_ms``) or from the control
endpoint, in the same shape: ``FaultSpec``. Every market-data fault applied is
logged with the MsgSeqNum it hit (``log``), so tests and operators can see it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

__all__ = ["FEED_KINDS", "FaultSpec", "FeedFaults", "parse_fault"]

FEED_KINDS = ("drop", "duplicate", "reorder")
MD_KINDS = (*FEED_KINDS, "gap", "channel_reset")
ORDER_KINDS = ("disconnect", "reject", "delay", "delay_reports", "drop_report", "halt",
               "resume")
KINDS = MD_KINDS + ORDER_KINDS
FEEDS = ("A", "B")


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    feed: str = ""
    count: int = 1
    delay_ms: int = 0
    session: str = ""
    security_id: int = 0


def parse_fault(d: dict[str, Any]) -> FaultSpec:
    """A fault from a control request or a config entry; ValueError naming the problem."""
    kind = str(d.get("kind", ""))
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    feed = str(d.get("feed", "") or "").upper()
    if kind in FEED_KINDS and feed not in FEEDS:
        raise ValueError(f"{kind} needs feed A or B")
    count = int(d.get("count", 1))
    if count < 1:
        raise ValueError("count must be >= 1")
    delay_ms = int(d.get("delay_ms", 0))
    if (kind == "delay" and delay_ms <= 0) or delay_ms < 0:
        raise ValueError("delay needs delay_ms > 0 (delay_reports: 0 turns it off)")
    return FaultSpec(kind=kind, feed=feed, count=count, delay_ms=delay_ms,
                     session=str(d.get("session", "") or ""),
                     security_id=int(d.get("security_id", 0) or 0))


class FeedFaults:
    """Pending market-data faults, consumed packet by packet by the publisher."""

    __slots__ = ("active", "drop", "duplicate", "gap", "hold_ns", "log", "reorder", "stats")

    def __init__(self, hold_ns: int = 50_000_000, log_len: int = 4096) -> None:
        self.drop = [0, 0]
        self.duplicate = [0, 0]
        self.reorder = [0, 0]
        self.gap = 0
        self.active = False  # fast path: nothing pending
        self.hold_ns = hold_ns
        self.log: deque[tuple[int, str, str]] = deque(maxlen=log_len)  # (seq, feed, kind)
        self.stats = {k: 0 for k in (*FEED_KINDS, "gap")}

    def arm(self, spec: FaultSpec) -> None:
        if spec.kind == "gap":
            self.gap += spec.count
        elif spec.kind in FEED_KINDS:
            getattr(self, spec.kind)[FEEDS.index(spec.feed)] += spec.count
        else:
            raise ValueError(f"{spec.kind} is not a feed fault")
        self.active = True

    def _refresh(self) -> None:
        self.active = bool(self.gap or any(self.drop) or any(self.duplicate)
                           or any(self.reorder))

    def take_gap(self, seq: int) -> bool:
        if self.gap <= 0:
            return False
        self.gap -= 1
        self.stats["gap"] += 1
        self.log.append((seq, "AB", "gap"))
        self._refresh()
        return True

    def take(self, feed: int, seq: int) -> str:
        """What happens to packet ``seq`` on ``feed`` (0 = A, 1 = B): '', 'drop',
        'duplicate' or 'reorder'. Consumes the fault."""
        for kind in FEED_KINDS:
            pending = getattr(self, kind)
            if pending[feed] > 0:
                pending[feed] -= 1
                self.stats[kind] += 1
                self.log.append((seq, FEEDS[feed], kind))
                self._refresh()
                return kind
        return ""

    def pending(self) -> dict[str, Any]:
        return {"drop": list(self.drop), "duplicate": list(self.duplicate),
                "reorder": list(self.reorder), "gap": self.gap}
