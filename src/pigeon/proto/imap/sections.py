"""BODY[section]<partial> and BINARY[section] octets (RFC 9051 §6.4.5, RFC 3516 §4.2).

Contract:
  * `find_part(root, path)` walks part numbers as RFC 9051 §6.4.5 numbers
    them: the parts of a multipart are 1..n; a message that is not
    multipart has one part, "1", its body; the number after a
    message/rfc822 part numbers the parts of the message inside it. None
    when there is no such part.
  * `section_bytes(data, root, section)` is the octets of the section:
    "" the whole message, HEADER / TEXT / HEADER.FIELDS (..) /
    HEADER.FIELDS.NOT (..) of the message (or of the message/rfc822 part
    named), MIME the header of the part named, a bare part number its body.
    HEADER and the field subsets end with the empty line (RFC 9051 §6.4.5;
    HEADER.FIELDS.NOT and HEADER only when the message had one).
    A section that does not exist is empty (b""), as Dovecot answers.
  * `partial(octets, (origin, count))` cuts the <origin.count> slice: past
    the end it is empty (RFC 9051 §6.4.5).
  * `binary_bytes(data, root, path)` is the part's body with its
    Content-Transfer-Encoding undone (base64, quoted-printable; 7bit, 8bit,
    binary as they are): `UnknownEncoding` for any other encoding (the
    server answers NO [UNKNOWN-CTE], RFC 3516 §4.3), b"" for no such part.
  * The octets come from slicing `data` at the offsets of the `Part` tree
    (mime.parse_structure): nothing is parsed twice.
"""

from __future__ import annotations

import binascii
import re

from pigeon.proto.imap.envelope import raw_fields
from pigeon.proto.imap.fetchspec import Section
from pigeon.proto.imap.mime import Part


class UnknownEncoding(Exception):
    """A part whose Content-Transfer-Encoding BINARY cannot undo."""


def _parts_of(part: Part, in_multipart: bool) -> tuple[Part, ...]:
    if part.is_multipart:
        return part.children
    if part.message is not None:
        inner = part.message
        return inner.children if inner.is_multipart else (inner,)
    # a leaf of a multipart answers to ".1" as itself (Dovecot: BODY[2.1] of a
    # leaf 2); the body of a single-part message has no parts
    return (part,) if in_multipart else ()


def find_part(root: Part, path: tuple[int, ...]) -> Part | None:
    if not path:
        return root
    parts = root.children if root.is_multipart else (root,)
    in_multipart = root.is_multipart
    node: Part | None = None
    for i, n in enumerate(path):
        if i:
            assert node is not None
            parent_is_multipart = node.is_multipart
            parts = _parts_of(node, in_multipart)
            in_multipart = parent_is_multipart or (
                in_multipart if node.message is None else node.message.is_multipart
            )
        if not 1 <= n <= len(parts):
            return None
        node = parts[n - 1]
    return node


def header_subset(block: bytes, names: tuple[str, ...], exclude: bool) -> bytes:
    wanted = {n.lower().encode("ascii", "replace") for n in names}
    kept = [raw for name, raw in raw_fields(block) if (name in wanted) != exclude]
    out = b"".join(r if r.endswith(b"\n") else r + b"\r\n" for r in kept)
    # HEADER.FIELDS ends with an empty line; .NOT keeps the section's own, if
    # it had one (as Dovecot answers a message without a body)
    ended = block.endswith((b"\n\r\n", b"\n\n")) or block in (b"\r\n", b"\n")
    return out + b"\r\n" if ended or not exclude else out


def section_bytes(data: bytes, root: Part, section: Section) -> bytes:
    part = find_part(root, section.part)
    if part is None:
        return b""
    text = section.text
    if text is None:
        if not section.part:
            return data[root.start : root.end]
        return data[part.body_start : part.end]
    if text == "MIME":
        return data[part.start : part.body_start]
    msg = part if not section.part else part.message
    if msg is None:
        return b""
    header = data[msg.start : msg.body_start]
    if text == "HEADER":
        return header
    if text == "TEXT":
        return data[msg.body_start : msg.end]
    return header_subset(header, section.fields, exclude=text == "HEADER.FIELDS.NOT")


def partial(octets: bytes, window: tuple[int, int] | None) -> bytes:
    if window is None:
        return octets
    origin, count = window
    return octets[origin : origin + count]


def binary_bytes(data: bytes, root: Part, path: tuple[int, ...]) -> bytes:
    part = find_part(root, path)
    if part is None:
        return b""
    body = data[part.body_start : part.end] if path else data[root.start : root.end]
    if not path:
        return body  # BINARY[] is the whole message, as it is (RFC 3516 §4.2)
    cte = part.encoding.strip().lower()
    if cte in ("7bit", "8bit", "binary") or part.is_multipart or part.message is not None:
        # a multipart or message as it is (Dovecot re-encodes the parts inside)
        return body
    if cte == "base64":
        return _lenient_base64(body)
    if cte == "quoted-printable":
        return binascii.a2b_qp(body)
    raise UnknownEncoding(cte)


def _lenient_base64(body: bytes) -> bytes:
    """Base64 with stray octets ignored and a ragged end completed (RFC 2045
    §6.8: "any characters outside the base64 alphabet are to be ignored")."""
    clean = re.sub(rb"[^A-Za-z0-9+/]", b"", body)
    if len(clean) % 4 == 1:
        clean = clean[:-1]
    return binascii.a2b_base64(clean + b"=" * (-len(clean) % 4))
