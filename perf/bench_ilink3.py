"""iLink 3 codec and gateway benchmark.

Figures (issue 7 target: encode one order "well under 1 us"):

* ``ilink3_encode_ns_per_order``: NewOrderSingle frames encoded per order inside one
  kernel call of 128 actions (template copy + patch + store copy + SeqNum).
* ``ilink3_send_call_p50_us``: one ``_encode_actions`` call for one order through
  the compiled entry point the gateway binds (what ``send`` costs before the socket).
* ``ilink3_decode_ns_per_report``: execution reports (new/fill/cancel mix) framed,
  sequenced and decoded into EXEC_REPORT rows, per report, in one kernel call.
* ``ilink3_gateway_send_p50_us``: ``Ilink3Gateway.send`` of one new order, all of
  it: clock reads, the fused encode + ``send(2)`` numba call, bookkeeping.
* ``ilink3_order_ack_rtt_p50_us`` / ``_p99_us``: gateway.send -> TCP loopback ->
  acceptor (Python FIXP + stub handler) -> ExecutionReportNew -> gateway.poll, both
  polled by this process. Dominated by the exchange side's Python; no target.

Run: ``python -m perf.bench_ilink3 [--out DIR] [--quick]``.
"""

from __future__ import annotations

import base64
import time

import numpy as np
from numba import typeof, types

from perf._common import base_parser, figure, now_iso, percentiles_us, write_result


def _encode_figures(quick: bool) -> list[dict]:
    from core.sbe import ilink3 as il
    from core.types import ACT_NEW, ORDER_ACTION

    il.warm_up()
    gw = il.new_gateway_state()
    mem = il.new_order_memory(gw, sender_id="OPER01", location="US,IL",
                              party_details_list_req_id=1)
    acts = np.zeros(128, ORDER_ACTION)
    acts["action"] = ACT_NEW
    acts["cl_ord_id"] = (np.arange(128, dtype=np.uint64) + 1000) << np.uint64(9)
    acts["price"] = 4500_250000000
    acts["qty"] = 1
    acts["side"] = 1
    acts["security_id"] = 1234
    acts["trigger_seq"] = 99
    enc = il._encode_actions.compile((typeof(acts), types.int64, typeof(mem), typeof(gw),
                                      types.int64))
    reps = 20 if quick else 200
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        for _ in range(20):
            enc(acts, 128, mem, gw, 1)
        best = min(best, (time.perf_counter_ns() - t0) / (20 * 128))
    one = np.empty(2000 if quick else 20000, dtype=np.int64)
    for i in range(len(one)):
        t0 = time.perf_counter_ns()
        enc(acts, 1, mem, gw, 1)
        one[i] = time.perf_counter_ns() - t0
    p = percentiles_us(one)
    return [
        figure("ilink3_encode_ns_per_order", best, "ns", target=500, better="lower"),
        figure("ilink3_send_call_p50_us", p["p50"], "us", target=1.0, better="lower",
               p99_us=p["p99"]),
    ]


def _decode_figure(quick: bool) -> dict:
    from adapters.ilink3_acceptor import (
        AppMessage,
        OrderState,
        encode_app,
        report_cancel,
        report_new,
        report_trade,
    )
    from core.sbe import ilink3 as il
    from core.types import EXEC_REPORT

    n = 256
    frames = []
    for i in range(n):
        o = OrderState(order_id=10 + i, cl_ord_id=il.cl_ord_id_text((i + 1) << 9),
                       security_id=1234, side=1, price=4500_250000000, order_qty=2)
        kind = i % 3
        if kind == 0:
            m = report_new(o, 1)
        elif kind == 1:
            o.cum_qty = 1
            m = report_trade(o, 4500_250000000, 1, 1)
        else:
            m = report_cancel(o, 1)
        f = dict(m.fields, SeqNum=i + 1, UUID=1, SendingTimeEpoch=1, PossRetransFlag=0)
        frames.append(encode_app(AppMessage(m.template_id, f)))
    buf = np.frombuffer(b"".join(frames), dtype=np.uint8).copy()
    gw = il.new_gateway_state()
    out = np.zeros(n, EXEC_REPORT)
    dec = il._decode_frames
    reps = 20 if quick else 200
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        for _ in range(10):
            gw[il.SEQ_NEXT_RECV] = 1
            _pos, got, _stop = dec(buf, 0, len(buf), out, 0, n, gw, 0)
        best = min(best, (time.perf_counter_ns() - t0) / (10 * n))
    assert got == n
    return figure("ilink3_decode_ns_per_report", best, "ns", target=500, better="lower")


