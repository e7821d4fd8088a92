"""The control plane as a real child process: metrics over HTTP, ctl over a Unix socket,
journal drained and fsync'd, logs rendered, exit on the stop flag or the parent's death."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from daemon.commands.ctl import request
from daemon.shm import Ring
from daemon.telemetry import (
    CMD_HALT,
    EV_KILL_SWITCH,
    INFO,
    J_EXEC_REPORT,
    JOURNAL_RECORD,
    LOG_RECORD,
    MetricSpec,
    TelemetrySpec,
    journal_payload,
    journal_rows,
    observe_latency,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spec() -> TelemetrySpec:
    spec = TelemetrySpec(log_capacity=64, journal_capacity=64)
    spec.add(MetricSpec("drops", "nanoarb_md_drops_total", "decoder drops", "counter", 2,
                        label="reason", label_values=("short_packet", "bad_schema")))
    spec.add(MetricSpec("position", "nanoarb_position", "net position", "gauge", 1))
    spec.add(MetricSpec("lat", "nanoarb_stage_latency_seconds", "stage latency", "histogram", 1,
                        label="stage", label_values=("decode",)))
    return spec


def _wait(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


@pytest.fixture()
def plane(tmp_path: Path):
    spec = _spec()
    block = spec.create()
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec.to_json())
    port = _free_port()
    sock = tmp_path / "ctl.sock"
    journal = tmp_path / "journal.bin"
    log = tmp_path / "log.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon.controlplane", "--shm", block.name, "--spec", str(spec_file),
         "--parent-pid", str(os.getpid()), "--journal", str(journal), "--control-socket", str(sock),
         "--metrics-port", str(port), "--log-path", str(log)],
    )
    try:
        _wait(sock.exists)
        yield spec, block, port, sock, journal, log, proc
    finally:
        block["heartbeat"][3] = -1
        try:
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
            block.close()


def test_metrics_ctl_journal_logs_and_stop(plane) -> None:
    _, block, port, sock, journal, log, proc = plane
    block["drops"][:] = [3, 5]
    block["position"][0] = -2
    observe_latency(block["lat"], 0, 1_500)
    observe_latency(block["lat"], 0, 20_000_000)  # beyond the last bucket: +Inf
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'nanoarb_md_drops_total{reason="bad_schema"} 5.0' in body
    assert "nanoarb_position -2.0" in body
    assert 'nanoarb_stage_latency_seconds_bucket{le="2e-06",stage="decode"} 1.0' in body
    assert 'nanoarb_stage_latency_seconds_bucket{le="+Inf",stage="decode"} 2.0' in body
    assert 'nanoarb_stage_latency_seconds_count{stage="decode"} 2.0' in body

    # the socket is owner-only
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600

    # ctl: a fake hot loop answers the mailbox
    mb = block["mailbox"]
    stop = threading.Event()

    def hot_loop() -> None:
        seen = 0
        while not stop.is_set():
            if mb[0] != seen:
                seen = int(mb[0])
                mb[9] = 7 if mb[1] == CMD_HALT else -1
                mb[8] = seen
            time.sleep(0.0005)

    t = threading.Thread(target=hot_loop, daemon=True)
    t.start()
    try:
        reply = request(str(sock), "halt")
        assert reply["ok"] is True and reply["result"] == 7
        bad = request(str(sock), "explode")
        assert bad["ok"] is False and "unknown command" in str(bad["error"])
    finally:
        stop.set()
        t.join()

    # journal: rows pushed by the producer land in the file, byte for byte
    exec_dtype = np.dtype([("order_id", np.uint64), ("qty", np.int32), ("px", np.int64)])
    rows = np.zeros(10, exec_dtype)
    rows["order_id"] = np.arange(10) + 100
    rows["px"] = 4_500_250_000_000
    jr = Ring(block, "journal")
    assert jr.push(journal_rows(J_EXEC_REPORT, rows, 123)) == 10
    lr = Ring(block, "log")
    rec = np.zeros(1, LOG_RECORD)
    rec["code"] = EV_KILL_SWITCH
    rec["level"] = INFO
    rec["args"][0, 0] = 4
    lr.push(rec)
    _wait(lambda: journal.exists() and journal.stat().st_size == 10 * JOURNAL_RECORD.itemsize)
    back = np.fromfile(journal, JOURNAL_RECORD)
    assert (back["kind"] == J_EXEC_REPORT).all()
    np.testing.assert_array_equal(journal_payload(back, exec_dtype), rows)
    _wait(lambda: log.exists() and "kill_switch" in log.read_text())
    line = json.loads(log.read_text().strip().splitlines()[-1])
    assert line["event"] == "kill_switch" and line["working_orders"] == 4

    # the stop flag ends the process, after a final drain
    jr.push(journal_rows(J_EXEC_REPORT, rows[:3], 124))
    block["heartbeat"][3] = -1
    assert proc.wait(10) == 0
    assert journal.stat().st_size == 13 * JOURNAL_RECORD.itemsize
    assert not sock.exists()


def test_exits_when_parent_dies(tmp_path: Path) -> None:
    """A crashed daemon (kill -9) still gets its journal ring drained by the orphan."""
    spec = _spec()
    block = spec.create()
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec.to_json())
    journal = tmp_path / "journal.bin"
    rows = np.arange(5, dtype=np.int64)
    Ring(block, "journal").push(journal_rows(J_EXEC_REPORT, rows, 1))
    # an intermediate parent that starts the plane and is then SIGKILLed
    code = (
        "import subprocess,sys,os,time;"
        f"p=subprocess.Popen([sys.executable,'-m','daemon.controlplane','--shm','{block.name}',"
        f"'--spec','{spec_file}','--parent-pid',str(os.getpid()),'--journal','{journal}']);"
        "print(p.pid,flush=True);time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        _wait(lambda: journal.exists() and journal.stat().st_size == 5 * JOURNAL_RECORD.itemsize)
        parent.kill()
        parent.wait(5)

        def gone() -> bool:
            try:
                os.kill(child_pid, 0)
            except ProcessLookupError:
                return True
            # a zombie re-parented to init is gone for our purposes
            try:
                return Path(f"/proc/{child_pid}/stat").read_text().split()[2] == "Z"
            except OSError:
                return True

        _wait(gone)
    finally:
        if parent.poll() is None:
            parent.kill()
        block.close()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_control_plane_is_kept_off_the_hot_loops_core() -> None:
    from daemon.process import keep_off_hot_cores

    hot = [max(os.sched_getaffinity(0))]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert keep_off_hot_cores(child.pid, hot)
        assert os.sched_getaffinity(child.pid) == set(os.sched_getaffinity(0)) - set(hot)
        assert not keep_off_hot_cores(child.pid, [])  # hot loop not pinned: left alone
    finally:
        child.kill()
        child.wait()
