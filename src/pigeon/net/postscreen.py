"""Postscreen-like tests of the client's protocol behaviour on port 25 ([postscreen]).

Spam software often does not speak SMTP as RFC 5321 has it: it talks
before the greeting (§3.1: the client waits for it) or sends a whole
conversation at once without waiting for replies it must wait for
(RFC 2920 §3.1). Postfix's postscreen tests both; so does this.

Contract:
  * `Screen.of(config, role, client)` is None unless the listener role is
    "smtp" (port 25: submission clients are logged-in users) and a test is
    on: `greet_wait` > 0, or `pipelining_action` other than "ignore". (With
    only the pre-greeting test on, pipelining found is still logged.)
  * The timing half is here and in the driver (net/smtpd.py): it waits
    `greet_wait` before the greeting and hands what the client sent
    meanwhile to `talked_first`. The protocol half is sans-IO in the
    session (`ServerSession.pipelined`: the first command followed by
    octets the client could not yet send); the driver calls `pipelined`
    once it is set.
  * Actions (Postfix's postscreen_*_action): "ignore" logs and goes on;
    "enforce" logs, lets the client go on and has every RCPT TO of the
    session answered 550 5.5.1 (`ReceiveSession.hold`), so the client
    learns why; "drop" logs and ends the session with 521 5.5.1 at once.
    With "ignore" or "enforce" what a pre-greeting client sent is read as
    its first commands once it is greeted (it is not thrown away).
  * One log line per finding, naming the client, like postscreen's
    "PREGREET" and "COMMAND PIPELINING" lines.
"""

from __future__ import annotations

import logging

from pigeon.config.abuse import PostscreenConfig
from pigeon.policy.pipeline import ReceiveSession
from pigeon.proto import reply as R
from pigeon.proto.server import ServerSession

__all__ = ["Screen"]

log = logging.getLogger("pigeon.smtpd")

PREGREET_ENFORCED = R.reply(550, "5.5.1", "Error: protocol error: you talked before the greeting")
PIPELINING_ENFORCED = R.reply(
    550, "5.5.1", "Error: protocol error: commands sent before the reply they had to wait for"
)
DROPPED = R.reply(521, "5.5.1", "Error: SMTP protocol synchronization error, closing")


class Screen:
    """The postscreen tests of one connection (module contract)."""

    __slots__ = ("config", "client", "found_pipelining")

    def __init__(self, config: PostscreenConfig, client: str) -> None:
        self.config = config
        self.client = client
        self.found_pipelining = False

    @classmethod
    def of(cls, config: PostscreenConfig, role: str, client: str) -> Screen | None:
        if role != "smtp":
            return None
        if config.greet_wait <= 0 and config.pipelining_action == "ignore":
            return None
        return cls(config, client)

    def talked_first(
        self, early: bytes, after: float, session: ServerSession, policy: ReceiveSession
    ) -> bytes:
        """The client sent `early`, `after` seconds into the wait before the
        greeting: what to read as its first commands once greeted."""
        action = self.config.greet_action
        log.info(
            "PREGREET %d after %.2fs from [%s]: %r (%s)",
            len(early),
            after,
            self.client,
            early[:100],
            action,
        )
        return self._act(action, PREGREET_ENFORCED, session, policy, early)

    def pipelined(self, session: ServerSession, policy: ReceiveSession) -> bool:
        """The session found a pipelining violation; True: the session was dropped."""
        self.found_pipelining = True
        action = self.config.pipelining_action
        log.info(
            "COMMAND PIPELINING from [%s] after %s (%s)", self.client, session.pipelined, action
        )
        return not self._act(action, PIPELINING_ENFORCED, session, policy, b"-")

    @staticmethod
    def _act(
        action: str,
        enforced: R.Reply,
        session: ServerSession,
        policy: ReceiveSession,
        keep: bytes,
    ) -> bytes:
        if action == "drop":
            session.drop(DROPPED)
            return b""
        if action == "enforce":
            policy.hold(enforced)
        return keep
