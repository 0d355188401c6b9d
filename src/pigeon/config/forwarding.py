"""The schema of forwarding: [srs] (Sender Rewriting Scheme) and [arc] (ARC sealing).

Contract: like `pigeon.config.schema` (which holds these as `Config`
fields): frozen dataclasses, one documented field each, the TOML key,
default and unit in its comment; docs/config.md agrees. The value checks
are `pigeon.config._forwarding`; the code that uses them is
`pigeon.forwarding` (docs/mail-auth.md, "Forwarding: SRS and ARC").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class SrsConfig:
    """[srs]: rewrite the envelope sender of forwarded copies; reverse bounces to them."""

    enabled: bool = False  # [srs] enabled: rewrite forwarded senders and accept SRS bounces
    domain: str = ""  # [srs] domain: the domain of SRS addresses; "" = hostname
    #: [srs] secret: the HMAC secret (text); "" = secret_file, or one made
    #: at first start in <data_dir>/srs.secret (mode 0600).
    secret: str = ""
    #: [srs] secret_file: a file of secrets, one per line: the first signs,
    #: all are accepted (rotation); None = see `secret`.
    secret_file: Path | None = None
    max_age: int = 21  # [srs] max_age, days: an SRS0 address older than this is refused (1-1000)
    hash_length: int = 4  # [srs] hash_length, characters of the hash in an address (4-27)


@dataclass(frozen=True, slots=True)
class ArcConfig:
    """[arc]: seal forwarded copies with an ARC set (RFC 8617)."""

    enabled: bool = False  # [arc] enabled: seal every copy an alias forwards to a remote address
    #: [arc] domain: the sealing domain (d=); "" = hostname without its first
    #: label when it has three or more labels ("mx.example.org" ->
    #: "example.org"), else hostname.
    domain: str = ""
    selector: str = ""  # [arc] selector: s=, the key is at <selector>._domainkey.<domain>
    key_file: Path | None = None  # [arc] key_file: the RSA private key (PEM); required when enabled

    def sealing_domain(self, hostname: str) -> str:
        """`domain`, or its default from `hostname` (see the field)."""
        if self.domain:
            return self.domain
        labels = hostname.lower().rstrip(".").split(".")
        return ".".join(labels[1:]) if len(labels) >= 3 else ".".join(labels)
