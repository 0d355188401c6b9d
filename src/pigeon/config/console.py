"""The `[console]` section's values (checked in pigeon.config.load; docs/config.md, docs/api.md)."""

from __future__ import annotations

from dataclasses import dataclass

from pigeon.config.listen import ListenAddress

__all__ = ["ConsoleConfig"]


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """[console]: the HTTP listener of the API (pigeon.web, docs/api.md)."""

    #: [console] listen: "host:port" of the HTTP API (and, later, the web
    #: console); "" (None) = no listener. Loopback by default: nothing but
    #: health, readiness and the OpenAPI document is served without a token.
    listen: ListenAddress | None = ListenAddress("127.0.0.1", 8025)
    #: [console] max_body: octets a request body may have (413 above); 0 =
    #: derived from [limits] message_size (4/3 of it, base64 in JSON, + 1 MiB).
    max_body: int = 0
    #: [console] session_idle: seconds a console session may go unused
    #: before it ends (the admin logs in again)
    session_idle: float = 30 * 60.0
    #: [console] session_max: seconds a console session lasts at most,
    #: however busy
    session_max: float = 12 * 3600.0
