"""The venue as a separate process on 127.0.0.1 (real sockets): MDP 3.0 out, iLink 3 in.

One ``nanoarb venue`` process serves the module. The test client is the project's
own code: the generic decoder and ``MarketState`` on the UDP datagrams, the
instrument table on the definition loop, and the iLink 3 gateway (the daemon's
client) for orders. The last test stops the venue with SIGTERM and reads its
latency record.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adapters.ilink3_gateway import GatewayState, Ilink3Gateway, Ilink3GatewayConfig
from adapters.venue.control import request
from adapters.venue.latency import read_latency_file
from core import fixp
from core.market import MarketState
from core.sbe.codec import decode_packet
from core.sbe.instruments import InstrumentTable
from core.types import (
    ACT_CANCEL,
    ACT_NEW,
    ER_CANCEL,
    ER_FILL,
    ER_NEW,
    ER_REJECT,
    EXEC_REPORT,
    ORDER_ACTION,
    SIDE_BUY,
    SIDE_SELL,
    TIF_DAY,
    TIF_IOC,
)

REPO = Path(__file__).resolve().parents[1]
ES, CL = 5602, 2871
KEY_ENV = {"VENUE_TEST_KEY": "venue-test-key", "VENUE_TEST_SECRET": "c2VjcmV0LWtleS0xMjM0NTY3OA"}

CONFIG = """
[venue]
seed = 21
loop = "wait"
max_wait_us = 500
latency_file = "{latency}"
[market_data]
channel_id = 310
heartbeat_interval_ms = 200
snapshot_interval_ms = 200
definition_interval_ms = 400
incremental_a = {{ host = "127.0.0.1", port = {a} }}
incremental_b = {{ host = "127.0.0.1", port = {b} }}
snapshot = {{ host = "127.0.0.1", port = {snap} }}
definition = {{ host = "127.0.0.1", port = {defn} }}
[order_entry]
port = 0
[[order_entry.sessions]]
session_id = "TST"
firm_id = "FIRM1"
access_key_env = "VENUE_TEST_KEY"
secret_key_env = "VENUE_TEST_SECRET"
[control]
port = 0
[flow]
base_rate_hz = 120.0
[[instruments]]
security_id = 5602
symbol = "ESZ5"
weight = 2.0
[[instruments]]
security_id = 2871
symbol = "CLZ5"
tick = 1_000_000_000
start_price = 7_500_000_000_000
band_ticks = 2000
"""


class Client:
    """UDP receivers for the four feeds, the venue's control port, an order counter."""

    def __init__(self) -> None:
        self.socks: dict[str, socket.socket] = {}
        for name in ("A", "B", "snapshot", "definition"):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            self.socks[name] = s
        self.got: dict[str, list[bytes]] = {k: [] for k in self.socks}
        self._names = {s.fileno(): name for name, s in self.socks.items()}
        self._stop = False
        # a thread reads the feeds all the time: the kernel's default socket buffer
        # would overflow while the test itself is busy (compiling, decoding)
        self._rx = threading.Thread(target=self._receive, daemon=True)
        self._rx.start()
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready: dict[str, Any] = {}
        self.orders_sent = 0
        self.triggers: list[int] = []
        self.cl = 1000

    def port(self, name: str) -> int:
        return int(self.socks[name].getsockname()[1])

    def _receive(self) -> None:
        socks = list(self.socks.values())
        while not self._stop:
            ready, _, _ = select.select(socks, [], [], 0.05)
            for s in ready:
                name = self._names[s.fileno()]
                while True:
                    try:
                        self.got[name].append(s.recv(65536))
                    except BlockingIOError:
                        break

    def close(self) -> None:
        self._stop = True
        self._rx.join()
        for s in self.socks.values():
            s.close()

    def drain(self) -> None:
        """The receiving thread does the work; this only lets it run."""

    def seqs(self, feed: str) -> list[int]:
        return [int.from_bytes(p[:4], "little") for p in list(self.got[feed])]

    def control(self, **req: Any) -> dict[str, Any]:
        resp = request(self.ready["control"][1], req)
        assert resp["ok"], resp
        return resp

    def wait(self, cond: Callable[[], Any], timeout: float = 10.0,
             gw: Ilink3Gateway | None = None, reports: list[Any] | None = None) -> Any:
        end = time.monotonic() + timeout
        buf = np.zeros(256, dtype=EXEC_REPORT)
        while time.monotonic() < end:
            self.drain()
            if gw is not None:
                n = gw.poll(buf)
                if reports is not None:
                    reports.extend(buf[:n].copy())
            v = cond()
            if v:
                return v
            time.sleep(0.0005)
        raise AssertionError(f"timed out waiting for {cond}")

    def packets_upto(self, feed: str, seq: int) -> list[bytes]:
        """Each sequence up to ``seq`` once, in order (every one must have arrived)."""
        by_seq = {int.from_bytes(p[:4], "little"): p for p in list(self.got[feed])}
        missing = [s for s in range(1, seq + 1) if s not in by_seq]
        assert not missing, f"feed {feed} lost {missing[:5]}"
        return [by_seq[s] for s in range(1, seq + 1)]

    def gateway(self) -> Ilink3Gateway:
        creds = fixp.Credentials(KEY_ENV["VENUE_TEST_KEY"], KEY_ENV["VENUE_TEST_SECRET"])
        gw = Ilink3Gateway(Ilink3GatewayConfig(session_id="TST", firm_id="FIRM1",
                                               port=self.ready["order_entry"][1],
                                               keepalive_ms=5000), creds)
        gw.connect()
        self.wait(gw.is_connected, gw=gw)
        return gw

    def send(self, gw: Ilink3Gateway, action: int, side: int, price: int, qty: int,
             tif: int = TIF_DAY, security_id: int = ES, order_id: int = 0,
             cl_ord_id: int | None = None) -> int:
        a = np.zeros(1, dtype=ORDER_ACTION)
        if cl_ord_id is None:
            self.cl += 1
            cl_ord_id = self.cl
        seqs = self.seqs("A")
        trigger = max(seqs) if seqs else 0
        a[0]["action"] = action
        a[0]["cl_ord_id"] = cl_ord_id
        a[0]["order_id"] = order_id
        a[0]["price"] = price
        a[0]["qty"] = qty
        a[0]["security_id"] = security_id
        a[0]["side"] = side
        a[0]["tif"] = tif
        a[0]["trigger_seq"] = trigger
        assert gw.send(a, 1) == 1
        self.orders_sent += 1
        self.triggers.append(trigger)
        return cl_ord_id


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    tmp = tmp_path_factory.mktemp("venue")
    from core.sbe import ilink3

    ilink3.warm_up()  # compile the client's kernels before the venue starts publishing
    MarketState(max_instruments=1).on_packet(np.frombuffer(bytes(12), dtype=np.uint8), 12)
    c = Client()
    cfg = tmp / "venue.toml"
    cfg.write_text(CONFIG.format(latency=tmp / "latency.npy", a=c.port("A"), b=c.port("B"),
                                 snap=c.port("snapshot"), defn=c.port("definition")))
    env = dict(os.environ, **KEY_ENV)
    c.proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "venue", "--config",
                               str(cfg)], cwd=REPO, env=env, stdout=subprocess.PIPE)
    assert c.proc.stdout is not None
    r, _, _ = select.select([c.proc.stdout], [], [], 600)
    assert r, "venue not ready"
    c.ready = json.loads(c.proc.stdout.readline())
    print("venue ready:", c.ready)
    c.ready["latency_path"] = str(tmp / "latency.npy")
    assert c.ready["event"] == "ready"
    yield c
    if c.proc.poll() is None:
        c.proc.kill()
        c.proc.wait()
    c.close()


