"""FIXP session layer of CME iLink 3, as a pure state machine (client and server side).

No sockets, no clock, no threads: the adapter feeds decoded session messages and
the time (``now_ns`` monotonic for timers, ``wall_ns`` for RequestTimestamp) and
drains two lists after every call:

* ``outbox``: session messages to send, ``Send(template_id, fields)`` with the
  schema's field names (the adapter encodes them with the SBE codec);
* ``events``: what the adapter must act on (``Established``, ``Rejected``,
  ``Terminated``, ``NotApplied``, ``RetransmitRequested``, ``RecoveryDone`` ...).

Sequence numbers live in a small int64 array (``seq``, indices ``SEQ_*``) so the
numba kernels of the hot path share them with this machine: the order encoder
increments ``SEQ_NEXT_SEND``; the execution-report decoder takes an in-order
business message only while ``SEQ_RECOVERING`` is 0 and increments
``SEQ_NEXT_RECV``; anything else (session message, gap, PossRetrans) comes here.

CME's rules followed (iLink 3 / FIXP "recoverable" server flow, "idempotent" client flow):

* Negotiate carries an HMAC-SHA256 signature of the canonical request
  ``RequestTimestamp\\nUUID\\nSession\\nFirm``; Establish of
  ``RequestTimestamp\\nUUID\\nSession\\nFirm\\nTradingSystemName\\nTradingSystemVersion\\n``
  ``TradingSystemVendor\\nNextSeqNo\\nKeepAliveInterval``, keyed with the secret key
  (CME hands it out base64url-encoded: it is decoded before use).
* Session messages carry no sequence number; business messages carry SeqNum;
  Sequence(NextSeqNo) is the keepalive and tells the next SeqNum the peer will send.
* Keepalive: send a Sequence when nothing was sent for KeepAliveInterval; when
  nothing was received for KeepAliveInterval send Sequence with
  KeepAliveIntervalLapsed=1, and Terminate (error 20) after a second lapsed interval.
  A Sequence received with Lapsed=1 is answered at once.
* A gap in the server's SeqNum (business message, Sequence, EstablishmentAck) is
  recovered with RetransmitRequest (at most 2500 messages each); real-time messages
  arriving meanwhile are queued and delivered after the retransmitted ones.
* A gap in the client's SeqNum makes the server send NotApplied; the client
  either gap-fills (Sequence with its NextSeqNo: the requests are lost, the
  adapter tells the OMS) or resends the stored messages, per ``NotAppliedPolicy``.
* Cancel on disconnect is a property the exchange registers per session (iLink 3
  has no wire flag for it): the server reports an involuntary loss (TCP drop or
  keepalive lapse) with ``cancel_on_disconnect=True`` on ``Terminated``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

__all__ = [
    "MAX_RETRANSMIT",
    "SEQ_NEXT_RECV",
    "SEQ_NEXT_SEND",
    "SEQ_RECOVERING",
    "Credentials",
    "Established",
    "FixpClient",
    "FixpServer",
    "KeyStore",
    "NotApplied",
    "NotAppliedPolicy",
    "OutboundStore",
    "RecoveryDone",
    "Rejected",
    "RetransmitRequested",
    "Send",
    "SessionIdentity",
    "SessionState",
    "Terminated",
    "Verdict",
    "canonical_establish",
    "canonical_negotiate",
    "decode_secret",
    "sign",
]

# --------------------------------------------------------------------------
# Template ids of the session layer (iLinkBinary schema id 8)
# --------------------------------------------------------------------------
NEGOTIATE = 500
NEGOTIATION_RESPONSE = 501
NEGOTIATION_REJECT = 502
ESTABLISH = 503
ESTABLISHMENT_ACK = 504
ESTABLISHMENT_REJECT = 505
SEQUENCE = 506
TERMINATE = 507
RETRANSMIT_REQUEST = 508
RETRANSMISSION = 509
RETRANSMIT_REJECT = 510
NOT_APPLIED = 513
SESSION_TEMPLATES = frozenset(
    (
        NEGOTIATE, NEGOTIATION_RESPONSE, NEGOTIATION_REJECT, ESTABLISH, ESTABLISHMENT_ACK,
        ESTABLISHMENT_REJECT, SEQUENCE, TERMINATE, RETRANSMIT_REQUEST, RETRANSMISSION,
        RETRANSMIT_REJECT, NOT_APPLIED,
    )
)

MAX_RETRANSMIT = 2500  # CME: at most 2500 messages per RetransmitRequest
UINT64_NULL = 2**64 - 1
FTI_PRIMARY = 1
STALE_REQUEST_NS = 5_000_000_000  # CME rejects a RequestTimestamp older than 5 s

# Terminate error codes (CME's list)
TERM_FINISHED = 0
TERM_UNNEGOTIATED = 2
TERM_NOT_ESTABLISHED = 3
TERM_INVALID_NEXT_SEQ = 10
TERM_INVALID_MSG_SEQ = 11
TERM_INVALID_UUID = 13
TERM_INVALID_SOFH = 18
TERM_DECODING_ERROR = 19
TERM_KEEPALIVE_LAPSED = 20
TERM_OTHER = 25

# Negotiate / Establish reject error codes (CME's list)
REJ_HMAC_NOT_AUTHENTICATED = 0
REJ_INVALID_UUID = 2
REJ_INVALID_TIMESTAMP = 3
REJ_SESSION_BLOCKED = 10
REJ_INVALID_KEEPALIVE = 11
REJ_OTHER = 26

# RetransmitReject error codes used by our server
RTX_REJ_OUT_OF_RANGE = 1
RTX_REJ_TOO_MANY = 2
RTX_REJ_UNKNOWN_UUID = 3

# Shared sequence array
SEQ_NEXT_RECV = 0  # next SeqNum expected from the peer
SEQ_NEXT_SEND = 1  # SeqNum of the next business message we send
SEQ_RECOVERING = 2  # 1 while a retransmission is outstanding: the hot path stands aside
SEQ_UUID = 3  # UUID of the current session (as int64 bits)
N_SEQ = 8


def new_seq_array() -> np.ndarray:
    seq = np.zeros(N_SEQ, dtype=np.int64)
    seq[SEQ_NEXT_RECV] = 1
    seq[SEQ_NEXT_SEND] = 1
    return seq


class SessionState(IntEnum):
    DISCONNECTED = 0  # no transport
    NEGOTIATING = 1  # Negotiate sent, waiting for NegotiationResponse
    ESTABLISHING = 2  # Establish sent, waiting for EstablishmentAck
    ESTABLISHED = 3
    TERMINATING = 4  # Terminate sent, waiting for the peer's Terminate
    TERMINATED = 5  # done: the adapter closes the transport


class NotAppliedPolicy(IntEnum):
    GAP_FILL = 0  # answer NotApplied with Sequence: the requests are dropped
    RESEND = 1  # resend the stored business messages with their SeqNums


class Verdict(IntEnum):
    """What to do with one inbound business message."""

    DELIVER = 0  # hand it to the application now
    QUEUE = 1  # keep it: retransmitted messages must be delivered first
    DROP = 2  # duplicate or unexpected: ignore


# --------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------
@dataclass(slots=True)
class Send:
    template_id: int
    fields: dict[str, Any]


@dataclass(slots=True)
class Established:
    uuid: int
    keepalive_ms: int
    next_recv: int  # peer's NextSeqNo
    previous_uuid: int
    previous_seq: int
    renegotiated: bool  # True when this UUID was negotiated on this connection


@dataclass(slots=True)
class Rejected:
    stage: str  # "negotiate" | "establish"
    reason: str
    error_code: int


@dataclass(slots=True)
class Terminated:
    reason: str
    error_code: int
    by_peer: bool
    cancel_on_disconnect: bool = False  # server side: an involuntary end of a COD session


@dataclass(slots=True)
class NotApplied:
    """The peer did not apply our business messages [from_seq, from_seq + count)."""

    from_seq: int
    count: int
    resend: bool  # True: the adapter resends them; False: gap-filled, they are lost


@dataclass(slots=True)
class RetransmitRequested:
    """Server side: send Retransmission then stored messages [from_seq, from_seq + count)."""

    uuid: int
    from_seq: int
    count: int


@dataclass(slots=True)
class RecoveryDone:
    """Client side: the retransmission finished; ``complete`` is False if messages were lost."""

    complete: bool
    lost: int = 0


@dataclass(slots=True)
class Authenticated:
    """Server side: Negotiate accepted for (session, firm)."""

    session: str
    firm: str
    uuid: int


# --------------------------------------------------------------------------
# Credentials and signatures
# --------------------------------------------------------------------------
def decode_secret(secret: str | bytes) -> bytes:
    """CME's secret key is base64url text: decode it (padding optional)."""
    raw = secret.encode("ascii") if isinstance(secret, str) else bytes(secret)
    raw = raw.strip()
    try:
        return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("secret key is not base64url text") from exc


