"""DKIM and ARC key records, fetched through our resolver before dkimpy runs.

Contract:
  * dkimpy looks keys up through a `dnsfunc(name, timeout=...)` it is given;
    left to itself it would do blocking DNS of its own on the event loop.
    So the names a message's signatures need are found first
    (`key_names`: s= and d= of every DKIM-Signature, ARC-Message-Signature
    and ARC-Seal, RFC 6376 §3.6.2.1 "<selector>._domainkey.<domain>"), asked
    all at once through the `pigeon.dns.api.Resolver` (`fetch_keys`: our
    time-outs, our TTL cache; started at once, policy/mailauth/eager.py, so
    answers from the cache cost no task), and dkimpy gets `KeyAnswers.dnsfunc`, which
    only answers from what was fetched and never touches the network.
  * A fetched name is its TXT text (the first record: RFC 6376 §3.6.2.2
    leaves several undefined), "" when the name has no key (NXDOMAIN, no
    TXT: PERMFAIL "no key for signature", RFC 6376 §6.1.2), or the
    `TemporaryFailure` (the verdict is then temperror, never a pass).
  * At most `limit` distinct names are fetched (the first ones in the
    header section's order); the rest answer "" (no key), so a message
    cannot make us ask DNS without bound.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field

from pigeon.dns.api import DnsError, Resolver, TemporaryFailure
from pigeon.policy.mailauth import eager
from pigeon.policy.mailauth.dkimfast import tag_list

__all__ = ["KeyAnswers", "SIGNATURE_FIELDS", "fetch_keys", "key_name", "key_names", "tags"]

#: The header fields whose s= and d= name a key (RFC 6376 §3.5, RFC 8617 §4.1).
SIGNATURE_FIELDS = ("dkim-signature", "arc-message-signature", "arc-seal")


@functools.lru_cache(maxsize=1024)
def tags(value: str) -> dict[str, str]:
    """A tag=value list (RFC 6376 §3.2) as text; {} when it does not parse.

    Cached by the value (the same signature is read for its key name, its
    verification and its result): the dict returned is shared, callers
    only read it."""
    parsed = tag_list(value.encode("utf-8", "replace"))
    if parsed is None:
        return {}
    return {k.decode("ascii", "replace"): v.decode("utf-8", "replace") for k, v in parsed.items()}


def key_name(selector: str, domain: str) -> str:
    """RFC 6376 §3.6.2.1: where the key of selector s= and domain d= lives."""
    return f"{selector}._domainkey.{domain}".lower().rstrip(".")


def key_names(headers: Iterable[tuple[str, str]], fields: Iterable[str]) -> list[str]:
    """The key names the `fields` (lowercase names) of `headers` need, in order, once each."""
    wanted = set(fields)
    names: dict[str, None] = {}
    for name, value in headers:
        if name.lower() in wanted:
            found = tags(value)
            if found.get("s") and found.get("d"):
                names[key_name(found["s"], found["d"])] = None
    return list(names)


@dataclass(slots=True)
class KeyAnswers:
    """What `fetch_keys` found, by key name (module contract)."""

    found: dict[str, str | TemporaryFailure] = field(default_factory=dict)

    def temporary(self, name: str) -> TemporaryFailure | None:
        answer = self.found.get(name)
        return answer if isinstance(answer, TemporaryFailure) else None

    def record(self, name: str) -> str:
        answer = self.found.get(name, "")
        return answer if isinstance(answer, str) else ""

    def dnsfunc(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        """dkimpy's DNS hook: the fetched record, None for no key; no network."""
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        record = self.record(text.lower().rstrip("."))
        return record.encode("utf-8") if record else None


async def fetch_keys(resolver: Resolver, names: list[str], limit: int) -> KeyAnswers:
    """Ask for the first `limit` of `names` at once (module contract)."""
    answers = KeyAnswers({name: "" for name in names[limit:]})

    async def one(name: str) -> None:
        try:
            records = await resolver.txt(name)
        except TemporaryFailure as exc:
            answers.found[name] = exc
            return
        except DnsError:
            answers.found[name] = ""
            return
        answers.found[name] = records[0] if records else ""

    await eager.gather(*(one(name) for name in names[:limit]))
    return answers
