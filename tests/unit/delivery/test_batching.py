"""ThreadBatcher: concurrent submits share worker-thread calls; errors reach the right callers."""

from __future__ import annotations

import asyncio
import threading

import pytest

from pigeon.delivery.batching import ThreadBatcher


def test_concurrent_submits_share_calls_and_get_their_own_results():
    calls: list[list[int]] = []
    gate = threading.Event()

    def double(items):
        calls.append(list(items))
        gate.wait(5)  # hold the first batch so others queue up
        return [2 * i for i in items]

    async def main():
        b = ThreadBatcher(double)
        first = asyncio.ensure_future(b.submit(0))
        await asyncio.sleep(0.05)  # batch [0] is running in the thread
        rest = [asyncio.ensure_future(b.submit(i)) for i in range(1, 20)]
        await asyncio.sleep(0.05)
        gate.set()
        results = await asyncio.gather(first, *rest)
        return b, results

    b, results = asyncio.run(main())
    assert results == [2 * i for i in range(20)]
    assert calls == [[0], list(range(1, 20))]  # everything queued meanwhile: one call
    assert (b.batches, b.items) == (2, 20)


def test_an_exception_result_goes_to_its_item_only():
    def check(items):
        return [ValueError(i) if i == 3 else i for i in items]

    async def main():
        b = ThreadBatcher(check)
        return await asyncio.gather(*(b.submit(i) for i in range(5)), return_exceptions=True)

    out = asyncio.run(main())
    assert out[:3] == [0, 1, 2] and out[4] == 4
    assert isinstance(out[3], ValueError)


def test_a_failing_batch_fails_every_caller_and_the_next_batch_runs():
    state = {"fail": True}

    def flaky(items):
        if state.pop("fail", False):
            raise OSError("disk I/O error")
        return list(items)

    async def main():
        b = ThreadBatcher(flaky)
        first = await asyncio.gather(*(b.submit(i) for i in range(3)), return_exceptions=True)
        second = await b.submit(7)
        return first, second

    first, second = asyncio.run(main())
    assert all(isinstance(e, OSError) for e in first)
    assert second == 7


def test_wrong_number_of_results_is_an_error_not_a_hang():
    async def main():
        b = ThreadBatcher(lambda items: [])
        with pytest.raises(RuntimeError):
            await asyncio.wait_for(b.submit(1), 5)

    asyncio.run(main())
