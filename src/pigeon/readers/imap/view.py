"""One session's view of its selected mailbox: message sequence numbers and the news it has not been told.

    view = MailboxView(uids)                 # at SELECT: the folder's UIDs, ascending
    view.msn(uid) / view.uid(msn) / view.exists
    view.uids_of(ranges, uid=False)          # a sequence set, resolved (RFC 9051 §9 "sequence-set")
    lines = view.absorb(changes, ...)        # a Folder.sync()'s changes -> untagged responses

Contract:
  * Message sequence numbers are this session's (RFC 9051 §2.3.1.2): they
    change only when the session is told, by an untagged EXPUNGE (each one
    renumbers the messages after it, so they are sent highest first is NOT
    required; we send them in ascending UID order, each number valid at the
    instant it is sent) or EXISTS. So the view keeps its own ascending array
    of UIDs (4 octets a message, an `array`), never copies of the messages:
    flags, sizes and dates are read from the shared Folder state.
  * `absorb` turns a `Folder.sync()` result into the untagged responses the
    client must get (RFC 9051 §7: EXPUNGE for each UID it knew that is
    gone, then EXISTS when the count changed by new mail, then FETCH (FLAGS)
    for each known message whose flags changed, with UID, and MODSEQ once
    CONDSTORE is on, RFC 7162 §3.2.4). When expunges may not be sent now
    (during FETCH, STORE, SEARCH: RFC 9051 §7.5.1), they are kept and sent
    at the next command that allows them; until then those UIDs keep their
    numbers.
  * No I/O: the Folder is read by the caller (through a thread).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence

__all__ = ["MailboxView", "STAR"]

#: "*" in a sequence set: the largest number in use (RFC 9051 §9 "seq-number").
STAR = -1


class MailboxView:
    """The selected mailbox as one session knows it (module contract)."""

    __slots__ = ("_uids", "pending_expunged", "uidnext_seen")

    def __init__(self, uids: Iterable[int], uidnext: int = 0) -> None:
        self._uids = array("I", uids)
        #: UIDs gone from the folder the client has not been told of yet.
        self.pending_expunged: list[int] = []
        #: The UIDNEXT the client knows (new mail is above it).
        self.uidnext_seen = uidnext

    @property
    def exists(self) -> int:
        return len(self._uids)

    def uid(self, msn: int) -> int:
        return self._uids[msn - 1]

    def msn(self, uid: int) -> int | None:
        i = bisect_left(self._uids, uid)
        if i < len(self._uids) and self._uids[i] == uid:
            return i + 1
        return None

    def all_uids(self) -> Sequence[int]:
        return self._uids

    @property
    def max_uid(self) -> int:
        return self._uids[-1] if self._uids else 0

    def uids_of(self, ranges: Iterable[tuple[int, int]], *, uid: bool) -> list[int]:
        """The UIDs a sequence set names, ascending, each once.

        `ranges`: (first, last) pairs, either may be STAR; a range is the
        same whichever way it is written (RFC 9051 §9: 2:4 == 4:2). With
        `uid`, numbers are UIDs and those not in the view are skipped (a UID
        range may name none, RFC 9051 §6.4.9); else sequence numbers, and
        the caller has checked they are in range (`valid_msns`).
        """
        out: set[int] = set()
        uids = self._uids
        if not uids:
            return []
        for first, last in ranges:
            if uid:
                a = uids[-1] if first == STAR else first
                b = uids[-1] if last == STAR else last
                lo, hi = min(a, b), max(a, b)
                out.update(uids[bisect_left(uids, lo) : bisect_right(uids, hi)])
            else:
                a = len(uids) if first == STAR else first
                b = len(uids) if last == STAR else last
                lo, hi = min(a, b), max(a, b)
                out.update(uids[max(lo, 1) - 1 : min(hi, len(uids))])
        return sorted(out)

    def valid_msns(self, ranges: Iterable[tuple[int, int]]) -> bool:
        """Every sequence number within 1..EXISTS ("*" always is, when EXISTS > 0)."""
        n = len(self._uids)
        for first, last in ranges:
            for value in (first, last):
                if value == STAR:
                    if n == 0:
                        return False
                elif not 1 <= value <= n:
                    return False
        return True

    # --- news from the folder --------------------------------------------------------

    def expunged(self, uids: Iterable[int]) -> None:
        """UIDs gone from the folder: told at the next `flush_expunges`."""
        known = [u for u in uids if self.msn(u) is not None and u not in self.pending_expunged]
        self.pending_expunged.extend(known)

    def flush_expunges(self) -> list[int]:
        """Drop the pending expunged UIDs; the sequence numbers to announce, in order."""
        out: list[int] = []
        for uid in sorted(self.pending_expunged):
            msn = self.msn(uid)
            if msn is None:
                continue
            out.append(msn)
            del self._uids[msn - 1]
        self.pending_expunged.clear()
        return out

    def added(self, uids: Iterable[int]) -> int:
        """New UIDs (above every known one) joined the view; how many."""
        top = self.max_uid
        fresh = sorted(u for u in set(uids) if u > top)
        self._uids.extend(fresh)
        return len(fresh)

    def remove_now(self, uids: Iterable[int]) -> list[int]:
        """Our own EXPUNGE/MOVE: remove at once; the numbers to announce, in order."""
        self.expunged(uids)
        return self.flush_expunges()
