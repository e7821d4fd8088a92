"""Market-data sources behind one interface, and the feed handler that runs them.

Every source implements ``MdSource``: ``open()``, ``close()`` and a
non-blocking ``poll(rx) -> int`` that fills the preallocated ``RxSlot``:

* packet sources write one datagram into ``rx.buf`` and tag it (``rx.channel``
  index, ``rx.role`` ROLE_*, ``rx.feed`` FEED_A/B, ``rx.recv_ns`` kernel receive
  time or 0) and return its size;
* event sources (Databento DBN, adapters/dbn_source.py) write MD_EVENT rows
  into ``rx.events`` and return the row count (``rx.role = ROLE_EVENTS``);
* 0 means nothing right now (busy-poll again), ``END`` that a replay is over.

Sources here:

``UdpSource``
    Multicast (join feeds A and B of each channel on a local interface address,
    optionally source-specific) or unicast (bind 127.0.0.1:port) UDP sockets,
    non-blocking, with a large SO_RCVBUF. ``poll`` calls libc ``recv`` (or
    ``recvmsg`` with SO_TIMESTAMPNS when kernel timestamps are on) from a numba
    kernel over the array of descriptors, round-robin: an empty poll costs the
    syscalls and nothing else (no Python exception, no allocation). Joins and
    leaves (the snapshot loop while recovering) open/close sockets.
``PcapSource``
    Replays a pcap/pcapng (adapters/capture.py) as fast as possible or paced by
    capture time x ``speed`` against an injected clock. Datagrams are routed to
    (channel, role, feed) by destination address from the channel config, or
    all to incremental feed A of channel 0.

``FeedHandler`` ties a source to the sequencer (core/sequencing.py), the books
(core/market.py, optional) and the instrument table: datagram -> sequenced rows
-> books; snapshot feeds joined and left as the sequencer asks; timers (gap
waits, STALE) run on idle polls against the injected clock.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import select
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numba import njit, types

from adapters.clock import Clock, MonotonicClock
from adapters.cme_config import ChannelConfig, Endpoint
from core.sequencing import CH_DEFINITIONS, CH_WANT_SNAPSHOT, SequencedFeed, Sequencer
from core.types import (
    EV_DEFINITION,
    FEED_A,
    MD_EVENT,
    ROLE_DEFINITION,
    ROLE_INCREMENTAL,
    ROLE_SNAPSHOT,
    ROLE_SNAPSHOT_MBO,
)

__all__ = [
    "END",
    "ROLE_EVENTS",
    "FeedHandler",
    "MdSource",
    "PcapSource",
    "RxSlot",
    "UdpSource",
    "multicast_socket",
    "unicast_socket",
]

END = -1
ROLE_EVENTS = 100  # rx holds MD_EVENT rows (DBN), not a datagram
MAX_DATAGRAM = 65536
SO_TIMESTAMPNS = 35  # Linux; not exported by Python 3.11's socket module
SO_RCVBUFFORCE = 33
IP_ADD_SOURCE_MEMBERSHIP = getattr(socket, "IP_ADD_SOURCE_MEMBERSHIP", 39)
MSG_DONTWAIT = 0x40
SOL_SOCKET = 1


class RxSlot:
    """The preallocated receive slot a source fills (one datagram or a batch of rows)."""

    __slots__ = ("buf", "channel", "events", "feed", "recv_ns", "role", "view")

    def __init__(self, events_capacity: int = 4096) -> None:
        self.buf = np.zeros(MAX_DATAGRAM, dtype=np.uint8)
        self.view = memoryview(self.buf.data)  # for the portable socket path
        self.events = np.zeros(events_capacity, dtype=MD_EVENT)
        self.channel = 0
        self.role = ROLE_INCREMENTAL
        self.feed = FEED_A
        self.recv_ns = 0


class MdSource(Protocol):
    """What every market-data source offers (see the module docstring)."""

    def open(self) -> None: ...

    def close(self) -> None: ...

    def poll(self, rx: RxSlot) -> int: ...


# ==========================================================================
# libc receive from numba
# ==========================================================================
# libc's recv/recvmsg called by symbol from numba (an ExternalFunction, unlike a
# ctypes pointer, lets the kernels be cached). Pointers are passed as uintp.
HAVE_LIBC_POLL = sys.platform.startswith("linux") and ctypes.sizeof(ctypes.c_void_p) == 8
if HAVE_LIBC_POLL:
    _c_recv: Any = types.ExternalFunction(
        "recv", types.intp(types.int32, types.uintp, types.uintp, types.int32))
    _c_recvmsg: Any = types.ExternalFunction(
        "recvmsg", types.intp(types.int32, types.uintp, types.int32))

    # msghdr (x86-64/aarch64 Linux, 56 bytes) as int64 words: name, namelen, iov,
    # iovlen, control, controllen, flags. cmsghdr: len (8), level (4), type (4), data.
    MH_IOV = 2
    MH_IOVLEN = 3
    MH_CONTROL = 4
    MH_CONTROLLEN = 5
    CONTROL_WORDS = 8

    @njit(cache=True, inline="always")
    def _recv_one(fd: int, j: int, buf: Any, out: Any) -> int:
        """recv (MSG_DONTWAIT) on one descriptor; on a datagram ``out`` = [j, 0]."""
        r = _c_recv(fd, buf.ctypes.data, buf.shape[0], MSG_DONTWAIT)
        if r > 0:
            out[0] = j
            out[1] = 0
        return r

    @njit(cache=True)
    def _poll_recv(fds: Any, buf: Any, start: int, out: Any) -> int:
        """recv (MSG_DONTWAIT) on each descriptor from ``start``; first datagram wins.

        ``out`` = [descriptor index, receive ns (0)]. Returns the size, 0 if none.
        """
        n_fd = fds.shape[0]
        for k in range(n_fd):
            j = (start + k) % n_fd
            r = _recv_one(fds[j], j, buf, out)
            if r > 0:
                return r
        return 0

    @njit(cache=True, inline="always")
    def _recvmsg_one(fd: int, j: int, msg: Any, control: Any, out: Any) -> int:
        """recvmsg on one descriptor; on a datagram ``out`` = [j, kernel ns (0 if none)]."""
        msg[MH_CONTROLLEN] = CONTROL_WORDS * 8
        r = _c_recvmsg(fd, msg.ctypes.data, MSG_DONTWAIT)
        if r > 0:
            out[0] = j
            out[1] = 0
            if msg[MH_CONTROLLEN] >= 32:
                lt = control[1]  # cmsg_level | cmsg_type << 32
                if (lt & 0xFFFFFFFF) == SOL_SOCKET and (lt >> 32) == SO_TIMESTAMPNS:
                    out[1] = control[2] * 1_000_000_000 + control[3]
        return r

    @njit(cache=True)
    def _poll_recvmsg(fds: Any, msg: Any, control: Any, start: int, out: Any) -> int:
        """recvmsg with the SO_TIMESTAMPNS control message: ``out`` = [index, kernel ns]."""
        n_fd = fds.shape[0]
        for k in range(n_fd):
            j = (start + k) % n_fd
            r = _recvmsg_one(fds[j], j, msg, control, out)
            if r > 0:
                return r
        return 0

    # epoll: one epoll_wait(timeout 0) tells which descriptor has a datagram, so an
    # empty pass is one system call however many feeds are joined (level-triggered,
    # one event per call: the kernel requeues a ready descriptor at the tail of its
    # ready list, so busy feeds take turns). struct epoll_event is packed on x86-64
    # (events u32, data u64 at offset 4); elsewhere data sits at offset 8. Python's
    # epoll.register stores the descriptor in data.fd.
    _c_epoll_wait: Any = types.ExternalFunction(
        "epoll_wait", types.int32(types.int32, types.uintp, types.int32, types.int32))
    EV_FD_WORD = 1 if platform.machine() in ("x86_64", "AMD64") else 2

    @njit(cache=True, inline="always")
    def _ready_index(epfd: int, ev: Any, fds: Any) -> int:
        """Index in ``fds`` of a descriptor with a datagram waiting, else -1."""
        if _c_epoll_wait(epfd, ev.ctypes.data, 1, 0) <= 0:
            return -1
        fd = ev[EV_FD_WORD]
        for j in range(fds.shape[0]):
            if fds[j] == fd:
                return j
        return -1

    @njit(cache=True)
    def _epoll_recvmsg(epfd: int, ev: Any, fds: Any, msg: Any, control: Any, out: Any) -> int:
        """``_poll_recvmsg`` behind one epoll_wait: the ready descriptor only."""
        j = _ready_index(epfd, ev, fds)
        if j < 0:
            return 0
        r = _recvmsg_one(fds[j], j, msg, control, out)
        return r if r > 0 else 0

    @njit(cache=True)
    def _epoll_recv(epfd: int, ev: Any, fds: Any, buf: Any, out: Any) -> int:
        """``_poll_recv`` behind one epoll_wait: the ready descriptor only."""
        j = _ready_index(epfd, ev, fds)
        if j < 0:
            return 0
        r = _recv_one(fds[j], j, buf, out)
        return r if r > 0 else 0

    @njit(cache=True)
    def _spin_recv(fds: Any, buf: Any, start: int, out: Any, max_spins: int) -> int:
        """Busy-poll up to ``max_spins`` rounds inside numba; ``out[2]`` = rounds spent."""
        for s in range(max_spins):
            n = _poll_recv(fds, buf, start, out)
            if n > 0:
                out[2] = s
                return n
        out[2] = max_spins
        return 0


# ==========================================================================
# Sockets
# ==========================================================================
def _set_rcvbuf(sock: socket.socket, size: int) -> int:
    """Ask for ``size`` bytes of receive buffer (forced past rmem_max when root)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


