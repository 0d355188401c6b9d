"""pigeon.app.reload.plan_reload: the difference between two configurations, with no
server running (the lifecycle applies it; tests/e2e/test_reload.py runs it live)."""

from __future__ import annotations

import dataclasses

import pytest

from pigeon.app.reload import (
    LISTENER_KEYS,
    RESTART_ONLY,
    ReloadOutcome,
    changed_keys,
    plan_reload,
)
from pigeon.config.load import ConfigError, ConfigErrors, load_config
from pigeon.config.schema import Config, ListenAddress


def config(**overrides) -> Config:
    return load_config(None, {"hostname": "mx.example.test", **overrides})


RUNNING = config()


def test_the_same_configuration_is_unchanged():
    plan = plan_reload(RUNNING, config())
    assert (plan.status, plan.now, plan.restart, plan.refused) == ("unchanged", (), (), ())
    assert plan.live == RUNNING
    assert plan.outcome().to_dict() == {
        "status": "unchanged",
        "applied": [],
        "restart": [],
        "errors": [],
        "warnings": [],
    }


def test_live_keys_are_applied_now_by_their_dotted_names():
    new = config(domains=["localhost", "new.test"], limits={"message_size": 4321})
    plan = plan_reload(RUNNING, new)
    assert plan.status == "applied"
    assert plan.now == ("domains", "limits.message_size")
    assert plan.restart == ()
    assert plan.live == new


def test_restart_only_keys_wait_and_keep_their_running_value():
    new = config(
        domains=["localhost", "new.test"],
        queue={"run_interval": 30},
        hostname="other.example.test",
        log={"level": "debug"},
    )
    plan = plan_reload(RUNNING, new)
    assert plan.status == "applied"
    assert plan.now == ("domains",)
    assert set(plan.restart) == {"hostname", "queue.run_interval", "log.level"}
    # What is in force: the new domains, the old restart-only parts.
    assert plan.live.domains == new.domains
    assert plan.live.hostname == RUNNING.hostname
    assert plan.live.queue == RUNNING.queue
    assert plan.live.log == RUNNING.log


def test_only_restart_keys_changed_is_applied_with_nothing_now():
    plan = plan_reload(RUNNING, config(queue={"run_interval": 30}))
    assert (plan.status, plan.now, plan.restart) == ("applied", (), ("queue.run_interval",))
    assert plan.live == RUNNING
    assert plan.outcome().to_dict()["restart"] == ["queue.run_interval"]


#: A change of each restart-only key, as the file would say it.
RESTART_CHANGES = {
    "data_dir": {"data_dir": "/elsewhere"},
    "hostname": {"hostname": "changed.example.test"},
    "user": {"user": "nobody"},
    "group": {"user": "nobody", "group": "nogroup"},
    "workers": {"workers": 4},
    "queue": {"queue": {"run_interval": 30}},
    "delivery": {"delivery": {"remote_port": 2525}},
    "log": {"log": {"level": "debug"}},
    "admin": {"admin": {"metrics_listen": ""}},
    "console": {"console": {"listen": ""}},
    "reports": {"reports": {"dmarc": True}},
    "srs": {"srs": {"enabled": True}},
    "arc": {"arc": {"selector": "s1"}},
    "webhooks": {"webhooks": [{"url": "http://127.0.0.1:8080/", "secret": "k"}]},
}


def test_every_restart_only_key_has_a_case():
    assert set(RESTART_CHANGES) == set(RESTART_ONLY)


@pytest.mark.parametrize("key", RESTART_ONLY)
def test_every_restart_only_key_waits_and_keeps_its_running_value(key):
    new = config(**RESTART_CHANGES[key])
    plan = plan_reload(RUNNING, new)
    assert plan.status == "applied"
    assert plan.now == ()
    assert plan.restart and any(k.split(".")[0] == key for k in plan.restart)
    assert all(k.split(".")[0] in RESTART_ONLY for k in plan.restart)
    assert plan.live == RUNNING


def test_listeners_change_at_once_with_one_process():
    new = config(listen=["127.0.0.1:2525", "127.0.0.1:2526"], submission_listen=[])
    plan = plan_reload(RUNNING, new)
    assert plan.now == ("listen", "submission_listen")
    assert plan.live.listen == (ListenAddress("127.0.0.1", 2525), ListenAddress("127.0.0.1", 2526))


def test_listeners_wait_for_a_restart_when_the_sockets_are_shared_with_workers():
    new = config(listen=["127.0.0.1:2526"], submissions_listen=[], domains=["a.test"])
    plan = plan_reload(RUNNING, new, fixed_listeners=True)
    assert plan.now == ("domains",)
    assert set(plan.restart) == {"listen", "submissions_listen"}
    for key in LISTENER_KEYS:
        assert getattr(plan.live, key) == getattr(RUNNING, key)


def test_a_file_that_does_not_load_is_refused_with_every_problem():
    problems = [
        ConfigError("limits.mesage_size", "unknown key", "/etc/p.toml", 3),
        ConfigError("smtp.pipelining", 'must be true or false, got "yes"', "/etc/p.toml", 5),
    ]
    plan = plan_reload(RUNNING, ConfigErrors(problems))
    assert plan.status == "refused"
    assert plan.refused == (
        "/etc/p.toml:3: limits.mesage_size: unknown key",
        '/etc/p.toml:5: smtp.pipelining: must be true or false, got "yes"',
    )
    assert plan.live is RUNNING  # nothing applied
    assert (plan.now, plan.restart) == ((), ())
    one = plan_reload(RUNNING, ConfigError("domains", "bad", "f.toml", 1))
    assert one.refused == ("f.toml:1: domains: bad",)


def test_changed_keys_names_sections_by_field_and_the_aliases_file_by_its_entries():
    new = dataclasses.replace(
        RUNNING,
        local_aliases={"postmaster": ("root@example.test",)},
        timeouts=dataclasses.replace(RUNNING.timeouts, command=10.0, data_block=5.0),
    )
    assert changed_keys(RUNNING, new) == [
        "aliases_file (its entries)",
        "timeouts.command",
        "timeouts.data_block",
    ]


def test_the_outcome_carries_warnings_from_applying():
    plan = plan_reload(RUNNING, config(domains=["x.test"]))
    outcome = plan.outcome(["cannot listen on 127.0.0.1:25 (smtp): Address already in use"])
    assert outcome == ReloadOutcome(
        "applied",
        ["domains"],
        [],
        [],
        ["cannot listen on 127.0.0.1:25 (smtp): Address already in use"],
    )
