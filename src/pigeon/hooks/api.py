"""What a plugin writes with: verdict helpers, its context, delivery events.

Contract (docs/hooks.md is the user's guide):
  * A plugin is a class (`Plugin` in its module, or the object an entry
    point or `module = "pkg.mod:Name"` names). It may declare `Settings`, a
    dataclass of its own configuration keys (pigeon/hooks/settings.py), and
    its `__init__` may take `settings` and/or `context` (a `PluginContext`)
    by those names. Its methods are the receive stages of
    `pigeon.policy.api` (`connect`, `helo`, `tls`, `auth`, `mail`, `rcpt`,
    `data`, `end_of_data`, `etrn`: same arguments, same `Verdict`s) and the
    delivery events of `pigeon.hooks.events` (`attempt`, `delivered`,
    `deferred`, `bounced`, `expired`); it has only those it cares about.
    Sync or `async def`, each.
  * `reject`, `tempfail`, `accept`, `discard`, `quarantine` build verdicts
    and check what they are given (a reply code of the right class, an
    enhanced code of the same class, RFC 3463 §2, and reply text without
    CR, LF or NUL, so no plugin can split a reply); they raise ValueError
    otherwise, which the pipeline answers 451 4.3.0 and logs.
  * `PluginContext` is what pigeon gives a plugin: its name, a logger
    ("pigeon.plugin.NAME"), a directory of its own for state
    (`<data_dir>/plugins/NAME`, made on first use by `state_dir()`), the
    server's hostname, and `submit()`: queue a message of its own (an
    auto-reply) through pigeon's queue, durable when it returns.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pigeon.policy.api import EnvelopeRecipient, HeaderField, Verdict
from pigeon.proto.reply import Reply

__all__ = [
    "PluginContext",
    "Submit",
    "accept",
    "discard",
    "quarantine",
    "reject",
    "tempfail",
]

# RFC 3463 §2: class.subject.detail, class 2, 4 or 5, up to three digits each.
_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}\Z")
# Reply text: printable characters and tabs, never CR, LF or NUL (RFC 5321 §4.2).
_TEXT = re.compile(r"[^\r\n\x00]*\Z")


def _reply(code: int, enhanced: str, text: str, wanted: range) -> Reply:
    if isinstance(code, bool) or not isinstance(code, int) or code not in wanted:
        raise ValueError(f"reply code {code!r} is not in {wanted.start}-{wanted.stop - 1}")
    if not _ENHANCED.match(enhanced) or enhanced[0] != str(code)[0]:
        raise ValueError(f"enhanced status {enhanced!r} does not go with {code} (RFC 3463)")
    lines = tuple(text.split("\n")) if text else ("Refused",)
    for line in lines:
        if not _TEXT.match(line):
            raise ValueError("reply text may not hold CR or NUL")
    return Reply(code, enhanced, lines)


def reject(code: int = 550, enhanced: str = "5.7.1", text: str = "Refused") -> Verdict:
    """Refuse for good (5xx); `text` may have several lines ("\\n")."""
    return Verdict(_reply(code, enhanced, text, range(500, 600)))


def tempfail(code: int = 451, enhanced: str = "4.7.1", text: str = "Try again later") -> Verdict:
    """Refuse for now (4xx): the client tries again later."""
    return Verdict(_reply(code, enhanced, text, range(400, 500)))


def accept(
    *,
    add_headers: Sequence[tuple[str, str]] = (),
    remove_headers: Sequence[str] = (),
    recipients: Sequence[EnvelopeRecipient] | None = None,
    transport: str | None = None,
) -> Verdict:
    """Accept, with effects: header fields (name, value) put on top of the
    message, field names removed from the client's header section, the whole
    new recipient list, a next hop in [transports] syntax."""
    return Verdict(
        None,
        tuple(HeaderField(name, value) for name, value in add_headers),
        recipients=tuple(recipients) if recipients is not None else None,
        remove_headers=tuple(remove_headers),
        transport=transport,
    )


def discard(reason: str) -> Verdict:
    """Accept (250), then drop the message; `reason` goes to the mail log."""
    return Verdict(discard=reason or "discarded by a plugin")


def quarantine(reason: str) -> Verdict:
    """Accept, then keep the message on hold until an operator releases it."""
    return Verdict(quarantine=reason or "quarantined by a plugin")


#: `submit(sender, recipients, message)`: queue `message` (CRLF lines, a
#: header section and a body) from `sender` ("" = the null reverse-path) to
#: `recipients`; returns the queue ID once the message is durable.
Submit = Callable[[str, Sequence[str], bytes], Awaitable[str]]


async def _no_queue(sender: str, recipients: Sequence[str], message: bytes) -> str:
    raise RuntimeError("this process has no queue to submit to")


@dataclass(frozen=True)
class PluginContext:
    """What pigeon gives a plugin (module contract)."""

    name: str
    data_dir: Path
    hostname: str = "localhost"
    submit: Submit = _no_queue
    log: logging.Logger = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "log", logging.getLogger(f"pigeon.plugin.{self.name}"))

    def state_dir(self) -> Path:
        """`<data_dir>/plugins/<name>`, made (0700) if it does not exist yet."""
        path = self.data_dir / "plugins" / self.name
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path
