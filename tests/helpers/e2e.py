"""Shared harness of the end-to-end tests: the daemon (`nanoarb run`) as a real process
against the exchange simulator (``daemon.demo.DemoVenue``), both on 127.0.0.1.

``Daemon`` writes the demo daemon config pointed at a venue, starts the process with a
NOTIFY_SOCKET the test listens on (``Notify``: READY=1, STOPPING=1), and reads it the way
an operator does: ``nanoarb ctl`` on its control socket and the Prometheus metrics.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgspec

from daemon.commands.ctl import request as ctl_request
from daemon.config import JournalConfig, MetricsConfig, demo_config
from daemon.demo import DemoVenue, config_toml, daemon_config

START_TIMEOUT = 600.0  # first run on a cold numba cache compiles everything
SESSION = "DEM"  # the demo venue's order-entry session (daemon.demo.venue_toml)

__all__ = ["SESSION", "START_TIMEOUT", "Daemon", "Notify", "free_tcp_port", "our_orders",
           "until"]


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Notify:
    """A NOTIFY_SOCKET like systemd's: collects the daemon's sd_notify datagrams."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def wait_for(self, field: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(field in m.split("\n") for m in self.messages):
                return
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
        raise AssertionError(f"no {field} in {self.messages}")


class Daemon:
    """`nanoarb run` on the demo config pointed at ``venue`` (metrics on a free port,
    an fsync'd journal, the control socket in ``tmp``). ``risk`` replaces fields of the
    demo config's [risk] section."""

    def __init__(self, tmp: Path, venue: DemoVenue, env: dict[str, str], *,
                 start_active: bool = True, loss_limits: float = 0.0,
                 risk: dict[str, Any] | None = None) -> None:
        self.tmp = tmp
        self.metrics_port = free_tcp_port()
        self.socket = str(tmp / "ctl.sock")
        self.journal = str(tmp / "journal.bin")
        base = demo_config()
        cfg = daemon_config(
            venue, base=base,
            metrics=MetricsConfig(enabled=True, bind="127.0.0.1", port=self.metrics_port),
            journal=JournalConfig(path=self.journal, fsync=True),
            risk=msgspec.structs.replace(
                base.risk, start_active=start_active,
                daily_loss_limit=loss_limits or base.risk.daily_loss_limit,
                drawdown_limit=loss_limits or base.risk.drawdown_limit, **(risk or {})))
        self.config = tmp / "daemon.toml"
        self.config.write_bytes(config_toml(cfg))
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.notify: Notify | None = None
        self.log = tmp / "daemon.log"
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        sock_path = self.tmp / f"notify{self.runs}.sock"
        self.notify = Notify(sock_path)
        env = dict(self.env, NOTIFY_SOCKET=str(sock_path), PYTHONFAULTHANDLER="1")
        log = open(self.log, "a", encoding="utf-8")  # noqa: SIM115 - the child's stderr
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "run", "--config", str(self.config),
             "--control-socket", self.socket], env=env, stdout=log, stderr=log, text=True)
        log.close()
        self.notify.wait_for("READY=1", START_TIMEOUT)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def ctl(self, cmd: str) -> dict[str, Any]:
        return ctl_request(self.socket, cmd, timeout=5.0)

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode())

    def metric(self, name: str, labels: str = "") -> float:
        pat = re.compile(rf"^{re.escape(name)}{re.escape(labels)}\s+(\S+)$", re.M)
        m = pat.search(self.metrics())
        assert m, f"{name}{labels} not served"
        return float(m.group(1))

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def until(cond: Any, timeout: float, step: float = 0.005, what: str = "") -> Any:
    """Poll ``cond()`` until it is truthy (returned) or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what or cond}")


def our_orders(venue: DemoVenue) -> list[dict[str, Any]]:
    """The orders of our session working at the venue (the exchange's view)."""
    return list(venue.request({"cmd": "orders", "session": SESSION})["orders"])
