"""ARC sealing (RFC 8617) of the copies pigeon forwards, with dkimpy.

    sealer = ArcSealer.from_config(config)          # None when [arc] is off
    fields = sealer.seal(message, now=int(time.time()), verify_chain=lookup)
    forwarded = fields + message                    # the ARC set goes on top

Contract:
  * `seal(message, now, verify_chain)` returns the three header fields of
    the next ARC set (ARC-Seal, ARC-Message-Signature,
    ARC-Authentication-Results, RFC 8617 §4.1), CRLF-ended, to be put on
    top of `message` (CRLF line ends, as queued). dkimpy's `arc_sign`
    makes them with the key of `[arc] key_file`, d=`[arc] domain`,
    s=`[arc] selector`, rsa-sha256, relaxed/relaxed, t=`now`.
  * ARC-Authentication-Results (RFC 8617 §4.1.1) copies the results of the
    topmost Authentication-Results field whose authserv-id is ours
    (`authserv_id(config)`, RFC 8601 §2.2: the inbound checks put it there,
    policy/mailauth/). A message without one (no inbound check ran) is
    sealed all the same with the one result we know: the chain's.
  * cv= (RFC 8617 §4.1.3, §5.1): "none" when the message carries no ARC
    set yet (instance 1); otherwise the arc= result of our
    Authentication-Results when it has one (pass or fail), else the chain
    verified here with dkimpy's `arc_verify`, its keys looked up through
    `verify_chain` (a TXT look-up of ours; a look-up that fails makes the
    chain fail, so a seal never vouches for what it could not check).
    With cv=fail the seal covers only our own set (dkimpy, RFC 8617 §5.1.2).
  * The Authentication-Results fields themselves are never signed (dkimpy
    leaves them out of the AMS), so the fields handed to
    dkimpy are the message's with the Authentication-Results fields
    replaced by the one the AAR copies; what is sent is the message as it
    was plus the new set.
  * Our results are given to dkimpy as one Authentication-Results field;
    when that field does not parse (authres, which dkimpy reads it with),
    the AAR carries the arc= result alone rather than no seal at all.
  * Fails with `ArcError` (a message dkimpy cannot sign: no From:, more
    than 50 instances, a malformed header): the caller sends the copy
    unsealed and logs why.
  * Pure but for dkimpy's reading of the key at construction and the
    look-ups `verify_chain` makes; the whole message is in memory while it
    is sealed (at most `limits.message_size`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import authres
import authres.core
import dkim

from pigeon.config.schema import Config

__all__ = ["ArcError", "ArcSealer", "TxtLookup", "authserv_id"]

log = logging.getLogger("pigeon.forwarding.arc")

#: name -> the TXT record's text (strings joined), None when there is none.
TxtLookup = Callable[[str], "str | None"]

_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")
_ARC_RESULT = re.compile(r"^arc\s*=\s*([a-z]+)", re.I)


class ArcError(Exception):
    """The message cannot be sealed; the copy goes unsealed (module contract)."""


def authserv_id(config: Config) -> str:
    """Our authserv-id: `[mail_auth] authserv_id` of the inbound checks, else `hostname`."""
    return config.mail_auth.authserv_id or config.hostname


def _fields(header: bytes) -> list[tuple[bytes, bytes]]:
    """The header section as (name, whole field with its folding and CRLF) pairs."""
    out: list[tuple[bytes, bytes]] = []
    for line in header.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and out:
            name, text = out[-1]
            out[-1] = (name, text + line + b"\r\n")
            continue
        found = _FIELD_NAME.match(line)
        out.append((found.group(1).lower() if found else b"", line + b"\r\n"))
    return out


def _split_results(payload: str) -> list[str]:
    """RFC 8601 resinfo items of a field value after its authserv-id: split at
    the semicolons outside comments and quoted strings."""
    items, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(payload):
        if ch == '"' and depth == 0:
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")" and depth:
            depth -= 1
        elif ch == ";" and not quoted and depth == 0:
            items.append(payload[start:i])
            start = i + 1
    items.append(payload[start:])
    return [" ".join(item.split()) for item in items if item.strip()]


def _value(field: bytes) -> str:
    return field.split(b":", 1)[1].decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class _Ours:
    results: list[str]  # our resinfo items, "none" left out
    arc: str  # the arc= result among them, "" when none


def _our_results(fields: list[tuple[bytes, bytes]], srv_id: str) -> _Ours | None:
    """The topmost Authentication-Results field with our authserv-id (module contract)."""
    for name, field in fields:
        if name != b"authentication-results":
            continue
        items = _split_results(_value(field))
        if not items or items[0].split()[0].lower() != srv_id.lower():
            continue
        results = [r for r in items[1:] if r.lower() != "none"]
        arc = next((m.group(1).lower() for r in results if (m := _ARC_RESULT.match(r))), "")
        return _Ours(results, arc)
    return None


def _ar_field(srv_id: str, results: list[str]) -> str | None:
    """An Authentication-Results field of `results`, or None when it does not
    parse (dkimpy would drop it, and seal nothing: module contract)."""
    field = f"Authentication-Results: {srv_id};\r\n " + ";\r\n ".join(results) + "\r\n"
    try:
        authres.AuthenticationResultsHeader.parse(" ".join(field.split()))
    except authres.core.AuthResError:
        return None
    return field


class ArcSealer:
    """Seals forwarded copies (module contract)."""

    def __init__(self, domain: str, selector: str, key_pem: bytes, srv_id: str) -> None:
        self.domain = domain
        self.selector = selector
        self.srv_id = srv_id
        self._key = key_pem

    @classmethod
    def from_config(cls, config: Config) -> ArcSealer | None:
        """The sealer of `[arc]`, or None when it is off (the loader checked the key)."""
        arc = config.arc
        if not arc.enabled or arc.key_file is None:
            return None
        return cls(
            arc.sealing_domain(config.hostname),
            arc.selector,
            arc.key_file.read_bytes(),
            authserv_id(config),
        )

    def seal(self, message: bytes, *, now: int, verify_chain: TxtLookup) -> bytes:
        """The next ARC set for `message`, to put on top of it (module contract)."""
        header, _, body = message.partition(b"\r\n\r\n")
        fields = _fields(header)
        ours = _our_results(fields, self.srv_id)
        results = list(ours.results) if ours is not None else []
        results = [r for r in results if not _ARC_RESULT.match(r)]
        cv = self._cv(message, fields, ours, verify_chain)
        ar = _ar_field(self.srv_id, [*results, f"arc={cv}"])
        if ar is None:
            log.info("our Authentication-Results do not parse: the seal carries arc=%s only", cv)
            ar = _ar_field(self.srv_id, [f"arc={cv}"]) or ""
        kept = b"".join(f for name, f in fields if name != b"authentication-results")
        signed = ar.encode("utf-8") + kept + b"\r\n" + body  # each field ends with CRLF
        try:
            made = dkim.arc_sign(
                signed,
                self.selector.encode("ascii"),
                self.domain.encode("ascii"),
                self._key,
                self.srv_id.encode("utf-8"),
                timestamp=now,
                logger=log,
            )
        except (dkim.DKIMException, authres.core.AuthResError, ValueError, UnicodeError) as exc:
            raise ArcError(str(exc) or type(exc).__name__) from exc
        if len(made) != 3:  # dkimpy ends the chain instead of sealing
            raise ArcError("dkimpy made no ARC set")
        return b"".join(f if f.endswith(b"\r\n") else f + b"\r\n" for f in made)

    def _cv(
        self,
        message: bytes,
        fields: list[tuple[bytes, bytes]],
        ours: _Ours | None,
        verify_chain: TxtLookup,
    ) -> str:
        """cv= of the new set (module contract)."""
        if not any(name == b"arc-seal" for name, _ in fields):
            return "none"  # RFC 8617 §5.1: no chain yet
        if ours is not None and ours.arc in ("pass", "fail"):
            return ours.arc

        def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
            text = name.decode("ascii") if isinstance(name, bytes) else name
            found = verify_chain(text.rstrip("."))
            return found.encode("utf-8") if found is not None else None

        cv, _sets, reason = dkim.arc_verify(message, dnsfunc=dnsfunc, logger=log)
        if cv != dkim.CV_Pass:
            log.info("ARC chain does not verify (%s): sealed with cv=fail", reason)
            return "fail"
        return "pass"
