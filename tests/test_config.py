"""Config: typed, frozen, unknown keys rejected, every error names its key."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from daemon.config import Config, ConfigError, load_config, parse_config, replace_risk

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["demo.toml", "paper.toml", "live.toml"])
def test_shipped_configs_parse(name: str) -> None:
    cfg = load_config(CONFIGS / name)
    assert cfg.mode == name.split(".")[0]
    if cfg.mode in ("live", "paper"):
        assert cfg.risk.start_active is False  # never straight into trading after a restart


def test_live_config_holds_no_credentials() -> None:
    text = (CONFIGS / "live.toml").read_text()
    cfg = load_config(CONFIGS / "live.toml")
    assert cfg.gateway.access_key_env.isupper() and cfg.gateway.secret_key_env.isupper()
    for word in ("secret_key =", "access_key =", "password"):
        assert word not in text


@pytest.mark.parametrize(
    ("toml", "key", "reason"),
    [
        ('[risk]\nmax_order_qty = "a"\n', "risk.max_order_qty", "Expected `int`, got `str`"),
        ("[risk]\nmax_qty = 1\n", "risk.max_qty", "unknown key"),
        ("[riks]\n", "riks", "unknown key"),
        ("[[instruments]]\nsecurity_id = 1\ndepth = 20\n", "instruments[0].depth", "1..10"),
        ("[[instruments]]\nsymbol = 'ES'\n", "instruments[0]", "security_id"),
        ('mode = "live"\n', "gateway.kind", "ilink3"),
        ("[strategy]\nquote_size = 100\n", "strategy.quote_size", "max_order_qty"),
        ("[risk]\ndaily_loss_limit = -1.0\n", "risk.daily_loss_limit", "> 0"),
        ('mode = "moon"\n', "mode", "Invalid enum value"),
        ("[process]\nkeep_warm_us = -5\n", "process.keep_warm_us", "0..100000"),
    ],
)
def test_errors_name_the_key(toml: str, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(toml, "x.toml")
    assert err.value.key == key
    assert reason in str(err.value)
    assert str(err.value).startswith(f"x.toml: {key}: ")


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_config("x = ")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.toml")


def test_frozen_and_reload_changes_only_risk() -> None:
    cfg = load_config(CONFIGS / "live.toml")
    with pytest.raises(AttributeError):
        cfg.risk.max_position = 100  # type: ignore[misc]
    newer = parse_config(
        (CONFIGS / "live.toml").read_text().replace("max_position = 2", "max_position = 3")
        .replace('session_id = "ABC"', 'session_id = "ZZZ"')
    )
    merged = replace_risk(cfg, newer)
    assert merged.risk.max_position == 3
    assert merged.gateway.session_id == "ABC"


def test_demo_file_equals_builtin_demo_defaults() -> None:
    """`nanoarb demo` runs from an installed package: its built-in config is this file."""
    from daemon.config import demo_config

    assert msgspec.structs.asdict(demo_config()) == msgspec.structs.asdict(
        load_config(CONFIGS / "demo.toml")
    )
    assert isinstance(demo_config(), Config)


@pytest.mark.parametrize("name", ["demo.toml", "paper.toml", "live.toml"])
def test_config_written_back_as_toml_reads_the_same(name: str) -> None:
    from daemon.demo import config_toml

    cfg = load_config(CONFIGS / name)
    assert parse_config(config_toml(cfg)) == cfg


def test_config_converts_to_the_trading_core_types() -> None:
    from daemon.config import InstrumentConfig, market_maker_params, risk_limits

    cfg = load_config(CONFIGS / "live.toml")
    over = InstrumentConfig(security_id=1, max_position=1)
    lim = risk_limits(cfg, [None, over])
    assert lim.max_daily_loss == cfg.risk.daily_loss_limit
    assert lim.submit_limit == cfg.risk.max_submits_per_s
    assert lim.stale_ns == cfg.risk.stale_data_ms * 1_000_000
    assert lim.instruments[0].max_position == cfg.risk.max_position
    assert lim.instruments[1].max_position == 1  # the instrument's override
    mm = market_maker_params(cfg)
    assert (mm.gamma, mm.k, mm.n_layers) == (cfg.strategy.risk_aversion,
                                             cfg.strategy.arrival_intensity, cfg.strategy.layers)
