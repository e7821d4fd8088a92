"""The order gateway interface: what the hot loop needs from any venue connection.

Implemented by the iLink 3 gateway (adapters/ilink3_gateway.py) and by the
in-process simulated venue (adapters/sim_gateway.py). The hot loop uses it as::

    gw.connect()                                   # once; non-blocking
    ...
    n = gw.poll(core.reports)                      # every spin: never blocks
    k = core.decide(market, features, alpha, n, now_ns, trigger_seq)
    if k:
        gw.send(core.actions, k)

Contract:

* No call blocks, raises on the hot path, or allocates per call. Trouble is
  reported through state (``is_connected``) and through execution reports: a
  request that cannot be sent comes back from ``poll`` as a reject (new order)
  or a cancel/modify reject, so the OMS never waits for an answer that will
  not come.
* ``poll(reports)`` writes at most ``len(reports)`` EXEC_REPORT rows
  (core/types.py) and returns how many; it also drives timers, reconnects
  and session keepalives.
* ``send(actions, k)`` takes ORDER_ACTION rows ``actions[:k]`` (decide's output)
  and returns how many went out (0 when not connected).
* ``mass_cancel(security_id)`` cancels every order at the venue (0 = every
  instrument): the kill switch's second line after the per-order cancels.
* Execution reports of one order arrive in the order the venue produced them
  (one ordered session), and requests reach the venue in the order sent.
* Time comes from an injected clock (adapters/clock.py).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Gateway(Protocol):
    """A venue connection driven by the hot loop (see the module docstring)."""

    def connect(self) -> None:
        """Start connecting; ``poll`` drives the rest. Idempotent."""
        ...

    def is_connected(self) -> bool:
        """True when orders can be sent (session established and reconciled)."""
        ...

    def poll(self, reports: np.ndarray) -> int:
        """Write pending execution reports into ``reports`` (EXEC_REPORT); return the count."""
        ...

    def send(self, actions: np.ndarray, k: int) -> int:
        """Send ``actions[:k]`` (ORDER_ACTION); return how many went out."""
        ...

    def mass_cancel(self, security_id: int = 0) -> bool:
        """Ask the venue to cancel every order (of one instrument); False if not possible now."""
        ...

    def close(self) -> None:
        """Orderly shutdown (non-blocking; ``poll`` finishes it)."""
        ...


__all__ = ["Gateway"]
