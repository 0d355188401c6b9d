"""Which mail is captured, and for which tenant (policy/capture.py): pure, no I/O."""

from __future__ import annotations

from pigeon.config.listen import ListenAddress
from pigeon.config.load import load_config
from pigeon.policy.capture import CaptureRules

RULES = CaptureRules(
    accounts=frozenset({"ci@example.test"}),
    listeners=(ListenAddress("127.0.0.1", 2525), ListenAddress("::", 2526)),
    domains=frozenset({"dev.example"}),
)


def tenant(user=None, local=("127.0.0.1", 25), rcpts=("bob@example.org",)):
    return RULES.tenant(user=user, local=local, recipients=rcpts)


def test_nothing_marked_nothing_captured():
    assert CaptureRules.NONE.tenant(user="a", local=("127.0.0.1", 2525), recipients=["x@y"]) is None
    assert tenant() is None
    assert tenant(user="someone@example.test") is None


def test_a_capture_account_is_its_own_tenant_anywhere():
    assert tenant(user="CI@example.test") == "ci@example.test"


def test_a_capture_listener_by_port_and_address():
    assert tenant(local=("127.0.0.1", 2525)) == "127.0.0.1:2525"
    assert tenant(local=("127.0.0.2", 2525)) is None  # another address, same port
    assert tenant(local=("::ffff:127.0.0.1", 2525)) == "127.0.0.1:2525"
    assert tenant(local=("192.0.2.7", 2526)) == "[::]:2526"  # a wildcard listener
    assert tenant(local=None) is None


def test_any_recipient_in_a_capture_domain_captures_the_whole_message():
    assert tenant(rcpts=("a@example.org", "b@DEV.example")) == "dev.example"
    assert tenant(rcpts=("a@sub.dev.example",)) is None  # the domain itself only


def test_a_logged_in_user_is_the_tenant_of_what_a_listener_or_domain_captures():
    assert tenant(user="team-a@example.test", rcpts=("b@dev.example",)) == "team-a@example.test"
    assert tenant(user="team-b@example.test", local=("127.0.0.1", 2525)) == "team-b@example.test"


def test_rules_from_the_configuration():
    config = load_config(
        None,
        {
            "listen": ["127.0.0.1:2525"],
            "domains": {"dev.example": {"capture": True}, "example.test": {}},
            "capture": {"listeners": ["127.0.0.1:2525"], "accounts": ["CI@Example.test"]},
        },
    )
    rules = CaptureRules.of(config)
    assert rules.domains == {"dev.example"} and rules.accounts == {"ci@example.test"}
    assert rules.listeners == (ListenAddress("127.0.0.1", 2525),)
