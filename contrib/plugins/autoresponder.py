"""Auto-responder ("vacation"), following RFC 3834.

    [[plugins]]
    path = "/usr/share/pigeon/plugins/autoresponder.py"
    [plugins.config]
    addresses = ["alice@example.test"]      # who is away (lowercased)
    text = "I am away until Monday."        # the reply's body
    period = 604800                         # seconds: one reply per sender per 7 days

For each recipient of a message that is in `addresses`, it answers the
sender once per `period`, unless one of the rules below says not to:

  * no reply to the null reverse-path <> (a bounce) or to a sender whose
    local part is MAILER-DAEMON, or ends in "-request" or starts with
    "owner-" (list software); RFC 3834 §2, §4;
  * no reply to a message with Auto-Submitted: other than "no" (§2, §5);
  * no reply to list mail: any List-* field (RFC 2369, RFC 2919: List-Id,
    List-Unsubscribe ...) or Precedence: bulk, list or junk (the
    traditional marks vacation(1) honours);
  * once per sender per `period` for each recipient (§2: "SHOULD NOT issue
    the same response to the same sender more than once within a period of
    several days"); the times are kept on disk (SQLite, in the plugin's
    state directory `<data_dir>/plugins/NAME/`), so a restart does not
    reset them.

The reply goes to the envelope sender (§4: the Return-Path), with the null
reverse-path as its own sender so that nothing answers it (§3.3 and
pigeon's bounce-loop rule), From: the recipient, Subject: "Auto: " and the
original subject (§3.1.5), In-Reply-To: and References: the original
Message-ID (§3.1.4), and Auto-Submitted: auto-replied (§5). It is queued
through pigeon's own queue (`PluginContext.submit`) in the background: the
original message's 250 does not wait for it (a reply not yet queued when
pigeon stops is not sent). Every decision is logged.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import email.utils
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message as Headers
from pathlib import Path

from pigeon.api import Address, Message, PluginContext, SessionFacts

_PARSER = email.parser.BytesHeaderParser(policy=email.policy.compat32)
_BULK = frozenset({"bulk", "list", "junk"})


def reason_not_to_reply(sender: Address | None, headers: Headers) -> str | None:
    """Why RFC 3834 (and custom) says not to answer; None: answer."""
    if sender is None:
        return "null sender (a bounce)"
    local = sender.local.lower()
    if local == "mailer-daemon" or local.endswith("-request") or local.startswith("owner-"):
        return f"sender {sender} is a mailer or list address"
    auto = (headers.get("Auto-Submitted") or "no").split(";")[0].strip().lower()
    if auto != "no":
        return f"Auto-Submitted: {auto}"
    listed = [name for name in headers.keys() if name.lower().startswith("list-")]
    if listed:
        return f"list mail ({listed[0]})"
    precedence = (headers.get("Precedence") or "").strip().lower()
    if precedence in _BULK:
        return f"Precedence: {precedence}"
    return None


class ReplyLog:
    """When each (recipient, sender) pair was last answered, in SQLite, in
    `directory()` (asked on first use: `pigeon check-config` makes plugins
    too, and must write nothing)."""

    def __init__(self, directory: Callable[[], Path]) -> None:
        self.directory = directory

    def due(self, recipient: str, sender: str, now: float, period: float) -> bool:
        """True (and the time noted) when no reply went out within `period`."""
        with sqlite3.connect(self.directory() / "replied.sqlite", timeout=10) as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS replied"
                " (recipient TEXT, sender TEXT, at REAL, PRIMARY KEY (recipient, sender))"
            )
            row = db.execute(
                "SELECT at FROM replied WHERE recipient = ? AND sender = ?", (recipient, sender)
            ).fetchone()
            if row is not None and now - row[0] < period:
                return False
            db.execute("INSERT OR REPLACE INTO replied VALUES (?, ?, ?)", (recipient, sender, now))
            return True


class Plugin:
    @dataclass(frozen=True)
    class Settings:
        addresses: list[str]
        text: str
        period: float = 7 * 86400.0
        subject: str = ""  # "" = "Auto: " and the original subject

        def __post_init__(self) -> None:
            if self.period <= 0:
                raise ValueError("period must be a positive number of seconds")

    def __init__(self, settings: Settings, context: PluginContext) -> None:
        self.settings = settings
        self.away = frozenset(a.lower() for a in settings.addresses)
        self.context = context
        self.log = context.log
        self.replies = ReplyLog(context.state_dir)
        self._background: set[asyncio.Task[None]] = set()

    def end_of_data(self, session: SessionFacts, message: Message) -> None:
        wanted = [str(a) for a, _ in session.recipients if str(a).lower() in self.away]
        if not wanted:
            return
        headers = _PARSER.parsebytes(message.header_section())
        sender = session.sender
        why_not = reason_not_to_reply(sender, headers)
        if why_not is not None or sender is None:
            self.log.info("%s: no auto-reply: %s", message.queue_id, why_not)
            return
        task = asyncio.ensure_future(self._answer(message.queue_id, str(sender), wanted, headers))
        self._background.add(task)  # a reference until it is done
        task.add_done_callback(self._background.discard)

    async def _answer(
        self, queue_id: str, sender: str, recipients: list[str], headers: Headers
    ) -> None:
        for recipient in recipients:
            try:
                due = await asyncio.to_thread(
                    self.replies.due,
                    recipient.lower(),
                    sender.lower(),
                    time.time(),
                    self.settings.period,
                )
                if not due:
                    self.log.info(
                        "%s: no auto-reply: %s was answered for %s within the period",
                        queue_id,
                        sender,
                        recipient,
                    )
                    continue
                reply = self._reply(recipient, sender, headers)
                new_id = await self.context.submit("", [sender], reply)
                self.log.info(
                    "%s: auto-reply from %s to %s queued as %s", queue_id, recipient, sender, new_id
                )
            except Exception:
                self.log.exception(
                    "%s: auto-reply from %s to %s failed", queue_id, recipient, sender
                )

    def _reply(self, recipient: str, sender: str, original: Headers) -> bytes:
        subject = self.settings.subject or "Auto: " + " ".join(
            (original.get("Subject") or "your message").split()
        )
        lines = [
            f"From: {recipient}",
            f"To: {sender}",
            f"Subject: {subject}",
            f"Date: {email.utils.formatdate(localtime=False, usegmt=True)}",
            f"Message-ID: {email.utils.make_msgid(domain=self.context.hostname)}",
            "Auto-Submitted: auto-replied",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
        ]
        message_id = (original.get("Message-ID") or "").strip()
        if message_id and "\n" not in message_id and "\r" not in message_id:
            lines += [f"In-Reply-To: {message_id}", f"References: {message_id}"]
        body = self.settings.text.replace("\r\n", "\n").replace("\n", "\r\n")
        text = "\r\n".join(lines) + "\r\n\r\n" + body + "\r\n"
        return text.encode("utf-8", "surrogateescape")  # 8-bit subjects come back as they came
