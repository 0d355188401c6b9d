"""policy/mailauth/eager.py: coroutines run at once, a task only when they wait."""

from __future__ import annotations

import asyncio

import pytest

from pigeon.policy.mailauth import eager


async def _answer(value: int) -> int:
    return value


async def _fails() -> int:
    raise ValueError("no")


def test_a_coroutine_that_never_waits_ends_at_once_without_a_task():
    async def main() -> None:
        before = len(asyncio.all_tasks())
        done = eager.start(_answer(7))
        assert done.done() and done.result() == 7
        assert len(asyncio.all_tasks()) == before  # no task made
        failed = eager.start(_fails())
        with pytest.raises(ValueError):
            await failed
        assert await eager.gather(_answer(1), _answer(2), done) == [1, 2, 7]

    asyncio.run(main())


def test_a_coroutine_that_waits_goes_on_in_a_task_with_what_it_waited_for():
    async def main() -> None:
        gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        steps: list[str] = []

        async def waits() -> int:
            steps.append("before")
            got = await gate
            steps.append("after")
            await asyncio.sleep(0)  # a bare yield is handled too
            return got + 1

        job = eager.start(waits())
        assert steps == ["before"] and not job.done()
        gate.set_result(41)
        assert await job == 42 and steps == ["before", "after"]

    asyncio.run(main())


def test_the_failure_of_what_it_waits_for_is_raised_where_it_waits():
    async def main() -> None:
        gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def waits() -> str:
            try:
                await gate
            except KeyError:
                return "caught"
            return "not caught"

        job = eager.start(waits())
        gate.set_exception(KeyError("x"))
        assert await job == "caught"

    asyncio.run(main())


def test_cancelling_the_task_cancels_the_coroutine_where_it_waits():
    async def main() -> None:
        gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        cleaned: list[bool] = []

        async def waits() -> int:
            try:
                return await gate
            finally:
                cleaned.append(True)

        job = eager.start(waits())
        await asyncio.sleep(0)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        assert cleaned == [True] and gate.cancelled()

    asyncio.run(main())


def test_gather_with_one_waiting_coroutine_waits_for_all():
    async def main() -> None:
        async def later() -> int:
            await asyncio.sleep(0.01)
            return 3

        assert await eager.gather(_answer(1), later(), _answer(2)) == [1, 3, 2]
        with pytest.raises(ValueError):
            await eager.gather(later(), _fails())

    asyncio.run(main())
