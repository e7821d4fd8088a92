"""iLink 3 order handling of the venue: between the acceptor and the matching engine.

``VenueOrderHandler`` is the ``OrderHandler`` the iLink 3 acceptor calls
(``adapters.ilink3_acceptor``): each application message becomes matching-engine
commands, and every execution record of the engine becomes the iLink 3
execution report CME would send:

=====================  ==========================================================
request                engine command -> reports
=====================  ==========================================================
NewOrderSingle514      submit -> ExecutionReportNew522, Trade525 per fill,
                       Elimination524 (FAK/FOK remainder), Cancel534 (SMP
                       newest, ExecRestatementReason 107) or Reject523
OrderCancelReplace515  modify -> Modify531 (+ fills), Cancel534 (IFM: nothing
                       left), or OrderCancelReplaceReject536; OFMOverride=Y is
                       CME's in-flight mitigation (the new OrderQty is the total)
OrderCancelRequest516  cancel -> Cancel534 or OrderCancelReject535
OrderMassAction529     one cancel per order of the session in scope ->
                       OrderMassActionReport562 + Cancel534 each
OrderMassStatus530     ExecutionReportStatus532 per order (OrdStatus U if none)
OrderStatusRequest533  ExecutionReportStatus532
PartyDetailsDef518     PartyDetailsDefinitionRequestAck519; its
                       SelfMatchPreventionID/Instruction apply to the orders that
                       name that PartyDetailsListReqID
=====================  ==========================================================

Orders are owned by the session's firm (the engine's ``owner``), so self-match
prevention works across the firm's sessions; cancels, mass actions and cancel on
disconnect act on the session's own orders (the handler's registry). An order
is found by OrderID, or by ClOrdID when OrderID is null (iLink 3 keeps the
ClOrdID of an order chain). Fills caused by other flow reach the resting
order's session through ``send_app``. Cancel on disconnect cancels every order
of the session with ExecRestatementReason 100.

Every fill of a session order is also booked in ``executions`` (bought, sold, fills
and traded value per session and instrument): ``positions`` is the exchange's own
view of each session's net position, for clients to reconcile against.

Faults: ``reject_next`` (the next requests are rejected with OrdRejReason /
CxlRejReason 99), ``delay_next`` (requests held ``delay_ns`` before they reach
the engine; their reports then go out through ``send_app``). Every order request
gets a row in the latency record, rejected and delayed ones included.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from adapters.clock import Clock
from adapters.ilink3_acceptor import (
    CANCEL,
    CANCEL_REPLACE,
    EXEC_RESTATEMENT_COD,
    MASS_ACTION,
    MASS_ACTION_REPORT,
    MASS_STATUS,
    NEW_ORDER,
    ORDER_STATUS,
    PARTY_DETAILS_ACK,
    PARTY_DETAILS_REQUEST,
    REJ_OTHER,
    REJ_UNKNOWN_ORDER,
    AppMessage,
    OrderState,
    report_cancel,
    report_cancel_reject,
    report_elimination,
    report_modify,
    report_new,
    report_reject,
    report_replace_reject,
    report_status,
    report_status_none,
    report_trade,
)
from adapters.venue.latency import LatencyRecord
from core.sbe.ilink3 import SCHEMA as ILINK3
from core.types import (
    MATCH_REASON_NAMES,
    MCF_IFM,
    MCMD_CANCEL,
    MCMD_MODIFY,
    MCMD_SUBMIT,
    MR_SMP_NEWEST,
    MR_SMP_OLDEST,
    MTIF_DAY,
    MTIF_FOK,
    MTIF_GTC,
    MTIF_IOC,
    MX_ACCEPTED,
    MX_CANCELLED,
    MX_EXPIRED,
    MX_FILL,
    MX_MODIFIED,
    MX_REJECTED,
    SIDE_BUY,
    SIDE_SELL,
)

__all__ = ["Engine", "LiveOrder", "SessionKey", "VenueOrderHandler"]

SessionKey = tuple[str, str]  # (Session ID, Firm ID)
ORDER_REQUESTS = frozenset({NEW_ORDER, CANCEL_REPLACE, CANCEL, MASS_ACTION})

_RESTATE_SMP_OLDEST = int(ILINK3.message(534).field("ExecRestatementReason")
                          .enum_values["SelfMatchPreventionOldestOrderCancelled"])
_RESTATE_SMP_NEWEST = int(ILINK3.message(534).field("ExecRestatementReason")
                          .enum_values["SelfMatchPreventionNewestOrderCancelled"])
_MASS_ALL = int(ILINK3.message(529).field("MassActionScope").enum_values["All"])
_MASS_INSTRUMENT = int(ILINK3.message(529).field("MassActionScope").enum_values["Instrument"])
_MASS_GROUP = int(ILINK3.message(529).field("MassActionScope").enum_values["InstrumentGroup"])
_MASS_SEGMENT = int(ILINK3.message(529).field("MassActionScope")
                    .enum_values["MarketSegmentID"])
_STATUS_INSTRUMENT = int(ILINK3.message(530).field("MassStatusReqType")
                         .enum_values["Instrument"])
_STATUS_GROUP = int(ILINK3.message(530).field("MassStatusReqType")
                    .enum_values["InstrumentGroup"])
_STATUS_SEGMENT = int(ILINK3.message(530).field("MassStatusReqType")
                      .enum_values["MarketSegment"])
_OFM_ENABLED = int(ILINK3.message(515).field("OFMOverride").enum_values["Enabled"])
# iLink TimeInForce -> matching engine (GFS and GTD rest like DAY here)
_TIF = {0: MTIF_DAY, 1: MTIF_GTC, 3: MTIF_IOC, 4: MTIF_FOK, 6: MTIF_DAY, 99: MTIF_DAY}


class Engine(Protocol):
    """What the handler needs of the venue's exchange core."""

    def command(self, op: int, row: int, order_id: int, side: int = 0, price: int = 0,
                qty: int = 0, tif: int = MTIF_DAY, owner: int = 0, smp_id: int = 0,
                smp_instr: int = 0, flags: int = 0) -> None: ...

    def trade_summary_id(self, trade_id: int) -> int: ...

    def is_halted(self, row: int) -> bool: ...