def multicast_socket(group: str, port: int, interface: str = "0.0.0.0", source: str = "",
                     rcvbuf: int = 16 << 20, timestamps: bool = False) -> socket.socket:
    """A non-blocking UDP socket joined to ``group:port`` on the ``interface`` address.

    Bound to the group address (Linux then delivers only that group's datagrams
    to it). ``source``: IGMPv3 source-specific join (CME's host-ip).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _set_rcvbuf(sock, rcvbuf)
        sock.bind((group, port))
        grp = socket.inet_aton(group)
        ifa = socket.inet_aton(interface)
        if source:
            # struct ip_mreq_source: multiaddr, interface, sourceaddr (Linux order)
            mreq = grp + ifa + socket.inet_aton(source)
            sock.setsockopt(socket.IPPROTO_IP, IP_ADD_SOURCE_MEMBERSHIP, mreq)
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, grp + ifa)
        if timestamps:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def unicast_socket(address: str, port: int, rcvbuf: int = 16 << 20,
                   timestamps: bool = False) -> socket.socket:
    """A non-blocking UDP socket bound to ``address:port`` (127.0.0.1 for the demo)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _set_rcvbuf(sock, rcvbuf)
        sock.bind((address, port))
        if timestamps:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass(frozen=True)
class Subscription:
    """One endpoint of one channel (channel = index in the handler's channel list)."""

    channel: int
    endpoint: Endpoint

    @property
    def key(self) -> tuple[int, int]:
        return self.channel, self.endpoint.role_code


