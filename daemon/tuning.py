"""Process tuning from config: CPU affinity, SCHED_FIFO, mlockall, GC freeze.

Each step that the machine does not permit (no CAP_SYS_NICE, a container without
RLIMIT_MEMLOCK, ...) is reported as a warning and skipped: a paper run on a
laptop must start as well as a live run on a tuned host.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
from dataclasses import dataclass, field

import psutil

MCL_CURRENT = 1
MCL_FUTURE = 2


@dataclass
class TuningReport:
    applied: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def set_numba_cache_dir(path: str) -> None:
    """Must run before numba is imported to take effect."""
    if path:
        os.makedirs(path, exist_ok=True)
        os.environ["NUMBA_CACHE_DIR"] = path


def pin_cpus(cpus: list[int], report: TuningReport) -> None:
    if not cpus:
        return
    try:
        psutil.Process().cpu_affinity(cpus)
        report.applied.append(f"cpu_affinity={cpus}")
    except (ValueError, OSError, psutil.Error) as exc:
        report.warnings.append(f"cpu_affinity {cpus} not applied: {exc}")


def sched_fifo(priority: int, report: TuningReport) -> None:
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        report.applied.append(f"SCHED_FIFO priority {priority}")
    except (PermissionError, OSError) as exc:
        report.warnings.append(f"SCHED_FIFO not applied: {exc}")


def mlockall(report: TuningReport) -> None:
    libc_name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        if libc.mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
            err = ctypes.get_errno()
            report.warnings.append(f"mlockall not applied: {os.strerror(err)}")
            return
        report.applied.append("mlockall")
    except OSError as exc:
        report.warnings.append(f"mlockall not applied: {exc}")


def freeze_gc() -> None:
    """After warm-up: move everything alive to the permanent generation, then stop the GC.

    The hot loop allocates nothing per packet, so no cycle can build up; a GC pass
    in the middle of a tick would cost milliseconds.
    """
    gc.collect()
    gc.freeze()
    gc.disable()


def apply(cpus: list[int], fifo: bool, priority: int, lock_memory: bool) -> TuningReport:
    report = TuningReport()
    pin_cpus(cpus, report)
    if lock_memory:
        mlockall(report)
    if fifo:
        sched_fifo(priority, report)
    return report
