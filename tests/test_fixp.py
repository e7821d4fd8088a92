"""core.fixp: the iLink 3 FIXP session state machine, client against server, in memory.

Messages go through the real frame codec (``FlatCodec``) in both directions, so
every exchange here is what would cross the socket. Time is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import fixp
from core.sbe.ilink3 import flat_codec

KEY_ID = "AKIDEXAMPLE000000001"
RAW_KEY = bytes(range(32))
SECRET = base64.urlsafe_b64encode(RAW_KEY).decode().rstrip("=")  # CME hands out base64url
MS = 1_000_000
WALL0 = 1_700_000_000_000_000_000


def creds(secret: str = SECRET, key_id: str = KEY_ID) -> fixp.Credentials:
    return fixp.Credentials(key_id, secret)


def keystore(cod: bool = True) -> fixp.KeyStore:
    ks = fixp.KeyStore()
    ks.add(creds(), "ABC", "FIRM1", cancel_on_disconnect=cod)
    return ks


class Wire:
    """Client and server joined by the frame codec; ``t`` is the shared time (ns)."""

    def __init__(self, *, client: fixp.FixpClient | None = None, cod: bool = True,
                 keepalive_ms: int = 1000, policy: fixp.NotAppliedPolicy = (
                     fixp.NotAppliedPolicy.GAP_FILL)) -> None:
        self.t = 1_000 * MS
        self.client = client or fixp.FixpClient(
            fixp.SessionIdentity("ABC", "FIRM1"), creds(), keepalive_ms=keepalive_ms,
            not_applied=policy,
        )
        self.records: dict[tuple[str, str], fixp.ServerSessionRecord] = {}
        self.keys = keystore(cod)
        self.server = self.new_server()
        self.to_server: list[tuple[int, dict[str, Any]]] = []
        self.to_client: list[tuple[int, dict[str, Any]]] = []
        self.client_events: list[Any] = []
        self.server_events: list[Any] = []

    def new_server(self) -> fixp.FixpServer:
        s = fixp.FixpServer(self.keys, self.records)
        s.start(self.t)
        return s

    @property
    def wall(self) -> int:
        return WALL0 + self.t

    @staticmethod
    def _wire(sends: list[fixp.Send]) -> list[tuple[int, dict[str, Any]]]:
        out = []
        for s in sends:
            frame = flat_codec(s.template_id).encode(s.fields)
            out.append((s.template_id, flat_codec(s.template_id).decode(frame)))
        return out

    def collect(self) -> None:
        out, ev = self.client.drain()
        self.to_server += self._wire(out)
        self.client_events += ev
        out, ev = self.server.drain()
        self.to_client += self._wire(out)
        self.server_events += ev

    def pump(self) -> None:
        """Deliver messages both ways until both sides are quiet."""
        self.collect()
        while self.to_server or self.to_client:
            while self.to_server:
                tid, m = self.to_server.pop(0)
                self.server.on_message(tid, m, self.t, self.wall)
            while self.to_client:
                tid, m = self.to_client.pop(0)
                self.client.on_message(tid, m, self.t, self.wall)
            self.collect()

    def connect(self) -> None:
        self.client.start(self.t, self.wall)
        self.pump()

    def advance(self, ms: float) -> None:
        self.t += int(ms * MS)
        self.client.on_timer(self.t, self.wall)
        self.server.on_timer(self.t, self.wall)
        self.collect()

    def server_sends_business(self, n: int, *, deliver: bool = True) -> list[int]:
        """Server sends n business messages; returns the client's verdicts (or [])."""
        verdicts = []
        for _ in range(n):
            seq = self.server.take_send_seq()
            if deliver:
                verdicts.append(self.client.on_business(seq, False, self.t, self.wall))
        self.collect()
        return verdicts


def sent(sends: list[tuple[int, dict[str, Any]]], tid: int) -> list[dict[str, Any]]:
    return [m for t, m in sends if t == tid]


