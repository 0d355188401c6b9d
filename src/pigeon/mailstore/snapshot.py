"""`Snapshot`: the messages of one Maildir at one generation, shared by every session.

Contract:
  * Made by mailstore/state.py at each change and never changed after:
    `by_uid` (uid -> MessageInfo, in UID order), `generation`, `uidnext`,
    `highestmodseq`. What is derived from it (the list of messages, the
    first unseen message) is computed once, on first use, and shared.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pigeon.mailstore.message import MessageInfo

__all__ = ["Snapshot"]


@dataclass(frozen=True)
class Snapshot:
    """The messages at one generation, with the UIDNEXT and HIGHESTMODSEQ
    that go with them (shared, never changed)."""

    by_uid: dict[int, MessageInfo]
    generation: int
    uidnext: int = 1
    highestmodseq: int = 1
    _list: list[MessageInfo] = field(default_factory=list, compare=False)

    _first_unseen: list[int] = field(default_factory=list, compare=False)

    def messages(self) -> list[MessageInfo]:
        if len(self._list) != len(self.by_uid):
            self._list[:] = self.by_uid.values()
        return self._list

    def first_unseen(self) -> int:
        """The sequence number of the first message without \\Seen (0: none),
        computed once per snapshot: every SELECT of it shares the answer."""
        if not self._first_unseen:
            found = next(
                (n for n, m in enumerate(self.messages(), 1) if "\\Seen" not in m.flags), 0
            )
            self._first_unseen.append(found)
        return self._first_unseen[0]