@dataclass
class InstrumentRef:
    row: int
    security_id: int
    group: str
    market_segment_id: int


@dataclass
class LiveOrder:
    state: OrderState
    session: SessionKey
    row: int
    owner: int
    ifm: bool = False


@dataclass
class _Delayed:
    due_ns: int
    session: SessionKey
    template_id: int
    msg: dict[str, Any]
    recv_ns: int


class VenueOrderHandler:
    """The venue's ``OrderHandler`` (see the module docstring)."""

    def __init__(self, engine: Engine, instruments: Sequence[InstrumentRef],
                 sessions: Sequence[SessionKey], clock: Clock, latency: LatencyRecord, *,
                 first_owner: int = 2, first_order_id: int = 1) -> None:
        self.engine = engine
        self.clock = clock
        self.latency = latency
        self.instruments = {i.security_id: i for i in instruments}
        self.by_row = {i.row: i for i in instruments}
        self.sessions = list(sessions)
        firms = sorted({f for _s, f in sessions})
        self.owner_of_firm = {f: first_owner + k for k, f in enumerate(firms)}
        self.session_index = {s: k for k, s in enumerate(self.sessions)}
        self.orders: dict[int, LiveOrder] = {}
        self.by_cl_ord_id: dict[tuple[SessionKey, str], int] = {}
        self.party: dict[tuple[SessionKey, int], tuple[int, int]] = {}  # -> (smp id, instr)
        self.send_app: Callable[[SessionKey, AppMessage], Any] = lambda s, m: None
        self.next_order_id = first_order_id
        self._out: list[tuple[SessionKey, AppMessage]] = []
        self._request: dict[str, Any] = {}
        self._reject_left = 0
        self._reject_session: SessionKey | None = None
        self._delay_left = 0
        self._delay_ns = 0
        self._delay_session: SessionKey | None = None
        self._delayed: deque[_Delayed] = deque()
        self.cod_cancelled: list[int] = []
        # the exchange's own record of each session's executions, per instrument:
        # [bought, sold, fills, buy value, sell value] (values in PRICE9 mantissa x qty)
        self.executions: dict[tuple[SessionKey, int], list[int]] = {}
        self.stats = {"requests": 0, "rejected": 0, "fault_rejects": 0, "delayed": 0,
                      "reports": 0, "unknown_exec": 0}

    # -- faults -------------------------------------------------------------------
    def reject_next(self, n: int, session: SessionKey | None = None) -> None:
        self._reject_left, self._reject_session = n, session

    def delay_next(self, n: int, delay_ns: int, session: SessionKey | None = None) -> None:
        self._delay_left, self._delay_ns, self._delay_session = n, delay_ns, session

    def next_due_ns(self) -> int:
        return self._delayed[0].due_ns if self._delayed else 2**62

    def process_delayed(self, now_ns: int) -> int:
        """Requests whose delay is over reach the engine; their reports go out now."""
        n = 0
        while self._delayed and self._delayed[0].due_ns <= now_ns:
            d = self._delayed.popleft()
            for r in self._handle(d.session, d.template_id, d.msg):
                self.send_app(d.session, r)
            self.flush_reports()
            n += 1
        return n

    # -- OrderHandler ---------------------------------------------------------------
    def on_message(self, session: SessionKey, template_id: int, msg: dict[str, Any],
                   recv_ns: int) -> list[AppMessage]:
        self.stats["requests"] += 1
        if template_id in ORDER_REQUESTS:
            self.latency.record(recv_ns, template_id, self.session_index.get(session, 0xFFFF),
                                int(msg.get("OrderRequestID") or 0),
                                int(msg.get("SeqNum") or 0), msg.get("ClOrdID") or "",
                                int(msg.get("OrderID") or 0))
            if self._reject_left > 0 and self._reject_session in (None, session):
                self._reject_left -= 1
                self.stats["fault_rejects"] += 1
                return [self._reject(template_id, msg, "rejected by fault injection",
                                     REJ_OTHER)]
            if self._delay_left > 0 and self._delay_session in (None, session):
                self._delay_left -= 1
                self.stats["delayed"] += 1
                self._delayed.append(_Delayed(self.clock.now_ns() + self._delay_ns, session,
                                              template_id, msg, recv_ns))
                return []
        replies = self._handle(session, template_id, msg)
        self.flush_reports()
        return replies

    def on_disconnect(self, session: SessionKey, cancel_on_disconnect: bool
                      ) -> list[AppMessage]:
        if not cancel_on_disconnect:
            return []
        mine = [oid for oid, lo in self.orders.items() if lo.session == session]
        self.flush_reports()
        for oid in mine:
            lo = self.orders.get(oid)
            if lo is None:
                continue
            self.engine.command(MCMD_CANCEL, lo.row, oid, owner=lo.owner)
            self.cod_cancelled.append(oid)
        out = []
        for s, m in self._take_all():
            if s == session and m.template_id == 534:
                m.fields["ExecRestatementReason"] = EXEC_RESTATEMENT_COD
            if s == session:
                out.append(m)
            else:
                self.send_app(s, m)
        self.stats["reports"] += len(out)
        return out

    # -- reports produced by the engine ----------------------------------------------
    def on_execs(self, execs: np.ndarray) -> None:
        """Turn the engine's MATCH_EXEC records of session orders into iLink reports."""
        if len(execs) == 0:
            return
        owners = execs["owner"]
        if not (owners >= min(self.owner_of_firm.values(), default=2**32)).any():
            return
        t = self.clock.wall_ns()
        for e in execs:
            if int(e["owner"]) not in self.owner_of_firm.values():
                continue
            oid = int(e["order_id"])
            lo = self.orders.get(oid)
            if lo is None:
                self.stats["unknown_exec"] += 1
                continue
            self._report(lo, e, t)

    def _report(self, lo: LiveOrder, e: np.void, t: int) -> None:
        o = lo.state
        et = int(e["exec_type"])
        reason = int(e["reason"])
        if et == MX_REJECTED:
            op = int(e["op"])
            text = f"rejected: {MATCH_REASON_NAMES[reason]}"
            if op == MCMD_SUBMIT:
                self._forget(lo)
                self._out.append((lo.session, report_reject(self._request, text, REJ_OTHER, t)))
            elif op == MCMD_MODIFY:
                self._out.append((lo.session, report_replace_reject(self._request, text,
                                                                    REJ_UNKNOWN_ORDER, t)))
            else:
                self._out.append((lo.session, report_cancel_reject(self._request, text,
                                                                   REJ_UNKNOWN_ORDER, t)))
            return
        o.order_qty = int(e["order_qty"])
        o.cum_qty = int(e["cum_qty"])
        o.price = int(e["price"])
        if et == MX_ACCEPTED:
            msg = report_new(o, t)
        elif et == MX_FILL:
            self._book_execution(lo, int(e["last_qty"]), int(e["last_px"]))
            msg = report_trade(o, int(e["last_px"]), int(e["last_qty"]), t,
                               trade_id=self.engine.trade_summary_id(int(e["trade_id"])),
                               aggressor=int(e["aggressor"]) == 1)
            if int(e["leaves_qty"]) == 0:
                self._forget(lo)
        elif et == MX_MODIFIED:
            msg = report_modify(o, t)
        elif et == MX_CANCELLED:
            restate = (_RESTATE_SMP_OLDEST if reason == MR_SMP_OLDEST else
                       _RESTATE_SMP_NEWEST if reason == MR_SMP_NEWEST else None)
            msg = report_cancel(o, t, restate)
            self._forget(lo)
        elif et == MX_EXPIRED:
            msg = report_elimination(o, t)
            self._forget(lo)
        else:
            self.stats["unknown_exec"] += 1
            return
        self._out.append((lo.session, msg))

    def _book_execution(self, lo: LiveOrder, qty: int, px: int) -> None:
        x = self.executions.setdefault((lo.session, lo.state.security_id), [0, 0, 0, 0, 0])
        buy = lo.state.side == SIDE_BUY
        x[0 if buy else 1] += qty
        x[2] += 1
        x[3 if buy else 4] += qty * px

    def _take_all(self) -> list[tuple[SessionKey, AppMessage]]:
        out, self._out = self._out, []
        return out

    def flush_reports(self) -> int:
        """Send the reports not returned to a caller (other sessions' fills) now."""
        out = self._take_all()
        for s, m in out:
            self.send_app(s, m)
        self.stats["reports"] += len(out)
        return len(out)

    def _forget(self, lo: LiveOrder) -> None:
        self.orders.pop(lo.state.order_id, None)
        self.by_cl_ord_id.pop((lo.session, lo.state.cl_ord_id), None)

    # -- requests --------------------------------------------------------------------
    def _handle(self, session: SessionKey, tid: int, msg: dict[str, Any]) -> list[AppMessage]:
        self.flush_reports()
        self._request = msg
        t = self.clock.wall_ns()
        if tid == NEW_ORDER:
            early = self._new(session, msg, t)
        elif tid == CANCEL:
            early = self._cancel(session, msg, t)
        elif tid == CANCEL_REPLACE:
            early = self._replace(session, msg, t)
        elif tid == MASS_ACTION:
            early = self._mass_action(session, msg, t)
        elif tid == MASS_STATUS:
            early = self._mass_status(session, msg, t)
        elif tid == ORDER_STATUS:
            early = self._order_status(session, msg, t)
        elif tid == PARTY_DETAILS_REQUEST:
            early = self._party_details(session, msg)
        else:
            early = []
        mine = list(early)
        for s, m in self._take_all():
            if s == session:
                mine.append(m)
            else:
                self._out.append((s, m))
        self.stats["reports"] += len(mine)
        return mine

    def _reject(self, tid: int, msg: dict[str, Any], text: str, code: int) -> AppMessage:
        self.stats["rejected"] += 1
        t = self.clock.wall_ns()
        if tid == NEW_ORDER:
            return report_reject(msg, text, code, t)
        if tid == CANCEL_REPLACE:
            return report_replace_reject(msg, text, code, t)
        if tid == MASS_ACTION:
            return AppMessage(MASS_ACTION_REPORT, self._mass_report(msg, t, 0, accepted=False))
        return report_cancel_reject(msg, text, code, t)

    def _find(self, session: SessionKey, msg: dict[str, Any]) -> LiveOrder | None:
        oid = msg.get("OrderID")
        if oid is None:
            oid = self.by_cl_ord_id.get((session, msg.get("ClOrdID") or ""))
        lo = self.orders.get(int(oid or 0))
        if lo is None or lo.session != session:
            return None
        return lo

    def _new(self, session: SessionKey, msg: dict[str, Any], t: int) -> list[AppMessage]:
        ins = self.instruments.get(int(msg.get("SecurityID") or 0))
        if ins is None:
            return [self._reject(NEW_ORDER, msg, "unknown security", REJ_OTHER)]
        if self.engine.is_halted(ins.row):
            return [self._reject(NEW_ORDER, msg, "instrument halted", REJ_OTHER)]
        if msg.get("OrdType") != "2":
            return [self._reject(NEW_ORDER, msg, "only limit orders are supported", REJ_OTHER)]
        side = msg.get("Side")
        price = msg.get("Price")
        tif = _TIF.get(int(msg["TimeInForce"]) if msg.get("TimeInForce") is not None else 0)
        if side not in (SIDE_BUY, SIDE_SELL) or price is None or tif is None:
            return [self._reject(NEW_ORDER, msg, "invalid side, price or time in force",
                                 REJ_OTHER)]
        cl = msg.get("ClOrdID") or ""
        if (session, cl) in self.by_cl_ord_id:
            return [self._reject(NEW_ORDER, msg, "duplicate ClOrdID", REJ_OTHER)]
        oid = self.next_order_id
        self.next_order_id += 1
        plist = int(msg.get("PartyDetailsListReqID") or 0)
        smp_id, smp_instr = self.party.get((session, plist), (0, 0))
        o = OrderState(
            order_id=oid, cl_ord_id=cl, security_id=ins.security_id, side=int(side),
            price=int(price), order_qty=int(msg.get("OrderQty") or 0), ord_type="2",
            time_in_force=int(msg.get("TimeInForce") or 0),
            sender_id=msg.get("SenderID") or "", location=msg.get("Location") or "",
            party_details_list_req_id=plist,
            order_request_id=int(msg.get("OrderRequestID") or 0),
            manual_order_indicator=int(msg.get("ManualOrderIndicator") or 0))
        owner = self.owner_of_firm[session[1]]
        lo = LiveOrder(o, session, ins.row, owner)
        self.orders[oid] = lo
        self.by_cl_ord_id[(session, cl)] = oid
        self.engine.command(MCMD_SUBMIT, ins.row, oid, int(side), int(price),
                            int(msg.get("OrderQty") or 0), tif, owner, smp_id, smp_instr)
        return []

    def _cancel(self, session: SessionKey, msg: dict[str, Any], t: int) -> list[AppMessage]:
        lo = self._find(session, msg)
        if lo is None:
            return [self._reject(CANCEL, msg, "order not in book", REJ_UNKNOWN_ORDER)]
        self._rename(lo, msg)
        self.engine.command(MCMD_CANCEL, lo.row, lo.state.order_id, owner=lo.owner)
        return []

    def _rename(self, lo: LiveOrder, msg: dict[str, Any]) -> None:
        cl = msg.get("ClOrdID") or lo.state.cl_ord_id
        if cl != lo.state.cl_ord_id:
            self.by_cl_ord_id.pop((lo.session, lo.state.cl_ord_id), None)
            self.by_cl_ord_id[(lo.session, cl)] = lo.state.order_id
            lo.state.cl_ord_id = cl
        lo.state.order_request_id = int(msg.get("OrderRequestID") or 0)

    def _replace(self, session: SessionKey, msg: dict[str, Any], t: int) -> list[AppMessage]:
        lo = self._find(session, msg)
        if lo is None:
            return [self._reject(CANCEL_REPLACE, msg, "order not in book", REJ_UNKNOWN_ORDER)]
        if msg.get("Side") not in (None, lo.state.side) or (
                msg.get("SecurityID") not in (None, lo.state.security_id)):
            return [self._reject(CANCEL_REPLACE, msg, "side or instrument cannot change",
                                 REJ_OTHER)]
        if self.engine.is_halted(lo.row):
            return [self._reject(CANCEL_REPLACE, msg, "instrument halted", REJ_OTHER)]
        if msg.get("OFMOverride") == _OFM_ENABLED:
            lo.ifm = True  # CME: the first cancel/replace of the chain decides
        price = msg.get("Price")
        self._rename(lo, msg)
        self.engine.command(MCMD_MODIFY, lo.row, lo.state.order_id,
                            price=int(lo.state.price if price is None else price),
                            qty=int(msg.get("OrderQty") or 0), owner=lo.owner,
                            flags=MCF_IFM if lo.ifm else 0)
        return []

    def _in_scope(self, lo: LiveOrder, msg: dict[str, Any], scope: int, instrument: int,
                  group: int, segment: int) -> bool:
        ins = self.by_row[lo.row]
        if scope == instrument:
            return ins.security_id == msg.get("SecurityID")
        if scope == group:
            return ins.group == (msg.get("SecurityGroup") or "")
        if scope == segment:
            return ins.market_segment_id == msg.get("MarketSegmentID")
        return True

    def _mass_report(self, msg: dict[str, Any], t: int, n: int, *, accepted: bool
                     ) -> dict[str, Any]:
        return {
            "SenderID": msg.get("SenderID") or "",
            "PartyDetailsListReqID": msg.get("PartyDetailsListReqID") or 0,
            "TransactTime": t, "OrderRequestID": msg.get("OrderRequestID") or 0,
            "MassActionReportID": t, "SecurityGroup": msg.get("SecurityGroup"),
            "Location": msg.get("Location") or "", "SecurityID": msg.get("SecurityID"),
            "MassActionResponse": 1 if accepted else 0,
            "ManualOrderIndicator": msg.get("ManualOrderIndicator") or 0,
            "MassActionScope": msg.get("MassActionScope") or _MASS_ALL,
            "TotalAffectedOrders": n, "LastFragment": 1,
            "MassActionRejectReason": None if accepted else 0,
            "MarketSegmentID": msg.get("MarketSegmentID"), "Side": msg.get("Side"),
        }

    def _mass_action(self, session: SessionKey, msg: dict[str, Any], t: int
                     ) -> list[AppMessage]:
        scope = int(msg.get("MassActionScope") or _MASS_ALL)
        side = msg.get("Side")
        hits = [lo for lo in self.orders.values() if lo.session == session
                and (side is None or lo.state.side == side)
                and self._in_scope(lo, msg, scope, _MASS_INSTRUMENT, _MASS_GROUP,
                                   _MASS_SEGMENT)]
        report = AppMessage(MASS_ACTION_REPORT, self._mass_report(msg, t, len(hits),
                                                                  accepted=True))
        for lo in hits:
            self.engine.command(MCMD_CANCEL, lo.row, lo.state.order_id, owner=lo.owner)
        return [report]

    def _status_of(self, lo: LiveOrder) -> str:
        return "1" if lo.state.cum_qty else "0"

    def _mass_status(self, session: SessionKey, msg: dict[str, Any], t: int
                     ) -> list[AppMessage]:
        req_id = int(msg.get("MassStatusReqID") or 0)
        kind = int(msg.get("MassStatusReqType") or 7)
        mine = [lo for lo in self.orders.values() if lo.session == session
                and self._in_scope(lo, msg, kind, _STATUS_INSTRUMENT, _STATUS_GROUP,
                                   _STATUS_SEGMENT)]
        if not mine:
            return [report_status_none(msg, t, mass_status_req_id=req_id)]
        return [report_status(lo.state, t, self._status_of(lo), mass_status_req_id=req_id,
                              last=i == len(mine) - 1) for i, lo in enumerate(mine)]

    def _order_status(self, session: SessionKey, msg: dict[str, Any], t: int
                      ) -> list[AppMessage]:
        req_id = int(msg.get("OrdStatusReqID") or 0)
        lo = self._find(session, msg)
        if lo is None:
            return [report_status_none(msg, t, ord_status_req_id=req_id)]
        return [report_status(lo.state, t, self._status_of(lo), ord_status_req_id=req_id,
                              last=True)]

    def _party_details(self, session: SessionKey, msg: dict[str, Any]) -> list[AppMessage]:
        plist = int(msg.get("PartyDetailsListReqID") or 0)
        smp_id = int(msg.get("SelfMatchPreventionID") or 0)
        instr = msg.get("SelfMatchPreventionInstruction")
        self.party[(session, plist)] = (smp_id, ord(instr) if instr else 0)
        return [AppMessage(PARTY_DETAILS_ACK, {
            "PartyDetailsListReqID": plist, "PartyDetailRequestStatus": 0,
            "ListUpdateAction": msg.get("ListUpdateAction") or "A",
            "PartyDetailDefinitionStatus": 0, "Memo": msg.get("Memo"),
            "SelfMatchPreventionID": msg.get("SelfMatchPreventionID"),
            "SelfMatchPreventionInstruction": instr})]

    # -- introspection -----------------------------------------------------------------
    def positions(self, session: SessionKey | None = None) -> list[dict[str, Any]]:
        """Net position per (session, instrument) from the venue's own fills: what the
        client's OMS must agree with (``position`` = bought - sold, contracts)."""
        return [{"session": s[0], "security_id": sid, "position": x[0] - x[1],
                 "bought": x[0], "sold": x[1], "fills": x[2], "buy_value": x[3],
                 "sell_value": x[4]}
                for (s, sid), x in sorted(self.executions.items())
                if session is None or s == session]

    def live_orders(self, session: SessionKey | None = None) -> list[dict[str, Any]]:
        return [{"order_id": lo.state.order_id, "cl_ord_id": lo.state.cl_ord_id,
                 "session": lo.session[0], "security_id": lo.state.security_id,
                 "side": lo.state.side, "price": lo.state.price,
                 "order_qty": lo.state.order_qty, "cum_qty": lo.state.cum_qty,
                 "leaves_qty": lo.state.leaves_qty}
                for lo in self.orders.values() if session is None or lo.session == session]
