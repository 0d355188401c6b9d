"""IMAP keywords of a Maildir: the `dovecot-keywords` file, as Dovecot keeps it.

Contract:
  * A Maildir file name carries a keyword as a lowercase letter after `:2,`;
    the letter's name is in `<maildir>/dovecot-keywords`, one `<index>
    <name>` line each, index 0 being "a" ... 25 being "z" (Dovecot's maildir
    keyword file, so Dovecot and pigeon agree on what a letter means).
  * `Keywords(maildir)`: `load()` reads the file again when its mtime
    changed (another program added a keyword); `letters_to_flags(letters)`
    gives the IMAP flags of a file's flag letters (system flags through
    mailstore/flags.py, keywords by name, unknown letters dropped);
    `flags_to_letters(flags, create=True)` the letters for IMAP flags, adding
    a keyword to the file (written atomically: tmp, fsync, rename) when it
    is new. Keywords match case-insensitively (RFC 9051 §2.3.2: flag names
    are not case-sensitive) and keep the spelling they were first given.
  * Only 26 keywords fit in file names: the 27th is `TooManyKeywords`
    (the IMAP layer answers NO). A keyword name must be an IMAP atom
    (checked by the protocol layer); here it only must not be empty or
    hold a space or a line break.
  * Not thread-safe by itself: the caller holds the Maildir's lock.
"""

from __future__ import annotations

import os
import string

from pigeon.fsutil import write_atomically
from pigeon.mailstore.flags import LETTER_FLAGS, SYSTEM_LETTERS

__all__ = ["FILENAME", "Keywords", "TooManyKeywords"]

FILENAME = "dovecot-keywords"
LETTERS = string.ascii_lowercase


class TooManyKeywords(ValueError):
    """All 26 keyword letters are taken."""


class Keywords:
    """The keyword letters of one Maildir (see the module contract)."""

    def __init__(self, maildir: str) -> None:
        self.path = os.path.join(maildir, FILENAME)
        self.names: list[str | None] = [None] * len(LETTERS)
        self._by_lower: dict[str, int] = {}
        self._mtime_ns: int | None = -1

    def changed(self) -> bool:
        """Whether the file changed since the last `load` (one stat)."""
        try:
            mtime_ns: int | None = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            mtime_ns = None
        return mtime_ns != self._mtime_ns

    def load(self) -> bool:
        """Read the file again if it changed since the last read (True then)."""
        try:
            mtime_ns: int | None = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            mtime_ns = None
        if mtime_ns == self._mtime_ns:
            return False
        names: list[str | None] = [None] * len(LETTERS)
        if mtime_ns is not None:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    index, _, name = line.rstrip("\n").partition(" ")
                    if index.isdigit() and int(index) < len(LETTERS) and name:
                        names[int(index)] = name
        self.names = names
        self._by_lower = {n.lower(): i for i, n in enumerate(names) if n is not None}
        self._mtime_ns = mtime_ns
        return True

    def defined(self) -> list[str]:
        """Every keyword name the file defines (for PERMANENTFLAGS / FLAGS)."""
        return [n for n in self.names if n is not None]

    def letters_to_flags(self, letters: str) -> frozenset[str]:
        out = []
        for ch in letters:
            flag = LETTER_FLAGS.get(ch)
            if flag is not None:
                out.append(flag)
            elif "a" <= ch <= "z":
                name = self.names[ord(ch) - 97]
                if name is not None:
                    out.append(name)
        return frozenset(out)

    def flags_to_letters(self, flags: frozenset[str] | set[str], create: bool = True) -> str:
        """The letters for `flags` (\\Recent and unknown system flags dropped)."""
        out = []
        added = False
        for flag in sorted(flags):  # new keywords get letters in a stable order
            if flag.startswith("\\"):
                letter = _system_letter(flag)
                if letter:
                    out.append(letter)
                continue
            index = self._by_lower.get(flag.lower())
            if index is None:
                if not create:
                    continue
                index = self._add(flag)
                added = True
            out.append(LETTERS[index])
        if added:
            self._write()
        return "".join(sorted(out))

    def _add(self, name: str) -> int:
        if not name or any(ch in name for ch in " \r\n"):
            raise ValueError(f"not a keyword: {name!r}")
        for index, existing in enumerate(self.names):
            if existing is None:
                self.names[index] = name
                self._by_lower[name.lower()] = index
                return index
        raise TooManyKeywords(f"no keyword letter left for {name!r} (26 in use)")

    def _write(self) -> None:
        text = "".join(f"{i} {n}\n" for i, n in enumerate(self.names) if n is not None)
        write_atomically(self.path, text.encode("utf-8"))
        self._mtime_ns = os.stat(self.path).st_mtime_ns


def _system_letter(flag: str) -> str | None:
    for name, letter in SYSTEM_LETTERS.items():
        if name.lower() == flag.lower():
            return letter
    return None
