"""Where a key is written in a TOML file: its line number, for error messages.

Contract:
  * tomllib returns values without positions, so `KeyLocator(text)` scans
    the text once, line by line, and remembers where each key is set: a
    table header (`[limits]`, `[domains."example.test"]`) gives the line of
    that table, a `key = value` line (dotted keys too) the line of the key
    inside the current table. The elements of an array of tables are
    numbered as errors name them: `plugins[1].config.url` is the `url` of
    the `[plugins.config]` below the second `[[plugins]]`.
  * `line_of(dotted_key)` takes a key as the error messages spell it
    (`limits.message_size`, `domains."example.test".mailboxes`, see
    `_checks.join`) and returns the 1-based line that sets it; when the key
    itself is not written on a line of its own (an inline table, a value
    inside a list) it returns the line of the closest enclosing key or
    table; None when nothing matches (the key came from a default).
  * Best effort, never raises: it only runs on text that tomllib has
    already parsed, and a wrong guess costs a line number, not a check.
    The lines of multi-line strings are skipped, so text inside them is
    never taken for a key.
"""

from __future__ import annotations

import json
import re

__all__ = ["KeyLocator", "split_key"]

# TOML 1.0 keys: bare, "basic" (with escapes) or 'literal'.
_PART = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_DOTTED = rf"{_PART}(?:\s*\.\s*{_PART})*"
_HEADER = re.compile(rf"\s*\[\[?\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?$")
_ASSIGN = re.compile(rf"\s*({_DOTTED})\s*=")
_ONE_PART = re.compile(_PART)


def _unquote(part: str) -> str:
    if part.startswith('"'):
        try:
            return json.loads(part)
        except ValueError:  # a TOML-only escape such as \UXXXXXXXX
            return part[1:-1]
    if part.startswith("'"):
        return part[1:-1]
    return part


def split_key(dotted: str) -> tuple[str, ...]:
    """`a."b.c".d` -> ("a", "b.c", "d"); the inverse of `_checks.join`."""
    return tuple(_unquote(m.group()) for m in _ONE_PART.finditer(dotted))


class KeyLocator:
    """The line of every key and table written in one TOML text (see the contract)."""

    def __init__(self, text: str) -> None:
        self._lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        open_string: str | None = None  # the delimiter of a multi-line string we are in
        # An array of tables ([[plugins]]): each header is the next element,
        # ("plugins", "0"), ("plugins", "1")..., as errors spell them
        # (plugins[0].path); a [plugins.config] below is that element's.
        elements: dict[tuple[str, ...], int] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if open_string is not None:
                if open_string in line:
                    open_string = None
                continue
            header = _HEADER.match(line)
            if header:
                table = split_key(header.group(1))
                if line.lstrip().startswith("[["):
                    elements[table] = elements.get(table, -1) + 1
                    table = (*table, str(elements[table]))
                elif table[:-1] in elements:
                    table = (*table[:-1], str(elements[table[:-1]]), table[-1])
                self._remember(table, number)
                continue
            assign = _ASSIGN.match(line)
            if not assign:
                continue
            self._remember(table + split_key(assign.group(1)), number)
            rest = line[assign.end() :]
            for quote in ('"""', "'''"):
                if rest.count(quote) % 2 == 1:
                    open_string = quote
                    break

    def _remember(self, key: tuple[str, ...], number: int) -> None:
        # Every prefix too: `a.b.c = 1` also defines the tables a and a.b there.
        for n in range(1, len(key) + 1):
            self._lines.setdefault(key[:n], number)

    def line_of(self, dotted: str) -> int | None:
        key = split_key(dotted)
        for n in range(len(key), 0, -1):
            found = self._lines.get(key[:n])
            if found is not None:
                return found
        return None
