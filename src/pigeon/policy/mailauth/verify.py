"""DKIM (RFC 6376, RFC 8463) and ARC (RFC 8617) verification: the lean verifier, then dkimpy.

Contract:
  * `verify_dkim(content, headers, keys, limits, now=)` verifies every
    DKIM-Signature of the message, top first, and returns one
    `DkimOutcome` per signature, with a result of RFC 8601 §2.7.1: pass,
    fail (the signature or body hash does not verify; i= outside d=; x=
    past), policy (past `max_signatures`: not verified; an RSA key over
    `max_key_bits`; an RSA key under `min_key_bits`, which RFC 8301 §3.2
    forbids to accept), neutral (the signature cannot be parsed),
    temperror (its key could not be fetched: DNS), permerror (no key, a
    revoked or bad key record, a key that does not fit the signature, h=
    without From, x= before t=, a malformed signature). `now` (default:
    the clock) judges x= and t=.
  * `read_signatures(content, headers)` reads each DKIM-Signature field
    once (d=, s=, a=, the start of b=, and the lean verifier's reading of
    it) and the message as the lean verifier splits it: the caller takes
    the key names from it (`Signatures.key_names()`) and passes it to
    `verify_dkim(..., signatures=)`, so nothing is read twice.
  * Which verifier: each signature goes first to
    policy/mailauth/dkimfast.py (rsa-sha256 and ed25519-sha256, c= simple
    or relaxed, l=, t=, x=, i=; keys k=rsa or k=ed25519 read by
    `cryptography`, cached by the record's text; the message split once
    for all signatures). What it does not handle (rsa-sha1, a key record
    or signature it cannot read with certainty, a message with a bare LF)
    falls back to dkimpy, whose answer is the one given before the lean
    verifier existed; dkimpy reads the message only when a signature
    needs it. tests/unit/policy/mailauth/test_dkimfast.py checks both give
    the same verdicts on many signed and altered messages.
  * `verify_arc(content, keys, minkey)` validates the ARC chain (dkimpy)
    and returns an `ArcOutcome`: "none" (no ARC sets), "pass", "fail"
    (RFC 8617 §5.2), or "temperror" when a key it needs could not be
    fetched; with the d= of the newest ARC-Seal (the last sealer, checked
    against `trusted_arc_sealers`) and the instance count.
  * Both are synchronous and CPU-bound (hashing and one signature check
    each); they never do DNS: keys come from `keys` (policy/mailauth/keys.py).
    The caller decides whether to run them in a thread.
  * dkimpy's pure-Python RSA check is replaced by OpenSSL's at import
    (signing/dkimrsa.py): same answers, a fraction of the time.
  * dkimpy raises for malformed input; every exception of dkimpy becomes a
    result here, never an exception to the caller.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import dkim

from pigeon.policy.mailauth import dkimfast
from pigeon.policy.mailauth.keys import KeyAnswers, key_name, tags
from pigeon.signing import dkimrsa

__all__ = [
    "ArcOutcome",
    "DkimLimits",
    "DkimOutcome",
    "SignatureField",
    "Signatures",
    "read_signatures",
    "verify_arc",
    "verify_dkim",
]

# dkimpy's RSA check by OpenSSL, its key parsing cached (signing/dkimrsa.py).
dkimrsa.install()

# dkimpy logs each failure at ERROR; that is our verdict's business, not the log's.
_QUIET = logging.getLogger("pigeon.policy.mailauth.dkimpy")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


@dataclass(frozen=True, slots=True)
class DkimLimits:
    max_signatures: int = 5
    min_key_bits: int = 1024
    max_key_bits: int = 8192


@dataclass(frozen=True, slots=True)
class DkimOutcome:
    """One signature's result (module contract)."""

    domain: str  # d=, lowercased ("" when unreadable)
    selector: str  # s=
    algorithm: str  # a=
    result: str
    reason: str = ""
    b: str = ""  # the first characters of b=, to tell signatures apart (RFC 6008)


@dataclass(frozen=True, slots=True)
class ArcOutcome:
    result: str  # none | pass | fail | temperror
    sealer: str = ""  # d= of the newest ARC-Seal
    instances: int = 0
    reason: str = ""


