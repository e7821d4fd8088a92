"""The iLink 3 gateway against the exchange-side acceptor over real TCP on 127.0.0.1.

Both run in this process, polled in turn (no threads); time comes from one
ManualClock, so keepalives, backoff and delays are exact. The acceptor's order
handler is the deterministic ``StubOrderHandler`` (buys at or above ``ask`` fill
at ``ask``, sells at or below ``bid`` fill at ``bid``, the rest rests).
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from adapters.clock import ManualClock
from adapters.ilink3_acceptor import (
    EXEC_RESTATEMENT_COD,
    REJ_OTHER,
    Ilink3Acceptor,
    StubOrderHandler,
)
from adapters.ilink3_gateway import (
    REASON_GATEWAY_DOWN,
    REASON_NOT_APPLIED,
    REASON_NOT_AT_VENUE,
    GatewayState,
    Ilink3Gateway,
    Ilink3GatewayConfig,
    credentials_from_env,
)
from core import fixp
from core.sbe import ilink3 as il
from core.types import (
    ACT_CANCEL,
    ACT_MODIFY,
    ACT_NEW,
    ER_CANCEL,
    ER_CANCEL_REJECT,
    ER_FILL,
    ER_MODIFY,
    ER_NEW,
    ER_REJECT,
    ER_STATUS,
    EXEC_REPORT,
    MAX_REPORTS,
    ORDER_ACTION,
    OS_CANCELLED,
    OS_WORKING,
    SIDE_BUY,
    SIDE_SELL,
)

KEY_ID = "AKIDTESTSESSION00001"
SECRET = base64.urlsafe_b64encode(b"\x17secret-key-for-tests\x00\xff" * 2).decode().rstrip("=")
SESSION = ("ABC", "FIRM1")
MS = 1_000_000
SEC = 1234
BID, ASK = 4500_000000000, 4501_000000000
TICK = 250000000


@pytest.fixture(scope="module", autouse=True)
def _compiled() -> None:
    il.warm_up()


class Rig:
    def __init__(self, *, cod: bool = True, keepalive_ms: int = 1000,
                 secret: str = SECRET, **cfg: Any) -> None:
        self.clock = ManualClock(start_ns=10**12, wall_offset_ns=int(time.time() * 1e9))
        keys = fixp.KeyStore()
        keys.add(fixp.Credentials(KEY_ID, SECRET), *SESSION, cancel_on_disconnect=cod)
        self.handler = StubOrderHandler(bid=BID, ask=ASK, clock=self.clock)
        self.acc = Ilink3Acceptor(keys, self.handler, clock=self.clock)
        _host, port = self.acc.start()
        config = Ilink3GatewayConfig(
            session_id=SESSION[0], firm_id=SESSION[1], port=port, keepalive_ms=keepalive_ms,
            backoff_first_ms=50, backoff_cap_ms=400, **cfg,
        )
        self.gw = Ilink3Gateway(config, fixp.Credentials(KEY_ID, secret), clock=self.clock)
        self.reports = np.zeros(MAX_REPORTS, EXEC_REPORT)
        self.got: list[dict[str, Any]] = []
        self.next_cl = 1

    def close(self) -> None:
        self.gw.stop()
        self.acc.close()

    def poll(self, acceptor: bool = True) -> None:
        if acceptor:
            self.acc.poll()
        n = self.gw.poll(self.reports)
        for r in self.reports[:n]:
            self.got.append({k: r[k].item() for k in EXEC_REPORT.names})

    def pump(self, until: Callable[[], bool] = lambda: False, seconds: float = 5.0,
             acceptor: bool = True) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.poll(acceptor)
            if until():
                # a few more rounds so that whatever is in flight lands
                for _ in range(20):
                    self.poll(acceptor)
                return True
        return False

    def ready(self) -> None:
        self.gw.connect()
        assert self.pump(self.gw.is_connected), self.gw.drain_events()

    def advance(self, ms: float) -> None:
        self.clock.advance(int(ms * MS))

    def action(self, act: int, side: int = SIDE_BUY, price: int = BID, qty: int = 1,
               cl: int | None = None, order_id: int = 0, trigger: int = 0) -> np.void:
        a = np.zeros(1, ORDER_ACTION)[0]
        if cl is None:
            cl = (self.next_cl << 9) | (self.next_cl % 512)
            self.next_cl += 1
        a["cl_ord_id"], a["order_id"], a["price"], a["qty"] = cl, order_id, price, qty
        a["action"], a["side"], a["security_id"], a["trigger_seq"] = act, side, SEC, trigger
        return a

    def send(self, *rows: np.void) -> int:
        arr = np.zeros(len(rows), ORDER_ACTION)
        for i, r in enumerate(rows):
            arr[i] = r
        return self.gw.send(arr, len(rows))

    def kinds(self, cl: int) -> list[int]:
        return [r["kind"] for r in self.got if r["cl_ord_id"] == cl]


@pytest.fixture
def rig() -> Any:
    r = Rig()
    yield r
    r.close()


def _events(rig: Rig) -> list[str]:
    return [k for _t, k, _d in rig.gw.drain_events()]


# --------------------------------------------------------------------------
def test_negotiate_establish_reconcile_ready(rig: Rig) -> None:
    rig.ready()
    assert _events(rig) == ["connected", "established", "reconcile_started", "ready"]
    rec = rig.acc.records[SESSION]
    assert rec.uuid == rig.gw.session.uuid
    assert rig.acc.sessions() == [SESSION]
    # the only application message so far: the mass status of the reconciliation
    assert [t for _s, t, _m, _r in rig.handler.received] == [530]
    assert rig.got == []  # nothing working at the venue: nothing for the OMS


def test_orders_acked_filled_modified_cancelled(rig: Rig) -> None:
    rig.ready()
    rest = rig.action(ACT_NEW, SIDE_BUY, BID - TICK, 2, trigger=1001)
    take = rig.action(ACT_NEW, SIDE_BUY, ASK + TICK, 1, trigger=1002)
    hit = rig.action(ACT_NEW, SIDE_SELL, BID, 3, trigger=1003)
    assert rig.send(rest, take, hit) == 3
    assert rig.pump(lambda: len(rig.got) == 5)
    by = {r["cl_ord_id"]: r for r in rig.got if r["kind"] == ER_NEW}
    book = rig.handler.working(SESSION)
    (resting,) = book.values()
    assert resting.cl_ord_id == il.cl_ord_id_text(int(rest["cl_ord_id"]))
    r = by[int(rest["cl_ord_id"])]
    assert (r["order_id"], r["price"], r["qty"], r["leaves_qty"], r["side"], r["security_id"]) == (
        resting.order_id, BID - TICK, 2, 2, SIDE_BUY, SEC)
    fills = [r for r in rig.got if r["kind"] == ER_FILL]
    assert [(f["cl_ord_id"], f["price"], f["qty"], f["cum_qty"], f["leaves_qty"])
            for f in fills] == [(int(take["cl_ord_id"]), ASK, 1, 1, 0),
                                (int(hit["cl_ord_id"]), BID, 3, 3, 0)]
    # the venue reads the trigger MsgSeqNum from every request (latency probe)
    news = [m for _s, t, m, _r in rig.handler.received if t == 514]
    assert [il.trigger_seq_of(m["OrderRequestID"]) for m in news] == [1001, 1002, 1003]
    assert [il.parse_cl_ord_id(m["ClOrdID"]) for m in news] == [
        int(rest["cl_ord_id"]), int(take["cl_ord_id"]), int(hit["cl_ord_id"])]
    log = [e for e in rig.acc.received_log if e[1] == 514]
    assert len(log) == 3 and all(e[2] > 0 for e in log)
    # modify, then an unsolicited partial fill, then cancel
    cl = int(rest["cl_ord_id"])
    rig.send(rig.action(ACT_MODIFY, SIDE_BUY, BID, 5, cl=cl, order_id=resting.order_id))
    assert rig.pump(lambda: ER_MODIFY in rig.kinds(cl))
    (m,) = [r for r in rig.got if r["kind"] == ER_MODIFY]
    assert (m["price"], m["qty"], m["leaves_qty"], m["cum_qty"]) == (BID, 5, 5, 0)
    for msg in rig.handler.fill(SESSION, resting.order_id, 2):
        rig.acc.send_app(SESSION, msg)
    assert rig.pump(lambda: rig.kinds(cl).count(ER_FILL) == 1)
    f = next(r for r in rig.got if r["kind"] == ER_FILL and r["cl_ord_id"] == cl)
    assert (f["qty"], f["cum_qty"], f["leaves_qty"], f["price"]) == (2, 2, 3, BID)
    rig.send(rig.action(ACT_CANCEL, SIDE_BUY, 0, 0, cl=cl, order_id=resting.order_id))
    assert rig.pump(lambda: ER_CANCEL in rig.kinds(cl))
    assert rig.kinds(cl) == [ER_NEW, ER_MODIFY, ER_FILL, ER_CANCEL]
    assert book == {}
    # a cancel for an order the venue does not have is rejected
    rig.send(rig.action(ACT_CANCEL, cl=cl, order_id=resting.order_id))
    assert rig.pump(lambda: ER_CANCEL_REJECT in rig.kinds(cl))


def test_mass_cancel(rig: Rig) -> None:
    rig.ready()
    rows = [rig.action(ACT_NEW, SIDE_BUY, BID - i * TICK, 1) for i in range(1, 4)]
    rig.send(*rows)
    assert rig.pump(lambda: len(rig.got) == 3)
    assert rig.gw.mass_cancel()
    assert rig.pump(lambda: len(rig.got) == 6)
    assert sorted(r["cl_ord_id"] for r in rig.got if r["kind"] == ER_CANCEL) == sorted(
        int(r["cl_ord_id"]) for r in rows)
    assert rig.handler.working(SESSION) == {}
    assert il.counters(rig.gw.gw)["mass_action_report"] == 1


def test_reports_feed_the_oms_and_positions_agree(rig: Rig) -> None:
    from core import oms
    from core.risk import RiskLimits
    from core.trading import InstrumentConfig, TradingCore

    core = TradingCore([InstrumentConfig(security_id=SEC, tick=TICK, tick_value=12.5)],
                       RiskLimits())
    rig.gw.bind(core.reports, core.actions)
    rig.ready()
    plan = [(SIDE_BUY, ASK, 3), (SIDE_SELL, BID, 1), (SIDE_BUY, BID - TICK, 2)]
    acts = core.actions
    for i, (side, px, qty) in enumerate(plan):
        slot = oms.register_order(core.trader, 0, side, px, qty, trigger_seq=77 + i)
        o = core.orders[slot]
        acts[i] = 0
        acts[i]["cl_ord_id"], acts[i]["price"], acts[i]["qty"] = o["cl_ord_id"], px, qty
        acts[i]["action"], acts[i]["side"], acts[i]["security_id"] = ACT_NEW, side, SEC
        acts[i]["trigger_seq"], acts[i]["slot"] = 77 + i, slot
    assert rig.gw.send(acts, 3) == 3
    seen = 0
    end = time.monotonic() + 5
    while seen < 5 and time.monotonic() < end:
        rig.acc.poll()
        n = rig.gw.poll(core.reports)
        oms.apply_exec_reports(core.trader, core.reports, n)
        seen += n
    assert seen == 5  # 3 acks, 2 fills
    (pos,) = oms.positions(core.trader)
    assert pos["position"] == 3 - 1
    assert pos["buy_open"] == 2 and pos["live_orders"] == 1
    working = [o for o in oms.orders_table(core.trader) if o["status"] == OS_WORKING]
    (venue,) = rig.handler.working(SESSION).values()
    assert [(o["order_id"], o["price"], o["leaves"]) for o in working] == [
        (venue.order_id, venue.price, venue.leaves_qty)]
    assert core.oms_counts.sum() == 0


# --------------------------------------------------------------------------
def test_keepalives_with_a_manual_clock(rig: Rig) -> None:
    rig.ready()
    srv = rig.acc._conns[0].server
    sent0, acc_sent0 = rig.gw.session.keepalives_sent, srv.keepalives_sent
    for _ in range(5):
        rig.advance(999)
        rig.pump(seconds=0.05)
        rig.advance(1)  # KeepAliveInterval of silence on both sides
        rig.pump(lambda: srv.keepalives_sent > acc_sent0, seconds=2)
    assert rig.gw.session.keepalives_sent >= sent0 + 5
    assert srv.keepalives_sent >= acc_sent0 + 5
    assert rig.gw.is_connected() and srv.established
    # the exchange goes silent: lapse warning after one interval, Terminate after two
    lapsed0 = rig.gw.session.lapsed_warnings
    rig.advance(1000)
    rig.pump(seconds=0.1, acceptor=False)
    assert rig.gw.session.lapsed_warnings == lapsed0 + 1 and rig.gw.is_connected()
    rig.advance(1000)
    rig.pump(lambda: rig.gw.state == GatewayState.BACKOFF, seconds=2, acceptor=False)
    ev = rig.gw.drain_events()
    assert ("terminated", f"{fixp.TERM_KEEPALIVE_LAPSED}: keepalive interval lapsed") in [
        (k, d) for _t, k, d in ev]
    assert not rig.gw.is_connected()


def test_sequence_gap_is_recovered_by_retransmission(rig: Rig) -> None:
    rig.ready()
    rig.acc.drop_outbound(2)  # the ack and the fill of the next order are lost
    a = rig.action(ACT_NEW, SIDE_BUY, ASK, 1)
    rig.send(a)
    rig.pump(seconds=0.2)
    assert rig.got == []
    b = rig.action(ACT_NEW, SIDE_BUY, BID - TICK, 1)
    rig.send(b)  # its ack reveals the gap
    assert rig.pump(lambda: len(rig.got) == 3)
    assert [(r["cl_ord_id"], r["kind"]) for r in rig.got] == [
        (int(a["cl_ord_id"]), ER_NEW), (int(a["cl_ord_id"]), ER_FILL),
        (int(b["cl_ord_id"]), ER_NEW)]  # retransmitted ones first, in order
    assert rig.acc.stats.retransmitted == 2 and rig.gw.stats.retransmit_requests == 1
    assert not rig.gw.session.recovering and rig.gw.is_connected()
    # a gap with no later business message: the exchange's Sequence reveals it
    rig.acc.drop_outbound(1)
    c = rig.action(ACT_NEW, SIDE_BUY, BID - 2 * TICK, 1)
    rig.send(c)
    rig.pump(seconds=0.2)
    assert ER_NEW not in rig.kinds(int(c["cl_ord_id"]))
    rig.advance(1000)  # keepalive: Sequence(NextSeqNo) from the exchange
    assert rig.pump(lambda: ER_NEW in rig.kinds(int(c["cl_ord_id"])))
    assert rig.acc.stats.retransmitted == 3


def test_disconnect_cancel_on_disconnect_backoff_reconnect_reconcile(rig: Rig) -> None:
    rig.ready()
    rows = [rig.action(ACT_NEW, SIDE_BUY, BID - i * TICK, 1) for i in (1, 2)]
    rig.send(*rows)
    assert rig.pump(lambda: len(rig.got) == 2)
    order_ids = sorted(o.order_id for o in rig.handler.working(SESSION).values())
    rig.gw.drain_events()
    uuid = rig.gw.session.uuid
    assert rig.acc.disconnect(SESSION) == 1  # venue drops the TCP session
    assert sorted(rig.handler.cod_cancelled) == order_ids  # cancel on disconnect at the venue
    assert rig.acc.stats.cod_events == 1
    assert rig.pump(lambda: rig.gw.state == GatewayState.BACKOFF, seconds=2)
    assert not rig.gw.is_connected()
    # no reconnect before the backoff is due
    rig.pump(seconds=0.2)
    assert rig.gw.state == GatewayState.BACKOFF
    rig.advance(50)
    assert rig.pump(rig.gw.is_connected)
    assert rig.gw.session.uuid == uuid  # re-established, not renegotiated
    # the COD cancels were recovered by retransmission, then reconciliation ran
    cancels = [r for r in rig.got if r["kind"] == ER_CANCEL]
    assert sorted(r["cl_ord_id"] for r in cancels) == sorted(int(r["cl_ord_id"]) for r in rows)
    assert all(r["reason"] == EXEC_RESTATEMENT_COD for r in cancels)
    assert [k for _t, k, _d in rig.gw.drain_events()] == [
        "disconnected", "backoff", "connected", "established", "reconcile_started",
        "recovered", "ready"]
    assert rig.gw.stats.cod_not_effective == 0
    assert not il.counters(rig.gw.gw)["foreign_cl_ord_id"]
    assert not rig.gw.gw[il.GW_LIVE : il.GW_LIVE + 512].any()  # nothing believed live


def test_reconnect_backoff_is_exponential_and_capped() -> None:
    rig = Rig()
    try:
        rig.acc.close()  # nothing listens: every connect fails
        rig.gw.connect()
        waits = []
        for _ in range(7):
            assert rig.pump(lambda: rig.gw.state == GatewayState.BACKOFF, seconds=2,
                            acceptor=False)
            ev = [d for _t, k, d in rig.gw.drain_events() if k == "backoff"]
            waits.append(int(ev[-1].split()[0]))
            rig.advance(waits[-1] - 1)
            rig.pump(seconds=0.02, acceptor=False)
            assert rig.gw.state == GatewayState.BACKOFF  # not yet
            rig.advance(1)
            rig.poll(acceptor=False)
        assert waits == [50, 100, 200, 400, 400, 400, 400]
    finally:
        rig.gw.stop()


def test_reconciliation_reports_working_and_missing_orders() -> None:
    rig = Rig(cod=False)  # the venue has no cancel on disconnect for this session
    try:
        rig.ready()
        keep = rig.action(ACT_NEW, price=BID - TICK)
        lost = rig.action(ACT_NEW, price=BID - 2 * TICK)
        rig.send(keep, lost)
        assert rig.pump(lambda: len(rig.got) == 2)
        book = rig.handler.working(SESSION)
        for oid, o in list(book.items()):
            if o.cl_ord_id == il.cl_ord_id_text(int(lost["cl_ord_id"])):
                del book[oid]  # the venue lost it without telling us
        rig.acc.disconnect()
        assert rig.handler.cod_cancelled == []
        assert rig.pump(lambda: rig.gw.state == GatewayState.BACKOFF, seconds=2)
        rig.got.clear()
        rig.advance(50)
        assert rig.pump(rig.gw.is_connected)
        st = {r["cl_ord_id"]: r for r in rig.got if r["kind"] == ER_STATUS}
        k = st[int(keep["cl_ord_id"])]
        assert (k["ord_status"], k["leaves_qty"], k["price"]) == (OS_WORKING, 1, BID - TICK)
        g = st[int(lost["cl_ord_id"])]
        assert (g["ord_status"], g["reason"]) == (OS_CANCELLED, REASON_NOT_AT_VENUE)
        # we asked for cancel on disconnect, yet an order survived: counted
        assert rig.gw.stats.cod_not_effective == 1
    finally:
        rig.close()


def test_bad_signature_is_rejected() -> None:
    rig = Rig(secret=base64.urlsafe_b64encode(b"wrong" * 8).decode())
    try:
        rig.gw.connect()
        assert rig.pump(lambda: rig.gw.stats.handshake_failures > 0, seconds=3)
        ev = rig.gw.drain_events()
        assert ("negotiate_rejected", "0: HMAC signature not authenticated") in [
            (k, d) for _t, k, d in ev]
        assert rig.gw.state == GatewayState.BACKOFF and not rig.gw.is_connected()
        assert rig.acc.stats.rejected_logons == 1 and rig.acc.sessions() == []
        assert rig.handler.received == []
    finally:
        rig.close()


@pytest.mark.parametrize("policy", [fixp.NotAppliedPolicy.GAP_FILL, fixp.NotAppliedPolicy.RESEND])
def test_not_applied(policy: fixp.NotAppliedPolicy) -> None:
    rig = Rig(not_applied=policy)
    try:
        rig.ready()
        rig.acc.drop_inbound(1)
        lost = rig.action(ACT_NEW, price=BID - TICK)
        second = rig.action(ACT_NEW, price=BID - 2 * TICK)
        rig.send(lost)
        rig.pump(seconds=0.1)
        rig.send(second)  # reveals the gap at the exchange: NotApplied
        assert rig.pump(lambda: len(rig.got) == 2)
        assert rig.acc.stats.not_applied == 1 and rig.gw.stats.not_applied == 1
        assert rig.kinds(int(second["cl_ord_id"])) == [ER_NEW]
        if policy == fixp.NotAppliedPolicy.GAP_FILL:
            (r,) = [r for r in rig.got if r["cl_ord_id"] == int(lost["cl_ord_id"])]
            assert (r["kind"], r["reason"]) == (ER_REJECT, REASON_NOT_APPLIED)
            assert len(rig.handler.working(SESSION)) == 1
        else:
            assert rig.kinds(int(lost["cl_ord_id"])) == [ER_NEW]  # resent, then acked
            assert rig.gw.stats.resent == 1 and len(rig.handler.working(SESSION)) == 2
        # the session goes on in sequence
        third = rig.action(ACT_NEW, price=BID - 3 * TICK)
        rig.send(third)
        assert rig.pump(lambda: ER_NEW in rig.kinds(int(third["cl_ord_id"])))
        assert rig.acc.stats.not_applied == 1
    finally:
        rig.close()


def test_requests_while_not_ready_come_back_as_rejects(rig: Rig) -> None:
    new, cxl = rig.action(ACT_NEW), rig.action(ACT_CANCEL)
    assert rig.send(new, cxl) == 0
    rig.poll(acceptor=False)
    assert [(r["cl_ord_id"], r["kind"], r["reason"]) for r in rig.got] == [
        (int(new["cl_ord_id"]), ER_REJECT, REASON_GATEWAY_DOWN),
        (int(cxl["cl_ord_id"]), ER_CANCEL_REJECT, REASON_GATEWAY_DOWN)]


def test_fault_hooks_reject_and_delay(rig: Rig) -> None:
    rig.ready()
    rig.acc.reject_next(1, "fault")
    a = rig.action(ACT_NEW)
    rig.send(a)
    assert rig.pump(lambda: bool(rig.got))
    assert (rig.got[0]["kind"], rig.got[0]["reason"]) == (ER_REJECT, REJ_OTHER)
    rig.acc.delay_outbound(30 * MS)
    b = rig.action(ACT_NEW)
    rig.send(b)
    rig.pump(seconds=0.2)
    assert rig.kinds(int(b["cl_ord_id"])) == []
    rig.advance(30)
    assert rig.pump(lambda: rig.kinds(int(b["cl_ord_id"])) == [ER_NEW])


def test_close_terminates_without_cancel_on_disconnect(rig: Rig) -> None:
    rig.ready()
    rig.send(rig.action(ACT_NEW, price=BID - TICK))
    assert rig.pump(lambda: len(rig.got) == 1)
    rig.gw.close()
    assert rig.pump(lambda: rig.gw.state == GatewayState.STOPPED, seconds=2)
    rig.pump(lambda: rig.acc.sessions() == [], seconds=2)
    assert rig.acc.stats.cod_events == 0 and len(rig.handler.working(SESSION)) == 1
    assert "terminated" in _events(rig)


def test_party_details_on_demand() -> None:
    rig = Rig(party_details_on_demand=True, party_details=(("TRADER01", 118), ("ACCT9", 24)),
              party_details_list_req_id=31)
    try:
        rig.ready()
        assert [t for _s, t, _m, _r in rig.handler.received] == [518, 530]
        pd = rig.handler.received[0][2]
        assert pd["PartyDetailsListReqID"] == 31
        assert [(e["PartyDetailID"], e["PartyDetailRole"]) for e in pd["NoPartyDetails"]] == [
            ("TRADER01", 118), ("ACCT9", 24)]
        rig.send(rig.action(ACT_NEW))
        assert rig.pump(lambda: bool(rig.got))
        news = [m for _s, t, m, _r in rig.handler.received if t == 514]
        assert news[0]["PartyDetailsListReqID"] == 31
    finally:
        rig.close()


def test_credentials_never_appear_in_logs_events_or_reprs(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    env = {"NANOARB_ILINK_ACCESS_KEY": KEY_ID, "NANOARB_ILINK_SECRET_KEY": SECRET}
    creds = credentials_from_env(env)
    bad = Rig(secret=base64.urlsafe_b64encode(b"nope" * 8).decode())
    good = Rig()
    try:
        good.gw = Ilink3Gateway(good.gw.config, creds, clock=good.clock)
        bad.gw.connect()
        bad.pump(lambda: bad.gw.stats.handshake_failures > 0, seconds=3)
        good.ready()
        good.send(good.action(ACT_NEW, price=ASK))
        good.pump(lambda: len(good.got) == 2)
        good.acc.disconnect()
        good.pump(lambda: good.gw.state == GatewayState.BACKOFF, seconds=2)
        texts = [caplog.text, *capsys.readouterr()]
        for r in (good, bad):
            texts += [repr(r.gw), str(r.gw), repr(r.gw.session), repr(r.gw.config),
                      str(r.gw.drain_events()), str(r.gw.counters()), repr(r.acc),
                      str(r.acc.stats), repr(r.acc.keys), str(r.gw.stats)]
        texts += [repr(creds), str(creds)]
        raw = base64.urlsafe_b64decode(SECRET + "=" * (-len(SECRET) % 4))
        for t in texts:
            assert KEY_ID not in t and SECRET not in t and raw.decode("latin-1") not in t
    finally:
        bad.close()
        good.close()


def test_implements_the_gateway_interface(rig: Rig) -> None:
    from adapters.gateway import Gateway

    assert isinstance(rig.gw, Gateway)


def test_portable_socket_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the libc fast path (non-Linux): Python socket calls, same behaviour."""
    import adapters.ilink3_gateway as mod

    monkeypatch.setattr(mod, "HAVE_LIBC_IO", False)
    rig = Rig()
    try:
        rig.ready()
        assert rig.gw._fd == -1
        rig.acc.drop_outbound(1)
        a, b = rig.action(ACT_NEW, price=ASK), rig.action(ACT_NEW, price=BID - TICK)
        rig.send(a)
        rig.pump(seconds=0.1)
        rig.send(b)
        assert rig.pump(lambda: len(rig.got) == 3)
        assert [(r["cl_ord_id"], r["kind"]) for r in rig.got] == [
            (int(a["cl_ord_id"]), ER_NEW), (int(a["cl_ord_id"]), ER_FILL),
            (int(b["cl_ord_id"]), ER_NEW)]
        rig.acc.disconnect()
        assert rig.pump(lambda: rig.gw.state == GatewayState.BACKOFF, seconds=2)
    finally:
        rig.close()