# --------------------------------------------------------------------------
# Credentials and signatures
# --------------------------------------------------------------------------
def test_canonical_strings_follow_cme_field_order() -> None:
    # CME: RequestTimestamp, UUID, SessionID, FirmID (+ TradingSystemName, Version,
    # Vendor, NextSeqNo, KeepAliveInterval for Establish), joined by '\n'
    assert fixp.canonical_negotiate(1700000000123456789, 1700000000123456, "ABC", "FIRM1") == (
        "1700000000123456789\n1700000000123456\nABC\nFIRM1"
    )
    assert fixp.canonical_establish(
        5, 7, "ABC", "FIRM1", "nanoarb", "0.1", "vendor", 42, 5000
    ) == "5\n7\nABC\nFIRM1\nnanoarb\n0.1\nvendor\n42\n5000"


def test_signature_is_hmac_sha256_with_the_base64url_decoded_key() -> None:
    secret = base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode().rstrip("=")  # has '-', '_'
    assert "-" in secret or "_" in secret
    c = fixp.Credentials(KEY_ID, secret)
    msg = "1\n2\nABC\nFIRM1"
    assert c.sign(msg) == hmac.new(b"\xfb\xff" * 16, msg.encode(), hashlib.sha256).digest()
    assert c.verify(msg, c.sign(msg))
    assert not c.verify(msg + "x", c.sign(msg))
    with pytest.raises(ValueError):
        fixp.Credentials(KEY_ID, "not base64!")


def test_credentials_never_show_in_repr_str_or_pickle() -> None:
    c = creds()
    for text in (repr(c), str(c), f"{c}", repr(keystore())):
        assert KEY_ID not in text and SECRET not in text
    with pytest.raises(TypeError):
        pickle.dumps(c)
    w = Wire()
    w.connect()
    for text in (repr(w.client), repr(w.server), str(w.client_events), str(w.server_events)):
        assert KEY_ID not in text and SECRET not in text


def test_credentials_from_environment() -> None:
    env = {"NANOARB_ILINK_ACCESS_KEY": KEY_ID, "NANOARB_ILINK_SECRET_KEY": SECRET}
    c = fixp.Credentials.from_env(env)
    assert c.access_key_id == KEY_ID
    with pytest.raises(KeyError) as err:
        fixp.Credentials.from_env({"NANOARB_ILINK_ACCESS_KEY": KEY_ID})
    assert SECRET not in str(err.value)


# --------------------------------------------------------------------------
# Negotiate / Establish
# --------------------------------------------------------------------------
def test_negotiate_and_establish() -> None:
    w = Wire(keepalive_ms=750)
    w.client.start(w.t, w.wall)
    w.collect()
    (tid, neg), = w.to_server
    assert tid == fixp.NEGOTIATE
    # the signature on the wire is HMAC of the canonical request with the raw key
    canon = f"{neg['RequestTimestamp']}\n{neg['UUID']}\nABC\nFIRM1"
    sig = hmac.new(RAW_KEY, canon.encode(), hashlib.sha256).digest()
    assert neg["HMACSignature"].encode("latin-1").ljust(32, b"\x00") == sig
    assert neg["AccessKeyID"] == KEY_ID and neg["HMACVersion"] == "CME-1-SHA-256"
    assert neg["UUID"] == w.wall // 1000  # microseconds since the epoch, as CME recommends
    w.pump()
    assert w.client.state == w.server.state == fixp.SessionState.ESTABLISHED
    est = [e for e in w.client_events if isinstance(e, fixp.Established)]
    assert len(est) == 1 and est[0].keepalive_ms == 750 and est[0].renegotiated
    assert w.server.keepalive_ms == 750
    assert w.client.next_send == 1 and w.client.next_recv == 1


