"""Unique Maildir file names, as the Maildir spec's recipe and Dovecot write them.

Contract:
  * `unique_base()` is `<seconds>.M<usec>P<pid>Q<counter>.<host>`: time,
    process and a per-process counter make it unique on this host; `/` and
    `:` in the host name are written as `\\057` and `\\072`, as the spec says
    (":" starts the info suffix, mailstore/flags.py).
  * `sized_name(base, size, vsize)` appends Dovecot's `,S=<size>` (the file's
    size as stored, LF line endings) and `,W=<vsize>` (the "virtual" size with
    CRLF line endings, which Dovecot uses for quota and IMAP RFC822.SIZE
    without reading the file).
  * The host name is read once per process (as Dovecot and Postfix do: one
    uname() less per file). No other state, no file-system access.
"""

from __future__ import annotations

import functools
import itertools
import os
import socket
import time

__all__ = ["sized_name", "unique_base"]

_counter = itertools.count(1)


@functools.cache
def _hostname() -> str:
    return socket.gethostname().replace("/", "\\057").replace(":", "\\072")


def unique_base(seconds: int | None = None) -> str:
    """A name no other file of this host gets (see the module contract).
    `seconds` replaces the time's seconds (IMAP APPEND and COPY keep a
    message's internal date there, mailstore/message.py); the process,
    its counter and the microseconds still make it unique."""
    now = time.time()
    sec = int(now)
    usec = int((now - sec) * 1_000_000)
    if seconds is not None:
        sec = seconds
    return f"{sec}.M{usec}P{os.getpid()}Q{next(_counter)}.{_hostname()}"


def sized_name(base: str, size: int, vsize: int) -> str:
    """`base` with Dovecot's size fields: `<base>,S=<size>,W=<vsize>`."""
    return f"{base},S={size},W={vsize}"
