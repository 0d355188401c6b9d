"""A plugin's own configuration table, checked like the rest of the configuration.

Contract:
  * A plugin declares its keys as a dataclass (`Plugin.Settings`, docs/hooks.md):
    one field per key, a default for every optional key, a type annotation
    for each. `settings_from_table(cls, table, key)` returns an instance, or
    raises `ConfigErrors` listing every problem, each naming the dotted key
    (`plugins[0].config.foo: unknown key (did you mean "food"?)`), as the
    loader does for pigeon's own keys (pigeon/config/load.py, rules 1, 2).
  * Types are exact, as in pigeon's own keys: `str`, `int` (not a bool),
    `float` (an integer is fine), `bool`, `pathlib.Path` (from a string),
    `list[str]`/`tuple[str, ...]` (lists of strings; a tuple field gets a
    tuple), and `X | None` (the key may be absent; TOML has no null). Any
    other annotation is taken as written (no check): the plugin checks it
    in `__post_init__`, where a ValueError becomes a problem of the table.
  * A plugin without a `Settings` class takes no keys: any key is unknown.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pigeon.config._checks import ConfigError, ConfigErrors, join, show, unknown_key

__all__ = ["settings_from_table"]


def _check(key: str, kind: Any, value: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        inner = [k for k in typing.get_args(kind) if k is not type(None)]
        if len(inner) == 1:
            return _check(key, inner[0], value)
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {show(value)}")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be an integer, got {show(value)}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"must be a number, got {show(value)}")
        return float(value)
    elif kind is str or kind is Path:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {show(value)}")
        return Path(value) if kind is Path else value
    elif origin in (list, tuple) and typing.get_args(kind)[:1] == (str,):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, f"must be a list of strings, got {show(value)}")
        return tuple(value) if origin is tuple else list(value)
    return value


def settings_from_table(cls: type | None, table: Mapping[str, Any], key: str) -> Any:
    """An instance of the settings dataclass `cls` from `table` (module contract)."""
    if cls is None:
        if table:
            name = next(iter(table))
            raise ConfigErrors(
                [ConfigError(f"{key}.{join(name)}", "unknown key (this plugin takes no settings)")]
            )
        return None
    if not dataclasses.is_dataclass(cls):
        raise ConfigErrors(
            [ConfigError(key, f"the plugin's Settings ({cls!r}) is not a dataclass")]
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    problems: list[ConfigError] = []
    values: dict[str, Any] = {}
    for name, value in table.items():
        dotted = f"{key}.{join(name)}"
        if name not in fields:
            problems.append(unknown_key(dotted, name, list(fields)))
            continue
        try:
            values[name] = _check(dotted, hints.get(name, Any), value)
        except ConfigError as exc:
            problems.append(exc)
    for name, f in fields.items():
        missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if missing and name not in table:
            problems.append(ConfigError(f"{key}.{join(name)}", "required key missing"))
    if problems:
        raise ConfigErrors(problems)
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:
        raise ConfigErrors([ConfigError(key, str(exc))]) from None
