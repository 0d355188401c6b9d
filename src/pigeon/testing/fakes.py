"""Test doubles shipped with pigeon (CONTRIBUTING.md, rule 14: seams are injected).

Contract:
  * Fakes are deterministic and record what they were asked, so tests assert
    on calls instead of reading log files or sleeping.
  * They implement the same narrow interfaces as the real objects
    (`RecordingMaillog` ~ pigeon.obs.maillog, `FakeClock` ~ `time.time`,
    `FakeAgent` ~ pigeon.delivery.api.DeliveryAgent), and never do I/O.
  * `FakeAgent` has one error field per stage of an SMTP transaction
    (CONTRIBUTING.md, rule 14): `start_err` (connect/greeting:
    no peer reached, every recipient gets it), `rcpt_err[address]` (that
    RCPT refused), `body_err` (DATA refused: every accepted recipient) and
    `commit_err` (the reply to the final dot). Each is a `FakeReply` (a
    result, as a real agent reports failures) or an exception instance (raised
    from `deliver()`, to test the manager's fence). Otherwise every recipient
    gets `results_fn(request, recipient)`, default "250 2.0.0 Ok".
  * `BytesContent(data)` ~ pigeon.queue.api.MessageContent: a message in
    memory; `BytesContent(None)` is content that cannot be read (its
    `open()` raises StoreError, as a store's does for a lost file).
  * `FaultyStore(store)` wraps a real store for the queue manager: it counts
    every call by method name (`calls`) and `fail(name, times, exc)` makes the
    next `times` calls of one method raise `exc` (`landed=True`: after the
    real call did its work, as an fsync error can leave it unknown whether a
    change was written). Injected through the manager's constructor; the
    store itself is not patched.
  * `run_manager_until(manager, condition)` runs a real queue manager
    (pigeon.qmgr.Qmgr) until `condition()` holds (polled, bounded by
    `timeout`), then stops it.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from pigeon.delivery.api import (
    DeliveryRecipient,
    DeliveryRequest,
    Outcome,
    RecipientResult,
)
from pigeon.vocab import Nexthop, StoreError


class BytesContent:
    """A `MessageContent` held in memory; None: unreadable (see the contract)."""

    def __init__(self, data: bytes | None) -> None:
        self.data = data
        self.opened = 0  # how many times open() was called

    @property
    def size(self) -> int:
        return len(self.data or b"")

    def open(self) -> BinaryIO:
        self.opened += 1
        if self.data is None:
            raise StoreError("content unreadable: no such file")
        return io.BytesIO(self.data)


@dataclass(slots=True)
class MaillogCall:
    queue_id: str
    fields: dict[str, Any]
    detail: str | None


@dataclass(slots=True)
class RecordingMaillog:
    """A maillog that keeps every `log()` call in `calls`, in order."""

    calls: list[MaillogCall] = field(default_factory=list)

    def log(self, queue_id: str, fields: dict[str, Any], detail: str | None = None) -> None:
        self.calls.append(MaillogCall(queue_id, dict(fields), detail))

    def for_id(self, queue_id: str) -> list[MaillogCall]:
        return [c for c in self.calls if c.queue_id == queue_id]

    def statuses(self, queue_id: str) -> list[str]:
        return [c.fields.get("status", "") for c in self.for_id(queue_id)]


class FakeClock:
    """A callable clock (`clock()` -> seconds) that moves only when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True, slots=True)
class FakeReply:
    """A reply a fake peer gives at some stage: "550 5.1.1 no such user" style."""

    status: str  # enhanced status, e.g. "4.4.1"; first digit = outcome
    text: str  # the diagnostic (the remote reply, or our reason)

    @property
    def outcome(self) -> Outcome:
        return {"2": Outcome.DELIVERED, "5": Outcome.BOUNCED}.get(self.status[:1], Outcome.DEFERRED)


ResultsFn = Callable[[DeliveryRequest, DeliveryRecipient], "RecipientResult | FakeReply"]