@pytest.mark.parametrize(
    "tamper, code",
    [
        ("wrong_secret", fixp.REJ_HMAC_NOT_AUTHENTICATED),
        ("unknown_key", fixp.REJ_HMAC_NOT_AUTHENTICATED),
        ("wrong_firm", fixp.REJ_HMAC_NOT_AUTHENTICATED),
        ("stale", fixp.REJ_INVALID_TIMESTAMP),
    ],
)
def test_negotiate_rejected(tamper: str, code: int) -> None:
    w = Wire()
    if tamper == "wrong_secret":
        w.client = fixp.FixpClient(fixp.SessionIdentity("ABC", "FIRM1"),
                                   creds(secret=base64.urlsafe_b64encode(b"x" * 32).decode()))
    elif tamper == "unknown_key":
        w.client = fixp.FixpClient(fixp.SessionIdentity("ABC", "FIRM1"),
                                   creds(key_id="AKIDUNKNOWN000000000"))
    w.client.start(w.t, w.wall)
    w.collect()
    tid, neg = w.to_server.pop()
    if tamper == "wrong_firm":
        neg["Firm"] = "FIRM2"  # the signature covers the firm: it no longer matches
    if tamper == "stale":
        w.t += 6_000 * MS  # more than 5 s after its RequestTimestamp
    w.server.on_message(tid, neg, w.t, w.wall)
    w.pump()
    rej = [e for e in w.client_events if isinstance(e, fixp.Rejected)]
    assert rej and rej[0].stage == "negotiate" and rej[0].error_code == code
    assert w.client.state == fixp.SessionState.TERMINATED
    assert w.server.state != fixp.SessionState.ESTABLISHED


def test_signed_but_unauthorised_session_is_blocked() -> None:
    w = Wire()
    w.client = fixp.FixpClient(fixp.SessionIdentity("XYZ", "FIRM1"), creds())
    w.connect()
    rej = [e for e in w.client_events if isinstance(e, fixp.Rejected)]
    assert rej[0].error_code == fixp.REJ_SESSION_BLOCKED


def test_uuid_must_grow_and_establish_needs_a_negotiated_uuid() -> None:
    w = Wire()
    w.connect()
    first = w.client.uuid
    # a second client reusing an old UUID is refused
    other = fixp.FixpClient(fixp.SessionIdentity("ABC", "FIRM1"), creds())
    other.uuid = first - 1
    other.negotiated = True  # pretend: go straight to Establish with a stale UUID
    srv = w.new_server()
    other.start(w.t, w.wall)
    out, _ = other.drain()
    for tid, m in Wire._wire(out):
        srv.on_message(tid, m, w.t, w.wall)
    out, _ = srv.drain()
    (tid, m), = Wire._wire(out)
    assert tid == fixp.ESTABLISHMENT_REJECT and m["ErrorCodes"] == fixp.REJ_INVALID_UUID
    other.on_message(tid, m, w.t, w.wall)
    assert not other.negotiated  # next attempt negotiates a new UUID
    # Negotiate with a UUID not above the last one is refused (InvalidUUID)
    srv = fixp.FixpServer(w.keys, w.records, check_timestamp=False)
    srv.start(w.t)
    old = fixp.FixpClient(fixp.SessionIdentity("ABC", "FIRM1"), creds())
    old.start(w.t, w.wall - 10**9)  # its clock is 1 s behind: a smaller UUID
    out, _ = old.drain()
    for tid, m in Wire._wire(out):
        srv.on_message(tid, m, w.t, w.wall)
    out, _ = srv.drain()
    (tid, m), = Wire._wire(out)
    assert tid == fixp.NEGOTIATION_REJECT and m["ErrorCodes"] == fixp.REJ_INVALID_UUID


