"""SPF macros (RFC 7208 §7): check a macro-string, expand it.

    context = MacroContext(sender="strong-bad@email.example.com", domain="email.example.com",
                           ip=ipaddress.ip_address("192.0.2.3"), helo="mx.example.org")
    expand("%{ir}.%{v}._spf.%{d2}", context)   # "3.2.0.192.in-addr._spf.example.com"

Contract:
  * `check_macro_string(text, explanation=False)` raises `SpfSyntaxError`
    (a permerror) unless `text` is a macro-string (§7.1): literals are the
    visible ASCII characters but "%"; a macro is "%{" letter digits ["r"]
    delimiters "}" or one of "%%", "%_", "%-". A DIGIT transformer of zero is
    an error (§7.3). The letters c, r and t are for explanations only
    (§7.2); `explanation=True` also allows spaces (explain-string, §6.2).
  * `expand(text, context, explanation=False)` checks, then expands (§7.3):
    split on the delimiters ("." by default), optionally reverse, keep the
    right-most N parts, join with "."; an upper-case letter URL-escapes the
    value (RFC 3986 "unreserved" kept). "p" needs DNS, so the caller looks
    the name up first (`uses_ptr`) and puts it in `context.ptr_name`.
  * `fit_domain` applies §7.3's 253-octet rule to an expanded domain.
  * Pure: no DNS, no I/O, time comes in through `context.now`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote

__all__ = [
    "MacroContext",
    "SpfSyntaxError",
    "check_macro_string",
    "expand",
    "fit_domain",
    "uses_ptr",
]

MAX_DOMAIN = 253  # §7.3 (RFC 1035 §2.3.4, without the final dot)

_MACRO = re.compile(
    r"%(?:\{(?P<letter>[A-Za-z])(?P<digits>[0-9]*)(?P<reverse>[rR]?)(?P<delimiters>[.\-+,/_=]*)\}"
    r"|(?P<escape>[%_-]))"
)
_LETTERS = set("slodiphv")
_EXPLANATION_LETTERS = _LETTERS | set("crt")  # §7.2: "c", "r" and "t" only in exp
_ESCAPES = {"%": "%", "_": " ", "-": "%20"}  # §7.1


class SpfSyntaxError(ValueError):
    """The record (or a macro-string in it) breaks RFC 7208's grammar: a permerror (§4.6)."""


@dataclass(frozen=True, slots=True)
class MacroContext:
    """The values the macro letters stand for (§7.2)."""

    sender: str  # "local@domain"; the local-part is "postmaster" when it had none (§4.3)
    domain: str  # <domain>: the domain whose record is being evaluated
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    helo: str
    receiver: str = "unknown"  # "r": the domain of the checking host
    now: float = 0.0  # "t": seconds since the epoch
    ptr_name: str | None = None  # "p": a validated name of ip, looked up by the caller


def check_macro_string(text: str, explanation: bool = False) -> None:
    """Raise `SpfSyntaxError` unless `text` is a macro-string (an explain-string if asked)."""
    _pieces(text, explanation)


def uses_ptr(text: str) -> bool:
    """Does expanding `text` need the "p" macro's PTR look-up?"""
    return any(m.group("letter") in ("p", "P") for m in _MACRO.finditer(text))


def expand(text: str, context: MacroContext, explanation: bool = False) -> str:
    """`text` with its macros replaced (§7.3); a syntax error is `SpfSyntaxError`."""
    out = []
    for piece in _pieces(text, explanation):
        if isinstance(piece, str):
            out.append(piece)
            continue
        if piece.group("escape"):
            out.append(_ESCAPES[piece.group("escape")])
            continue
        letter = piece.group("letter")
        value = _value(letter.lower(), context)
        delimiters = piece.group("delimiters") or "."
        parts = re.split("[" + re.escape(delimiters) + "]", value)
        if piece.group("reverse"):
            parts.reverse()
        if piece.group("digits"):
            parts = parts[-int(piece.group("digits")) :]
        value = ".".join(parts)
        out.append(quote(value, safe="") if letter.isupper() else value)
    return "".join(out)


def fit_domain(name: str) -> str:
    """§7.3: over 253 characters, drop labels from the left until it fits."""
    while len(name.rstrip(".")) > MAX_DOMAIN and "." in name:
        name = name.split(".", 1)[1]
    return name


def _pieces(text: str, explanation: bool) -> list[str | re.Match[str]]:
    """Literal runs and macro matches, in order; anything else is a syntax error."""
    allowed = _EXPLANATION_LETTERS if explanation else _LETTERS
    pieces: list[str | re.Match[str]] = []
    position = 0
    while position < len(text):
        percent = text.find("%", position)
        literal = text[position : len(text) if percent < 0 else percent]
        for char in literal:
            # §7.1: macro-literal = %x21-24 / %x26-7E; explain-string adds SP (§6.2)
            if not ("\x21" <= char <= "\x7e" or (explanation and char == " ")):
                raise SpfSyntaxError(f"{char!r} is not allowed in {text!r} (RFC 7208 §7.1)")
        if literal:
            pieces.append(literal)
        if percent < 0:
            break
        match = _MACRO.match(text, percent)
        if not match:
            raise SpfSyntaxError(f"bad macro at {text[percent : percent + 8]!r} (RFC 7208 §7.1)")
        letter = match.group("letter")
        if letter and letter.lower() not in allowed:
            raise SpfSyntaxError(f"macro %{{{letter}}} not allowed here (RFC 7208 §7.2)")
        if match.group("digits") and int(match.group("digits")) == 0:
            raise SpfSyntaxError(f"{match.group()!r}: a zero DIGIT transformer (RFC 7208 §7.3)")
        pieces.append(match)
        position = match.end()
    return pieces


def _value(letter: str, context: MacroContext) -> str:
    """§7.2: what each macro letter stands for."""
    local, _, sender_domain = context.sender.rpartition("@")
    if letter == "s":
        return context.sender
    if letter == "l":
        return local or "postmaster"
    if letter == "o":
        return sender_domain
    if letter == "d":
        return context.domain
    if letter == "i":
        if context.ip.version == 4:
            return str(context.ip)
        return ".".join(context.ip.exploded.replace(":", ""))  # §7.3: nibbles, dotted
    if letter == "p":
        return context.ptr_name or "unknown"
    if letter == "v":
        return "in-addr" if context.ip.version == 4 else "ip6"
    if letter == "h":
        return context.helo
    if letter == "c":
        return str(context.ip)
    if letter == "r":
        return context.receiver
    return str(int(context.now))  # "t"
