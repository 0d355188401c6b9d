"""The errors of the mailbox API (mailstore/mailbox.py).

Contract: `FolderError(text)` is something the client asked that cannot be
done (no such mailbox, a bad name, a name in use, INBOX deleted...): the
IMAP layer answers NO with the text. `MessageGone` (a FolderError): the
message was expunged by another session or program. Disk failures stay
OSError.
"""

from __future__ import annotations

__all__ = ["FolderError", "MessageGone"]


class FolderError(Exception):
    """A request about a folder that cannot be done; str() is the reason."""


class MessageGone(FolderError):
    """The message no longer exists."""
