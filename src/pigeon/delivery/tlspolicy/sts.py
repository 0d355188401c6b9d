"""MTA-STS texts (RFC 8461): the `_mta-sts` TXT record, the policy file, MX patterns.

    policy_id(["v=STSv1; id=20240101T000000;"])   # "20240101T000000", or None
    policy = parse_policy(text)                     # StsPolicy; StsError when invalid
    policy.allows("mx1.example.org")                # §4.1 pattern match

Contract:
  * Pure: text in, values out; no I/O, no clock.
  * `policy_id(records)` (§3.1): records not starting with "v=STSv1" are
    ignored; exactly one must remain and be well-formed (fields "key=value"
    separated by ";", `v` first, `id` 1-32 letters and digits), else None:
    the domain has no available policy.
  * `parse_policy(text)` (§3.2): "key: value" lines ended by LF or CRLF;
    `version` must be STSv1, `mode` enforce|testing|none, `max_age` an
    integer 0..31557600, at least one `mx` unless the mode is none; unknown
    keys are ignored; anything else is `StsError` naming the problem.
  * `mx_matches(pattern, host)` (§4.1): case-insensitive, final dots
    ignored; "*.example.org" matches exactly one more leftmost label
    ("mx.example.org", not "example.org" nor "a.mx.example.org").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pigeon.config.tlspolicy import MAX_AGE_LIMIT

__all__ = ["StsError", "StsPolicy", "mx_matches", "parse_policy", "policy_id"]

_ID = re.compile(r"[A-Za-z0-9]{1,32}\Z")
_FIELD = re.compile(r"\s*([A-Za-z0-9_.-]+)=([\x21-\x3a\x3c-\x7e]{1,})\s*\Z")


class StsError(ValueError):
    """A policy file that is not a valid MTA-STS policy; the message says why."""


@dataclass(frozen=True, slots=True)
class StsPolicy:
    """One valid policy (§3.2)."""

    mode: str  # "enforce" | "testing" | "none"
    max_age: int  # seconds
    mx: tuple[str, ...]  # patterns, lowercase, no final dot
    text: str  # the policy file as fetched (for the cache and TLS reports)

    def allows(self, host: str) -> bool:
        """Whether MX `host` matches one of the policy's mx patterns (§4.1)."""
        return any(mx_matches(p, host) for p in self.mx)

    def lines(self) -> tuple[str, ...]:
        """The policy's non-empty lines (RFC 8460 §4.4 "policy-string")."""
        return tuple(line.strip() for line in self.text.splitlines() if line.strip())


def policy_id(records: list[str]) -> str | None:
    """The policy id of the `_mta-sts` TXT records, or None (module contract)."""
    ours = [r for r in records if r.startswith("v=STSv1")]
    if len(ours) != 1:
        return None
    fields: dict[str, str] = {}
    parts = [p for p in ours[0].split(";")]
    if parts and not parts[-1].strip():
        parts.pop()  # a trailing ";" is allowed (§3.1 sts-text-record)
    for i, part in enumerate(parts):
        m = _FIELD.fullmatch(part)
        if m is None:
            return None
        if i == 0 and (m.group(1) != "v" or m.group(2) != "STSv1"):
            return None
        fields.setdefault(m.group(1), m.group(2))
    sts_id = fields.get("id", "")
    return sts_id if _ID.match(sts_id) else None


def parse_policy(text: str) -> StsPolicy:
    """The policy in `text`, or StsError (module contract)."""
    values: dict[str, list[str]] = {}
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.removesuffix("\r")
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or not key or key != key.strip():
            raise StsError(f'line {number} is not "key: value"')
        values.setdefault(key, []).append(value.strip())
    if values.get("version") != ["STSv1"]:
        raise StsError('"version: STSv1" is missing')
    mode = values.get("mode", [""])
    if len(mode) != 1 or mode[0] not in ("enforce", "testing", "none"):
        raise StsError(f"mode must be enforce, testing or none, got {', '.join(mode) or 'none'}")
    max_age = values.get("max_age", [""])
    if len(max_age) != 1 or not max_age[0].isdigit() or len(max_age[0]) > 10:
        raise StsError(f"max_age must be one integer, got {', '.join(max_age)!r}")
    age = int(max_age[0])
    if age > MAX_AGE_LIMIT:
        raise StsError(f"max_age must be at most {MAX_AGE_LIMIT}, got {age}")
    mx = tuple(m.lower().rstrip(".") for m in values.get("mx", []))
    if not mx and mode[0] != "none":
        raise StsError("no mx: line")
    return StsPolicy(mode[0], age, mx, text)


def mx_matches(pattern: str, host: str) -> bool:
    """§4.1 (module contract)."""
    pattern = pattern.lower().rstrip(".")
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        first, dot, rest = host.partition(".")
        return bool(first) and bool(dot) and rest == pattern[2:]
    return host == pattern
