"""Size as receive checks: the announced size against the limit, and the free-space reserve.

Contract:
  * `MessageSizeLimit` (mail): a MAIL FROM whose SIZE= (RFC 1870) is over
    `limits.message_size` is answered MESSAGE_TOO_BIG 552 5.3.4 (RFC 1870
    §6.1), before any other mail check; a MAIL without SIZE= passes (the
    data reader bounds what arrives, proto/content.py). Composed only when
    there is a limit (0 = none).
  * `StorageReserve` (mail, data), queue/space.py Rules 1-3 (Postfix's
    queue_minfree): MAIL FROM, with its SIZE= value, and DATA/BDAT (with the
    transaction's SIZE=) are answered INSUFFICIENT_STORAGE 452 4.3.1 when
    the queue file system is below its reserve, so clients stop before
    uploading into a full disk (RFC 3463 X.3.1, RFC 5321 §4.3.2).
  * It asks an object with `room_for(size) -> bool` (`queue.space.FreeSpace`,
    shared with the store, which keeps its reading cheap: statvfs at most 4
    times a second); nothing else.
"""

from __future__ import annotations

from typing import Protocol

from pigeon.policy.api import SessionFacts, Verdict, refuse
from pigeon.proto import reply as R
from pigeon.proto.params import MailParams
from pigeon.vocab.address import Address

_NO_ROOM = refuse(R.INSUFFICIENT_STORAGE)
_TOO_BIG = refuse(R.MESSAGE_TOO_BIG)


class MessageSizeLimit:
    """mail: 552 5.3.4 for SIZE= over the limit (module contract)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit

    def mail(
        self, session: SessionFacts, sender: Address | None, params: MailParams
    ) -> Verdict | None:
        size = params.size
        return _TOO_BIG if size is not None and size > self._limit else None


class Room(Protocol):
    def room_for(self, size: int = 0) -> bool: ...


class StorageReserve:
    """mail, data: 452 4.3.1 below the reserve (module contract)."""

    def __init__(self, space: Room) -> None:
        self._space = space

    def mail(
        self, session: SessionFacts, sender: Address | None, params: MailParams
    ) -> Verdict | None:
        return None if self._space.room_for(params.size or 0) else _NO_ROOM

    def data(self, session: SessionFacts) -> Verdict | None:
        params = session.mail_params
        return None if self._space.room_for((params and params.size) or 0) else _NO_ROOM