class UdpSource:
    """UDP feeds (multicast or unicast) of a set of channels, polled without blocking.

    ``channels[i]`` is channel index i of the sequencer. At ``open()`` the
    incremental feeds (``feeds``) are joined; ``join(channel, role)`` /
    ``leave(channel, role)`` add or drop the snapshot or definition feeds.
    ``kernel_timestamps`` turns on SO_TIMESTAMPNS (``rx.recv_ns``, wall clock).
    ``use_epoll`` (libc path): one ``epoll_wait(0)`` per pass names the descriptor
    to read, instead of one ``recv`` per joined feed.
    """

    def __init__(self, channels: Sequence[ChannelConfig], interface: str = "0.0.0.0",
                 feeds: Iterable[str] = ("A", "B"), rcvbuf_bytes: int = 16 << 20,
                 kernel_timestamps: bool = True, source_specific: bool = False,
                 use_libc: bool = True, use_epoll: bool = True) -> None:
        self.channels = list(channels)
        self.interface = interface
        self.feeds = tuple(feeds)
        self.rcvbuf = rcvbuf_bytes
        self.timestamps = kernel_timestamps
        self.source_specific = source_specific
        self.use_libc = use_libc and HAVE_LIBC_POLL
        # one epoll_wait per pass instead of one recv per descriptor (libc path only)
        self.use_epoll = use_epoll and self.use_libc
        self._epoll: select.epoll | None = None
        self._epfd = -1
        self._ev = np.zeros(4, dtype=np.int32)  # one struct epoll_event (12 or 16 bytes)
        self._socks: list[socket.socket] = []
        self._subs: list[Subscription] = []
        self._fds = np.zeros(0, dtype=np.int32)
        self._tags = np.zeros((0, 3), dtype=np.int64)  # channel, role, feed per descriptor
        self._tag_list: list[tuple[int, int, int]] = []
        self._out = np.zeros(4, dtype=np.int64)
        self._start = 0
        self._joined: set[tuple[int, int]] = set()
        self.rcvbuf_effective = 0
        # recvmsg state: msghdr, iovec, control buffer (preallocated, pointers fixed)
        self._msg = np.zeros(7, dtype=np.int64)
        self._iov = np.zeros(2, dtype=np.int64)
        self._control = np.zeros(8, dtype=np.int64)
        self._rx_buf: np.ndarray | None = None

    # -- lifecycle ------------------------------------------------------------
    def open(self) -> None:
        for c in range(len(self.channels)):
            self.join(c, ROLE_INCREMENTAL)

    def close(self) -> None:
        for s in self._socks:
            s.close()
        self._socks.clear()
        self._subs.clear()
        self._joined.clear()
        self._rebuild()

    def __enter__(self) -> UdpSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- joins ----------------------------------------------------------------
    def _open_socket(self, ep: Endpoint) -> socket.socket:
        if ep.is_multicast:
            return multicast_socket(ep.ip, ep.port, self.interface,
                                    ep.source_ip if self.source_specific else "",
                                    self.rcvbuf, self.timestamps)
        return unicast_socket(ep.ip, ep.port, self.rcvbuf, self.timestamps)

    def join(self, channel: int, role: int) -> int:
        """Open every configured feed of ``role`` on ``channel``; return how many."""
        if (channel, role) in self._joined:
            return 0
        name = {ROLE_INCREMENTAL: "incremental", ROLE_SNAPSHOT: "snapshot",
                ROLE_DEFINITION: "definition", ROLE_SNAPSHOT_MBO: "snapshot_mbo"}[role]
        eps = self.channels[channel].endpoints_for(name, self.feeds)
        for ep in eps:
            sock = self._open_socket(ep)
            self.rcvbuf_effective = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
            self._socks.append(sock)
            self._subs.append(Subscription(channel, ep))
        self._joined.add((channel, role))
        self._rebuild()
        return len(eps)

    def leave(self, channel: int, role: int) -> None:
        keep_s, keep_sub = [], []
        for s, sub in zip(self._socks, self._subs, strict=True):
            if sub.key == (channel, role):
                s.close()
            else:
                keep_s.append(s)
                keep_sub.append(sub)
        self._socks, self._subs = keep_s, keep_sub
        self._joined.discard((channel, role))
        self._rebuild()

    def joined(self, channel: int, role: int) -> bool:
        return (channel, role) in self._joined

    def _rebuild(self) -> None:
        self._fds = np.array([s.fileno() for s in self._socks], dtype=np.int32)
        if self._epoll is not None:
            self._epoll.close()
            self._epoll, self._epfd = None, -1
        if self.use_epoll and self._socks:
            self._epoll = select.epoll()
            for fd in self._fds:
                self._epoll.register(int(fd), select.EPOLLIN)
            self._epfd = self._epoll.fileno()
        self._tag_list = [(sub.channel, sub.endpoint.role_code, sub.endpoint.feed_code)
                          for sub in self._subs]
        self._start = 0

    # -- polling --------------------------------------------------------------
    def _bind_rx(self, rx: RxSlot) -> None:
        self._rx_buf = rx.buf
        self._iov[0] = rx.buf.ctypes.data
        self._iov[1] = rx.buf.size
        self._msg[:] = 0
        self._msg[2] = self._iov.ctypes.data
        self._msg[3] = 1
        self._msg[4] = self._control.ctypes.data
        self._msg[5] = self._control.nbytes

    def poll(self, rx: RxSlot) -> int:
        """One non-blocking pass over every socket: the first datagram found, else 0."""
        fds = self._fds
        if fds.size == 0:
            return 0
        out = self._out
        if self.use_libc:
            if self.timestamps:
                if self._rx_buf is not rx.buf:
                    self._bind_rx(rx)
                if self._epfd >= 0:
                    n = _epoll_recvmsg(self._epfd, self._ev, fds, self._msg, self._control,
                                       out)
                else:
                    n = _poll_recvmsg(fds, self._msg, self._control, self._start, out)
            elif self._epfd >= 0:
                n = _epoll_recv(self._epfd, self._ev, fds, rx.buf, out)
            else:
                n = _poll_recv(fds, rx.buf, self._start, out)
            if n <= 0:
                return 0
            j = int(out[0])
            rx.recv_ns = int(out[1])
        else:
            n, j = self._poll_python(rx)
            if n <= 0:
                return 0
        self._start = j + 1 if j + 1 < fds.size else 0
        rx.channel, rx.role, rx.feed = self._tag_list[j]
        return int(n)

    def _poll_python(self, rx: RxSlot) -> tuple[int, int]:
        """Portable path: socket.recv_into / recvmsg_into (allocates, raises when empty)."""
        k = len(self._socks)
        for i in range(k):
            j = (self._start + i) % k
            s = self._socks[j]
            try:
                if self.timestamps:
                    n, anc, _, _ = s.recvmsg_into([rx.view], 64)
                    rx.recv_ns = 0
                    for level, typ, data in anc:
                        if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS:
                            sec, nsec = struct.unpack("qq", data[:16])
                            rx.recv_ns = sec * 1_000_000_000 + nsec
                else:
                    n = s.recv_into(rx.view)
                    rx.recv_ns = 0
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:  # e.g. ICMP errors on unicast: skip this socket
                if exc.errno in (errno.ECONNREFUSED, errno.EAGAIN):
                    continue
                raise
            return n, j
        return 0, 0

    def spin(self, rx: RxSlot, max_spins: int) -> int:
        """Busy-poll up to ``max_spins`` rounds in one numba call (no timestamps)."""
        if not self.use_libc or self._fds.size == 0:
            return self.poll(rx)
        n = _spin_recv(self._fds, rx.buf, self._start, self._out, max_spins)
        if n <= 0:
            return 0
        j = int(self._out[0])
        self._start = j + 1 if j + 1 < self._fds.size else 0
        rx.channel, rx.role, rx.feed = self._tag_list[j]
        rx.recv_ns = 0
        return int(n)