def canonical_negotiate(request_timestamp: int, uuid: int, session: str, firm: str) -> str:
    return f"{request_timestamp}\n{uuid}\n{session}\n{firm}"


def canonical_establish(
    request_timestamp: int,
    uuid: int,
    session: str,
    firm: str,
    trading_system_name: str,
    trading_system_version: str,
    trading_system_vendor: str,
    next_seq_no: int,
    keepalive_ms: int,
) -> str:
    return (
        f"{request_timestamp}\n{uuid}\n{session}\n{firm}\n{trading_system_name}\n"
        f"{trading_system_version}\n{trading_system_vendor}\n{next_seq_no}\n{keepalive_ms}"
    )


def sign(canonical: str, key: bytes) -> bytes:
    """HMAC-SHA256 of the canonical request: the 32 bytes of HMACSignature."""
    return hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).digest()


class Credentials:
    """Access key id + decoded secret key. Never printed: repr/str show neither."""

    __slots__ = ("_access_key_id", "_key")

    def __init__(self, access_key_id: str, secret_key: str | bytes) -> None:
        if not access_key_id:
            raise ValueError("empty access key id")
        self._access_key_id = access_key_id
        self._key = decode_secret(secret_key)
        if not self._key:
            raise ValueError("empty secret key")

    @classmethod
    def from_env(
        cls,
        environ: Any,
        access_key_var: str = "NANOARB_ILINK_ACCESS_KEY",
        secret_var: str = "NANOARB_ILINK_SECRET_KEY",
    ) -> Credentials:
        """Read both from the environment (``os.environ`` or a mapping)."""
        key_id = environ.get(access_key_var, "")
        secret = environ.get(secret_var, "")
        if not key_id or not secret:
            raise KeyError(f"set {access_key_var} and {secret_var} in the environment")
        return cls(key_id, secret)

    @property
    def access_key_id(self) -> str:
        return self._access_key_id

    def sign(self, canonical: str) -> bytes:
        return sign(canonical, self._key)

    def verify(self, canonical: str, signature: bytes) -> bool:
        return hmac.compare_digest(self.sign(canonical), bytes(signature)[:32])

    def __repr__(self) -> str:
        return "Credentials(access_key_id=<hidden>, secret_key=<hidden>)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("credentials are not picklable")


@dataclass(frozen=True, slots=True)
class SessionIdentity:
    """Who we are on the wire (no secrets here)."""

    session: str  # Session ID, 3 chars
    firm: str  # Firm ID, up to 5 chars
    trading_system_name: str = "nanoarb"
    trading_system_version: str = "0.1"
    trading_system_vendor: str = "nanoarb"


class KeyStore:
    """Server side: access key id -> (credentials, session, firm, cancel_on_disconnect)."""

    __slots__ = ("_keys",)

    def __init__(self) -> None:
        self._keys: dict[str, tuple[Credentials, str, str, bool]] = {}

    def add(
        self, credentials: Credentials, session: str, firm: str, cancel_on_disconnect: bool = True
    ) -> None:
        self._keys[credentials.access_key_id] = (credentials, session, firm, cancel_on_disconnect)

    def lookup(self, access_key_id: str) -> tuple[Credentials, str, str, bool] | None:
        return self._keys.get(access_key_id)

    def __repr__(self) -> str:
        return f"KeyStore(<{len(self._keys)} keys hidden>)"


