"""The TCP send-path warmer: a private loopback connection, traffic read back, no raise."""

from __future__ import annotations

import socket

import pytest

from adapters.net_warm import SendPathWarmer


def _pending(sock: socket.socket) -> int:
    try:
        return len(sock.recv(1 << 16, socket.MSG_DONTWAIT | socket.MSG_PEEK))
    except BlockingIOError:
        return 0


def test_warm_sends_over_a_private_loopback_connection_and_reads_it_back() -> None:
    w = SendPathWarmer(nbytes=300)
    try:
        tx, rx = w._tx, w._rx
        assert tx is not None and rx is not None
        # both ends ours, on 127.0.0.1: nothing leaves the machine
        assert tx.getpeername() == rx.getsockname()
        assert tx.getsockname()[0] == rx.getsockname()[0] == "127.0.0.1"
        assert tx.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        for i in range(1, 51):
            w.warm()
            assert w.runs == i
            assert _pending(rx) == 0  # read back in the same call: nothing piles up
        assert w.errors == 0 and not w.closed
    finally:
        w.close()
    assert w.closed
    w.warm()  # closed: a no-op
    w.close()
    assert w.runs == 50 and w.errors == 0


def test_a_broken_connection_is_counted_and_turns_the_warmer_off() -> None:
    w = SendPathWarmer()
    assert w._rx is not None
    w._rx.close()  # the reading end goes away: the peer answers with a reset
    for _ in range(5):
        w.warm()  # never raises
        if w.closed:
            break
    assert w.closed and w.errors == 1
    runs = w.runs
    w.warm()
    assert w.runs == runs and w.errors == 1


def test_no_loopback_means_an_oserror_at_construction_not_later(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: object, **_k: object) -> socket.socket:
        raise OSError("no loopback")

    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(OSError, match="no loopback"):
        SendPathWarmer()