def test_reconnect_reestablishes_the_same_uuid_and_keeps_sequences() -> None:
    w = Wire()
    w.connect()
    uuid = w.client.uuid
    w.server_sends_business(3)
    w.client.take_send_seq()
    w.client.take_send_seq()
    w.server.on_business(1, w.t)
    w.server.on_business(2, w.t)
    w.server.connection_lost(w.t)
    w.client.connection_lost(w.t)
    w.server.drain()
    w.server = w.new_server()  # a new connection: the record keeps the numbers
    w.client.drain()
    w.client.start(w.t, w.wall)
    w.pump()
    assert w.client.uuid == uuid
    assert sent(w.to_server, fixp.NEGOTIATE) == []
    assert w.client.state == fixp.SessionState.ESTABLISHED
    assert w.client.next_send == 3 and w.client.next_recv == 4
    assert w.records[("ABC", "FIRM1")].next_recv == 3


# --------------------------------------------------------------------------
# Keepalive
# --------------------------------------------------------------------------
def test_keepalive_sequence_lapse_warning_then_terminate() -> None:
    w = Wire(keepalive_ms=1000)
    w.connect()
    w.to_server.clear()
    # the server is silent from now on: we only run the client's timers
    w.t += 999 * MS
    w.client.on_timer(w.t, w.wall)
    out, _ = w.client.drain()
    assert out == []
    w.t += 1 * MS  # KeepAliveInterval without sending or receiving
    w.client.on_timer(w.t, w.wall)
    out, ev = w.client.drain()
    seqs = [s for s in out if s.template_id == fixp.SEQUENCE]
    assert len(seqs) == 1 and seqs[0].fields["KeepAliveIntervalLapsed"] == 1
    w.t += 500 * MS
    w.client.on_timer(w.t, w.wall)
    assert w.client.drain() == ([], [])
    w.t += 500 * MS  # a second interval with nothing received: Terminate (20)
    w.client.on_timer(w.t, w.wall)
    out, ev = w.client.drain()
    assert [s.template_id for s in out] == [fixp.TERMINATE]
    assert out[0].fields["ErrorCodes"] == fixp.TERM_KEEPALIVE_LAPSED
    assert isinstance(ev[0], fixp.Terminated) and ev[0].error_code == fixp.TERM_KEEPALIVE_LAPSED
    assert w.client.state == fixp.SessionState.TERMINATED


def test_keepalive_sent_when_idle_and_lapse_warning_answered() -> None:
    w = Wire(keepalive_ms=1000)
    w.connect()
    w.advance(1000)  # both idle one interval: both send Sequence (lapsed: nothing received)
    w.pump()  # each answers the other's lapse warning, which resets the timers
    assert w.client.state == w.server.state == fixp.SessionState.ESTABLISHED
    assert w.client.keepalives_sent >= 1 and w.server.keepalives_sent >= 1
    for _ in range(5):  # a steady exchange keeps the session up
        w.advance(1000)
        w.pump()
    assert w.client.state == fixp.SessionState.ESTABLISHED
    # a received Sequence with Lapsed=1 is answered at once with Lapsed=0
    w.client.on_message(fixp.SEQUENCE, {"UUID": w.client.uuid, "NextSeqNo": 1,
                                        "KeepAliveIntervalLapsed": 1}, w.t, w.wall)
    out, _ = w.client.drain()
    assert [(s.template_id, s.fields["KeepAliveIntervalLapsed"]) for s in out] == [
        (fixp.SEQUENCE, 0)
    ]


def test_server_lapse_of_a_cod_session_reports_cancel_on_disconnect() -> None:
    w = Wire(keepalive_ms=1000)
    w.connect()
    w.t += 1000 * MS
    w.server.on_timer(w.t, w.wall)
    w.t += 1000 * MS
    w.server.on_timer(w.t, w.wall)
    _, ev = w.server.drain()
    term = [e for e in ev if isinstance(e, fixp.Terminated)]
    assert term and term[0].cancel_on_disconnect


