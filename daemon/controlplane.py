"""The control plane: a child process on uvloop that serves everything slow.

It attaches to the hot loop's shared block and, on its own core budget and its
own GIL, does what must never run in a tick:

* Prometheus metrics over HTTP (prometheus-client; values read from shared
  arrays at scrape time, so a scrape costs the hot loop nothing);
* structlog JSON logs rendered from the log ring;
* the journal: records drained from the journal ring, appended and fsync'd;
* ``nanoarb ctl`` over an owner-only Unix socket (0600, peer uid checked),
  forwarded to the hot loop through the shared mailbox;
* systemd WATCHDOG=1, sent only while the hot loop's heartbeat counter moves.

It exits after a final drain when the hot loop says it is stopping or when the
parent process is gone (a crash: the mapping is still ours, so nothing already
in the journal ring is lost).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from prometheus_client import start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from daemon.sdnotify import Notifier
from daemon.shm import Ring, SharedBlock
from daemon.telemetry import (
    COMMANDS,
    LATENCY_BUCKETS_NS,
    LEVELS,
    TelemetrySpec,
    render_log,
)

HB_ITER, HB_PID, HB_STATE, HB_READY, HB_CP_UP = 0, 1, 2, 3, 4  # heartbeat slots
READY_STOPPING = -1
MB_REQ, MB_CMD, MB_ARG, MB_REPLY, MB_RESULT = 0, 1, 2, 8, 9  # mailbox slots


class SharedCollector(Collector):
    """Reads the shared arrays at scrape time."""

    def __init__(self, block: SharedBlock, spec: TelemetrySpec):
        self.block = block
        self.spec = spec

    def collect(self) -> Iterator[Any]:
        for m in self.spec.metrics:
            arr = self.block[m.key]
            if m.kind == "histogram":
                fam = HistogramMetricFamily(m.name, m.help, labels=[m.label] if m.label else [])
                bounds = [f"{b * 1e-9:.9g}" for b in LATENCY_BUCKETS_NS] + ["+Inf"]
                for i in range(m.size):
                    row = arr[i]
                    cum = np.cumsum(row[: len(bounds)])
                    buckets = [(bounds[j], float(cum[j])) for j in range(len(bounds))]
                    labels = [m.label_values[i]] if m.label else []
                    fam.add_metric(labels, buckets, float(row[-1]) * 1e-9)
                yield fam
                continue
            cls = CounterMetricFamily if m.kind == "counter" else GaugeMetricFamily
            name = m.name[:-6] if m.kind == "counter" and m.name.endswith("_total") else m.name
            fam2 = cls(name, m.help, labels=[m.label] if m.label else [])
            for i in range(m.size):
                labels = [m.label_values[i]] if m.label else []
                fam2.add_metric(labels, float(arr[i]) * m.scale)
            yield fam2


def _configure_logging(path: str, level: str) -> Any:
    stream = open(path, "a", buffering=1, encoding="utf-8") if path else sys.stderr  # noqa: SIM115
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            {"debug": 10, "info": 20, "warning": 30, "error": 40}[level]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger("nanoarb")


class ControlPlane:
    def __init__(
        self,
        block: SharedBlock,
        spec: TelemetrySpec,
        *,
        parent_pid: int,
        journal_path: str,
        fsync: bool,
        control_socket: str,
        log_path: str = "",
        log_level: str = "info",
    ):
        self.block = block
        self.spec = spec
        self.parent_pid = parent_pid
        self.log_ring = Ring(block, "log")
        self.journal_ring = Ring(block, "journal")
        self.mailbox = block["mailbox"]
        self.heartbeat = block["heartbeat"]
        self.log = _configure_logging(log_path, log_level)
        self.fsync = fsync
        self.journal_path = journal_path
        self.journal_fd = -1
        self.lock_fd = -1
        if journal_path:
            Path(journal_path).parent.mkdir(parents=True, exist_ok=True)
            # held until this process exits: a restarted daemon reads the journal only
            # after the previous control plane's final drain (see journal_lock)
            self.lock_fd = os.open(journal_path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
            self.journal_fd = os.open(journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.control_socket = control_socket
        self.notifier = Notifier()
        self.journaled = 0
        self._stop = asyncio.Event()
        self._ctl_lock = asyncio.Lock()

    # -- draining ------------------------------------------------------------
    def drain_logs(self) -> int:
        rows = self.log_ring.drain()
        for rec in rows:
            d = render_log(rec)
            level = d.pop("level")
            getattr(self.log, level if level in LEVELS[:4] else "error")(d.pop("event"), **d)
        return len(rows)

    def drain_journal(self) -> int:
        rows = self.journal_ring.drain()
        if len(rows) and self.journal_fd >= 0:
            data = rows.tobytes()
            view = memoryview(data)
            while view:
                n = os.write(self.journal_fd, view)
                view = view[n:]
            if self.fsync:
                os.fsync(self.journal_fd)
        self.journaled += len(rows)
        return len(rows)

    def parent_alive(self) -> bool:
        return os.getppid() == self.parent_pid

    # -- tasks ---------------------------------------------------------------
    async def _pump(self) -> None:
        while not self._stop.is_set():
            self.drain_journal()
            self.drain_logs()
            if int(self.heartbeat[HB_READY]) == READY_STOPPING or not self.parent_alive():
                self._stop.set()
                break
            await asyncio.sleep(0.002)

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval_ns()
        if not interval:
            return
        last = int(self.heartbeat[HB_ITER])
        while not self._stop.is_set():
            await asyncio.sleep(interval / 1e9)
            now = int(self.heartbeat[HB_ITER])
            if now != last:  # the hot loop is alive: pet the dog
                self.notifier.watchdog()
            last = now

    async def _handle_ctl(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _pid, uid, _gid = struct.unpack("3i", creds)
            if uid not in (os.getuid(), 0):
                writer.write(b'{"ok": false, "error": "permission denied"}\n')
                return
            line = (await asyncio.wait_for(reader.readline(), 2.0)).decode().strip()
            writer.write((json.dumps(await self.command(line)) + "\n").encode())
        except (TimeoutError, OSError, UnicodeDecodeError) as exc:
            with contextlib.suppress(OSError):
                writer.write((json.dumps({"ok": False, "error": str(exc)}) + "\n").encode())
        finally:
            with contextlib.suppress(OSError):
                await writer.drain()
                writer.close()

    async def command(self, line: str) -> dict[str, Any]:
        cmd = COMMANDS.get(line)
        if cmd is None:
            return {"ok": False, "error": f"unknown command {line!r}; use {sorted(COMMANDS)}"}
        async with self._ctl_lock:
            req = int(self.mailbox[MB_REQ]) + 1
            self.mailbox[MB_CMD] = cmd
            self.mailbox[MB_REQ] = req  # publish last
            deadline = time.monotonic() + 2.0
            while int(self.mailbox[MB_REPLY]) != req:
                if time.monotonic() > deadline or not self.parent_alive():
                    return {"ok": False, "error": "the hot loop did not answer"}
                await asyncio.sleep(0.001)
            result = int(self.mailbox[MB_RESULT])
        return {"ok": result >= 0, "command": line, "result": result, **self.status()}

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pid": int(self.heartbeat[HB_PID]),
            "state": int(self.heartbeat[HB_STATE]),
            "iterations": int(self.heartbeat[HB_ITER]),
        }
        for m in self.spec.metrics:
            if m.kind == "gauge" and not m.label and m.size == 1:
                out[m.name] = float(self.block[m.key][0]) * m.scale
        return out

    async def run(self, metrics_bind: str = "", metrics_port: int = 0) -> None:
        server = None
        if metrics_port:
            registry = CollectorRegistry(auto_describe=True)
            registry.register(SharedCollector(self.block, self.spec))
            server, _thread = start_http_server(metrics_port, addr=metrics_bind, registry=registry)
        ctl = None
        if self.control_socket:
            path = Path(self.control_socket)
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            old = os.umask(0o177)  # the socket is created 0600: owner only
            try:
                ctl = await asyncio.start_unix_server(self._handle_ctl, path=str(path))
            finally:
                os.umask(old)
            os.chmod(path, 0o600)
        self.heartbeat[HB_CP_UP] = 1  # serving: the daemon may now tell systemd READY=1
        try:
            await asyncio.gather(self._pump(), self._watchdog())
        finally:
            # final drain: nothing that reached the rings is lost
            self.drain_journal()
            self.drain_logs()
            if ctl is not None:
                ctl.close()
                with contextlib.suppress(FileNotFoundError):
                    Path(self.control_socket).unlink()
            if server is not None:
                server.shutdown()
            if self.journal_fd >= 0:
                os.close(self.journal_fd)


def wait_journal_unlocked(journal_path: str, timeout_s: float = 30.0) -> bool:
    """Wait until no control plane holds the journal (a crashed daemon's child may still
    be draining its ring); True when free. The caller reads the journal after this."""
    if not journal_path:
        return True
    Path(journal_path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(journal_path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.01)
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="nanoarb control plane (started by the daemon)")
    p.add_argument("--shm", required=True)
    p.add_argument("--spec", required=True, help="TelemetrySpec JSON file")
    p.add_argument("--parent-pid", type=int, required=True)
    p.add_argument("--journal", default="")
    p.add_argument("--no-fsync", action="store_true")
    p.add_argument("--control-socket", default="")
    p.add_argument("--metrics-bind", default="127.0.0.1")
    p.add_argument("--metrics-port", type=int, default=0)
    p.add_argument("--log-path", default="")
    p.add_argument("--log-level", default="info")
    a = p.parse_args(argv)
    # The daemon owns our lifetime: a Ctrl-C or a cgroup-wide SIGTERM must not cut
    # the final journal drain short. We leave when the hot loop says so or dies.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)
    spec = TelemetrySpec.from_json(Path(a.spec).read_text(encoding="utf-8"))
    block = spec.attach(a.shm)
    plane = ControlPlane(
        block,
        spec,
        parent_pid=a.parent_pid,
        journal_path=a.journal,
        fsync=not a.no_fsync,
        control_socket=a.control_socket,
        log_path=a.log_path,
        log_level=a.log_level,
    )
    import uvloop

    uvloop.run(plane.run(a.metrics_bind, a.metrics_port))
    del plane
    block.close()  # the mapping goes with the process; nothing to unlink (not the owner)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