def _book(client: Client, sid: int) -> dict[str, Any]:
    return client.control(cmd="book", security_id=sid)


def _market_at(client: Client, seq: int) -> MarketState:
    ms = MarketState(max_instruments=4)
    ms.add_instrument(ES, 10, 25_000_000_000)
    ms.add_instrument(CL, 10, 1_000_000_000)
    for p in client.packets_upto("A", seq):
        a = np.frombuffer(p, dtype=np.uint8)
        ms.on_packet(a, len(a))
    return ms


def _wait_seq(venue: Client, feed: str, seq: int) -> None:
    venue.wait(lambda: max(venue.seqs(feed), default=0) >= seq)


def test_definitions_snapshots_and_incrementals_give_the_venue_book(venue: Client) -> None:
    venue.wait(lambda: len(venue.got["definition"]) >= 2 and len(venue.got["snapshot"]) >= 4,
               timeout=60)
    table = InstrumentTable()
    for p in venue.got["definition"]:
        _h, msgs = decode_packet(p)
        for m in msgs:
            table.update(m)
    es = table.get(ES)
    assert es is not None and es["min_price_increment"] == 25_000_000_000
    assert es["outright_depth"] == 10 and es["mbo"] == 1 and es["symbol"] == b"ESZ5"
    for sid in (ES, CL):
        book = _book(venue, sid)
        seq = int(book["seq"])
        _wait_seq(venue, "A", seq)
        ms = _market_at(venue, seq)
        assert [list(x) for x in ms.levels_of(sid, "bid") if x] == book["bids"]
        assert [list(x) for x in ms.levels_of(sid, "ask") if x] == book["asks"]
        assert ms.rpt_seq(sid) == book["rpt_seq"]
        assert ms.counter_dict()["rpt_gaps"] == 0
    # feeds A and B carry the same packets
    upto = min(max(venue.seqs("A")), max(venue.seqs("B")))
    assert venue.packets_upto("A", upto) == venue.packets_upto("B", upto)
    # a snapshot describes the book as of its LastMsgSeqNumProcessed and RptSeq
    venue.wait(lambda: len(venue.got["snapshot"]) >= 6)
    snap = None
    for p in reversed(venue.got["snapshot"]):
        (m,) = decode_packet(p)[1]
        if m["fields"]["SecurityID"] == ES:
            snap = m
            break
    assert snap is not None and snap["fields"]["TotNumReports"] == 2
    last = snap["fields"]["LastMsgSeqNumProcessed"]
    venue.wait(lambda: max(venue.seqs("A")) >= last)
    ms = _market_at(venue, last)
    entries = snap["groups"]["NoMDEntries"]
    bids = [(e["MDEntryPx"], e["MDEntrySize"], e["NumberOfOrders"]) for e in entries
            if e["MDEntryType"] == "0"]
    asks = [(e["MDEntryPx"], e["MDEntrySize"], e["NumberOfOrders"]) for e in entries
            if e["MDEntryType"] == "1"]
    assert bids == [x for x in ms.levels_of(ES, "bid") if x]
    assert asks == [x for x in ms.levels_of(ES, "ask") if x]
    assert snap["fields"]["RptSeq"] == ms.rpt_seq(ES)


