"""check_delivery_agent() against the shipped agents and the FakeAgent, and the
suite catching agents that break the contract."""

from __future__ import annotations

import asyncio
import importlib

import pytest

from pigeon.delivery.api import DeliveryRequest, Outcome, RecipientResult
from pigeon.testing.conformance import check_delivery_agent
from pigeon.testing.fakes import FakeAgent, FakeReply


def test_fake_agent_conforms():
    check_delivery_agent(FakeAgent)


def test_fake_agent_with_failures_conforms():
    def factory():
        a = FakeAgent()
        a.rcpt_err = {"u1@example.test": FakeReply("5.1.1", "550 5.1.1 unknown")}
        a.body_err = FakeReply("4.3.0", "451 4.3.0 try later")
        return a

    check_delivery_agent(factory)


def test_discard_agent_conforms():
    try:
        mod = importlib.import_module("pigeon.delivery.discard")
    except ImportError:
        pytest.skip("pigeon.delivery.discard not written yet")
    check_delivery_agent(mod.DiscardAgent)


class _Raises:
    async def deliver(self, request: DeliveryRequest):
        raise OSError("content unreadable")


class _Drops:
    async def deliver(self, request: DeliveryRequest):
        return [
            RecipientResult(r.address, Outcome.DELIVERED, "2.0.0", "ok")
            for r in request.recipients[1:]
        ]


class _BadStatus:
    async def deliver(self, request: DeliveryRequest):
        return [
            RecipientResult(r.address, Outcome.BOUNCED, "4.0.0", "?") for r in request.recipients
        ]


@pytest.mark.parametrize(
    "agent,words", [(_Raises, "raised"), (_Drops, "results for"), (_BadStatus, "status 4.0.0")]
)
def test_suite_catches_broken_agents(agent, words):
    with pytest.raises(AssertionError, match=words):
        check_delivery_agent(agent)


def test_fake_agent_stages():
    from pathlib import Path

    from pigeon.delivery.api import DeliveryRecipient
    from pigeon.proto.params import MailParams
    from pigeon.vocab import Nexthop

    a = FakeAgent()
    a.rcpt_err = {"b@x.test": FakeReply("5.1.1", "550 no")}
    a.commit_err = FakeReply("4.3.0", "451 later")
    req = DeliveryRequest(
        "Q",
        "s@x.test",
        MailParams(),
        (DeliveryRecipient("a@x.test"), DeliveryRecipient("b@x.test")),
        Path("/nonexistent"),
        0,
        False,
        False,
        Nexthop("smtp", "x.test"),
    )
    res = asyncio.run(a.deliver(req))
    assert [(r.address, r.outcome, r.status) for r in res] == [
        ("a@x.test", Outcome.DEFERRED, "4.3.0"),
        ("b@x.test", Outcome.BOUNCED, "5.1.1"),
    ]
    a.start_err = FakeReply("4.4.1", "connect refused")
    assert {r.remote_mta for r in asyncio.run(a.deliver(req))} == {""}
    a.start_err = ConnectionError("x")
    with pytest.raises(ConnectionError):
        asyncio.run(a.deliver(req))
    assert len(a.requests) == 3 and a.recipients()[:2] == ["a@x.test", "b@x.test"]
