"""CME iLink 3 order gateway (the customer side), driven by the hot loop.

Gateway interface (as every gateway): ``connect()``, ``is_connected()``,
``poll(reports) -> n`` (execution reports written into a preallocated
EXEC_REPORT array), ``send(actions, k)`` (ORDER_ACTION rows), ``mass_cancel()``,
``close()``. No thread and no blocking call: ``poll`` does at most one receive
on the non-blocking socket and frames and decodes what came in, in ONE numba call
(libc ``recv(MSG_DONTWAIT)`` called from the kernel on Linux, so an empty poll
raises nothing), and runs the session timers only when one is due; ``send``
encodes and hands the bytes to ``send(2)`` in one numba call. ``bind`` compiles
both for the caller's exact arrays. The clock is injected.

Lifecycle (``state``)::

    STOPPED -connect-> CONNECTING -> HANDSHAKE (Negotiate/Establish) -> RECONCILING -> READY
       ^                  |              |                                 |            |
       |                  +---- failure / reject / Terminate / TCP loss ---+------------+
       |                                        v
       +----- close() ---- STOPPING      BACKOFF (capped exponential) -> CONNECTING ...

* Session layer: ``core.fixp.FixpClient`` (HMAC-signed Negotiate/Establish,
  Sequence keepalives, RetransmitRequest on gaps, NotApplied, Terminate). A
  reconnect re-Establishes the same UUID, so what the exchange sent meanwhile
  (e.g. the cancel-on-disconnect cancels) is recovered by retransmission.
* Reconciliation after every (re)establishment: OrderMassStatusRequest; each
  ExecutionReportStatus feeds the OMS as an ER_STATUS report; when the last one
  arrives, every order we believed live that the exchange did not report is
  given to the OMS as ER_STATUS/cancelled. Only then ``is_connected()``.
* Cancel on disconnect is registered per session at CME (iLink 3 has no wire
  flag): ``cancel_on_disconnect=True`` states that expectation, and the gateway
  counts ``cod_not_effective`` if orders survive an involuntary disconnect.
* NotApplied: gap-fill (default; the lost requests come back to the OMS as
  rejects with reason ``REASON_NOT_APPLIED``) or resend from the sent store.
* Requests while not READY are not sent: new orders come back as rejects
  (``REASON_GATEWAY_DOWN``), cancels/modifies as cancel/modify rejects.

Credentials (access key id, secret key) come from the environment and are
never logged nor shown by ``repr``. Session events go to ``events`` (a bounded
deque the control plane drains), never to a logger inside the loop.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import socket
import sys
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
from numba import njit, types

from adapters.clock import Clock, MonotonicClock
from core import fixp
from core.sbe import codec
from core.sbe import ilink3 as il
from core.types import (
    ACT_CANCEL,
    ACT_MASS_CANCEL,
    ACT_MODIFY,
    ACT_NEW,
    ER_CANCEL_REJECT,
    ER_MODIFY_REJECT,
    ER_REJECT,
    ER_STATUS,
    EXEC_REPORT,
    MAX_REPORTS,
    ORDER_ACTION,
    OS_CANCELLED,
)

__all__ = [
    "REASON_GATEWAY_DOWN",
    "REASON_NOT_APPLIED",
    "GatewayState",
    "Ilink3Gateway",
    "Ilink3GatewayConfig",
]

REASON_NOT_APPLIED = -1  # EXEC_REPORT.reason of a request the exchange never applied
REASON_GATEWAY_DOWN = -2  # ... of a request not sent because the session was not ready
REASON_NOT_AT_VENUE = -3  # ER_STATUS/cancelled: reconciliation did not find the order

T_MASS_STATUS = 530
T_PARTY_DETAILS = 518
MASS_STATUS_ALL = int(
    il.SCHEMA.message(T_MASS_STATUS).field("MassStatusReqType").enum_values["AllOrders"]
)
_SYNTH_CAP = 4 * MAX_REPORTS
_RETRY_ERRNO = frozenset((errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR))

# --------------------------------------------------------------------------
# libc recv/send fused with the kernels: one numba call per poll / per send,
# and no BlockingIOError raised (and caught) on every empty poll of the spin.
# --------------------------------------------------------------------------
HAVE_LIBC_IO = sys.platform.startswith("linux") and ctypes.sizeof(ctypes.c_void_p) == 8
MSG_DONTWAIT = 0x40
MSG_NOSIGNAL = 0x4000
if HAVE_LIBC_IO:
    _c_recv: Any = types.ExternalFunction(
        "recv", types.intp(types.int32, types.uintp, types.uintp, types.int32))
    _c_send: Any = types.ExternalFunction(
        "send", types.intp(types.int32, types.uintp, types.uintp, types.int32))
    _c_errno: Any = types.ExternalFunction("__errno_location", types.CPointer(types.int32)())

    @njit(cache=True)
    def _recv_decode(fd: Any, buf: Any, tail: int, reports: Any, n: int, max_n: int, gw: Any,
                     recv_ns: int) -> int:
        """recv after the kept ``tail`` bytes, then decode; results in gw[GW_IO_*]."""
        got = _c_recv(fd, buf.ctypes.data + tail, buf.shape[0] - tail, MSG_DONTWAIT)
        gw[il.GW_IO_GOT] = got
        if got <= 0:
            gw[il.GW_IO_ERRNO] = _c_errno()[0] if got < 0 else 0
            return n
        end = tail + got
        pos, n, stop = il._decode_frames(buf, 0, end, reports, n, max_n, gw, recv_ns)
        gw[il.GW_IO_POS] = pos
        gw[il.GW_IO_END] = end
        gw[il.GW_IO_STOP] = stop
        return n

    @njit(cache=True)
    def _encode_send(fd: Any, actions: Any, k: int, mem: Any, gw: Any, sending_ns: int) -> int:
        """Encode ``actions[:k]`` and send the bytes; gw[GW_IO_SENT] = what the socket took."""
        nbytes = il._encode_actions(actions, k, mem, gw, sending_ns)
        sent = 0
        if nbytes > 0:
            sent = _c_send(fd, mem.ctypes.data + il.MEM_OUT, nbytes, MSG_DONTWAIT | MSG_NOSIGNAL)
            if sent < 0:
                gw[il.GW_IO_ERRNO] = _c_errno()[0]
        gw[il.GW_IO_SENT] = sent
        return nbytes


def _compile_io(reports: np.ndarray, actions: np.ndarray, gw: np.ndarray, mem: np.ndarray,
                rbuf: np.ndarray) -> tuple[Any, Any]:
    """Entry points of the fused kernels for these exact array types."""
    from numba import typeof

    i64, i32 = types.int64, types.int32
    rd = _recv_decode.compile((i32, typeof(rbuf), i64, typeof(reports), i64, i64, typeof(gw),
                               i64))
    sd = _encode_send.compile((i32, typeof(actions), i64, typeof(mem), typeof(gw), i64))
    return rd, sd


class GatewayState(IntEnum):
    STOPPED = 0
    BACKOFF = 1  # waiting to reconnect
    CONNECTING = 2  # TCP connect in progress
    HANDSHAKE = 3  # Negotiate / Establish
    RECONCILING = 4  # established; mass status in progress
    READY = 5
    STOPPING = 6  # Terminate sent


@dataclass(frozen=True)
class Ilink3GatewayConfig:
    session_id: str
    firm_id: str
    host: str = "127.0.0.1"
    port: int = 0
    sender_id: str = "NANOARB"  # operator id (tag 5392), registered with CME
    location: str = "US,IL"  # tag 9537
    party_details_list_req_id: int = 1  # pre-registered (or on-demand) party details
    party_details_on_demand: bool = False  # send PartyDetailsDefinitionRequest first
    party_details: tuple[tuple[str, int], ...] = ()  # on demand: (PartyDetailID, role)
    keepalive_ms: int = 5000
    backoff_first_ms: int = 100
    backoff_cap_ms: int = 5000
    not_applied: fixp.NotAppliedPolicy = fixp.NotAppliedPolicy.GAP_FILL
    cancel_on_disconnect: bool = True
    reconcile_timeout_ms: int = 10_000
    trading_system_name: str = "nanoarb"
    trading_system_version: str = "0.1"
    trading_system_vendor: str = "nanoarb"
    recv_buffer: int = 1 << 20


@dataclass
class GatewayStats:
    connects: int = 0
    disconnects: int = 0
    handshake_failures: int = 0
    reconciliations: int = 0
    reconcile_timeouts: int = 0
    not_applied: int = 0
    resent: int = 0
    synthesized: int = 0
    retransmit_requests: int = 0
    messages_lost: int = 0
    cod_not_effective: int = 0
    protocol_errors: int = 0
    send_would_block: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Ilink3Gateway:
    """iLink 3 client gateway (see the module docstring)."""

    sends_over_tcp = True  # the hot loop keeps the TCP send path warm (adapters.net_warm)

    def __init__(
        self,
        config: Ilink3GatewayConfig,
        credentials: fixp.Credentials,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or MonotonicClock()
        self.state = GatewayState.STOPPED
        self.stats = GatewayStats()
        self.events: deque[tuple[int, str, str]] = deque(maxlen=1024)
        # hot-path state: one int64 array shared by the kernels and the session
        il.warm_up()  # JIT before any session: the handshake has deadlines
        self.gw = il.new_gateway_state()
        self.session = fixp.FixpClient(
            fixp.SessionIdentity(
                config.session_id, config.firm_id, config.trading_system_name,
                config.trading_system_version, config.trading_system_vendor,
            ),
            credentials,
            keepalive_ms=config.keepalive_ms,
            not_applied=config.not_applied,
            seq=self.gw[: fixp.N_SEQ],
        )
        self.mem = il.new_order_memory(
            self.gw, sender_id=config.sender_id, location=config.location,
            party_details_list_req_id=config.party_details_list_req_id,
        )
        self._out_mv = memoryview(self.mem)[il.MEM_OUT :]  # type: ignore[arg-type]
        self._out_slices: list[memoryview | None] = [None] * (il.OUT_CAP + 1)
        self._rbuf = np.zeros(config.recv_buffer, dtype=np.uint8)
        self._rmv = memoryview(self._rbuf)  # type: ignore[arg-type]
        self._tail = 0  # undecoded bytes kept at the start of _rbuf
        self._backlog = False  # undecoded complete frames remain (report array was full)
        self._pending = bytearray()  # bytes the socket did not take yet
        self._sock: socket.socket | None = None
        self._one = np.zeros(1, dtype=ORDER_ACTION)
        self._synth = np.zeros(_SYNTH_CAP, dtype=EXEC_REPORT)
        self._synth_n = 0
        self._deliver_later: deque[bytes] = deque()  # frames decoded once reports has room
        self._backoff_ms = config.backoff_first_ms
        self._due_ns = 0  # BACKOFF: reconnect time; CONNECTING / RECONCILING: deadline
        self._next_timer_ns = 2**62
        self._involuntary = False  # the last disconnect was not our close()
        self._reconcile_id = 0
        self._reconcile_seen: set[int] = set()
        self._reconcile_working = 0
        self._party_pending = False
        self._party_done_uuid = 0
        # compiled entry points for the caller's exact arrays (see bind)
        self._enc: Any = il._encode_actions
        self._dec: Any = il._decode_frames
        self._bound_actions: np.ndarray | None = None
        self._bound_reports: np.ndarray | None = None
        self._fd = -1  # >= 0: the libc path (HAVE_LIBC_IO) on a connected socket
        self._rd: Any = None
        self._sd: Any = None
        self._rd_bound: Any = None
        self._sd_bound: Any = None
        if HAVE_LIBC_IO:
            # compile (or load) now: the first reports arrive under handshake deadlines.
            # Unbound calls go through the dispatchers, which accept any array layout.
            _compile_io(np.zeros(1, EXEC_REPORT), np.zeros(1, ORDER_ACTION), self.gw, self.mem,
                        self._rbuf)
            self._rd, self._sd = _recv_decode, _encode_send

    def __repr__(self) -> str:
        c = self.config
        return (
            f"Ilink3Gateway({c.host}:{c.port}, session={c.session_id!r}, firm={c.firm_id!r}, "
            f"state={self.state.name}, uuid={self.session.uuid})"
        )

    # ------------------------------------------------------------------ interface
    def connect(self) -> None:
        """Start connecting (non-blocking); ``poll`` drives the rest."""
        if self.state not in (GatewayState.STOPPED, GatewayState.BACKOFF):
            return
        self._backoff_ms = self.config.backoff_first_ms
        self._start_connect(self.clock.now_ns())

    def is_connected(self) -> bool:
        """Established and reconciled: orders can be sent."""
        return self.state == GatewayState.READY

    def bind(self, reports: np.ndarray, actions: np.ndarray) -> None:
        """Compile the kernels for these exact arrays and call them without numba's
        per-call type dispatch (about half the call cost with record arrays). ``poll``
        and ``send`` use the bound entry points when passed these same objects."""
        from numba import typeof, types

        if reports.dtype != EXEC_REPORT or actions.dtype != ORDER_ACTION:
            raise TypeError("reports: EXEC_REPORT array, actions: ORDER_ACTION array")
        i64 = types.int64
        self._enc = il._encode_actions.compile(
            (typeof(actions), i64, typeof(self.mem), typeof(self.gw), i64))
        self._dec = il._decode_frames.compile(
            (typeof(self._rbuf), i64, i64, typeof(reports), i64, i64, typeof(self.gw), i64))
        if HAVE_LIBC_IO:
            self._rd_bound, self._sd_bound = _compile_io(reports, actions, self.gw, self.mem,
                                                         self._rbuf)
        self._bound_actions, self._bound_reports = actions, reports

    def poll(self, reports: np.ndarray) -> int:
        """Receive, decode into ``reports`` (EXEC_REPORT), run due timers; returns rows."""
        n = 0
        if self._synth_n:
            n = self._take_synth(reports, 0)
        if self._deliver_later:
            n = self._drain_later(reports, n)
        now = self.clock.now_ns()
        st = self.state
        if st >= GatewayState.HANDSHAKE:
            n = self._read(reports, n, now)
        elif st == GatewayState.CONNECTING:
            self._check_connect()
        if now >= self._next_timer_ns or (st == GatewayState.BACKOFF and now >= self._due_ns):
            self._on_timer(now)
        if self._pending:
            self._flush_pending()
        return n

    def send(self, actions: np.ndarray, k: int) -> int:
        """Send ``actions[:k]``; returns how many went out (0 when not READY)."""
        if k <= 0:
            return 0
        if self.state != GatewayState.READY:
            self._refuse(actions, k, REASON_GATEWAY_DOWN)
            return 0
        wall = self.clock.wall_ns()
        bound = actions is self._bound_actions
        if self._fd >= 0 and not self._pending:
            sd = self._sd_bound if bound else self._sd
            nbytes = sd(self._fd, actions, k, self.mem, self.gw, wall)
            sent = int(self.gw[il.GW_IO_SENT])
            if sent < nbytes:
                self._send_short(nbytes, sent)
        else:
            enc = self._enc if bound else il._encode_actions
            self._write(enc(actions, k, self.mem, self.gw, wall))
        self.session.last_sent_ns = self.clock.now_ns()
        return k

    def mass_cancel(self, security_id: int = 0) -> bool:
        """OrderMassActionRequest for every order (or one instrument); needs a session."""
        if self.state not in (GatewayState.READY, GatewayState.RECONCILING):
            return False
        a = self._one
        a[0] = 0
        a[0]["action"] = ACT_MASS_CANCEL
        a[0]["security_id"] = security_id
        nbytes = il._encode_actions(a, 1, self.mem, self.gw, self.clock.wall_ns())
        self._write(nbytes)
        return True

    def close(self) -> None:
        """Terminate the session (the exchange's answer is read by ``poll``)."""
        now, wall = self.clock.now_ns(), self.clock.wall_ns()
        self._involuntary = False
        if self.state in (GatewayState.HANDSHAKE, GatewayState.RECONCILING, GatewayState.READY):
            self.session.terminate("client close", fixp.TERM_FINISHED, now, wall)
            self.state = GatewayState.STOPPING
            self._after_session(now, wall, None, 0)
            self._next_timer_ns = self.session.next_timer_ns()
        elif self.state != GatewayState.STOPPING:
            self._close_socket()
            self.state = GatewayState.STOPPED

    def stop(self) -> None:
        """Abrupt: close the socket now (no Terminate)."""
        self._close_socket()
        self.session.connection_lost(self.clock.now_ns())
        self.session.drain()
        self.state = GatewayState.STOPPED

    def drain_events(self) -> list[tuple[int, str, str]]:
        out = list(self.events)
        self.events.clear()
        return out

    def counters(self) -> dict[str, int]:
        c = il.counters(self.gw)
        c.update({k: v for k, v in vars(self.stats).items() if isinstance(v, int)})
        c["next_send_seq"] = self.session.next_send
        c["next_recv_seq"] = self.session.next_recv
        return c

    # ---------------------------------------------------------------- connection
    def _event(self, kind: str, detail: str = "") -> None:
        self.events.append((self.clock.now_ns(), kind, detail))

    def _start_connect(self, now: int) -> None:
        self._close_socket()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = s.connect_ex((self.config.host, self.config.port))
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            s.close()
            self._event("connect_failed", errno.errorcode.get(err, str(err)))
            self._to_backoff(now)
            return
        self._sock = s
        self._fd = s.fileno() if HAVE_LIBC_IO else -1
        self.state = GatewayState.CONNECTING
        self._due_ns = now + max(self.config.keepalive_ms, 1000) * 1_000_000
        self._next_timer_ns = self._due_ns
        self.stats.connects += 1
        if err == 0:
            self._connected(now)

    def _check_connect(self) -> None:
        s = self._sock
        if s is None:
            return
        _r, w, _x = select.select([], [s], [], 0)
        if not w:
            return
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        now = self.clock.now_ns()
        if err != 0:
            self._event("connect_failed", errno.errorcode.get(err, str(err)))
            self._close_socket()
            self._to_backoff(now)
            return
        self._connected(now)

    def _connected(self, now: int) -> None:
        self.state = GatewayState.HANDSHAKE
        self._tail = 0
        self._backlog = False
        self._pending.clear()
        self._event("connected", f"{self.config.host}:{self.config.port}")
        wall = self.clock.wall_ns()
        self.session.start(now, wall)
        self._after_session(now, wall, None, 0)

    def _to_backoff(self, now: int) -> None:
        self.state = GatewayState.BACKOFF
        self._due_ns = now + self._backoff_ms * 1_000_000
        self._next_timer_ns = self._due_ns
        self._event("backoff", f"{self._backoff_ms} ms")
        self._backoff_ms = min(self._backoff_ms * 2, self.config.backoff_cap_ms)
        self.gw[il.SEQ_SLOW] = 0

    def _close_socket(self) -> None:
        self._fd = -1
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def _lost(self, reason: str) -> None:
        """The transport is gone (or we gave up on it): reconnect with backoff."""
        now = self.clock.now_ns()
        self._close_socket()
        was = self.state
        self.session.connection_lost(now)
        self.session.drain()
        self.stats.disconnects += 1
        self._event("disconnected", reason)
        if was == GatewayState.STOPPING:
            self.state = GatewayState.STOPPED
            return
        self._involuntary = True
        self._to_backoff(now)

    # ------------------------------------------------------------------- receive
    def _read(self, reports: np.ndarray, n: int, recv_ns: int) -> int:
        s = self._sock
        if s is None:
            return n
        cap = min(len(reports), MAX_REPORTS)
        buf = self._rbuf
        gw = self.gw
        bound = reports is self._bound_reports
        end = self._tail
        pos = 0
        stop = -1  # -1: decode buf[pos:end] first
        if self._backlog:
            pass  # the report array was full last time: decode what we have first
        elif self._fd >= 0:
            rd = self._rd_bound if bound else self._rd
            n = rd(self._fd, buf, end, reports, n, cap, gw, recv_ns)
            got = int(gw[il.GW_IO_GOT])
            if got <= 0:
                if got == 0:
                    self._lost("closed by the exchange")
                elif int(gw[il.GW_IO_ERRNO]) not in _RETRY_ERRNO:
                    self._lost(f"recv: {os.strerror(int(gw[il.GW_IO_ERRNO]))}")
                return n
            end = int(gw[il.GW_IO_END])
            pos = int(gw[il.GW_IO_POS])
            stop = int(gw[il.GW_IO_STOP])
            self.session.note_received(recv_ns)
        else:
            try:
                got = s.recv_into(self._rmv[end:] if end else self._rmv)
            except (BlockingIOError, InterruptedError):
                return n
            except OSError as exc:
                self._lost(f"recv: {exc.strerror}")
                return n
            if got == 0:
                self._lost("closed by the exchange")
                return n
            end += got
            self.session.note_received(recv_ns)
        dec = self._dec if bound else il._decode_frames
        while True:
            if stop < 0:
                pos, n, stop = dec(buf, pos, end, reports, n, cap, gw, recv_ns)
            if stop == il.STOP_DONE:
                self._backlog = False
                break
            if stop == il.STOP_FULL:
                self._backlog = True
                break
            if stop == il.STOP_BAD:
                self.stats.protocol_errors += 1
                self._protocol_error("invalid SOFH", fixp.TERM_INVALID_SOFH)
                return n
            length = int(buf[pos]) | (int(buf[pos + 1]) << 8)
            frame = buf[pos : pos + length].tobytes()
            pos += length
            stop = -1
            n = self._slow(frame, reports, n, recv_ns)
            if self._sock is None or self.state in (GatewayState.BACKOFF, GatewayState.STOPPED):
                return n
        if pos < end:
            if pos:
                buf[: end - pos] = buf[pos:end]
            self._tail = end - pos
        else:
            self._tail = 0
        return n

    def _protocol_error(self, reason: str, code: int) -> None:
        now, wall = self.clock.now_ns(), self.clock.wall_ns()
        self.session.terminate(reason, code, now, wall)
        self._send_session_out(now)
        self._lost(reason)

    def _slow(self, frame: bytes, reports: np.ndarray, n: int, recv_ns: int) -> int:
        """One frame the kernel left: session message, gap, retransmission, reconciliation."""
        now, wall = recv_ns, self.clock.wall_ns()
        _length, _bl, tid, sid, _ver = il.frame_info(frame)
        if sid != il.ILINK3_SCHEMA_ID or tid not in il.SCHEMA.messages:
            self.stats.protocol_errors += 1
            self._protocol_error(f"undecodable message {sid}/{tid}", fixp.TERM_DECODING_ERROR)
            return n
        if fixp.NEGOTIATE <= tid <= fixp.NOT_APPLIED:
            try:
                msg = il.flat_codec(tid).decode(frame)
            except ValueError:
                self.stats.protocol_errors += 1
                self._protocol_error("decoding error", fixp.TERM_DECODING_ERROR)
                return n
            self.session.on_message(tid, msg, now, wall)
            return self._after_session(now, wall, reports, n)
        tid, seq, poss = il.seq_num_of(frame)
        if seq < 0:
            self.stats.extra["no_seqnum"] = self.stats.extra.get("no_seqnum", 0) + 1
            return n
        verdict = self.session.on_business(seq, poss, now, wall)
        if verdict == fixp.Verdict.DELIVER:
            n = self._deliver(frame, reports, n, recv_ns)
        elif verdict == fixp.Verdict.QUEUE:
            self.session.queue.append((seq, frame))
        return self._after_session(now, wall, reports, n)

    def _deliver(self, frame: bytes, reports: np.ndarray | None, n: int, recv_ns: int) -> int:
        tid = int.from_bytes(frame[6:8], "little")
        if self.state == GatewayState.RECONCILING:
            self._reconcile_frame(tid, frame)
        if reports is None or n >= min(len(reports), MAX_REPORTS):
            self._deliver_later.append(frame)
            return n
        return n + il.decode_report(frame, reports, n, self.gw, recv_ns)

    def _drain_later(self, reports: np.ndarray, n: int) -> int:
        cap = min(len(reports), MAX_REPORTS)
        now = self.clock.now_ns()
        while self._deliver_later and n < cap:
            n += il.decode_report(self._deliver_later.popleft(), reports, n, self.gw, now)
        return n

    # -------------------------------------------------------------- session glue
    def _send_session_out(self, now: int) -> None:
        out, _ = self.session.outbox, None
        self.session.outbox = []
        for s in out:
            self._write_bytes(il.flat_codec(s.template_id).encode(s.fields))

    def _after_session(self, now: int, wall: int, reports: np.ndarray | None, n: int) -> int:
        """Send what the session produced and act on its events."""
        self._send_session_out(now)
        events = self.session.events
        self.session.events = []
        for ev in events:
            if isinstance(ev, fixp.Established):
                self._event("established", f"uuid={ev.uuid} keepalive={ev.keepalive_ms}ms")
                self._on_established(now, wall)
            elif isinstance(ev, fixp.Rejected):
                self.stats.handshake_failures += 1
                self._event(f"{ev.stage}_rejected", f"{ev.error_code}: {ev.reason}")
                self._lost(f"{ev.stage} rejected")
            elif isinstance(ev, fixp.Terminated):
                self._event("terminated", f"{ev.error_code}: {ev.reason}")
                self._send_session_out(now)
                self._flush_pending()
                if self.state == GatewayState.STOPPING:
                    self._close_socket()
                    self.session.state = fixp.SessionState.DISCONNECTED
                    self.state = GatewayState.STOPPED
                else:
                    self._lost("terminated")
            elif isinstance(ev, fixp.NotApplied):
                self._on_not_applied(ev, now)
            elif isinstance(ev, fixp.RecoveryDone):
                self._event("recovered", "complete" if ev.complete else f"lost {ev.lost}")
                if not ev.complete:
                    self.stats.messages_lost += ev.lost
                n = self._flush_queue(reports, n)
                if not ev.complete and self.state == GatewayState.READY:
                    self._start_reconcile(now, wall)  # reports were lost: ask the exchange
        self.stats.retransmit_requests = self.session.retransmit_requests
        self._next_timer_ns = min(self.session.next_timer_ns(), self._own_deadline())
        return n

    def _own_deadline(self) -> int:
        if self.state in (GatewayState.RECONCILING, GatewayState.CONNECTING,
                          GatewayState.BACKOFF):
            return self._due_ns
        return 2**62

    def _flush_queue(self, reports: np.ndarray | None, n: int) -> int:
        for _seq, frame in self.session.take_queue():
            n = self._deliver(frame, reports, n, self.clock.now_ns())
        return n

    def _on_timer(self, now: int) -> None:
        wall = self.clock.wall_ns()
        st = self.state
        if st == GatewayState.BACKOFF:
            if now >= self._due_ns:
                self._start_connect(now)
            return
        if st == GatewayState.CONNECTING:
            if now >= self._due_ns:
                self._event("connect_timeout")
                self._close_socket()
                self._to_backoff(now)
            return
        if st == GatewayState.RECONCILING and now >= self._due_ns:
            self.stats.reconcile_timeouts += 1
            self._protocol_error("reconciliation timeout", fixp.TERM_OTHER)
            return
        self.session.on_timer(now, wall)
        self._after_session(now, wall, None, 0)

    # ------------------------------------------------------------ reconciliation
    def _on_established(self, now: int, wall: int) -> None:
        self.state = GatewayState.RECONCILING
        self._due_ns = now + self.config.reconcile_timeout_ms * 1_000_000
        self.gw[il.SEQ_SLOW] = 1  # every business frame through _slow until reconciled
        if self.config.party_details_on_demand and self._party_done_uuid != self.session.uuid:
            self._send_party_details(wall)
            self._party_pending = True
            return
        self._start_reconcile(now, wall)

    def _send_business(self, template_id: int, fields: dict[str, Any],
                       groups: dict[str, Any] | None = None) -> int:
        seq = self.session.take_send_seq()
        fields = dict(fields, SeqNum=seq)
        if groups:
            frame = codec.encode_sofh(codec.encode(
                {"template_id": template_id, "fields": fields, "groups": groups}, il.SCHEMA))
        else:
            frame = il.flat_codec(template_id).encode(fields)
        il.record_sent(self.mem, self.gw, seq, frame)
        self._write_bytes(frame)
        self.session.last_sent_ns = self.clock.now_ns()
        return seq

    def _send_party_details(self, wall: int) -> None:
        c = self.config
        self._send_business(
            T_PARTY_DETAILS,
            {"PartyDetailsListReqID": c.party_details_list_req_id, "SendingTimeEpoch": wall,
             "ListUpdateAction": "A", "Memo": None},
            {"NoPartyDetails": [{"PartyDetailID": pid, "PartyDetailRole": role}
                                for pid, role in c.party_details],
             "NoTrdRegPublications": []},
        )
        self._event("party_details_sent", str(c.party_details_list_req_id))

    def _start_reconcile(self, now: int, wall: int) -> None:
        self.state = GatewayState.RECONCILING
        self.gw[il.SEQ_SLOW] = 1
        self._due_ns = now + self.config.reconcile_timeout_ms * 1_000_000
        self._reconcile_id = wall
        self._reconcile_seen = set()
        self._reconcile_working = 0
        c = self.config
        self._send_business(
            T_MASS_STATUS,
            {"PartyDetailsListReqID": c.party_details_list_req_id, "MassStatusReqID": wall,
             "ManualOrderIndicator": 0, "SenderID": c.sender_id, "SendingTimeEpoch": wall,
             "Location": c.location, "MassStatusReqType": MASS_STATUS_ALL},
        )
        self.stats.reconciliations += 1
        self._event("reconcile_started", str(wall))
        self._next_timer_ns = min(self._next_timer_ns, self._due_ns)

    def _reconcile_frame(self, tid: int, frame: bytes) -> None:
        if tid == il.T_PARTY_DETAILS_ACK and self._party_pending:
            m = il.flat_codec(tid).decode(frame)
            if m.get("PartyDetailsListReqID") == self.config.party_details_list_req_id:
                self._party_pending = False
                if int(m.get("PartyDetailRequestStatus") or 0) != 0:
                    self._event("party_details_rejected", str(m.get("PartyDetailRequestStatus")))
                    self._protocol_error("party details rejected", fixp.TERM_OTHER)
                    return
                self._party_done_uuid = self.session.uuid
                now, wall = self.clock.now_ns(), self.clock.wall_ns()
                self._start_reconcile(now, wall)
            return
        if tid != il.T_EXEC_STATUS:
            return
        m = il.flat_codec(tid).decode(frame)
        if m.get("MassStatusReqID") != self._reconcile_id:
            return
        cl_text = m.get("ClOrdID") or ""
        if m.get("OrdStatus") != "U" and cl_text.isdigit():
            self._reconcile_seen.add(int(cl_text))
            if m.get("OrdStatus") in ("0", "1", "5", "6", "E"):
                self._reconcile_working += 1
        if m.get("OrdStatus") == "U" or m.get("LastRptRequested") == 1:
            self._finish_reconcile()

    def _finish_reconcile(self) -> None:
        """The exchange reported all its working orders: the rest are gone."""
        gw = self.gw
        live = gw[il.GW_LIVE : il.GW_LIVE + il.SLOT_MASK + 1]
        gone = 0
        for slot in np.flatnonzero(live):
            cl = int(live[slot]) & (2**64 - 1)
            if cl in self._reconcile_seen:
                continue
            self._synthesize(cl, ER_STATUS, REASON_NOT_AT_VENUE, ord_status=OS_CANCELLED)
            live[slot] = 0
            gone += 1
        if self._involuntary and self.config.cancel_on_disconnect and self._reconcile_working:
            self.stats.cod_not_effective += 1
            self._event("cod_not_effective", f"{self._reconcile_working} orders survived")
        self._involuntary = False
        gw[il.SEQ_SLOW] = 0
        self.state = GatewayState.READY
        self._backoff_ms = self.config.backoff_first_ms
        self._event("ready", f"{len(self._reconcile_seen)} working, {gone} not at venue")
        self._next_timer_ns = self.session.next_timer_ns()

    # ---------------------------------------------------------------- not applied
    def _on_not_applied(self, ev: fixp.NotApplied, now: int) -> None:
        self.stats.not_applied += 1
        self._event("not_applied", f"{ev.from_seq}+{ev.count}")
        if ev.resend:
            frames = [il.sent_frame(self.mem, self.gw, s)
                      for s in range(ev.from_seq, ev.from_seq + ev.count)]
            if all(f is not None for f in frames):
                for f in frames:
                    assert f is not None
                    self._write_bytes(f)
                self.stats.resent += len(frames)
                return
            self.session.resend_failed(now)
            self._send_session_out(now)
        # gap filled: the exchange never saw these requests; tell the OMS
        for s in range(ev.from_seq, ev.from_seq + ev.count):
            cl, act = il.sent_request(self.gw, s)
            kind = {ACT_NEW: ER_REJECT, ACT_MODIFY: ER_MODIFY_REJECT,
                    ACT_CANCEL: ER_CANCEL_REJECT}.get(act)
            if kind is not None:
                self._synthesize(cl, kind, REASON_NOT_APPLIED)
                if kind == ER_REJECT:
                    slot = il.GW_LIVE + (cl & il.SLOT_MASK)
                    if int(self.gw[slot]) & (2**64 - 1) == cl:
                        self.gw[slot] = 0

    # ----------------------------------------------------------------- synthetic
    def _synthesize(self, cl_ord_id: int, kind: int, reason: int, *, ord_status: int = 0,
                    security_id: int = 0, side: int = 0) -> None:
        if self._synth_n >= _SYNTH_CAP:
            self.stats.extra["synth_overflow"] = self.stats.extra.get("synth_overflow", 0) + 1
            return
        r = self._synth[self._synth_n]
        r["cl_ord_id"] = cl_ord_id
        r["order_id"] = 0
        r["price"] = 0
        r["qty"] = 0
        r["leaves_qty"] = 0
        r["cum_qty"] = 0
        r["fee"] = 0.0
        r["transact_ns"] = self.clock.wall_ns()
        r["recv_ns"] = self.clock.now_ns()
        r["exec_id"] = 0
        r["security_id"] = security_id
        r["reason"] = reason
        r["kind"] = kind
        r["side"] = side
        r["aggressor"] = 0
        r["ord_status"] = ord_status
        self._synth_n += 1
        self.stats.synthesized += 1

    def _refuse(self, actions: np.ndarray, k: int, reason: int) -> None:
        for i in range(min(k, len(actions))):
            a = actions[i]
            act = int(a["action"])
            kind = {ACT_NEW: ER_REJECT, ACT_MODIFY: ER_MODIFY_REJECT,
                    ACT_CANCEL: ER_CANCEL_REJECT}.get(act)
            if kind is not None:
                self._synthesize(int(a["cl_ord_id"]), kind, reason,
                                 security_id=int(a["security_id"]), side=int(a["side"]))

    def _take_synth(self, reports: np.ndarray, n: int) -> int:
        cap = min(len(reports), MAX_REPORTS)
        m = min(self._synth_n, cap - n)
        if m > 0:
            reports[n : n + m] = self._synth[:m]
            rest = self._synth_n - m
            if rest:
                self._synth[:rest] = self._synth[m : self._synth_n]
            self._synth_n = rest
        return n + max(m, 0)

    # ---------------------------------------------------------------------- send
    def _slice(self, n: int) -> memoryview:
        mv = self._out_slices[n]
        if mv is None:
            mv = self._out_mv[:n]
            self._out_slices[n] = mv
        return mv

    def _write(self, nbytes: int) -> None:
        """Send the kernel's output (``mem[MEM_OUT:][:nbytes]``), without copying if possible."""
        if nbytes <= 0:
            return
        s = self._sock
        if s is None:
            return
        if self._pending:
            self._pending += self._out_mv[:nbytes]
            self._flush_pending()
            return
        try:
            sent = s.send(self._slice(nbytes))
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._lost(f"send: {exc.strerror}")
            return
        if sent < nbytes:
            self.stats.send_would_block += 1
            self._pending += self._out_mv[sent:nbytes]

    def _send_short(self, nbytes: int, sent: int) -> None:
        """The fused send did not take everything: keep the rest (or the line is gone)."""
        if sent < 0:
            e = int(self.gw[il.GW_IO_ERRNO])
            if e not in _RETRY_ERRNO:
                self._lost(f"send: {os.strerror(e)}")
                return
            sent = 0
        self.stats.send_would_block += 1
        self._pending += self._out_mv[sent:nbytes]

    def _write_bytes(self, data: bytes) -> None:
        if self._sock is None:
            return
        self._pending += data
        self._flush_pending()

    def _flush_pending(self) -> None:
        s = self._sock
        while self._pending and s is not None:
            try:
                sent = s.send(self._pending)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._lost(f"send: {exc.strerror}")
                return
            del self._pending[:sent]


def credentials_from_env(environ: Any, access_key_env: str = "NANOARB_ILINK_ACCESS_KEY",
                         secret_key_env: str = "NANOARB_ILINK_SECRET_KEY") -> fixp.Credentials:
    """Credentials from the environment variables the daemon config names."""
    return fixp.Credentials.from_env(environ, access_key_env, secret_key_env)
