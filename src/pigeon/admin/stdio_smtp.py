"""`sendmail -bs`: an SMTP session on standard input and output, queueing locally.

Contract:
  * Runs the same sans-IO `ServerSession` as the network listeners
    (pigeon.proto.server), driven synchronously over two file descriptors:
    bytes read from `fd_in` go to `receive_data`, every reply is written to
    `fd_out` at once, deadlines from `next_deadline()` bound each wait
    (select), EOF is `receive_eof()`.
  * Local submission policy: whoever can run `sendmail` is a local user, so
    every syntactically valid sender and recipient is accepted, as Postfix
    does for `sendmail -bs` (no relay check: the recipients are handed to
    the queue manager, which routes them).
  * Content: the session's DataReceived pieces go to a spool file opened at
    DataStarted, after our Received: field ("from local user ... with local
    id ..."); at DataFinished the envelope is committed (fsync, group
    commit) and only then 250 is answered: the same promise as SMTP.
    A store failure answers 451/452 4.3.x. Header fix-ups of plain
    `sendmail` (From/Date/Message-ID) are not applied in this mode. With a
    `signer` ([dkim]), the message is DKIM-signed as queued before the
    commit (a failure is 451 4.3.0).
  * Returns the list of queue ids accepted; the caller nudges the server.
  * `SocketStore(send)` stands in for the store when the user cannot write
    the queue: each message is handed to the running pigeon over the
    submit socket at DataFinished (pigeon.admin.submitsock, "raw": no
    fix-ups), and the 250 comes only after pigeon answered that it is
    durable; a refusal is a 451. With it, `add_received=False`: pigeon
    writes the Received: field itself, with the uid the kernel reports.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable

from pigeon.admin.localsubmit import received_field
from pigeon.proto import reply as R
from pigeon.proto.events import (
    NEED_DATA,
    ConnectionClosing,
    DataAborted,
    DataFinished,
    DataReceived,
    DataStarted,
    MailRequested,
    RcptRequested,
    TransactionReset,
)
from pigeon.proto.params import MailParams
from pigeon.proto.server import ServerSession, SessionConfig
from pigeon.queue.model import Envelope, Recipient
from pigeon.signing.signer import DkimSigner, SigningError
from pigeon.vocab.errors import StoreError

__all__ = ["run_stdio_session"]

READ_SIZE = 65536


class _MemorySpool:
    """A spool of SocketStore: the content in memory until DataFinished."""

    def __init__(self, envelope: Envelope | None = None) -> None:
        self.queue_id = ""  # known once pigeon has queued it
        self.envelope = envelope  # made at DataStarted, completed by _commit
        self.size = 0
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)

    def discard(self) -> None:
        self.parts = []


class SocketStore:
    """`new_spool` and `commit` over the submit socket (see the module contract)."""

    def __init__(self, send: Callable[[dict, bytes], dict]) -> None:
        self.send = send

    def new_spool(self, envelope: Envelope | None = None) -> _MemorySpool:
        # The envelope travels with the request at commit; the server's own
        # spool writes it into the queue file (pigeon/msgfile.py).
        return _MemorySpool(envelope)

    def commit(self, spool: _MemorySpool, envelope: Envelope) -> None:
        from pigeon.admin.localsubmit import SubmitError
        from pigeon.admin.submitsock import SubmitUnavailable

        request = {
            "recipients": [r.address for r in envelope.recipients],
            "sender": envelope.sender,
            "raw": True,
        }
        try:
            answer = self.send(request, b"".join(spool.parts))
        except (SubmitError, SubmitUnavailable) as exc:
            raise StoreError(str(exc)) from None
        spool.queue_id = answer["queue_id"]


def run_stdio_session(
    store,
    session_config: SessionConfig,
    *,
    fd_in: int = 0,
    fd_out: int = 1,
    uid: int | None = None,
    clock: Callable[[], float] = time.monotonic,
    wallclock: Callable[[], float] = time.time,
    add_received: bool = True,
    signer: DkimSigner | None = None,
) -> list[str]:
    """Serve one SMTP session over (fd_in, fd_out); see the module contract."""
    uid = os.getuid() if uid is None else uid
    session = ServerSession(session_config, now=clock())
    queued: list[str] = []
    spool = None
    spool_error: Exception | None = None

    def flush() -> None:
        out = session.data_to_send()
        while out:
            n = os.write(fd_out, out)
            out = out[n:]

    def discard() -> None:
        nonlocal spool
        if spool is not None:
            spool.discard()
            spool = None

    session.start(clock())
    flush()
    closing = False
    try:
        while not closing:
            while True:
                ev = session.next_event()
                if ev is NEED_DATA:
                    break
                if isinstance(ev, (MailRequested, RcptRequested)):
                    session.respond(None)  # local policy: accept
                elif isinstance(ev, DataStarted):
                    discard()
                    spool_error = None
                    try:
                        spool = store.new_spool(_envelope(session, wallclock()))
                        if add_received:
                            spool.write(
                                received_field(
                                    hostname=session_config.hostname,
                                    queue_id=spool.queue_id,
                                    uid=uid,
                                    timestamp=wallclock(),
                                )
                            )
                        session.respond(None)
                    except StoreError as exc:
                        spool = None
                        session.respond(R.INSUFFICIENT_STORAGE if exc.disk_full else R.LOCAL_ERROR)
                elif isinstance(ev, DataReceived):
                    if spool is not None and spool_error is None:
                        try:
                            spool.write(ev.data)
                        except StoreError as exc:
                            spool_error = exc  # keep reading; answer 4xx at the end
                elif isinstance(ev, DataFinished):
                    flush()
                    reply, qid = _commit(store, session, spool, spool_error, ev, wallclock, signer)
                    spool = None  # committed or discarded by _commit
                    if qid is not None:
                        queued.append(qid)
                    session.respond(reply)
                elif isinstance(ev, (DataAborted, TransactionReset)):
                    discard()
                elif isinstance(ev, ConnectionClosing):
                    closing = True
            flush()
            if closing:
                break
            deadline = session.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - clock())
            ready, _, _ = select.select([fd_in], [], [], timeout)
            if not ready:
                session.on_timer(clock())
                continue
            data = os.read(fd_in, READ_SIZE)
            if data:
                session.receive_data(data, clock())
            else:
                session.receive_eof()
    finally:
        discard()
    return queued


def _envelope(session: ServerSession, now: float) -> Envelope:
    """The envelope as known when DATA starts (it goes into a spilled spool's
    preamble, pigeon/msgfile.py); `_commit` completes it."""
    return Envelope(
        "",
        str(session.sender) if session.sender is not None else "",
        [Recipient(str(a), p) for a, p in session.recipients],
        params=session.mail_params or MailParams(),
        received_at=now,
        protocol="local",
    )


def _commit(
    store,
    session: ServerSession,
    spool,
    spool_error,
    ev: DataFinished,
    wallclock: Callable[[], float],
    signer: DkimSigner | None = None,
) -> tuple[R.Reply, str | None]:
    """Sign (with `signer`) and commit the spool (durable before the 250);
    (reply, queue id or None)."""
    if spool is None:
        return R.LOCAL_ERROR, None
    if spool_error is not None:
        spool.discard()
        return (
            R.INSUFFICIENT_STORAGE if getattr(spool_error, "disk_full", False) else R.LOCAL_ERROR
        ), None
    env = spool.envelope  # made at DataStarted, now final
    try:
        if signer:  # DKIM over the message as queued, signatures on top (pigeon.signing)
            with spool.reader(0) as content:
                for field in signer.signatures(content.read()):
                    spool.prepend(field)
        env.received_at, env.size, env.eight_bit = wallclock(), spool.size, ev.eight_bit
        store.commit(spool, env)
    except StoreError as exc:
        spool.discard()
        return (R.INSUFFICIENT_STORAGE if exc.disk_full else R.LOCAL_ERROR), None
    except (OSError, SigningError):  # the spool unreadable, a key dkimpy refuses
        spool.discard()
        return R.LOCAL_ERROR, None
    return R.queued(spool.queue_id), spool.queue_id
