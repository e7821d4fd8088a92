"""End to end, issue 7: the daemon and the exchange simulator as separate processes on
127.0.0.1, the order-entry session between them under faults.

One venue and one daemon for the first three tests (tests/helpers/e2e.py), in order:

1. the session is established, the quotes rest at the venue, fills arrive, and the
   positions agree: the daemon's (its metrics) = the venue's own execution records of
   our session (control request ``positions``);
2. a report lost on the way (venue fault ``drop_report``): the daemon's gateway sees the
   gap on the next message, sends RetransmitRequest, the venue retransmits, and the
   lost fill is in the daemon's position; no reconciliation was needed;
3. the venue drops the TCP connection (fault ``disconnect``): cancel on disconnect at
   the venue (none of our orders left), the daemon HALTs, reconnects, recovers the COD
   cancels by retransmission, reconciles (working orders = the venue's = none) and stays
   HALTED, sending nothing, until the operator resumes;
4. (its own pair: a venue session without cancel on disconnect) the orders that outlive
   the connection are reported by the reconciliation, and the HALTED daemon cancels
   them at the venue.

The background flow is switched off from the first test on: the operator's orders are
then the only other flow, so which of our orders trades is known. The daemon's
stale-data limit is raised accordingly (a silent market is not a fault here).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.demo import DemoVenue, demo_credentials
from tests.helpers.e2e import SESSION, START_TIMEOUT, Daemon, our_orders, until

pytestmark = pytest.mark.e2e

SYMBOL = {5602: "ESZ5", 2871: "CLZ5"}
TEMPLATE_TRADE = 525  # ExecutionReportTrade
BUY, SELL = 1, 2


class Pair:
    def __init__(self, venue: DemoVenue, daemon: Daemon) -> None:
        self.venue = venue
        self.d = daemon

    # -- the exchange's view --------------------------------------------------------
    def venue_positions(self) -> dict[int, dict[str, int]]:
        rows = self.venue.request({"cmd": "positions", "session": SESSION})["positions"]
        return {int(r["security_id"]): r for r in rows}

    def venue_position(self, sid: int) -> int:
        return int(self.venue_positions().get(sid, {}).get("position", 0))

    def venue_status(self) -> dict[str, Any]:
        return self.venue.request({"cmd": "status"})

    # -- the daemon's view ------------------------------------------------------------
    def gw(self, event: str) -> float:
        return self.d.metric("nanoarb_gateway_events_total", f'{{event="{event}"}}')

    def daemon_position(self, sid: int) -> int:
        return int(self.d.metric("nanoarb_position", f'{{symbol="{SYMBOL[sid]}"}}'))

    def daemon_fills(self, sid: int) -> int:
        return int(self.d.metric("nanoarb_fills_total", f'{{symbol="{SYMBOL[sid]}"}}'))

    def agree(self) -> bool:
        """Both sides tell the same story: per instrument position and number of fills,
        and the daemon's working orders are the venue's."""
        vp = self.venue_positions()
        for sid in SYMBOL:
            v = vp.get(sid, {"position": 0, "fills": 0})
            if (self.daemon_position(sid), self.daemon_fills(sid)) != (v["position"],
                                                                       v["fills"]):
                return False
        return int(self.d.ctl("status")["nanoarb_live_orders"]) == len(our_orders(self.venue))

    def quiet(self, for_s: float = 0.3) -> None:
        """Wait until the daemon sends nothing for ``for_s`` (a static market, settled)."""
        def settled() -> bool:
            n0 = self.venue_status()["orders"]["requests"]
            time.sleep(for_s)
            return bool(self.venue_status()["orders"]["requests"] == n0 and self.agree())

        until(settled, 20, 0.01, "the daemon settled")

    # -- the operator's orders ------------------------------------------------------
    def our_quote(self, sid: int, side: int) -> dict[str, Any]:
        return until(lambda: next((o for o in our_orders(self.venue)
                                   if o["security_id"] == sid and o["side"] == side), None),
                     10, 0.01, f"our {side} quote on {sid}")

    def hit(self, sid: int, side: int) -> dict[str, Any]:
        """Trade against our resting quote of ``side``: an IOC at its price for everything
        up to and including its level (better prices trade first, and orders ahead of
        ours at that price: price-time priority)."""
        q = self.our_quote(sid, side)
        book = self.venue.request({"cmd": "book", "security_id": sid, "depth": 10})
        better = ((lambda px: px >= q["price"]) if side == BUY
                  else (lambda px: px <= q["price"]))
        qty = sum(lv[1] for lv in book["bids" if side == BUY else "asks"] if better(lv[0]))
        reply = self.venue.request({"cmd": "order", "security_id": sid,
                                    "side": "sell" if side == BUY else "buy",
                                    "price": q["price"], "qty": qty, "tif": "ioc"})
        assert reply["ok"] and reply["execs"][-1]["leaves_qty"] == 0, reply
        return q


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp: Path = tmp_path_factory.mktemp("venue_session")
    env = dict(os.environ, **demo_credentials())
    venue = DemoVenue(tmp / "venue", env=env)
    venue.start(START_TIMEOUT)
    d = Daemon(tmp, venue, env, risk={"stale_data_ms": 600_000})
    try:
        d.start()
        until(lambda: len(our_orders(venue)) == 4, 60, 0.05, "a bid and an ask per instrument")
        yield Pair(venue, d)
        os.kill(d.pid, signal.SIGTERM)
        assert d.wait(60) == 0, d.log.read_text()[-3000:]
        assert not our_orders(venue)
    finally:
        d.kill()
        venue.stop()


def test_session_quotes_fills_and_positions_agree(pair: Pair) -> None:
    v, d = pair.venue, pair.d
    assert [SESSION, "001"] in pair.venue_status()["sessions"]  # established at the venue
    st = d.ctl("status")
    assert st["nanoarb_gateway_up"] == 1 and st["nanoarb_trader_state"] == 2  # ACTIVE
    assert {(o["security_id"], o["side"]) for o in our_orders(v)} == {
        (sid, side) for sid in SYMBOL for side in (BUY, SELL)}  # quotes rest, both sides
    assert v.request({"cmd": "flow", "enabled": False})["enabled"] is False
    pair.quiet()
    before = {sid: pair.venue_position(sid) for sid in SYMBOL}
    # fills: our ES bid twice (the second time the re-quoted one), our CL offer once
    for sid, side in ((5602, BUY), (2871, SELL), (5602, BUY)):
        pair.quiet()  # the quote we aim at is not being replaced meanwhile
        n0 = pair.venue_positions().get(sid, {}).get("fills", 0)
        pair.hit(sid, side)
        until(lambda sid=sid, n0=n0: pair.venue_positions().get(sid, {}).get("fills", 0) > n0,
              5, 0.01, "our fill at the venue")
    vp = pair.venue_positions()
    assert vp[5602]["position"] - before[5602] == 2 and vp[5602]["bought"] >= 2
    assert vp[2871]["position"] - before[2871] == -1 and vp[2871]["sold"] >= 1
    until(pair.agree, 10, 0.05, "the daemon's positions, fills and orders = the venue's")
    assert d.metric("nanoarb_exec_reports_total", '{kind="fill"}') == sum(
        r["fills"] for r in pair.venue_positions().values())
    # nothing lost or repaired on the way so far
    assert pair.gw("retransmit_requests") == 0 and pair.gw("messages_lost") == 0
    assert pair.gw("disconnects") == 0


def test_lost_report_is_retransmitted_and_applied(pair: Pair) -> None:
    v, d = pair.venue, pair.d
    v.request({"cmd": "flow", "enabled": False})
    pair.quiet()
    rtx0, lost0 = pair.gw("retransmit_requests"), pair.gw("messages_lost")
    recon0 = pair.gw("reconciliations")
    venue_rtx0 = pair.venue_status()["acceptor"]["retransmitted"]
    pos0 = pair.venue_position(2871)
    # the next business message to our session is stored and sequenced, never sent
    assert v.request({"cmd": "fault", "kind": "drop_report", "session": SESSION})["ok"]
    pair.hit(2871, BUY)  # our CL bid trades: that fill report is the one lost
    until(lambda: pair.venue_position(2871) == pos0 + 1, 5, 0.01, "the fill at the venue")
    dropped = v.request({"cmd": "fault_log"})["dropped_reports"]
    assert [x[0] for x in dropped] == [SESSION] and dropped[0][2] == TEMPLATE_TRADE
    # the next message to the session (a reply to a requote, else this second fill)
    # reveals the gap
    time.sleep(0.1)
    pair.hit(5602, SELL)
    until(lambda: pair.gw("retransmit_requests") > rtx0, 10, 0.02, "a RetransmitRequest")
    until(lambda: pair.venue_status()["acceptor"]["retransmitted"] > venue_rtx0, 5, 0.02,
          "the venue's retransmission")
    # the lost fill reached the OMS: the positions agree, nothing counted lost, and no
    # reconciliation (mass status) was needed to get there
    until(pair.agree, 10, 0.05, "the daemon's positions = the venue's")
    assert pair.daemon_position(2871) == pair.venue_position(2871) == pos0 + 1
    assert pair.gw("messages_lost") == lost0
    assert pair.gw("reconciliations") == recon0
    st = d.ctl("status")
    assert st["nanoarb_gateway_up"] == 1 and st["nanoarb_trader_state"] == 2  # still ACTIVE


def test_venue_disconnect_cancels_at_venue_halts_reconnects_reconciles(pair: Pair) -> None:
    v, d = pair.venue, pair.d
    until(lambda: our_orders(v), 10, 0.02, "our quotes at the venue")
    pair.quiet()
    assert d.ctl("status")["nanoarb_trader_state"] == 2
    recon0, disc0 = pair.gw("reconciliations"), pair.gw("disconnects")
    rtx0, lost0 = pair.gw("retransmit_requests"), pair.gw("messages_lost")
    halts0 = d.metric("nanoarb_halts_total", '{reason="gateway_down"}')
    acc0 = pair.venue_status()["acceptor"]
    positions = {sid: pair.venue_position(sid) for sid in SYMBOL}

    # the venue drops our TCP connection: cancel on disconnect, at once, at the venue
    assert v.request({"cmd": "fault", "kind": "disconnect", "session": SESSION})["ok"]
    assert our_orders(v) == []
    st_v = pair.venue_status()
    assert st_v["acceptor"]["cod_events"] == acc0["cod_events"] + 1

    # the daemon: HALTED for the loss, then reconnected and reconciled, still HALTED
    until(lambda: d.metric("nanoarb_halts_total", '{reason="gateway_down"}') > halts0, 5,
          0.01, "a halt for the gateway loss")
    until(lambda: pair.gw("reconciliations") > recon0 and d.ctl("status")[
        "nanoarb_gateway_up"] == 1, 30, 0.02, "reconnected and reconciled")
    assert pair.gw("disconnects") == disc0 + 1
    # the COD cancels the venue sent while we were away came back by retransmission
    assert pair.gw("retransmit_requests") > rtx0 and pair.gw("messages_lost") == lost0
    until(pair.agree, 5, 0.02, "the daemon's working orders = the venue's (none)")
    st = d.ctl("status")
    assert st["nanoarb_trader_state"] == 1 and st["nanoarb_live_orders"] == 0
    assert {sid: pair.daemon_position(sid) for sid in SYMBOL} == positions
    # and it stays HALTED, sending nothing, until an operator resumes
    sent = d.metric("nanoarb_orders_total", '{action="new"}')
    time.sleep(1.0)
    assert our_orders(v) == []
    assert d.ctl("status")["nanoarb_trader_state"] == 1
    assert d.metric("nanoarb_orders_total", '{action="new"}') == sent
    reply = d.ctl("resume")
    assert reply["ok"], reply
    until(lambda: our_orders(v), 10, 0.02, "quotes after the operator resumed")
    assert d.ctl("status")["nanoarb_trader_state"] == 2


def test_orders_surviving_a_disconnect_are_cancelled_by_the_halted_daemon(
        tmp_path: Path) -> None:
    """A session without cancel on disconnect at the venue: our orders outlive the TCP
    connection. The daemon HALTs, reconnects, adopts what reconciliation reports, counts
    ``cod_not_effective`` and, HALTED, cancels every one of them at the venue."""
    env = dict(os.environ, **demo_credentials())
    venue = DemoVenue(tmp_path / "venue", env=env, base_rate_hz=20.0)
    cfg = venue.config_path.read_text()
    assert "cancel_on_disconnect = true" in cfg
    venue.config_path.write_text(cfg.replace("cancel_on_disconnect = true",
                                             "cancel_on_disconnect = false"))
    venue.start(START_TIMEOUT)
    d = Daemon(tmp_path, venue, env, risk={"stale_data_ms": 600_000})
    pair = Pair(venue, d)
    try:
        d.start()
        until(lambda: len(our_orders(venue)) == 4, 60, 0.05, "our quotes at the venue")
        venue.request({"cmd": "flow", "enabled": False})
        pair.quiet()
        resting = {o["order_id"] for o in our_orders(venue)}
        assert venue.request({"cmd": "fault", "kind": "disconnect", "session": SESSION})["ok"]
        assert {o["order_id"] for o in our_orders(venue)} == resting  # no COD here
        until(lambda: pair.gw("cod_not_effective") == 1, 30, 0.02,
              "reconciled, the surviving orders seen")
        # HALTED, the daemon cancels them: the session's working orders become none
        until(lambda: not our_orders(venue), 10, 0.02, "the survivors cancelled")
        until(pair.agree, 5, 0.02, "the daemon's working orders = the venue's (none)")
        assert d.ctl("status")["nanoarb_trader_state"] == 1
        time.sleep(0.5)
        assert not our_orders(venue)  # and nothing new while HALTED
    finally:
        d.kill()
        venue.stop()