# --------------------------------------------------------------------------
# Outbound store: business messages kept for retransmission / resend
# --------------------------------------------------------------------------
class OutboundStore:
    """The last ``capacity`` business frames we sent, by SeqNum (per UUID)."""

    __slots__ = ("_first", "_frames", "capacity", "uuid")

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = int(capacity)
        self._frames: deque[bytes] = deque()
        self._first = 1  # SeqNum of _frames[0]
        self.uuid = 0

    def reset(self, uuid: int, first_seq: int = 1) -> None:
        self.uuid = uuid
        self._frames.clear()
        self._first = first_seq

    def put(self, seq: int, frame: bytes) -> None:
        """Store the frame sent with ``seq`` (SeqNums must be consecutive)."""
        if self._frames and seq != self._first + len(self._frames):
            # a jump (e.g. after a gap fill): restart the window at seq
            self._frames.clear()
        if not self._frames:
            self._first = seq
        self._frames.append(bytes(frame))
        if len(self._frames) > self.capacity:
            self._frames.popleft()
            self._first += 1

    def first_seq(self) -> int:
        return self._first

    def last_seq(self) -> int:
        return self._first + len(self._frames) - 1

    def get(self, seq: int) -> bytes | None:
        i = seq - self._first
        if 0 <= i < len(self._frames):
            return self._frames[i]
        return None

    def get_range(self, from_seq: int, count: int) -> list[bytes] | None:
        """All frames [from_seq, from_seq + count) or None if any is missing."""
        if count <= 0 or from_seq < self._first or from_seq + count - 1 > self.last_seq():
            return None
        i = from_seq - self._first
        return [self._frames[j] for j in range(i, i + count)]

    def __len__(self) -> int:
        return len(self._frames)


# --------------------------------------------------------------------------
# Common session core
# --------------------------------------------------------------------------
class _FixpSession:
    """Keepalive timers, outbox/events, terminate handling (both sides)."""

    def __init__(self, keepalive_ms: int, seq: np.ndarray | None) -> None:
        self.seq = seq if seq is not None else new_seq_array()
        self.state = SessionState.DISCONNECTED
        self.keepalive_ms = int(keepalive_ms)
        self.uuid = 0
        self.outbox: list[Send] = []
        self.events: list[Any] = []
        self.last_sent_ns = 0
        self.last_recv_ns = 0
        self._lapsed_sent_ns = -1  # when we warned with Lapsed=1 (-1: not warned)
        self._deadline_ns = 0  # handshake / terminate timeout
        self.keepalives_sent = 0
        self.lapsed_warnings = 0

    # -- sequence numbers in the shared array --------------------------------
    @property
    def next_recv(self) -> int:
        return int(self.seq[SEQ_NEXT_RECV])

    @next_recv.setter
    def next_recv(self, v: int) -> None:
        self.seq[SEQ_NEXT_RECV] = v

    @property
    def next_send(self) -> int:
        return int(self.seq[SEQ_NEXT_SEND])

    @next_send.setter
    def next_send(self, v: int) -> None:
        self.seq[SEQ_NEXT_SEND] = v

    def take_send_seq(self) -> int:
        """SeqNum for a business message sent from Python (the kernels bump the array)."""
        s = self.next_send
        self.next_send = s + 1
        return s

    @property
    def keepalive_ns(self) -> int:
        return self.keepalive_ms * 1_000_000

    @property
    def established(self) -> bool:
        return self.state == SessionState.ESTABLISHED

    # -- output helpers ---------------------------------------------------------
    def _send(self, template_id: int, fields: dict[str, Any], now_ns: int) -> None:
        self.outbox.append(Send(template_id, fields))
        self.last_sent_ns = now_ns

    def drain(self) -> tuple[list[Send], list[Any]]:
        out, ev = self.outbox, self.events
        self.outbox, self.events = [], []
        return out, ev

    def note_sent(self, now_ns: int) -> None:
        """The adapter sent bytes (business messages count as keepalive)."""
        self.last_sent_ns = now_ns

    def note_received(self, now_ns: int) -> None:
        """Any message from the peer resets the lapse timer."""
        self.last_recv_ns = now_ns
        self._lapsed_sent_ns = -1

    def send_sequence(self, now_ns: int, lapsed: bool = False) -> None:
        self._send(
            SEQUENCE,
            {
                "UUID": self.uuid,
                "NextSeqNo": self.next_send,
                "FaultToleranceIndicator": FTI_PRIMARY,
                "KeepAliveIntervalLapsed": 1 if lapsed else 0,
            },
            now_ns,
        )
        self.keepalives_sent += 1

    def terminate(self, reason: str, error_code: int, now_ns: int, wall_ns: int) -> None:
        """Start an orderly end: send Terminate and wait (one keepalive) for the peer's."""
        if self.state in (SessionState.DISCONNECTED, SessionState.TERMINATED):
            return
        self._send(
            TERMINATE,
            {
                "Reason": reason[:48],
                "UUID": self.uuid,
                "RequestTimestamp": wall_ns,
                "ErrorCodes": error_code,
            },
            now_ns,
        )
        self.state = SessionState.TERMINATING
        self._deadline_ns = now_ns + max(self.keepalive_ns, 1_000_000)
        self._terminate_reason = (reason, error_code)

    def _finish(self, reason: str, code: int, by_peer: bool, cod: bool = False) -> None:
        self.state = SessionState.TERMINATED
        self.events.append(Terminated(reason, code, by_peer, cod))

    def _on_terminate(self, f: dict[str, Any], now_ns: int, wall_ns: int) -> None:
        if self.state == SessionState.TERMINATING:
            reason, code = getattr(self, "_terminate_reason", ("", 0))
            self._finish(reason, code, by_peer=False)
            return
        # peer-initiated: answer with Terminate, then the transport closes
        self._send(
            TERMINATE,
            {
                "Reason": "ack",
                "UUID": self.uuid,
                "RequestTimestamp": wall_ns,
                "ErrorCodes": 0,
            },
            now_ns,
        )
        self._finish(str(f.get("Reason") or ""), int(f.get("ErrorCodes") or 0), by_peer=True)

    def _keepalive_timers(self, now_ns: int, wall_ns: int) -> None:
        ka = self.keepalive_ns
        if ka <= 0:
            return
        if self._lapsed_sent_ns >= 0:
            if now_ns - self._lapsed_sent_ns >= ka:
                self.terminate("keepalive interval lapsed", TERM_KEEPALIVE_LAPSED, now_ns, wall_ns)
                self._finish("keepalive interval lapsed", TERM_KEEPALIVE_LAPSED, by_peer=False,
                             cod=self._cod_on_lapse())
                return
        elif now_ns - self.last_recv_ns >= ka:
            self.send_sequence(now_ns, lapsed=True)
            self._lapsed_sent_ns = now_ns
            self.lapsed_warnings += 1
            return
        if now_ns - self.last_sent_ns >= ka:
            self.send_sequence(now_ns)

    def _cod_on_lapse(self) -> bool:
        return False

    def next_timer_ns(self) -> int:
        """Earliest time at which ``on_timer`` has something to do (for pollers that sleep)."""
        if self.state == SessionState.ESTABLISHED:
            ka = self.keepalive_ns
            t = self.last_sent_ns + ka
            lapse_from = self._lapsed_sent_ns if self._lapsed_sent_ns >= 0 else self.last_recv_ns
            t2 = lapse_from + ka
            return min(t, t2)
        if self.state in (SessionState.NEGOTIATING, SessionState.ESTABLISHING,
                          SessionState.TERMINATING):
            return self._deadline_ns
        return 2**62

    def _on_sequence_lapsed(self, f: dict[str, Any], now_ns: int) -> None:
        if int(f.get("KeepAliveIntervalLapsed") or 0) == 1:
            self.send_sequence(now_ns)  # answer the warning to keep the session alive

    def connection_lost(self, now_ns: int) -> None:
        if self.state not in (SessionState.DISCONNECTED, SessionState.TERMINATED):
            self._finish("connection lost", TERM_OTHER, by_peer=True, cod=self._cod_on_drop())
        self.state = SessionState.DISCONNECTED

    def _cod_on_drop(self) -> bool:
        return False


