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
  * Pure: names in, names out; moving files is the reader's business.
"""

from __future__ import annotations

__all__ = ["INFO", "STANDARD_FLAGS", "parse_info", "with_flags"]

#: Separates the unique name from the info; version 2 carries flags.
INFO = ":2,"
STANDARD_FLAGS = "DFPRST"


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
