"""Reload as a pure function: two configurations in, what to do about the difference out.

    plan = plan_reload(running, loaded, fixed_listeners=config.workers > 1)
    plan.status       # "applied" | "unchanged" | "refused"
    plan.now          # keys put in force at once ("domains", "limits.message_size"...)
    plan.restart      # keys that wait for the next restart
    plan.refused      # why nothing is applied, one problem each
    plan.live         # the configuration to put in force

A reload is asked for by SIGHUP or by `pigeon reload` (the control socket's
"reload" operation, which also returns the outcome to the operator). The
owner of the running parts (the lifecycle, pigeon/app/lifecycle.py) loads
the file, asks this module what the difference means, re-reads the TLS
certificate and applies the plan to the parts it owns. Nothing here does
I/O or touches a running object, so every rule below is unit-tested without
a server (tests/unit/app/test_reload_plan.py).

Contract:
  * `changed_keys(old, new)` lists the dotted keys that differ
    ("limits.message_size", "domains", "listen"...), for the log and the
    operator.
  * `plan_reload(running, loaded)`, where `loaded` is the new configuration
    or the `ConfigError` its loading raised:
      - "refused": the file does not load; every problem, one line each,
        with file, line and key. Nothing is applied: the running
        configuration stays in force, untouched. (The owner refuses too
        when the TLS certificate files do not load: they are re-read at
        every reload, changed or not.)
      - "unchanged": the file says what is running already (the owner still
        re-reads the certificate files);
      - "applied": `now` are the keys put in force at once, `restart` those
        that wait for a restart.
  * What a reload changes at once, for new sessions and deliveries:
    listeners (added ones are bound, removed ones closed; one that cannot
    be bound is logged, skipped and listed in the outcome's `warnings`),
    local domains, mailboxes, aliases (the `aliases_file` is read again),
    transports and relay networks (a new router and recipient policy; the
    new-mailbox counts carry over), protocol limits and timeouts, `[smtp]`
    switches, the TLS certificate (re-read) and TLS settings, `[pop3]` (its
    listeners are the main process's own, also with `workers > 1`). Sessions in
    progress keep the configuration they started with; accounts are read at
    each login anyway.
  * What waits for a restart, said in a warning: `data_dir`, `hostname`,
    `user`, `group`, `workers`, `[queue]`, `[delivery]`, `[log]`, `[admin]`, `[console]`,
    `[reports]`, `[srs]`, `[arc]`, `[[webhooks]]` (they belong to long-lived objects: the
    store, the agents, the log handlers, the control socket, the processes,
    the SRS secret and the ARC key read at start-up, the webhooks' outbox
    and secrets); and, with `workers > 1`
    (`fixed_listeners`), the listener addresses too (`listen`,
    `submission_listen`, `submissions_listen`): the sockets were bound before
    the worker processes were forked and are shared by all of them.
  * `plan.live` is the new configuration with every restart-only key kept
    at its running value, so the running objects and the configuration they
    were built from stay consistent.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from pigeon.config.load import ConfigError
from pigeon.config.schema import Config

__all__ = [
    "LISTENER_KEYS",
    "RESTART_ONLY",
    "ReloadOutcome",
    "ReloadPlan",
    "changed_keys",
    "plan_reload",
]

RESTART_ONLY = (
    "data_dir",
    "hostname",
    "user",
    "group",
    "workers",
    "queue",
    "delivery",
    "log",
    "admin",
    "console",  # the HTTP listener (pigeon.web), started with the control socket
    "reports",  # the report sink and the daily job (app/reportjob.py)
    "srs",
    "arc",
    "webhooks",  # the outbox and its sender, built at start-up (pigeon/webhooks/service.py)
)

#: The keys naming listener addresses (net/smtp_service.py SMTP_ROLES).
LISTENER_KEYS = ("listen", "submission_listen", "submissions_listen")

Status = Literal["applied", "unchanged", "refused"]


def changed_keys(old: Config, new: Config) -> list[str]:
    out: list[str] = []
    for f in dataclasses.fields(Config):
        a, b = getattr(old, f.name), getattr(new, f.name)
        if a == b:
            continue
        if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
            out += [
                f"{f.name}.{g.name}"
                for g in dataclasses.fields(a)
                if getattr(a, g.name) != getattr(b, g.name)
            ]
        elif f.name == "local_aliases":
            out.append("aliases_file (its entries)")  # read from the file, no key of its own
        elif f.name == "shared_directory":
            out.append("the shared database's domains and aliases")  # config/shared.py
        else:
            out.append(f.name)
    return out


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """What a reload means (see the module contract)."""

    status: Status
    live: Config  # the configuration to put in force (the running one when refused)
    now: tuple[str, ...] = ()
    restart: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()

    def outcome(self, warnings: list[str] | None = None) -> ReloadOutcome:
        return ReloadOutcome(
            self.status,
            list(self.now),
            list(self.restart),
            list(self.refused),
            list(warnings or []),
        )


def plan_reload(
    running: Config, loaded: Config | ConfigError, *, fixed_listeners: bool = False
) -> ReloadPlan:
    """The difference between `running` and `loaded` (see the module contract)."""
    if isinstance(loaded, ConfigError):
        return ReloadPlan("refused", running, refused=tuple(str(p) for p in loaded.problems))
    later_sections = set(RESTART_ONLY) | (set(LISTENER_KEYS) if fixed_listeners else set())
    changes = changed_keys(running, loaded)
    if not changes:
        return ReloadPlan("unchanged", running)
    restart = tuple(k for k in changes if k.split(".")[0] in later_sections)
    now = tuple(k for k in changes if k not in restart)
    kept: dict[str, Any] = {k: getattr(running, k) for k in later_sections}
    return ReloadPlan("applied", dataclasses.replace(loaded, **kept), now, restart)


@dataclass
class ReloadOutcome:
    """What a reload did; `to_dict()` is the control socket's answer (field names are stable)."""

    status: Status
    applied: list[str] = field(default_factory=list)  # keys in force now
    restart: list[str] = field(default_factory=list)  # keys that wait for a restart
    errors: list[str] = field(default_factory=list)  # why it was refused, one problem each
    warnings: list[str] = field(default_factory=list)  # applied, but not all of it (a listener)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
