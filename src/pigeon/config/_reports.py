"""The `[reports]` section: aggregate DMARC (RFC 7489 §7.2) and TLS-RPT (RFC 8460) reports.

Contract (same as `pigeon.config._checks`):
  * `reports(key, value)` takes the TOML table and returns a `ReportsConfig`,
    or raises `ConfigErrors` with every problem found, each naming its key
    (`reports.from: ...`); an unknown key suggests the closest known one.
  * The section is a top-level key of the loader (not one of its generic
    [section]s) because one of its keys, `from`, is a Python keyword and
    cannot be a dataclass field: it is `ReportsConfig.sender`.
  * No I/O: the `from` address is checked for its syntax only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pigeon.config._checks import (
    ConfigError,
    ConfigErrors,
    boolean,
    join,
    seconds,
    show,
    unknown_key,
)
from pigeon.config.reports import ReportsConfig
from pigeon.vocab.address import PathError, parse_path

__all__ = ["reports"]

#: TOML key -> ReportsConfig field.
_FIELDS = {
    "dmarc": "dmarc",
    "tls": "tls",
    "from": "sender",
    "org_name": "org_name",
    "contact": "contact",
    "interval": "interval",
}


def _address(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f'must be an address "local@domain" or "", got {show(value)}')
    if not value:
        return ""
    try:
        parse_path(f"<{value}>", allow_null=False, smtputf8=True)
    except PathError as exc:
        raise ConfigError(key, f"{show(value)} is not a mail address ({exc})") from None
    if "@" not in value:
        raise ConfigError(key, f"{show(value)} needs a domain (local@domain)")
    return value


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or any(c in value for c in "\r\n"):
        raise ConfigError(key, f"must be one line of text, got {show(value)}")
    return value


def _interval(key: str, value: Any) -> float:
    checked = seconds(positive=True)(key, value)
    if checked < 1:
        raise ConfigError(key, f"must be at least 1 second, got {show(value)}")
    return checked


_CHECKS = {
    "dmarc": boolean,
    "tls": boolean,
    "from": _address,
    "org_name": _text,
    "contact": _text,
    "interval": _interval,
}


def reports(key: str, value: Any) -> ReportsConfig:
    """The checked `[reports]` table (module contract)."""
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a table, got {show(value)}")
    problems: list[ConfigError] = []
    found: dict[str, Any] = {}
    for name, item in value.items():
        dotted = f"{key}.{join(name)}"
        try:
            if name not in _CHECKS:
                raise unknown_key(dotted, name, list(_CHECKS))
            found[_FIELDS[name]] = _CHECKS[name](dotted, item)
        except ConfigError as exc:
            problems.append(exc)
    if problems:
        raise ConfigErrors(problems)
    return ReportsConfig(**found)