def _inside_spread(venue: Client) -> tuple[int, int]:
    """Flow paused; widen the ES spread to >= 2 ticks; return (best bid, best ask)."""
    tick = 25_000_000_000
    while True:
        book = _book(venue, ES)
        bid, ask = book["bids"][0], book["asks"][0]
        if ask[0] - bid[0] >= 2 * tick:
            return bid[0], ask[0]
        venue.control(cmd="order", security_id=ES, side="sell", price=bid[0], qty=bid[1],
                      tif="ioc")


def _md_orders(venue: Client, since: int, template: int, group: str) -> list[dict[str, Any]]:
    out = []
    for p in list(venue.got["A"])[since:]:
        for m in decode_packet(p)[1]:
            if m["template_id"] == template:
                out.extend(m["groups"].get(group, []))
    return out


def test_orders_rest_appear_in_market_data_and_fill(venue: Client) -> None:
    venue.control(cmd="flow", enabled=False)
    try:
        gw = venue.gateway()
        reports: list[Any] = []
        _bid, ask = _inside_spread(venue)
        price = ask - 25_000_000_000
        mark = len(venue.got["A"])
        cl = venue.send(gw, ACT_NEW, SIDE_BUY, price, 3)
        # (a reconnect under load would add ER_STATUS rows: look for the ack itself)
        new = venue.wait(lambda: [r for r in reports if r["cl_ord_id"] == cl
                                  and r["kind"] == ER_NEW], gw=gw, reports=reports)
        oid = int(new[0]["order_id"])
        # it rests, alone at the best bid, in MBP and MBO
        venue.wait(lambda: any(o["OrderID"] == oid and o["OrderUpdateAction"] == 0
                               for o in _md_orders(venue, mark, 46, "NoOrderIDEntries")))
        assert _book(venue, ES)["bids"][0] == [price, 3, 1]
        # filled by other flow: a sell of 1 at our price
        venue.control(cmd="order", security_id=ES, side="sell", price=price, qty=1,
                      tif="ioc")
        fill = venue.wait(lambda: [r for r in reports if r["kind"] == ER_FILL], gw=gw,
                          reports=reports)[0]
        assert (int(fill["order_id"]), int(fill["price"]), int(fill["qty"])) == (oid, price, 1)
        assert (int(fill["leaves_qty"]), int(fill["cum_qty"]), int(fill["aggressor"])) == \
            (2, 1, 0)
        record = venue.control(cmd="orders", session="TST")["orders"]
        assert [(o["order_id"], o["cum_qty"], o["leaves_qty"]) for o in record] == [(oid, 1, 2)]
        # an aggressive order fills against the background offers
        mark = len(venue.got["A"])
        cl2 = venue.send(gw, ACT_NEW, SIDE_BUY, ask, 1, tif=TIF_IOC)
        f2 = venue.wait(lambda: [r for r in reports if r["cl_ord_id"] == cl2
                                 and r["kind"] == ER_FILL], gw=gw, reports=reports)[0]
        assert int(f2["price"]) == ask and int(f2["aggressor"]) == 1
        agg = int(f2["order_id"])
        trades = venue.wait(lambda: [e for e in _md_orders(venue, mark, 48,
                                                            "NoOrderIDEntries")
                                     if e["OrderID"] == agg])
        assert trades[0]["LastQty"] == 1
        # cancel the rest
        venue.send(gw, ACT_CANCEL, SIDE_BUY, price, 0, order_id=oid, cl_ord_id=cl)
        venue.wait(lambda: [r for r in reports if r["kind"] == ER_CANCEL], gw=gw,
                   reports=reports)
        assert venue.control(cmd="orders", session="TST")["orders"] == []
        gw.close()
        venue.wait(lambda: gw.state == GatewayState.STOPPED, gw=gw)
    finally:
        venue.control(cmd="flow", enabled=True)


