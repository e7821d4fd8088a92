"""Process tuning applies what it may and warns about what it may not, never failing."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

import psutil

from daemon import tuning


def test_pin_and_report() -> None:
    allowed = sorted(psutil.Process().cpu_affinity() or [0])
    r = tuning.TuningReport()
    tuning.pin_cpus([allowed[-1]], r)
    try:
        assert psutil.Process().cpu_affinity() == [allowed[-1]]
        assert r.applied == [f"cpu_affinity={[allowed[-1]]}"]
    finally:
        psutil.Process().cpu_affinity(allowed)


def test_impossible_cpu_is_a_warning_not_an_error() -> None:
    r = tuning.TuningReport()
    tuning.pin_cpus([4096], r)
    assert not r.applied and "cpu_affinity" in r.warnings[0]


def test_fifo_and_mlockall_in_a_child() -> None:
    # in a child: SCHED_FIFO/mlockall must not leak into the test process
    code = (
        "from daemon import tuning; import os, json;"
        "r = tuning.apply([], True, 5, True);"
        "print(json.dumps([r.applied, r.warnings, os.sched_getscheduler(0) == os.SCHED_FIFO]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    applied, warnings, is_fifo = json.loads(out.stdout)
    # either applied or explained: nothing is silently lost
    assert len(applied) + len(warnings) == 2
    assert is_fifo == any("SCHED_FIFO" in a for a in applied)


def test_freeze_gc_in_a_child() -> None:
    code = (
        "from daemon import tuning; import gc; tuning.freeze_gc();"
        "print(gc.isenabled(), gc.get_freeze_count() > 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
    assert gc.isenabled()  # the test process itself is untouched
