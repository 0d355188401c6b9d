"""Content changes of end-of-data verdicts: combined, then applied to the spool.

Contract:
  * `content_changes(verdicts)` folds the content fields of several
    verdicts (`pigeon.policy.api.Verdict`: header_edits, body, sender)
    into keyword arguments for one: header edits in order, the last body
    and sender. The pipeline uses it wherever it combines verdicts.
  * `edit_header_section(section, edits)` applies `HeaderEdit`s to a header
    section (CRLF-terminated fields, folded lines kept with their field)
    and returns the new one; RFC 5322 §2.2 fields, names compared without
    regard to case. A change of an index past the fields of that name
    appends the field (as Sendmail and Postfix do for a milter's
    smfi_chgheader).
  * `apply_content_changes(spool, message, verdict)` rewrites the spool's
    content before the commit when the verdict has header edits or a new
    body (`Spool.replace_head`: only the header section is replaced, the
    body is not copied, unless a new body replaces it); nothing otherwise.
    It reads the header section through `message` (already read by the
    checks). Call it before the verdict's `headers` are prepended. It
    returns what it put in place of the head (`(length, data)`, as given to
    `replace_head`), or None: DKIM signing reads the content as it will be
    stored (net/signmail.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pigeon.policy.api import HeaderEdit, Message, Verdict
from pigeon.queue.api import Spool

__all__ = ["apply_content_changes", "content_changes", "edit_header_section"]


def content_changes(verdicts: Iterable[Verdict]) -> dict[str, Any]:
    """Keyword arguments of `Verdict` for the content changes of `verdicts`."""
    edits: list[HeaderEdit] = []
    out: dict[str, Any] = {}
    for v in verdicts:
        edits.extend(v.header_edits)
        if v.body is not None:
            out["body"] = v.body
        if v.sender is not None:
            out["sender"] = v.sender
    if edits:
        out["header_edits"] = tuple(edits)
    return out


def _fields(section: bytes) -> list[bytes]:
    """The fields of a header section, each with its folded lines and CRLF."""
    fields: list[bytes] = []
    for line in section.splitlines(keepends=True):
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def _name(field: bytes) -> bytes:
    return field.split(b":", 1)[0].strip().lower()


def edit_header_section(section: bytes, edits: Iterable[HeaderEdit]) -> bytes:
    """`section` with `edits` applied in order (module contract)."""
    fields = _fields(section)
    for edit in edits:
        line = f"{edit.name}: {edit.value}\r\n".encode("utf-8", "surrogateescape")
        if edit.action == "add":
            fields.append(line)
        elif edit.action == "insert":
            fields.insert(min(edit.index, len(fields)), line)
        else:  # change: the index-th field of that name, counted from 1
            wanted, seen = edit.name.lower().encode(), 0
            for i, field in enumerate(fields):
                if _name(field) == wanted:
                    seen += 1
                    if seen == max(edit.index, 1):
                        if edit.value:
                            fields[i] = line
                        else:
                            del fields[i]
                        break
            else:
                if edit.value:
                    fields.append(line)
    return b"".join(fields)


def apply_content_changes(
    spool: Spool, message: Message, verdict: Verdict
) -> tuple[int, bytes] | None:
    """Rewrite the spool's head for header edits or a new body (module contract)."""
    if not verdict.header_edits and verdict.body is None:
        return None
    section = message.header_section()
    length = len(section)
    # The empty line that ends the section, if the message has one.
    separator = b"\r\n" if spool.head(length + 2)[length:] == b"\r\n" else b""
    head = edit_header_section(section, verdict.header_edits)
    if verdict.body is not None:
        replaced = (spool.size, head + b"\r\n" + verdict.body)
    else:
        replaced = (length + len(separator), head + separator)
    spool.replace_head(*replaced)
    return replaced
