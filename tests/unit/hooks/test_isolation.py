"""A plugin cannot break a session or delivery (hooks/guard.py, hooks/events.py):
a raise, a timeout or a wrong answer is 451 4.3.0 and a log line with the
traceback; observers run as tasks, bounded, their failures logged."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pigeon.hooks.api import accept, discard, reject, tempfail
from pigeon.hooks.events import DeliveryEvent, DeliveryObservers
from pigeon.hooks.guard import guarded
from pigeon.policy.api import Verdict
from pigeon.policy.pipeline import ReceivePipeline
from pigeon.proto import reply as R
from pigeon.proto.params import MailParams, RcptParams
from pigeon.vocab.address import Address

BOB = Address("bob", "example.test")


def _session(*plugins: tuple[str, object, float]):
    checks = [guarded(name, plugin, timeout) for name, plugin, timeout in plugins]
    return ReceivePipeline([c for c in checks if c is not None]).session("192.0.2.1")


async def _answer(answer):
    return answer if isinstance(answer, Verdict) else await answer


class Slow:
    async def mail(self, session, sender, params):
        await asyncio.sleep(30)


class Raises:
    def rcpt(self, session, recipient, params):
        raise KeyError("private detail")


class Wrong:
    def mail(self, session, sender, params):
        return "250 ok"


class Polite:
    async def rcpt(self, session, recipient, params):
        await asyncio.sleep(0)
        return reject(550, "5.1.1", "no bob here")


def test_a_plugin_that_does_not_answer_in_time_is_451_and_logged(caplog):
    session = _session(("slow", Slow(), 0.05))
    with caplog.at_level(logging.ERROR, "pigeon.policy"):
        verdict = asyncio.run(_answer(session.mail(None, MailParams())))
    assert verdict.reply == R.CHECK_FAILED
    (record,) = caplog.records
    assert record.getMessage() == "receive check plugin slow failed at mail"
    assert "no answer within 0.05 s" in caplog.text
    assert "in mail" in caplog.text and "asyncio.sleep(30)" in caplog.text  # where it was


def test_a_plugin_that_raises_is_451_with_the_traceback_logged_and_no_detail_sent(caplog):
    session = _session(("raises", Raises(), 1.0))
    with caplog.at_level(logging.ERROR, "pigeon.policy"):
        verdict = asyncio.run(_answer(session.rcpt(BOB, RcptParams())))
    assert verdict.reply == R.CHECK_FAILED
    assert "private" not in verdict.reply.text
    assert "Traceback" in caplog.text and "KeyError: 'private detail'" in caplog.text


def test_an_answer_that_is_no_verdict_is_451(caplog):
    session = _session(("wrong", Wrong(), 1.0))
    verdict = asyncio.run(_answer(session.mail(None, MailParams())))
    assert verdict.reply == R.CHECK_FAILED
    assert "plugin wrong at mail returned '250 ok', not a Verdict or None" in caplog.text


def test_an_async_plugin_answers_within_its_time():
    session = _session(("polite", Polite(), 1.0))
    session.mail(None, MailParams())
    verdict = asyncio.run(_answer(session.rcpt(BOB, RcptParams())))
    assert str(verdict.reply) == "550 5.1.1 no bob here"


@pytest.mark.parametrize(
    "make",
    [
        lambda: reject(450, "4.1.1", "x"),  # a 4xx is tempfail's
        lambda: reject(550, "4.1.1", "x"),  # the classes differ (RFC 3463)
        lambda: tempfail(451, "4.3", "x"),
        lambda: reject(550, "5.7.1", "ok\r\n250 smuggled"),
        lambda: accept(add_headers=[("X-A", "b\r\nX-Injected: c")]),
        lambda: accept(remove_headers=["Bad Name"]),
        lambda: accept(transport="ftp:example.org"),
    ],
)
def test_helpers_refuse_what_would_break_the_protocol(make):
    with pytest.raises(ValueError):
        make()


def test_helpers_build_what_they_say():
    assert reject(554, "5.7.1", "one\ntwo").reply.lines == ("one", "two")
    assert tempfail().reply.code == 451
    assert discard("spam").discard == "spam"
    verdict = accept(add_headers=[("X-A", "1")], remove_headers=["X-B"], transport="discard")
    assert (verdict.headers[0].name, verdict.remove_headers, verdict.transport) == (
        "X-A",
        ("X-B",),
        "discard",
    )


class Hears:
    def __init__(self) -> None:
        self.heard: list[str] = []

    async def delivered(self, event: DeliveryEvent) -> None:
        self.heard.append(event.queue_id)


class Breaks:
    def delivered(self, event: DeliveryEvent) -> None:
        raise RuntimeError("observer bug")


class Hangs:
    async def bounced(self, event: DeliveryEvent) -> None:
        await asyncio.sleep(30)


def test_observers_run_as_bounded_tasks_and_their_failures_are_logged(caplog):
    hears = Hears()
    observers = DeliveryObservers(
        [("breaks", Breaks(), 1.0), ("hears", hears, 1.0), ("hangs", Hangs(), 0.05)]
    )
    assert observers and observers.wants("bounced") and not observers.wants("attempt")

    async def main() -> None:
        observers.emit(DeliveryEvent("delivered", "Q1", "a@x.test", ("b@y.test",), "local"))
        observers.emit(DeliveryEvent("bounced", "Q2", "a@x.test", ("c@y.test",), "local"))
        assert hears.heard == []  # emit only starts tasks: it never waits
        await observers.drain(5)

    with caplog.at_level(logging.ERROR, "pigeon.plugin"):
        asyncio.run(main())
    assert hears.heard == ["Q1"]
    assert "plugin breaks failed at delivered of Q1" in caplog.text
    assert "RuntimeError: observer bug" in caplog.text
    assert "plugin hangs at bounced of Q2: no answer within 0.05 s" in caplog.text


def test_no_plugin_no_observers():
    assert not DeliveryObservers([("x", object(), 1.0)])
    assert guarded("x", object(), 1.0) is None


class Exits:
    def rcpt(self, session, recipient, params):
        raise SystemExit(3)

    async def mail(self, session, sender, params):
        raise KeyboardInterrupt

    def delivered(self, event: DeliveryEvent) -> None:
        raise SystemExit(4)


def test_a_plugin_calling_sys_exit_is_its_failure_not_the_end_of_pigeon(caplog):
    session = _session(("exits", Exits(), 1.0))

    async def main() -> list[Verdict]:
        mail = await _answer(session.mail(None, MailParams()))
        rcpt = await _answer(session.rcpt(BOB, RcptParams()))
        observers = DeliveryObservers([("exits", Exits(), 1.0)])
        observers.emit(DeliveryEvent("delivered", "Q9", "", ("b@y.test",), "local"))
        await observers.drain(5)
        return [mail, rcpt]

    with caplog.at_level(logging.ERROR):
        verdicts = asyncio.run(main())  # the loop was not stopped
    assert [v.reply for v in verdicts] == [R.CHECK_FAILED, R.CHECK_FAILED]
    assert "plugin exits at mail raised KeyboardInterrupt" in caplog.text
    assert "plugin exits at rcpt raised SystemExit" in caplog.text
    assert "plugin exits at delivered of Q9 raised SystemExit" in caplog.text


def test_inline_listeners_are_called_before_emit_returns_and_contained(caplog):
    """pigeon's own listeners (the webhooks): no task, no limit in flight; an
    exception is logged, the next listener still hears the event."""
    heard = []

    class Broken:
        def delivered(self, event):
            raise RuntimeError("listener bug")

    class Hears:
        def delivered(self, event):
            heard.append(event.queue_id)

        bounced = delivered

    observers = DeliveryObservers([], inline=[Broken(), Hears()])
    assert observers and observers.wants("bounced") and not observers.wants("attempt")
    event = DeliveryEvent("delivered", "Q7", "a@b.test", ("c@d.test",), "local", "2.0.0", "", 1.0)
    with caplog.at_level(logging.ERROR, "pigeon.plugin"):
        observers.emit(event)  # no event loop needed: nothing is started
    assert heard == ["Q7"]
    assert "listener failed" in caplog.text and "listener bug" in caplog.text
