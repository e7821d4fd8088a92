"""The exchange simulator process: matching engines, MDP 3.0 out, iLink 3 in.

``Exchange`` is the socket-free core: one ``core.matching.MatchingEngine`` for
every instrument of the config, the incremental publisher, the background flow
and the order handler. Every command it runs is one market event: the engine's
MD records are encoded (pending packets) and its execution records are routed
to the flow (its own orders), to the iLink order handler (session orders: the
reports), or to the operator log (orders placed through the control endpoint).

``Venue`` is the process around it, with an explicit lifecycle::

    STARTING --start()--> RUNNING --request_stop() / SIGTERM / SIGINT--> STOPPING --> STOPPED

``start()`` compiles every kernel, publishes SecurityStatus (ReadyToTrade) and the
opening book, sends the first definition and snapshot loops, then opens the
iLink 3 acceptor and the control endpoint. ``step()`` is one loop iteration:
acceptor (orders in, reports out), delayed orders, background arrivals due,
flush of the incremental packets to feeds A and B, scheduled faults, snapshot /
definition / heartbeat timers, control requests. ``run()`` repeats it, spinning
(``loop = "busy"``) or sleeping in ``select`` on the acceptor's and control
sockets until the next timer (``loop = "wait"``, woken at once by an order).
``stop()`` closes the sessions, flushes, writes the latency record and closes
every socket.

Owners in the engine: 0 the background flow, 1 the operator, 2.. one per firm.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Mapping
from enum import IntEnum
from typing import Any

import numpy as np

from adapters.clock import Clock, MonotonicClock
from adapters.ilink3_acceptor import Ilink3Acceptor
from adapters.venue.config import VenueConfig, asset, security_group
from adapters.venue.control import ControlEndpoint
from adapters.venue.faults import FaultSpec, FeedFaults, parse_fault
from adapters.venue.flow import BackgroundFlow, FlowInstrument
from adapters.venue.latency import LatencyRecord, SendTimes
from adapters.venue.orders import InstrumentRef, SessionKey, VenueOrderHandler
from adapters.venue.publisher import (
    DEFINITION,
    FEED_A,
    FEED_B,
    SNAPSHOT,
    DefinitionLoop,
    IncrementalPublisher,
    InstrumentInfo,
    SnapshotLoop,
    Transport,
    UdpTransport,
)
from core import fixp
from core.matching import MatchingEngine
from core.types import (
    MATCH_MD,
    MCF_IFM,
    MCMD_CANCEL,
    MCMD_MODIFY,
    MCMD_SUBMIT,
    MD_NEW,
    MD_NO_ORDER_ACTION,
    MMD_BOOK,
    MTIF_DAY,
    MTIF_FOK,
    MTIF_GTC,
    MTIF_IOC,
    SIDE_BUY,
    SIDE_SELL,
    TS_READY_TO_TRADE,
    TS_TRADING_HALT,
)

__all__ = ["FLOW_OWNER", "MANUAL_OWNER", "Exchange", "Venue", "VenueState",
           "instrument_infos"]

FLOW_OWNER = 0
MANUAL_OWNER = 1
FIRST_SESSION_OWNER = 2
MANUAL_ID_BIT = 1 << 61  # operator orders; session orders count up from 1
_TIF_NAMES = {"day": MTIF_DAY, "gtc": MTIF_GTC, "ioc": MTIF_IOC, "fak": MTIF_IOC,
              "fok": MTIF_FOK}


class VenueState(IntEnum):
    STARTING = 0
    RUNNING = 1
    STOPPING = 2
    STOPPED = 3


def instrument_infos(cfg: VenueConfig) -> list[InstrumentInfo]:
    out = []
    for ins in cfg.instruments:
        band = ins.band_ticks * ins.tick
        out.append(InstrumentInfo(
            security_id=ins.security_id, symbol=ins.symbol, group=security_group(ins),
            asset=asset(ins), tick=ins.tick, display_factor=round(ins.display_factor * 1e9),
            multiplier=round(ins.multiplier * 1e9), depth=ins.depth,
            band_low=ins.start_price - band, band_high=ins.start_price + band,
            reference_price=ins.start_price, maturity=ins.maturity,
            market_segment_id=ins.market_segment_id, max_trade_vol=ins.max_trade_vol))
    return out


class Exchange:
    """Matching + publishing + routing, no sockets (see the module docstring)."""

    def __init__(self, cfg: VenueConfig, clock: Clock, transport: Transport, *,
                 send_times: SendTimes | None = None, faults: FeedFaults | None = None,
                 exec_capacity: int = 1 << 14, md_capacity: int = 1 << 14) -> None:
        self.cfg = cfg
        self.clock = clock
        self.infos = instrument_infos(cfg)
        n = len(self.infos)
        self.row_of = {info.security_id: k for k, info in enumerate(self.infos)}
        self.engine = MatchingEngine(
            n, cfg.venue.max_orders, [i.tick for i in self.infos],
            [i.band_low for i in self.infos], [i.band_high for i in self.infos],
            mbp_depth=[i.depth for i in self.infos], exec_capacity=exec_capacity,
            md_capacity=md_capacity)
        md = cfg.market_data
        self.publisher = IncrementalPublisher(
            self.infos, transport, clock, channel_id=md.channel_id, version=md.schema_version,
            mbo=md.mbo, max_packet=md.max_packet_bytes,
            heartbeat_ns=md.heartbeat_interval_ms * 1_000_000, send_times=send_times,
            faults=faults, buffer_bytes=max(1 << 22, md_capacity * 400))
        fc = cfg.flow
        now = clock.now_ns()
        self.flow = BackgroundFlow(
            [FlowInstrument(i.tick, i.reference_price, i.band_low, i.band_high,
                            c.volatility_ticks, c.weight)
             for i, c in zip(self.infos, cfg.instruments, strict=True)],
            seed=cfg.venue.seed, owner=FLOW_OWNER, start_ns=now,
            wall_offset_ns=clock.wall_ns() - now, base_rate_hz=fc.base_rate_hz,
            hawkes_alpha=fc.hawkes_alpha, hawkes_beta=fc.hawkes_beta, add_prob=fc.add_prob,
            cancel_prob=fc.cancel_prob, spread_ticks=fc.spread_ticks, levels=fc.levels,
            level_decay=fc.level_decay, mean_qty=fc.mean_qty,
            mean_market_qty=fc.mean_market_qty, sweep_ticks=fc.sweep_ticks,
            target_orders=fc.target_orders)
        self.flow_enabled = fc.enabled
        self.halted = np.zeros(n, dtype=bool)
        self.handler: VenueOrderHandler | None = None
        self.manual_log: list[dict[str, int]] = []
        self._manual_id = 0

    # -- the Engine protocol of the order handler -----------------------------------
    def command(self, op: int, row: int, order_id: int, side: int = 0, price: int = 0,
                qty: int = 0, tif: int = MTIF_DAY, owner: int = 0, smp_id: int = 0,
                smp_instr: int = 0, flags: int = 0) -> None:
        """Run one command (one market event) and route everything it produced."""
        eng = self.engine
        t = self.clock.wall_ns()
        for _ in range(64):  # a mass command may need the outputs drained several times
            if op == MCMD_SUBMIT:
                done = eng.submit(row, order_id, side, price, qty, tif, owner=owner,
                                  smp_id=smp_id, smp_instr=smp_instr, transact_time=t)
            elif op == MCMD_CANCEL:
                done = eng.cancel(order_id, owner=owner, transact_time=t)
            elif op == MCMD_MODIFY:
                done = eng.modify(order_id, price, qty, owner=owner,
                                  ifm=bool(flags & MCF_IFM), transact_time=t)
            else:
                raise ValueError(f"unsupported op {op}")
            self._drain()
            if done:
                return

    def trade_summary_id(self, trade_id: int) -> int:
        return self.publisher.encoder.trade_summary_id(trade_id)

    def is_halted(self, row: int) -> bool:
        return bool(self.halted[row])

    # -- events -----------------------------------------------------------------------
    def _drain(self) -> None:
        eng = self.engine
        mds, execs = eng.mds, eng.execs
        self.publisher.publish(mds)  # first: the fills quote the MDTradeEntryID it assigns
        if len(execs):
            self.flow.on_execs(execs)
            if self.handler is not None:
                self.handler.on_execs(execs)
            if self._manual_id:  # operator orders exist: keep their records
                for e in execs[execs["owner"] == MANUAL_OWNER]:
                    self.manual_log.append({k: int(e[k]) for k in (
                        "order_id", "exec_type", "reason", "last_px", "last_qty",
                        "leaves_qty", "cum_qty")})
                if len(self.manual_log) > 1000:
                    del self.manual_log[:-1000]
        eng.clear_outputs()

    def run_batch(self, cmds: np.ndarray) -> int:
        i = 0
        while i < len(cmds):
            i = self.engine.process(cmds, i)
            self._drain()
        if self.handler is not None:
            self.handler.flush_reports()
        return len(cmds)

    def flow_step(self, now_ns: int) -> int:
        """Background arrivals up to ``now_ns``; returns commands run."""
        if not self.flow_enabled:
            return 0
        n = 0
        while True:
            cmds = self.flow.due(now_ns)
            if len(cmds) == 0:
                return n
            n += self.run_batch(cmds)

    def set_flow(self, enabled: bool, now_ns: int) -> None:
        if enabled and not self.flow_enabled:
            self.flow.skip_to(now_ns)
        self.flow_enabled = enabled

    def seed_book(self, now_ns: int) -> int:
        fc = self.cfg.flow
        return self.run_batch(self.flow.seed_book(now_ns, fc.initial_levels,
                                                  fc.initial_orders_per_level))

    def manual_order(self, security_id: int, side: int, price: int, qty: int,
                     tif: int = MTIF_DAY) -> int:
        """An operator's order (owner 1): a deterministic counterparty for tests and demos."""
        row = self.row_of[security_id]
        self._manual_id += 1
        oid = MANUAL_ID_BIT | self._manual_id
        self.command(MCMD_SUBMIT, row, oid, side, price, qty, tif, MANUAL_OWNER)
        if self.handler is not None:
            self.handler.flush_reports()
        return oid

    def manual_cancel_all(self) -> None:
        for row in range(len(self.infos)):
            done = False
            while not done:
                done = self.engine.mass_cancel(MANUAL_OWNER, row,
                                               transact_time=self.clock.wall_ns())
                self._drain()

    def set_halted(self, row: int, halted: bool) -> None:
        self.halted[row] = halted
        self.publisher.security_status(row, TS_TRADING_HALT if halted else TS_READY_TO_TRADE)

    def channel_reset(self) -> int:
        """ChannelReset4, then every book again as New entries (MBP in 46, orders in 47)."""
        self.publisher.flush()
        self.publisher.channel_reset()
        rows = self.book_rows()
        self.publisher.publish(rows)
        return len(rows)

    def book_rows(self) -> np.ndarray:
        """MATCH_MD rows that rebuild every book from empty (one event per instrument)."""
        out: list[tuple[Any, ...]] = []
        t = self.clock.wall_ns()
        for row, info in enumerate(self.infos):
            for side in (SIDE_BUY, SIDE_SELL):
                for k, (price, queue) in enumerate(self.engine.book(row, side)):
                    if k < info.depth:  # the MBP level
                        out.append((row, side, price, sum(q for _o, q, _p in queue),
                                    len(queue), k + 1, MD_NO_ORDER_ACTION, 0, 0, 0))
                    for oid, q, prio in queue:  # its orders (no MBP entry: 47)
                        out.append((row, side, price, 0, 0, 0, MD_NEW, oid, prio, q))
        rows = np.zeros(len(out), dtype=MATCH_MD)
        for i, (row, side, price, size, n_orders, level, oact, oid, prio, q) in enumerate(out):
            r = rows[i]
            r["kind"] = MMD_BOOK
            r["instrument"] = row
            r["cmd_index"] = row
            r["transact_time"] = t
            r["side"] = side
            r["price"] = price
            r["size"] = size
            r["num_orders"] = n_orders
            r["price_level"] = level
            r["action"] = MD_NEW
            r["order_action"] = oact
            r["order_id"] = oid
            r["order_priority"] = prio
            r["display_qty"] = q
        return rows

    def book(self, security_id: int, depth: int = 10) -> dict[str, Any]:
        row = self.row_of[security_id]
        bids, asks = self.engine.depth(row, depth)
        return {"security_id": security_id,
                "bids": [[int(p), int(q), int(o)] for p, q, o in bids],
                "asks": [[int(p), int(q), int(o)] for p, q, o in asks],
                "rpt_seq": self.publisher.encoder.rpt_seq(row), "seq": self.publisher.seq}


