"""Value checks for `[[plugins]]`: the shape of each entry, not the plugin's own keys.

Contract (same as `pigeon.config._checks`):
  * `plugins(key, value)` takes the TOML array of tables and returns a
    tuple of `PluginConfig`, or raises `ConfigErrors` with every problem
    found, each naming its entry: `plugins[0].module: ...`.
  * An entry names its code in exactly one of three ways: `module`
    ("package.module" or "package.module:attribute"), `entry_point` (an
    entry point of group "pigeon.plugins") or `path` (a .py file, relative
    to the configuration file's directory: `resolve_paths`). Other keys:
    `name` (default: the module's last part, the file's stem or the entry
    point's name; names are unique, they name the plugin in logs and its
    state directory), `timeout` (seconds, > 0) and `config` (a table).
  * The `config` table is kept as written: only the plugin knows its keys.
    `pigeon.hooks.load` checks it against the settings class the plugin
    declares, at start-up, at a reload and in `pigeon check-config`.
  * Nothing here imports or reads the plugin's code.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pigeon.config._checks import (
    ConfigError,
    ConfigErrors,
    join,
    named_tables,
    seconds,
    show,
    unknown_key,
)
from pigeon.config.schema import PluginConfig

__all__ = ["plugins", "resolve_paths"]

_KEYS = ("name", "module", "entry_point", "path", "timeout", "config")
_WHERE = ("module", "entry_point", "path")
# A dotted Python name, optionally ":attribute" (the entry point syntax).
_MODULE = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*(?::[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)?\Z")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"must be a non-empty string, got {show(value)}")
    return value


def _entry(key: str, raw: Any) -> PluginConfig:
    if not isinstance(raw, Mapping):
        raise ConfigErrors([ConfigError(key, f"must be a table, got {show(raw)}")])
    problems: list[ConfigError] = []
    found: dict[str, Any] = {}
    for name, value in raw.items():
        dotted = f"{key}.{join(name)}"
        try:
            if name not in _KEYS:
                raise unknown_key(dotted, name, list(_KEYS))
            if name == "timeout":
                found[name] = seconds(positive=True)(dotted, value)
            elif name == "config":
                if not isinstance(value, Mapping):
                    raise ConfigError(dotted, f"must be a table, got {show(value)}")
                found[name] = dict(value)
            else:
                text = _text(dotted, value)
                if name == "module" and not _MODULE.match(text):
                    raise ConfigError(
                        dotted, f'must be "package.module[:attribute]", got {show(text)}'
                    )
                if name == "name" and not _NAME.match(text):
                    raise ConfigError(dotted, f"must be letters, digits, _ . -, got {show(text)}")
                found[name] = Path(text) if name == "path" else text
        except ConfigError as exc:
            problems.append(exc)
    given = [w for w in _WHERE if w in raw]
    if len(given) != 1:
        said = "none" if not given else " and ".join(given)
        problems.append(
            ConfigError(key, f"needs exactly one of module, entry_point, path ({said} given)")
        )
    if problems:
        raise ConfigErrors(problems)
    where: str | Path = found.get("module") or found.get("entry_point") or found["path"]
    found.setdefault("name", _default_name(where))
    return PluginConfig(**found)


def _default_name(where: str | Path) -> str:
    if isinstance(where, Path):
        return where.stem
    return where.partition(":")[0].rpartition(".")[2]


def plugins(key: str, value: Any) -> tuple[PluginConfig, ...]:
    """The checked `[[plugins]]` list (module contract)."""
    return named_tables(
        key, value, "plugins", _entry, lambda name: f"{show(name)} names an earlier plugin too"
    )


def resolve_paths(entries: tuple[PluginConfig, ...], base: Path) -> tuple[PluginConfig, ...]:
    """Relative `path`s taken from the directory `base` of the configuration file."""
    return tuple(
        dataclasses.replace(p, path=base / p.path)
        if p.path is not None and not p.path.is_absolute()
        else p
        for p in entries
    )
