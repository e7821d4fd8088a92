"""systemd notification (sd_notify) without libsystemd: one datagram to $NOTIFY_SOCKET.

A no-op when not run under systemd (no NOTIFY_SOCKET), so the same code runs in a
terminal, under the tests (which listen on their own NOTIFY_SOCKET) and as a
Type=notify service.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    __slots__ = ("_addr", "_sock", "sent")

    def __init__(self, address: str | None = None):
        addr = os.environ.get("NOTIFY_SOCKET", "") if address is None else address
        # '@' is an abstract-namespace socket (leading NUL on the wire)
        self._addr = ("\0" + addr[1:]) if addr.startswith("@") else addr
        self._sock: socket.socket | None = None
        self.sent = 0
        if self._addr:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *fields: str) -> bool:
        """Send 'KEY=VALUE' lines; False (never an exception) if systemd is not listening."""
        if self._sock is None:
            return False
        try:
            self._sock.sendto("\n".join(fields).encode(), self._addr)
        except OSError:
            return False
        self.sent += 1
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *((f"STATUS={status}",) if status else ()))

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str = "") -> bool:
        return self.notify("STOPPING=1", *((f"STATUS={status}",) if status else ()))

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")

    def watchdog_interval_ns(self) -> int:
        """Half of WATCHDOG_USEC (systemd's advice), 0 when the watchdog is off."""
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        if not usec.isdigit() or (pid and pid.isdigit() and int(pid) != os.getpid()):
            return 0
        return int(usec) * 1000 // 2

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
