"""Reloading: re-read the configuration and apply it without dropping sessions.

A reload is asked for by SIGHUP or by `pigeon reload` (the control socket's
"reload" operation, which also returns the outcome to the operator).

Contract:
  * `changed_keys(old, new)` lists the dotted keys that differ
    ("limits.message_size", "domains", "listen"...), for the log.
  * `Reloader.reload()` loads the configuration again the way start-up did
    (same file, same command-line flags) and returns a `ReloadOutcome`:
      - "refused": the file does not load (every problem, one line each,
        with file, line and key), or the TLS certificate files do not
        (the files are re-read at every reload, changed or not). Nothing
        is applied: the running configuration stays in force, untouched.
        Each problem is also logged ("reload rejected, ...").
      - "applied": the keys now in force, and those that wait for a
        restart; "unchanged": the file says what is running already.
      A listener of the new configuration that cannot be bound is logged,
      skipped and listed in `warnings` (the rest is applied).
  * What a reload changes at once, for new sessions and deliveries:
    listeners (added ones are bound, removed ones closed; one that cannot
    be bound is logged and skipped), local domains, mailboxes, aliases
    (the `aliases_file` is read again), transports and relay networks (a
    new router and receive pipeline, `policy.build.build_pipeline`; the
    new-mailbox counts carry over),
    protocol limits and timeouts, `[smtp]` switches, the TLS certificate
    (re-read) and TLS settings. Sessions in progress keep the
    configuration they started with; accounts are read at each login anyway.
  * What waits for a restart, said in a warning: `data_dir`, `hostname`,
    `user`, `group`, `workers`, `[queue]`, `[delivery]`, `[log]`, `[admin]`
    (they belong to long-lived objects: the store, the agents, the log
    handlers, the control socket, the processes).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pigeon.config.load import ConfigError, session_config
from pigeon.config.schema import Config
from pigeon.net.tls import TlsError, TlsProvider
from pigeon.policy.build import build_pipeline
from pigeon.routing.resolve import Router

if TYPE_CHECKING:
    from pigeon.app import Pigeon

log = logging.getLogger("pigeon")

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
)


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
        else:
            out.append(f.name)
    return out


@dataclass
class ReloadOutcome:
    """What a reload did; `to_dict()` is the control socket's answer (field names are stable)."""

    status: Literal["applied", "unchanged", "refused"]
    applied: list[str] = field(default_factory=list)  # keys in force now
    restart: list[str] = field(default_factory=list)  # keys that wait for a restart
    errors: list[str] = field(default_factory=list)  # why it was refused, one problem each
    warnings: list[str] = field(default_factory=list)  # applied, but not all of it (a listener)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class Reloader:
    def __init__(self, app: Pigeon, load: Callable[[], Config] | None) -> None:
        self.app = app
        self.load = load

    async def reload(self) -> ReloadOutcome:
        app = self.app
        if self.load is None:  # no file to re-read: certificates only
            new = app.config
        else:
            try:
                new = self.load()
            except ConfigError as exc:
                return _refuse([str(problem) for problem in exc.problems])
            except Exception as exc:  # never let a reload take the server down
                return _refuse([f"cannot load the configuration: {exc}"])
        changes = changed_keys(app.config, new)
        later = [k for k in changes if k.split(".")[0] in RESTART_ONLY]
        # Keep what cannot change live as it is, so the running objects and
        # the configuration they were built from stay consistent.
        live = dataclasses.replace(new, **{k: getattr(app.config, k) for k in RESTART_ONLY})
        if app.tls is not None:
            # Re-read the certificate files at every reload: they may have
            # changed while the configuration did not (a renewed certificate).
            try:
                provider = TlsProvider.create(live)
            except TlsError as exc:
                log.error(
                    "TLS reload failed, keeping the previous certificate and the running "
                    "configuration: %s",
                    exc,
                )
                return ReloadOutcome("refused", errors=[str(exc)])
            app.tls = app.server.tls = provider
            log.info("TLS certificate reloaded: %s", provider.describe())
        if not changes:
            log.info("reload: configuration unchanged")
            return ReloadOutcome("unchanged")
        router = Router(live)
        policy = build_pipeline(live, app.server.pipeline.deps.with_router(router))
        app.manager.set_router(router)
        warnings = await app.server.reconfigure(live, session_config(live), policy) or []
        # The reserve follows limits.message_size (queue/space.py Rule 1).
        app.store.space.configure(
            min_free=live.queue.min_free, message_size=live.limits.message_size
        )
        app.config = live
        now = [k for k in changes if k not in later]
        if now:
            log.info("reload: applied %s", ", ".join(now))
        if later:
            log.warning("reload: %s take effect at the next restart", ", ".join(later))
        return ReloadOutcome("applied", now, later, warnings=list(warnings))


def _refuse(errors: list[str]) -> ReloadOutcome:
    for error in errors:
        log.error("reload rejected, the running configuration stays in force: %s", error)
    return ReloadOutcome("refused", errors=errors)
