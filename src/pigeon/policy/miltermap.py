"""What a milter is told and what its answers mean: macros, arguments, verdicts.

Contract:
  * `macros(command, facts, hostname, queue_id, wanted)` are the macros
    sent with `command` (pigeon.proto.milter), Postfix's defaults
    (docs/milter.md lists them): at connect `j`, `{daemon_name}` (the
    listener role: smtp, submission, submissions), `v`, `_`,
    `{client_addr}`, `{client_port}`, `{client_name}`, `{client_ptr}`; at
    helo `{tls_version}`, `{cipher}`, `{cipher_bits}`; at mail
    `{auth_authen}`, `{mail_addr}`, `{mail_host}`,
    `{mail_mailer}`; at rcpt `{rcpt_addr}`, `{rcpt_host}`,
    `{rcpt_mailer}`; at data, end of header and end of message `i` (the
    queue ID, known from the end of the data on). A macro with no value is
    not sent. When the milter asked for a list at that stage (its
    negotiation), exactly the names of that list that have a value.
  * `mail_args` / `rcpt_args` are the MAIL and RCPT arguments as the
    client gave them: the path in angle brackets, then its ESMTP parameters.
  * `refusal(answer, stage)` turns a milter's answer into a `Reply`:
    reject is 550 5.7.1, tempfail 451 4.7.1 (Postfix's words), a custom
    reply ("554 5.7.1 text", SMFIR_REPLYCODE) is used as given when it is a
    4xx or 5xx (an enhanced code is added when it has none: x.7.1);
    anything else returns None.
  * `changes(mods, facts, negotiated)` turns end-of-message modifications
    into `Verdict` fields (header edits, new body, recipients, sender,
    quarantine); the ESMTP arguments of an added recipient (NOTIFY, ORCPT)
    and of a changed sender (they replace the MAIL parameters) are read as
    a client's would be, every extension on. A modification the milter did not negotiate, or that is
    not well formed (a header field with a bare CR/LF, an address that
    does not parse) raises `MilterProtocolError`: the milter's default
    action applies.
"""

from __future__ import annotations

import re
from typing import Any

import pigeon
from pigeon.policy.api import HeaderEdit, NewSender, SessionFacts
from pigeon.proto import milter as M
from pigeon.proto import reply as R
from pigeon.proto.params import (
    MailParams,
    ParamError,
    RcptParams,
    parse_mail_params,
    parse_rcpt_params,
    xtext_encode,
)
from pigeon.vocab.address import Address, PathError, parse_path

__all__ = ["changes", "macros", "mail_args", "rcpt_args", "refusal"]

_REPLY = re.compile(r"([45])(\d\d)(?:[ -](?:([245]\.\d{1,3}\.\d{1,3}) )?(.*))?", re.S)


def macros(
    command: bytes,
    facts: SessionFacts,
    hostname: str,
    queue_id: str = "",
    wanted: tuple[str, ...] | None = None,
    address: Address | None = None,
) -> dict[str, str]:
    """The macros for `command` (module contract); `address` is the MAIL or
    RCPT path of that command (None at MAIL: the null path)."""
    values: dict[str, str] = {}
    if command == M.CONNECT:
        values = {
            "j": hostname,
            "daemon_name": facts.role,
            "v": f"pigeon {pigeon.__version__}",
            "_": f"unknown [{facts.client_ip}]",
            "client_addr": facts.client_ip,
            "client_port": str(facts.client_port),
            "client_name": "unknown",
            "client_ptr": "unknown",
        }
    elif command == M.HELO and facts.tls is not None:
        tls = facts.tls
        values = {"tls_version": tls.version, "cipher": tls.cipher, "cipher_bits": str(tls.bits)}
    elif command == M.MAIL:
        values = {"mail_mailer": "smtp", "mail_addr": str(address) if address else ""}
        if address is not None:
            values["mail_host"] = address.domain
        if facts.user is not None:
            values["auth_authen"] = facts.user
    elif command == M.RCPT and address is not None:
        values = {"rcpt_mailer": "smtp", "rcpt_addr": str(address), "rcpt_host": address.domain}
    elif command in (M.DATA, M.EOH, M.BODYEOB) and queue_id:
        values = {"i": queue_id}
    if wanted is not None:
        everything = {**_all(facts, hostname, queue_id), **values}
        return {k: everything[k] for k in wanted if everything.get(k)}
    return {k: v for k, v in values.items() if v}


def _all(facts: SessionFacts, hostname: str, queue_id: str) -> dict[str, str]:
    """Every macro of the session, for a milter that names its own lists."""
    out: dict[str, str] = {}
    for command in (M.CONNECT, M.HELO, M.MAIL, M.DATA):
        out.update(macros(command, facts, hostname, queue_id, address=facts.sender))
    return out


def mail_args(sender: Address | None, params: MailParams) -> list[str]:
    args = [f"<{sender}>" if sender is not None else "<>"]
    if params.size is not None:
        args.append(f"SIZE={params.size}")
    if params.body is not None:
        args.append(f"BODY={params.body}")
    if params.smtputf8:
        args.append("SMTPUTF8")
    if params.ret is not None:
        args.append(f"RET={params.ret}")
    if params.envid is not None:
        args.append(f"ENVID={xtext_encode(params.envid)}")
    return args


