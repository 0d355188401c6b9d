"""ESMTP parameters of MAIL and RCPT, parsed and validated.

Contract:
  * MAIL: SIZE (RFC 1870), BODY=7BIT|8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531),
    RET=FULL|HDRS and ENVID (RFC 3461 §4.3, §4.4), AUTH (RFC 4954 §5, kept
    as given; meaningful once AUTH exists).
  * RCPT: NOTIFY=NEVER|SUCCESS,FAILURE,DELAY and ORCPT=addr-type;xtext
    (RFC 3461 §4.1, §4.2).
  * xtext values (ENVID, ORCPT) are stored decoded.
  * Values are frozen and JSON-friendly via `to_dict()` / `from_dict()` so the
    queue can store them with the envelope.

TODO(H1): parse_mail_params / parse_rcpt_params are filled in by the
protocol-core work.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class MailParams:
    size: int | None = None
    body: Literal["7BIT", "8BITMIME"] | None = None
    smtputf8: bool = False
    ret: Literal["FULL", "HDRS"] | None = None
    envid: str | None = None
    auth: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MailParams":
        return cls(**d)


@dataclass(frozen=True, slots=True)
class RcptParams:
    # None: NOTIFY not given. Otherwise ("NEVER",) or a sorted subset of
    # ("DELAY", "FAILURE", "SUCCESS").
    notify: tuple[str, ...] | None = None
    # ORCPT as (addr-type, decoded address), e.g. ("rfc822", "Bob@Example.org").
    orcpt: tuple[str, str] | None = None

    def to_dict(self) -> dict:
        return {"notify": list(self.notify) if self.notify is not None else None,
                "orcpt": list(self.orcpt) if self.orcpt is not None else None}

    @classmethod
    def from_dict(cls, d: dict) -> "RcptParams":
        n, o = d.get("notify"), d.get("orcpt")
        return cls(tuple(n) if n is not None else None, tuple(o) if o is not None else None)
