"""ESMTP parameters of MAIL and RCPT, parsed and validated.

Contract:
  * MAIL: SIZE (RFC 1870), BODY=7BIT|8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531),
    RET=FULL|HDRS and ENVID (RFC 3461 §4.3, §4.4), AUTH=<>|xtext (RFC 4954
    §5; only when AUTH mechanisms are configured; the session decides what
    value is kept, see proto/secure.py).
  * RCPT: NOTIFY=NEVER|SUCCESS,FAILURE,DELAY and ORCPT=addr-type;xtext
    (RFC 3461 §4.1, §4.2).
  * xtext values (ENVID, ORCPT) are stored decoded.
  * Values are frozen and JSON-friendly via `to_dict()` / `from_dict()` so the
    queue can store them with the envelope.
  * `parse_mail_params` / `parse_rcpt_params` raise only `ParamError`, which
    carries the catalogue reply to send:
      - unknown keyword, or one whose extension is switched off in the
        config -> 555 5.5.4 (RFC 5321 §4.1.1.11);
      - malformed value, duplicate keyword -> 501 5.5.4.
    Keywords are case-insensitive (RFC 5321 §2.4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pigeon.proto import reply as R

MAX_ENVID = 100  # RFC 3461 §4.4
MAX_ORCPT = 500  # RFC 3461 §4.2
_NOTIFY_ONES = ("DELAY", "FAILURE", "SUCCESS")

# esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")   (RFC 5321 §4.1.2)
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
# esmtp-value = 1*(%d33-60 / %d62-126), RFC 6531 §3.3 adds UTF8-non-ascii
_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e\u0080-\U0010ffff]+")
# xtext = *( xchar / hexchar ), xchar = %d33-42 / %d44-60 / %d62-126 (RFC 3461 §4)
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-Fa-f]{2})*")
_HEXCHAR = re.compile(r"\+([0-9A-Fa-f]{2})")
_ADDR_TYPE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+")  # atom


class ParamError(ValueError):
    """A MAIL/RCPT parameter was refused; `reply` is what to send."""

    def __init__(self, reply: R.Reply, detail: str = "") -> None:
        super().__init__(detail or str(reply))
        self.reply = reply


@dataclass(frozen=True, slots=True)
class MailParams:
    size: int | None = None
    body: Literal["7BIT", "8BITMIME"] | None = None
    smtputf8: bool = False
    ret: Literal["FULL", "HDRS"] | None = None
    envid: str | None = None
    auth: str | None = None

    def to_dict(self) -> dict[str, Any]:
        # dataclasses.asdict() gives the same dict (every field is a plain
        # value) at about 40 times the cost: it deep-copies each value, and
        # every queued message stores its MAIL parameters.
        return {
            "size": self.size,
            "body": self.body,
            "smtputf8": self.smtputf8,
            "ret": self.ret,
            "envid": self.envid,
            "auth": self.auth,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MailParams:
        return cls(**d)


@dataclass(frozen=True, slots=True)
class RcptParams:
    # None: NOTIFY not given. Otherwise ("NEVER",) or a sorted subset of
    # ("DELAY", "FAILURE", "SUCCESS").
    notify: tuple[str, ...] | None = None
    # ORCPT as (addr-type, decoded address), e.g. ("rfc822", "Bob@Example.org").
    orcpt: tuple[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "notify": list(self.notify) if self.notify is not None else None,
            "orcpt": list(self.orcpt) if self.orcpt is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RcptParams:
        n, o = d.get("notify"), d.get("orcpt")
        return cls(tuple(n) if n is not None else None, tuple(o) if o is not None else None)


def xtext_decode(text: str) -> str:
    """Decode RFC 3461 §4 xtext ("+HH" escapes); ParamError if malformed."""
    if not text.isascii() or not _XTEXT.fullmatch(text):
        raise ParamError(R.SYNTAX_ERROR, "bad xtext")
    if "+" not in text:
        return text
    raw = _HEXCHAR.sub(lambda m: chr(int(m.group(1), 16)), text)
    # "+HH" escapes encode octets; a UTF-8 sequence spelled as escapes is decoded.
    try:
        return raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return raw


def xtext_encode(text: str) -> str:
    """Encode text as RFC 3461 §4 xtext: octets outside "!".."~", "+" and "=" as +HH."""
    out = []
    for byte in text.encode("utf-8"):
        if 33 <= byte <= 126 and byte not in (0x2B, 0x3D):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


def _split(tokens: list[str]) -> dict[str, str | None]:
    """Tokens -> {KEYWORD: value-or-None}; 501 on bad syntax or duplicates."""
    seen: dict[str, str | None] = {}
    for token in tokens:
        key, eq, value = token.partition("=")
        if not _KEYWORD.fullmatch(key):
            raise ParamError(R.SYNTAX_ERROR, f"bad keyword {key!r}")
        if eq and not _VALUE.fullmatch(value):
            raise ParamError(R.SYNTAX_ERROR, f"bad value for {key}")
        key = key.upper()
        if key in seen:
            raise ParamError(R.SYNTAX_ERROR, f"duplicate {key}")
        seen[key] = value if eq else None
    return seen


def _need_value(key: str, value: str | None) -> str:
    if value is None:
        raise ParamError(R.SYNTAX_ERROR, f"{key} needs a value")
    return value


def parse_mail_params(tokens: list[str], *, cfg: Any) -> MailParams:
    """Parse MAIL FROM parameters. `cfg` is a SessionConfig (enable_* switches)."""
    fields: dict[str, Any] = {}
    for key, value in _split(tokens).items():
        if key == "SIZE":  # RFC 1870 §6: size-value = 1*20DIGIT
            v = _need_value(key, value)
            if not (v.isascii() and v.isdigit() and len(v) <= 20):
                raise ParamError(R.SYNTAX_ERROR, "bad SIZE")
            fields["size"] = int(v)
        elif key == "BODY" and cfg.enable_8bitmime:  # RFC 6152 §2
            v = _need_value(key, value).upper()
            if v not in ("7BIT", "8BITMIME"):
                raise ParamError(R.SYNTAX_ERROR, "bad BODY")
            fields["body"] = v
        elif key == "SMTPUTF8" and cfg.enable_smtputf8:  # RFC 6531 §3.4: no value
            if value is not None:
                raise ParamError(R.SYNTAX_ERROR, "SMTPUTF8 takes no value")
            fields["smtputf8"] = True
        elif key == "RET" and cfg.enable_dsn:  # RFC 3461 §4.3
            v = _need_value(key, value).upper()
            if v not in ("FULL", "HDRS"):
                raise ParamError(R.SYNTAX_ERROR, "bad RET")
            fields["ret"] = v
        elif key == "ENVID" and cfg.enable_dsn:  # RFC 3461 §4.4
            v = _need_value(key, value)
            if len(v) > MAX_ENVID:
                raise ParamError(R.SYNTAX_ERROR, "ENVID too long")
            fields["envid"] = xtext_decode(v)
        elif key == "AUTH" and getattr(cfg, "auth_mechanisms", None):  # RFC 4954 §5
            v = _need_value(key, value)
            if len(v) > MAX_ORCPT:
                raise ParamError(R.SYNTAX_ERROR, "AUTH too long")
            fields["auth"] = "<>" if v == "<>" else xtext_decode(v)
        else:
            raise ParamError(R.PARAM_UNKNOWN, f"unknown MAIL parameter {key}")
    return MailParams(**fields)


def parse_rcpt_params(tokens: list[str], *, cfg: Any) -> RcptParams:
    """Parse RCPT TO parameters. `cfg` is a SessionConfig (enable_* switches)."""
    notify: tuple[str, ...] | None = None
    orcpt: tuple[str, str] | None = None
    for key, value in _split(tokens).items():
        if key == "NOTIFY" and cfg.enable_dsn:  # RFC 3461 §4.1
            items = {i.upper() for i in _need_value(key, value).split(",")}
            if "NEVER" in items:
                if len(items) != 1:
                    raise ParamError(R.SYNTAX_ERROR, "NOTIFY=NEVER with others")
                notify = ("NEVER",)
            elif items <= set(_NOTIFY_ONES):
                notify = tuple(sorted(items))
            else:
                raise ParamError(R.SYNTAX_ERROR, "bad NOTIFY")
        elif key == "ORCPT" and cfg.enable_dsn:  # RFC 3461 §4.2
            addr_type, semi, xtext = _need_value(key, value).partition(";")
            if not semi or not _ADDR_TYPE.fullmatch(addr_type) or not xtext:
                raise ParamError(R.SYNTAX_ERROR, "bad ORCPT")
            if len(xtext) > MAX_ORCPT:
                raise ParamError(R.SYNTAX_ERROR, "ORCPT too long")
            orcpt = (addr_type.lower(), xtext_decode(xtext))
        else:
            raise ParamError(R.PARAM_UNKNOWN, f"unknown RCPT parameter {key}")
    return RcptParams(notify, orcpt)
