"""Typed, frozen daemon configuration, parsed once at start-up from TOML.

Every section is a ``msgspec.Struct`` with ``forbid_unknown_fields=True``, so a
typo is an error, not a silently ignored key. ``load_config`` turns every
problem into a ``ConfigError`` whose message starts with the dotted key
(``risk.max_order_qty: Expected `int`, got `str```) and exits the CLI non-zero.

Credentials never live in the file: the gateway section names the environment
variables that hold them (``access_key_env``/``secret_key_env``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import msgspec


class ConfigError(ValueError):
    """A configuration problem; ``key`` is the dotted path of the offending key ('' if none)."""

    def __init__(self, key: str, reason: str, path: str | None = None):
        self.key = key
        self.reason = reason
        self.path = path
        where = f"{path}: " if path else ""
        super().__init__(f"{where}{key + ': ' if key else ''}{reason}")


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class ProcessConfig(_Section, frozen=True):
    cpu_affinity: list[int] = []  # empty: leave as is
    sched_fifo: bool = False
    sched_priority: int = 10
    mlockall: bool = False
    numba_cache_dir: str = ""  # empty: numba's default (next to the sources)
    gc_freeze: bool = True


class ChannelAddress(_Section, frozen=True):
    """One market-data feed: a multicast group (or 127.0.0.1 for unicast) and port."""

    host: str
    port: int
    source: str = ""  # source-specific multicast source IP, optional


class ChannelConfig(_Section, frozen=True):
    channel_id: int
    incremental_a: ChannelAddress | None = None
    incremental_b: ChannelAddress | None = None
    snapshot_a: ChannelAddress | None = None
    snapshot_b: ChannelAddress | None = None
    definition_a: ChannelAddress | None = None
    definition_b: ChannelAddress | None = None
    heartbeat_interval_s: float = 30.0


class MarketDataConfig(_Section, frozen=True):
    source: Literal["multicast", "udp", "pcap", "dbn"] = "udp"
    interface: str = "127.0.0.1"  # local interface address for multicast joins
    cme_config_xml: str = ""  # CME config.xml: select channels by id or product
    channel_ids: list[int] = []
    products: list[str] = []
    channels: list[ChannelConfig] = []  # explicit addresses (override config.xml)
    rcvbuf_bytes: int = 8 * 1024 * 1024
    kernel_timestamps: bool = True


class InstrumentConfig(_Section, frozen=True):
    security_id: int
    symbol: str = ""
    tick: int = 0  # price mantissa of one tick; 0: from the definition
    display_factor: float = 0.0  # 0: from the definition
    contract_multiplier: float = 0.0  # currency per point; 0: from the definition
    price_exponent: int = -9
    depth: int = 10


class GatewayConfig(_Section, frozen=True):
    kind: Literal["sim", "ilink3", "paper"] = "sim"
    host: str = "127.0.0.1"
    port: int = 0
    session_id: str = ""
    firm_id: str = ""
    access_key_env: str = "NANOARB_ILINK_ACCESS_KEY"
    secret_key_env: str = "NANOARB_ILINK_SECRET_KEY"
    keepalive_ms: int = 5000
    # [first, cap] of the reconnect backoff
    reconnect_backoff_ms: list[int] = msgspec.field(default_factory=lambda: [100, 5000])
    cancel_on_disconnect: bool = True
    latency_ns: int = 0  # sim/paper: order-entry latency
    latency_jitter_ns: int = 0
    latency_file: str = ""


class StrategyConfig(_Section, frozen=True):
    enabled: bool = True
    quote_size: int = 1
    layers: int = 1
    layer_spacing_ticks: int = 1
    risk_aversion: float = 0.1
    arrival_intensity: float = 1.5
    horizon_s: float = 1.0
    alpha_weight_ticks: float = 1.0
    requote_ticks: int = 1
    min_spread_ticks: int = 1


class RiskConfig(_Section, frozen=True):
    max_order_qty: int = 5
    max_position: int = 10  # worst-case: filled + working + in flight
    max_notional: float = 5_000_000.0
    collar_ticks: int = 20
    max_working_orders: int = 20
    max_submits_per_s: int = 200
    max_cancels_per_s: int = 200
    daily_loss_limit: float = 10_000.0
    drawdown_limit: float = 5_000.0
    stale_data_ms: int = 2000
    start_active: bool = False  # go ACTIVE after reconciliation without an operator


class FeesConfig(_Section, frozen=True):
    maker_per_contract: float = 0.0
    taker_per_contract: float = 0.0
    exchange_per_contract: float = 0.0


class ModelConfig(_Section, frozen=True):
    path: str = ""  # empty: the bundled default model
    enabled: bool = True


class MetricsConfig(_Section, frozen=True):
    enabled: bool = True
    bind: str = "127.0.0.1"
    port: int = 9464


class ControlConfig(_Section, frozen=True):
    socket: str = "/run/nanoarb/control.sock"


class JournalConfig(_Section, frozen=True):
    path: str = "/var/lib/nanoarb/journal.bin"
    fsync: bool = True


class LogConfig(_Section, frozen=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    path: str = ""  # empty: stderr (journald under systemd)


class Config(_Section, frozen=True):
    mode: Literal["live", "paper", "replay", "demo"] = "demo"
    process: ProcessConfig = ProcessConfig()
    market_data: MarketDataConfig = MarketDataConfig()
    instruments: list[InstrumentConfig] = []
    gateway: GatewayConfig = GatewayConfig()
    strategy: StrategyConfig = StrategyConfig()
    risk: RiskConfig = RiskConfig()
    fees: FeesConfig = FeesConfig()
    model: ModelConfig = ModelConfig()
    metrics: MetricsConfig = MetricsConfig()
    control: ControlConfig = ControlConfig()
    journal: JournalConfig = JournalConfig()
    log: LogConfig = LogConfig()


_AT = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def _dotted(path: str) -> str:
    # msgspec paths look like ".risk.max_order_qty" or ".instruments[0].tick"
    return path.lstrip(".")


def _validate(cfg: Config) -> None:
    """Checks a type cannot express; each names its key."""

    def need(cond: bool, key: str, reason: str) -> None:
        if not cond:
            raise ConfigError(key, reason)

    for i, cpu in enumerate(cfg.process.cpu_affinity):
        need(cpu >= 0, f"process.cpu_affinity[{i}]", "must be >= 0")
    need(1 <= cfg.process.sched_priority <= 99, "process.sched_priority", "must be in 1..99")
    r = cfg.risk
    need(r.max_order_qty > 0, "risk.max_order_qty", "must be > 0")
    need(r.max_position >= 0, "risk.max_position", "must be >= 0")
    need(r.max_notional > 0, "risk.max_notional", "must be > 0")
    need(r.collar_ticks > 0, "risk.collar_ticks", "must be > 0")
    need(r.max_working_orders > 0, "risk.max_working_orders", "must be > 0")
    need(r.max_submits_per_s > 0, "risk.max_submits_per_s", "must be > 0")
    need(r.max_cancels_per_s > 0, "risk.max_cancels_per_s", "must be > 0")
    need(r.daily_loss_limit > 0, "risk.daily_loss_limit", "must be > 0")
    need(r.drawdown_limit > 0, "risk.drawdown_limit", "must be > 0")
    need(r.stale_data_ms > 0, "risk.stale_data_ms", "must be > 0")
    s = cfg.strategy
    need(s.quote_size > 0, "strategy.quote_size", "must be > 0")
    need(s.quote_size <= r.max_order_qty, "strategy.quote_size", "exceeds risk.max_order_qty")
    need(1 <= s.layers <= 10, "strategy.layers", "must be in 1..10")
    need(s.requote_ticks >= 1, "strategy.requote_ticks", "must be >= 1")
    need(s.risk_aversion >= 0, "strategy.risk_aversion", "must be >= 0")
    need(s.arrival_intensity > 0, "strategy.arrival_intensity", "must be > 0")
    need(1 <= cfg.metrics.port <= 65535, "metrics.port", "must be in 1..65535")
    lo, hi = [*cfg.gateway.reconnect_backoff_ms, 0, 0][:2]
    need(
        len(cfg.gateway.reconnect_backoff_ms) == 2 and 0 < lo <= hi,
        "gateway.reconnect_backoff_ms",
        "must be [first, cap] with 0 < first <= cap",
    )
    seen: set[int] = set()
    for i, inst in enumerate(cfg.instruments):
        need(inst.security_id not in seen, f"instruments[{i}].security_id", "duplicate security id")
        seen.add(inst.security_id)
        need(1 <= inst.depth <= 10, f"instruments[{i}].depth", "must be in 1..10")
        need(inst.tick >= 0, f"instruments[{i}].tick", "must be >= 0")
    if cfg.mode == "live":
        need(cfg.gateway.kind == "ilink3", "gateway.kind", "live mode needs the ilink3 gateway")
        need(bool(cfg.gateway.session_id), "gateway.session_id", "required in live mode")
        need(bool(cfg.gateway.firm_id), "gateway.firm_id", "required in live mode")
        need(len(cfg.instruments) > 0, "instruments", "live mode needs at least one instrument")
    if cfg.mode == "paper":
        need(cfg.gateway.kind == "paper", "gateway.kind", "paper mode uses the paper gateway")


def parse_config(data: bytes | str, path: str | None = None) -> Config:
    """Parse TOML text into a validated ``Config``; raise ``ConfigError`` naming the key."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        cfg = msgspec.toml.decode(raw, type=Config)
    except msgspec.ValidationError as exc:
        m = _AT.match(str(exc))
        assert m is not None
        reason, at = m.group("reason"), m.group("path") or ""
        unknown = re.match(r"Object contains unknown field `([^`]+)`", reason)
        if unknown:
            key = ".".join(p for p in (_dotted(at), unknown.group(1)) if p)
            raise ConfigError(key, "unknown key", path) from None
        raise ConfigError(_dotted(at), reason, path) from None
    except msgspec.DecodeError as exc:
        raise ConfigError("", f"not valid TOML: {exc}", path) from None
    try:
        _validate(cfg)
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.reason, path) from None
    return cfg


def load_config(path: str | Path) -> Config:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError("", f"cannot read config: {exc.strerror}", str(p)) from None
    return parse_config(data, str(p))


def replace_risk(cfg: Config, new: Config) -> Config:
    """The config after a SIGHUP reload: only risk limits change; anything else is ignored."""
    return msgspec.structs.replace(cfg, risk=new.risk)


# The demo's configuration, built in so an installed nanoarb runs `nanoarb demo`
# without the repository. configs/demo.toml shows the same values (a test keeps
# the two equal).
DEMO_TOML = """
mode = "demo"

[process]
cpu_affinity = []
gc_freeze = true

[market_data]
source = "udp"
interface = "127.0.0.1"

[gateway]
kind = "ilink3"
host = "127.0.0.1"
session_id = "DEM"
firm_id = "001"

[strategy]
quote_size = 1
layers = 1
requote_ticks = 1

[risk]
max_order_qty = 5
max_position = 10
collar_ticks = 20
start_active = true

[metrics]
enabled = false

[journal]
path = ""
fsync = false
"""


def demo_config() -> Config:
    return parse_config(DEMO_TOML, "<built-in demo config>")
