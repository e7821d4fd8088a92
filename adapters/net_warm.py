"""Keeping the kernel's TCP send path warm between orders.

On loopback an order's ``send(2)`` runs the TCP stack of both sides inline, and
after milliseconds without a send its code and data are cold. Measured on the
2-vCPU guest, 300 bytes over TCP to a spinning reader: 4.6 us p50 back to back,
7.8 us 4 ms apart, 17.5-22 us 16 ms apart (about how often the demo daemon
sends); with a send of our own every 100 us in between, 5.5 us.

``SendPathWarmer`` owns that traffic: a TCP connection over 127.0.0.1 with both
ends ours (nothing reaches the exchange). ``warm()`` sends ``nbytes`` and reads
them back in one numba call; the hot loop calls it with the rest of its
keep-warm work, only while idle. It never raises: a failure is counted in
``errors`` and the warmer turns itself off.

(The market-data side was tried the same way, a UDP socket sending to itself:
a datagram's kernel timestamp to ``recvmsg`` went from 16.3 to 6.7 us p50 16 ms
apart in isolation, but the harness's `receive` stage did not move, its packets
arriving every ~0.5 ms already; so it is not done.)
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import numpy as np
from numba import njit

from adapters.ilink3_gateway import (
    HAVE_LIBC_IO,
    MSG_DONTWAIT,
    MSG_NOSIGNAL,
    _c_errno,
    _c_recv,
    _c_send,
)

if HAVE_LIBC_IO:

    @njit(cache=True)
    def _send_read_back(tx_fd: int, rx_fd: int, out: Any, inb: Any) -> int:
        """``out`` into ``tx_fd``, then ``rx_fd`` read empty; bytes sent, or -errno."""
        sent = _c_send(tx_fd, out.ctypes.data, out.shape[0], MSG_DONTWAIT | MSG_NOSIGNAL)
        if sent < 0:
            err = _c_errno()[0]
            return -err
        while True:
            got = _c_recv(rx_fd, inb.ctypes.data, inb.shape[0], MSG_DONTWAIT)
            if got < inb.shape[0]:
                break
        return sent


class SendPathWarmer:
    """See the module docstring."""

    def __init__(self, nbytes: int = 256) -> None:
        self.runs = 0
        self.errors = 0
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            tx = socket.create_connection(listener.getsockname(), timeout=2.0)
            try:
                rx = listener.accept()[0]
            except OSError:
                tx.close()
                raise
        finally:
            listener.close()
        tx.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tx.setblocking(False)
        rx.setblocking(False)
        self._tx: socket.socket | None = tx
        self._rx: socket.socket | None = rx
        self._tx_fd, self._rx_fd = tx.fileno(), rx.fileno()
        self._out = np.full(nbytes, 0x5A, dtype=np.uint8)
        self._in = np.zeros(1 << 14, dtype=np.uint8)
        self._out_py, self._in_py = bytes(self._out), bytearray(self._in.size)  # no libc

    @property
    def closed(self) -> bool:
        return self._tx is None

    def warm(self) -> None:
        tx, rx = self._tx, self._rx
        if tx is None or rx is None:
            return
        try:
            if HAVE_LIBC_IO:
                ok = _send_read_back(self._tx_fd, self._rx_fd, self._out, self._in) > 0
            else:
                ok = tx.send(self._out_py) > 0
                with contextlib.suppress(BlockingIOError):
                    while rx.recv_into(self._in_py) == len(self._in_py):
                        pass
        except OSError:
            ok = False
        if ok:
            self.runs += 1
        else:
            self.errors += 1
            self.close()

    def close(self) -> None:
        for s in (self._tx, self._rx):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()
        self._tx = self._rx = None
