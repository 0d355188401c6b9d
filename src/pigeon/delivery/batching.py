"""Group commit for blocking work: concurrent callers share one worker-thread call.

Contract:
  * `ThreadBatcher(fn)`: `await batcher.submit(item)` queues `item`; one task
    per batcher runs `fn(items)` in a worker thread (`asyncio.to_thread`)
    for everything queued at that instant. Items submitted while a batch
    runs form the next batch. No artificial delay: an idle caller waits one
    call, a busy manager batches more (the committer of queue/store.py does
    the same for new messages).
  * `fn` returns one result per item, in order. A result that is an
    `Exception` instance is raised to that item's caller; an exception
    raised by `fn` itself is raised to every caller of the batch.
  * If the running task is cancelled (the loop closes), every waiter of the
    batch and of the queue is cancelled too: nobody waits forever.
  * Use it from one event loop only (the queue manager's). Users: the
    Maildir agent (delivery/local.py: the writes of every message finishing
    at that moment, one fsync per new/ directory) and the queue manager's
    removals (pigeon/qmgr/settle.py: their rows in one transaction).

Why: each `asyncio.to_thread` call wakes an executor thread and makes two
threads contend for the GIL; under load that cost more than the work
itself (strace: hundreds of futex calls per message). Batching also lets a
batch share one fsync where the work allows it (Maildir directories).
It lives in pigeon.delivery, the lowest layer that uses it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class ThreadBatcher(Generic[T, R]):
    """See the module contract."""

    def __init__(self, fn: Callable[[list[T]], list[R]]) -> None:
        self._fn = fn
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None
        self.batches = 0  # statistics, for tests and profiling
        self.items = 0

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, fut))
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            self.batches += 1
            self.items += len(batch)
            items = [item for item, _ in batch]
            try:
                results = await asyncio.to_thread(self._fn, items)
                if len(results) != len(batch):
                    raise RuntimeError(
                        f"batch function gave {len(results)} results for {len(batch)} items"
                    )
            except Exception as e:
                for _, fut in batch:
                    if not fut.done():  # else its waiter was cancelled
                        fut.set_exception(e)
                continue
            except BaseException:  # cancelled (loop closing): wake every waiter
                for _, fut in batch + self._queue:
                    fut.cancel()
                self._queue = []
                raise
            for (_, fut), result in zip(batch, results):
                if fut.done():
                    continue  # its waiter was cancelled
                if isinstance(result, Exception):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
