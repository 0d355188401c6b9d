"""Coroutines started at once on the caller's stack; a task only when they must wait.

The checks of a message start several look-ups at once (SPF, DKIM keys,
DMARC). Once the DNS cache is warm none of them waits for anything, and
then the asyncio tasks made to run them side by side cost more than the
look-ups themselves (measured: about a third of the whole inbound check of
a small message, bench/mail_auth_cost.py). Python 3.12 has eager tasks for
this; pigeon runs on 3.11 too.

Contract:
  * `start(coro)` runs `coro` at once until it first waits for something
    not yet done. If it ends before that, the result (or the exception) is
    returned in a finished Future: no task, no turn of the event loop (an
    exception that is not an `Exception`, such as a cancellation, is
    raised to the caller at once).
    Otherwise the rest of it runs in a Task, resumed exactly where it
    waited, and that Task is returned. Cancelling the Task cancels what the
    coroutine waits for, as asyncio's own tasks do.
  * `gather(*aws)` is `asyncio.gather` over `start`ed coroutines (and
    futures, such as those `start` returned): their results in order, the
    first exception raised; when all are done at once, no task and no turn
    of the loop.
  * The part run at once runs in the caller's task: a coroutine given here
    must not depend on `asyncio.current_task()` (asyncio.timeout,
    TaskGroup) before it first waits. The DNS stub keeps its deadline in
    a task of its own for this reason (dns/stub.py).
"""

from __future__ import annotations

import asyncio
import functools
import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["gather", "start"]

T = TypeVar("T")


def start(coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """`coro` run until it waits or ends (module contract)."""
    loop = asyncio.get_running_loop()
    try:
        waiting = coro.send(None)
    except StopIteration as done:
        finished: asyncio.Future[T] = loop.create_future()
        finished.set_result(done.value)
        return finished
    except Exception as exc:
        failed: asyncio.Future[T] = loop.create_future()
        failed.set_exception(exc)
        return failed
    return asyncio.ensure_future(_resume(coro, waiting))


async def _resume(coro: Coroutine[Any, Any, T], waiting: Any) -> T:
    """The rest of `coro`, which yielded `waiting`, driven as a Task drives it:
    resumed when `waiting` is done, the failure of `waiting` (or this task's
    cancellation) thrown into it at the point where it waits."""
    while True:
        try:
            await _until_done(waiting)
        except BaseException as exc:  # a Task passes on every exception, so do we
            resume = functools.partial(coro.throw, exc)
        else:
            resume = functools.partial(coro.send, None)
        try:
            waiting = resume()
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


@types.coroutine
def _until_done(waiting: Any) -> Generator[Any, None, None]:
    """Wait as `coro` asked: a bare yield is one turn of the loop, a future until done."""
    if waiting is None:
        yield None
    elif not waiting.done():
        waiting._asyncio_future_blocking = True  # the handshake Future.__await__ makes
        yield waiting


async def gather(*aws: Coroutine[Any, Any, Any] | asyncio.Future[Any]) -> list[Any]:
    """`asyncio.gather` of `start`ed coroutines and of futures (module contract)."""
    started = [a if isinstance(a, asyncio.Future) else start(a) for a in aws]
    if all(f.done() for f in started):
        for f in started:
            f.exception()  # each one looked at: no "never retrieved" warning
        return [f.result() for f in started]
    return list(await asyncio.gather(*started))