def test_a_new_connection_of_the_session_replaces_the_old_one(rig: Rig) -> None:
    rig.ready()
    rig.send(rig.action(ACT_NEW, price=BID - TICK))
    assert rig.pump(lambda: len(rig.got) == 1)
    rig.clock.advance(1000)  # a later UUID
    other = Ilink3Gateway(rig.gw.config, fixp.Credentials(KEY_ID, SECRET), clock=rig.clock)
    other.connect()
    reports = np.zeros(8, EXEC_REPORT)
    end = time.monotonic() + 5
    while not other.is_connected() and time.monotonic() < end:
        rig.acc.poll()
        other.poll(reports)
        rig.poll(acceptor=False)
    try:
        assert other.is_connected()
        assert rig.pump(lambda: rig.gw.state == GatewayState.BACKOFF, seconds=2, acceptor=False)
        assert rig.acc.sessions() == [SESSION]
        assert rig.acc.stats.cod_events == 0 and len(rig.handler.working(SESSION)) == 1
    finally:
        other.stop()


def test_garbage_on_the_wire_never_escapes(rig: Rig) -> None:
    """Random bytes to the acceptor and from a fake exchange to the gateway: the
    session ends (Terminate / reconnect), nothing raises out of poll."""
    import random
    import socket

    rnd = random.Random(7)
    rig.ready()
    for payload in (b"\x00" * 64, bytes(rnd.getrandbits(8) for _ in range(300)),
                    b"\x40\x00\xfe\xca" + bytes(60)):
        s = socket.create_connection(rig.acc.address)
        s.sendall(payload)
        rig.pump(seconds=0.1)
        s.close()
    rig.pump(seconds=0.1)
    assert rig.gw.is_connected()  # the real session is untouched
    # a fake exchange that answers the Negotiate with garbage
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    cfg = Ilink3GatewayConfig(session_id="ABC", firm_id="FIRM1", port=srv.getsockname()[1],
                              backoff_first_ms=50, backoff_cap_ms=50)
    gw = Ilink3Gateway(cfg, fixp.Credentials(KEY_ID, SECRET), clock=rig.clock)
    reports = np.zeros(8, EXEC_REPORT)
    try:
        for junk in (b"\x10\x00\xfe\xca" + bytes(12), b"\x30\x00\xfe\xca\x05\x00\xfa\x01"
                     + bytes(40), bytes(rnd.getrandbits(8) for _ in range(200))):
            if gw.state == GatewayState.STOPPED:
                gw.connect()
            conn = None
            end = time.monotonic() + 3
            while conn is None and time.monotonic() < end:
                gw.poll(reports)
                srv.settimeout(0.01)
                try:
                    conn, _ = srv.accept()
                except TimeoutError:
                    rig.advance(50)
            assert conn is not None
            conn.sendall(junk)
            end = time.monotonic() + 2
            while gw.state != GatewayState.BACKOFF and time.monotonic() < end:
                gw.poll(reports)
            assert gw.state == GatewayState.BACKOFF and not gw.is_connected()
            conn.close()
        assert gw.stats.protocol_errors + gw.stats.disconnects >= 3
    finally:
        gw.stop()
        srv.close()