def _key_bits(record: str) -> tuple[str, int] | str:
    """(k=, bits) of a key record, or why it is unusable."""
    try:
        _, bits, ktag, _ = dkim.evaluate_pk(b"key", record.encode("utf-8"))
    except dkim.DKIMException as exc:
        return f"bad key record: {exc}"
    except Exception as exc:  # dkimpy lets some parse errors through (binascii, ValueError)
        return f"bad key record: {type(exc).__name__}"
    if ktag is None:
        return "key record not for email (s=)"
    return ktag.decode(), int(bits or 0)


@dataclass(slots=True)
class SignatureField:
    """One DKIM-Signature field, read once (`read_signatures`)."""

    domain: str  # d=, lowercased ("" when unreadable)
    selector: str  # s=
    algorithm: str  # a=
    b: str  # the first characters of b=
    fast: dkimfast.Signature | None  # None: the lean verifier leaves it to dkimpy


@dataclass(slots=True)
class Signatures:
    """A message's DKIM-Signature fields, top first, and the message as the
    lean verifier split it (None: it leaves the whole message to dkimpy)."""

    fields: list[SignatureField]
    parsed: dkimfast.ParsedMessage | None

    def key_names(self) -> list[str]:
        """The names of the keys these signatures need, once each, in order."""
        return list(
            {key_name(f.selector, f.domain): None for f in self.fields if f.domain and f.selector}
        )


def read_signatures(content: bytes, headers: Sequence[tuple[str, str]]) -> Signatures:
    """Every DKIM-Signature of the message read once: for the names of their
    keys (findings.py), their verification and their results."""
    values = [v for n, v in headers if n.lower() == "dkim-signature"]
    parsed = dkimfast.parse_message(content) if values else None
    if parsed is not None and len(parsed.signatures) != len(values):
        parsed = None  # we and the message reader disagree on its fields: dkimpy decides
    fields = []
    for index, value in enumerate(values):
        fast = None
        if parsed is not None:
            fast = dkimfast.read_signature(parsed.headers[parsed.signatures[index]][1])
        if fast is not None and fast.domain and fast.selector and fast.selector.isascii():
            domain, selector = fast.domain.decode(), fast.selector.decode()
            fields.append(
                SignatureField(domain, selector, f"{fast.algorithm}-sha256", fast.b_start, fast)
            )
            continue
        found = tags(value)
        b = "".join(found.get("b", "").split())[:8]
        fields.append(
            SignatureField(
                found.get("d", "").lower(), found.get("s", ""), found.get("a", ""), b, None
            )
        )
    return Signatures(fields, parsed)


def verify_dkim(
    content: bytes,
    headers: Sequence[tuple[str, str]],
    keys: KeyAnswers,
    limits: DkimLimits,
    *,
    now: float | None = None,
    signatures: Signatures | None = None,
) -> list[DkimOutcome]:
    """Every DKIM-Signature's result, top first (module contract)."""
    if signatures is None:
        signatures = read_signatures(content, headers)
    if not signatures.fields:
        return []
    now = time.time() if now is None else now
    parsed = signatures.parsed
    verifier: list[dkim.DKIM] = []  # dkimpy's reading of the message, made when needed
    out = []
    for index, field in enumerate(signatures.fields):
        domain, selector = field.domain, field.selector

        def outcome(result: str, reason: str = "") -> DkimOutcome:
            return DkimOutcome(domain, selector, field.algorithm, result, reason, field.b)  # noqa: B023

        if not domain or not selector:
            out.append(outcome("neutral", "signature does not parse"))
            continue
        if index >= limits.max_signatures:
            out.append(outcome("policy", f"over max_signatures ({limits.max_signatures})"))
            continue
        name = key_name(selector, domain)
        if keys.temporary(name) is not None:
            out.append(outcome("temperror", f"key {name}: {keys.temporary(name)}"))
            continue
        record = keys.record(name)
        if not record:
            out.append(outcome("permerror", f"no key for signature ({name})"))
            continue
        answer = None
        if parsed is not None and field.fast is not None:
            answer = _fast(parsed, index, field.fast, record, limits, now)
        if answer is None:
            if not verifier:
                verifier.append(dkim.DKIM(content, logger=_QUIET, minkey=limits.min_key_bits))
            answer = _with_dkimpy(verifier[0], index, record, keys, limits)
        out.append(outcome(*answer))
    return out


