"""The `Pigeon-Signature` header: who sent a webhook, and when (docs/webhooks.md).

    header = sign(secret, body, now)          # "t=1765075200,v1=5f2b...e9"
    verify(secret, header, body, now)          # True/False; a receiver's check

Contract:
  * The signed string is `"<t>.<body>"`: the Unix time in whole seconds as
    ASCII digits, a dot, and the raw body octets; the MAC is HMAC-SHA256
    (RFC 2104, FIPS 180-4) keyed by the webhook's secret (UTF-8), written
    as lowercase hex after `v1=`. Binding the time stops a recorded request
    from being replayed later: a receiver refuses a `t` too far from its
    clock (`verify`'s `tolerance`, 300 s by default).
  * `verify` parses leniently (unknown `k=v` parts are ignored, several
    `v1=` allowed: a secret being rotated) and compares in constant time
    (`hmac.compare_digest`). Pure: time is an argument.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["SIGNATURE_HEADER", "TOLERANCE", "mac", "sign", "verify"]

SIGNATURE_HEADER = "Pigeon-Signature"
#: Seconds a receiver accepts between `t` and its clock, by default.
TOLERANCE = 300


def mac(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, now: float) -> str:
    """The header's value for `body` sent at `now` (module contract)."""
    t = int(now)
    return f"t={t},v1={mac(secret, t, body)}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance: float = TOLERANCE) -> bool:
    """True when `header` signs `body` with `secret` at a time within `tolerance` of `now`."""
    t: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            t = int(value)
        elif name == "v1":
            macs.append(value)
    if t is None or not macs or abs(now - t) > tolerance:
        return False
    expected = mac(secret, t, body)
    return any(hmac.compare_digest(expected, m) for m in macs)
