"""The demo set-up: the exchange simulator process and the daemon on 127.0.0.1.

``DemoVenue`` writes a venue config (free ports, a fresh iLink 3 key pair put in
the environment of both processes), starts ``nanoarb venue`` and reads its
ready line; ``daemon_config(venue)`` is the bundled demo config pointed at it
(``daemon.config.demo_config()``: the feeds A/B, the snapshot and definition
loops, the venue's order-entry port). ``nanoarb demo`` and the end-to-end tests
use both.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from daemon.config import (
    ChannelAddress,
    ChannelConfig,
    Config,
    demo_config,
)

ACCESS_ENV = "NANOARB_ILINK_ACCESS_KEY"
SECRET_ENV = "NANOARB_ILINK_SECRET_KEY"
CHANNEL_ID = 310


def free_udp_ports(n: int) -> list[int]:
    """n distinct UDP ports free on 127.0.0.1 right now."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(int(s.getsockname()[1]))
    finally:
        for s in socks:
            s.close()
    return ports


def demo_credentials() -> dict[str, str]:
    """A throw-away iLink 3 key pair for the demo session (never written anywhere)."""
    return {ACCESS_ENV: secrets.token_hex(10),
            SECRET_ENV: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")}


def venue_toml(ports: dict[str, int], *, seed: int = 7, latency_file: str = "",
               base_rate_hz: float = 200.0, loop: str = "wait", extra: str = "") -> str:
    """The demo venue (ES and CL futures, background flow) on the given feed ports."""
    return f"""
[venue]
seed = {seed}
loop = "{loop}"
latency_file = "{latency_file}"

[market_data]
channel_id = {CHANNEL_ID}
snapshot_interval_ms = 250
definition_interval_ms = 500
incremental_a = {{ host = "127.0.0.1", port = {ports['incremental_a']} }}
incremental_b = {{ host = "127.0.0.1", port = {ports['incremental_b']} }}
snapshot = {{ host = "127.0.0.1", port = {ports['snapshot']} }}
definition = {{ host = "127.0.0.1", port = {ports['definition']} }}

[order_entry]
enabled = true
host = "127.0.0.1"
port = 0

[[order_entry.sessions]]
session_id = "DEM"
firm_id = "001"
access_key_env = "{ACCESS_ENV}"
secret_key_env = "{SECRET_ENV}"
cancel_on_disconnect = true

[control]
enabled = true
host = "127.0.0.1"
port = 0

[flow]
enabled = true
base_rate_hz = {base_rate_hz}

[[instruments]]
security_id = 5602
symbol = "ESZ5"
group = "ES"
asset = "ES"
tick = 25_000_000_000
display_factor = 0.01
multiplier = 50.0
start_price = 500_000_000_000_000
volatility_ticks = 1.0
weight = 2.0

[[instruments]]
security_id = 2871
symbol = "CLZ5"
group = "CL"
asset = "CL"
tick = 1_000_000_000
display_factor = 0.01
multiplier = 1000.0
start_price = 7_500_000_000_000
band_ticks = 2000
volatility_ticks = 2.5
weight = 1.0
market_segment_id = 80
{extra}
"""


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (Linux), so that a
    crashed demo or test never leaves a venue running."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class DemoVenue:
    """``nanoarb venue`` as a child process on free loopback ports."""

    def __init__(self, workdir: str | Path, *, env: dict[str, str] | None = None,
                 seed: int = 7, latency_file: str = "", extra_toml: str = "",
                 base_rate_hz: float = 200.0) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        p = free_udp_ports(4)
        self.ports = dict(zip(("incremental_a", "incremental_b", "snapshot", "definition"), p,
                              strict=True))
        self.config_path = self.workdir / "venue.toml"
        self.config_path.write_text(venue_toml(self.ports, seed=seed, latency_file=latency_file,
                                               base_rate_hz=base_rate_hz, extra=extra_toml))
        from daemon.numba_cache import child_env

        # compile into the daemon's cache (keyed by the sources; see daemon.numba_cache)
        self.env = child_env(dict(os.environ if env is None else env))
        self.proc: subprocess.Popen[str] | None = None
        self.ready: dict[str, Any] = {}
        self.summary: dict[str, Any] = {}
        self.stderr_path = self.workdir / "venue.stderr"

    @property
    def order_entry_port(self) -> int:
        return int(self.ready["order_entry"][1])

    @property
    def control_address(self) -> tuple[str, int]:
        host, port = self.ready["control"]
        return str(host), int(port)

    def launch(self) -> None:
        """Start the venue process (it compiles, then prints its ready line)."""
        err = open(self.stderr_path, "w", encoding="utf-8")  # noqa: SIM115 - child's stderr
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "venue", "--config", str(self.config_path)],
            stdout=subprocess.PIPE, stderr=err, text=True, env=self.env,
            preexec_fn=_die_with_parent)
        err.close()

    def wait_ready(self, timeout_s: float = 900.0) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the venue exited ({self.proc.returncode}): "
                                   f"{self.stderr_path.read_text()[-2000:]}")
            r, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if r:
                line = self.proc.stdout.readline()
                if line.startswith("{"):
                    msg = json.loads(line)
                    if msg.get("event") == "ready":
                        self.ready = msg
                        return msg
        self.stop()
        raise RuntimeError("the venue did not become ready in time")

    def start(self, timeout_s: float = 900.0) -> dict[str, Any]:
        self.launch()
        return self.wait_ready(timeout_s)

    def request(self, req: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
        from adapters.venue.control import request

        host, port = self.control_address
        reply: dict[str, Any] = request(port, req, timeout=timeout_s, host=host)
        return reply

    def stop(self, timeout_s: float = 20.0) -> int:
        p = self.proc
        if p is None:
            return 0
        if p.poll() is None:
            p.terminate()
        try:
            out, _ = p.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        for line in (out or "").splitlines():
            with contextlib.suppress(ValueError):
                msg = json.loads(line)
                if msg.get("event") == "stopped":
                    self.summary = msg
        return int(p.returncode or 0)


def daemon_config(venue: DemoVenue, *, base: Config | None = None, **sections: Any) -> Config:
    """The demo daemon config pointed at ``venue`` (sections replaced by keyword)."""
    cfg = base or demo_config()
    ch = ChannelConfig(
        channel_id=CHANNEL_ID,
        incremental_a=ChannelAddress(host="127.0.0.1", port=venue.ports["incremental_a"]),
        incremental_b=ChannelAddress(host="127.0.0.1", port=venue.ports["incremental_b"]),
        snapshot_a=ChannelAddress(host="127.0.0.1", port=venue.ports["snapshot"]),
        definition_a=ChannelAddress(host="127.0.0.1", port=venue.ports["definition"]),
    )
    md = msgspec.structs.replace(cfg.market_data, source="udp", channels=[ch])
    gw = msgspec.structs.replace(cfg.gateway, kind="ilink3", host="127.0.0.1",
                                 port=venue.order_entry_port, access_key_env=ACCESS_ENV,
                                 secret_key_env=SECRET_ENV)
    cfg = msgspec.structs.replace(cfg, market_data=md, gateway=gw)
    for name, value in sections.items():
        cfg = msgspec.structs.replace(cfg, **{name: value})
    return cfg


def config_toml(cfg: Config) -> bytes:
    """A config as TOML text (what `nanoarb run --config` reads back).

    The daemon config's shape only: top-level scalars, sections of scalars, arrays
    of tables, inline tables for addresses; None (an absent optional) is omitted.
    """
    d = msgspec.to_builtins(cfg)
    lines: list[str] = []
    for k, v in d.items():
        if not isinstance(v, dict | list):
            lines.append(f"{k} = {_toml_value(v)}")
    for k, v in d.items():
        if isinstance(v, dict):
            lines.append(f"\n[{k}]")
            subtables = []
            for k2, v2 in v.items():
                if isinstance(v2, list) and v2 and isinstance(v2[0], dict):
                    subtables.append((k2, v2))
                elif v2 is not None:
                    lines.append(f"{k2} = {_toml_value(v2)}")
            for k2, rows in subtables:
                for row in rows:
                    lines.append(f"\n[[{k}.{k2}]]")
                    lines += [f"{a} = {_toml_value(b)}" for a, b in row.items() if b is not None]
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for row in v:
                lines.append(f"\n[[{k}]]")
                lines += [f"{a} = {_toml_value(b)}" for a, b in row.items() if b is not None]
        elif isinstance(v, list):
            lines.insert(0, f"{k} = {_toml_value(v)}")
    return ("\n".join(lines) + "\n").encode()


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{a} = {_toml_value(b)}" for a, b in v.items()
                                if b is not None) + " }"
    raise TypeError(f"no TOML for {type(v).__name__}")


__all__ = ["DemoVenue", "config_toml", "daemon_config", "demo_credentials", "free_udp_ports",
           "venue_toml"]
