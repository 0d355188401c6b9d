"""Which messages a command's sequence set names, in the selected mailbox as the session sees it.

Contract:
  * `targets(messages, seqset, uid=...)` -> [(sequence number, MessageInfo)]
    ascending, each once; `messages` is the Folder handle's view (ascending
    UIDs). With `uid` the numbers are UIDs: those not in the mailbox are
    skipped, "*" is the highest UID (RFC 9051 §6.4.9: "559:*" names the
    last message even past it). Without, they are sequence numbers and one
    outside 1..EXISTS makes the whole set invalid: `BadSet` (the command's
    BAD, RFC 9051 §9 "seq-number").
  * No list of every UID is built: the set is matched against a read-only
    sequence over `messages` by binary search.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any, overload

from pigeon.proto.imap.seqset import SequenceSet

__all__ = ["BadSet", "targets"]


class BadSet(ValueError):
    """A sequence number outside the mailbox."""


class _Uids(Sequence[int]):
    """The UIDs of `messages`, without copying them."""

    __slots__ = ("_messages",)

    def __init__(self, messages: list[Any]) -> None:
        self._messages = messages

    def __len__(self) -> int:
        return len(self._messages)

    @overload
    def __getitem__(self, i: int) -> int: ...

    @overload
    def __getitem__(self, i: slice) -> list[int]: ...

    def __getitem__(self, i: int | slice) -> int | list[int]:
        if isinstance(i, slice):
            return [m.uid for m in self._messages[i]]
        return int(self._messages[i].uid)


def targets(messages: list[Any], seqset: SequenceSet, *, uid: bool) -> list[tuple[int, Any]]:
    """The messages `seqset` names (module contract)."""
    count = len(messages)
    if uid:
        uids = _Uids(messages)
        out: list[tuple[int, Any]] = []
        for wanted in seqset.members(uids):
            i = bisect_left(uids, wanted)
            out.append((i + 1, messages[i]))
        return out
    for lo, hi in seqset.items:
        for n in (lo, hi):
            if (n is None and count == 0) or (n is not None and not 1 <= n <= count):
                raise BadSet("invalid message sequence number")
    return [(n, messages[n - 1]) for n in seqset.members(range(1, count + 1))]
