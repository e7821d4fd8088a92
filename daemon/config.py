"""Typed, frozen daemon configuration, parsed once at start-up from TOML.

Every section is a ``msgspec.Struct`` with ``forbid_unknown_fields=True``, so a
typo is an error, not a silently ignored key. ``load_config`` turns every
problem into a ``ConfigError`` whose message starts with the dotted key
(``risk.max_order_qty: Expected `int`, got `str```) and exits the CLI non-zero.

Credentials never live in the file: the gateway section names the environment
variables that hold them (``access_key_env``/``secret_key_env``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec

from adapters.toml_config import ConfigError, decode_toml


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class ProcessConfig(_Section, frozen=True):
    cpu_affinity: list[int] = []  # empty: leave as is
    sched_fifo: bool = False
    sched_priority: int = 10
    mlockall: bool = False
    numba_cache_dir: str = ""  # empty: numba's default (next to the sources)
    gc_freeze: bool = True
    # While the feed is idle, run the model on a scratch slot this often (0: never):
    # with ~1 ms between packets the caches and TLBs go cold and the next real
    # inference costs 2-5x its warm time (measured; see README "Keeping the hot path warm").
    keep_warm_us: int = 100
    # ... and, with a gateway over TCP, send 256 bytes through a private 127.0.0.1 TCP
    # connection each time: after ms without a send an order's send(2) costs ~4x
    # (measured; adapters/net_warm.py).
    keep_warm_send: bool = True


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
    feeds: list[Literal["A", "B"]] = msgspec.field(default_factory=lambda: ["A", "B"])
    definitions_timeout_s: float = 10.0  # start-up: wait this long for the definition loop
    gap_timeout_ms: float = 2.0  # a missing packet waits this long for the other feed
    stale_after_ms: int = 5000  # a channel silent this long is STALE


class InstrumentConfig(_Section, frozen=True):
    """A traded instrument. Contract terms left at 0 come from its security definition."""

    security_id: int
    symbol: str = ""
    tick: int = 0  # price mantissa of one tick; 0: from the definition
    tick_value: float = 0.0  # currency per tick per contract; 0: from the definition
    display_factor: float = 0.0  # 0: from the definition
    contract_multiplier: float = 0.0  # currency per point; 0: from the definition
    price_exponent: int = -9
    depth: int = 10
    enabled: bool = True  # False: tracked and marked, never quoted
    # per-instrument overrides of [risk] (0: the [risk] value)
    max_order_qty: int = 0
    max_position: int = 0
    collar_ticks: int = 0


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
    """The market maker (core.strategy.market_maker.MarketMakerParams), every instrument."""

    enabled: bool = True  # False: no quoting (the daemon still tracks and marks)
    quote_size: int = 1
    layers: int = 1  # quote layers per side (1..4)
    layer_spacing_ticks: int = 1
    risk_aversion: float = 0.1  # gamma, 1/ticks
    arrival_intensity: float = 1.5  # k: fill rate ~ exp(-k * distance in ticks)
    horizon_s: float = 1.0  # tau, in the volatility feature's time unit
    alpha_weight_ticks: float = 1.0  # ticks of skew per unit of model alpha
    max_alpha_skew_ticks: float = 2.0
    min_spread_ticks: int = 1  # quoted spread never below this
    requote_ticks: int = 1  # move a quote toward the market only this far or more
    at_risk_ticks: int = 1  # move it away from the market (protect) this far or more


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
    halt_on_data_fault: bool = False  # stale/recovering data or NaN model halts everything
    start_active: bool = False  # go ACTIVE after reconciliation without an operator
    stop_timeout_ms: int = 2000  # graceful stop: wait this long for the cancel acks


class FeesConfig(_Section, frozen=True):
    maker_per_contract: float = 0.0  # exchange fee when resting
    taker_per_contract: float = 0.0  # exchange fee when aggressing
    clearing_per_contract: float = 0.0  # clearing + broker + NFA, every fill


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




def _validate(cfg: Config) -> None:
    """Checks a type cannot express; each names its key."""

    def need(cond: bool, key: str, reason: str) -> None:
        if not cond:
            raise ConfigError(key, reason)

    for i, cpu in enumerate(cfg.process.cpu_affinity):
        need(cpu >= 0, f"process.cpu_affinity[{i}]", "must be >= 0")
    need(1 <= cfg.process.sched_priority <= 99, "process.sched_priority", "must be in 1..99")
    need(0 <= cfg.process.keep_warm_us <= 100_000, "process.keep_warm_us",
         "must be in 0..100000 (0: off)")
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
    need(1 <= s.layers <= 4, "strategy.layers", "must be in 1..4")
    need(s.requote_ticks >= 1, "strategy.requote_ticks", "must be >= 1")
    need(s.at_risk_ticks >= 1, "strategy.at_risk_ticks", "must be >= 1")
    need(s.layer_spacing_ticks >= 1, "strategy.layer_spacing_ticks", "must be >= 1")
    need(s.min_spread_ticks >= 0, "strategy.min_spread_ticks", "must be >= 0")
    need(s.max_alpha_skew_ticks >= 0, "strategy.max_alpha_skew_ticks", "must be >= 0")
    need(s.horizon_s >= 0, "strategy.horizon_s", "must be >= 0")
    need(r.stop_timeout_ms > 0, "risk.stop_timeout_ms", "must be > 0")
    need(r.max_submits_per_s <= 1024, "risk.max_submits_per_s", "must be <= 1024")
    need(r.max_cancels_per_s <= 1024, "risk.max_cancels_per_s", "must be <= 1024")
    need(s.risk_aversion >= 0, "strategy.risk_aversion", "must be >= 0")
    need(s.arrival_intensity > 0, "strategy.arrival_intensity", "must be > 0")
    need(1 <= cfg.metrics.port <= 65535, "metrics.port", "must be in 1..65535")
    md = cfg.market_data
    need(len(md.feeds) > 0, "market_data.feeds", "at least one of A, B")
    need(md.definitions_timeout_s > 0, "market_data.definitions_timeout_s", "must be > 0")
    need(md.gap_timeout_ms > 0, "market_data.gap_timeout_ms", "must be > 0")
    need(md.stale_after_ms > 0, "market_data.stale_after_ms", "must be > 0")
    need(md.rcvbuf_bytes >= 65536, "market_data.rcvbuf_bytes", "must be >= 65536")
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
        need(inst.tick_value >= 0, f"instruments[{i}].tick_value", "must be >= 0")
        for name in ("max_order_qty", "max_position", "collar_ticks"):
            need(getattr(inst, name) >= 0, f"instruments[{i}].{name}", "must be >= 0")
    need(len(cfg.instruments) <= 8, "instruments", "at most 8 traded instruments")
    if cfg.mode == "live":
        need(cfg.gateway.kind == "ilink3", "gateway.kind", "live mode needs the ilink3 gateway")
        need(bool(cfg.gateway.session_id), "gateway.session_id", "required in live mode")
        need(bool(cfg.gateway.firm_id), "gateway.firm_id", "required in live mode")
        need(len(cfg.instruments) > 0, "instruments", "live mode needs at least one instrument")
    if cfg.mode == "paper":
        need(cfg.gateway.kind == "paper", "gateway.kind", "paper mode uses the paper gateway")


def parse_config(data: bytes | str, path: str | None = None) -> Config:
    """Parse TOML text into a validated ``Config``; raise ``ConfigError`` naming the key."""
    return decode_toml(data, Config, path, _validate)


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
definitions_timeout_s = 120.0

[[instruments]]
security_id = 5602
symbol = "ESZ5"

[[instruments]]
security_id = 2871
symbol = "CLZ5"

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


# ---------------------------------------------------------------------------
# The config as the trading core's types (parsed once, converted here)
# ---------------------------------------------------------------------------
def market_maker_params(cfg: Config) -> Any:
    """[strategy] as core.strategy.market_maker.MarketMakerParams."""
    from core.strategy.market_maker import MarketMakerParams

    s = cfg.strategy
    return MarketMakerParams(
        gamma=s.risk_aversion,
        k=s.arrival_intensity,
        vol_horizon=s.horizon_s,
        alpha_skew=s.alpha_weight_ticks,
        max_alpha_skew_ticks=s.max_alpha_skew_ticks,
        min_half_spread_ticks=s.min_spread_ticks / 2.0,
        quote_size=s.quote_size if s.enabled else 0,
        n_layers=s.layers if s.enabled else 0,
        layer_spacing_ticks=s.layer_spacing_ticks,
        requote_ticks=s.requote_ticks,
        at_risk_ticks=s.at_risk_ticks,
    )


def instrument_limits(cfg: Config, inst: InstrumentConfig | None = None) -> Any:
    """[risk] per-instrument limits (with an [[instruments]] entry's overrides)."""
    from core.risk import InstrumentLimits

    r = cfg.risk
    return InstrumentLimits(
        max_order_qty=(inst.max_order_qty if inst and inst.max_order_qty else r.max_order_qty),
        max_position=(inst.max_position if inst and inst.max_position else r.max_position),
        collar_ticks=(inst.collar_ticks if inst and inst.collar_ticks else r.collar_ticks),
    )


def risk_limits(cfg: Config, instruments: Sequence[InstrumentConfig | None] = ()) -> Any:
    """[risk] as core.risk.RiskLimits, one InstrumentLimits per traded instrument."""
    from core.risk import RiskLimits

    r = cfg.risk
    return RiskLimits(
        max_notional=r.max_notional,
        max_working_orders=r.max_working_orders,
        submit_limit=r.max_submits_per_s,
        submit_window_ns=1_000_000_000,
        cancel_limit=r.max_cancels_per_s,
        cancel_window_ns=1_000_000_000,
        max_daily_loss=r.daily_loss_limit,
        max_drawdown=r.drawdown_limit,
        stale_ns=r.stale_data_ms * 1_000_000,
        halt_on_data_fault=r.halt_on_data_fault,
        instruments=tuple(instrument_limits(cfg, i) for i in instruments),
    )


def trading_instrument(cfg: Config, security_id: int, tick: int, tick_value: float,
                       price_exponent: int = -9, inst: InstrumentConfig | None = None) -> Any:
    """One core.trading.InstrumentConfig: contract terms, fees, limits, quoting."""
    from core.trading import InstrumentConfig as TradedInstrument

    f = cfg.fees
    return TradedInstrument(
        security_id=security_id,
        tick=tick,
        tick_value=tick_value,
        price_exponent=price_exponent,
        maker_fee=f.maker_per_contract,
        taker_fee=f.taker_per_contract,
        fee_per_contract=f.clearing_per_contract,
        limits=instrument_limits(cfg, inst),
        params=market_maker_params(cfg),
        enabled=inst.enabled if inst is not None else True,
    )
