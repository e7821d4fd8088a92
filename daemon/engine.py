"""Assembly: the config (and the mode) turned into the parts the hot loop drives.

``build(cfg, ...)`` returns ``Engine``: the market-data source and sequencer,
the books (MarketState), the instrument table, the trading core with its
instruments and limits, the model runner, the gateway and the clock.

Modes:

* ``live`` / ``demo``: UDP market data (multicast, or 127.0.0.1 unicast for the
  demo venue) and the iLink 3 gateway (credentials from the environment);
* ``paper``: UDP market data, the in-process simulated venue (queue model)
  fed with the same rows; nothing leaves the process;
* ``replay``: captures (pcap/pcapng), DBN files or ``synthetic:N`` through the
  simulated venue, with a clock that follows the data.

Instruments: from the security definitions (the definition loop at start-up,
the DBN definitions, the synthetic generator), with what ``[[instruments]]``
sets taking precedence; an empty list trades every outright defined (at most
MAX_TRADED_INSTRUMENTS).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from daemon.config import Config, ConfigError, InstrumentConfig, risk_limits, trading_instrument


@dataclass
class Engine:
    cfg: Config
    mode: str
    clock: Any
    source: Any
    market: Any
    core: Any
    gateway: Any
    runner: Any
    table: Any  # InstrumentTable or None
    symbols: list[str]
    traded: list[int]  # security ids, in TradingCore order
    traded_rows: np.ndarray
    sequencer: Any = None
    seq_rows: np.ndarray | None = None
    appl_ids: tuple[int, ...] = ()
    sim: Any = None
    channels: list[Any] = field(default_factory=list)
    replay: bool = False
    notes: list[str] = field(default_factory=list)

    def close(self) -> None:
        for obj in (self.source, self.runner):
            close = getattr(obj, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):  # on the way out: best effort
                    close()


# ---------------------------------------------------------------------------
# channels
# ---------------------------------------------------------------------------
def channels_of(cfg: Config, base_dir: str | Path | None = None) -> list[Any]:
    """[market_data] -> adapters.cme_config.ChannelConfig list (config.xml and/or explicit)."""
    from adapters.cme_config import ChannelConfig, Endpoint, load_cme_config, select_channels

    md = cfg.market_data
    out: list[Any] = []
    if md.cme_config_xml:
        path = Path(md.cme_config_xml)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        try:
            all_ch = load_cme_config(path)
            out += select_channels(all_ch, ids=md.channel_ids, products=md.products)
        except (OSError, ValueError) as exc:
            raise ConfigError("market_data.cme_config_xml", str(exc)) from None
    for i, ch in enumerate(md.channels):
        eps = []
        for attr, role, feed in (("incremental_a", "incremental", "A"),
                                 ("incremental_b", "incremental", "B"),
                                 ("snapshot_a", "snapshot", "A"), ("snapshot_b", "snapshot", "B"),
                                 ("definition_a", "definition", "A"),
                                 ("definition_b", "definition", "B")):
            addr = getattr(ch, attr)
            if addr is not None:
                eps.append(Endpoint(role=role, feed=feed, ip=addr.host, port=addr.port,
                                    source_ip=addr.source))
        if not any(e.role == "incremental" for e in eps):
            raise ConfigError(f"market_data.channels[{i}]", "needs incremental_a or incremental_b")
        out.append(ChannelConfig(channel_id=ch.channel_id, endpoints=tuple(eps)))
    return out


def load_definitions_udp(cfg: Config, channels: list[Any], clock: Any) -> Any:
    """Read each channel's definition loop once (start-up, not hot)."""
    from adapters.md_sources import UdpSource, load_definitions
    from core.sbe.instruments import InstrumentTable
    from core.types import ROLE_DEFINITION

    table = InstrumentTable()
    md = cfg.market_data
    if not any(e.role == "definition" for ch in channels for e in ch.endpoints):
        return table
    src = UdpSource(channels, interface=md.interface, feeds=tuple(md.feeds)[:1],
                    rcvbuf_bytes=md.rcvbuf_bytes, kernel_timestamps=False)
    want = {ic.security_id for ic in cfg.instruments}
    deadline = clock.now_ns() + int(md.definitions_timeout_s * 1e9)
    try:
        for c in range(len(channels)):
            src.join(c, ROLE_DEFINITION)
        # one pass of the loop can miss a datagram: read it again until the configured
        # instruments are there (or, none configured, until a pass adds nothing)
        while True:
            before = len(table.index)
            left = max(deadline - clock.now_ns(), 0) / 1e9
            if left <= 0:
                break
            load_definitions(src, table, clock, timeout_s=left)
            have = set(table.index)
            if want and want <= have:
                break
            if not want and before and len(table.index) == before:
                break
    finally:
        src.close()
    return table


