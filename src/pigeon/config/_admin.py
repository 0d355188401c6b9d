"""Value checks for the [admin] section (control and submit sockets, metrics endpoint).

Contract: each checker takes (dotted key, raw value) and returns the
schema value or raises `ConfigError` naming the key, like the checkers of
`pigeon.config._checks`. "" means "the default place" for control_socket
and submit_socket, and "no endpoint" for metrics_listen.
"""

from __future__ import annotations

from typing import Any

from pigeon.config._checks import ConfigError, parse_listen, show
from pigeon.config._delivery import optional_path
from pigeon.config.schema import ListenAddress

#: sockaddr_un.sun_path is 108 bytes on Linux; the control server works
#: around longer paths (pigeon.admin.control), so this only stops nonsense.
MAX_SOCKET_PATH = 4096


def control_socket(key: str, value: Any):
    path = optional_path(key, value)
    if path is not None and len(str(path)) > MAX_SOCKET_PATH:
        raise ConfigError(key, "the path is too long")
    return path


#: The submit socket's path follows the same rules ("" = data_dir/submit.sock).
submit_socket = control_socket


def metrics_listen(key: str, value: Any) -> ListenAddress | None:
    if not isinstance(value, str):
        raise ConfigError(key, f'must be "host:port" or "" (off), got {show(value)}')
    if not value:
        return None
    try:
        return parse_listen(value)
    except ValueError as exc:
        raise ConfigError(key, f"{show(value)}: {exc}") from None
