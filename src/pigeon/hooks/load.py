"""Loading `[[plugins]]`: import the code, check its table, make the instance.

Contract:
  * `load_plugins(config, context=...)` returns one `LoadedPlugin` per
    `[[plugins]]` entry, in order, or raises `ConfigErrors` listing every
    entry that cannot be used, each naming its key, as a configuration
    problem (pigeon refuses to start, exit 78; a reload is refused and the
    running plugins stay; `pigeon check-config` reports it):
      - the code cannot be found or imported (`plugins[0].path: cannot load
        ...: SyntaxError ...`);
      - it has no plugin class (`Plugin`, or the attribute named);
      - its table does not fit its `Settings` (`plugins[0].config.foo:
        unknown key`, pigeon/hooks/settings.py);
      - making the instance raised.
  * Every load imports the code afresh: a `path` file is executed again, a
    `module` (and an entry point's module) is re-imported, so SIGHUP puts
    an edited plugin in force, as it does the rest of the configuration.
  * `context(spec)` makes each plugin's `PluginContext` (app/wiring.py gives
    it the data directory, the hostname and the queue's submit function).
  * `receive_checks(plugins)` are the pipeline checks of the plugins that
    have stage methods (pigeon/hooks/guard.py); `delivery_observers(plugins)`
    the `DeliveryObservers` of those that hear delivery events.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pigeon.config._checks import ConfigError, ConfigErrors
from pigeon.config.schema import Config, PluginConfig
from pigeon.hooks.api import PluginContext
from pigeon.hooks.events import DeliveryObservers
from pigeon.hooks.guard import guarded
from pigeon.hooks.settings import settings_from_table

__all__ = [
    "ENTRY_POINT_GROUP",
    "LoadedPlugin",
    "delivery_observers",
    "load_plugins",
    "receive_checks",
]

#: The entry point group `entry_point = "name"` is looked up in.
ENTRY_POINT_GROUP = "pigeon.plugins"


@dataclass(frozen=True, slots=True)
class LoadedPlugin:
    spec: PluginConfig
    instance: object


def _fresh_module(name: str) -> types.ModuleType:
    module = sys.modules.get(name)
    if module is not None:
        return importlib.reload(module)
    return importlib.import_module(name)


def _from_path(spec: PluginConfig) -> types.ModuleType:
    """The file compiled from its source each time, never from a cached .pyc
    (an edit within the same second, of the same size, would not be seen)."""
    assert spec.path is not None
    name = f"pigeon_plugin_{spec.name.replace('-', '_').replace('.', '_')}"
    code = compile(spec.path.read_bytes(), str(spec.path), "exec")
    module = types.ModuleType(name)
    module.__file__ = str(spec.path)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        exec(code, module.__dict__)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _code(spec: PluginConfig) -> tuple[str, object]:
    """(the key naming the code, the module or object it names)."""
    if spec.path is not None:
        return "path", _from_path(spec)
    if spec.module:
        module_name, _, attribute = spec.module.partition(":")
        found: object = _fresh_module(module_name)
        for part in attribute.split(".") if attribute else ():
            found = getattr(found, part)
        return "module", found
    points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=spec.entry_point)
    if not points:
        raise LookupError(f'no entry point "{spec.entry_point}" in group {ENTRY_POINT_GROUP}')
    point = next(iter(points))
    _fresh_module(point.module)
    return "entry_point", point.load()


def _make(spec: PluginConfig, key: str, context: PluginContext) -> object:
    try:
        where, found = _code(spec)
    except Exception as exc:
        what = "path" if spec.path is not None else "module" if spec.module else "entry_point"
        raise ConfigErrors(
            [
                ConfigError(
                    f"{key}.{what}", f"cannot load {spec.source}: {type(exc).__name__}: {exc}"
                )
            ]
        ) from None
    factory = getattr(found, "Plugin", None) if isinstance(found, types.ModuleType) else found
    if not callable(factory):
        raise ConfigErrors(
            [ConfigError(f"{key}.{where}", f"{spec.source} has no plugin class (`Plugin`)")]
        )
    settings = settings_from_table(getattr(factory, "Settings", None), spec.config, f"{key}.config")
    wanted = _parameters(factory)
    arguments: dict[str, Any] = {}
    if "settings" in wanted:
        arguments["settings"] = settings
    if "context" in wanted:
        arguments["context"] = context
    try:
        return factory(**arguments)
    except Exception as exc:
        raise ConfigErrors(
            [ConfigError(key, f"plugin {spec.name} failed to start: {type(exc).__name__}: {exc}")]
        ) from None


def _parameters(factory: Callable[..., object]) -> set[str]:
    try:
        return set(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        return set()


def load_plugins(
    config: Config, context: Callable[[PluginConfig], PluginContext] | None = None
) -> list[LoadedPlugin]:
    """Every `[[plugins]]` entry, loaded (module contract)."""
    if context is None:
        context = lambda spec: PluginContext(spec.name, config.data_dir, config.hostname)  # noqa: E731
    problems: list[ConfigError] = []
    out: list[LoadedPlugin] = []
    for index, spec in enumerate(config.plugins):
        try:
            out.append(LoadedPlugin(spec, _make(spec, f"plugins[{index}]", context(spec))))
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigErrors(problems)
    return out


def receive_checks(plugins: Sequence[LoadedPlugin]) -> list[object]:
    """The plugins' receive checks, in configuration order."""
    checks = (guarded(p.spec.name, p.instance, p.spec.timeout) for p in plugins)
    return [check for check in checks if check is not None]


def delivery_observers(
    plugins: Sequence[LoadedPlugin], inline: Sequence[object] = ()
) -> DeliveryObservers:
    """The plugins that hear delivery events, and pigeon's own `inline`
    listeners (the webhooks: pigeon/hooks/events.py)."""
    return DeliveryObservers([(p.spec.name, p.instance, p.spec.timeout) for p in plugins], inline)