# ---------------------------------------------------------------------------
# instruments
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Contract:
    security_id: int
    symbol: str
    tick: int
    tick_value: float
    price_exponent: int
    depth: int
    appl_id: int = -1
    mbo: bool = False


def contracts_from_table(cfg: Config, table: Any) -> list[Contract]:
    """The traded contracts: [[instruments]] (terms from the definitions where 0)."""
    from core.oms import tick_value as tv_of
    from core.types import MAX_TRADED_INSTRUMENTS

    rows = [] if table is None else [table.rows[i] for i in sorted(table.index.values())]
    by_id = {int(r["security_id"]): r for r in rows}
    wanted: list[tuple[int, InstrumentConfig | None]]
    if cfg.instruments:
        wanted = [(ic.security_id, ic) for ic in cfg.instruments]
    else:
        outrights = [int(r["security_id"]) for r in rows if not int(r["is_spread"])]
        wanted = [(sid, None) for sid in outrights[:MAX_TRADED_INSTRUMENTS]]
    out = []
    for i, (sid, ic) in enumerate(wanted):
        r = by_id.get(sid)
        key = f"instruments[{i}]"
        tick = ic.tick if ic and ic.tick else (int(r["min_price_increment"]) if r is not None
                                              else 0)
        exp = int(r["price_exponent"]) if r is not None else (ic.price_exponent if ic else -9)
        if ic and ic.tick:
            exp = ic.price_exponent
        tv = ic.tick_value if ic and ic.tick_value else 0.0
        if not tv and tick:
            df = (round(ic.display_factor * 1e9) if ic and ic.display_factor
                  else (int(r["display_factor"]) if r is not None else 0))
            mult = (round(ic.contract_multiplier * 1e9) if ic and ic.contract_multiplier
                    else (int(r["contract_multiplier"]) if r is not None else 0))
            if df and mult:
                tv = tv_of(tick, exp, df, mult)
        if not tick:
            raise ConfigError(f"{key}.tick", f"security {sid}: no definition received and no "
                              "tick configured")
        if not tv > 0:
            raise ConfigError(f"{key}.tick_value", f"security {sid}: no definition received "
                              "and no tick_value (or display_factor and contract_multiplier)")
        sym = (ic.symbol if ic and ic.symbol else
               (r["symbol"].decode(errors="replace") if r is not None else str(sid)))
        depth = ic.depth if ic else (int(r["outright_depth"]) or 10 if r is not None else 10)
        appl = int(r["appl_id"]) if r is not None and int(r["appl_id"]) > 0 else -1
        out.append(Contract(sid, sym or str(sid), tick, tv, exp, min(max(depth, 1), 10), appl,
                            bool(int(r["mbo"])) if r is not None else False))
    return out


# ---------------------------------------------------------------------------
# the build
# ---------------------------------------------------------------------------
def build(cfg: Config, *, mode: str | None = None, data: Sequence[str] = (),
          clock: Any = None, cl_ord_id_base: int = 1, base_dir: str | Path | None = None,
          environ: Any = None, max_instruments: int = 256) -> Engine:
    """Everything the hot loop needs, built from the config (start-up only)."""
    from adapters.clock import MonotonicClock
    from core.market import MarketState
    from core.trading import TradingCore

    mode = mode or cfg.mode
    environ = os.environ if environ is None else environ
    replay = mode == "replay"
    notes: list[str] = []
    source: Any
    sequencer = None
    channels: list[Any] = []
    table: Any = None
    if replay:
        from daemon.sources import ReplayClock

        clock = clock or ReplayClock()
        source, table, channels, contracts = _replay_source(cfg, data, base_dir)
    else:
        clock = clock or MonotonicClock()
        channels = channels_of(cfg, base_dir)
        if not channels:
            raise ConfigError("market_data.channels", "no market-data channel configured")
        table = load_definitions_udp(cfg, channels, clock)
        contracts = contracts_from_table(cfg, table)
        if not contracts:
            raise ConfigError("instruments", "no instrument to trade: none configured and no "
                              "definition received in market_data.definitions_timeout_s")
        from adapters.md_sources import UdpSource

        md = cfg.market_data
        source = UdpSource(channels, interface=md.interface, feeds=tuple(md.feeds),
                           rcvbuf_bytes=md.rcvbuf_bytes, kernel_timestamps=md.kernel_timestamps)
    market = MarketState(max_instruments=max_instruments)
    appl_ids: tuple[int, ...] = tuple(int(ch.channel_id) for ch in channels)
    for c in contracts:
        market.add_instrument(c.security_id, depth=c.depth, tick=c.tick, channel=c.appl_id,
                              price_exponent=c.price_exponent)
    if table is not None and not replay:
        market.add_instruments_from(table)
    seq_rows = None
    if channels and (not replay or _is_datagram_source(source)):
        from core.sequencing import Sequencer, SequencerConfig

        md = cfg.market_data
        scfg = SequencerConfig(gap_timeout_ns=int(md.gap_timeout_ms * 1e6),
                               stale_after_ns=md.stale_after_ms * 1_000_000,
                               recover_on_start=not replay)
        sequencer = Sequencer(len(channels), scfg, appl_ids=list(appl_ids))
        chan_of = {int(ch.channel_id): i for i, ch in enumerate(channels)}
        seq_rows = np.zeros(len(contracts), dtype=np.int64)
        for i, c in enumerate(contracts):
            # books recover from the MBP snapshot loop (the feed we join when recovering)
            seq_rows[i] = sequencer.add_instrument(c.security_id, chan_of.get(c.appl_id, 0),
                                                   mbo=False)
    inst_cfg = {ic.security_id: ic for ic in cfg.instruments}
    traded = [trading_instrument(cfg, c.security_id, c.tick, c.tick_value, c.price_exponent,
                                 inst_cfg.get(c.security_id)) for c in contracts]
    limits = risk_limits(cfg, [inst_cfg.get(c.security_id) for c in contracts])
    core = TradingCore(traded, limits, cl_ord_id_base=cl_ord_id_base)
    traded_rows = np.array([market.row(c.security_id) for c in contracts], dtype=np.int64)
    runner = None
    if cfg.model.enabled:
        from core.model import load_model

        model = load_model(cfg.model.path or None)
        # one slot per traded instrument, plus a scratch slot the idle loop keeps warm
        runner = model.runner(n_slots=len(contracts) + 1)
    gateway, sim = _gateway(cfg, mode, clock, contracts, environ)
    return Engine(cfg=cfg, mode=mode, clock=clock, source=source, market=market, core=core,
                  gateway=gateway, runner=runner, table=table,
                  symbols=[c.symbol for c in contracts], traded=[c.security_id for c in contracts],
                  traded_rows=traded_rows, sequencer=sequencer, seq_rows=seq_rows,
                  appl_ids=appl_ids, sim=sim, channels=channels, replay=replay, notes=notes)


