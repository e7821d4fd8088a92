"""The daemon process: start-up, the control-plane child, the run, the stop.

``run_daemon(cfg, ...)`` is what ``nanoarb run|paper|demo|replay`` call:

1. STARTING: numba cache dir, early signal handlers (a signal during start-up
   is remembered, never fatal), the journal read back (positions, the day's
   P&L, working orders, ClOrdIDs), the engine built from the config.
2. The control plane started as a child process on the shared block (metrics,
   logs, journal fsync, ``nanoarb ctl``, watchdog), unless ``control=False``
   (replay).
3. Process tuning (affinity, SCHED_FIFO, mlockall; warn, never fail), warm-up
   of every kernel and the model, trader STARTING -> HALTED, positions restored,
   the gateway connected; READY=1 to systemd; ``gc.freeze(); gc.disable()``.
4. RUNNING in the hot loop. Once the gateway has reconciled, ACTIVE if
   ``risk.start_active`` and the previous run of the day stopped cleanly;
   otherwise HALTED until an operator resumes (SIGUSR2 / ``nanoarb ctl resume``).
5. STOPPING (SIGTERM/SIGINT): halt, cancel all, wait for the acks, a clean-stop
   row in the journal, the control plane drains and exits, exit 0.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.config import Config, ConfigError, load_config, risk_limits


@dataclass
class RunResult:
    engine: Any
    loop: Any
    journal: Any
    warmup_ms: int
    tuning: Any
    started_ns: int
    stopped_ns: int
    exit_code: int = 0
    control_plane_rc: int | None = None
    messages: list[str] = field(default_factory=list)


class _EarlyFlags:
    """Signals that arrive before the hot loop exists: remembered, then handed over."""

    def __init__(self) -> None:
        self.bits = 0
        self.signum = 0
        from daemon.hotloop import F_KILL, F_RELOAD, F_RESUME, F_STOP

        table = {signal.SIGUSR1: F_KILL, signal.SIGUSR2: F_RESUME, signal.SIGHUP: F_RELOAD,
                 signal.SIGTERM: F_STOP, signal.SIGINT: F_STOP}
        for sig, bit in table.items():
            signal.signal(sig, self._handler(bit))

    def _handler(self, bit: int) -> Callable[[int, Any], None]:
        def h(signum: int, _frame: Any) -> None:
            self.bits |= bit
            self.signum = signum
        return h


def _log(msg: str) -> None:
    """Start-up/shutdown messages before/after the control plane: plain stderr lines."""
    print(f"nanoarb: {msg}", file=sys.stderr, flush=True)


def start_control_plane(spec: Any, block: Any, cfg: Config, *, journal: str,
                        control_socket: str, tmpdir: str) -> subprocess.Popen[bytes]:
    spec_path = Path(tmpdir) / "telemetry.json"
    spec_path.write_text(spec.to_json(), encoding="utf-8")
    cmd = [sys.executable, "-m", "daemon.controlplane", "--shm", block.name,
           "--spec", str(spec_path), "--parent-pid", str(os.getpid()),
           "--control-socket", control_socket, "--log-level", cfg.log.level]
    if journal:
        cmd += ["--journal", journal]
    if not cfg.journal.fsync:
        cmd.append("--no-fsync")
    if cfg.metrics.enabled:
        cmd += ["--metrics-bind", cfg.metrics.bind, "--metrics-port", str(cfg.metrics.port)]
    if cfg.log.path:
        cmd += ["--log-path", cfg.log.path]
    env = dict(os.environ)
    # the control plane never needs the exchange credentials
    env.pop(cfg.gateway.access_key_env, None)
    env.pop(cfg.gateway.secret_key_env, None)
    cp = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, close_fds=True,
                          start_new_session=False)
    keep_off_hot_cores(cp.pid, cfg.process.cpu_affinity)
    return cp


def keep_off_hot_cores(pid: int, hot_cpus: Sequence[int]) -> bool:
    """Pin a helper process (control plane, scraper) to the CPUs the hot loop does not
    use: a scrape or a log flush must never take the hot loop's core. False when the
    hot loop is not pinned or no other CPU is allowed."""
    if not hot_cpus or not hasattr(os, "sched_setaffinity"):
        return False
    others = set(os.sched_getaffinity(0)) - {int(c) for c in hot_cpus}
    if not others:
        return False
    try:
        os.sched_setaffinity(pid, others)
    except OSError:  # the process already exited, or a cpuset forbids it
        return False
    return True


def _wait_control_plane(cp: subprocess.Popen[bytes], block: Any,
                        timeout_s: float = 60.0) -> None:
    from daemon.controlplane import HB_CP_UP

    deadline = time.monotonic() + timeout_s
    while int(block["heartbeat"][HB_CP_UP]) != 1:
        if cp.poll() is not None:
            raise RuntimeError(f"the control plane exited ({cp.returncode}) during start-up")
        if time.monotonic() > deadline:
            raise RuntimeError("the control plane did not come up in time")
        time.sleep(0.005)


def run_daemon(cfg: Config, *, mode: str | None = None, config_path: str | None = None,
               data: Sequence[str] = (), control: bool = True, journal: str | None = None,
               control_socket: str | None = None, max_seconds: float | None = None,
               environ: Any = None, on_ready: Callable[[Any], None] | None = None,
               quiet: bool = False) -> RunResult:
    """Run the daemon until stopped; returns what the commands summarise."""
    from daemon import tuning

    t_start = time.time_ns()
    mode = mode or cfg.mode
    early = _EarlyFlags()
    from daemon.numba_cache import use_source_cache

    use_source_cache(cfg.process.numba_cache_dir)  # a no-op once numba is imported
    say = (lambda _m: None) if quiet else _log

    from daemon.hotloop import HB_PID, HB_READY, READY_STOPPING, HotLoop, LoopParts, Shared
    from daemon.journal import (
        SESSION_CLEAN_STOP,
        SESSION_START,
        read_journal,
        restore_trader,
        scan_journal,
        session_row,
        trading_day,
    )
    from daemon.metrics import Publisher, daemon_spec
    from daemon.sdnotify import Notifier

    journal_path = cfg.journal.path if journal is None else journal
    if mode == "replay":
        journal_path = journal or ""
    day = trading_day(time.time_ns())
    if journal_path:
        from daemon.controlplane import wait_journal_unlocked

        if not wait_journal_unlocked(journal_path):
            raise ConfigError("journal.path", f"{journal_path} is locked by another nanoarb "
                              "control plane (is another daemon running on this journal?)")
    jstate = scan_journal(read_journal(journal_path) if journal_path else
                          read_journal("/nonexistent"), day)
    if journal_path and jstate.rows:
        say(f"journal {journal_path}: {jstate.rows} rows, {jstate.sessions} run(s) today, "
            f"last {'clean' if jstate.last_session_clean else 'CRASHED'}, "
            f"{len(jstate.working)} order(s) believed working")

    from daemon.engine import build

    cache = os.environ.get("NUMBA_CACHE_DIR", "")
    cold = bool(cache) and not any(Path(cache).glob("*/*.nbi")) and not any(
        Path(cache).glob("*.nbi"))
    say(f"starting ({mode})" + ("; first run of these sources: compiling the kernels "
                                "(minutes on a small machine, cached afterwards)" if cold else ""))
    eng = build(cfg, mode=mode, data=data, cl_ord_id_base=jstate.next_cl_seq,
                base_dir=Path(config_path).parent if config_path else None, environ=environ)
    spec = daemon_spec(eng.symbols)
    tmpdir = tempfile.mkdtemp(prefix="nanoarb-")
    block: Any
    cp: subprocess.Popen[bytes] | None = None
    if control:
        block = spec.create()
        sock = control_socket if control_socket is not None else cfg.control.socket
        cp = start_control_plane(spec, block, cfg, journal=journal_path, control_socket=sock,
                                 tmpdir=tmpdir)
    else:
        import numpy as np

        block = {key: np.zeros(shape, dtype=dt) for key, dt, shape in spec.layout()}
    shared = Shared(block, spec)
    block["heartbeat"][HB_PID] = os.getpid()

    def reload_limits() -> Any:
        if not config_path:
            raise ConfigError("", "no config file to reload")
        new = load_config(config_path)
        inst = {ic.security_id: ic for ic in new.instruments}
        return risk_limits(new, [inst.get(sid) for sid in eng.traded])

    notifier = Notifier() if mode != "replay" else None
    parts = LoopParts(
        clock=eng.clock, source=eng.source, market=eng.market, core=eng.core,
        gateway=eng.gateway, traded_rows=eng.traded_rows, sequencer=eng.sequencer,
        seq_rows=eng.seq_rows, runner=eng.runner, sim=eng.sim if mode == "paper" or eng.replay
        else None, instruments=eng.table, appl_ids=eng.appl_ids,
        join=getattr(eng.source, "join", None), leave=getattr(eng.source, "leave", None),
        kernel_timestamps=cfg.market_data.kernel_timestamps and not eng.replay,
        replay=eng.replay)
    loop = HotLoop(parts, shared, on_reload=reload_limits,
                   stop_timeout_s=cfg.risk.stop_timeout_ms / 1000, notifier=notifier,
                   keep_warm_us=cfg.process.keep_warm_us,
                   keep_warm_send=cfg.process.keep_warm_send)
    if not control:
        loop.journal_reports = []
    loop.publisher = Publisher(block, eng.sequencer, eng.market, eng.core, loop.counters,
                               loop.md_packets, eng.runner.ctl if eng.runner is not None
                               else None, gateway=eng.gateway)
    result = RunResult(engine=eng, loop=loop, journal=jstate, warmup_ms=0, tuning=None,
                       started_ns=t_start, stopped_ns=0)
    try:
        rep = tuning.apply(cfg.process.cpu_affinity, cfg.process.sched_fifo,
                           cfg.process.sched_priority, cfg.process.mlockall)
        result.tuning = rep
        for w in rep.warnings:
            say(f"warning: {w}")
        result.warmup_ms = int(loop.warm_up())
        loop.journal_raw(session_row(SESSION_START, os.getpid(), day, time.time_ns()))
        eng.core.finish_startup()  # STARTING -> HALTED
        restored = restore_trader(eng.core, jstate)
        if restored or jstate.working:
            from daemon.telemetry import EV_RESTORED, INFO

            loop.log(EV_RESTORED, INFO, len(restored), sum(len(f) for f in jstate.fills.values()),
                     len(jstate.working), jstate.next_cl_seq)
            say(f"restored from the journal: positions {restored}, "
                f"{len(jstate.working)} order(s) to reconcile")
        auto_resume = cfg.risk.start_active and jstate.last_session_clean
        if cfg.risk.start_active and not jstate.last_session_clean:
            say("the previous run did not stop cleanly: staying HALTED until an operator "
                "resumes (SIGUSR2 or `nanoarb ctl resume`)")

        def gateway_ready() -> None:
            if auto_resume:
                loop.resume()

        loop.on_gateway_ready = gateway_ready
        open_ = getattr(eng.source, "open", None)
        if open_ is not None and not eng.replay:
            open_()
        if jstate.gateway_seq is not None:
            from daemon.engine import resume_order_session

            if resume_order_session(eng.gateway, *jstate.gateway_seq):
                say(f"re-establishing the order-entry session {jstate.gateway_seq[0]} "
                    f"from seq {jstate.gateway_seq[1]} (reports missed are retransmitted)")
        eng.gateway.connect()
        loop.install_signal_handlers()
        loop.flags |= early.bits
        loop.stop_signal = early.signum
        if cp is not None:
            _wait_control_plane(cp, block)  # READY means operable: ctl socket and metrics up
        if notifier is not None:
            notifier.ready(f"READY (HALTED until reconciled) warm-up {result.warmup_ms} ms")
        from daemon.telemetry import EV_READY
        from daemon.telemetry import INFO as LV_INFO

        loop.log(EV_READY, LV_INFO, result.warmup_ms)
        if cfg.process.gc_freeze:
            tuning.freeze_gc()
        if on_ready is not None:
            on_ready(loop)
        say(f"READY (warm-up {result.warmup_ms} ms, pid {os.getpid()})")
        loop.run(max_seconds=max_seconds)
        gc.enable()
        if loop.stopped_clean:
            loop.journal_raw(session_row(SESSION_CLEAN_STOP, os.getpid(), day, time.time_ns()))
    finally:
        gc.enable()
        result.stopped_ns = time.time_ns()
        block["heartbeat"][HB_READY] = READY_STOPPING
        if cp is not None:
            try:
                result.control_plane_rc = cp.wait(timeout=10)
            except subprocess.TimeoutExpired:
                cp.terminate()
                result.control_plane_rc = cp.wait(timeout=5)
        if notifier is not None:
            notifier.close()
        eng.close()
        with contextlib.suppress(OSError):
            for f in Path(tmpdir).iterdir():
                f.unlink()
            Path(tmpdir).rmdir()
        close = getattr(block, "close", None)
        if close is not None:
            close()  # unlinks the name; the mapping stays while the loop's views live
    return result


__all__ = ["RunResult", "keep_off_hot_cores", "run_daemon", "start_control_plane"]
