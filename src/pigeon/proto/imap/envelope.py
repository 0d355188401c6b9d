"""ENVELOPE (RFC 9051 §7.5.2) and the header-field helpers the MIME code shares.

Contract:
  * `header_fields(block)` splits a header section (octets) into
    (name, raw value) pairs (values as written, 8-bit octets carried as
    surrogate escapes). The split is ours, not the `email` package's: its
    parser ends the header section at the first line that is not a field,
    losing every field after it, where Dovecot (and this) skip that line; `unfold(value)` joins folded lines (RFC 5322 §2.2.3), a line break
    and the white space after it becoming one space, as Dovecot writes them.
    Encoded-words are left as they are: IMAP returns raw header values.
  * `envelope(fields)` is the ENVELOPE value as `response.encode` writes it:
    (date subject from sender reply-to to cc bcc in-reply-to message-id);
    Sender and Reply-To default to From (RFC 9051 §7.5.2); an absent field
    is NIL. Addresses are (name adl mailbox host) lists; a group is
    (NIL NIL "name" NIL) ... (NIL NIL NIL NIL) (RFC 9051 §7.5.2).
  * `encode_envelope(env)` writes it (address lists without separating
    spaces, as the grammar wants).
  * `parse_addresses(text)` is lenient: any text gives a list (possibly
    empty), never an exception; it is bounded by the input's length.
"""

from __future__ import annotations

import re

from pigeon.proto.imap.response import Value, encode

_FOLD = re.compile(r"\r?\n[ \t]+")
MAX_ADDRESSES = 1000  # per field: a header with more is cut (bounded ENVELOPE)

Address = list[str | None]


def raw_fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """(lower-case name, raw octets of the field with its continuation lines),
    in order, up to the empty line (RFC 5322 §2.2). A line that is neither a
    field nor a continuation (no colon) has the name b"": no field name
    matches it, and the fields after it still count (as in Dovecot)."""
    fields: list[tuple[bytes, list[bytes]]] = []  # lines joined once at the end: linear
    for line in block.splitlines(keepends=True):
        if not line.strip(b"\r\n"):
            break
        if line[:1] in (b" ", b"\t"):
            if fields:
                fields[-1][1].append(line)
        else:  # a line without a colon is no field; kept, under no name
            name = line.split(b":", 1)[0].strip().lower() if b":" in line else b""
            fields.append((name, [line]))
    return [(name, b"".join(lines)) for name, lines in fields]


def header_fields(block: bytes) -> list[tuple[str, str]]:
    """(name, value) pairs; 8-bit octets kept as surrogate escapes, so that
    `response.string` writes the octets back unchanged."""
    out = []
    for name, raw in raw_fields(block):
        if not name:
            continue
        value = raw.split(b":", 1)[1]
        out.append(
            (name.decode("ascii", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        )
    return out


def unfold(value: str) -> str:
    return _FOLD.sub(" ", value).strip(" \t\r\n")


def first(fields: list[tuple[str, str]], name: str) -> str | None:
    lname = name.lower()
    for k, v in fields:
        if k.lower() == lname:
            return unfold(v)
    return None


def _tokens(text: str) -> list[str]:
    """Quoted strings (with their quotes), angle-addrs, specials and runs of
    other text; comments are dropped (RFC 5322 §3.2.2)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif c == "(":
            depth = 0
            while i < n:
                if text[i] == "\\":
                    i += 1
                elif text[i] == "(":
                    depth += 1
                elif text[i] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            i += 1
            out.append(" ")
        elif c == "<":
            j = text.find(">", i)
            j = n - 1 if j == -1 else j
            out.append(text[i : j + 1])
            i = j + 1
        elif c in ",:;":
            out.append(c)
            i += 1
        else:
            j = i
            while j < n and text[j] not in '"(<,:;':
                j += 1
            out.append(text[i:j])
            i = j
    return out


def _phrase(tokens: list[str]) -> str | None:
    words = []
    for t in tokens:
        if t.startswith('"'):
            words.append(
                re.sub(r"\\(.)", r"\1", t[1:-1] if t.endswith('"') and len(t) > 1 else t[1:])
            )
        else:
            words.extend(t.split())
    text = " ".join(w for w in words if w)
    return text or None


def _addr_spec(text: str) -> str:
    """An addr-spec with quoted local parts unquoted and folding white space
    outside quotes dropped ("quoted local"@host -> quoted local@host, as Dovecot)."""
    out: list[str] = []
    quoted = False
    i = 0
    while i < len(text):
        c = text[i]
        if c == '"':
            quoted = not quoted
        elif c == "\\" and quoted and i + 1 < len(text):
            i += 1
            out.append(text[i])
        elif quoted or not c.isspace():
            out.append(c)
        i += 1
    return "".join(out)


def _mailbox(tokens: list[str]) -> Address | None:
    angle = next((t for t in tokens if t.startswith("<")), None)
    if angle is not None:
        name = _phrase(tokens[: tokens.index(angle)])
        spec = angle[1:].rstrip(">").strip()
    else:
        name = None
        spec = "".join(tokens).strip()
    adl = None
    if spec.startswith("@") and ":" in spec:  # obs-route (RFC 5322 §4.4)
        adl, _, spec = spec.partition(":")
    spec = _addr_spec(spec)
    if not spec and name is None:
        return None
    local, at, host = spec.rpartition("@")
    if not at:
        local, host = spec, ""
    # Dovecot's placeholders: a NIL host would read as group syntax (RFC 9051 §7.5.2)
    return [name, adl, local or "MISSING_MAILBOX", host or "MISSING_DOMAIN"]


def parse_addresses(text: str) -> list[Address]:
    tokens = _tokens(text)
    out: list[Address] = []
    current: list[str] = []
    angled = False  # current holds an angle-addr (so a ":" is no group start)
    in_group = False
    for t in tokens + [","]:
        if len(out) >= MAX_ADDRESSES:
            break
        if t == ":" and not in_group and not angled:
            out.append([None, None, _phrase(current) or "", None])
            in_group = True
            current = []
        elif t in (",", ";"):
            mbox = _mailbox(current)
            if mbox is not None:
                out.append(mbox)
            current = []
            angled = False
            if t == ";" and in_group:
                out.append([None, None, None, None])
                in_group = False
        else:
            current.append(t)
            angled = angled or t.startswith("<")
    if in_group:
        out.append([None, None, None, None])
    return out


def _addresses(fields: list[tuple[str, str]], name: str) -> list[Address] | None:
    value = first(fields, name)
    if value is None:
        return None
    return parse_addresses(value) or None


def encode_envelope(env: list[Value]) -> bytes:
    """ENVELOPE octets: address lists are written without spaces between the
    addresses (RFC 9051 §9: env-from = "(" 1*address ")")."""
    out = []
    for i, item in enumerate(env):
        if 2 <= i <= 7 and item is not None:
            assert isinstance(item, list)
            out.append(b"(" + b"".join(encode(a) for a in item) + b")")
        else:
            out.append(encode(item))
    return b"(" + b" ".join(out) + b")"


def envelope(fields: list[tuple[str, str]]) -> list[Value]:
    sender_from = _addresses(fields, "From")
    return [
        first(fields, "Date"),
        first(fields, "Subject"),
        sender_from,
        _addresses(fields, "Sender") or sender_from,
        _addresses(fields, "Reply-To") or sender_from,
        _addresses(fields, "To"),
        _addresses(fields, "Cc"),
        _addresses(fields, "Bcc"),
        first(fields, "In-Reply-To"),
        first(fields, "Message-ID"),
    ]
