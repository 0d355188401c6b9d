"""Mail from the HTTP API queued as local submission is (pigeon.admin.apisubmit)."""

from __future__ import annotations

import dataclasses

import pytest

from pigeon.admin import localsubmit as L
from pigeon.admin.apisubmit import ApiSubmitter
from pigeon.testing.storage import content_bytes


def submitter(backend, **limits) -> tuple[ApiSubmitter, list]:
    config = backend.config
    if limits:
        config = dataclasses.replace(config, limits=dataclasses.replace(config.limits, **limits))
    handed: list = []
    return (
        ApiSubmitter(
            config=config, store=backend.store, on_queued=handed.append, maillog=backend.maillog
        ),
        handed,
    )


def send(backend, sub, message: bytes, **kw):
    args = {"sender": None, "recipients": [], "extract": True, "via": "ci", **kw}
    return backend.call(sub.send(message, **args))


def test_counted_as_accepted_mail_as_smtp_mail_is(backend):
    from pigeon.obs.metrics import Metrics

    metrics = Metrics()
    sub = ApiSubmitter(
        config=backend.config, store=backend.store, on_queued=lambda env: None, metrics=metrics
    )
    before = metrics.counter_totals().get("pigeon_messages_accepted", {}).get((), 0.0)
    send(backend, sub, b"From: app@example.test\nTo: bob@example.org\n\nhi\n")
    assert metrics.counter_totals()["pigeon_messages_accepted"][()] == before + 1


def test_queued_durably_handed_over_and_logged(backend):
    sub, handed = submitter(backend)
    env = send(backend, sub, b"From: App <app@example.test>\nTo: bob@example.org\n\nhi\n")
    assert env.sender == "app@example.test" and [r.address for r in env.recipients] == [
        "bob@example.org"
    ]
    assert env.protocol == "http" and handed == [env]
    assert backend.store.entry(env.queue_id) is not None
    data = content_bytes(backend.store, env.queue_id)
    assert data.startswith(b"Received: from HTTP API (token ci)\r\n\tby ")
    assert f"with HTTP id {env.queue_id};".encode() in data
    assert b"Message-ID: <" in data and b"Date: " in data


@pytest.mark.parametrize(
    ("message", "kw", "limits", "code"),
    [
        (b"To: bob@example.org\n\nno From\n", {}, {}, L.EX_USAGE),
        (b"From: x@elsewhere.example\nTo: bob@example.org\n\nhi\n", {}, {}, L.EX_NOPERM),
        (b"Subject: x\n\nhi\n", {"sender": "app@example.test", "extract": True}, {}, L.EX_USAGE),
        (
            b"Subject: x\n\nhi\n",
            {"sender": "app@example.test", "recipients": ["a b@c"], "extract": False},
            {},
            L.EX_NOUSER,
        ),
        (
            b"From: app@example.test\nTo: a@x.org, b@x.org\n\nhi\n",
            {},
            {"recipients": 1},
            L.EX_USAGE,
        ),
        (
            b"From: app@example.test\nTo: a@x.org\n\n" + b"x" * 2000 + b"\n",
            {},
            {"message_size": 1000},
            L.EX_DATAERR,
        ),
    ],
)
def test_refusals(backend, message, kw, limits, code):
    sub, handed = submitter(backend, **limits)
    with pytest.raises(L.SubmitError) as exc:
        send(backend, sub, message, **kw)
    assert exc.value.code == code
    assert handed == [] and backend.store.list() == []


def test_a_folded_from_field_is_read_whole(backend):
    sub, _ = submitter(backend)
    env = send(backend, sub, b"From: A Long Name\n <app@example.test>\nTo: bob@example.org\n\nhi\n")
    assert env.sender == "app@example.test"


