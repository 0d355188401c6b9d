"""Our own domains' MTA-STS policy (RFC 8461 §3): the file a web server serves, and its TXT record.

    text = policy_text(mode="testing", mx=("mx.example.org",), max_age=604800)
    txt = txt_record("example.org", text)    # '_mta-sts.example.org. IN TXT "v=STSv1; id=..."'

Contract:
  * `policy_text` writes the policy file of §3.2 (CRLF line ends, "version:
    STSv1" first, one "mx:" line per pattern, then max_age); it parses back
    to the same values (`tlspolicy.sts.parse_policy`).
  * `policy_id(text)` is derived from the policy's content (20 hex digits
    of its SHA-256): it changes exactly when the policy does, which is what
    §3.1 asks of the id ("senders ... refetch when the id changes").
  * pigeon does not serve the file itself (its only HTTP listener is the
    plain-HTTP metrics endpoint, and the policy must be served over HTTPS
    with a WebPKI certificate for mta-sts.DOMAIN, §3.3): `pigeon mta-sts
    policy DOMAIN` (pigeon.cli.mtasts) writes it for a web server.
"""

from __future__ import annotations

import hashlib

__all__ = ["policy_id", "policy_text", "txt_record"]


def policy_text(*, mode: str, mx: tuple[str, ...], max_age: int) -> str:
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), f"max_age: {max_age}"]
    return "".join(f"{line}\r\n" for line in lines)


def policy_id(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def txt_record(domain: str, text: str) -> str:
    return f'_mta-sts.{domain}. IN TXT "v=STSv1; id={policy_id(text)}"'
