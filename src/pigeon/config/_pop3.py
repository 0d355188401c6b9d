"""Value checks for [pop3] (schema: `pigeon.config.pop3`).

Contract: same shape and message style as `pigeon.config._checks` (which
see): `check(key, value) -> value` or `ConfigError(key, message)`, no I/O.
`SECTIONS` is this module's part of the loader's table of [section]s; that
no address serves two roles (POP3's and SMTP's together) is checked with
the other listeners by `pigeon.config._secure.final_problems`.
"""

from __future__ import annotations

from typing import Any

from pigeon.config import _checks as C
from pigeon.config import _secure as S
from pigeon.config._checks import ConfigError
from pigeon.config.pop3 import MIN_AUTOLOGOUT, Pop3Config

__all__ = ["SECTIONS"]


def _autologout(key: str, value: Any) -> float:
    checked = C.seconds(positive=True)(key, value)
    if checked < MIN_AUTOLOGOUT:
        raise ConfigError(
            key, f"must be at least {MIN_AUTOLOGOUT:g} seconds (RFC 1939 §3), got {C.show(value)}"
        )
    return checked


SECTIONS: dict[str, tuple[type, dict[str, C.Checker]]] = {
    "pop3": (
        Pop3Config,
        {
            "listen": S.listen_roles,
            "tls_listen": S.listen_roles,
            "autologout": _autologout,
            "max_errors": C.integer(1),
        },
    ),
}
