"""Where a mailbox lives: `<mailbox_root>/<domain>/<local>/`, every part one safe name.

Contract:
  * `safe_component(text)` makes `text` one safe path component: lowercased,
    and every character outside [a-z0-9._+-] (each UTF-8 octet of non-ASCII
    text too) percent-encoded as %XX. A leading "." is encoded as well, so
    the result can be neither hidden, nor "." / "..", nor contain "/".
    Empty input: ValueError.
  * `maildir_path(root, local, domain)` is the Maildir of `local@domain`.
    Local parts are case-folded: pigeon treats local mailboxes
    case-insensitively, like most MTAs, although RFC 5321 §2.4 allows
    case-sensitive ones. E.g. "a/b" becomes "a%2Fb", ".." becomes "%2E.".
  * Pure: no file-system access (the router calls it for RCPT checks).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["maildir_path", "safe_component"]

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._+-")


def safe_component(text: str) -> str:
    """One safe path component for `text` (see the module contract)."""
    if not text:
        raise ValueError("empty mailbox name")
    out = []
    for ch in text.lower():
        if ch in _SAFE:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
    if out[0] == ".":
        out[0] = "%2E"
    return "".join(out)


def maildir_path(mailbox_root: Path, local: str, domain: str) -> Path:
    """The Maildir of `local@domain`: `<mailbox_root>/<domain>/<local>/`."""
    return Path(mailbox_root) / safe_component(domain) / safe_component(local)
