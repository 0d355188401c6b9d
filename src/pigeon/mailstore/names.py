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
  * `arrival_key(base)` orders unique names by arrival: the seconds and the
    microseconds compared as numbers (they are not zero-padded: "M21960"
    of a second came before its "M128859"), then the counter, then the name
    (names of other programs' recipes sort by their leading seconds).
  * The host name is read once per process (as Dovecot and Postfix do: one
    uname() less per file). No other state, no file-system access.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import socket
import time

__all__ = ["arrival_key", "sized_name", "unique_base"]

_ARRIVAL = re.compile(r"(\d+)\.(?:M(\d+))?(?:P\d+)?(?:Q(\d+))?")

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


def arrival_key(base: str) -> tuple[int, int, int, str]:
    """A sort key putting unique names in arrival order (module contract)."""
    found = _ARRIVAL.match(base)
    if found is None:
        return (0, 0, 0, base)
    sec, usec, counter = found.groups()
    return (int(sec), int(usec or 0), int(counter or 0), base)
