"""The `[[webhooks]]` array: HTTP endpoints told of mail events (docs/webhooks.md).

Contract:
  * `webhooks(key, value)` checks the array of tables and returns a tuple
    of `WebhookConfig` in the order written. Every problem names its key
    (`webhooks[1].url: ...`, `webhooks[0].foo: unknown key`); each entry's
    first problem is reported, every entry's in one run (ConfigErrors).
  * `url` is an absolute http: or https: URL with a host and no user
    information (a password in a URL would reach logs); one URL once.
  * `events` is a non-empty list of distinct names from `WEBHOOK_EVENTS`.
  * Exactly one of `secret` (non-empty text) and `secret_file` (an absolute
    path; the file is read by `pigeon.webhooks` at start-up) is required.
  * `ca_file` is an absolute path (read when the first POST is made: a
    file that cannot be used fails those POSTs, logged).
  * `timeout` and `max_age` are positive seconds, `max_pending` a positive
    integer.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

from pigeon.config._checks import (
    ConfigError,
    ConfigErrors,
    integer,
    path,
    seconds,
    show,
    string,
)
from pigeon.config._tables import checked_table
from pigeon.config.webhooks import WEBHOOK_EVENTS, WebhookConfig

__all__ = ["webhooks"]


def _url(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f'must be an "http://" or "https://" URL, got {show(value)}')
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ConfigError(key, f'{show(value)}: must begin with "http://" or "https://"')
    if not parts.hostname or any(c.isspace() for c in value):
        raise ConfigError(key, f"{show(value)}: needs a host and no spaces")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(key, f"{show(value)}: no user name or password in the URL")
    try:
        parts.port  # noqa: B018 (ValueError for a port that is not a number or too big)
    except ValueError:
        raise ConfigError(key, f"{show(value)}: bad port") from None
    if parts.fragment:
        raise ConfigError(key, f"{show(value)}: no #fragment")
    return value


def _events(key: str, value: Any) -> tuple[str, ...]:
    listed = ", ".join(f'"{e}"' for e in WEBHOOK_EVENTS)
    if not isinstance(value, list) or not value:
        raise ConfigError(key, f"must be a non-empty list of {listed}, got {show(value)}")
    for item in value:
        if item not in WEBHOOK_EVENTS:
            raise ConfigError(key, f"unknown event {show(item)} (known: {listed})")
    if len(set(value)) != len(value):
        raise ConfigError(key, "an event is named twice")
    return tuple(value)


def _absolute(key: str, value: Any) -> Path:
    checked = path(key, value)
    if not checked.is_absolute():
        raise ConfigError(key, f"{show(value)}: must be an absolute path")
    return checked


_KEYS = {
    "url": _url,
    "events": _events,
    "secret": string,
    "secret_file": _absolute,
    "ca_file": _absolute,
    "timeout": seconds(positive=True),
    "max_age": seconds(positive=True),
    "max_pending": integer(1),
}


def webhooks(key: str, value: Any) -> tuple[WebhookConfig, ...]:
    """[[webhooks]]: the endpoints, in order (module contract)."""
    if not isinstance(value, list):
        raise ConfigError(key, f"must be an array of tables ([[webhooks]]), got {show(value)}")
    out: list[WebhookConfig] = []
    problems: list[ConfigError] = []
    for i, raw in enumerate(value):
        here = f"{key}[{i}]"
        try:
            checked = _entry(here, raw)
        except ConfigError as exc:
            problems += exc.problems
            continue
        if any(o.url == checked.url for o in out):
            problems.append(ConfigError(f"{here}.url", f"{show(checked.url)} is listed twice"))
        out.append(checked)
    if problems:
        raise ConfigErrors(problems)
    return tuple(out)


def _entry(here: str, entry: Any) -> WebhookConfig:
    checked = checked_table(here, entry, _KEYS)
    if "url" not in checked:
        raise ConfigError(f"{here}.url", "is required")
    if ("secret" in checked) == ("secret_file" in checked):
        raise ConfigError(f"{here}.secret", "one of secret and secret_file is required (not both)")
    return WebhookConfig(**checked)