def resume_order_session(gateway: Any, uuid: int, next_recv: int, next_send: int) -> bool:
    """Prime an iLink 3 gateway with the session of the previous run (from the journal):
    it re-Establishes that UUID instead of negotiating a new one, and the exchange
    retransmits the execution reports the dead process never read (fills after a crash,
    before cancel-on-disconnect acted). If the exchange no longer knows the UUID, the
    gateway negotiates a new one on its own. False if the gateway has no such session."""
    session = getattr(gateway, "session", None)
    if session is None or not hasattr(session, "negotiated") or not uuid:
        return False
    import numpy as np

    from core.fixp import SEQ_UUID

    session.uuid = int(uuid)
    session.seq[SEQ_UUID] = np.int64(np.uint64(uuid).view(np.int64))
    session.next_recv = int(next_recv)
    session.next_send = int(next_send)
    session.negotiated = True
    return True


def precompile() -> None:
    """Compile (or load from numba's cache) every kernel of the daemon's tick and of the
    iLink 3 gateway, on throw-away state. ``nanoarb demo`` runs it while the venue
    process compiles its own, so a cold first run uses both cores."""
    import numpy as np

    from core.sbe import ilink3
    from daemon.config import demo_config
    from daemon.hotloop import HotLoop, LoopParts, Shared
    from daemon.metrics import daemon_spec
    from daemon.sources import ReplayClock

    ilink3.warm_up()
    eng = build(demo_config(), mode="replay", data=["synthetic:50"], clock=ReplayClock())
    spec = daemon_spec(eng.symbols, log_capacity=16, journal_capacity=16)
    block = {key: np.zeros(shape, dtype=dt) for key, dt, shape in spec.layout()}
    loop = HotLoop(LoopParts(clock=eng.clock, source=eng.source, market=eng.market,
                             core=eng.core, gateway=eng.gateway, traded_rows=eng.traded_rows,
                             runner=eng.runner, sim=eng.sim, replay=True), Shared(block, spec))
    loop.warm_up()
    eng.close()


def _is_datagram_source(source: Any) -> bool:
    from adapters.md_sources import PcapSource

    return isinstance(source, PcapSource)


