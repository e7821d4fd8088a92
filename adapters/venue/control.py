"""The venue's control endpoint: JSON requests over UDP on 127.0.0.1.

One datagram = one request object, answered with one JSON object to the sender
(``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``). Requests (see
``Venue.control``): ``status``, ``book`` (security_id), ``orders`` (session),
``positions`` (session: net position per instrument from the venue's own fills),
``fault`` (a ``FaultSpec``: kind, feed, count, delay_ms, session, security_id),
``fault_log`` (market-data faults applied, order-entry reports dropped),
``latency``, ``flow`` (enabled), ``order`` (a background order placed by the
operator: security_id, side, price, qty, tif), ``cancel_manual``, ``stop``.

Polled from the venue's loop between packets: ``poll`` never blocks.
``request`` is the client side (tests, operators: ``python -c`` one-liners).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

__all__ = ["ControlEndpoint", "request"]

MAX_DATAGRAM = 65_000


class ControlEndpoint:
    def __init__(self, handler: Callable[[dict[str, Any]], dict[str, Any]],
                 host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError("the control endpoint listens on 127.0.0.1 only")
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.address = self.sock.getsockname()
        self.requests = 0
        self.errors = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def poll(self) -> int:
        n = 0
        while True:
            try:
                data, addr = self.sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return n
            except OSError:
                self.errors += 1
                return n
            n += 1
            self.requests += 1
            try:
                req = json.loads(data)
                if not isinstance(req, dict):
                    raise ValueError("request must be a JSON object")
                resp = self.handler(req)
            except (ValueError, KeyError, TypeError) as exc:
                self.errors += 1
                resp = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            out = json.dumps(resp, default=_plain).encode()
            if len(out) > MAX_DATAGRAM:
                out = json.dumps({"ok": False, "error": "response too large"}).encode()
            try:
                self.sock.sendto(out, addr)
            except OSError:
                self.errors += 1

    def close(self) -> None:
        self.sock.close()


def _plain(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, bytes):
        return o.decode("latin-1")
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def request(port: int, req: dict[str, Any], *, timeout: float = 5.0,
            host: str = "127.0.0.1") -> dict[str, Any]:
    """Send one request to a venue's control endpoint and wait for the answer."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(json.dumps(req).encode(), (host, port))
        data, _ = s.recvfrom(MAX_DATAGRAM)
        out: dict[str, Any] = json.loads(data)
        return out
    finally:
        s.close()