@pytest.mark.parametrize("cod", [True, False])
def test_cancel_on_disconnect_only_for_involuntary_loss_of_registered_session(cod: bool) -> None:
    w = Wire(cod=cod)
    w.connect()
    w.server.connection_lost(w.t)
    _, ev = w.server.drain()
    assert [e.cancel_on_disconnect for e in ev if isinstance(e, fixp.Terminated)] == [cod]
    # a client Terminate is voluntary: no cancel on disconnect
    w = Wire(cod=cod)
    w.connect()
    w.client.terminate("bye", fixp.TERM_FINISHED, w.t, w.wall)
    w.pump()
    ev = [e for e in w.server_events if isinstance(e, fixp.Terminated)]
    assert len(ev) == 1 and not ev[0].cancel_on_disconnect and ev[0].by_peer
    assert w.client.state == fixp.SessionState.TERMINATED
    assert next(e for e in w.client_events if isinstance(e, fixp.Terminated)).by_peer is False


# --------------------------------------------------------------------------
# Gaps from the server: RetransmitRequest
# --------------------------------------------------------------------------
def test_gap_in_business_messages_requests_retransmission_and_queues() -> None:
    w = Wire()
    w.connect()
    c = w.client
    assert c.on_business(1, False, w.t, w.wall) == fixp.Verdict.DELIVER
    assert c.on_business(4, False, w.t, w.wall) == fixp.Verdict.QUEUE  # 2, 3 missing
    out, _ = c.drain()
    (rr,) = [s.fields for s in out if s.template_id == fixp.RETRANSMIT_REQUEST]
    assert (rr["FromSeqNo"], rr["MsgCount"], rr["LastUUID"]) == (2, 2, None)
    assert c.recovering
    assert c.on_business(5, False, w.t, w.wall) == fixp.Verdict.QUEUE
    assert c.on_business(2, True, w.t, w.wall) == fixp.Verdict.DELIVER
    assert c.on_business(2, True, w.t, w.wall) == fixp.Verdict.DROP  # duplicate
    assert c.on_business(3, True, w.t, w.wall) == fixp.Verdict.DELIVER
    _, ev = c.drain()
    assert [e for e in ev if isinstance(e, fixp.RecoveryDone)] == [fixp.RecoveryDone(True, 0)]
    assert not c.recovering and c.next_recv == 6
    c.queue.extend([(5, "e"), (4, "d")])
    assert [s for s, _ in c.take_queue()] == [4, 5]
    assert c.on_business(3, False, w.t, w.wall) == fixp.Verdict.DROP


def test_sequence_reveals_gap_and_large_gaps_are_split_at_2500() -> None:
    w = Wire()
    w.connect()
    c = w.client
    c.on_message(fixp.SEQUENCE, {"UUID": c.uuid, "NextSeqNo": 6001,
                                 "KeepAliveIntervalLapsed": 0}, w.t, w.wall)
    reqs = []
    out, _ = c.drain()
    reqs += [(s.fields["FromSeqNo"], s.fields["MsgCount"]) for s in out
             if s.template_id == fixp.RETRANSMIT_REQUEST]
    for seq in range(1, 6001):
        assert c.on_business(seq, True, w.t, w.wall) == fixp.Verdict.DELIVER
        out, _ = c.drain()
        reqs += [(s.fields["FromSeqNo"], s.fields["MsgCount"]) for s in out
                 if s.template_id == fixp.RETRANSMIT_REQUEST]
    assert reqs == [(1, 2500), (2501, 2500), (5001, 1000)]
    assert not c.recovering and c.next_recv == 6001


def test_retransmit_reject_and_short_retransmission_count_as_lost() -> None:
    w = Wire()
    w.connect()
    c = w.client
    c.on_business(5, False, w.t, w.wall)  # 1..4 missing
    c.drain()
    c.on_message(fixp.RETRANSMISSION, {"UUID": c.uuid, "FromSeqNo": 1, "MsgCount": 2},
                 w.t, w.wall)  # the exchange has only 2 of the 4
    assert c.on_business(1, True, w.t, w.wall) == fixp.Verdict.DELIVER
    assert c.on_business(2, True, w.t, w.wall) == fixp.Verdict.DELIVER
    _, ev = c.drain()
    assert fixp.RecoveryDone(False, 2) in ev
    c.on_business(8, False, w.t, w.wall)  # 6, 7 missing
    c.drain()
    c.on_message(fixp.RETRANSMIT_REJECT, {"UUID": c.uuid, "ErrorCodes": 1}, w.t, w.wall)
    _, ev = c.drain()
    assert fixp.RecoveryDone(False, 2) in ev and not c.recovering


