"""Market-data channel configuration: CME's ``config.xml`` and our TOML ``[feed]`` section.

CME publishes one XML file per environment listing every MDP 3.0 channel: its
products (and their security groups) and its connections (feed type, multicast
group, port, source host, feed A/B). ``load_cme_config`` reads it into
``ChannelConfig`` structs; ``select_channels`` picks channels by id or by
product code. ``FeedConfig`` is the plain struct our TOML config holds: either a
path to config.xml plus a selection, or explicit addresses (or both).

Feed types in config.xml: I = incremental, S = snapshot (market recovery),
N = instrument definition (instrument replay), SMBO = MBO snapshot; others
(H = TCP historical replay, ...) are kept with role "other" and never joined.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from core.types import (
    FEED_A,
    FEED_B,
    ROLE_DEFINITION,
    ROLE_INCREMENTAL,
    ROLE_SNAPSHOT,
    ROLE_SNAPSHOT_MBO,
)

__all__ = [
    "ROLE_BY_NAME",
    "ChannelConfig",
    "ConfigError",
    "Endpoint",
    "FeedConfig",
    "load_cme_config",
    "select_channels",
]

ROLE_BY_FEED_TYPE = {"I": "incremental", "S": "snapshot", "N": "definition",
                     "SMBO": "snapshot_mbo"}
ROLE_BY_NAME = {"incremental": ROLE_INCREMENTAL, "snapshot": ROLE_SNAPSHOT,
                "definition": ROLE_DEFINITION, "snapshot_mbo": ROLE_SNAPSHOT_MBO}
FEED_BY_NAME = {"A": FEED_A, "B": FEED_B}


class ConfigError(ValueError):
    """A config.xml or [feed] section that cannot be used."""


class Endpoint(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One connection of a channel: where one feed of one role arrives."""

    role: str  # incremental | snapshot | definition | snapshot_mbo | other
    feed: str  # "A" | "B"
    ip: str  # multicast group (or a unicast address to bind, e.g. 127.0.0.1)
    port: int
    source_ip: str = ""  # the publisher's host (source-specific join), "" = any source
    protocol: str = "UDP/IP"
    connection_id: str = ""

    @property
    def role_code(self) -> int:
        """ROLE_* of core.types (-1 for roles we never join)."""
        return ROLE_BY_NAME.get(self.role, -1)

    @property
    def feed_code(self) -> int:
        return FEED_BY_NAME.get(self.feed, FEED_A)

    @property
    def is_multicast(self) -> bool:
        try:
            first = int(self.ip.split(".")[0])
        except ValueError:
            return False
        return 224 <= first <= 239


class ChannelConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One MDP 3.0 channel and its connections."""

    channel_id: int
    label: str = ""
    products: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()

    def endpoints_for(self, role: str, feeds: Iterable[str] = ("A", "B")) -> list[Endpoint]:
        """Joinable (UDP) endpoints of ``role`` for the given feeds, A before B."""
        want = tuple(feeds)
        eps = [e for e in self.endpoints
               if e.role == role and e.feed in want and e.protocol.upper().startswith("UDP")]
        return sorted(eps, key=lambda e: e.feed)


class FeedConfig(msgspec.Struct, forbid_unknown_fields=True):
    """The ``[feed]`` section of our TOML config.

    Channels come from ``config_xml`` (selected by ``channels`` ids and/or
    ``products`` codes) and/or ``explicit`` entries. ``interface`` is the local
    address used to join multicast groups.
    """

    interface: str = "0.0.0.0"
    config_xml: str = ""
    channels: list[int] = msgspec.field(default_factory=list)
    products: list[str] = msgspec.field(default_factory=list)
    explicit: list[ChannelConfig] = msgspec.field(default_factory=list)
    feeds: list[str] = msgspec.field(default_factory=lambda: ["A", "B"])
    source_specific: bool = False  # IGMPv3 joins filtered on each connection's source_ip
    rcvbuf_bytes: int = 16 * 1024 * 1024
    kernel_timestamps: bool = True  # SO_TIMESTAMPNS receive times
    mbo: bool = False  # also join the MBO snapshot loop when recovering

    def validate(self) -> None:
        bad = [f for f in self.feeds if f not in FEED_BY_NAME]
        if bad or not self.feeds:
            raise ConfigError(f"feeds must be a non-empty subset of A, B (got {self.feeds})")
        if not self.config_xml and not self.explicit:
            raise ConfigError("give config_xml (with channels/products) or explicit channels")
        if self.config_xml and not (self.channels or self.products):
            raise ConfigError("config_xml needs channels = [...] or products = [...]")
        if self.rcvbuf_bytes < 65536:
            raise ConfigError("rcvbuf_bytes must be >= 65536")
        for ch in self.explicit:
            if not ch.endpoints_for("incremental", self.feeds):
                raise ConfigError(f"explicit channel {ch.channel_id} has no incremental feed")
            for e in ch.endpoints:
                if e.role not in ROLE_BY_NAME or e.feed not in FEED_BY_NAME:
                    raise ConfigError(f"channel {ch.channel_id}: bad endpoint {e}")
                if not 0 < e.port < 65536:
                    raise ConfigError(f"channel {ch.channel_id}: bad port {e.port}")

    def resolve(self, base_dir: str | Path | None = None) -> list[ChannelConfig]:
        """The channels to run, in a stable order (config.xml selection, then explicit)."""
        self.validate()
        out: list[ChannelConfig] = []
        if self.config_xml:
            path = Path(self.config_xml)
            if not path.is_absolute() and base_dir is not None:
                path = Path(base_dir) / path
            chans = load_cme_config(path)
            out.extend(select_channels(chans, ids=self.channels, products=self.products))
        seen = {c.channel_id for c in out}
        for ch in self.explicit:
            if ch.channel_id in seen:
                raise ConfigError(f"channel {ch.channel_id} given twice")
            seen.add(ch.channel_id)
            out.append(ch)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeedConfig:
        try:
            cfg = msgspec.convert(data, cls)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"[feed]: {exc}") from exc
        cfg.validate()
        return cfg


def _text(el: ET.Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def load_cme_config(path: str | Path) -> dict[int, ChannelConfig]:
    """Every channel of a CME MDP 3.0 config.xml, by channel id."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    out: dict[int, ChannelConfig] = {}
    for ch in root.iter("channel"):
        try:
            cid = int(ch.get("id", ""))
        except ValueError as exc:
            raise ConfigError(f"{path}: channel without a numeric id") from exc
        products: list[str] = []
        groups: list[str] = []
        for p in ch.iter("product"):
            code = p.get("code")
            if code:
                products.append(code)
            for g in p.iter("group"):
                gc = g.get("code")
                if gc and gc not in groups:
                    groups.append(gc)
        eps: list[Endpoint] = []
        for conn in ch.iter("connection"):
            t = conn.find("type")
            ftype = t.get("feed-type", "") if t is not None else ""
            try:
                port = int(_text(conn.find("port")))
            except ValueError:
                continue
            eps.append(Endpoint(
                role=ROLE_BY_FEED_TYPE.get(ftype, "other"),
                feed=_text(conn.find("feed")) or "A",
                ip=_text(conn.find("ip")),
                port=port,
                source_ip=_text(conn.find("host-ip")),
                protocol=_text(conn.find("protocol")) or "UDP/IP",
                connection_id=conn.get("id", ""),
            ))
        out[cid] = ChannelConfig(channel_id=cid, label=ch.get("label", ""),
                                 products=tuple(products), groups=tuple(groups),
                                 endpoints=tuple(eps))
    if not out:
        raise ConfigError(f"{path}: no <channel> found")
    return out


def select_channels(channels: dict[int, ChannelConfig], ids: Iterable[int] = (),
                    products: Iterable[str] = ()) -> list[ChannelConfig]:
    """Channels whose id is in ``ids`` or that carry one of ``products`` (product code,
    or ``group:XX`` for a security group), sorted by id. Unknown ids/products raise."""
    ids = list(ids)
    products = list(products)
    picked: dict[int, ChannelConfig] = {}
    for cid in ids:
        if cid not in channels:
            raise ConfigError(f"channel {cid} is not in the config")
        picked[cid] = channels[cid]
    for prod in products:
        if prod.startswith("group:"):
            hits = [c for c in channels.values() if prod[6:] in c.groups]
        else:
            hits = [c for c in channels.values() if prod in c.products]
        if not hits:
            raise ConfigError(f"product {prod!r} is on no channel of the config")
        for c in hits:
            picked[c.channel_id] = c
    return [picked[k] for k in sorted(picked)]
