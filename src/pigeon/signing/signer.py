"""DKIM signatures for outbound mail, made with dkimpy.

Contract:
  * `DkimSigner(keys, headers)` signs for the domains of `keys`
    (`pigeon.signing.keys.load_keys`: domain -> KeyPair).
  * `signatures(message)` returns the DKIM-Signature fields (each ending in
    CRLF) to put on top of `message` (the whole message, CRLF line ends, as
    it will be stored), or [] when it is not ours to sign: the signing
    domain is the domain of the RFC5322.From address (RFC 7489 §3.1:
    aligned for DMARC), the message must have exactly one From field with
    exactly one address (RFC 5322 §3.6.2), and that domain must have keys;
    a subdomain does not use its parent's keys.
  * Two signatures, one per algorithm, made together (RFC 8463 §4):
    rsa-sha256, then ed25519-sha256 (the order does not matter to a
    verifier: each stands alone; verifiers that do not know ed25519 ignore
    its signature, RFC 6376 §6.1), returned in the order to prepend them.
  * Canonicalisation relaxed/relaxed (RFC 6376 §3.4.2, §3.4.4: survives the
    refolding and white-space changes of relays). The signed header list
    (h=) is each name of `headers` as many times as the message has it,
    plus From once more than it occurs (RFC 6376 §8.15: "oversigning", so
    no From can be added without breaking the signature). No l= (RFC 6376
    §8.2). The message is not changed.
  * `signatures(message, parents=True)` (our delivery reports, from
    MAILER-DAEMON@<hostname>): when the From domain has no keys, the keys of
    its nearest parent domain that has some sign instead (mail.example.org
    without keys: example.org's), never a name of one label; DMARC's relaxed
    alignment (RFC 7489 §3.1.1) passes when that parent is the From
    domain's organisational domain.
  * Pure apart from dkimpy's reading of the clock for t=; CPU work (a thread
    is the caller's choice). A key dkimpy refuses raises `SigningError`.
  * `signer_for(config)`: the signer of `[dkim]` (its keys read now), or
    None when `sign = false` or no domain has keys; ConfigError naming the
    key and the path of a key that cannot be read.
"""

from __future__ import annotations

import email.utils
from collections import Counter
from collections.abc import Mapping, Sequence

import dkim

from pigeon.config.schema import Config
from pigeon.signing import dkimrsa
from pigeon.signing.keys import KeyPair, load_keys

__all__ = ["DkimSigner", "SigningError", "from_domain", "signed_header_list", "signer_for"]

_CANON = (b"relaxed", b"relaxed")

# dkimpy's RSA signing by OpenSSL: 9 ms of pure Python per signature otherwise (signing/dkimrsa.py).
dkimrsa.install()


class SigningError(Exception):
    """dkimpy refused to sign (a damaged key): the message goes unsigned."""


def _fields(header_section: bytes) -> list[tuple[str, str]]:
    """(lowercased name, unfolded value) of each header field."""
    out: list[tuple[str, str]] = []
    for line in header_section.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and out:
            name, value = out[-1]
            out[-1] = (name, value + line.decode("utf-8", "replace"))
        elif b":" in line:
            name_b, _, value_b = line.partition(b":")
            out.append(
                (
                    name_b.strip().lower().decode("ascii", "replace"),
                    value_b.decode("utf-8", "replace"),
                )
            )
    return out


def from_domain(fields: Sequence[tuple[str, str]]) -> str | None:
    """The domain of the one RFC5322.From address, lowercased; None unless exactly one."""
    values = [value for name, value in fields if name == "from"]
    if len(values) != 1:
        return None
    addresses = [a for _, a in email.utils.getaddresses(values) if a]
    if len(addresses) != 1 or "@" not in addresses[0]:
        return None
    return addresses[0].rpartition("@")[2].strip().rstrip(".").lower() or None


def signed_header_list(fields: Sequence[tuple[str, str]], headers: Sequence[str]) -> list[bytes]:
    """h= (module contract): each name as often as it occurs, From once more."""
    counts = Counter(name for name, _ in fields)
    names: list[bytes] = []
    for name in headers:
        extra = 1 if name == "from" else 0
        names += [name.encode("ascii")] * (counts[name] + extra)
    return names


class DkimSigner:
    """Signs for the domains it has keys for (module contract)."""

    def __init__(self, keys: Mapping[str, KeyPair], headers: Sequence[str]) -> None:
        self.keys = dict(keys)
        self.headers = tuple(headers)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def signatures(self, message: bytes, *, parents: bool = False) -> list[bytes]:
        end = message.find(b"\r\n\r\n")
        section = message if end == -1 else message[: end + 2]
        fields = _fields(section)
        domain = from_domain(fields)
        pair = self.keys.get(domain) if domain is not None else None
        if pair is None and parents and domain is not None:
            pair = self._parent_keys(domain)
        if pair is None:
            return []
        include = signed_header_list(fields, self.headers)
        made = []
        for algorithm, selector, key in (
            (b"rsa-sha256", pair.rsa_selector, pair.rsa_pem),
            (b"ed25519-sha256", pair.ed25519_selector, pair.ed25519_seed),
        ):
            try:
                made.append(
                    dkim.sign(
                        message,
                        selector.encode("ascii"),
                        pair.domain.encode("ascii"),
                        key,
                        canonicalize=_CANON,
                        signature_algorithm=algorithm,
                        include_headers=include,
                        linesep=b"\r\n",
                    )
                )
            except dkim.DKIMException as exc:
                raise SigningError(f"{pair.domain} selector {selector}: {exc}") from exc
        return made

    def _parent_keys(self, domain: str) -> KeyPair | None:
        """The keys of the nearest parent of `domain` that has some, of at
        least two labels (module contract, `parents`)."""
        labels = domain.split(".")
        for start in range(1, len(labels) - 1):
            pair = self.keys.get(".".join(labels[start:]))
            if pair is not None:
                return pair
        return None


def signer_for(config: Config) -> DkimSigner | None:
    """The signer of `config` (module contract)."""
    if not config.dkim.sign:
        return None
    keys = load_keys(config.dkim_key_dir, config.dkim)
    return DkimSigner(keys, config.dkim.headers) if keys else None
