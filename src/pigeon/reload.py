"""SIGHUP: re-read the configuration and apply it without dropping sessions.

Contract:
  * `changed_keys(old, new)` lists the dotted keys that differ
    ("limits.message_size", "domains", "listen"...), for the log.
  * `Reloader.reload()` loads the configuration again the way start-up did
    (same file, same command-line flags). A file that does not load is
    rejected with one log line naming the key and the problem, and the
    running configuration stays in force, untouched.
  * What a reload changes at once, for new sessions and deliveries:
    listeners (added ones are bound, removed ones closed; a listener that
    cannot be bound is logged and skipped), local domains, mailboxes,
    aliases, transports and relay networks (a new router and recipient
    policy), protocol limits and timeouts, `[smtp]` switches, the TLS
    certificate (re-read) and TLS settings. Sessions in progress keep the
    configuration they started with; accounts are read at each login anyway.
  * What waits for a restart, said in a warning: `data_dir`, `hostname`,
    `[queue]`, `[delivery]`, `[log]`, `[admin]` (they belong to long-lived
    objects: the store, the agents, the log handlers, the control socket).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Callable

from pigeon.config.load import ConfigError, session_config
from pigeon.config.schema import Config
from pigeon.net.tls import TlsError, TlsProvider
from pigeon.policy.recipients import RecipientPolicy
from pigeon.routing.resolve import Router

if TYPE_CHECKING:
    from pigeon.app import Pigeon

log = logging.getLogger("pigeon")

RESTART_ONLY = ("data_dir", "hostname", "queue", "delivery", "log", "admin")


def changed_keys(old: Config, new: Config) -> list[str]:
    out: list[str] = []
    for f in dataclasses.fields(Config):
        a, b = getattr(old, f.name), getattr(new, f.name)
        if a == b:
            continue
        if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
            out += [f"{f.name}.{g.name}" for g in dataclasses.fields(a)
                    if getattr(a, g.name) != getattr(b, g.name)]
        else:
            out.append(f.name)
    return out


class Reloader:
    def __init__(self, app: "Pigeon", load: Callable[[], Config] | None) -> None:
        self.app = app
        self.load = load

    async def reload(self) -> None:
        app = self.app
        if self.load is None:                 # no file to re-read: certificates only
            if app.tls is not None:
                app.tls.reload()
            return
        try:
            new = self.load()
        except ConfigError as exc:
            log.error("reload rejected, the running configuration stays in force: %s", exc)
            return
        except Exception as exc:  # never let a reload take the server down
            log.error("reload rejected, the running configuration stays in force: %s", exc)
            return
        changes = changed_keys(app.config, new)
        if app.tls is not None:
            app.tls.reload()                  # the files may have changed, not the config
        if not changes:
            log.info("reload: configuration unchanged")
            return
        later = [k for k in changes if k.split(".")[0] in RESTART_ONLY]
        # Keep what cannot change live as it is, so the running objects and
        # the configuration they were built from stay consistent.
        live = dataclasses.replace(new, **{k: getattr(app.config, k) for k in RESTART_ONLY})
        if any(k.startswith("tls.") for k in changes):
            try:
                provider = TlsProvider.create(live)
            except TlsError as exc:
                log.error("reload rejected, the running configuration stays in force: %s", exc)
                return
            app.tls = app.server.tls = provider
        router = Router(live)
        policy = RecipientPolicy(live, router)
        app.manager.set_router(router)
        await app.server.reconfigure(live, session_config(live), policy)
        # The reserve follows limits.message_size (queue/space.py Rule 1).
        app.store.space.configure(min_free=live.queue.min_free,
                                  message_size=live.limits.message_size)
        app.config = live
        now = [k for k in changes if k not in later]
        if now:
            log.info("reload: applied %s", ", ".join(now))
        if later:
            log.warning("reload: %s take effect at the next restart", ", ".join(later))