class FakeAgent:
    """A `DeliveryAgent` that records requests and answers from its fields.

    `requests` holds every request in call order; `in_flight`/`max_in_flight`
    count concurrent `deliver()` calls per `Nexthop`. Set `gate` (an
    asyncio.Event) to hold every delivery until it is set.
    """

    def __init__(
        self, results_fn: ResultsFn | None = None, *, remote_mta: str = "mx.fake.test[192.0.2.1]:25"
    ) -> None:
        self.results_fn = results_fn
        self.remote_mta = remote_mta
        self.start_err: FakeReply | BaseException | None = None
        self.rcpt_err: dict[str, FakeReply | BaseException] = {}
        self.body_err: FakeReply | BaseException | None = None
        self.commit_err: FakeReply | BaseException | None = None
        self.gate: asyncio.Event | None = None
        self.requests: list[DeliveryRequest] = []
        self.in_flight: dict[Nexthop, int] = {}
        self.max_in_flight: dict[Nexthop, int] = {}

    def recipients(self) -> list[str]:
        """Every recipient address of every request, in order."""
        return [r.address for req in self.requests for r in req.recipients]

    async def deliver(self, request: DeliveryRequest) -> list[RecipientResult]:
        self.requests.append(request)
        nh = request.nexthop
        self.in_flight[nh] = self.in_flight.get(nh, 0) + 1
        self.max_in_flight[nh] = max(self.max_in_flight.get(nh, 0), self.in_flight[nh])
        try:
            if self.gate is not None:
                await self.gate.wait()
            return self._answer(request)
        finally:
            self.in_flight[nh] -= 1

    def _answer(self, request: DeliveryRequest) -> list[RecipientResult]:
        if self.start_err is not None:  # no peer reached
            return self._all(request.recipients, self.start_err, remote_mta="")
        out: dict[str, RecipientResult] = {}
        accepted = []
        for r in request.recipients:
            err = self.rcpt_err.get(r.address)
            if err is not None:
                out[r.address] = self._result(r.address, err, self.remote_mta)
            else:
                accepted.append(r)
        for stage in (self.body_err, self.commit_err):
            if stage is not None and accepted:
                out.update((x.address, x) for x in self._all(accepted, stage, self.remote_mta))
                accepted = []
        for r in accepted:
            answer = (
                self.results_fn(request, r)
                if self.results_fn
                else FakeReply("2.0.0", "250 2.0.0 Ok: queued")
            )
            out[r.address] = (
                answer
                if isinstance(answer, RecipientResult)
                else self._result(r.address, answer, self.remote_mta)
            )
        return [out[r.address] for r in request.recipients]

    def _all(
        self,
        rcpts: Sequence[DeliveryRecipient],
        err: FakeReply | BaseException,
        remote_mta: str,
    ) -> list[RecipientResult]:
        return [self._result(r.address, err, remote_mta) for r in rcpts]

    @staticmethod
    def _result(address: str, err: FakeReply | BaseException, remote_mta: str) -> RecipientResult:
        if isinstance(err, BaseException):
            raise err
        action = {Outcome.DELIVERED: "delivered", Outcome.BOUNCED: "failed"}.get(
            err.outcome, "delayed"
        )
        return RecipientResult(address, err.outcome, err.status, err.text, remote_mta, action)  # type: ignore[arg-type]


class FaultyStore:
    """A real store with a failure switch per method (see the module contract)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.calls: dict[str, list[tuple[Any, ...]]] = {}
        self._faults: dict[str, list[Any]] = {}  # name -> [times left, exc, landed]

    def fail(
        self, name: str, times: int = 1, exc: BaseException | None = None, *, landed: bool = False
    ) -> None:
        if exc is None:
            exc = StoreError(f"{name}: database or disk is full", disk_full=True)
        self._faults[name] = [times, exc, landed]

    def count(self, name: str) -> int:
        return len(self.calls.get(name, ()))

    def reset(self) -> None:
        self.calls.clear()

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.store, name)
        if not callable(real):
            return real

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.setdefault(name, []).append(args)
            fault = self._faults.get(name)
            if fault is None or fault[0] <= 0:
                return real(*args, **kwargs)
            fault[0] -= 1
            if fault[2]:
                real(*args, **kwargs)
            raise fault[1]

        return call


async def run_manager_until(
    manager: Any, condition: Callable[[], bool], timeout: float = 10.0
) -> None:
    """Run `manager` (a Qmgr) until `condition()`; fail after `timeout` s."""
    task = asyncio.create_task(manager.run())
    deadline = time.monotonic() + timeout
    try:
        while not condition():
            assert time.monotonic() < deadline, "condition not reached"
            assert not task.done(), task
            await asyncio.sleep(0.01)
    finally:
        await manager.stop()
        await task
