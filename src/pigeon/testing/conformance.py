"""Conformance suites for pigeon's extension points (CONTRIBUTING.md, rule 12).

`check_delivery_agent(factory, nexthop=...)` runs the delivery-agent contract
(pigeon.delivery.api) against any agent: `factory()` returns a fresh agent
(with an `aclose()` coroutine if it holds resources; it is called after
each check). Each check builds its own message, handed to the agent as a
`MessageContent` (pigeon/queue/api.py; missing content is one whose
`open()` raises StoreError); a failure raises `AssertionError` naming the
check. Checked:
  * one_result_per_recipient: exactly one RecipientResult per recipient of
    the request (matched by address), whatever the order; the status class
    matches the outcome (2.x.x delivered, 4.x.x deferred, 5.x.x bounced);
    the action is an RFC 3464 one.
  * many_recipients: 50 recipients in one request (the manager's default
    chunk) get 50 results.
  * empty_content and missing_content: an empty content file, or none at
    all, is a result (of any outcome), never an exception.
  * null_sender_and_dsn_params: the null reverse-path, RET/ENVID and
    NOTIFY/ORCPT parameters are accepted.
  * concurrent_requests: ten deliver() calls at once all complete.

`check_store(factory, nodes=...)` runs the queue-store contract (queue/api.py)
against any store; it lives in pigeon/testing/store_conformance.py, whose
docstring lists its checks, and is re-exported here.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pigeon.delivery.api import (
    DeliveryRecipient,
    DeliveryRequest,
    Outcome,
    RecipientResult,
)
from pigeon.proto.params import MailParams, RcptParams
from pigeon.testing.fakes import BytesContent
from pigeon.testing.store_conformance import StoreFactory, check_store
from pigeon.vocab import Nexthop

__all__ = ["AgentFactory", "StoreFactory", "check_delivery_agent", "check_store"]

# --- delivery agents ------------------------------------------------------------------

AgentFactory = Callable[[], Any]
_ACTIONS = frozenset({"delivered", "relayed", "failed", "delayed"})
_CLASS = {Outcome.DELIVERED: "2", Outcome.DEFERRED: "4", Outcome.BOUNCED: "5"}


def _request(
    content: Path,
    nexthop: Nexthop,
    rcpts: list[str],
    *,
    sender: str = "a@src.test",
    params: MailParams = MailParams(),
    rparams: RcptParams = RcptParams(),
) -> DeliveryRequest:
    data = content.read_bytes() if content.exists() else None  # None: unreadable
    return DeliveryRequest(
        "0CONFORMANCE000",
        sender,
        params,
        tuple(DeliveryRecipient(r, rparams) for r in rcpts),
        BytesContent(data),
        len(data or b""),
        False,
        False,
        nexthop,
    )


def _check_results(req: DeliveryRequest, results: Any) -> list[RecipientResult]:
    assert isinstance(results, list), f"deliver() returned {type(results).__name__}, not list"
    assert all(isinstance(r, RecipientResult) for r in results), "not RecipientResult"
    got = sorted(r.address for r in results)
    want = sorted(r.address for r in req.recipients)
    assert got == want, f"results for {got}, recipients {want}"
    for r in results:
        outcome = Outcome(r.outcome)
        assert r.status[:1] == _CLASS[outcome], f"{r.address}: status {r.status} vs {outcome}"
        assert r.action in _ACTIONS, f"{r.address}: action {r.action!r}"
    return results


async def _deliver(
    factory: AgentFactory, *requests: DeliveryRequest
) -> list[list[RecipientResult]]:
    agent = factory()
    try:
        out = await asyncio.gather(*(agent.deliver(r) for r in requests))
    finally:
        aclose = getattr(agent, "aclose", None)
        if aclose is not None:
            await aclose()
    return [_check_results(req, res) for req, res in zip(requests, out)]


def _message(tmp: Path, data: bytes = b"Subject: conformance\r\n\r\nhello\r\n") -> Path:
    path = tmp / "content"
    path.write_bytes(data)
    return path


async def check_one_result_per_recipient(factory: AgentFactory, tmp: Path, nh: Nexthop) -> None:
    rcpts = [f"u{i}@{nh.domain}" for i in range(3)]
    await _deliver(factory, _request(_message(tmp), nh, list(reversed(rcpts))))


async def check_many_recipients(factory: AgentFactory, tmp: Path, nh: Nexthop) -> None:
    await _deliver(factory, _request(_message(tmp), nh, [f"u{i}@{nh.domain}" for i in range(50)]))


async def check_empty_content(factory: AgentFactory, tmp: Path, nh: Nexthop) -> None:
    await _deliver(factory, _request(_message(tmp, b""), nh, [f"empty@{nh.domain}"]))


async def check_missing_content(factory: AgentFactory, tmp: Path, nh: Nexthop) -> None:
    await _deliver(factory, _request(tmp / "no-such-file", nh, [f"missing@{nh.domain}"]))


async def check_null_sender_and_dsn_params(factory: AgentFactory, tmp: Path, nh: Nexthop) -> None:
    await _deliver(
        factory,
        _request(
            _message(tmp),
            nh,
            [f"dsn@{nh.domain}"],
            sender="",
            params=MailParams(ret="HDRS", envid="conformance-1"),
            rparams=RcptParams(("FAILURE", "SUCCESS"), ("rfc822", f"orig@{nh.domain}")),
        ),
    )


async def check_concurrent_requests(factory: AgentFactory, tmp: Path, nh: Nexthop) -> None:
    content = _message(tmp)
    await _deliver(factory, *(_request(content, nh, [f"c{i}@{nh.domain}"]) for i in range(10)))


AGENT_CHECKS = (
    check_one_result_per_recipient,
    check_many_recipients,
    check_empty_content,
    check_missing_content,
    check_null_sender_and_dsn_params,
    check_concurrent_requests,
)


def check_delivery_agent(
    factory: AgentFactory, *, nexthop: Nexthop = Nexthop("discard", "example.test")
) -> None:
    """Run every delivery-agent check (see the module docstring) against `factory()`.

    Runs its own event loop per check (asyncio.run): call it from sync code.
    """
    for check in AGENT_CHECKS:
        with tempfile.TemporaryDirectory(prefix="pigeon-agent-") as tmp:
            try:
                asyncio.run(check(factory, Path(tmp), nexthop))
            except AssertionError as e:
                raise AssertionError(f"{check.__name__}: {e}") from e
            except Exception as e:
                raise AssertionError(f"{check.__name__}: deliver() raised {e!r}") from e
