"""Typed, frozen configuration of the exchange simulator (``nanoarb venue --config FILE``).

Same style as ``daemon.config``: every section is a ``msgspec.Struct`` with
``forbid_unknown_fields=True``; ``load_venue_config`` turns every problem into a
``ConfigError`` whose message starts with the dotted key. Prices are PRICE9
mantissas (exponent -9, Globex units: ES 5000.00 = 500000 display units x 0.01,
tick 25). Credentials of the iLink 3 sessions never live in the file: each
session names the environment variables that hold its access key and secret.

Addresses: the venue only ever sends to 127.0.0.1 or to a multicast group
(224.0.0.0/4, joined on ``market_data.interface``), and listens on 127.0.0.1.
A port of 0 for the order entry or control endpoint takes a free port (the
venue prints the ports it got on its ready line).
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

import msgspec

from adapters.toml_config import ConfigError, decode_toml

__all__ = [
    "ConfigError",
    "ControlConfig",
    "FaultConfig",
    "FeedAddress",
    "FlowConfig",
    "MarketDataConfig",
    "OrderEntryConfig",
    "SessionConfig",
    "VenueConfig",
    "VenueInstrument",
    "VenueSection",
    "load_venue_config",
    "parse_venue_config",
]


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class VenueSection(_Section, frozen=True):
    seed: int = 7
    # busy: spin without ever sleeping (give the venue its own core);
    # wait: block in poll() on the order-entry and control sockets until the next timer
    loop: Literal["busy", "wait"] = "wait"
    max_wait_us: int = 1000  # wait mode: longest sleep when nothing is due
    max_orders: int = 200_000  # resting order capacity of the matching engine
    latency_file: str = ""  # .npy or .jsonl written at exit; empty: not written
    latency_capacity: int = 1 << 20  # orders recorded (a ring: the oldest are overwritten)
    md_ring: int = 1 << 20  # MsgSeqNum -> send time ring for the latency record


class FeedAddress(_Section, frozen=True):
    host: str
    port: int


class MarketDataConfig(_Section, frozen=True):
    channel_id: int = 310
    schema_version: int = 13  # MDP 3.0 schema version written (9..13)
    mbo: bool = True  # publish MBO: template 47 and the order-ID groups of 46/48
    max_packet_bytes: int = 1420
    interface: str = "127.0.0.1"  # multicast interface
    ttl: int = 1
    heartbeat_interval_ms: int = 1000  # AdminHeartbeat12 when the channel is idle that long
    snapshot_interval_ms: int = 500  # one full snapshot loop (52) per interval
    definition_interval_ms: int = 2000  # one full definition loop (54) per interval
    incremental_a: FeedAddress = FeedAddress(host="127.0.0.1", port=14310)
    incremental_b: FeedAddress = FeedAddress(host="127.0.0.1", port=15310)
    snapshot: FeedAddress = FeedAddress(host="127.0.0.1", port=16310)
    definition: FeedAddress = FeedAddress(host="127.0.0.1", port=17310)


class SessionConfig(_Section, frozen=True):
    session_id: str  # 3 characters
    firm_id: str  # up to 5 characters; the owner of the orders (self-match prevention)
    access_key_env: str = "NANOARB_ILINK_ACCESS_KEY"
    secret_key_env: str = "NANOARB_ILINK_SECRET_KEY"
    cancel_on_disconnect: bool = True


class OrderEntryConfig(_Section, frozen=True):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9310
    check_timestamp: bool = True  # reject Negotiate/Establish with a stale RequestTimestamp
    cod_on_terminate: bool = False  # cancel on disconnect also after an orderly Terminate
    sessions: list[SessionConfig] = []


class ControlConfig(_Section, frozen=True):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9311  # UDP, JSON requests (see adapters.venue.control)


class FlowConfig(_Section, frozen=True):
    """Background order flow: Hawkes arrivals, limit orders around a latent fair price."""

    enabled: bool = True
    base_rate_hz: float = 200.0  # baseline arrival intensity (all instruments)
    hawkes_alpha: float = 600.0  # intensity jump per arrival (1/s)
    hawkes_beta: float = 1000.0  # decay of the excitation (1/s); alpha/beta < 1
    add_prob: float = 0.55  # the rest of each arrival's draw: cancel, then marketable
    cancel_prob: float = 0.35
    spread_ticks: int = 1  # bids at or below fair - spread/2, offers at or above fair + spread/2
    levels: int = 12  # ticks behind the touch over which adds spread
    level_decay: float = 0.8  # P(k ticks behind) ~ decay**k
    mean_qty: float = 3.0
    mean_market_qty: float = 4.0
    sweep_ticks: int = 2  # marketable orders are IOC this many ticks through the touch
    target_orders: int = 80  # resting flow orders per instrument the cancels steer towards
    initial_levels: int = 10  # levels seeded on each side at start
    initial_orders_per_level: int = 2


class VenueInstrument(_Section, frozen=True):
    security_id: int
    symbol: str
    group: str = ""  # SecurityGroup (6 chars); default: the symbol minus its month code
    asset: str = ""
    tick: int = 25_000_000_000  # MinPriceIncrement, PRICE9 mantissa
    display_factor: float = 0.01
    multiplier: float = 50.0  # UnitOfMeasureQty (currency per point)
    depth: int = 10  # MBP MarketDepth
    start_price: int = 500_000_000_000_000  # fair price at start (PRICE9 mantissa)
    band_ticks: int = 4000  # price band: start_price +- band_ticks ticks (orders outside rejected)
    volatility_ticks: float = 1.0  # latent fair price, ticks per sqrt(second)
    weight: float = 1.0  # share of the background arrivals
    maturity: str = "202512"  # MaturityMonthYear YYYYMM
    market_segment_id: int = 64
    max_trade_vol: int = 3000


FaultKind = Literal["drop", "duplicate", "reorder", "gap", "channel_reset", "disconnect",
                    "reject", "delay", "delay_reports", "drop_report", "halt", "resume"]


class FaultConfig(_Section, frozen=True):
    at_ms: int  # after the venue starts RUNNING
    kind: FaultKind
    feed: Literal["A", "B", ""] = ""  # drop / duplicate / reorder
    count: int = 1  # packets (feed faults), orders (reject / delay) or reports (drop_report)
    delay_ms: int = 0  # delay / delay_reports
    session: str = ""  # order-entry faults: Session ID (empty: every session)
    security_id: int = 0  # halt / resume: 0 = every instrument


class VenueConfig(_Section, frozen=True):
    venue: VenueSection = VenueSection()
    market_data: MarketDataConfig = MarketDataConfig()
    order_entry: OrderEntryConfig = OrderEntryConfig()
    control: ControlConfig = ControlConfig()
    flow: FlowConfig = FlowConfig()
    instruments: list[VenueInstrument] = []
    faults: list[FaultConfig] = []


_MATURITY = re.compile(r"^\d{6}$")


def _is_multicast(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_multicast
    except ValueError:
        return False


def _validate(cfg: VenueConfig) -> None:
    def need(cond: bool, key: str, reason: str) -> None:
        if not cond:
            raise ConfigError(key, reason)

    v = cfg.venue
    need(v.max_wait_us > 0, "venue.max_wait_us", "must be > 0")
    need(1 <= v.max_orders < (1 << 30), "venue.max_orders", "must be in 1..2**30-1")
    need(v.latency_capacity > 0, "venue.latency_capacity", "must be > 0")
    need(v.md_ring > 0 and v.md_ring & (v.md_ring - 1) == 0, "venue.md_ring",
         "must be a power of two")
    need(v.latency_file == "" or v.latency_file.endswith((".npy", ".jsonl")),
         "venue.latency_file", "must end in .npy or .jsonl")
    md = cfg.market_data
    need(0 < md.channel_id < 32768, "market_data.channel_id", "must be in 1..32767 (ApplID)")
    need(9 <= md.schema_version <= 13, "market_data.schema_version", "must be in 9..13")
    need(256 <= md.max_packet_bytes <= 65_000, "market_data.max_packet_bytes",
         "must be in 256..65000")
    need(md.interface == "127.0.0.1", "market_data.interface", "must be 127.0.0.1")
    need(0 <= md.ttl <= 255, "market_data.ttl", "must be in 0..255")
    for name in ("heartbeat_interval_ms", "snapshot_interval_ms", "definition_interval_ms"):
        need(getattr(md, name) > 0, f"market_data.{name}", "must be > 0")
    for name in ("incremental_a", "incremental_b", "snapshot", "definition"):
        a: FeedAddress = getattr(md, name)
        need(a.host in ("127.0.0.1", "localhost") or _is_multicast(a.host),
             f"market_data.{name}.host", "must be 127.0.0.1 or a multicast group")
        need(1 <= a.port <= 65535, f"market_data.{name}.port", "must be in 1..65535")
    oe = cfg.order_entry
    need(oe.host in ("127.0.0.1", "localhost"), "order_entry.host", "must be 127.0.0.1")
    need(0 <= oe.port <= 65535, "order_entry.port", "must be in 0..65535")
    if oe.enabled:
        need(len(oe.sessions) > 0, "order_entry.sessions", "at least one session")
    seen_sessions: set[str] = set()
    for i, s in enumerate(oe.sessions):
        need(len(s.session_id) == 3, f"order_entry.sessions[{i}].session_id",
             "must be 3 characters")
        need(1 <= len(s.firm_id) <= 5, f"order_entry.sessions[{i}].firm_id",
             "must be 1..5 characters")
        need(s.session_id not in seen_sessions, f"order_entry.sessions[{i}].session_id",
             "duplicate session")
        seen_sessions.add(s.session_id)
        need(bool(s.access_key_env) and bool(s.secret_key_env),
             f"order_entry.sessions[{i}].access_key_env", "name both environment variables")
    c = cfg.control
    need(c.host in ("127.0.0.1", "localhost"), "control.host", "must be 127.0.0.1")
    need(0 <= c.port <= 65535, "control.port", "must be in 0..65535")
    f = cfg.flow
    need(f.base_rate_hz > 0, "flow.base_rate_hz", "must be > 0")
    need(0 <= f.hawkes_alpha < f.hawkes_beta, "flow.hawkes_alpha",
         "branching ratio alpha/beta must be in [0, 1)")
    need(f.add_prob >= 0 and f.cancel_prob >= 0 and f.add_prob + f.cancel_prob <= 1,
         "flow.add_prob", "add_prob + cancel_prob must be in [0, 1]")
    need(f.spread_ticks >= 1, "flow.spread_ticks", "must be >= 1")
    need(f.levels >= 1, "flow.levels", "must be >= 1")
    need(0 < f.level_decay < 1, "flow.level_decay", "must be in (0, 1)")
    need(f.mean_qty >= 1 and f.mean_market_qty >= 1, "flow.mean_qty", "must be >= 1")
    need(f.sweep_ticks >= 0, "flow.sweep_ticks", "must be >= 0")
    need(1 <= f.target_orders <= 30_000, "flow.target_orders", "must be in 1..30000")
    need(f.initial_levels >= 0 and f.initial_orders_per_level >= 0, "flow.initial_levels",
         "must be >= 0")
    need(len(cfg.instruments) > 0, "instruments", "at least one instrument")
    need(len(cfg.instruments) <= 255, "instruments", "at most 255 instruments")
    sids: set[int] = set()
    for i, ins in enumerate(cfg.instruments):
        k = f"instruments[{i}]"
        need(0 < ins.security_id < 2**31, f"{k}.security_id", "must be in 1..2**31-1")
        need(ins.security_id not in sids, f"{k}.security_id", "duplicate security id")
        sids.add(ins.security_id)
        need(1 <= len(ins.symbol) <= 20, f"{k}.symbol", "must be 1..20 characters")
        need(len(ins.group) <= 6 and len(ins.asset) <= 6, f"{k}.group", "at most 6 characters")
        need(ins.tick > 0, f"{k}.tick", "must be > 0")
        need(ins.start_price > 0 and ins.start_price % ins.tick == 0, f"{k}.start_price",
             "must be a positive multiple of tick")
        need(1 <= ins.depth <= 10, f"{k}.depth", "must be in 1..10")
        need(ins.band_ticks >= 10, f"{k}.band_ticks", "must be >= 10")
        need(ins.start_price - ins.band_ticks * ins.tick > 0, f"{k}.band_ticks",
             "the band must stay above zero")
        need(ins.display_factor > 0, f"{k}.display_factor", "must be > 0")
        need(ins.multiplier > 0, f"{k}.multiplier", "must be > 0")
        need(ins.volatility_ticks >= 0, f"{k}.volatility_ticks", "must be >= 0")
        need(ins.weight > 0, f"{k}.weight", "must be > 0")
        need(bool(_MATURITY.match(ins.maturity)) and 1 <= int(ins.maturity[4:]) <= 12,
             f"{k}.maturity", "must be YYYYMM")
        need(0 <= ins.market_segment_id <= 255, f"{k}.market_segment_id", "must be in 0..255")
    for i, fc in enumerate(cfg.faults):
        k = f"faults[{i}]"
        need(fc.at_ms >= 0, f"{k}.at_ms", "must be >= 0")
        need(fc.count >= 1, f"{k}.count", "must be >= 1")
        need(fc.delay_ms >= 0, f"{k}.delay_ms", "must be >= 0")
        if fc.kind in ("drop", "duplicate", "reorder"):
            need(fc.feed in ("A", "B"), f"{k}.feed", f"{fc.kind} needs feed A or B")
        if fc.kind == "delay":
            need(fc.delay_ms > 0, f"{k}.delay_ms", "delay needs delay_ms > 0")
        if fc.session:
            need(fc.session in seen_sessions, f"{k}.session", "not a configured session")
        if fc.security_id:
            need(fc.security_id in sids, f"{k}.security_id", "not a configured instrument")


def parse_venue_config(data: bytes | str, path: str | None = None) -> VenueConfig:
    """TOML text -> validated ``VenueConfig``; ``ConfigError`` naming the key otherwise."""
    return decode_toml(data, VenueConfig, path, _validate)


def load_venue_config(path: str | Path) -> VenueConfig:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError("", f"cannot read config: {exc.strerror}", str(p)) from None
    return parse_venue_config(data, str(p))


def security_group(ins: VenueInstrument) -> str:
    """SecurityGroup of an instrument: configured, else the symbol without month and year."""
    if ins.group:
        return ins.group
    m = re.match(r"^([A-Z0-9]+?)[FGHJKMNQUVXZ]\d{1,2}$", ins.symbol)
    return (m.group(1) if m else ins.symbol)[:6]


def asset(ins: VenueInstrument) -> str:
    return ins.asset or security_group(ins)
