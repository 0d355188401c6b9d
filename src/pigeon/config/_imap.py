"""Value checks for [imap] (schema: `pigeon.config.imap`).

Contract: same shape and message style as `pigeon.config._checks` (which
see): `check(key, value) -> value` or `ConfigError(key, message)`, no I/O.
`SECTIONS` is this module's part of the loader's table of [section]s.
`size` reads a size in octets: an integer, or a string such as "50MB",
"512KB", "1GB" (powers of 1024, as Dovecot and Postfix users write them).
"""

from __future__ import annotations

import re
from typing import Any

from pigeon.config import _checks as C
from pigeon.config import _secure as S
from pigeon.config._checks import ConfigError
from pigeon.config.imap import MIN_AUTOLOGOUT, ImapConfig

__all__ = ["SECTIONS", "size"]

_SIZE = re.compile(r"\s*(\d+)\s*([KMG]?)B?\s*\Z", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def _autologout(key: str, value: Any) -> float:
    checked = C.seconds(positive=True)(key, value)
    if checked < MIN_AUTOLOGOUT:
        raise ConfigError(
            key,
            f"must be at least {MIN_AUTOLOGOUT:.0f} seconds (RFC 9051 §5.4), got {C.show(value)}",
        )
    return checked


def size(key: str, value: Any) -> int:
    """Octets: a positive integer or "NNN[KB|MB|GB]" (module contract)."""
    if isinstance(value, str) and (found := _SIZE.match(value)):
        octets = int(found.group(1)) * _UNITS[found.group(2).upper()]
    elif isinstance(value, int) and not isinstance(value, bool):
        octets = value
    else:
        raise ConfigError(
            key, f'must be a size in octets (an integer, or "50MB", "512KB"), got {C.show(value)}'
        )
    if octets < 1024:
        raise ConfigError(key, f"must be at least 1024 octets, got {C.show(value)}")
    return octets


SECTIONS: dict[str, tuple[type, dict[str, C.Checker]]] = {
    "imap": (
        ImapConfig,
        {
            "listen": S.listen_roles,
            "tls_listen": S.listen_roles,
            "max_literal": size,
            "autologout": _autologout,
            "login_timeout": C.seconds(positive=True),
            "idle_timeout": C.seconds(positive=True),
            "idle_poll": C.seconds(positive=True),
            "connections": C.integer(0),
            "connections_per_ip": C.integer(0),
        },
    ),
}