def test_cancel_on_disconnect_at_the_venue(venue: Client) -> None:
    gw = venue.gateway()
    reports: list[Any] = []
    book = _book(venue, ES)
    low = book["bids"][-1][0] - 20 * 25_000_000_000
    cls = [venue.send(gw, ACT_NEW, SIDE_BUY, low - k * 25_000_000_000, 1) for k in range(3)]
    venue.wait(lambda: len([r for r in reports if r["kind"] == ER_NEW]) == 3, gw=gw,
               reports=reports)
    ids = {int(r["order_id"]) for r in reports if r["kind"] == ER_NEW}
    assert len(venue.control(cmd="orders", session="TST")["orders"]) == 3
    mark = len(venue.got["A"])
    venue.control(cmd="fault", kind="disconnect", session="TST")
    assert venue.control(cmd="orders", session="TST")["orders"] == []
    # the cancels are in the market data (MBO deletes of our orders: 47 beyond the MBP
    # depth, the order-ID group of 46 within it)
    def deleted() -> set[int]:
        return ({o["OrderID"] for o in _md_orders(venue, mark, 47, "NoMDEntries")
                 if o["MDUpdateAction"] == 2} |
                {o["OrderID"] for o in _md_orders(venue, mark, 46, "NoOrderIDEntries")
                 if o["OrderUpdateAction"] == 2})
    venue.wait(lambda: ids <= deleted())
    # the client reconnects (same UUID) and recovers the cancels the venue sent meanwhile
    venue.wait(lambda: {int(r["order_id"]) for r in reports if r["kind"] == ER_CANCEL} >= ids,
               timeout=15, gw=gw, reports=reports)
    assert {int(r["cl_ord_id"]) for r in reports if r["kind"] == ER_CANCEL} == set(cls)
    venue.wait(gw.is_connected, gw=gw, reports=reports)  # reconciled: nothing left
    gw.stop()  # abrupt: the venue sees an involuntary disconnect with nothing resting
    venue.wait(lambda: venue.control(cmd="status")["sessions"] == [])


def _wait_fault_hits(venue: Client, kind: str, n: int) -> list[list[Any]]:
    def hits() -> list[list[Any]]:
        return [x for x in venue.control(cmd="fault_log")["log"] if x[2] == kind]
    return venue.wait(lambda: len(hits()) >= n and hits())


