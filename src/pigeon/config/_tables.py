"""One table of an array of tables (`[[milters]]`, `[[webhooks]]`), checked key by key.

Contract: `checked_table(here, entry, keys)` returns the entry's keys, each
value checked by its checker in `keys`; a value that is not a table, an
unknown key (with the closest known name) or a bad value raises the first
ConfigError, naming the key (`milters[0].socket`). Required keys and
combinations are the caller's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pigeon.config._checks import Checker, ConfigError, show, unknown_key

__all__ = ["checked_table"]


def checked_table(here: str, entry: Any, keys: Mapping[str, Checker]) -> dict[str, Any]:
    """See the module contract."""
    if not isinstance(entry, Mapping):
        raise ConfigError(here, f"must be a table, got {show(entry)}")
    checked: dict[str, Any] = {}
    for name, item in entry.items():
        if name not in keys:
            raise unknown_key(f"{here}.{name}", name, list(keys))
        checked[name] = keys[name](f"{here}.{name}", item)
    return checked
