"""Delivery-side events for plugins: what the queue manager reports, and who hears it.

Contract:
  * `DeliveryEvent` is one event: `kind` is "attempt" (a delivery to a next
    hop starts), "delivered", "deferred", "bounced" (a permanent failure) or
    "expired" (bounced because `queue.max_lifetime` passed); the queue ID,
    the envelope sender, the recipients it concerns, the next hop, the
    enhanced status and the diagnostic of the outcome ("" for "attempt"),
    and the Unix time.
  * The queue manager calls `DeliveryObservers.emit(event)` AFTER the
    outcome is durable (the queue's state is written), so an observer never
    sees an outcome that a crash could undo.
  * An observer never blocks nor breaks delivery: `emit` only starts a task
    per observer method and returns; each task runs within its plugin's
    `timeout`; an exception or a timeout is logged with its traceback
    (where the coroutine was when its time ran out) and forgotten. A
    SystemExit or KeyboardInterrupt raised in a plugin is its failure like
    any other (`contained`, `PluginFailed`): it never stops pigeon. At most
    `MAX_IN_FLIGHT` tasks run at once: past it an event is dropped, logged
    once per burst, so a slow observer cannot grow memory without bound.
  * `inline` listeners (pigeon's own: the webhooks, pigeon/webhooks/service.py)
    are called by `emit` itself, before it returns, with no task and no
    limit in flight: each promises to be cheap and never to block; an
    exception is logged and forgotten all the same.
  * `DeliveryObservers([])` is falsy: the manager skips building events
    when nobody listens (no per-message cost without plugins or webhooks).
"""

from __future__ import annotations

import asyncio
import inspect
import linecache
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

__all__ = [
    "DELIVERY_EVENTS",
    "DeliveryEvent",
    "DeliveryObservers",
    "EventKind",
    "MAX_IN_FLIGHT",
]

log = logging.getLogger("pigeon.plugin")

EventKind: TypeAlias = Literal["attempt", "delivered", "deferred", "bounced", "expired"]
#: The event kinds, each the name of the plugin method that hears it.
DELIVERY_EVENTS: tuple[EventKind, ...] = ("attempt", "delivered", "deferred", "bounced", "expired")
#: Observer tasks running at once, at most (module contract).
MAX_IN_FLIGHT = 1000


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    kind: EventKind
    queue_id: str
    sender: str  # "" for the null reverse-path
    recipients: tuple[str, ...]
    #: Where it went, as the mail log's relay= says ("local", "mx.example.org[192.0.2.1]:25");
    #: for "attempt" the next hop ("smtp:example.org", "local").
    relay: str
    status: str = ""  # RFC 3463 enhanced status of the outcome ("" for attempt)
    diagnostic: str = ""
    time: float = 0.0


#: (plugin name, bound method, time limit in seconds)
Listener: TypeAlias = tuple[str, Callable[[DeliveryEvent], object], float]


class DeliveryObservers:
    """The plugins' delivery-event methods, by kind (module contract)."""

    def __init__(
        self, plugins: Sequence[tuple[str, object, float]] = (), inline: Sequence[object] = ()
    ) -> None:
        self._by_kind: dict[str, list[Listener]] = {}
        self._inline: dict[str, list[Callable[[DeliveryEvent], object]]] = {}
        for name, plugin, timeout in plugins:
            for kind in DELIVERY_EVENTS:
                method = getattr(plugin, kind, None)
                if callable(method):
                    self._by_kind.setdefault(kind, []).append((name, method, timeout))
        for listener in inline:
            for kind in DELIVERY_EVENTS:
                method = getattr(listener, kind, None)
                if callable(method):
                    self._inline.setdefault(kind, []).append(method)
        self._tasks: set[asyncio.Task[None]] = set()
        self._dropping = False

    def __bool__(self) -> bool:
        return bool(self._by_kind) or bool(self._inline)

    def wants(self, kind: str) -> bool:
        return kind in self._by_kind or kind in self._inline

    def emit(self, event: DeliveryEvent) -> None:
        """Call the inline listeners and start every plugin listener of
        `event.kind` (module contract); never raises."""
        for method in self._inline.get(event.kind, ()):
            try:
                method(event)
            except Exception:
                log.exception(
                    "delivery event %s of %s: listener failed", event.kind, event.queue_id
                )
        for name, method, timeout in self._by_kind.get(event.kind, ()):
            if len(self._tasks) >= MAX_IN_FLIGHT:
                if not self._dropping:
                    log.warning(
                        "delivery events dropped: %d observer calls in flight", MAX_IN_FLIGHT
                    )
                self._dropping = True
                return
            self._dropping = False
            task = asyncio.ensure_future(_observe(name, method, event, timeout))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float) -> None:
        """Wait (at most `timeout`) for the observer calls in flight."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)


async def _observe(
    name: str, method: Callable[[DeliveryEvent], object], event: DeliveryEvent, timeout: float
) -> None:
    what = f"plugin {name} at {event.kind} of {event.queue_id}"
    try:
        result = contained(method, (event,), what)
        if inspect.isawaitable(result):
            await bounded(result, timeout, what)
    except Exception:
        log.exception("plugin %s failed at %s of %s", name, event.kind, event.queue_id)


class PluginTimeout(Exception):
    """A plugin's call took longer than its `timeout`."""


class PluginFailed(Exception):
    """A plugin raised what would stop pigeon itself (SystemExit,
    KeyboardInterrupt, ...): its failure, answered like any other."""


def contained(method: Callable[..., object], args: tuple[object, ...], what: str) -> object:
    """`method(*args)`, with a SystemExit or KeyboardInterrupt raised in it made
    a PluginFailed: a plugin's sys.exit() must not end the process."""
    try:
        return method(*args)
    except Exception:
        raise
    except BaseException as exc:
        raise PluginFailed(f"{what} raised {type(exc).__name__}") from exc


async def _awaited(awaitable: Awaitable[object], what: str) -> object:
    """`await awaitable`, contained as `contained` does (a task that raises
    SystemExit would stop the event loop); a cancellation passes."""
    try:
        return await awaitable
    except (Exception, asyncio.CancelledError):
        raise
    except BaseException as exc:
        raise PluginFailed(f"{what} raised {type(exc).__name__}") from exc


async def bounded(awaitable: Awaitable[object], timeout: float, what: str) -> object:
    """`await awaitable` within `timeout` seconds; past it the call is
    cancelled and PluginTimeout raised, its message saying where the
    coroutine was (its stack), since its own traceback would only show the
    cancellation."""
    task = asyncio.ensure_future(_awaited(awaitable, what))
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:  # our caller gave up (the session ended): so does the plugin
        task.cancel()
        raise
    if done:
        return task.result()
    where = _where(awaitable)
    task.cancel()
    raise PluginTimeout(f"{what}: no answer within {timeout:g} s; it was at:\n{where}")


def _where(awaitable: object) -> str:
    """The frames a suspended coroutine is waiting in, outermost first."""
    lines: list[str] = []
    coro: Any = awaitable
    while coro is not None and getattr(coro, "cr_frame", None) is not None:
        frame = coro.cr_frame
        code = frame.f_code
        lines.append(f'  File "{code.co_filename}", line {frame.f_lineno}, in {code.co_name}')
        source = linecache.getline(code.co_filename, frame.f_lineno).strip()
        if source:
            lines.append(f"    {source}")
        coro = coro.cr_await
    return "\n".join(lines) or "  (not a coroutine)"
