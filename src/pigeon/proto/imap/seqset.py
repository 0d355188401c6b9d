"""Sequence sets (RFC 9051 §9 sequence-set, §6.4.8 UID ranges).

Contract:
  * `parse_sequence_set(text)` reads "1,3:5,7:*" into a `SequenceSet`; "*"
    is kept as None and stands for the largest number in use (the last
    message's sequence number or UID), resolved only when the set is used.
    `ValueError` for anything else (zero, empty items, numbers over 2^32-1,
    RFC 9051 §9 nz-number / uniqueid).
  * A range is unordered (RFC 9051 §9: "2:4" and "4:2" are the same);
    `ranges(largest)` gives the ranges ordered low-high with "*" replaced.
  * `contains(n, largest)` answers membership without building a list;
    `members(universe, largest)` filters a sorted list of numbers (the
    mailbox's UIDs) in one pass, so a set of "1:*" over a large mailbox
    never makes a huge range.
  * The number of items is bounded by the command-line limit of the reader.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

MAX_ID = 2**32 - 1  # RFC 9051 §9: nz-number is a 32-bit value


@dataclass(frozen=True, slots=True)
class SequenceSet:
    items: tuple[tuple[int | None, int | None], ...]  # None = "*"

    def ranges(self, largest: int) -> list[tuple[int, int]]:
        out = []
        for lo, hi in self.items:
            a = largest if lo is None else lo
            b = largest if hi is None else hi
            out.append((min(a, b), max(a, b)))
        return out

    def contains(self, n: int, largest: int) -> bool:
        return any(lo <= n <= hi for lo, hi in self.ranges(largest))

    def members(self, universe: Sequence[int], largest: int | None = None) -> list[int]:
        """The numbers of sorted `universe` in the set ("*" = `largest`, by
        default the last of `universe`), ascending and without repeats."""
        if not universe:
            return []
        top = universe[-1] if largest is None else largest
        picked: set[int] = set()
        for lo, hi in self.ranges(top):
            start = bisect.bisect_left(universe, lo)
            stop = bisect.bisect_right(universe, hi)
            picked.update(universe[start:stop])
        return sorted(picked)

    def __str__(self) -> str:
        def one(v: int | None) -> str:
            return "*" if v is None else str(v)

        return ",".join(one(lo) if lo == hi else f"{one(lo)}:{one(hi)}" for lo, hi in self.items)


def _number(text: str) -> int | None:
    if text == "*":
        return None
    if not text.isdigit() or not text.isascii() or text.startswith("0"):
        raise ValueError(f"bad sequence number {text!r}")
    n = int(text)
    if n > MAX_ID:
        raise ValueError("sequence number too large")
    return n


def parse_sequence_set(text: str) -> SequenceSet:
    if not text:
        raise ValueError("empty sequence set")
    items: list[tuple[int | None, int | None]] = []
    for part in text.split(","):
        lo, colon, hi = part.partition(":")
        a = _number(lo)
        b = _number(hi) if colon else a
        items.append((a, b))
    return SequenceSet(tuple(items))


def compress(numbers: Sequence[int]) -> str:
    """Sorted numbers as the shortest sequence set ("1:3,7"): for COPYUID,
    APPENDUID, ESEARCH ALL and VANISHED (RFC 4315 §3, RFC 4731 §3.1)."""
    out: list[str] = []
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        out.append(str(numbers[i]) if i == j else f"{numbers[i]}:{numbers[j]}")
        i = j + 1
    return ",".join(out)