# --------------------------------------------------------------------------
# Client side
# --------------------------------------------------------------------------
class FixpClient(_FixpSession):
    """The customer side of an iLink 3 session (one UUID across reconnects)."""

    def __init__(
        self,
        identity: SessionIdentity,
        credentials: Credentials,
        *,
        keepalive_ms: int = 5000,
        handshake_timeout_ms: int | None = None,
        not_applied: NotAppliedPolicy = NotAppliedPolicy.GAP_FILL,
        recovery_timeout_ms: int | None = None,
        seq: np.ndarray | None = None,
    ) -> None:
        super().__init__(keepalive_ms, seq)
        self.identity = identity
        self._credentials = credentials
        self.requested_keepalive_ms = int(keepalive_ms)
        self.handshake_timeout_ns = (
            int(handshake_timeout_ms if handshake_timeout_ms is not None else 2 * keepalive_ms)
            * 1_000_000
        )
        self.recovery_timeout_ns = (
            int(recovery_timeout_ms if recovery_timeout_ms is not None else 4 * keepalive_ms)
            * 1_000_000
        )
        self.not_applied_policy = NotAppliedPolicy(not_applied)
        self.negotiated = False
        self._request_ts = 0
        self._negotiated_now = False
        # retransmission bookkeeping (client receives)
        self._rtx_next = 0  # next SeqNum expected in the running retransmission
        self._rtx_end = 0  # last SeqNum of the running retransmission (inclusive)
        self._rtx_deadline = 0
        self._rtx_pending: deque[tuple[int, int]] = deque()  # more (from, count) to request
        self._rtx_lost = 0
        self.queue: list[tuple[int, Any]] = []  # real-time (seq, payload) held during recovery
        self.duplicates = 0
        self.retransmit_requests = 0
        self.last_uuid = 0  # UUID before a renegotiation (for RetransmitRequest.LastUUID)

    def __repr__(self) -> str:
        return (
            f"FixpClient(session={self.identity.session!r}, firm={self.identity.firm!r}, "
            f"state={self.state.name}, uuid={self.uuid}, next_send={self.next_send}, "
            f"next_recv={self.next_recv})"
        )

    @property
    def recovering(self) -> bool:
        return bool(self.seq[SEQ_RECOVERING])

    # -- connection lifecycle ----------------------------------------------------
    def start(self, now_ns: int, wall_ns: int, *, new_uuid: bool = False) -> None:
        """Transport connected: Negotiate (first time / new UUID) or re-Establish."""
        self.last_recv_ns = now_ns
        self.last_sent_ns = now_ns
        self._lapsed_sent_ns = -1
        self._clear_recovery()
        if new_uuid or not self.negotiated:
            self._negotiate(now_ns, wall_ns)
        else:
            self._establish(now_ns, wall_ns)

    def _negotiate(self, now_ns: int, wall_ns: int) -> None:
        uuid = wall_ns // 1000  # CME recommends microseconds since the epoch
        if uuid <= self.uuid:
            uuid = self.uuid + 1  # UUIDs must grow
        if self.uuid:
            self.last_uuid = self.uuid
        self.uuid = uuid
        self.seq[SEQ_UUID] = np.int64(np.uint64(uuid).view(np.int64))
        self.negotiated = False
        self._request_ts = wall_ns
        ident = self.identity
        sig = self._credentials.sign(canonical_negotiate(wall_ns, uuid, ident.session, ident.firm))
        self._send(
            NEGOTIATE,
            {
                "HMACSignature": sig,
                "AccessKeyID": self._credentials.access_key_id,
                "UUID": uuid,
                "RequestTimestamp": wall_ns,
                "Session": ident.session,
                "Firm": ident.firm,
                "Credentials": b"",
            },
            now_ns,
        )
        self.state = SessionState.NEGOTIATING
        self._deadline_ns = now_ns + self.handshake_timeout_ns

    def _establish(self, now_ns: int, wall_ns: int) -> None:
        ident = self.identity
        self._request_ts = wall_ns
        ka = self.requested_keepalive_ms
        sig = self._credentials.sign(
            canonical_establish(
                wall_ns, self.uuid, ident.session, ident.firm, ident.trading_system_name,
                ident.trading_system_version, ident.trading_system_vendor, self.next_send, ka,
            )
        )
        self._send(
            ESTABLISH,
            {
                "HMACSignature": sig,
                "AccessKeyID": self._credentials.access_key_id,
                "TradingSystemName": ident.trading_system_name,
                "TradingSystemVersion": ident.trading_system_version,
                "TradingSystemVendor": ident.trading_system_vendor,
                "UUID": self.uuid,
                "RequestTimestamp": wall_ns,
                "NextSeqNo": self.next_send,
                "Session": ident.session,
                "Firm": ident.firm,
                "KeepAliveInterval": ka,
                "Credentials": b"",
            },
            now_ns,
        )
        self.state = SessionState.ESTABLISHING
        self._deadline_ns = now_ns + self.handshake_timeout_ns

    # -- inbound session messages -------------------------------------------------
    def on_message(self, template_id: int, f: dict[str, Any], now_ns: int, wall_ns: int) -> None:
        """A decoded session-layer message from the exchange."""
        self.note_received(now_ns)
        st = self.state
        if template_id == NEGOTIATION_RESPONSE:
            if st != SessionState.NEGOTIATING or not self._echo_ok(f):
                return
            self.negotiated = True
            self._negotiated_now = True
            # a new UUID starts both sequences at 1
            self.next_send = 1
            self.next_recv = 1
            self._establish(now_ns, wall_ns)
        elif template_id == NEGOTIATION_REJECT:
            if st != SessionState.NEGOTIATING:
                return
            self.state = SessionState.TERMINATED
            self.events.append(
                Rejected("negotiate", str(f.get("Reason") or ""), int(f.get("ErrorCodes") or 0))
            )
        elif template_id == ESTABLISHMENT_ACK:
            if st != SessionState.ESTABLISHING or not self._echo_ok(f):
                return
            self._on_established(f, now_ns, wall_ns)
        elif template_id == ESTABLISHMENT_REJECT:
            if st != SessionState.ESTABLISHING:
                return
            self.state = SessionState.TERMINATED
            code = int(f.get("ErrorCodes") or 0)
            if code == REJ_INVALID_UUID:
                self.negotiated = False  # the exchange forgot this UUID: negotiate a new one
            self.events.append(Rejected("establish", str(f.get("Reason") or ""), code))
        elif template_id == SEQUENCE:
            if st != SessionState.ESTABLISHED:
                return
            self._on_sequence(f, now_ns, wall_ns)
        elif template_id == TERMINATE:
            self._on_terminate(f, now_ns, wall_ns)
        elif template_id == RETRANSMISSION:
            self._on_retransmission(f, now_ns)
        elif template_id == RETRANSMIT_REJECT:
            self._on_retransmit_reject(f, now_ns, wall_ns)
        elif template_id == NOT_APPLIED:
            self._on_not_applied(f, now_ns)

    def _echo_ok(self, f: dict[str, Any]) -> bool:
        return int(f.get("UUID") or 0) == self.uuid and int(
            f.get("RequestTimestamp") or 0
        ) == self._request_ts

    def _on_established(self, f: dict[str, Any], now_ns: int, wall_ns: int) -> None:
        self.state = SessionState.ESTABLISHED
        ka = int(f.get("KeepAliveInterval") or self.requested_keepalive_ms)
        self.keepalive_ms = ka
        server_next = int(f.get("NextSeqNo") or 1)
        prev_uuid = int(f.get("PreviousUUID") or 0)
        prev_seq = int(f.get("PreviousSeqNo") or 0)
        renegotiated = self._negotiated_now
        self._negotiated_now = False
        self.events.append(
            Established(self.uuid, ka, server_next, prev_uuid, prev_seq, renegotiated)
        )
        if server_next < self.next_recv:
            self.terminate(
                f"NextSeqNo {server_next} below expected {self.next_recv}",
                TERM_INVALID_NEXT_SEQ, now_ns, wall_ns,
            )
            return
        if server_next > self.next_recv:
            self._gap(self.next_recv, server_next - self.next_recv, now_ns, wall_ns)
            self.next_recv = server_next

    def _on_sequence(self, f: dict[str, Any], now_ns: int, wall_ns: int) -> None:
        nxt = int(f.get("NextSeqNo") or 0)
        if nxt < self.next_recv:
            self.terminate(
                f"NextSeqNo {nxt} below expected {self.next_recv}",
                TERM_INVALID_MSG_SEQ, now_ns, wall_ns,
            )
            return
        if nxt > self.next_recv:
            self._gap(self.next_recv, nxt - self.next_recv, now_ns, wall_ns)
            self.next_recv = nxt
        self._on_sequence_lapsed(f, now_ns)

    # -- business messages ------------------------------------------------------
    def on_business(self, seq: int, poss_retrans: bool, now_ns: int, wall_ns: int) -> Verdict:
        """Sequence one inbound business message the hot path did not take."""
        self.note_received(now_ns)
        if poss_retrans:
            if self.recovering and seq == self._rtx_next:
                self._rtx_next += 1
                if self._rtx_next > self._rtx_end:
                    self._next_retransmission(now_ns, wall_ns)
                return Verdict.DELIVER
            self.duplicates += 1
            return Verdict.DROP
        nr = self.next_recv
        if seq < nr:
            self.duplicates += 1
            return Verdict.DROP
        if seq > nr:
            self._gap(nr, seq - nr, now_ns, wall_ns)
        self.next_recv = seq + 1
        return Verdict.QUEUE if self.recovering else Verdict.DELIVER

    def _gap(self, from_seq: int, count: int, now_ns: int, wall_ns: int) -> None:
        while count > 0:
            n = min(count, MAX_RETRANSMIT)
            self._rtx_pending.append((from_seq, n))
            from_seq += n
            count -= n
        if not self.recovering:
            self.seq[SEQ_RECOVERING] = 1
            self._next_retransmission(now_ns, wall_ns)

    def _next_retransmission(self, now_ns: int, wall_ns: int) -> None:
        if not self._rtx_pending:
            lost = self._rtx_lost
            self._clear_recovery()
            self.events.append(RecoveryDone(lost == 0, lost))
            return
        frm, n = self._rtx_pending.popleft()
        self._rtx_next = frm
        self._rtx_end = frm + n - 1
        self._rtx_deadline = now_ns + self.recovery_timeout_ns
        self._send(
            RETRANSMIT_REQUEST,
            {
                "UUID": self.uuid,
                "LastUUID": None,
                "RequestTimestamp": wall_ns,
                "FromSeqNo": frm,
                "MsgCount": n,
            },
            now_ns,
        )
        self.retransmit_requests += 1

    def _clear_recovery(self) -> None:
        self.seq[SEQ_RECOVERING] = 0
        self._rtx_pending.clear()
        self._rtx_next = self._rtx_end = 0
        self._rtx_lost = 0

    def connection_lost(self, now_ns: int) -> None:
        if self.recovering:
            # what was not delivered yet is asked for again after re-establishing:
            # restart the expected SeqNum at the first missing one, drop the queue
            self.next_recv = self._rtx_next
            self.queue.clear()
            self._clear_recovery()
        super().connection_lost(now_ns)

    def take_queue(self) -> list[tuple[int, Any]]:
        """Real-time messages held during the recovery, in SeqNum order."""
        q = sorted(self.queue, key=lambda t: t[0])
        self.queue = []
        return q

    def _on_retransmission(self, f: dict[str, Any], now_ns: int) -> None:
        if not self.recovering:
            return
        frm = int(f.get("FromSeqNo") or 0)
        n = int(f.get("MsgCount") or 0)
        if frm == self._rtx_next and n >= 0 and frm + n - 1 < self._rtx_end:
            # the exchange has fewer than we asked for: the rest is lost
            self._rtx_lost += self._rtx_end - (frm + n - 1)
            self._rtx_end = frm + n - 1
        self._rtx_deadline = now_ns + self.recovery_timeout_ns

    def _on_retransmit_reject(self, f: dict[str, Any], now_ns: int, wall_ns: int) -> None:
        if not self.recovering:
            return
        self._rtx_lost += self._rtx_end - self._rtx_next + 1
        self._next_retransmission(now_ns, wall_ns)

    def _on_not_applied(self, f: dict[str, Any], now_ns: int) -> None:
        frm = int(f.get("FromSeqNo") or 0)
        n = int(f.get("MsgCount") or 0)
        resend = self.not_applied_policy == NotAppliedPolicy.RESEND
        self.events.append(NotApplied(frm, n, resend))
        if not resend:
            self.send_sequence(now_ns)  # gap fill: the exchange skips to our NextSeqNo

    def resend_failed(self, now_ns: int) -> None:
        """The adapter could not resend (frames no longer stored): gap-fill instead."""
        self.send_sequence(now_ns)

    # -- timers -------------------------------------------------------------------
    def on_timer(self, now_ns: int, wall_ns: int) -> None:
        st = self.state
        if st in (SessionState.NEGOTIATING, SessionState.ESTABLISHING):
            if now_ns >= self._deadline_ns:
                stage = "negotiate" if st == SessionState.NEGOTIATING else "establish"
                self.state = SessionState.TERMINATED
                self.events.append(Rejected(stage, "no response (timeout)", -1))
        elif st == SessionState.ESTABLISHED:
            if self.recovering and now_ns >= self._rtx_deadline:
                # the retransmission stalled: count the rest as lost and move on
                self._rtx_lost += max(self._rtx_end - self._rtx_next + 1, 0)
                self._next_retransmission(now_ns, wall_ns)
            self._keepalive_timers(now_ns, wall_ns)
        elif st == SessionState.TERMINATING and now_ns >= self._deadline_ns:
            reason, code = getattr(self, "_terminate_reason", ("", 0))
            self._finish(reason, code, by_peer=False)