class Venue:
    """The ``nanoarb venue`` process (see the module docstring)."""

    def __init__(self, cfg: VenueConfig, *, clock: Clock | None = None,
                 transport: Transport | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or MonotonicClock()
        self.environ = os.environ if environ is None else environ
        self.state = VenueState.STARTING
        md = cfg.market_data
        if transport is None:
            addr = {FEED_A: md.incremental_a, FEED_B: md.incremental_b,
                    SNAPSHOT: md.snapshot, DEFINITION: md.definition}
            transport = UdpTransport({k: (a.host, a.port) for k, a in addr.items()},
                                     interface=md.interface, ttl=md.ttl)
        self.transport = transport
        self.send_times = SendTimes(cfg.venue.md_ring)
        self.latency = LatencyRecord(self.send_times, cfg.venue.latency_capacity)
        self.faults = FeedFaults()
        self.exchange = Exchange(cfg, self.clock, transport, send_times=self.send_times,
                                 faults=self.faults)
        self.publisher = self.exchange.publisher
        self.sessions: dict[str, SessionKey] = {
            s.session_id: (s.session_id, s.firm_id) for s in cfg.order_entry.sessions}
        refs = [InstrumentRef(k, i.security_id, i.group, i.market_segment_id)
                for k, i in enumerate(self.exchange.infos)]
        self.handler = VenueOrderHandler(self.exchange, refs, list(self.sessions.values()),
                                         self.clock, self.latency,
                                         first_owner=FIRST_SESSION_OWNER)
        self.exchange.handler = self.handler
        self.snapshots = SnapshotLoop(self.publisher, self.exchange.engine.depth, transport,
                                      self.clock, md.snapshot_interval_ms * 1_000_000)
        self.definitions = DefinitionLoop(self.publisher, transport, self.clock,
                                          md.definition_interval_ms * 1_000_000)
        self.acceptor: Ilink3Acceptor | None = None
        self.control_endpoint: ControlEndpoint | None = None
        self._schedule = sorted(cfg.faults, key=lambda f: f.at_ms)
        self._next_fault = 0
        self.t_running = 0
        self._stop_requested = False
        self.iterations = 0
        self.faults_applied: list[FaultSpec] = []

    def __repr__(self) -> str:
        return (f"Venue(state={self.state.name}, instruments={len(self.exchange.infos)}, "
                f"seq={self.publisher.seq})")

    # -- lifecycle ------------------------------------------------------------------
    def _keystore(self) -> fixp.KeyStore:
        keys = fixp.KeyStore()
        for s in self.cfg.order_entry.sessions:
            key_id = self.environ.get(s.access_key_env, "")
            secret = self.environ.get(s.secret_key_env, "")
            if not key_id or not secret:
                raise RuntimeError(f"session {s.session_id}: set {s.access_key_env} and "
                                   f"{s.secret_key_env} in the environment")
            keys.add(fixp.Credentials(key_id, secret), s.session_id, s.firm_id,
                     s.cancel_on_disconnect)
        return keys

    def start(self) -> dict[str, Any]:
        """Compile, open the market, open the sockets; returns the ready info."""
        if self.state != VenueState.STARTING:
            raise RuntimeError(f"start() in state {self.state.name}")
        from adapters.venue import encoder, flow
        from core import matching

        t0 = time.perf_counter()
        matching.warm_up()
        encoder.warm_up()
        flow.warm_up()
        keys = self._keystore() if self.cfg.order_entry.enabled else None
        now = self.clock.now_ns()
        self.exchange.flow.rebase(now)  # the compile time above is not market time
        for row in range(len(self.exchange.infos)):
            self.exchange.set_halted(row, False)  # SecurityStatus: ReadyToTrade
        if self.exchange.flow_enabled:
            self.exchange.seed_book(now)
        self.publisher.flush()
        self.definitions.on_timer(now)
        self.snapshots.on_timer(now)
        info: dict[str, Any] = {"event": "ready", "pid": os.getpid(),
                                "seq": self.publisher.seq,
                                "startup_s": round(time.perf_counter() - t0, 3)}
        oe = self.cfg.order_entry
        if keys is not None:
            self.acceptor = Ilink3Acceptor(keys, self.handler, clock=self.clock, host=oe.host,
                                           port=oe.port, check_timestamp=oe.check_timestamp,
                                           cod_on_terminate=oe.cod_on_terminate)
            self.acceptor.start()
            self.handler.send_app = self.acceptor.send_app
            info["order_entry"] = list(self.acceptor.address)
        c = self.cfg.control
        if c.enabled:
            self.control_endpoint = ControlEndpoint(self.control, c.host, c.port)
            info["control"] = list(self.control_endpoint.address)
        self.t_running = self.clock.now_ns()
        self.state = VenueState.RUNNING
        return info

    def request_stop(self, *_args: Any) -> None:
        """Safe from a signal handler: the loop stops at its next iteration."""
        self._stop_requested = True

    def stop(self) -> dict[str, Any]:
        if self.state in (VenueState.STOPPING, VenueState.STOPPED):
            return self.summary()
        self.state = VenueState.STOPPING
        if self.acceptor is not None:
            self.acceptor.poll()
            self.acceptor.close()
        self.publisher.flush()
        path = self.cfg.venue.latency_file
        if path:
            self.latency.write(path)
        if self.control_endpoint is not None:
            self.control_endpoint.close()
        self.transport.close()
        self.state = VenueState.STOPPED
        return self.summary()

    # -- the loop ---------------------------------------------------------------------
    def step(self) -> int:
        """One loop iteration; returns the work done (messages, commands, requests)."""
        now = self.clock.now_ns()
        work = 0
        if self.acceptor is not None:
            work += self.acceptor.poll()
        work += self.handler.process_delayed(now)
        work += self.exchange.flow_step(now)
        self.publisher.flush()
        while (self._next_fault < len(self._schedule) and
               now >= self.t_running + self._schedule[self._next_fault].at_ms * 1_000_000):
            fc = self._schedule[self._next_fault]
            self._next_fault += 1
            self.apply_fault(FaultSpec(kind=fc.kind, feed=fc.feed, count=fc.count,
                                       delay_ms=fc.delay_ms, session=fc.session,
                                       security_id=fc.security_id))
            work += 1
        self.snapshots.on_timer(now)
        self.definitions.on_timer(now)
        self.publisher.on_timer(now)
        if self.control_endpoint is not None:
            work += self.control_endpoint.poll()
            self.publisher.flush()
        self.iterations += 1
        return work

    def next_deadline(self, now: int) -> int:
        """Market time of the next thing the venue must do by itself (no request)."""
        d = min(self.snapshots.next_ns, self.definitions.next_ns,
                self.publisher.last_send_ns + self.publisher.heartbeat_ns,
                self.handler.next_due_ns())
        if self.exchange.flow_enabled:
            d = min(d, self.exchange.flow.next_arrival_ns())
        if self._next_fault < len(self._schedule):
            d = min(d, self.t_running + self._schedule[self._next_fault].at_ms * 1_000_000)
        return d

    def _wait(self) -> None:
        now = self.clock.now_ns()
        timeout_ns = min(self.next_deadline(now) - now, self.cfg.venue.max_wait_us * 1000)
        if timeout_ns <= 0:
            return
        fds: list[Any] = []
        if self.control_endpoint is not None:
            fds.append(self.control_endpoint.sock)
        acc = self.acceptor
        if acc is not None:
            # the acceptor has no public fd list: its listening socket and connections
            listen = getattr(acc, "_listen", None)
            if listen is not None:
                fds.append(listen)
            for c in getattr(acc, "_conns", ()):
                if not c.closed:
                    fds.append(c.sock)
        if fds:
            select.select(fds, [], [], timeout_ns / 1e9)
        else:
            time.sleep(timeout_ns / 1e9)

    def run(self, seconds: float | None = None) -> dict[str, Any]:
        """Loop until ``request_stop`` (or for ``seconds``), then ``stop``."""
        if self.state == VenueState.STARTING:
            self.start()
        end = None if seconds is None else self.clock.now_ns() + int(seconds * 1e9)
        busy = self.cfg.venue.loop == "busy"
        try:
            while not self._stop_requested:
                work = self.step()
                if end is not None and self.clock.now_ns() >= end:
                    break
                if not busy and work == 0:
                    self._wait()
        finally:
            summary = self.stop()
        return summary

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    # -- faults and control -------------------------------------------------------------
    def _session(self, name: str) -> SessionKey | None:
        if not name:
            return None
        if name not in self.sessions:
            raise ValueError(f"unknown session {name!r}")
        return self.sessions[name]

    def apply_fault(self, spec: FaultSpec) -> None:
        k = spec.kind
        if k in ("drop", "duplicate", "reorder", "gap"):
            self.publisher.flush()  # the fault hits the packets that follow it
            self.faults.arm(spec)
        elif k == "channel_reset":
            self.exchange.channel_reset()
            self.publisher.flush()
        elif k == "disconnect":
            if self.acceptor is not None:
                self.acceptor.disconnect(self._session(spec.session))
                self.publisher.flush()
        elif k == "reject":
            self.handler.reject_next(spec.count, self._session(spec.session))
        elif k == "delay":
            self.handler.delay_next(spec.count, spec.delay_ms * 1_000_000,
                                    self._session(spec.session))
        elif k == "drop_report":
            if self.acceptor is not None:
                self.acceptor.drop_outbound(spec.count, self._session(spec.session))
        elif k == "delay_reports":
            if self.acceptor is not None:
                self.acceptor.delay_outbound(spec.delay_ms * 1_000_000,
                                             self._session(spec.session))
        elif k in ("halt", "resume"):
            rows = (range(len(self.exchange.infos)) if not spec.security_id
                    else [self.exchange.row_of[spec.security_id]])
            for row in rows:
                self.exchange.set_halted(row, k == "halt")
            self.publisher.flush()
        else:
            raise ValueError(f"unknown fault {k!r}")
        self.faults_applied.append(spec)

    def summary(self) -> dict[str, Any]:
        ex = self.exchange
        acc = self.acceptor
        return {
            "state": self.state.name, "seq": self.publisher.seq,
            "iterations": self.iterations,
            "publisher": dict(self.publisher.stats, **self.publisher.encoder.counters()),
            "engine": {"resting": ex.engine.n_resting, "trades": ex.engine.n_trades,
                       "volume": ex.engine.volume, "rejects": ex.engine.reject_counts()},
            "flow": dict(ex.flow.counters(), enabled=ex.flow_enabled),
            "orders": dict(self.handler.stats, live=len(self.handler.orders),
                           cod_cancelled=len(self.handler.cod_cancelled)),
            "sessions": [list(s) for s in acc.sessions()] if acc is not None else [],
            "acceptor": ({k: v for k, v in vars(acc.stats).items()}
                         if acc is not None else {}),
            "faults": self.faults.pending(), "fault_stats": dict(self.faults.stats),
            "latency": self.latency.summary(),
            "snapshot_cycles": self.snapshots.cycles,
            "definition_cycles": self.definitions.cycles,
        }

    def control(self, req: dict[str, Any]) -> dict[str, Any]:
        """One control request (see ``adapters.venue.control``)."""
        cmd = req.get("cmd")
        ex = self.exchange
        if cmd == "status":
            return {"ok": True, **self.summary()}
        if cmd == "book":
            self.publisher.flush()
            return {"ok": True, **ex.book(int(req["security_id"]), int(req.get("depth", 10)))}
        if cmd == "orders":
            return {"ok": True, "orders": self.handler.live_orders(
                self._session(str(req.get("session", ""))))}
        if cmd == "fault":
            spec = parse_fault(req)
            self.apply_fault(spec)
            return {"ok": True, "pending": self.faults.pending()}
        if cmd == "fault_log":
            dropped = self.acceptor.dropped_out_log if self.acceptor is not None else ()
            return {"ok": True, "log": [list(x) for x in self.faults.log],
                    "dropped_reports": [[s[0], seq, tid] for s, seq, tid in dropped]}
        if cmd == "positions":
            return {"ok": True, "positions": self.handler.positions(
                self._session(str(req.get("session", ""))))}
        if cmd == "latency":
            return {"ok": True, **self.latency.summary()}
        if cmd == "flow":
            ex.set_flow(bool(req.get("enabled", True)), self.clock.now_ns())
            return {"ok": True, "enabled": ex.flow_enabled}
        if cmd == "order":
            side = {"buy": SIDE_BUY, "sell": SIDE_SELL}[str(req["side"]).lower()]
            tif = _TIF_NAMES[str(req.get("tif", "day")).lower()]
            n_log = len(ex.manual_log)
            oid = ex.manual_order(int(req["security_id"]), side, int(req["price"]),
                                  int(req["qty"]), tif)
            self.publisher.flush()
            return {"ok": True, "order_id": oid, "execs": ex.manual_log[n_log:]}
        if cmd == "cancel_manual":
            ex.manual_cancel_all()
            self.publisher.flush()
            return {"ok": True}
        if cmd == "stop":
            self.request_stop()
            return {"ok": True}
        raise ValueError(f"unknown cmd {cmd!r}")