def test_feed_faults_are_visible_on_the_wire(venue: Client) -> None:
    venue.control(cmd="fault", kind="drop", feed="A", count=2)
    dropped = [x[0] for x in _wait_fault_hits(venue, "drop", 2)]
    venue.wait(lambda: max(venue.seqs("B")) > max(dropped) + 1
               and max(venue.seqs("A")) > max(dropped) + 1)
    for s in dropped:
        assert s not in venue.seqs("A") and s in venue.seqs("B")

    venue.control(cmd="fault", kind="duplicate", feed="B", count=2)
    duped = [x[0] for x in _wait_fault_hits(venue, "duplicate", 2)]
    venue.wait(lambda: max(venue.seqs("B")) >= max(duped))
    for s in duped:
        assert venue.seqs("B").count(s) == 2 and venue.seqs("A").count(s) == 1

    venue.control(cmd="fault", kind="reorder", feed="A", count=1)
    (held,) = [x[0] for x in _wait_fault_hits(venue, "reorder", 1)]
    venue.wait(lambda: held in venue.seqs("A"))
    a = venue.seqs("A")
    assert a.index(held + 1) < a.index(held)

    venue.control(cmd="fault", kind="gap", count=2)
    gapped = [x[0] for x in _wait_fault_hits(venue, "gap", 2)]
    venue.wait(lambda: max(venue.seqs("A")) > max(gapped) and max(venue.seqs("B")) > max(gapped))
    for s in gapped:
        assert s not in venue.seqs("A") and s not in venue.seqs("B")

    mark = len(venue.got["A"])
    venue.control(cmd="fault", kind="channel_reset")
    book = _book(venue, ES)
    venue.wait(lambda: max(venue.seqs("A")) >= book["seq"])
    after = [m for p in venue.got["A"][mark:] for m in decode_packet(p)[1]]
    k = [m["template_id"] for m in after].index(4)
    rebuilt = [e for m in after[k + 1:] if m["template_id"] == 46
               for e in m["groups"]["NoMDEntries"] if e["SecurityID"] == ES]
    assert rebuilt[0]["RptSeq"] == 1 and rebuilt[0]["MDUpdateAction"] == 0

    mark = len(venue.got["A"])
    venue.control(cmd="fault", kind="halt", security_id=CL)
    venue.wait(lambda: any(m["template_id"] == 30 and m["fields"]["SecurityID"] == CL
                           and m["fields"]["SecurityTradingStatus"] == 2
                           for p in venue.got["A"][mark:] for m in decode_packet(p)[1]))
    venue.control(cmd="fault", kind="resume", security_id=CL)


def test_order_faults_reject_and_delay(venue: Client) -> None:
    gw = venue.gateway()
    reports: list[Any] = []
    low = _book(venue, ES)["bids"][-1][0] - 30 * 25_000_000_000
    venue.control(cmd="fault", kind="reject", count=1, session="TST")
    cl = venue.send(gw, ACT_NEW, SIDE_BUY, low, 1)
    r = venue.wait(lambda: [x for x in reports if x["cl_ord_id"] == cl], gw=gw,
                   reports=reports)
    assert r[0]["kind"] == ER_REJECT
    venue.control(cmd="fault", kind="delay", count=1, delay_ms=150, session="TST")
    t0 = time.monotonic()
    cl = venue.send(gw, ACT_NEW, SIDE_SELL, low + 400 * 25_000_000_000, 1)
    r = venue.wait(lambda: [x for x in reports if x["cl_ord_id"] == cl], gw=gw,
                   reports=reports)
    assert r[0]["kind"] == ER_NEW and time.monotonic() - t0 >= 0.14
    gw.mass_cancel()
    venue.wait(lambda: venue.control(cmd="orders", session="TST")["orders"] == [], gw=gw,
               reports=reports)
    gw.close()
    venue.wait(lambda: gw.state == GatewayState.STOPPED, gw=gw)


def test_sigterm_writes_one_latency_row_per_order(venue: Client) -> None:
    assert venue.proc is not None and venue.proc.stdout is not None
    live = venue.control(cmd="latency")
    assert live["orders"] == venue.orders_sent + 1  # + the gateway's mass action
    venue.proc.send_signal(signal.SIGTERM)
    assert venue.proc.wait(timeout=30) == 0
    summary = json.loads(venue.proc.stdout.readline())
    assert summary["event"] == "stopped" and summary["state"] == "STOPPED"
    rows = read_latency_file(venue.ready["latency_path"])
    orders = rows[rows["template_id"] != 529]
    assert len(orders) == venue.orders_sent
    assert list(orders["trigger_seq"]) == venue.triggers
    known = orders["trigger_send_ns"] >= 0
    assert known.sum() == len(orders)  # every trigger was a packet the venue sent
    assert (orders["wire_to_wire_ns"][known] > 0).all()
    assert (orders["wire_to_wire_ns"][known] ==
            orders["recv_ns"][known] - orders["trigger_send_ns"][known]).all()
