"""Typed TOML configs: decoding with msgspec, errors that name the key.

Shared by the daemon's config (``daemon.config``) and the exchange simulator's
(``adapters.venue.config``): both are frozen msgspec structs that forbid unknown
fields, decoded once at start-up; every problem becomes a ``ConfigError`` whose
``key`` is the dotted path of the offending key (``risk.max_position``,
``instruments[0].tick``) and whose message says why.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

import msgspec

__all__ = ["ConfigError", "decode_toml"]

T = TypeVar("T")

# msgspec: "Expected `int`, got `str` - at `$.risk.max_order_qty`"
_AT = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_UNKNOWN = re.compile(r"Object contains unknown field `([^`]+)`")


class ConfigError(ValueError):
    """A configuration problem; ``key`` is the dotted path of the offending key ('' if none)."""

    def __init__(self, key: str, reason: str, path: str | None = None):
        self.key = key
        self.reason = reason
        self.path = path
        where = f"{path}: " if path else ""
        super().__init__(f"{where}{key + ': ' if key else ''}{reason}")


def decode_toml(data: bytes | str, type_: type[T], path: str | None = None,
                validate: Callable[[T], None] | None = None) -> T:
    """TOML text -> ``type_``, then ``validate`` (which raises ConfigError naming a key);
    every error re-raised as ``ConfigError`` with the file's ``path``."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        cfg = msgspec.toml.decode(raw, type=type_)
    except msgspec.ValidationError as exc:
        m = _AT.match(str(exc))
        assert m is not None  # the pattern matches any text
        reason, at = m.group("reason"), (m.group("path") or "").lstrip(".")
        unknown = _UNKNOWN.match(reason)
        if unknown:
            key = ".".join(p for p in (at, unknown.group(1)) if p)
            raise ConfigError(key, "unknown key", path) from None
        raise ConfigError(at, reason, path) from None
    except msgspec.DecodeError as exc:
        raise ConfigError("", f"not valid TOML: {exc}", path) from None
    if validate is not None:
        try:
            validate(cfg)
        except ConfigError as exc:
            raise ConfigError(exc.key, exc.reason, path) from None
    return cfg
