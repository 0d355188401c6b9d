"""A plugin as a receive check: its stage methods, bounded in time, checked in what they return.

Contract:
  * `guarded(name, plugin, timeout)` returns a check for the receive
    pipeline (pigeon.policy.pipeline) that has exactly the stage methods
    `plugin` has (the pipeline asks a check only at the stages it has), each
    calling the plugin's and passing its answer on, or None when the plugin
    has no stage method at all. Its class is named "plugin NAME", the name
    the pipeline's log lines give.
  * Isolation (docs/hooks.md): an exception raised by the plugin reaches
    the pipeline, which logs it with its traceback and answers 451 4.3.0,
    never the exception's text; a SystemExit or KeyboardInterrupt too, made
    a `PluginFailed` first (events.contained), so a plugin's sys.exit()
    never ends the process. An `async` method must answer within
    `timeout` seconds: past it the call is cancelled and the stage fails
    the same way (`events.PluginTimeout`, logged with where the coroutine
    was). A synchronous method runs on the event loop and is not bounded:
    anything that waits belongs in an `async def`.
  * An answer that is neither a `Verdict` nor None fails the stage too
    (TypeError naming the plugin and the stage).
  * A synchronous method that answers None costs two Python calls besides
    its own (the guard and its containment): no task, no coroutine (item 5
    of issue 12 measures it).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from pigeon.hooks.events import bounded, contained
from pigeon.policy.api import STAGES, Verdict

__all__ = ["guarded"]


def _stage(name: str, stage: str, method: Callable[..., Any], timeout: float) -> Callable[..., Any]:
    what = f"plugin {name} at {stage}"

    async def later(pending: Any) -> Verdict | None:
        return _checked(await bounded(pending, timeout, what))

    def _checked(result: Any) -> Verdict | None:
        if result is None or isinstance(result, Verdict):
            return result
        raise TypeError(f"{what} returned {result!r}, not a Verdict or None")

    def call(*args: Any) -> Any:
        result = contained(method, args, what)
        if result is None or isinstance(result, Verdict):
            return result
        if inspect.isawaitable(result):
            return later(result)
        return _checked(result)

    return call


def guarded(name: str, plugin: object, timeout: float) -> object | None:
    """The receive check of `plugin` (module contract)."""
    methods = {
        stage: staticmethod(_stage(name, stage, method, timeout))
        for stage in STAGES
        if callable(method := getattr(plugin, stage, None))
    }
    if not methods:
        return None
    return type(f"plugin {name}", (), {"__slots__": (), **methods})()
