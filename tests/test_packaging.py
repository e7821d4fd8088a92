"""An installed nanoarb works without the repository (issue 2, item 7).

The wheel is built from this checkout and installed into a bare directory; the
commands then run from a directory with no repository in sight, with only that
directory on the path for our packages: the schemas and the default model must
come from package data, never from ``../shared`` or the work tree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REFERENCE

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    wheels = tmp / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT),
                    "-w", str(wheels)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("nanoarb-*.whl")
    target = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    return target


def _run(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NANOARB_REFERENCE"}
    env["PYTHONPATH"] = str(site)
    return subprocess.run([sys.executable, "-c", "import sys; from daemon.cli import main; "
                           "sys.exit(main())", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=300)


def test_wheel_carries_every_schema_and_the_default_model(installed: Path) -> None:
    shipped = {p.name for p in (installed / "core" / "sbe" / "schemas").glob("*.xml")}
    in_repo = {p.name for p in (ROOT / "core" / "sbe" / "schemas").glob("*.xml")}
    assert in_repo and shipped == in_repo
    models = {p.name for p in (installed / "core" / "models").iterdir()}
    assert any(m.endswith(".onnx") for m in models)
    assert models == {p.name for p in (ROOT / "core" / "models").iterdir()
                      if p.suffix in (".onnx", ".json")}


def test_installed_decode_runs_outside_the_repository(installed: Path, tmp_path: Path) -> None:
    capture = REFERENCE / "pcap" / "mdp3_v9_udp_MDIncrementalRefreshOrderBook47.pcap"
    if not capture.exists():
        pytest.skip(f"no reference capture at {capture}")
    probe = _run(installed, "decode", str(capture), "--json", cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr[-2000:]
    rows = [json.loads(line) for line in probe.stdout.splitlines()]
    assert rows and rows[0]["template_id"] == 47 and rows[0]["schema_id"] == 1
    where = subprocess.run([sys.executable, "-c", "import core; print(core.__file__)"],
                           cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(installed)},
                           text=True, capture_output=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(installed)
