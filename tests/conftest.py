"""Shared fixtures: paths to the team's reference data and the bundled schemas."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# ../shared/reference sits beside the checkout (CI clones next to shared/).
REFERENCE = Path(os.environ.get("NANOARB_REFERENCE", REPO.parent / "shared" / "reference"))
PCAP_DIR = REFERENCE / "pcap"
DBN_DIR = REFERENCE / "dbn"
CONFIG_DIR = REFERENCE / "config"
SCHEMA_DIR = REPO / "core" / "sbe" / "schemas"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.fail(f"reference data not found at {REFERENCE}: set NANOARB_REFERENCE")
    return REFERENCE


@pytest.fixture(scope="session")
def pcap_dir(reference_dir: Path) -> Path:
    return reference_dir / "pcap"
