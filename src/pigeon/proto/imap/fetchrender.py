"""FETCH items computed from a message's octets (RFC 9051 §6.4.5, §7.5.2).

Contract:
  * `content_item(att, data, root)` returns (response name, value) for the
    attributes that come from the message itself: ENVELOPE, BODYSTRUCTURE,
    BODY, BODY[section]<partial> (and BODY.PEEK), BINARY[part]<partial>,
    BINARY.SIZE[part], RFC822, RFC822.HEADER, RFC822.TEXT, RFC822.SIZE.
    `root` is the message's `mime.Part` tree (computed once, cacheable), or
    None: it is then parsed only for the attributes that need it
    (`needs_structure`); ENVELOPE and the top-level HEADER / TEXT /
    HEADER.FIELDS only find the end of the header section.
    The value is ready for `response.fetch_response`.
  * FLAGS, UID, INTERNALDATE and MODSEQ are the store's facts:
    `store_item(att, uid=, flags=, internaldate=, modseq=)` writes them.
    `needs_content` tells whether an attribute needs the message octets at
    all, so a FETCH of flags never reads a file; `needs_structure` whether
    it needs the tree.
  * Raises `sections.UnknownEncoding` for BINARY of a part whose encoding
    cannot be undone (the server answers NO [UNKNOWN-CTE], RFC 3516 §4.3).
  * BINARY with NUL octets is sent as literal8 (RFC 3516 §4.2).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from pigeon.proto.imap import response as R
from pigeon.proto.imap.envelope import encode_envelope, envelope, header_fields
from pigeon.proto.imap.fetchspec import FetchAtt, Section
from pigeon.proto.imap.mime import Part, bodystructure, header_end, parse_structure
from pigeon.proto.imap.sections import binary_bytes, header_subset, partial, section_bytes

STORE_ITEMS = frozenset({"FLAGS", "UID", "INTERNALDATE", "MODSEQ"})
_RFC822 = {
    "RFC822": Section(),
    "RFC822.HEADER": Section((), "HEADER"),
    "RFC822.TEXT": Section((), "TEXT"),
}


def needs_content(att: FetchAtt) -> bool:
    return att.name not in STORE_ITEMS and att.name != "RFC822.SIZE"


def needs_structure(att: FetchAtt) -> bool:
    """Whether the MIME tree is needed: BODYSTRUCTURE, BODY, and sections
    with part numbers. ENVELOPE, RFC822.* and the top-level HEADER, TEXT and
    HEADER.FIELDS only split the header from the body."""
    if att.name in ("BODYSTRUCTURE", "BODY"):
        return True
    if att.name in ("BODY[]", "BINARY[]", "BINARY.SIZE"):
        return bool(att.section and att.section.part)
    return False


def _top_section(data: bytes, section: Section) -> bytes:
    """section_bytes of a section without part numbers, with no MIME parse."""
    body = header_end(data, 0, len(data))
    if section.text is None:
        return data
    if section.text == "TEXT":
        return data[body:]
    if section.text == "HEADER":
        return data[:body]
    return header_subset(data[:body], section.fields, exclude=section.text == "HEADER.FIELDS.NOT")


def content_item(att: FetchAtt, data: bytes, root: Part | None = None) -> tuple[str, R.Value]:
    """(response name, value); `root` is the cached tree, parsed here when
    it is needed and not given."""
    name = att.name
    if name == "RFC822.SIZE":
        return name, len(data)
    if name == "ENVELOPE":
        header = data[: header_end(data, 0, len(data))]
        return name, R.Raw(encode_envelope(envelope(header_fields(header))))
    if name in _RFC822:
        return name, _top_section(data, _RFC822[name])
    section = att.section or Section()
    if not needs_structure(att):
        if name == "BODY[]":
            return att.response_name(), partial(_top_section(data, section), att.partial)
        if name == "BINARY[]":
            return att.response_name(), _binary(partial(data, att.partial))
        if name == "BINARY.SIZE":
            return att.response_name(), len(data)
    if root is None:
        root = parse_structure(data)
    if name in ("BODYSTRUCTURE", "BODY"):
        return name, R.Raw(bodystructure(root, extended=name == "BODYSTRUCTURE"))
    if name == "BODY[]":
        return att.response_name(), partial(section_bytes(data, root, section), att.partial)
    if name == "BINARY[]":
        return att.response_name(), _binary(
            partial(binary_bytes(data, root, section.part), att.partial)
        )
    if name == "BINARY.SIZE":
        return att.response_name(), len(binary_bytes(data, root, section.part))
    raise ValueError(f"{name} is not computed from the message")


def _binary(octets: bytes) -> R.Value:
    return R.Literal8(octets) if b"\x00" in octets else octets


def store_item(
    att: FetchAtt, *, uid: int, flags: Iterable[str], internaldate: dt.datetime, modseq: int
) -> tuple[str, R.Value]:
    """FLAGS (flag list), UID, INTERNALDATE (date-time), MODSEQ ("(n)", RFC 7162 §3.1.4.1)."""
    if att.name == "FLAGS":
        return "FLAGS", R.flags(flags)
    if att.name == "UID":
        return "UID", uid
    if att.name == "INTERNALDATE":
        return "INTERNALDATE", R.date_time(internaldate)
    if att.name == "MODSEQ":
        return "MODSEQ", [modseq]
    raise ValueError(f"{att.name} is not one of the store's items")
