"""What the store conformance suite (pigeon/testing/store_conformance.py) is made of.

Contract:
  * `Ctx` is what each check gets: the factory, a fresh place, the two
    nodes and the optional `break_next_commit` hook; `Ctx.store(node)` is an
    open store, closed when the block ends (how the suite "crashes").
  * Sample messages (`sample_content`: every octet value but CR and LF in
    the body, any size) and envelopes (`sample_envelope`: two recipients
    with DSN parameters, MAIL parameters, a client), committed whole by
    `commit_sample`, read back by `read_content`.
  * `fails(call)` is True when the call raises StoreError (a CorruptEntry
    does not count: a missing entry is not a corrupt one); `gone(store,
    id)`: no entry, envelope or content left; `refused(future)`.
  * Nothing here knows a backend: only queue/api.py.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pigeon.proto.params import MailParams, RcptParams
from pigeon.queue.api import QueueBackend
from pigeon.queue.model import Envelope, Recipient
from pigeon.vocab.errors import CorruptEntry, StoreError

__all__ = [
    "BIG",
    "COMMIT_TIMEOUT",
    "BreakCommit",
    "Ctx",
    "StoreFactory",
    "commit_sample",
    "fails",
    "gone",
    "read_content",
    "refused",
    "sample_content",
    "sample_envelope",
]

StoreFactory = Callable[[Path, str], QueueBackend]
COMMIT_TIMEOUT = 60.0
#: Past any in-memory threshold a backend may have (SQLite's is 128 KiB).
BIG = 300 * 1024


BreakCommit = Callable[[QueueBackend], None]


class Ctx:
    """What a check gets: the factory, its place, the two nodes, the hook."""

    def __init__(
        self, factory: StoreFactory, place: Path, nodes: tuple[str, str], hook: BreakCommit | None
    ) -> None:
        self.factory, self.place, self.nodes, self.break_next_commit = factory, place, nodes, hook

    @contextlib.contextmanager
    def store(self, node: str | None = None) -> Iterator[QueueBackend]:
        """An open store of `node` (default: the first); closed afterwards."""
        store = self.factory(self.place, node or self.nodes[0])
        store.open()
        try:
            yield store
        finally:
            store.close()


def sample_content(n: int, size: int = 0) -> bytes:
    head = f"Received: by conformance\r\nSubject: message {n}\r\n\r\n".encode()
    line = bytes(range(256)).replace(b"\r", b"").replace(b"\n", b"") + b"\r\n"
    body = b"body line\r\n" * (n % 7 + 1)
    while len(head) + len(body) < size:
        body += line
    return head + body


def sample_envelope(qid: str, n: int = 0, *, at: float | None = None) -> Envelope:
    return Envelope(
        qid,
        f"sender{n}@example.test",
        [
            Recipient(f"rcpt{n}@example.test", RcptParams(("FAILURE",), ("rfc822", "o@x.test"))),
            Recipient(f"other{n}@example.net"),
        ],
        params=MailParams(ret="HDRS", envid=f"env{n}"),
        received_at=time.time() - 1 if at is None else at,
        size=len(sample_content(n)),
        client_address="192.0.2.7",
        client_helo="client.example.test",
    )


def commit_sample(
    store: QueueBackend, n: int = 0, *, size: int = 0, at: float | None = None
) -> str:
    spool = store.new_spool()
    data = sample_content(n, size)
    for i in range(0, len(data), 16384):
        spool.write(data[i : i + 16384])
    env = sample_envelope(spool.queue_id, n, at=at)
    env.size = len(data)
    store.commit_async(spool, env).result(COMMIT_TIMEOUT)
    return spool.queue_id


def read_content(store: QueueBackend, qid: str) -> bytes:
    with store.content(qid).open() as fh:
        return fh.read()


def fails(call: Callable[[], object], error: type[Exception] = StoreError) -> bool:
    """True when `call()` raises `error` (and is not CorruptEntry when a
    StoreError is expected: a missing entry is not a corrupt one)."""
    try:
        call()
    except CorruptEntry:
        return error is CorruptEntry
    except error:
        return True
    return False


def gone(store: QueueBackend, qid: str) -> bool:
    """No entry, no envelope, no content for `qid`."""
    return (
        fails(lambda: store.load(qid))
        and fails(lambda: read_content(store, qid))
        and store.entry(qid) is None
        and qid not in store.states([qid])
    )


def refused(future: concurrent.futures.Future[None]) -> bool:
    return fails(lambda: future.result(COMMIT_TIMEOUT))
