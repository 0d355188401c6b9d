"""The Sender Rewriting Scheme (SRS): the envelope sender of forwarded mail.

When we forward a message of alice@origin.example to another domain, the
next hop checks SPF for origin.example against *our* address and fails. So
the forwarded copy gets a sender in our own SRS domain that still names the
original one, and a bounce sent to it is turned back into the original
address. The format is the one of libsrs2 and postsrsd (the scheme of
Shevek's "Sender Rewriting Scheme" paper), so addresses made by them and by
pigeon are read alike:

    SRS0=HHHH=TT=origin.example=alice@srs.our.example
    SRS1=HHHH=forwarder.example==HHHH=TT=origin.example=alice@srs.our.example

Contract:
  * `SrsCodec(secrets, domain, max_age_days, hash_length)`: the first secret
    makes hashes, every secret is accepted when checking them (a rotation:
    put the new secret first, keep the old one until `max_age_days` passed).
  * `forward(sender, now)` is the sender of a forwarded copy:
      - "local@domain" -> SRS0: HHHH = the first `hash_length` characters of
        base64(HMAC-SHA1(secret, lower(TT + domain + local))), TT = the day
        number (Unix time / 86400) modulo 1024 in two base32 characters
        (RFC 4648 §6 alphabet);
      - an SRS0 address of another forwarder ("SRS0=HHHH=TT=d=l@fwd") ->
        SRS1=HHHH=fwd==HHHH=TT=d=l@ours, hash over lower(fwd + "=HHHH=TT=d=l"):
        the bounce goes back to that forwarder, which checks its own hash;
      - an SRS1 address of another forwarder: its first forwarder and inner
        part are kept, with our hash and our domain (the chain never grows).
    Who is rewritten at all is the caller's choice (`qmgr.dispatch`).
  * `reverse(address, now)` is the address a bounce to one of our SRS
    addresses goes to: SRS0 -> "local@domain" after checking the hash and
    that TT is at most `max_age_days` old (a TT "in the future" counts as
    old, as in libsrs2); SRS1 -> the first forwarder's SRS0 address, hash
    checked (the first forwarder checks the age). `now=None` skips the age
    check (the queue manager, delivering mail accepted while it was fresh).
    Raises `SrsError` with `reason` "malformed", "hash" or "expired".
  * Case: hashes and timestamps compare case-insensitively and the hash is
    made over the lowercased text, as libsrs2 does, because MTAs on the
    way may change the case of a local part. The separator after "SRS0" /
    "SRS1" may be "=", "+" or "-" when reading; we write "=".
  * Pure: no I/O, no clock (`now` is an argument). HMAC and SHA-1 come from
    the standard library (`hmac`): nothing here is cryptography of our own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

__all__ = ["SrsCodec", "SrsError", "is_srs_local"]

_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # RFC 4648 §6
_DAY = 86400
_SLOTS = 1024  # two base32 characters of days: the timestamp wraps after 2.8 years
_SEPARATORS = "=+-"


class SrsError(ValueError):
    """An address that is not one of our valid SRS addresses; `reason` says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # "malformed" | "hash" | "expired"


def is_srs_local(local: str) -> bool:
    """True for a local part of the SRS form ("SRS0=", "srs1+", ...)."""
    return (
        len(local) > 5
        and local[:3].upper() == "SRS"
        and local[3] in "01"
        and (local[4] in _SEPARATORS)
    )


def _timestamp(now: float) -> str:
    days = int(now // _DAY) % _SLOTS
    return _BASE32[days >> 5] + _BASE32[days & 31]


def _days(stamp: str) -> int | None:
    if len(stamp) != 2:
        return None
    hi, lo = _BASE32.find(stamp[0].upper()), _BASE32.find(stamp[1].upper())
    return None if hi < 0 or lo < 0 else hi << 5 | lo


class SrsCodec:
    """Makes and reads our SRS addresses (see the module contract)."""

    def __init__(
        self,
        secrets: Sequence[bytes],
        domain: str,
        *,
        max_age_days: int = 21,
        hash_length: int = 4,
    ) -> None:
        if not secrets or not all(secrets):
            raise ValueError("SRS needs at least one non-empty secret")
        self._secrets = tuple(secrets)
        self.domain = domain.lower()
        self.max_age_days = max_age_days
        self.hash_length = hash_length

    # --- hashes ------------------------------------------------------------------

    def _hash(self, secret: bytes, *parts: str) -> str:
        mac = hmac.new(secret, "".join(parts).lower().encode("utf-8"), hashlib.sha1)
        return base64.b64encode(mac.digest()).decode("ascii")[: self.hash_length]

    def _check_hash(self, given: str, *parts: str) -> None:
        given = given.lower()
        for secret in self._secrets:
            if hmac.compare_digest(self._hash(secret, *parts).lower(), given):
                return
        raise SrsError("hash", "SRS address has a bad hash")

    # --- forward -------------------------------------------------------------------

    def forward(self, sender: str, now: float) -> str:
        """The SRS sender for a forwarded copy of mail from `sender` (module contract)."""
        local, at, domain = sender.rpartition("@")
        if not at or not local or not domain:
            raise SrsError("malformed", f"cannot rewrite sender {sender!r}: no domain")
        secret = self._secrets[0]
        kind = local[:4].upper() if is_srs_local(local) else ""
        if kind == "SRS0":
            # Shevek's "SRS1": the bounce goes to the forwarder that made the SRS0.
            inner = local[4:]  # "=HHHH=TT=d=l", its separator kept
            return f"SRS1={self._hash(secret, domain, inner)}={domain}={inner}@{self.domain}"
        if kind == "SRS1":
            parts = local[5:].split("=", 2)  # HHHH, first forwarder, "=HHHH=TT=d=l"
            if len(parts) == 3 and parts[1]:
                first, inner = parts[1], parts[2]
                return f"SRS1={self._hash(secret, first, inner)}={first}={inner}@{self.domain}"
        stamp = _timestamp(now)
        return f"SRS0={self._hash(secret, stamp, domain, local)}={stamp}={domain}={local}@{self.domain}"

    # --- reverse -------------------------------------------------------------------

    def reverse(self, address: str, now: float | None) -> str:
        """The address a bounce to our SRS `address` goes to (module contract)."""
        local, at, domain = address.rpartition("@")
        if not at or domain.lower() != self.domain or not is_srs_local(local):
            raise SrsError("malformed", "not an SRS address of ours")
        kind, rest = local[:4].upper(), local[5:]
        if kind == "SRS1":
            parts = rest.split("=", 2)
            if len(parts) != 3 or not parts[1] or not parts[2]:
                raise SrsError("malformed", "malformed SRS1 address")
            given, first, inner = parts
            self._check_hash(given, first, inner)
            return f"SRS0{inner}@{first}"
        parts = rest.split("=", 3)
        if len(parts) != 4 or not parts[2] or not parts[3]:
            raise SrsError("malformed", "malformed SRS0 address")
        given, stamp, orig_domain, orig_local = parts
        then = _days(stamp)
        if then is None:
            raise SrsError("malformed", "malformed SRS0 timestamp")
        self._check_hash(given, stamp, orig_domain, orig_local)
        if now is not None:
            today = int(now // _DAY) % _SLOTS
            age = (today - then) % _SLOTS
            if age > self.max_age_days:
                raise SrsError(
                    "expired", f"SRS address expired (older than {self.max_age_days} days)"
                )
        return f"{orig_local}@{orig_domain}"