def _gateway(cfg: Config, mode: str, clock: Any, contracts: list[Contract],
             environ: Any) -> tuple[Any, Any]:
    g = cfg.gateway
    if mode in ("live", "demo") and g.kind == "ilink3":
        from adapters.ilink3_gateway import (
            Ilink3Gateway,
            Ilink3GatewayConfig,
            credentials_from_env,
        )

        try:
            creds = credentials_from_env(environ, g.access_key_env, g.secret_key_env)
        except KeyError:
            raise ConfigError("gateway.access_key_env",
                              f"set {g.access_key_env} and {g.secret_key_env} in the "
                              "environment (credentials never live in the config)") from None
        if not 0 < g.port < 65536:
            raise ConfigError("gateway.port", "must be in 1..65535 for the ilink3 gateway")
        lo, hi = g.reconnect_backoff_ms
        gw = Ilink3Gateway(Ilink3GatewayConfig(
            session_id=g.session_id, firm_id=g.firm_id, host=g.host, port=g.port,
            keepalive_ms=g.keepalive_ms, backoff_first_ms=lo, backoff_cap_ms=hi,
            cancel_on_disconnect=g.cancel_on_disconnect), creds, clock=clock)
        return gw, None
    from adapters.sim_gateway import LatencyModel, SimGateway, SimInstrument

    f = cfg.fees
    insts = [SimInstrument(security_id=c.security_id, tick=c.tick, mbo=c.mbo, depth=c.depth,
                           maker_fee=f.maker_per_contract, taker_fee=f.taker_per_contract,
                           fee_per_contract=f.clearing_per_contract) for c in contracts]
    if g.latency_file:
        lat = LatencyModel.from_file(g.latency_file, seed=7)
    elif g.latency_jitter_ns:
        lat = LatencyModel.jitter(g.latency_ns, g.latency_jitter_ns, seed=7)
    else:
        lat = LatencyModel.constant(g.latency_ns)
    sim = SimGateway(clock, insts, entry_latency=lat, response_latency=lat)
    return sim, sim


def _replay_source(cfg: Config, data: Sequence[str], base_dir: str | Path | None
                   ) -> tuple[Any, Any, list[Any], list[Contract]]:
    """The replay source for DATA (captures, DBN files or synthetic:N) and its contracts."""
    from core.synthetic import parse_spec

    if not data:
        raise ConfigError("", "replay needs DATA: capture files, DBN files or synthetic:N")
    n_syn = parse_spec(data[0]) if len(data) == 1 else None
    if n_syn is not None:
        from daemon.sources import SyntheticSource

        src: Any = SyntheticSource(n_syn)
        contracts = []
        ins: Any
        for ins in src.instruments:
            sid = int(ins.security_id)
            ic = next((c for c in cfg.instruments if c.security_id == sid), None)
            if cfg.instruments and ic is None:
                continue
            tick = int(ins.tick)
            # Globex PRICE9 units; ES: 0.25 pt = 25 units = 12.50 USD, CL: 0.01 = 10 USD
            tv = ic.tick_value if ic and ic.tick_value else (12.5 if sid == 5602 else 10.0)
            contracts.append(Contract(sid, str(ins.symbol), tick, tv, -9, int(ins.depth)))
        return src, None, [], contracts
    paths = [Path(d) for d in data]
    for i, p in enumerate(paths):
        if not p.exists():
            raise ConfigError("", f"replay data {i}: {p} does not exist")
    if all(p.name.endswith((".dbn", ".dbn.zst")) for p in paths):
        from adapters.dbn_source import DbnSource
        from core.sbe.instruments import InstrumentTable

        src = DbnSource(paths)
        src.open()
        table = InstrumentTable()
        for r in src.instruments:
            i = len(table.index)
            table.rows[i] = r
            table.index[int(r["security_id"])] = i
        return src, table, [], contracts_from_table(cfg, table)
    from adapters.md_sources import PcapSource

    channels = channels_of(cfg, base_dir)
    src = PcapSource(paths, channels)
    src.open()
    table = definitions_in_capture(src)
    return src, table, channels or _default_channels(), contracts_from_table(cfg, table)


def definitions_in_capture(src: Any) -> Any:
    """The instrument table from the security definitions in an opened PcapSource: the
    datagrams routed to a definition feed (every datagram when no channel is
    configured). Read once before the replay, as the live daemon reads the definition
    loop before it trades."""
    from core.sbe.instruments import InstrumentTable
    from core.sbe.mdp3 import Mdp3Decoder
    from core.types import ROLE_DEFINITION

    table = InstrumentTable()
    dec = Mdp3Decoder()
    routed = bool(src.routes)
    for i in range(len(src)):
        if routed and int(src.meta[i, 2]) != ROLE_DEFINITION:
            continue
        a, b = int(src.offsets[i]), int(src.offsets[i + 1])
        pkt = src.buf[a:b]
        table.update_from_packet(pkt, b - a, dec.decode(pkt, b - a))
    return table


def _default_channels() -> list[Any]:
    from adapters.cme_config import ChannelConfig, Endpoint

    return [ChannelConfig(channel_id=0, endpoints=(
        Endpoint(role="incremental", feed="A", ip="0.0.0.0", port=1),))]


__all__ = ["Contract", "Engine", "build", "channels_of", "contracts_from_table",
           "definitions_in_capture"]
