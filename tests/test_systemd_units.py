"""The unit files are what systemd accepts: `systemd-analyze verify` with no warning."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNITS = REPO / "systemd"


def _verify(unit: Path, tmp_path: Path, instance: str = "") -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("nanoarb")
    assert exe.exists(), "the nanoarb console script is not installed in this environment"
    text = unit.read_text().replace("/opt/nanoarb/.venv/bin/nanoarb", str(exe))
    name = unit.name.replace("@.", f"@{instance}.") if instance else unit.name
    target = tmp_path / name
    target.write_text(text)
    return subprocess.run(
        ["systemd-analyze", "verify", str(target)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize(
    ("unit", "instance"), [("nanoarb.service", ""), ("nanoarb@.service", "es")]
)
def test_systemd_analyze_verify(unit: str, instance: str, tmp_path: Path) -> None:
    r = _verify(UNITS / unit, tmp_path, instance)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    for bad in ("Unknown key", "ignoring", "Invalid", "Failed"):
        assert bad not in out, out


@pytest.mark.parametrize("unit", ["nanoarb.service", "nanoarb@.service"])
def test_unit_promises(unit: str) -> None:
    """The properties the README promises operators (watchdog, notify, restart into HALTED)."""
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read(UNITS / unit)
    svc = cp["Service"]
    assert svc["Type"] == "notify"
    assert svc["NotifyAccess"] == "all"  # the control plane child pets the watchdog
    assert int(svc["WatchdogSec"]) > 0
    assert svc["Restart"] == "on-failure"
    assert svc["KillSignal"] == "SIGTERM"
    assert svc["KillMode"] == "mixed"
    assert "kill -HUP" in svc["ExecReload"]
    assert svc["LimitMEMLOCK"] == "infinity"
    assert "--config" in svc["ExecStart"]