# ==========================================================================
# pcap / pcapng replay
# ==========================================================================
class PcapSource:
    """Replay the UDP datagrams of captures (adapters/capture.py) through ``poll``.

    ``speed`` 0 = as fast as possible; otherwise datagram i is due at
    ``start + (t_i - t_0) / speed`` on ``clock`` (``poll`` returns 0 until then).
    ``channels`` routes datagrams by destination ``ip:port`` to (channel index,
    role, feed); without it every datagram is incremental feed A of channel 0.
    The captures are loaded at ``open()`` into one contiguous buffer.
    """

    def __init__(self, paths: Sequence[str | Path], channels: Sequence[ChannelConfig] = (),
                 speed: float = 0.0, clock: Clock | None = None,
                 keep_unrouted: bool = True) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self.paths = [Path(p) for p in paths]
        self.speed = float(speed)
        self.clock = clock or MonotonicClock()
        self.keep_unrouted = keep_unrouted
        self.routes: dict[str, tuple[int, int, int]] = {}
        for c, ch in enumerate(channels):
            for ep in ch.endpoints:
                if ep.role_code >= 0:
                    self.routes[f"{ep.ip}:{ep.port}"] = (c, ep.role_code, ep.feed_code)
        self.buf = np.zeros(0, dtype=np.uint8)
        self.offsets = np.zeros(1, dtype=np.int64)
        self.meta = np.zeros((0, 4), dtype=np.int64)  # channel, feed, role, capture ns
        self.unrouted = 0
        self._i = 0
        self._t0_clock = 0
        self._t0_cap = 0

    def open(self) -> None:
        from adapters.capture import read_capture

        chunks: list[bytes] = []
        meta: list[tuple[int, int, int, int]] = []
        for path in self.paths:
            for rec in read_capture(path):
                if rec.protocol not in ("udp", "mdp-tcp"):
                    continue
                route = self.routes.get(rec.dst)
                if route is None:
                    if self.routes and not self.keep_unrouted:
                        self.unrouted += 1
                        continue
                    route = (0, ROLE_INCREMENTAL, FEED_A)
                c, role, feed = route
                chunks.append(rec.payload)
                meta.append((c, feed, role, round(rec.timestamp * 1e9)))
        sizes = np.array([len(c) for c in chunks], dtype=np.int64)
        self.offsets = np.zeros(len(chunks) + 1, dtype=np.int64)
        np.cumsum(sizes, out=self.offsets[1:])
        self.buf = (np.frombuffer(b"".join(chunks), dtype=np.uint8).copy() if chunks
                    else np.zeros(0, dtype=np.uint8))
        self.meta = np.array(meta, dtype=np.int64).reshape(-1, 4)
        self.rewind()

    def rewind(self) -> None:
        self._i = 0
        self._t0_clock = self.clock.now_ns()
        self._t0_cap = int(self.meta[0, 3]) if self.meta.shape[0] else 0

    def close(self) -> None:
        self._i = self.meta.shape[0]

    def __len__(self) -> int:
        return int(self.meta.shape[0])

    def poll(self, rx: RxSlot) -> int:
        i = self._i
        if i >= self.meta.shape[0]:
            return END
        m = self.meta[i]
        if self.speed > 0.0:
            due = self._t0_clock + int((int(m[3]) - self._t0_cap) / self.speed)
            if self.clock.now_ns() < due:
                return 0
        a = int(self.offsets[i])
        n = int(self.offsets[i + 1]) - a
        rx.buf[:n] = self.buf[a:a + n]
        rx.channel = int(m[0])
        rx.feed = int(m[1])
        rx.role = int(m[2])
        rx.recv_ns = int(m[3])
        self._i = i + 1
        return n

    def stream(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(buf, offsets, meta) for ``SequencedFeed.process_stream`` (time = capture ns)."""
        return self.buf, self.offsets, self.meta


# ==========================================================================
# The feed handler
# ==========================================================================
class FeedHandler:
    """Source -> sequencer -> books, with snapshot joins and timers.

    ``poll()`` handles at most one datagram (or one batch of DBN rows) and
    returns the number of rows applied; on an empty poll it runs the timers at
    most every ``timer_interval_ns``. ``market`` is a ``core.market.MarketState``
    (optional); ``on_rows(rows, channel)`` sees every batch of sequenced rows
    (tests, recorders). Definitions (ROLE_DEFINITION datagrams, or EV_DEFINITION
    rows of the incremental feed) update ``instruments`` (an InstrumentTable).
    """

    def __init__(self, source: MdSource, sequencer: Sequencer, market: Any = None,
                 clock: Clock | None = None, instruments: Any = None,
                 on_rows: Callable[[np.ndarray, int], None] | None = None,
                 timer_interval_ns: int = 100_000, snapshot_mbo: bool = False) -> None:
        self.source = source
        self.seq = sequencer
        self.feed = SequencedFeed(sequencer)
        self.market = market
        self.clock = clock or MonotonicClock()
        self.instruments = instruments
        self.on_rows = on_rows
        self.timer_interval_ns = int(timer_interval_ns)
        self.snapshot_role = ROLE_SNAPSHOT_MBO if snapshot_mbo else ROLE_SNAPSHOT
        self.rx = RxSlot()
        self._want = sequencer.chan[:, CH_WANT_SNAPSHOT]
        self._defs = sequencer.chan[:, CH_DEFINITIONS]
        self._defs_seen = np.zeros(sequencer.n_channels, dtype=np.int64)
        self._joined = np.zeros(sequencer.n_channels, dtype=np.int64)
        self._next_timer = 0
        self.datagrams = 0
        self.rows = 0
        self.ended = False

    def open(self) -> None:
        self.source.open()
        self.sync_joins()

    def close(self) -> None:
        self.source.close()

    def sync_joins(self) -> None:
        """Join/leave each channel's snapshot feed as the sequencer wants."""
        join = getattr(self.source, "join", None)
        if join is None:
            return
        for c in range(self.seq.n_channels):
            want = int(self._want[c])
            if want != self._joined[c]:
                if want:
                    join(c, self.snapshot_role)
                else:
                    self.source.leave(c, self.snapshot_role)  # type: ignore[attr-defined]
                self._joined[c] = want

    def _apply(self, rows: np.ndarray, channel: int) -> int:
        if rows.size == 0:
            return 0
        if self.on_rows is not None:
            self.on_rows(rows, channel)
        if self.market is not None:
            appl = self.seq.appl_id(channel)
            self.market.apply_events(rows, channel=appl if appl > 0 else -1)
        self.rows += rows.size
        return int(rows.size)

    def poll(self) -> int:
        rx = self.rx
        n = self.source.poll(rx)
        if n > 0:
            self.datagrams += 1
            if rx.role == ROLE_EVENTS:
                return self._apply(rx.events[:n], rx.channel)
            now = self.clock.now_ns()
            rows = self.feed.on_datagram(rx.role, rx.buf, n, rx.channel, rx.feed, now)
            if rx.role == ROLE_DEFINITION:
                if self.instruments is not None:
                    self.instruments.update_from_packet(rx.buf, n, rows)
                return 0
            if self.instruments is not None and self._defs[rx.channel] != self._defs_seen[
                    rx.channel]:
                # intraday definitions on the incremental feed point into this datagram
                self._defs_seen[rx.channel] = self._defs[rx.channel]
                self.instruments.update_from_packet(rx.buf, n, rows)
            k = self._apply(rows, rx.channel)
            if self._want[rx.channel] != self._joined[rx.channel]:
                self.sync_joins()
            return k
        if n == END:
            self.ended = True
            return 0
        now = self.clock.now_ns()
        if now >= self._next_timer:
            self._next_timer = now + self.timer_interval_ns
            k = 0
            for c in range(self.seq.n_channels):
                k += self._apply(self.feed.on_idle(now, c), c)
            self.sync_joins()
            return k
        return 0

    def run(self, until: Callable[[], bool] | None = None, max_ns: int | None = None) -> int:
        """Poll until the source ends, ``until()`` is true, or ``max_ns`` passed."""
        deadline = None if max_ns is None else self.clock.now_ns() + max_ns
        total = 0
        while not self.ended:
            total += self.poll()
            if until is not None and until():
                break
            if deadline is not None and self.clock.now_ns() >= deadline:
                break
        return total


def load_definitions(source: MdSource, table: Any, clock: Clock | None = None,
                     timeout_s: float = 30.0) -> int:
    """Read an instrument-definition loop until it has gone round once.

    The loop's packets restart at MsgSeqNum 1; each definition carries
    TotNumReports. Stops when every reported instrument is in ``table``, when
    the sequence wraps, or at the timeout. Returns the definitions applied.
    """
    from core.sbe.mdp3 import Mdp3Decoder

    clock = clock or MonotonicClock()
    dec = Mdp3Decoder()
    rx = RxSlot()
    deadline = clock.now_ns() + int(timeout_s * 1e9)
    applied = 0
    first_seq = -1
    seen: set[int] = set()
    total = -1
    while clock.now_ns() < deadline:
        n = source.poll(rx)
        if n == END:
            break
        if n <= 0 or rx.role != ROLE_DEFINITION:
            if n == 0:
                time.sleep(0)
            continue
        seq = int(np.frombuffer(rx.buf[:4].tobytes(), dtype="<u4")[0])
        if first_seq < 0:
            first_seq = seq
        elif seq == first_seq:
            break  # the loop came round
        rows = dec.decode(rx.buf, n)
        applied += table.update_from_packet(rx.buf, n, rows)
        for r in rows[rows["kind"] == EV_DEFINITION]:
            seen.add(int(r["security_id"]))
        if total < 0:
            total = _tot_num_reports(rx.buf, n)
        if 0 < total <= len(seen):
            break
    return applied


def _tot_num_reports(buf: np.ndarray, n: int) -> int:
    """TotNumReports of the first definition in the packet (-1 if unknown)."""
    from core.sbe.codec import DecodeError, decode_packet

    try:
        _, msgs = decode_packet(buf[:n].tobytes())
    except DecodeError:
        return -1
    for m in msgs:
        v = m["fields"].get("TotNumReports")
        if isinstance(v, int):
            return v
    return -1
