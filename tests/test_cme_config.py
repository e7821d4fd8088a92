"""Channel selection from CME's config.xml and from our TOML [feed] section."""

from __future__ import annotations

import tomllib
import xml.etree.ElementTree as ET

import pytest

from adapters.cme_config import (
    ChannelConfig,
    ConfigError,
    Endpoint,
    FeedConfig,
    load_cme_config,
    select_channels,
)
from core.types import FEED_A, FEED_B, ROLE_DEFINITION, ROLE_INCREMENTAL, ROLE_SNAPSHOT
from tests.conftest import CONFIG_DIR

XML = CONFIG_DIR / "cme_mdp3_config_certification_2018-09-04.xml"


def _raw_connections(channel_id: int) -> list[dict[str, str]]:
    """The connections of a channel read straight from the XML (independent of the loader)."""
    root = ET.parse(XML).getroot()
    ch = next(c for c in root.iter("channel") if c.get("id") == str(channel_id))
    return [{"type": c.find("type").get("feed-type"), "ip": c.findtext("ip").strip(),  # type: ignore[union-attr]
             "port": c.findtext("port").strip(), "feed": c.findtext("feed").strip()}  # type: ignore[union-attr]
            for c in ch.iter("connection")]


def test_every_channel_and_connection_is_read():
    chans = load_cme_config(XML)
    root = ET.parse(XML).getroot()
    assert len(chans) == len(list(root.iter("channel"))) == 66
    n_conn = sum(len(c.endpoints) for c in chans.values())
    assert n_conn == len(list(root.iter("connection")))


def test_channel_931_feeds():
    ch = load_cme_config(XML)[931]
    assert ch.label == "Autocert - Futures Equities - 0ES"
    assert "BZQ" in ch.products and "N$" in ch.groups
    raw = {(r["type"], r["feed"]): r for r in _raw_connections(931)}
    inc = ch.endpoints_for("incremental")
    assert [(e.feed, e.ip, e.port) for e in inc] == [
        ("A", raw["I", "A"]["ip"], int(raw["I", "A"]["port"])),
        ("B", raw["I", "B"]["ip"], int(raw["I", "B"]["port"]))]
    assert inc[0].role_code == ROLE_INCREMENTAL and inc[0].feed_code == FEED_A
    assert inc[1].feed_code == FEED_B and inc[0].is_multicast
    assert inc[0].source_ip == "69.50.112.46"
    (snap,) = ch.endpoints_for("snapshot")
    assert (snap.ip, snap.port, snap.role_code) == (raw["S", "A"]["ip"],
                                                    int(raw["S", "A"]["port"]), ROLE_SNAPSHOT)
    (defn,) = ch.endpoints_for("definition")
    assert defn.role_code == ROLE_DEFINITION and defn.port == int(raw["N", "A"]["port"])
    assert len(ch.endpoints_for("snapshot_mbo")) == 1
    assert ch.endpoints_for("incremental", feeds=("B",)) == [inc[1]]


def test_select_by_id_product_and_group():
    chans = load_cme_config(XML)
    assert [c.channel_id for c in select_channels(chans, ids=[931, 901])] == [901, 931]
    by_product = select_channels(chans, products=["BZQ"])
    assert 931 in [c.channel_id for c in by_product]
    assert all("BZQ" in c.products for c in by_product)
    by_group = select_channels(chans, products=["group:N$"])
    assert by_group and all("N$" in c.groups for c in by_group)
    with pytest.raises(ConfigError):
        select_channels(chans, ids=[12345])
    with pytest.raises(ConfigError):
        select_channels(chans, products=["NOPE"])


def test_feed_config_from_toml_with_config_xml_and_explicit():
    text = f"""
[feed]
interface = "10.1.2.3"
config_xml = "{XML}"
channels = [931]
feeds = ["A", "B"]
source_specific = true

[[feed.explicit]]
channel_id = 9001
label = "demo"
endpoints = [
  {{role = "incremental", feed = "A", ip = "127.0.0.1", port = 40001}},
  {{role = "snapshot", feed = "A", ip = "127.0.0.1", port = 40002}},
]
"""
    cfg = FeedConfig.from_dict(tomllib.loads(text)["feed"])
    chans = cfg.resolve()
    assert [c.channel_id for c in chans] == [931, 9001]
    assert cfg.interface == "10.1.2.3" and cfg.source_specific
    demo = chans[1]
    assert not demo.endpoints_for("incremental")[0].is_multicast


@pytest.mark.parametrize("bad", [
    {},  # nothing to run
    {"config_xml": str(XML)},  # no selection
    {"explicit": [{"channel_id": 1, "endpoints": [
        {"role": "snapshot", "feed": "A", "ip": "127.0.0.1", "port": 1}]}]},  # no incremental
    {"explicit": [{"channel_id": 1, "endpoints": [
        {"role": "incremental", "feed": "C", "ip": "127.0.0.1", "port": 1}]}]},
    {"explicit": [{"channel_id": 1, "endpoints": [
        {"role": "incremental", "feed": "A", "ip": "127.0.0.1", "port": 0}]}]},
    {"config_xml": str(XML), "channels": [931], "feeds": ["Z"]},
    {"config_xml": str(XML), "channels": [931], "unknown_key": 1},
])
def test_bad_feed_config_is_refused(bad):
    with pytest.raises(ConfigError):
        FeedConfig.from_dict(bad).resolve()


def test_duplicate_channel_is_refused():
    ep = Endpoint("incremental", "A", "127.0.0.1", 40001)
    cfg = FeedConfig(config_xml=str(XML), channels=[931],
                     explicit=[ChannelConfig(channel_id=931, endpoints=(ep,))])
    with pytest.raises(ConfigError):
        cfg.resolve()


def test_not_a_config_file(tmp_path):
    p = tmp_path / "x.xml"
    p.write_text("<configuration/>")
    with pytest.raises(ConfigError):
        load_cme_config(p)
    p.write_text("not xml")
    with pytest.raises(ConfigError):
        load_cme_config(p)