def _rtt_figures(quick: bool) -> list[dict]:
    from adapters.clock import MonotonicClock
    from adapters.ilink3_acceptor import Ilink3Acceptor, StubOrderHandler
    from adapters.ilink3_gateway import Ilink3Gateway, Ilink3GatewayConfig
    from core import fixp
    from core.types import ACT_CANCEL, ACT_NEW, ER_CANCEL, ER_NEW, EXEC_REPORT, ORDER_ACTION

    secret = base64.urlsafe_b64encode(b"bench-secret-key-0123456789abcdef").decode()
    clock = MonotonicClock()
    keys = fixp.KeyStore()
    keys.add(fixp.Credentials("AKIDBENCH00000000001", secret), "BEN", "FIRM1")
    handler = StubOrderHandler(bid=1, ask=2**62, clock=clock)
    acc = Ilink3Acceptor(keys, handler, clock=clock)
    _host, port = acc.start()
    gw = Ilink3Gateway(Ilink3GatewayConfig("BEN", "FIRM1", port=port, keepalive_ms=30_000),
                       fixp.Credentials("AKIDBENCH00000000001", secret), clock=clock)
    reports = np.zeros(256, EXEC_REPORT)
    actions = np.zeros(1, ORDER_ACTION)
    gw.bind(reports, actions)
    gw.connect()
    deadline = time.monotonic() + 10
    while not gw.is_connected() and time.monotonic() < deadline:
        acc.poll()
        gw.poll(reports)
    if not gw.is_connected():
        raise RuntimeError("gateway did not connect")
    n = 200 if quick else 3000
    rtt = np.empty(n, dtype=np.int64)
    send_ns = np.empty(n, dtype=np.int64)
    a = actions[0]
    a["price"], a["qty"], a["side"], a["security_id"] = 4500_000000000, 1, 1, 1234
    for i in range(n):
        for act, want in ((ACT_NEW, ER_NEW), (ACT_CANCEL, ER_CANCEL)):
            a["action"] = act
            a["cl_ord_id"] = (i + 1) << 9
            t0 = time.perf_counter_ns()
            gw.send(actions, 1)
            t1 = time.perf_counter_ns()
            done = False
            while not done:
                acc.poll()
                k = gw.poll(reports)
                done = any(reports[j]["kind"] == want for j in range(k))
            if act == ACT_NEW:
                rtt[i] = time.perf_counter_ns() - t0
                send_ns[i] = t1 - t0
            if act == ACT_NEW and reports[0]["order_id"]:
                a["order_id"] = reports[0]["order_id"]
    gw.stop()
    acc.close()
    p = percentiles_us(rtt)
    ps = percentiles_us(send_ns)
    return [
        figure("ilink3_gateway_send_p50_us", ps["p50"], "us", target=5.0, better="lower",
               p99_us=ps["p99"]),
        figure("ilink3_order_ack_rtt_p50_us", p["p50"], "us", better="lower"),
        figure("ilink3_order_ack_rtt_p99_us", p["p99"], "us", better="lower"),
    ]


def main(argv: list[str] | None = None) -> int:
    args = base_parser(__doc__ or "").parse_args(argv)
    started = now_iso()
    figures = _encode_figures(args.quick)
    figures.append(_decode_figure(args.quick))
    figures += _rtt_figures(args.quick)
    path = write_result("ilink3", figures, args.out, started=started)
    for f in figures:
        print(f"{f['name']:32s} {f['value']:12.3f} {f['unit']:3s} target {f['target']} "
              f"met {f['met']}")
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
