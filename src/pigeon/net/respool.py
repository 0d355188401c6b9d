"""Header fields removed from a received message: the spool written again without them.

Contract:
  * `remove_fields(section, names)` is pure: the header section `section`
    (fields with their CRLFs, no empty line) without every field whose name
    is in `names` (compared without case, RFC 5322 §1.2.2), continuation
    lines included (a folded field is one field, RFC 5322 §2.2.3).
  * `respool(new_spool, spool, names, received_len, header_limit)` is how
    a verdict's `remove_headers` applies at the end of the data
    (net/intake.py): a new spool (`store.new_spool`), for the same envelope, gets our Received: field
    (the first `received_len` octets, its "id" changed to the new queue
    ID), the client's header section without the named fields, and the
    body streamed from the old spool (never read whole into memory); the
    old spool is discarded. It returns the new spool, not yet committed.
    When no field goes, the old spool is returned as it is. Our Received:
    is never removed: trace fields are kept (RFC 5321 §4.4).
  * Errors (OSError, StoreError) are raised to the caller, which answers
    451/452 as for any spool error; the new spool is discarded first.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

from pigeon.queue.api import Spool
from pigeon.queue.model import Envelope

__all__ = ["remove_fields", "respool"]

_END_OF_HEADER = b"\r\n\r\n"
#: Read back at most this much of the client's header section per look.
_HEAD_LIMIT = 1 << 20


def remove_fields(section: bytes, names: frozenset[str]) -> bytes:
    """`section` without the fields named (module contract)."""
    out: list[bytes] = []
    dropping = False
    for line in section.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):  # a continuation belongs to the field above
            if not dropping:
                out.append(line)
            continue
        name = line.split(b":", 1)[0].strip().decode("latin-1").lower()
        dropping = name in names
        if not dropping:
            out.append(line)
    return b"".join(out)


def respool(
    new_spool: Callable[[Envelope | None], Spool],
    spool: Spool,
    names: tuple[str, ...],
    received_len: int,
    header_limit: int,
) -> Spool:
    """`spool` without the header fields `names` (module contract)."""
    wanted = frozenset(n.lower() for n in names)
    head = spool.head(header_limit)
    end = head.find(_END_OF_HEADER)
    fields_end = len(head) if end == -1 else end + 2
    kept = remove_fields(head[received_len:fields_end], wanted)
    if len(kept) == fields_end - received_len:
        return spool  # nothing named is there
    envelope = spool.envelope
    old_id = spool.queue_id
    new = new_spool(envelope)  # a new queue ID, given to the envelope too
    try:
        received = head[:received_len].replace(
            f" id {old_id}".encode(), f" id {new.queue_id}".encode(), 1
        )
        new.write(received + kept)
        with spool.reader(fields_end) as rest:  # the empty line and the body
            shutil.copyfileobj(rest, _Writer(new), 65536)
    except BaseException:
        new.discard()
        raise
    spool.discard()
    return new


class _Writer:
    """A file-like `write` over a spool, for shutil.copyfileobj."""

    __slots__ = ("_spool",)

    def __init__(self, spool: Spool) -> None:
        self._spool = spool

    def write(self, data: bytes) -> int:
        self._spool.write(bytes(data))
        return len(data)
