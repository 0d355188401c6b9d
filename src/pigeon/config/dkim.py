"""The schema of outbound DKIM signing: [dkim] (pigeon.signing).

Contract: like `pigeon.config.schema` (which holds `DkimConfig` as the
`Config.dkim` field): frozen dataclasses, one documented field each, the
TOML key, default and unit in its comment; docs/config.md agrees. The
checks of the values are `pigeon.config._dkim`; the keys themselves are
read at start-up by `pigeon.signing.keys` (a missing or unreadable key
refuses the start, naming its path).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: The header fields signed by default: RFC 6376 §5.4.1's list of those that
#: SHOULD be signed, less the Resent-* and List-* fields (a list manager adds
#: or changes those). From is always signed, and once more than it occurs
#: (RFC 6376 §8.15: no second From can be added without breaking the signature).
DEFAULT_HEADERS: tuple[str, ...] = (
    "from",
    "reply-to",
    "subject",
    "date",
    "to",
    "cc",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "sender",
)


@dataclass(frozen=True, slots=True)
class DkimDomain:
    """[dkim.domains."NAME"]: the signing settings of one sending domain."""

    selector: str = ""  # selector: the key pair to sign with ("" = the newest in key_dir)


@dataclass(frozen=True, slots=True)
class DkimConfig:
    """[dkim]: outbound DKIM signing (RFC 6376, ed25519 per RFC 8463)."""

    sign: bool = (
        True  # [dkim] sign: sign mail from our users for every domain with keys; false = never
    )
    key_dir: Path | None = (
        None  # [dkim] key_dir: where `pigeon dkim keygen` writes keys; None = data_dir/dkim
    )
    headers: tuple[str, ...] = (
        DEFAULT_HEADERS  # [dkim] headers: header fields signed (lowercased); From always, oversigned
    )
    #: [dkim.domains."NAME"]: per-domain settings (selector); a domain with
    #: keys but no table signs with its newest selector.
    domains: dict[str, DkimDomain] = field(default_factory=dict)