def _size_policy(kind: str, bits: int, limits: DkimLimits) -> tuple[str, str] | None:
    """policy for an RSA key outside [min_key_bits, max_key_bits] (RFC 8301 §3.2)."""
    if kind == "rsa" and bits > limits.max_key_bits:
        return "policy", f"RSA key of {bits} bits is over max_key_bits"
    if kind == "rsa" and bits < limits.min_key_bits:
        return "policy", f"RSA key of {bits} bits is under min_key_bits"
    return None


def _fast(
    parsed: dkimfast.ParsedMessage,
    index: int,
    sig: dkimfast.Signature,
    record: str,
    limits: DkimLimits,
    now: float,
) -> tuple[str, str] | None:
    """(result, reason) by policy/mailauth/dkimfast.py, or None: dkimpy decides."""
    key = dkimfast.parse_key(record)
    if key is None or isinstance(key, str):
        return ("permerror", key) if key else None
    refused = _size_policy(key.kind, key.bits, limits)
    if refused is not None:
        return refused
    return dkimfast.verify_signature(parsed, index, sig, key, now=now)


def _with_dkimpy(
    verifier: dkim.DKIM, index: int, record: str, keys: KeyAnswers, limits: DkimLimits
) -> tuple[str, str]:
    """(result, reason) of signature `index` by dkimpy, its key checked first."""
    key = _key_bits(record)
    if isinstance(key, str):
        return "permerror", key
    return _size_policy(*key, limits) or _verify_one(verifier, index, keys)


def _verify_one(verifier: dkim.DKIM, index: int, keys: KeyAnswers) -> tuple[str, str]:
    """(result, reason) of signature `index`, its key already checked."""
    try:
        ok = verifier.verify(idx=index, dnsfunc=keys.dnsfunc)
    except dkim.ValidationError as exc:  # body hash, expiry, fields: the signature fails
        return "fail", str(exc)
    except dkim.DKIMException as exc:
        return "permerror", str(exc)
    except Exception as exc:  # dkimpy lets some malformed input through as other errors
        return "permerror", f"malformed signature ({type(exc).__name__})"
    return ("pass", "") if ok else ("fail", "signature did not verify")


def arc_sets(headers: Sequence[tuple[str, str]]) -> tuple[int, str]:
    """(the highest i= of the ARC-Seals, the d= of that seal)."""
    best, sealer = 0, ""
    for name, value in headers:
        if name.lower() == "arc-seal":
            found = tags(value)
            try:
                instance = int(found.get("i", "0"))
            except ValueError:
                continue
            if instance > best:
                best, sealer = instance, found.get("d", "").lower()
    return best, sealer


def verify_arc(
    content: bytes, headers: Sequence[tuple[str, str]], keys: KeyAnswers, minkey: int
) -> ArcOutcome:
    """The chain's validation status (module contract)."""
    instances, sealer = arc_sets(headers)
    if not any(n.lower() in ("arc-seal", "arc-message-signature") for n, _ in headers):
        return ArcOutcome("none")
    for name, value in headers:
        if name.lower() in ("arc-seal", "arc-message-signature"):
            found = tags(value)
            failure = keys.temporary(key_name(found.get("s", ""), found.get("d", "")))
            if failure is not None:
                return ArcOutcome("temperror", sealer, instances, str(failure))
    try:
        cv, _, reason = dkim.arc_verify(content, logger=_QUIET, dnsfunc=keys.dnsfunc, minkey=minkey)
    except Exception as exc:  # malformed ARC header fields
        return ArcOutcome("fail", sealer, instances, f"malformed ARC set ({type(exc).__name__})")
    result = cv.decode() if isinstance(cv, bytes) else "fail"
    if result not in ("pass", "fail", "none"):
        result = "fail"
    return ArcOutcome(result, sealer, instances, str(reason))