# --------------------------------------------------------------------------
# Server side (the exchange)
# --------------------------------------------------------------------------
@dataclass
class ServerSessionRecord:
    """What the exchange remembers about one (session, firm) across connections."""

    session: str
    firm: str
    uuid: int = 0
    next_recv: int = 1
    next_send: int = 1
    previous_uuid: int = 0
    previous_seq: int = 0
    last_request_ts: int = 0
    store: OutboundStore = field(default_factory=OutboundStore)
    not_applied: list[list[int]] = field(default_factory=list)  # [from, to] inclusive
    cancel_on_disconnect: bool = True


class FixpServer(_FixpSession):
    """The exchange side of one TCP connection."""

    def __init__(
        self,
        keys: KeyStore,
        records: dict[tuple[str, str], ServerSessionRecord],
        *,
        min_keepalive_ms: int = 100,
        max_keepalive_ms: int = 60_000,
        check_timestamp: bool = True,
        handshake_timeout_ms: int = 10_000,
        cod_on_terminate: bool = False,
    ) -> None:
        super().__init__(0, None)
        self.keys = keys
        self.records = records
        self.record: ServerSessionRecord | None = None
        self.min_keepalive_ms = min_keepalive_ms
        self.max_keepalive_ms = max_keepalive_ms
        self.check_timestamp = check_timestamp
        self.handshake_timeout_ns = handshake_timeout_ms * 1_000_000
        self.cod_on_terminate = cod_on_terminate
        self.duplicates = 0
        self._cred: Credentials | None = None

    def __repr__(self) -> str:
        r = self.record
        who = f"{r.session}/{r.firm}" if r else "?"
        return f"FixpServer(session={who}, state={self.state.name}, uuid={self.uuid})"

    def start(self, now_ns: int) -> None:
        """TCP accepted: wait for Negotiate or Establish."""
        self.state = SessionState.NEGOTIATING
        self.last_recv_ns = self.last_sent_ns = now_ns
        self._deadline_ns = now_ns + self.handshake_timeout_ns

    # the record owns the sequence numbers so they survive reconnects
    @property
    def next_recv(self) -> int:
        return self.record.next_recv if self.record else 1

    @next_recv.setter
    def next_recv(self, v: int) -> None:
        if self.record:
            self.record.next_recv = v

    @property
    def next_send(self) -> int:
        return self.record.next_send if self.record else 1

    @next_send.setter
    def next_send(self, v: int) -> None:
        if self.record:
            self.record.next_send = v

    def _cod_on_drop(self) -> bool:
        return bool(self.record and self.record.cancel_on_disconnect)

    def _cod_on_lapse(self) -> bool:
        return self._cod_on_drop()

    def _fresh(self, ts: int, wall_ns: int) -> bool:
        return not self.check_timestamp or abs(wall_ns - ts) <= STALE_REQUEST_NS

    def on_message(self, template_id: int, f: dict[str, Any], now_ns: int, wall_ns: int) -> None:
        self.note_received(now_ns)
        st = self.state
        if template_id == NEGOTIATE:
            self._on_negotiate(f, now_ns, wall_ns)
        elif template_id == ESTABLISH:
            self._on_establish(f, now_ns, wall_ns)
        elif st != SessionState.ESTABLISHED:
            if template_id == TERMINATE:
                self._on_terminate(f, now_ns, wall_ns)
            elif st != SessionState.TERMINATING:
                self.terminate("not established", TERM_NOT_ESTABLISHED, now_ns, wall_ns)
        elif template_id == SEQUENCE:
            self._on_client_sequence(f, now_ns)
        elif template_id == TERMINATE:
            self._on_terminate(f, now_ns, wall_ns)
        elif template_id == RETRANSMIT_REQUEST:
            self._on_retransmit_request(f, now_ns, wall_ns)

    def _on_negotiate(self, f: dict[str, Any], now_ns: int, wall_ns: int) -> None:
        uuid = int(f.get("UUID") or 0)
        ts = int(f.get("RequestTimestamp") or 0)

        def reject(reason: str, code: int) -> None:
            self._send(
                NEGOTIATION_REJECT,
                {"Reason": reason, "UUID": uuid, "RequestTimestamp": ts, "ErrorCodes": code,
                 "FaultToleranceIndicator": FTI_PRIMARY},
                now_ns,
            )
            self.events.append(Rejected("negotiate", reason, code))

        if self.state not in (SessionState.NEGOTIATING, SessionState.ESTABLISHING):
            self.terminate("already negotiated", 4, now_ns, wall_ns)
            return
        entry = self.keys.lookup(str(f.get("AccessKeyID") or ""))
        session, firm = str(f.get("Session") or ""), str(f.get("Firm") or "")
        if entry is None:
            reject("unknown access key", REJ_HMAC_NOT_AUTHENTICATED)
            return
        cred, k_session, k_firm, cod = entry
        sig = _sig_bytes(f.get("HMACSignature"))
        if not cred.verify(canonical_negotiate(ts, uuid, session, firm), sig):
            reject("HMAC signature not authenticated", REJ_HMAC_NOT_AUTHENTICATED)
            return
        if (session, firm) != (k_session, k_firm):
            reject("session and firm not authorized for this key", REJ_SESSION_BLOCKED)
            return
        if not self._fresh(ts, wall_ns):
            reject("stale RequestTimestamp", REJ_INVALID_TIMESTAMP)
            return
        rec = self.records.get((session, firm))
        if rec is None:
            rec = ServerSessionRecord(session, firm)
            self.records[(session, firm)] = rec
        if uuid <= rec.uuid:
            reject("UUID not greater than the last one", REJ_INVALID_UUID)
            return
        # a new UUID: sequences restart at 1, the old stream stays for PreviousUUID
        rec.previous_uuid = rec.uuid
        rec.previous_seq = rec.next_send - 1 if rec.uuid else 0
        rec.uuid = uuid
        rec.next_recv = 1
        rec.next_send = 1
        rec.not_applied.clear()
        rec.store.reset(uuid, 1)
        rec.last_request_ts = ts
        rec.cancel_on_disconnect = cod
        self.record = rec
        self.uuid = uuid
        self._cred = cred
        self._send(
            NEGOTIATION_RESPONSE,
            {"UUID": uuid, "RequestTimestamp": ts, "SecretKeySecureIDExpiration": None,
             "FaultToleranceIndicator": FTI_PRIMARY, "PreviousSeqNo": rec.previous_seq,
             "PreviousUUID": rec.previous_uuid, "Credentials": b""},
            now_ns,
        )
        self.events.append(Authenticated(session, firm, uuid))
        self.state = SessionState.ESTABLISHING
        self._deadline_ns = now_ns + self.handshake_timeout_ns

    def _on_establish(self, f: dict[str, Any], now_ns: int, wall_ns: int) -> None:
        uuid = int(f.get("UUID") or 0)
        ts = int(f.get("RequestTimestamp") or 0)
        next_seq = int(f.get("NextSeqNo") or 0)

        def reject(reason: str, code: int) -> None:
            nxt = self.record.next_recv if self.record else 1
            self._send(
                ESTABLISHMENT_REJECT,
                {"Reason": reason, "UUID": uuid, "RequestTimestamp": ts, "NextSeqNo": nxt,
                 "ErrorCodes": code, "FaultToleranceIndicator": FTI_PRIMARY},
                now_ns,
            )
            self.events.append(Rejected("establish", reason, code))

        if self.state == SessionState.ESTABLISHED:
            self.terminate("already established", 6, now_ns, wall_ns)
            return
        entry = self.keys.lookup(str(f.get("AccessKeyID") or ""))
        session, firm = str(f.get("Session") or ""), str(f.get("Firm") or "")
        if entry is None:
            reject("unknown access key", REJ_HMAC_NOT_AUTHENTICATED)
            return
        cred, k_session, k_firm, cod = entry
        ka = int(f.get("KeepAliveInterval") or 0)
        canonical = canonical_establish(
            ts, uuid, session, firm, str(f.get("TradingSystemName") or ""),
            str(f.get("TradingSystemVersion") or ""), str(f.get("TradingSystemVendor") or ""),
            next_seq, ka,
        )
        if not cred.verify(canonical, _sig_bytes(f.get("HMACSignature"))):
            reject("HMAC signature not authenticated", REJ_HMAC_NOT_AUTHENTICATED)
            return
        if (session, firm) != (k_session, k_firm):
            reject("session and firm not authorized for this key", REJ_SESSION_BLOCKED)
            return
        if not self._fresh(ts, wall_ns):
            reject("stale RequestTimestamp", REJ_INVALID_TIMESTAMP)
            return
        rec = self.records.get((session, firm))
        if rec is None or rec.uuid != uuid or uuid == 0:
            reject("UUID not negotiated", REJ_INVALID_UUID)
            return
        if not self.min_keepalive_ms <= ka <= self.max_keepalive_ms:
            reject("KeepAliveInterval out of range", REJ_INVALID_KEEPALIVE)
            return
        self.record = rec
        self.uuid = uuid
        self._cred = cred
        rec.cancel_on_disconnect = cod
        self.keepalive_ms = ka
        self.state = SessionState.ESTABLISHED
        self.last_recv_ns = self.last_sent_ns = now_ns
        self._send(
            ESTABLISHMENT_ACK,
            {"UUID": uuid, "RequestTimestamp": ts, "NextSeqNo": rec.next_send,
             "PreviousSeqNo": rec.previous_seq if rec.previous_uuid else rec.next_send - 1,
             "PreviousUUID": rec.previous_uuid or uuid, "KeepAliveInterval": ka,
             "SecretKeySecureIDExpiration": None, "FaultToleranceIndicator": FTI_PRIMARY},
            now_ns,
        )
        self.events.append(Established(uuid, ka, next_seq, rec.previous_uuid, rec.previous_seq,
                                       False))
        if next_seq > rec.next_recv:
            self._not_applied(rec.next_recv, next_seq - rec.next_recv, now_ns)
            rec.next_recv = next_seq

    def _not_applied(self, from_seq: int, count: int, now_ns: int) -> None:
        assert self.record is not None
        self.record.not_applied.append([from_seq, from_seq + count - 1])
        self._send(NOT_APPLIED, {"UUID": self.uuid, "FromSeqNo": from_seq, "MsgCount": count},
                   now_ns)

    def _on_client_sequence(self, f: dict[str, Any], now_ns: int) -> None:
        rec = self.record
        assert rec is not None
        nxt = int(f.get("NextSeqNo") or 0)
        if nxt > rec.next_recv:
            self._not_applied(rec.next_recv, nxt - rec.next_recv, now_ns)
            rec.next_recv = nxt
        else:
            # a gap fill (or a keepalive after NotApplied): the client will not resend
            rec.not_applied = [r for r in rec.not_applied if r[0] >= nxt]
        self._on_sequence_lapsed(f, now_ns)

    def on_business(self, seq: int, now_ns: int) -> Verdict:
        """Sequence one business message from the client (DELIVER = apply it)."""
        self.note_received(now_ns)
        rec = self.record
        if rec is None or self.state != SessionState.ESTABLISHED:
            return Verdict.DROP
        nr = rec.next_recv
        if seq == nr:
            rec.next_recv = nr + 1
            return Verdict.DELIVER
        if seq > nr:
            self._not_applied(nr, seq - nr, now_ns)
            rec.next_recv = seq + 1
            return Verdict.DELIVER
        for r in rec.not_applied:  # a resend of a message we reported NotApplied
            if r[0] <= seq <= r[1]:
                if r[0] == r[1]:
                    rec.not_applied.remove(r)
                elif seq == r[0]:
                    r[0] += 1
                elif seq == r[1]:
                    r[1] -= 1
                else:
                    rec.not_applied.append([seq + 1, r[1]])
                    r[1] = seq - 1
                return Verdict.DELIVER
        self.duplicates += 1
        return Verdict.DROP

    def take_send_seq(self) -> int:
        assert self.record is not None
        s = self.record.next_send
        self.record.next_send = s + 1
        return s

    def _on_retransmit_request(self, f: dict[str, Any], now_ns: int, wall_ns: int) -> None:
        rec = self.record
        assert rec is not None
        uuid = int(f.get("UUID") or 0)
        last_uuid = f.get("LastUUID")
        ts = int(f.get("RequestTimestamp") or 0)
        frm = int(f.get("FromSeqNo") or 0)
        n = int(f.get("MsgCount") or 0)

        def reject(reason: str, code: int) -> None:
            self._send(
                RETRANSMIT_REJECT,
                {"Reason": reason, "UUID": uuid, "LastUUID": last_uuid, "RequestTimestamp": ts,
                 "ErrorCodes": code},
                now_ns,
            )

        if uuid != self.uuid or (last_uuid not in (None, UINT64_NULL, uuid)):
            reject("unknown UUID", RTX_REJ_UNKNOWN_UUID)
            return
        if n <= 0 or n > MAX_RETRANSMIT:
            reject("MsgCount out of range", RTX_REJ_TOO_MANY)
            return
        last = rec.next_send - 1
        if frm < 1 or frm > last:
            reject("FromSeqNo out of range", RTX_REJ_OUT_OF_RANGE)
            return
        n = min(n, last - frm + 1)
        if rec.store.get_range(frm, n) is None:
            reject("messages no longer available", RTX_REJ_OUT_OF_RANGE)
            return
        self._send(
            RETRANSMISSION,
            {"UUID": uuid, "LastUUID": last_uuid, "RequestTimestamp": ts, "FromSeqNo": frm,
             "MsgCount": n},
            now_ns,
        )
        self.events.append(RetransmitRequested(uuid, frm, n))

    def on_timer(self, now_ns: int, wall_ns: int) -> None:
        st = self.state
        if st in (SessionState.NEGOTIATING, SessionState.ESTABLISHING):
            if now_ns >= self._deadline_ns:
                self._finish("handshake timeout", TERM_NOT_ESTABLISHED, by_peer=False)
        elif st == SessionState.ESTABLISHED:
            self._keepalive_timers(now_ns, wall_ns)
        elif st == SessionState.TERMINATING and now_ns >= self._deadline_ns:
            reason, code = getattr(self, "_terminate_reason", ("", 0))
            self._finish(reason, code, by_peer=False, cod=self._cod_on_drop())

    def _on_terminate(self, f: dict[str, Any], now_ns: int, wall_ns: int) -> None:
        was_terminating = self.state == SessionState.TERMINATING
        super()._on_terminate(f, now_ns, wall_ns)
        # a Terminate the client starts is voluntary: COD only if configured so
        if self.events and isinstance(self.events[-1], Terminated):
            self.events[-1].cancel_on_disconnect = (
                self._cod_on_drop() and (self.cod_on_terminate or was_terminating)
            )


def _sig_bytes(v: Any) -> bytes:
    """HMACSignature as 32 bytes: a decoder strips the trailing NULs of a char field,
    but they are part of the signature."""
    if isinstance(v, bytes | bytearray):
        raw = bytes(v)
    elif isinstance(v, str):
        raw = v.encode("latin-1")
    else:
        raw = b""
    return raw.ljust(32, b"\x00")
