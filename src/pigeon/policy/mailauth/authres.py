"""The Authentication-Results header field (RFC 8601): ours, and forged ones.

Contract:
  * `format_results(authserv_id, results)` is the value of our one
    Authentication-Results field: `authserv-id;` then one resinfo per
    line (folded with CRLF TAB, RFC 5322 §2.2.3), each
    `method=result (comment) ptype.property=value ...` (§2.2); "none"
    when no method ran (§2.2). Values that are neither RFC 2045 tokens nor
    plain addresses are quoted strings (§2.2 "pvalue"); comments lose parentheses and
    backslashes so they cannot end early.
  * `claims(value, authserv_id)` is True when an Authentication-Results
    field (its unfolded value) names `authserv_id` as its authserv-id,
    compared without case (§5: such fields from outside are forgeries and
    are removed). A field that does not parse claims nothing.
  * `removals(headers, authserv_id)` is the header edits that remove every
    such field of the received header section: HeaderEdit "change" to ""
    of the n-th Authentication-Results field, the last first, so the
    indexes of the others do not move.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import NamedTuple

from pigeon.policy.api import HeaderEdit

__all__ = ["Resinfo", "claims", "format_results", "removals"]

FIELD = "Authentication-Results"

# RFC 2045 §5.1 token: any ASCII but SPACE, CTLs and tspecials.
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
# §2.2 pvalue: an address (local-part "@" domain-name) may stand unquoted.
_ADDRESS = re.compile(
    r"[!#$%&'*+\-/=?^_`{|}~0-9A-Za-z]+(?:\.[!#$%&'*+\-/=?^_`{|}~0-9A-Za-z]+)*@[A-Za-z0-9.-]+"
)
_COMMENT_BREAKERS = re.compile(r"[()\\\r\n]")  # what could end a comment early
_CFWS_ID = re.compile(r"\s*(?:\([^)]*\)\s*)*([^\s;()]+)")


class Resinfo(NamedTuple):
    """One method's result: `method=result (comment) props`. A named tuple:
    made and hashed (the cache of `_resinfo`) for each result of each message,
    which costs a frozen dataclass several times more."""

    method: str
    result: str
    comment: str = ""
    props: tuple[tuple[str, str], ...] = ()  # ("smtp.mailfrom", "a@example.org"), ...
    reason: str = ""  # reason="..." (§2.2), for failures


def _value(text: str) -> str:
    if _TOKEN.fullmatch(text) or _ADDRESS.fullmatch(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _comment(text: str) -> str:
    return _COMMENT_BREAKERS.sub(" ", text).strip()


@functools.lru_cache(maxsize=4096)
def _resinfo(info: Resinfo) -> str:
    """One resinfo as text; cached, as a sender's SPF and DMARC results repeat."""
    out = f"{info.method}={info.result}"
    if info.comment:
        out += f" ({_comment(info.comment)})"
    if info.reason:
        out += f" reason={_value(_printable(info.reason))}"
    for ptype_property, value in info.props:
        if value:
            out += f" {ptype_property}={_value(_printable(value))}"
    return out


def _printable(text: str) -> str:
    if text.isprintable():  # nearly always: no need to look at each character
        return text[:200]
    return "".join(c if c.isprintable() else " " for c in text)[:200]


def format_results(authserv_id: str, results: Sequence[Resinfo]) -> str:
    """Our field's value (module contract)."""
    if not results:
        return f"{authserv_id}; none"
    return f"{authserv_id};" + ";".join(f"\r\n\t{_resinfo(r)}" for r in results)


def claims(value: str, authserv_id: str) -> bool:
    """Whether this field's authserv-id is ours (module contract)."""
    found = _CFWS_ID.match(value)
    return found is not None and found.group(1).lower() == authserv_id.lower()


def removals(headers: Sequence[tuple[str, str]], authserv_id: str) -> tuple[HeaderEdit, ...]:
    """Edits removing every received field that claims our id (module contract)."""
    forged = []
    index = 0
    for name, value in headers:
        if name.lower() == FIELD.lower():
            index += 1
            if claims(value, authserv_id):
                forged.append(index)
    return tuple(HeaderEdit("change", FIELD, "", i) for i in reversed(forged))
