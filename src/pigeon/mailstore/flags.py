"""Maildir message flags: the ":2," info suffix of a file name in cur/.

Contract (the Maildir spec, as Dovecot and Courier read it):
  * A file in new/ has no info; a reader that has seen it moves it to cur/
    with `:2,` and its flags appended: `<unique name>:2,<flags>`.
  * Flags are single letters stored in ASCII order, each once: the spec's
    D (draft), F (flagged), P (passed), R (replied), S (seen), T (trashed);
    lowercase letters are keywords some readers define (Dovecot).
  * `parse_info(name)` -> (the name without its info, the flags: "" when
    there is no info or an info of another version); `with_flags(name,
    flags)` -> the name with exactly those flags. A flag that is not an
    ASCII letter is a ValueError.
  * IMAP's system flags are the letters D F R S T (\\Draft \\Flagged
    \\Answered \\Seen \\Deleted), as Dovecot maps them; `SYSTEM_LETTERS`
    and `LETTER_FLAGS` are that table. Keywords are the letters a-z, whose
    names a Maildir keeps in its `dovecot-keywords` file (mailstore/keywords.py).
    P (passed) and other letters have no IMAP flag: a reader keeps them.
  * Pure: names in, names out; moving files is the reader's business.
"""

from __future__ import annotations

__all__ = ["INFO", "LETTER_FLAGS", "STANDARD_FLAGS", "SYSTEM_LETTERS", "parse_info", "with_flags"]

#: Separates the unique name from the info; version 2 carries flags.
INFO = ":2,"
STANDARD_FLAGS = "DFPRST"

#: IMAP system flag -> Maildir letter (RFC 9051 §2.3.2; the Maildir spec's
#: meanings, as Dovecot maps them).
SYSTEM_LETTERS = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}
LETTER_FLAGS = {letter: flag for flag, letter in SYSTEM_LETTERS.items()}


def parse_info(name: str) -> tuple[str, str]:
    """(base name, flags) of a Maildir file name (see the module contract)."""
    base, colon, info = name.partition(":")
    if not colon:
        return name, ""
    return base, info[2:] if info.startswith("2,") else ""


def with_flags(name: str, flags: str) -> str:
    """`name` (with or without info) carrying exactly `flags`, in ASCII order."""
    if not all(ch.isascii() and ch.isalpha() for ch in flags):
        raise ValueError(f"not Maildir flags: {flags!r}")
    base, _ = parse_info(name)
    return base + INFO + "".join(sorted(set(flags)))
