"""Submission rules about message content (RFC 6409 §8.1-style checks).

Contract:
  * `header_section(head)` is the header section at the start of `head`:
    everything up to the first empty line (RFC 5322 §2.1), or all of `head`
    when there is none. The caller passes the whole header section (the
    SMTP session refuses a message whose header section is larger than
    `limits.header_size`, so the driver knows how much to read back).
  * `from_fields(head)` returns the value of every From: field of the header
    section, unfolded, read as tolerantly as mail clients read them: the
    name in any case, with white space before the colon (`From :`, the
    obsolete syntax of RFC 5322 §4.5.3 that many clients still display),
    and wherever the field is in the section.
  * `from_addresses(head)` returns, lowercased, every address a reader could
    take for the sender in those fields: the mailboxes an RFC 5322 parser
    finds (groups included) and, after RFC 2047 encoded words are decoded,
    every `local@domain` written anywhere in the field (a display name such
    as `=?utf-8?q?ceo=40bank.example?=` is shown as an address).
  * `check_from_header(head, owned)` is None when there is no From: field
    (the envelope sender was already checked) or when every From: field
    holds at least one address and every address found is one the
    authenticated account owns; else the 553 5.7.1 refusal. A From: field
    with no address at all (`undisclosed:;`, garbage) is refused too: what
    a client would show for it is not the account's address.
  * Pure: no I/O. The checks below read what the pipeline hands them.
  * `SenderOwnership` (mail): a logged-in client's MAIL FROM must be one of
    the addresses its account owns (pigeon/auth/accounts.py), else
    SENDER_NOT_OWNED 553 5.7.1; the null path <> is allowed (bounces).
  * `FromHeaderCheck` (end_of_data; `auth.check_from_header`): a logged-in
    client's message must pass `check_from_header` (553 5.7.1). The header
    section is read back from the spool (`Message.header_section()`); when
    it cannot be, the message is refused LOCAL_ERROR 451 4.3.0.
"""

from __future__ import annotations

import email.errors
import email.header
import email.utils
import logging
import re

from pigeon.policy.api import Message, SessionFacts, Verdict, refuse
from pigeon.policy.message import unfolded_fields
from pigeon.proto import reply as R
from pigeon.proto.params import MailParams
from pigeon.proto.reply import Reply
from pigeon.vocab.address import Address

log = logging.getLogger("pigeon.smtpd")

# A field name, optional white space, then the colon (RFC 5322 §3.6.4, §4.5.3).
_FROM_NAME = re.compile(r"from[ \t]*:", re.IGNORECASE)
# An address as a reader would recognise one in any text: local@domain.
_ADDRESS_LIKE = re.compile(r"[^\s<>()\[\],;:\"@]+@[^\s<>()\[\],;:\"@]+")


def header_section(head: bytes) -> bytes:
    end = head.find(b"\r\n\r\n")
    return head if end == -1 else head[: end + 2]


def from_fields(head: bytes) -> list[str]:
    values = []
    for field in unfolded_fields(header_section(head)):
        match = _FROM_NAME.match(field)
        if match:
            values.append(field[match.end() :].strip())
    return values


def _decoded(value: str) -> str:
    """`value` with RFC 2047 encoded words decoded (as a mail client shows it)."""
    try:
        parts = email.header.decode_header(value)
    except (ValueError, email.errors.HeaderParseError):
        return value
    out = []
    for text, charset in parts:
        if isinstance(text, bytes):
            try:
                text = text.decode(charset or "ascii", "replace")
            except LookupError:
                text = text.decode("latin-1")
        out.append(text)
    return "".join(out)


def _field_addresses(value: str) -> set[str]:
    found = {addr for _, addr in email.utils.getaddresses([value]) if "@" in addr}
    found.update(_ADDRESS_LIKE.findall(value))
    found.update(_ADDRESS_LIKE.findall(_decoded(value)))
    return {addr.rstrip(".").lower() for addr in found}  # "... alice@x.test." in prose


def from_addresses(head: bytes) -> list[str]:
    addresses: set[str] = set()
    for value in from_fields(head):
        addresses |= _field_addresses(value)
    return sorted(addresses)


def check_from_header(head: bytes, owned: frozenset[str]) -> Reply | None:
    for value in from_fields(head):
        addresses = _field_addresses(value)
        if not addresses or not addresses <= owned:
            return R.FROM_NOT_OWNED
    return None


_SENDER_NOT_OWNED = refuse(R.SENDER_NOT_OWNED)
_FROM_NOT_OWNED = refuse(R.FROM_NOT_OWNED)
_UNREADABLE = refuse(R.LOCAL_ERROR)


class SenderOwnership:
    """mail: a logged-in user sends as its own addresses (module contract)."""

    def mail(
        self, session: SessionFacts, sender: Address | None, params: MailParams
    ) -> Verdict | None:
        if sender is None or session.user is None:
            return None
        if f"{sender.local.lower()}@{sender.domain}" in session.owned:
            return None
        log.warning("[%s]: user %s may not send as <%s>", session.client_ip, session.user, sender)
        return _SENDER_NOT_OWNED


class FromHeaderCheck:
    """end_of_data: a logged-in user's From: is its own (module contract)."""

    def end_of_data(self, session: SessionFacts, message: Message) -> Verdict | None:
        if session.user is None:
            return None
        try:
            head = message.header_section()
        except OSError as exc:
            log.error("cannot read back spool %s: %s", message.queue_id, exc)
            return _UNREADABLE
        if check_from_header(head, session.owned) is None:
            return None
        log.warning(
            "[%s]: user %s may not send with From: %s",
            session.client_ip,
            session.user,
            ", ".join(from_addresses(head)),
        )
        return _FROM_NOT_OWNED
