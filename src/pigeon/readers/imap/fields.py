"""ENVELOPE answers and envelope header fields of many messages, from the folder's `pigeon-cache`.

    pairs = fields_of(folder, infos)     # [(envelope octets, header fields octets) | None]

Contract:
  * The answers are the folder's cache's (mailstore/fieldcache.py); the
    messages it does not hold yet are read once (the header section only
    is kept: the file up to its empty line), their ENVELOPE encoded
    (pigeon.proto.imap.envelope) and their envelope header fields (the raw
    field lines named in `CACHED_FIELDS`, in the file's order) cut out, and
    all of them appended to the cache in one write. A message expunged
    meanwhile is None.
  * What the cache gives is exactly what the file gives: an ENVELOPE from
    the cached fields equals one from the whole header (it reads no other
    field), and SEARCH HEADER on a cached field finds the same values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pigeon.mailstore.errors import MessageGone
from pigeon.mailstore.fieldcache import CACHED_FIELDS
from pigeon.proto.imap.envelope import encode_envelope, envelope, header_fields, raw_fields
from pigeon.proto.imap.mime import header_end

__all__ = ["CACHED_FIELDS", "compute", "fields_of"]

_NAMES = frozenset(name.encode("ascii") for name in CACHED_FIELDS)


def compute(data: bytes) -> tuple[bytes, bytes]:
    """(encoded ENVELOPE, envelope header fields) of a message's octets."""
    header = data[: header_end(data, 0, len(data))]
    kept = b"".join(raw for name, raw in raw_fields(header) if name in _NAMES)
    return encode_envelope(envelope(header_fields(kept))), kept


def fields_of(folder: Any, infos: Sequence[Any]) -> list[tuple[bytes, bytes] | None]:
    """See the module contract."""
    cache = folder.field_cache()
    found = cache.get_many([info.base for info in infos])
    fresh = []
    for i, pair in enumerate(found):
        if pair is not None:
            continue
        info = infos[i]
        try:
            pair = compute(folder.read(info.uid))
        except MessageGone:
            continue
        found[i] = pair
        fresh.append((info.base, pair[0], pair[1]))
    if fresh:
        cache.put_many(fresh)
    return found
