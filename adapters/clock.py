"""Injectable clocks. Components take a clock; tests pass a ``ManualClock`` and advance it."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int:
        """Monotonic nanoseconds (for timeouts, intervals, latency)."""
        ...

    def wall_ns(self) -> int:
        """Wall-clock nanoseconds since the epoch (for timestamps on the wire and in logs)."""
        ...


class MonotonicClock:
    """The real clock."""

    __slots__ = ()

    def now_ns(self) -> int:
        return time.monotonic_ns()

    def wall_ns(self) -> int:
        return time.time_ns()


class ManualClock:
    """A clock that moves only when a test advances it."""

    __slots__ = ("_now", "_wall_offset")

    def __init__(
        self, start_ns: int = 1_000_000_000, wall_offset_ns: int = 1_700_000_000_000_000_000
    ):
        self._now = int(start_ns)
        self._wall_offset = int(wall_offset_ns)

    def now_ns(self) -> int:
        return self._now

    def wall_ns(self) -> int:
        return self._wall_offset + self._now

    def advance(self, ns: int) -> None:
        if ns < 0:
            raise ValueError("a clock does not go back")
        self._now += int(ns)

    def advance_s(self, seconds: float) -> None:
        self.advance(int(seconds * 1e9))
