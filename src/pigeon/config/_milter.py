"""The `[[milters]]` array: mail filters asked during reception (docs/milter.md).

Contract:
  * `milters(key, value)` checks the array of tables and returns a tuple of
    `MilterConfig`, in the order written (the order the milters are asked).
    Every problem names its key: `milters[1].socket: ...`, an unknown key
    `milters[0].foo: unknown key`, a name used twice; the first problem of
    each entry is reported, every entry's in one run.
  * `socket` is Postfix's notation: "inet:host:port" (an IPv6 host in
    brackets: "inet:[::1]:8891") or "unix:/path" ("local:/path" too).
  * Timeouts are seconds, Postfix's defaults: `connect_timeout` 30
    (milter_connect_timeout), `command_timeout` 30 (milter_command_timeout),
    `content_timeout` 300 (milter_content_timeout: sending the message and
    waiting for the answer at its end). `default_action` is what a failed
    milter (unreachable, too slow, not speaking the protocol) means:
    "tempfail" (451 4.7.1, Postfix's default) or "accept" (go on without it).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pigeon.config._checks import (
    ConfigError,
    choice,
    named_tables,
    seconds,
    show,
)
from pigeon.config._tables import checked_table
from pigeon.config.schema import MilterConfig

__all__ = ["milters"]


def _inet(rest: str) -> tuple[str, int]:
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected host:port with a port from 1 to 65535")
    if host.startswith("[") and host.endswith("]"):
        ipaddress.IPv6Address(host[1:-1])  # ValueError when it is not one
        host = host[1:-1]
    if not host:
        raise ValueError("the host is missing")
    return host, int(port)


def _socket(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f'must be "inet:host:port" or "unix:/path", got {show(value)}')
    kind, _, rest = value.partition(":")
    if kind in ("unix", "local"):
        if not rest.startswith("/"):
            raise ConfigError(key, f"{show(value)}: a unix socket needs an absolute path")
        return value
    if kind == "inet":
        try:
            _inet(rest)
        except ValueError as exc:
            raise ConfigError(key, f"{show(value)}: {exc}") from None
        return value
    raise ConfigError(key, f'{show(value)}: expected "inet:host:port" or "unix:/path"')


def _name(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value or not value.isprintable() or " " in value:
        raise ConfigError(key, f"must be a name without spaces, got {show(value)}")
    return value


_KEYS = {
    "name": _name,
    "socket": _socket,
    "connect_timeout": seconds(positive=True),
    "command_timeout": seconds(positive=True),
    "content_timeout": seconds(positive=True),
    "default_action": choice("tempfail", "accept"),
}


def milters(key: str, value: Any) -> tuple[MilterConfig, ...]:
    """[[milters]]: the milters, in order (module contract); every entry's
    problems are reported together (ConfigErrors)."""
    return named_tables(key, value, "milters", _entry, lambda name: f'"{name}" is used twice')


def _entry(here: str, entry: Any) -> MilterConfig:
    checked = checked_table(here, entry, _KEYS)
    for required in ("name", "socket"):
        if required not in checked:
            raise ConfigError(f"{here}.{required}", "is required")
    return MilterConfig(**checked)
