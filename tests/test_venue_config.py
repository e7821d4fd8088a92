"""Venue config: the bundled demo config loads; every problem names its key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from adapters.venue.config import (
    ConfigError,
    load_venue_config,
    parse_venue_config,
    security_group,
)

REPO = Path(__file__).resolve().parents[1]
MINIMAL = """
[order_entry]
enabled = false
[[instruments]]
security_id = 1
symbol = "ESZ5"
"""


def test_bundled_config_loads() -> None:
    cfg = load_venue_config(REPO / "configs" / "venue.toml")
    assert [i.symbol for i in cfg.instruments] == ["ESZ5", "CLZ5"]
    assert cfg.market_data.incremental_a.host == "127.0.0.1"
    assert cfg.order_entry.sessions[0].session_id == "DEM"
    assert cfg.venue.loop == "wait"


def test_defaults_and_derived_group() -> None:
    cfg = parse_venue_config(MINIMAL)
    assert cfg.market_data.schema_version == 13 and cfg.flow.enabled
    assert security_group(cfg.instruments[0]) == "ES"


@pytest.mark.parametrize(("text", "key"), [
    (MINIMAL + "\n[venue]\nlop = 'busy'\n", "venue.lop"),
    (MINIMAL + "\n[venue]\nloop = 'spin'\n", "venue.loop"),
    (MINIMAL.replace('symbol = "ESZ5"', 'symbol = "ESZ5"\ntick = 0'), "instruments[0].tick"),
    (MINIMAL.replace('symbol = "ESZ5"', 'symbol = "ESZ5"\nstart_price = 26'),
     "instruments[0].start_price"),
    (MINIMAL + "\n[market_data]\nincremental_a = { host = '10.1.2.3', port = 1 }\n",
     "market_data.incremental_a.host"),
    (MINIMAL + "\n[market_data]\nschema_version = 8\n", "market_data.schema_version"),
    (MINIMAL + "\n[flow]\nhawkes_alpha = 2000.0\n", "flow.hawkes_alpha"),
    (MINIMAL + "\n[[faults]]\nat_ms = 1\nkind = 'drop'\n", "faults[0].feed"),
    (MINIMAL + "\n[[faults]]\nat_ms = 1\nkind = 'explode'\n", "faults[0].kind"),
    (MINIMAL.replace("enabled = false", "enabled = true"), "order_entry.sessions"),
    (MINIMAL + "\n[[instruments]]\nsecurity_id = 1\nsymbol = 'X'\n",
     "instruments[1].security_id"),
    ("[order_entry]\nenabled = false\n", "instruments"),
])
def test_errors_name_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_venue_config(text, "v.toml")
    assert err.value.key == key
    assert str(err.value).startswith(f"v.toml: {key}")


def test_multicast_groups_are_accepted() -> None:
    cfg = parse_venue_config(MINIMAL + "\n[market_data]\nincremental_a = "
                             "{ host = '239.1.2.3', port = 14310 }\n")
    assert cfg.market_data.incremental_a.host == "239.1.2.3"


def test_cli_reports_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL + "\n[venue]\nmax_wait_us = 0\n")
    r = subprocess.run([sys.executable, "-m", "daemon.cli", "venue", "--config", str(bad)],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "venue.max_wait_us: must be > 0" in r.stderr