def test_connection_lost_during_recovery_asks_again_after_reconnect() -> None:
    w = Wire()
    w.connect()
    c = w.client
    for _ in range(6):
        seq = w.server.take_send_seq()  # the server sent 1..6
        w.records[("ABC", "FIRM1")].store.put(seq, b"frame")
    c.on_business(1, False, w.t, w.wall)
    c.on_business(4, False, w.t, w.wall)  # 2, 3 requested; 4 queued
    c.on_business(2, True, w.t, w.wall)  # 2 delivered, then the line drops
    w.collect()
    w.to_server.clear()
    c.connection_lost(w.t)
    w.server.connection_lost(w.t)
    w.collect()
    assert not c.recovering and c.queue == [] and c.next_recv == 3
    w.server = w.new_server()
    c.start(w.t, w.wall)
    w.pump()
    reqs = [e for e in w.server_events if isinstance(e, fixp.RetransmitRequested)]
    assert [(e.from_seq, e.count) for e in reqs] == [(3, 4)]  # 3..6, the queued 4 again


def test_stalled_retransmission_times_out() -> None:
    w = Wire(keepalive_ms=1000)
    w.connect()
    c = w.client
    c.on_business(3, False, w.t, w.wall)
    c.drain()
    w.t += 3999 * MS
    c.on_timer(w.t, w.wall)
    assert c.recovering
    w.t += 1 * MS
    c.on_timer(w.t, w.wall)
    _, ev = c.drain()
    assert fixp.RecoveryDone(False, 2) in ev and not c.recovering


def test_server_answers_retransmit_requests_from_its_store() -> None:
    w = Wire()
    w.connect()
    rec = w.records[("ABC", "FIRM1")]
    for _ in range(5):
        seq = w.server.take_send_seq()
        rec.store.put(seq, b"frame%d" % seq)
    base = {"UUID": w.client.uuid, "LastUUID": None, "RequestTimestamp": w.wall}
    w.server.on_message(fixp.RETRANSMIT_REQUEST, dict(base, FromSeqNo=2, MsgCount=3),
                        w.t, w.wall)
    out, ev = w.server.drain()
    assert [s.template_id for s in out] == [fixp.RETRANSMISSION]
    assert ev == [fixp.RetransmitRequested(w.client.uuid, 2, 3)]
    assert rec.store.get_range(2, 3) == [b"frame2", b"frame3", b"frame4"]
    for frm, n in ((6, 1), (0, 1), (1, 2501)):
        w.server.on_message(fixp.RETRANSMIT_REQUEST, dict(base, FromSeqNo=frm, MsgCount=n),
                            w.t, w.wall)
        out, ev = w.server.drain()
        assert [s.template_id for s in out] == [fixp.RETRANSMIT_REJECT] and ev == []
    # a count past the end is trimmed to what exists
    w.server.on_message(fixp.RETRANSMIT_REQUEST, dict(base, FromSeqNo=4, MsgCount=10),
                        w.t, w.wall)
    out, ev = w.server.drain()
    assert out[0].fields["MsgCount"] == 2 and ev == [fixp.RetransmitRequested(w.client.uuid, 4, 2)]