def rcpt_args(recipient: Address, params: RcptParams) -> list[str]:
    args = [f"<{recipient}>"]
    if params.notify is not None:
        args.append("NOTIFY=" + ",".join(params.notify))
    if params.orcpt is not None:
        args.append(f"ORCPT={params.orcpt[0]};{xtext_encode(params.orcpt[1])}")
    return args


TEMPFAIL = R.reply(451, "4.7.1", "Service unavailable - try again later")
REJECT = R.reply(550, "5.7.1", "Command rejected")


def refusal(answer: M.Answer) -> R.Reply | None:
    if answer.kind == "reject":
        return REJECT
    if answer.kind == "tempfail":
        return TEMPFAIL
    if answer.kind != "reply":
        return None
    lines = [line for line in answer.text.replace("\r\n", "\n").split("\n") if line]
    first = _REPLY.fullmatch(lines[0]) if lines else None
    if first is None:
        raise M.MilterProtocolError(f"not a 4xx/5xx reply: {answer.text[:80]!r}")
    code = int(first.group(1) + first.group(2))
    enhanced = first.group(3) or f"{first.group(1)}.7.1"
    texts = []
    for line in lines:
        match = _REPLY.fullmatch(line)
        text = match.group(4) if match and match.group(4) is not None else line
        if match and match.group(3) is None and text.startswith(enhanced + " "):
            text = text[len(enhanced) + 1 :]
        texts.append(text or "Command rejected")
    return R.reply(code, enhanced, *texts)


_NEEDS = {
    "add_header": M.ADDHDRS,
    "insert_header": M.ADDHDRS,
    "change_header": M.CHGHDRS,
    "replace_body": M.CHGBODY,
    "delete_rcpt": M.DELRCPT,
    "change_from": M.CHGFROM,
    "quarantine": M.QUARANTINE,
}


def _value(text: str) -> str:
    # Milters fold header values with a bare LF (Sendmail's line ends).
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def _address(text: str, *, allow_null: bool) -> Address | None:
    text = text.strip()
    if not text.startswith("<"):
        text = f"<{text}>"
    try:
        return parse_path(text, allow_null=allow_null, smtputf8=True)
    except PathError as exc:
        raise M.MilterProtocolError(f"bad address {text!r}: {exc}") from None


class _EveryExtension:
    """The parameter switches a milter's arguments are read with: every
    extension pigeon has (the milter speaks for the MTA, not the client)."""

    enable_dsn = enable_8bitmime = enable_smtputf8 = True
    auth_mechanisms = ("PLAIN",)


def _params(args: str, parse: Any) -> Any:
    """ESMTP arguments ("NOTIFY=NEVER ORCPT=rfc822;a@b") parsed as the
    client's would be; a bad one is a protocol error."""
    try:
        return parse(args.split(), cfg=_EveryExtension)
    except ParamError as exc:
        raise M.MilterProtocolError(f"bad ESMTP arguments {args!r}: {exc}") from None


def changes(
    mods: list[M.Modification], facts: SessionFacts, negotiated: M.Negotiated, max_body: int
) -> dict[str, Any]:
    """`Verdict` keyword arguments for the modifications (module contract)."""
    out: dict[str, Any] = {}
    edits: list[HeaderEdit] = []
    body: list[bytes] = []
    recipients = list(facts.recipients)
    changed = False
    for mod in mods:
        need = _NEEDS.get(mod.kind)
        if mod.kind == "add_rcpt":
            need = M.ADDRCPT_PAR if mod.value else M.ADDRCPT
            if not negotiated.may(need) and negotiated.may(M.ADDRCPT | M.ADDRCPT_PAR):
                need = M.ADDRCPT | M.ADDRCPT_PAR
        if need is None or not negotiated.actions & need:
            raise M.MilterProtocolError(f"{mod.kind} was not negotiated")
        try:
            if mod.kind == "add_header":
                edits.append(HeaderEdit("add", mod.name, _value(mod.value)))
            elif mod.kind == "insert_header":
                edits.append(HeaderEdit("insert", mod.name, _value(mod.value), mod.index))
            elif mod.kind == "change_header":
                edits.append(HeaderEdit("change", mod.name, _value(mod.value), mod.index))
        except ValueError as exc:
            raise M.MilterProtocolError(str(exc)) from None
        if mod.kind == "replace_body":
            body.append(mod.data)
            if sum(map(len, body)) > max_body:
                raise M.MilterProtocolError("the new body is over the message size limit")
        elif mod.kind == "add_rcpt":
            new = _address(mod.name, allow_null=False)
            assert new is not None
            recipients.append((new, _params(mod.value, parse_rcpt_params)))
            changed = True
        elif mod.kind == "delete_rcpt":
            gone = _address(mod.name, allow_null=False)
            key = str(gone).lower()
            kept = [r for r in recipients if str(r[0]).lower() != key]
            changed |= len(kept) != len(recipients)
            recipients = kept
        elif mod.kind == "change_from":
            params = _params(mod.value, parse_mail_params) if mod.value.strip() else None
            out["sender"] = NewSender(_address(mod.name, allow_null=True), params)
        elif mod.kind == "quarantine":
            out["quarantine"] = mod.value or "quarantined by a milter"
    if edits:
        out["header_edits"] = tuple(edits)
    if body:
        # Lines end in CRLF in the queue, whatever the milter used.
        out["body"] = b"".join(body).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if changed:
        out["recipients"] = tuple(recipients)
    return out