def test_mail_to_a_capture_domain_is_captured_not_handed_over(backend):
    from pigeon.config.schema import DomainConfig
    from pigeon.vocab import QueueState

    config = backend.config
    domains = {**config.domains, "dev.example": DomainConfig("dev.example", capture=True)}
    sub = ApiSubmitter(
        config=dataclasses.replace(config, domains=domains),
        store=backend.store,
        on_queued=(handed := []).append,
        maillog=backend.maillog,
    )
    env = send(backend, sub, b"From: app@example.test\nTo: a@x.org, b@dev.example\n\nhi\n")
    assert handed == [] and env.capture == "dev.example"
    assert backend.store.entry(env.queue_id).state == QueueState.CAPTURE
    assert [c.detail for c in backend.maillog.for_id(env.queue_id)] == ["queued", "captured"]


# -- a token bound to an account: the submission pipeline (net/apisession.py) ----------


def account_submitter(backend, tmp_path, *, addresses=("alice@example.test",)):
    """An ApiSubmitter whose accounts are a real accounts.db with "alice" and
    whose submission context has the configuration's own pipeline."""
    from pigeon.auth.accounts import AccountStore
    from pigeon.auth.ratelimit import FailureLimiter
    from pigeon.auth.service import AuthService
    from pigeon.net.services import ConnectionContext, ReceiveServices
    from pigeon.net.smtp_service import role_session_config, session_config
    from pigeon.obs.maillog import MailLog
    from pigeon.policy.build import PolicyDeps, build_pipeline
    from pigeon.routing.resolve import Router

    accounts = AccountStore.in_data_dir(tmp_path).open()
    accounts.add("alice", "pw", addresses)
    auth = AuthService(accounts, FailureLimiter(), workers=1)
    config = backend.config
    handed: list = []
    services = ReceiveServices(
        store=backend.store,
        pipeline=build_pipeline(config, PolicyDeps(Router(config))),
        maillog=MailLog(),  # the real one: it writes reject lines too
        on_queued=handed.append,
    )
    session = role_session_config(
        config, session_config(config), "submission", tls=False, auth=True
    )
    context = ConnectionContext(services, session, "submission")
    sub = ApiSubmitter(
        config=config,
        store=backend.store,
        on_queued=handed.append,
        maillog=backend.maillog,
        auth=auth,
        submission=lambda: context,
    )
    return sub, handed, auth


def test_an_account_token_goes_through_the_pipeline(backend, tmp_path):
    sub, handed, auth = account_submitter(backend, tmp_path)
    try:
        message = b"From: alice@example.test\nTo: bob@example.org\n\nhi\n"
        env = send(backend, sub, message, account="alice", client=("127.0.0.1", 5))
        assert env.sender == "alice@example.test" and env.protocol == "HTTP"
        assert [e.queue_id for e in handed] == [env.queue_id]
        queued = handed[0]
        assert queued.client_address == "127.0.0.1" and queued.client_helo == "ci"
        data = content_bytes(backend.store, env.queue_id)
        assert data.startswith(b"Received: from ci ([127.0.0.1])")
        assert b"Message-ID: <" in data and b"\r\n\r\nhi\r\n" in data
    finally:
        auth.close()


def test_an_account_token_sends_only_as_the_account(backend, tmp_path):
    from pigeon.net.apisession import Refused

    sub, handed, auth = account_submitter(backend, tmp_path)
    try:
        # Another address of our own domain: fine for an administrator's
        # token, not for alice's.
        message = b"From: carol@example.test\nTo: bob@example.org\n\nhi\n"
        with pytest.raises(Refused) as caught:
            send(backend, sub, message, account="alice")
        assert (caught.value.stage, caught.value.reply.code) == ("MAIL", 553)
        assert send(backend, sub, message).sender == "carol@example.test"  # no account
        with pytest.raises(L.SubmitError) as gone:
            send(backend, sub, message, account="nobody")
        assert gone.value.code == L.EX_NOPERM and "nobody" in str(gone.value)
    finally:
        auth.close()
