"""Thin adapters the daemon needs around the market-data sources.

* ``SyntheticSource``: the seeded synthetic market (``core.synthetic``) as an
  ``MdSource`` of MD_EVENT batches, one match event per poll: ``nanoarb replay
  synthetic:N`` and the tests use it where no capture is wanted.
* ``ReplayClock``: a clock that the replay loop moves to each datagram's time
  (``set_ns``); it never goes back.
"""

from __future__ import annotations

import numpy as np

from adapters.md_sources import END, ROLE_EVENTS, RxSlot
from core.types import FLAG_END_OF_EVENT, MD_EVENT


class ReplayClock:
    """Monotonic time driven by the data (replay): ``set_ns`` jumps forward only."""

    __slots__ = ("_now", "_wall_offset", "first_ns")

    def __init__(self, start_ns: int = 0, wall_offset_ns: int = 0) -> None:
        self._now = int(start_ns)
        self._wall_offset = int(wall_offset_ns)
        self.first_ns = 0  # the data's first time (the backtest's start), 0 until set

    def now_ns(self) -> int:
        return self._now

    def wall_ns(self) -> int:
        return self._wall_offset + self._now

    def set_ns(self, t: int) -> None:
        if t > self._now:
            self._now = int(t)
            if not self.first_ns:
                self.first_ns = self._now

    def advance(self, ns: int) -> None:
        self._now += max(0, int(ns))


class SyntheticSource:
    """``core.synthetic`` match events replayed through the MdSource interface."""

    def __init__(self, n_events: int, seed: int = 7, config: object | None = None) -> None:
        from core.synthetic import SyntheticConfig, generate

        cfg = config if isinstance(config, SyntheticConfig) else SyntheticConfig(seed=seed)
        self.market = generate(n_events, cfg, seed=seed)
        self.events = np.ascontiguousarray(self.market.events, dtype=MD_EVENT)
        ends = np.flatnonzero(self.events["flags"] & FLAG_END_OF_EVENT) + 1
        if ends.size == 0 or ends[-1] != self.events.size:
            ends = np.append(ends, self.events.size)
        self.ends = ends.astype(np.int64)
        self._i = 0
        self._pos = 0

    @property
    def instruments(self) -> tuple[object, ...]:
        return tuple(self.market.config.instruments)

    def open(self) -> None:
        self._i = 0
        self._pos = 0

    def close(self) -> None:
        self._i = self.ends.size

    def __len__(self) -> int:
        return int(self.ends.size)

    def poll(self, rx: RxSlot) -> int:
        if self._i >= self.ends.size:
            return END
        end = int(self.ends[self._i])
        n = min(end - self._pos, rx.events.size)
        rx.events[:n] = self.events[self._pos:self._pos + n]
        self._pos += n
        if self._pos >= end:
            self._i += 1
        rx.role = ROLE_EVENTS
        rx.channel = 0
        rx.recv_ns = 0
        return n


__all__ = ["ReplayClock", "SyntheticSource"]