# --------------------------------------------------------------------------
# Gaps from the client: NotApplied
# --------------------------------------------------------------------------
def test_not_applied_gap_fill() -> None:
    w = Wire(policy=fixp.NotAppliedPolicy.GAP_FILL)
    w.connect()
    c, s = w.client, w.server
    assert [c.take_send_seq() for _ in range(3)] == [1, 2, 3]
    assert s.on_business(1, w.t) == fixp.Verdict.DELIVER
    assert s.on_business(3, w.t) == fixp.Verdict.DELIVER  # 2 was lost on the way
    w.pump()
    na = [e for e in w.client_events if isinstance(e, fixp.NotApplied)]
    assert na == [fixp.NotApplied(2, 1, resend=False)]
    # the client answered with Sequence(NextSeqNo=4): the server drops the range
    assert w.records[("ABC", "FIRM1")].not_applied == []
    assert s.on_business(2, w.t) == fixp.Verdict.DROP
    assert s.on_business(4, w.t) == fixp.Verdict.DELIVER


def test_not_applied_resend_accepted_once() -> None:
    w = Wire(policy=fixp.NotAppliedPolicy.RESEND)
    w.connect()
    c, s = w.client, w.server
    for _ in range(6):
        c.take_send_seq()
    assert s.on_business(1, w.t) == fixp.Verdict.DELIVER
    assert s.on_business(5, w.t) == fixp.Verdict.DELIVER  # 2, 3, 4 not applied
    w.pump()
    assert [e for e in w.client_events if isinstance(e, fixp.NotApplied)] == [
        fixp.NotApplied(2, 3, resend=True)
    ]
    assert sent(w.to_server, fixp.SEQUENCE) == []  # no gap fill: the adapter resends
    assert s.on_business(3, w.t) == fixp.Verdict.DELIVER
    assert s.on_business(3, w.t) == fixp.Verdict.DROP
    assert s.on_business(2, w.t) == fixp.Verdict.DELIVER
    assert s.on_business(4, w.t) == fixp.Verdict.DELIVER
    assert w.records[("ABC", "FIRM1")].not_applied == []
    assert s.on_business(6, w.t) == fixp.Verdict.DELIVER


def test_client_sequence_ahead_is_not_applied_and_establish_gap() -> None:
    w = Wire()
    w.connect()
    w.client.next_send = 4  # e.g. three requests died with the process
    w.client.send_sequence(w.t)
    w.pump()
    assert [e for e in w.client_events if isinstance(e, fixp.NotApplied)] == [
        fixp.NotApplied(1, 3, resend=False)
    ]


# --------------------------------------------------------------------------
# Outbound store
# --------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    cap=st.integers(1, 20),
    ops=st.lists(st.one_of(st.just("put"), st.tuples(st.integers(0, 40), st.integers(0, 8))),
                 max_size=80),
)
def test_outbound_store_matches_a_dict_reference(cap: int, ops: list[Any]) -> None:
    store = fixp.OutboundStore(cap)
    ref: dict[int, bytes] = {}
    seq = 1
    for op in ops:
        if op == "put":
            store.put(seq, b"%d" % seq)
            ref[seq] = b"%d" % seq
            for old in [k for k in ref if k <= seq - cap]:
                del ref[old]
            seq += 1
        else:
            frm, n = op
            want = [ref.get(s) for s in range(frm, frm + n)]
            got = store.get_range(frm, n)
            if n > 0 and all(x is not None for x in want):
                assert got == want
            else:
                assert got is None
    assert len(store) == len(ref)


def test_signature_ending_in_nul_bytes_survives_the_wire() -> None:
    """HMACSignature is a char field: decoders strip trailing NULs, the server must not."""
    w = Wire()
    c = creds()
    base = w.wall
    ts = next(base + i for i in range(20_000)
              if c.sign(fixp.canonical_negotiate(base + i, (base + i) // 1000, "ABC",
                                                 "FIRM1")).endswith(b"\x00"))
    w.t += ts - base
    w.client.start(w.t, w.wall)
    w.collect()
    (_tid, neg), = w.to_server
    assert len(neg["HMACSignature"]) < 32  # the decoder stripped the NULs
    w.pump()
    assert w.server.state == fixp.SessionState.ESTABLISHED
