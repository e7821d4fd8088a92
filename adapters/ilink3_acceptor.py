"""The exchange side of iLink 3: a non-blocking TCP acceptor with the FIXP server session.

What it does, per connection (``core.fixp.FixpServer`` holds the rules):

* accepts TCP on 127.0.0.1, frames SOFH messages, validates Negotiate/Establish
  (HMAC-SHA256 with the secret configured for the access key), sequence numbers
  (NotApplied on a client gap), keepalives (Sequence, lapse warning, Terminate);
* answers RetransmitRequest from its store of sent business messages (with
  PossRetransFlag set), keeps the store per (session, firm) across reconnects so a
  re-established client can recover what it missed;
* hands every application message (NewOrderSingle, cancel/replace, cancel, mass
  action, mass status, order status, party details) to an ``OrderHandler`` and
  sends back the execution reports it returns; ``send_app`` pushes unsolicited
  reports (fills caused by other flow) at any time;
* cancel on disconnect: an involuntary loss of a COD-registered session calls the
  handler's ``on_disconnect(..., cancel_on_disconnect=True)``; the cancels it
  returns are sequenced and stored, to be recovered after re-establishment.

Fault hooks (for the venue's fault injection and the tests): ``disconnect``
(abrupt TCP close), ``terminate`` (orderly), ``drop_outbound`` (the next n
business messages get SeqNums but are not sent: a gap), ``delay_outbound``,
``drop_inbound`` (the next n client business messages are lost: NotApplied),
``reject_next`` (the next n order requests are rejected by the gateway).

No thread: the owner calls ``poll()`` from its loop; every socket is non-blocking.
``StubOrderHandler`` is a deterministic order handler for tests and demos; the
``report_*`` builders make execution reports from an ``OrderState`` for any handler.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import socket
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol

from adapters.clock import Clock, MonotonicClock
from core import fixp
from core.sbe import codec
from core.sbe.ilink3 import (
    FRAME_HEADER,
    SCHEMA,
    SOFH_ENCODING,
    flat_codec,
    frame_info,
)

__all__ = [
    "AcceptorState",
    "AppMessage",
    "Ilink3Acceptor",
    "OrderHandler",
    "OrderState",
    "StubOrderHandler",
    "report_cancel",
    "report_cancel_reject",
    "report_elimination",
    "report_modify",
    "report_new",
    "report_reject",
    "report_replace_reject",
    "report_status",
    "report_status_none",
    "report_trade",
]

SessionKey = tuple[str, str]  # (Session ID, Firm ID)

# Templates the customer sends
NEW_ORDER = 514
CANCEL_REPLACE = 515
CANCEL = 516
PARTY_DETAILS_REQUEST = 518
MASS_ACTION = 529
MASS_STATUS = 530
ORDER_STATUS = 533
# Templates the exchange sends
PARTY_DETAILS_ACK = 519
BUSINESS_REJECT = 521
EXEC_NEW = 522
EXEC_REJECT = 523
EXEC_ELIMINATION = 524
EXEC_TRADE = 525
EXEC_MODIFY = 531
EXEC_STATUS = 532
EXEC_CANCEL = 534
CANCEL_REJECT = 535
REPLACE_REJECT = 536
MASS_ACTION_REPORT = 562

EXEC_RESTATEMENT_COD = int(
    SCHEMA.message(EXEC_CANCEL).field("ExecRestatementReason").enum_values["CancelOnDisconnect"]
)
_MAX_PENDING_OUT = 8 << 20  # a client that does not read 8 MB is cut off


class AcceptorState(IntEnum):
    STARTING = 0
    RUNNING = 1
    STOPPED = 2


@dataclass(slots=True)
class AppMessage:
    """A business message for the customer: template + fields (+ groups, rarely)."""

    template_id: int
    fields: dict[str, Any]
    groups: dict[str, list[dict[str, Any]]] | None = None


class OrderHandler(Protocol):
    """What the acceptor calls; the venue connects it to its matching engine."""

    def on_message(
        self, session: SessionKey, template_id: int, msg: dict[str, Any], recv_ns: int
    ) -> Sequence[AppMessage]: ...

    def on_disconnect(
        self, session: SessionKey, cancel_on_disconnect: bool
    ) -> Sequence[AppMessage]: ...


# --------------------------------------------------------------------------
# Execution report builders (exchange side)
# --------------------------------------------------------------------------
@dataclass
class OrderState:
    """An order as the exchange knows it (enough to build every report)."""

    order_id: int
    cl_ord_id: str
    security_id: int
    side: int  # 1 buy, 2 sell
    price: int  # PRICE9 mantissa
    order_qty: int
    cum_qty: int = 0
    ord_type: str = "2"
    time_in_force: int = 0
    sender_id: str = ""
    location: str = ""
    party_details_list_req_id: int = 0
    order_request_id: int = 0
    manual_order_indicator: int = 0
    exec_seq: int = 0  # reports sent for this order (ExecID suffix)

    @property
    def leaves_qty(self) -> int:
        return max(self.order_qty - self.cum_qty, 0)

    def exec_id(self) -> str:
        self.exec_seq += 1
        return f"{self.order_id}-{self.exec_seq}"


def _common(o: OrderState, transact_ns: int) -> dict[str, Any]:
    return {
        "ExecID": o.exec_id(),
        "SenderID": o.sender_id,
        "ClOrdID": o.cl_ord_id,
        "PartyDetailsListReqID": o.party_details_list_req_id,
        "OrderID": o.order_id,
        "Price": o.price,
        "TransactTime": transact_ns,
        "OrderRequestID": o.order_request_id,
        "Location": o.location,
        "SecurityID": o.security_id,
        "OrderQty": o.order_qty,
        "OrdType": o.ord_type,
        "Side": o.side,
        "TimeInForce": o.time_in_force,
        "ManualOrderIndicator": o.manual_order_indicator,
    }


def report_new(o: OrderState, transact_ns: int) -> AppMessage:
    return AppMessage(EXEC_NEW, _common(o, transact_ns))


def report_trade(
    o: OrderState, last_px: int, last_qty: int, transact_ns: int, *, trade_id: int = 0,
    aggressor: bool = False,
) -> AppMessage:
    """A fill of ``last_qty`` (apply it to ``o.cum_qty`` before calling)."""
    f = _common(o, transact_ns)
    f.update(
        LastPx=last_px, LastQty=last_qty, CumQty=o.cum_qty, LeavesQty=o.leaves_qty,
        OrdStatus=2 if o.leaves_qty == 0 else 1, MDTradeEntryID=trade_id,
        SideTradeID=trade_id, SecExecID=trade_id, AggressorIndicator=1 if aggressor else 0,
        Ownership=0, TradeDate=None,
    )
    return AppMessage(EXEC_TRADE, f)


def report_modify(o: OrderState, transact_ns: int) -> AppMessage:
    f = _common(o, transact_ns)
    f.update(CumQty=o.cum_qty, LeavesQty=o.leaves_qty)
    return AppMessage(EXEC_MODIFY, f)


def report_cancel(o: OrderState, transact_ns: int, restatement: int | None = None) -> AppMessage:
    f = _common(o, transact_ns)
    f.update(CumQty=o.cum_qty, ExecRestatementReason=restatement)
    return AppMessage(EXEC_CANCEL, f)


def report_elimination(o: OrderState, transact_ns: int) -> AppMessage:
    f = _common(o, transact_ns)
    f["CumQty"] = o.cum_qty
    return AppMessage(EXEC_ELIMINATION, f)


def report_status(
    o: OrderState, transact_ns: int, ord_status: str, *, mass_status_req_id: int | None = None,
    ord_status_req_id: int | None = None, last: bool = False,
) -> AppMessage:
    f = _common(o, transact_ns)
    f.update(
        CumQty=o.cum_qty, LeavesQty=o.leaves_qty, OrdStatus=ord_status,
        MassStatusReqID=mass_status_req_id, OrdStatusReqID=ord_status_req_id,
        LastRptRequested=1 if last else 0, Text="",
    )
    return AppMessage(EXEC_STATUS, f)


def report_status_none(req: dict[str, Any], transact_ns: int, *,
                       mass_status_req_id: int | None = None,
                       ord_status_req_id: int | None = None) -> AppMessage:
    """ExecutionReportStatus with OrdStatus U: no (more) order matches the request."""
    f = _req_common(req, transact_ns, "U")
    f.update(
        Text="no matching orders", ClOrdID="", OrderID=0, Price=None, SecurityID=0,
        OrderQty=0, CumQty=0, LeavesQty=0, OrdStatus="U", OrdType=None, Side=1,
        MassStatusReqID=mass_status_req_id, OrdStatusReqID=ord_status_req_id,
        LastRptRequested=1, OrderRequestID=0,
    )
    return AppMessage(EXEC_STATUS, f)


def _req_common(req: dict[str, Any], transact_ns: int, exec_id: str) -> dict[str, Any]:
    return {
        "ExecID": exec_id,
        "SenderID": req.get("SenderID") or "",
        "ClOrdID": req.get("ClOrdID") or "",
        "PartyDetailsListReqID": req.get("PartyDetailsListReqID") or 0,
        "TransactTime": transact_ns,
        "OrderRequestID": req.get("OrderRequestID") or 0,
        "Location": req.get("Location") or "",
        "ManualOrderIndicator": req.get("ManualOrderIndicator") or 0,
    }


def report_reject(req: dict[str, Any], text: str, code: int, transact_ns: int,
                  exec_id: str = "R") -> AppMessage:
    """ExecutionReportReject523 for a NewOrderSingle request dict."""
    f = _req_common(req, transact_ns, exec_id)
    f.update(
        Text=text[:256], OrderID=0, Price=req.get("Price"), SecurityID=req.get("SecurityID") or 0,
        OrderQty=req.get("OrderQty") or 0, OrdRejReason=code,
        OrdType=req.get("OrdType") or "2", Side=req.get("Side") or 1,
        TimeInForce=req.get("TimeInForce"),
    )
    return AppMessage(EXEC_REJECT, f)


def report_cancel_reject(req: dict[str, Any], text: str, code: int, transact_ns: int,
                         exec_id: str = "CR") -> AppMessage:
    """OrderCancelReject535 for an OrderCancelRequest dict."""
    f = _req_common(req, transact_ns, exec_id)
    f.update(Text=text[:256], OrderID=req.get("OrderID") or 0, CxlRejReason=code)
    return AppMessage(CANCEL_REJECT, f)


def report_replace_reject(req: dict[str, Any], text: str, code: int, transact_ns: int,
                          exec_id: str = "RR") -> AppMessage:
    """OrderCancelReplaceReject536 for an OrderCancelReplaceRequest dict."""
    f = _req_common(req, transact_ns, exec_id)
    f.update(Text=text[:256], OrderID=req.get("OrderID") or 0, CxlRejReason=code)
    return AppMessage(REPLACE_REJECT, f)


# CME reject reason codes used here (OrdRejReason / CxlRejReason)
REJ_UNKNOWN_ORDER = 2045  # "order not in book"
REJ_OTHER = 99
REJ_TOO_LATE = 2059


# --------------------------------------------------------------------------
# Stub order handler: deterministic acks and fills
# --------------------------------------------------------------------------
class StubOrderHandler:
    """Acks every valid request; fills marketable orders against fixed prices.

    A buy at or above ``ask`` fills ``fill_qty`` (all by default) at ``ask``; a
    sell at or below ``bid`` at ``bid``; the rest rests. ``fill(order_id, qty)``
    makes an unsolicited fill (the acceptor's ``send_app`` delivers it). Orders
    are kept per session; cancel on disconnect cancels them all with
    ExecRestatementReason 100. Every request received is kept in ``received``
    as (session, template, dict, recv_ns).
    """

    def __init__(self, *, bid: int = 0, ask: int = 2**62, fill_qty: int | None = None,
                 clock: Clock | None = None) -> None:
        self.bid = bid
        self.ask = ask
        self.fill_qty = fill_qty
        self.clock = clock or MonotonicClock()
        self.orders: dict[SessionKey, dict[int, OrderState]] = {}
        self.received: list[tuple[SessionKey, int, dict[str, Any], int]] = []
        self.cod_cancelled: list[int] = []
        self._ids = itertools.count(1000)
        self._trade_ids = itertools.count(1)

    def working(self, session: SessionKey) -> dict[int, OrderState]:
        return self.orders.setdefault(session, {})

    def _t(self) -> int:
        return self.clock.wall_ns()

    def on_message(
        self, session: SessionKey, template_id: int, msg: dict[str, Any], recv_ns: int
    ) -> list[AppMessage]:
        self.received.append((session, template_id, msg, recv_ns))
        book = self.working(session)
        t = self._t()
        if template_id == NEW_ORDER:
            return self._new(book, msg, t)
        if template_id == CANCEL:
            o = book.get(int(msg.get("OrderID") or 0))
            if o is None:
                return [report_cancel_reject(msg, "order not in book", REJ_UNKNOWN_ORDER, t)]
            del book[o.order_id]
            o.cl_ord_id = msg.get("ClOrdID") or o.cl_ord_id
            o.order_request_id = msg.get("OrderRequestID") or 0
            return [report_cancel(o, t)]
        if template_id == CANCEL_REPLACE:
            o = book.get(int(msg.get("OrderID") or 0))
            if o is None:
                return [report_replace_reject(msg, "order not in book", REJ_UNKNOWN_ORDER, t)]
            o.cl_ord_id = msg.get("ClOrdID") or o.cl_ord_id
            o.order_request_id = msg.get("OrderRequestID") or 0
            o.price = int(msg.get("Price") or o.price)
            o.order_qty = int(msg.get("OrderQty") or o.order_qty)
            out = [report_modify(o, t)]
            out += self._match(book, o, t)
            return out
        if template_id == MASS_ACTION:
            return self._mass_cancel(book, msg, t)
        if template_id == MASS_STATUS:
            req_id = int(msg.get("MassStatusReqID") or 0)
            orders = list(book.values())
            if not orders:
                return [report_status_none(msg, t, mass_status_req_id=req_id)]
            return [
                report_status(o, t, "1" if o.cum_qty else "0", mass_status_req_id=req_id,
                              last=i == len(orders) - 1)
                for i, o in enumerate(orders)
            ]
        if template_id == ORDER_STATUS:
            o = book.get(int(msg.get("OrderID") or 0))
            if o is None:
                return [report_status_none(
                    msg, t, ord_status_req_id=int(msg.get("OrdStatusReqID") or 0))]
            return [report_status(o, t, "1" if o.cum_qty else "0",
                                  ord_status_req_id=int(msg.get("OrdStatusReqID") or 0),
                                  last=True)]
        if template_id == PARTY_DETAILS_REQUEST:
            return [AppMessage(PARTY_DETAILS_ACK, {
                "PartyDetailsListReqID": msg.get("PartyDetailsListReqID") or 0,
                "PartyDetailRequestStatus": 0, "ListUpdateAction": "A",
                "PartyDetailDefinitionStatus": 0, "Memo": msg.get("Memo"),
            })]
        return []

    def _new(self, book: dict[int, OrderState], msg: dict[str, Any], t: int) -> list[AppMessage]:
        qty = int(msg.get("OrderQty") or 0)
        px = msg.get("Price")
        if qty <= 0 or px is None or msg.get("Side") not in (1, 2):
            return [report_reject(msg, "invalid order", REJ_OTHER, t)]
        o = OrderState(
            order_id=next(self._ids), cl_ord_id=msg.get("ClOrdID") or "",
            security_id=int(msg.get("SecurityID") or 0), side=int(msg["Side"]), price=int(px),
            order_qty=qty, ord_type=msg.get("OrdType") or "2",
            time_in_force=int(msg.get("TimeInForce") or 0), sender_id=msg.get("SenderID") or "",
            location=msg.get("Location") or "",
            party_details_list_req_id=int(msg.get("PartyDetailsListReqID") or 0),
            order_request_id=int(msg.get("OrderRequestID") or 0),
        )
        book[o.order_id] = o
        return [report_new(o, t), *self._match(book, o, t)]

    def _match(self, book: dict[int, OrderState], o: OrderState, t: int) -> list[AppMessage]:
        if o.side == 1 and o.price >= self.ask:
            px = self.ask
        elif o.side == 2 and o.price <= self.bid:
            px = self.bid
        else:
            return []
        return self.fill_report(book, o, self.fill_qty or o.leaves_qty, px, t)

    def fill_report(self, book: dict[int, OrderState], o: OrderState, qty: int, px: int,
                    t: int) -> list[AppMessage]:
        qty = min(qty, o.leaves_qty)
        if qty <= 0:
            return []
        o.cum_qty += qty
        if o.leaves_qty == 0:
            book.pop(o.order_id, None)
        return [report_trade(o, px, qty, t, trade_id=next(self._trade_ids))]

    def fill(self, session: SessionKey, order_id: int, qty: int, px: int | None = None
             ) -> list[AppMessage]:
        """An unsolicited fill of a resting order (send it with ``send_app``)."""
        book = self.working(session)
        o = book.get(order_id)
        if o is None:
            return []
        return self.fill_report(book, o, qty, o.price if px is None else px, self._t())

    def _mass_cancel(self, book: dict[int, OrderState], msg: dict[str, Any],
                     t: int) -> list[AppMessage]:
        side = msg.get("Side")
        sec = msg.get("SecurityID")
        scope = int(msg.get("MassActionScope") or 0)
        hit = [
            o for o in book.values()
            if (side is None or o.side == side) and (scope != 1 or sec is None
                                                     or o.security_id == sec)
        ]
        out = [AppMessage(MASS_ACTION_REPORT, {
            "SenderID": msg.get("SenderID") or "", "PartyDetailsListReqID":
            msg.get("PartyDetailsListReqID") or 0, "TransactTime": t,
            "OrderRequestID": msg.get("OrderRequestID") or 0, "MassActionReportID": t,
            "Location": msg.get("Location") or "", "SecurityID": sec,
            "MassActionResponse": 1, "ManualOrderIndicator": 0, "MassActionScope": scope or 7,
            "TotalAffectedOrders": len(hit), "LastFragment": 1, "Side": side,
        })]
        for o in hit:
            del book[o.order_id]
            out.append(report_cancel(o, t))
        return out

    def on_disconnect(self, session: SessionKey, cancel_on_disconnect: bool) -> list[AppMessage]:
        if not cancel_on_disconnect:
            return []
        book = self.working(session)
        t = self._t()
        out = []
        for o in list(book.values()):
            del book[o.order_id]
            self.cod_cancelled.append(o.order_id)
            out.append(report_cancel(o, t, EXEC_RESTATEMENT_COD))
        return out


# --------------------------------------------------------------------------
# The acceptor
# --------------------------------------------------------------------------
_SESSION_TEMPLATES = fixp.SESSION_TEMPLATES
_GROUP_TEMPLATES = frozenset(tid for tid, m in SCHEMA.messages.items() if m.groups)
_POSS_RETRANS_OFFSET = {
    tid: flat_codec(tid).offset("PossRetransFlag")
    for tid, m in SCHEMA.messages.items()
    if any(f.name == "PossRetransFlag" for f in m.fields)
}
_SEQ_OFFSET = {
    tid: flat_codec(tid).offset("SeqNum")
    for tid, m in SCHEMA.messages.items()
    if any(f.name == "SeqNum" for f in m.fields)
}


def _decode_frame(buf: bytes | bytearray | memoryview, pos: int, tid: int) -> dict[str, Any]:
    if tid in _GROUP_TEMPLATES:
        length = frame_info(buf, pos)[0]
        m = codec.decode(buf, pos + 4, pos + length, schema=SCHEMA)
        out = dict(m["fields"])
        out.update(m["groups"])
        return out
    return flat_codec(tid).decode(buf, pos)


def encode_app(msg: AppMessage) -> bytes:
    """Frame (SOFH included) of a business message."""
    if msg.groups:
        body = codec.encode(
            {"template_id": msg.template_id, "fields": msg.fields, "groups": msg.groups}, SCHEMA
        )
        return codec.encode_sofh(body)
    return flat_codec(msg.template_id).encode(msg.fields)


class _Conn:
    __slots__ = ("addr", "closed", "delayed", "id", "out", "rbuf", "server", "sock")

    def __init__(self, cid: int, sock: socket.socket, addr: Any, server: fixp.FixpServer) -> None:
        self.id = cid
        self.sock = sock
        self.addr = addr
        self.server = server
        self.rbuf = bytearray()
        self.out = bytearray()
        self.delayed: list[tuple[int, bytes]] = []
        self.closed = False


@dataclass
class AcceptorStats:
    connections: int = 0
    app_messages_in: int = 0
    app_messages_out: int = 0
    retransmitted: int = 0
    not_applied: int = 0
    rejected_logons: int = 0
    dropped_out: int = 0
    dropped_in: int = 0
    cod_events: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class Ilink3Acceptor:
    """Non-blocking iLink 3 acceptor; call ``poll()`` from the owner's loop."""

    def __init__(
        self,
        keys: fixp.KeyStore,
        handler: OrderHandler,
        *,
        clock: Clock | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        check_timestamp: bool = True,
        cod_on_terminate: bool = False,
        store_capacity: int = 100_000,
    ) -> None:
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError("the acceptor listens on 127.0.0.1 only")
        self.keys = keys
        self.handler = handler
        self.clock = clock or MonotonicClock()
        self.host, self.port = host, port
        self.check_timestamp = check_timestamp
        self.cod_on_terminate = cod_on_terminate
        self.store_capacity = store_capacity
        self.records: dict[SessionKey, fixp.ServerSessionRecord] = {}
        self.state = AcceptorState.STARTING
        self.stats = AcceptorStats()
        self._listen: socket.socket | None = None
        self._conns: list[_Conn] = []
        self._ids = itertools.count(1)
        # fault injection (0 = off), each optionally restricted to one session
        self._drop_out = 0
        self._drop_in = 0
        self._delay_out_ns = 0
        self._reject_next = 0
        self._reject_text = "rejected by fault injection"
        # per hook: None = every session, else only that one
        self._scope: dict[str, SessionKey | None] = {}
        # (session, template, recv_ns, SeqNum) of every business message applied
        self.received_log: list[tuple[SessionKey, int, int, int]] = []
        # (session, SeqNum, template) of every business message drop_outbound swallowed
        self.dropped_out_log: deque[tuple[SessionKey, int, int]] = deque(maxlen=1024)

    def __repr__(self) -> str:
        return (f"Ilink3Acceptor({self.host}:{self.port}, state={self.state.name}, "
                f"connections={len(self._conns)})")

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> tuple[str, int]:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(16)
        s.setblocking(False)
        self._listen = s
        self.port = s.getsockname()[1]
        self.state = AcceptorState.RUNNING
        return self.host, self.port

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def close(self) -> None:
        for c in list(self._conns):
            self._drop(c, "acceptor closed", involuntary=False)
        if self._listen is not None:
            self._listen.close()
            self._listen = None
        self.state = AcceptorState.STOPPED

    def sessions(self) -> list[SessionKey]:
        """Sessions with an established connection."""
        return [
            (c.server.record.session, c.server.record.firm)
            for c in self._conns
            if c.server.record is not None and c.server.established
        ]

    def _conn_of(self, session: SessionKey) -> _Conn | None:
        for c in self._conns:
            r = c.server.record
            if r is not None and (r.session, r.firm) == session and c.server.established:
                return c
        return None

    # -- fault hooks ----------------------------------------------------------------
    def _matches(self, hook: str, session: SessionKey | None) -> bool:
        scope = self._scope.get(hook)
        return scope is None or scope == session

    def disconnect(self, session: SessionKey | None = None) -> int:
        """Close TCP abruptly (no Terminate): an involuntary disconnect, COD applies."""
        n = 0
        for c in list(self._conns):
            r = c.server.record
            if session is None or (r is not None and (r.session, r.firm) == session):
                self._drop(c, "disconnected by fault injection", involuntary=True)
                n += 1
        return n

    def terminate(self, session: SessionKey | None = None, reason: str = "terminated",
                  error_code: int = fixp.TERM_FINISHED) -> None:
        """Orderly end from the exchange (Terminate, then close when answered)."""
        now, wall = self.clock.now_ns(), self.clock.wall_ns()
        for c in self._conns:
            r = c.server.record
            if session is None or (r is not None and (r.session, r.firm) == session):
                c.server.terminate(reason, error_code, now, wall)
                self._flush_session(c, now, wall)

    def drop_outbound(self, n: int, session: SessionKey | None = None) -> None:
        """The next ``n`` business messages get SeqNums but are not sent (a gap)."""
        self._drop_out, self._scope["drop_out"] = n, session

    def drop_inbound(self, n: int, session: SessionKey | None = None) -> None:
        """The next ``n`` business messages of the client are lost (NotApplied follows)."""
        self._drop_in, self._scope["drop_in"] = n, session

    def delay_outbound(self, delay_ns: int, session: SessionKey | None = None) -> None:
        """Hold every business message ``delay_ns`` before sending (0 turns it off)."""
        self._delay_out_ns, self._scope["delay_out"] = delay_ns, session

    def reject_next(self, n: int, text: str = "rejected by fault injection",
                    session: SessionKey | None = None) -> None:
        """Reject the next ``n`` order requests at the gateway (523 / 535 / 536)."""
        self._reject_next, self._reject_text, self._scope["reject"] = n, text, session

    # -- the loop -------------------------------------------------------------------
    def poll(self) -> int:
        """Accept, read, dispatch, run timers, flush. Returns messages processed."""
        if self.state != AcceptorState.RUNNING:
            return 0
        self._accept()
        work = 0
        for c in list(self._conns):
            work += self._read(c)
            if c.closed:
                continue
            now, wall = self.clock.now_ns(), self.clock.wall_ns()
            c.server.on_timer(now, wall)
            self._flush_session(c, now, wall)
            self._send_delayed(c, now)
            self._flush_out(c)
        self._conns = [c for c in self._conns if not c.closed]
        return work

    def _accept(self) -> None:
        assert self._listen is not None
        while True:
            try:
                sock, addr = self._listen.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            srv = fixp.FixpServer(
                self.keys, self.records, check_timestamp=self.check_timestamp,
                cod_on_terminate=self.cod_on_terminate,
            )
            srv.start(self.clock.now_ns())
            self._conns.append(_Conn(next(self._ids), sock, addr, srv))
            self.stats.connections += 1

    def _read(self, c: _Conn) -> int:
        try:
            data = c.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            self._drop(c, "recv error", involuntary=True)
            return 0
        if not data:
            self._drop(c, "peer closed", involuntary=True)
            return 0
        recv_ns = self.clock.now_ns()
        c.rbuf += data
        buf = c.rbuf
        pos = 0
        n = 0
        end = len(buf)
        while end - pos >= FRAME_HEADER:
            length = buf[pos] | (buf[pos + 1] << 8)
            enc = buf[pos + 2] | (buf[pos + 3] << 8)
            if enc != SOFH_ENCODING or length < FRAME_HEADER:
                self._protocol_error(c, "invalid SOFH", fixp.TERM_INVALID_SOFH)
                return n
            if end - pos < length:
                break
            try:
                self._dispatch(c, bytes(buf[pos : pos + length]), recv_ns)
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                self._count(f"decode:{type(exc).__name__}")
                self._protocol_error(c, "decoding error", fixp.TERM_DECODING_ERROR)
                return n
            n += 1
            pos += length
            if c.closed:
                return n
        del buf[:pos]
        return n

    def _count(self, what: str) -> None:
        self.stats.errors[what] = self.stats.errors.get(what, 0) + 1

    def _protocol_error(self, c: _Conn, reason: str, code: int) -> None:
        now, wall = self.clock.now_ns(), self.clock.wall_ns()
        c.server.terminate(reason, code, now, wall)
        self._flush_session(c, now, wall)
        self._flush_out(c)
        self._drop(c, reason, involuntary=True)

    def _dispatch(self, c: _Conn, frame: bytes, recv_ns: int) -> None:
        _length, _bl, tid, sid, _ver = frame_info(frame)
        now, wall = recv_ns, self.clock.wall_ns()
        srv = c.server
        if sid != SCHEMA.id:
            raise ValueError(f"schema id {sid}")
        if tid in _SESSION_TEMPLATES:
            msg = flat_codec(tid).decode(frame)
            srv.on_message(tid, msg, now, wall)
            self._flush_session(c, now, wall)
            return
        msg = _decode_frame(frame, 0, tid)
        rec = srv.record
        key = (rec.session, rec.firm) if rec is not None else ("", "")
        if self._drop_in > 0 and self._matches("drop_in", key) and srv.established:
            self._drop_in -= 1  # lost on the way: the next one shows the gap
            self.stats.dropped_in += 1
            srv.note_received(now)
            return
        seq = int(msg.get("SeqNum") or 0)
        verdict = srv.on_business(seq, now)
        self._flush_session(c, now, wall)  # NotApplied first, if any
        if verdict != fixp.Verdict.DELIVER:
            return
        self.stats.app_messages_in += 1
        self.received_log.append((key, tid, recv_ns, seq))
        if self._reject_next > 0 and self._matches("reject", key) and tid in (
            NEW_ORDER, CANCEL, CANCEL_REPLACE
        ):
            self._reject_next -= 1
            builder = {NEW_ORDER: report_reject, CANCEL: report_cancel_reject,
                       CANCEL_REPLACE: report_replace_reject}[tid]
            replies: Sequence[AppMessage] = [builder(msg, self._reject_text, REJ_OTHER, wall)]
        else:
            replies = self.handler.on_message(key, tid, msg, recv_ns)
        for r in replies:
            self.send_app(key, r)

    def _flush_session(self, c: _Conn, now: int, wall: int) -> None:
        out, events = c.server.drain()
        for s in out:
            self._queue(c, flat_codec(s.template_id).encode(s.fields))
            c.server.note_sent(now)
        for ev in events:
            if isinstance(ev, fixp.RetransmitRequested):
                self._retransmit(c, ev)
            elif isinstance(ev, fixp.Terminated):
                self._flush_out(c)
                self._close_socket(c)
                self._after_disconnect(c, ev.cancel_on_disconnect)
            elif isinstance(ev, fixp.Rejected):
                self.stats.rejected_logons += 1
            elif isinstance(ev, fixp.Established):
                self._replace_stale(c)
        if any(s.template_id == fixp.NOT_APPLIED for s in out):
            self.stats.not_applied += 1

    def _replace_stale(self, c: _Conn) -> None:
        """The session re-established on a new connection: the old one (whose loss we
        have not seen yet) is closed quietly; the session goes on, so no COD."""
        for other in self._conns:
            if other is not c and not other.closed and other.server.record is c.server.record:
                self._close_socket(other)
                other.server.state = fixp.SessionState.DISCONNECTED

    def _retransmit(self, c: _Conn, ev: fixp.RetransmitRequested) -> None:
        rec = c.server.record
        assert rec is not None
        frames = rec.store.get_range(ev.from_seq, ev.count) or []
        for fr in frames:
            b = bytearray(fr)
            tid = b[6] | (b[7] << 8)
            off = _POSS_RETRANS_OFFSET.get(tid)
            if off is not None:
                b[off] = 1
            self._queue(c, bytes(b))
            self.stats.retransmitted += 1

    def send_app(self, session: SessionKey, msg: AppMessage) -> int:
        """Sequence, store and send a business message; returns its SeqNum.

        With no live connection the message is stored only: the client gets it
        by RetransmitRequest after re-establishing the same UUID.
        """
        rec = self.records.get(session)
        if rec is None:
            raise KeyError(f"unknown session {session}")
        seq = rec.next_send
        rec.next_send = seq + 1
        f = dict(msg.fields)
        f["SeqNum"] = seq
        f["UUID"] = rec.uuid
        f["SendingTimeEpoch"] = self.clock.wall_ns()
        f["PossRetransFlag"] = 0
        frame = encode_app(AppMessage(msg.template_id, f, msg.groups))
        rec.store.put(seq, frame)
        self.stats.app_messages_out += 1
        c = self._conn_of(session)
        if c is None:
            return seq
        if self._drop_out > 0 and self._matches("drop_out", session):
            self._drop_out -= 1
            self.stats.dropped_out += 1
            self.dropped_out_log.append((session, seq, msg.template_id))
            return seq
        if self._delay_out_ns > 0 and self._matches("delay_out", session):
            c.delayed.append((self.clock.now_ns() + self._delay_out_ns, frame))
            return seq
        self._queue(c, frame)
        c.server.note_sent(self.clock.now_ns())
        self._flush_out(c)
        return seq

    def _send_delayed(self, c: _Conn, now: int) -> None:
        if not c.delayed:
            return
        due = [f for t, f in c.delayed if t <= now]
        if due:
            c.delayed = [(t, f) for t, f in c.delayed if t > now]
            for f in due:
                self._queue(c, f)
            c.server.note_sent(now)

    def _queue(self, c: _Conn, frame: bytes) -> None:
        if c.closed:
            return
        c.out += frame
        if len(c.out) > _MAX_PENDING_OUT:
            self._drop(c, "slow consumer", involuntary=True)

    def _flush_out(self, c: _Conn) -> None:
        while c.out and not c.closed:
            try:
                n = c.sock.send(c.out)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return
                self._drop(c, "send error", involuntary=True)
                return
            del c.out[:n]

    def _close_socket(self, c: _Conn) -> None:
        if not c.closed:
            c.closed = True
            with contextlib.suppress(OSError):
                c.sock.close()

    def _drop(self, c: _Conn, reason: str, *, involuntary: bool) -> None:
        if c.closed:
            return
        was_live = c.server.state not in (fixp.SessionState.DISCONNECTED,
                                          fixp.SessionState.TERMINATED)
        self._close_socket(c)
        if not was_live:
            return
        c.server.connection_lost(self.clock.now_ns())
        _out, events = c.server.drain()
        cod = any(isinstance(e, fixp.Terminated) and e.cancel_on_disconnect for e in events)
        self._after_disconnect(c, cod and involuntary)

    def _after_disconnect(self, c: _Conn, cod: bool) -> None:
        rec = c.server.record
        if rec is None:
            return
        key = (rec.session, rec.firm)
        if cod:
            self.stats.cod_events += 1
        for r in self.handler.on_disconnect(key, cod):
            self.send_app(key, r)
