"""Value checks for some top-level keys of the configuration (`user`, `group`, `workers`, `[log] syslog`).

Contract: same shape and message style as `pigeon.config._checks` (which
see): `check(key, value) -> value` or `ConfigError(key, message)`. The only
I/O is asking the system's user and group databases whether a name exists.
(Moved out of `pigeon.config.load` to keep that module under 500 lines.)
"""

from __future__ import annotations

import grp
import pwd
from typing import Any

from pigeon.config import _checks as C
from pigeon.config._checks import ConfigError

__all__ = ["group_name", "syslog_target", "user_name", "workers"]


def syslog_target(key: str, value: Any) -> str:
    """ "" (off), a Unix socket path, or "host:port" (UDP)."""
    if value == "":
        return ""
    text = C.string(key, value)
    host, _, port = text.rpartition(":")
    if not text.startswith("/") and not (host and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(key, f'expected "/path/to/socket" or "host:port", got {text!r}')
    return text


def workers(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
        raise ConfigError(key, f"must be an integer from 1 to 64, got {value!r}")
    return value


def _system_name(key: str, value: Any, kind: str) -> str:
    """A user or group name that exists on this system ("" = not set)."""
    if value == "":
        return ""
    name = C.string(key, value)
    try:
        (pwd.getpwnam if kind == "user" else grp.getgrnam)(name)
    except KeyError:
        raise ConfigError(key, f'no such {kind} "{name}"') from None
    return name


def user_name(key: str, value: Any) -> str:
    return _system_name(key, value, "user")


def group_name(key: str, value: Any) -> str:
    return _system_name(key, value, "group")
