"""Writing messages into Maildir folders (the Maildir spec, Dovecot-compatible).

Contract:
  * `deliver_batch(jobs)` delivers many messages at once, each either into
    exactly one complete file in `<maildir>/new/`, or not at all (an error
    for that job, nothing in `new/`; a stray file in `tmp/` at worst, which
    MUAs and Dovecot ignore and clean up after 36 hours, as the Maildir spec
    describes). A job is durable when the batch returns without an error
    for it: its file is fsync'ed before it is linked into new/, and each
    distinct new/ directory is fsync'ed ONCE per batch (then the queue
    manager may mark the recipient delivered and drop its copy). Then the
    Maildir's new mail is announced (mailstore/notify.py: IMAP IDLE sessions
    of this process wake up), once per distinct Maildir per batch.
  * The content is streamed in chunks from the job's `MessageContent`
    (pigeon/queue/api.py); a message is never held whole in memory.
  * This module never touches the queue. Where a mailbox lives, its
    directories and its file names are pigeon.mailstore's; the agent that
    calls this for the queue manager is delivery/local.py.

What is written, in order:
  1. `Return-Path: <reverse-path>` (RFC 5321 §4.4: the delivery MTA adds it;
     `<>` for the null reverse-path), so MUAs and Sieve see the envelope sender.
  2. `X-Original-To: <address>` if given: the envelope recipient before
     alias expansion, when it differs from the final one (Postfix's local(8)
     writes the same field), so a catch-all mailbox shows whom mail was for.
  3. `Delivered-To: <address>` if given (the final address after alias
     expansion, extension included, as Postfix's local(8) writes; a
     loop-detection aid).
  4. The queued content (which already carries our Received: on top).

Line endings: the queue stores the message as it came over the wire (CRLF).
Maildir files conventionally hold LF line endings (the mailbox is a Unix text
file; Postfix local(8)/virtual(8) and Dovecot's LDA write LF), and Dovecot
reads either. We store LF, converting CRLF to LF while copying; a CR not
followed by LF is left as is (the SMTP side rejects bare CR anyway). The
file name carries both sizes (mailstore/names.py).

Directories: a Maildir made sure of before (mailstore/maildir.py) costs no
mkdir()/stat(); if it vanished meanwhile (an administrator removed the
mailbox), the write fails with ENOENT on tmp/ or new/, and the Maildir is
forgotten, created again and the job retried once.

Failure modes: per job, the OSError (ENOSPC, EACCES, EIO), or the StoreError
of content that cannot be read; `failure_status(err)` gives its RFC 3463
status. A full or failing disk is always transient (never a bounce): ENOSPC
is 4.3.1 "mail system full", EDQUOT (the mailbox's quota) 4.2.2 "mailbox
full", EIO, EROFS and EFBIG 4.3.0; the first and the last three are faults
of our storage, retried after the queue manager's short storage back-off,
EDQUOT waits the ordinary backoff like any other deferral (the user has to
make room).
"""

from __future__ import annotations

import concurrent.futures
import errno
import functools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from pigeon.fsutil import fsync_dir
from pigeon.mailstore import ensure_maildir, forget_maildir, sized_name, unique_base
from pigeon.mailstore.notify import announce
from pigeon.msgfile import write_all
from pigeon.queue.api import MessageContent
from pigeon.vocab import StoreError

__all__ = ["CHUNK", "MaildirJob", "copy_crlf_to_lf", "deliver_batch", "failure_status"]

CHUNK = 64 * 1024
T = TypeVar("T")

_STORAGE_ERRNOS = frozenset({errno.EIO, errno.EROFS, errno.EFBIG})
_EDQUOT = getattr(errno, "EDQUOT", -1)

#: What one job can fail with (module contract, failure modes).
JobError = OSError | StoreError


def failure_status(err: JobError) -> tuple[str, str, bool]:
    """(RFC 3463 status, reason, fault of our storage?) for a failed delivery
    (module doc, failure modes)."""
    if isinstance(err, StoreError):
        # The queue's content could not be read: its reason is the OSError's.
        cause = err.__context__
        if isinstance(cause, OSError):
            return "4.3.0", cause.strerror or str(cause), err.storage_fault
        return "4.3.0", str(err), err.storage_fault
    reason = err.strerror or str(err) or type(err).__name__
    if err.errno == errno.ENOSPC:
        return "4.3.1", f"mail system full: {reason}", True  # X.3.1
    if err.errno == _EDQUOT:
        return "4.2.2", f"mailbox full: {reason}", False  # X.2.2
    return "4.3.0", reason, err.errno in _STORAGE_ERRNOS


def copy_crlf_to_lf(src: BinaryIO, dst: BinaryIO, chunk_size: int = CHUNK) -> tuple[int, int]:
    """Copy file object src to dst converting CRLF -> LF, `chunk_size` octets
    at a time; return (octets written, LF count)."""
    size = lines = 0
    carry = b""
    while True:
        chunk = src.read(chunk_size)
        if not chunk:
            break
        data = carry + chunk
        # A CR at the end of a chunk may be the first half of a CRLF split
        # across reads: hold it back until we see the next octet.
        if data.endswith(b"\r"):
            data, carry = data[:-1], b"\r"
        else:
            carry = b""
        data = data.replace(b"\r\n", b"\n")
        dst.write(data)
        size += len(data)
        lines += data.count(b"\n")
    if carry:
        dst.write(carry)
        size += len(carry)
    return size, lines


@dataclass(frozen=True, slots=True)
class MaildirJob:
    """One message for one Maildir (see `deliver_batch`)."""

    maildir: Path
    content: MessageContent
    return_path: str
    delivered_to: str | None = None
    original_to: str | None = None  # the recipient before alias expansion, if different


def _in_maildir(maildir: str, fsync: bool, attempt: Callable[[], T]) -> T:
    """Run `attempt` with `maildir` made sure of; if the Maildir (or its
    tmp/ or new/) vanished since we last made sure of it, create it again
    and retry once (module doc)."""
    ensure_maildir(maildir, fsync=fsync)
    try:
        return attempt()
    except FileNotFoundError:
        if os.path.isdir(os.path.join(maildir, "tmp")) and os.path.isdir(
            os.path.join(maildir, "new")
        ):
            raise  # not our directories
    forget_maildir(maildir)
    ensure_maildir(maildir, fsync=fsync)
    return attempt()


# Paths below are plain strings (os.path), not pathlib: every delivered
# message builds several, and pathlib cost about 2,500 Python opcodes per
# message here, more than all the rest of this module.


class _FdWriter:
    """`write()` onto a raw descriptor, every octet (msgfile.write_all)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> None:
        write_all(self.fd, [data])


#: Content up to this size is read whole and written with one write(): each
#: system call of this worker thread gives the GIL away and takes it back,
#: which costs a thread switch while the event loop is busy (issue 16).
WHOLE = 256 * 1024
_O_TMP = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _write_tmp(job: MaildirJob) -> tuple[str, str, int]:
    """Write `tmp/<unique>` (not synced: the batch syncs); return it, its name
    in new/, and its descriptor, still open for that fsync."""
    base = unique_base()
    tmp_path = os.path.join(job.maildir, "tmp", base)
    header = f"Return-Path: <{job.return_path}>\n"
    if job.original_to:
        header += f"X-Original-To: {job.original_to}\n"
    if job.delivered_to:
        header += f"Delivered-To: {job.delivered_to}\n"
    head = header.encode("utf-8")
    # Mode 0600 at creation (no fchmod); the descriptor stays open for the
    # fsync (no second open): five system calls per copy with link and unlink.
    fd = os.open(tmp_path, _O_TMP, 0o600)
    try:
        out = _FdWriter(fd)
        with job.content.open() as src:
            if job.content.size <= WHOLE:
                body = src.read().replace(b"\r\n", b"\n")
                write_all(fd, [head, body])
                size, lines = len(head) + len(body), head.count(b"\n") + body.count(b"\n")
            else:
                out.write(head)
                size, lines = copy_crlf_to_lf(src, out)  # type: ignore[arg-type]
                size += len(head)
                lines += head.count(b"\n")
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp_path)  # leave nothing half-done: the caller retries
        raise
    return tmp_path, sized_name(base, size, size + lines), fd


def _publish(new_dir: str, tmp_path: str, name: str) -> str:
    """Move a complete, synced tmp/ file into `new_dir` under `name`; return its path."""
    final = os.path.join(new_dir, name)
    try:
        # link() then unlink() per the Maildir spec: link fails rather than
        # overwrite if the name somehow exists. Fall back to rename() on file
        # systems without hard links.
        try:
            os.link(tmp_path, final)
        except FileExistsError:
            raise
        except OSError:
            os.rename(tmp_path, final)
    except BaseException:
        _unlink_quietly(tmp_path)
        raise
    _unlink_quietly(tmp_path)
    return final


def _fsync_fd(fd: int) -> None:
    """fsync an open copy and close it (closed whatever happens)."""
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: Parallel fsyncs of one batch: the file system shares one journal commit
#: among concurrent fsyncs (the queue store's committer does the same),
#: where one after the other each waits for its own.
FSYNC_THREADS = 16
_fsync_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _sync_all(fds: list[int]) -> list[OSError | None]:
    """fsync and close every descriptor (in parallel for a batch of several)."""
    global _fsync_pool

    def one(fd: int) -> OSError | None:
        try:
            _fsync_fd(fd)
        except OSError as e:
            return e
        return None

    if len(fds) <= 1:
        return [one(fd) for fd in fds]
    with _pool_lock:
        if _fsync_pool is None:
            _fsync_pool = concurrent.futures.ThreadPoolExecutor(
                FSYNC_THREADS, thread_name_prefix="pigeon-maildir-fsync"
            )
    first, rest = fds[0], fds[1:]
    futures = [_fsync_pool.submit(one, fd) for fd in rest]
    return [one(first)] + [f.result() for f in futures]


def deliver_batch(
    jobs: list[MaildirJob], *, fsync: bool = True, clock: Callable[[], float] = time.time
) -> list[tuple[float, float, JobError | None]]:
    """Deliver every job: write all tmp/ files, fsync them in parallel, link
    them into new/, then fsync each distinct `new/` directory ONCE.

    Per job: (started, ended, the error or None). A job is done only when
    its file and its directory entry are on disk, and a file appears in
    new/ only once it is complete and synced (Maildir: new/ holds whole
    messages). If a directory's fsync fails, the files just linked there
    are removed again and their jobs fail with that error (the caller
    defers and retries them).
    """
    started_at = [clock()] * len(jobs)
    errors: list[JobError | None] = [None] * len(jobs)
    written: list[tuple[int, str, str]] = []
    fds: list[int] = []
    for i, job in enumerate(jobs):
        started_at[i] = clock()
        try:
            tmp, name, fd = _in_maildir(
                os.fspath(job.maildir), fsync, functools.partial(_write_tmp, job)
            )
            written.append((i, tmp, name))
            fds.append(fd)
        except (OSError, StoreError) as e:
            errors[i] = e
    if fsync:
        synced = _sync_all(fds)  # closes them too
        for (i, tmp, _), err in zip(written, synced):
            if err is not None:
                errors[i] = err
                _unlink_quietly(tmp)
        written = [w for w, err in zip(written, synced) if err is None]
    else:
        for fd in fds:
            os.close(fd)
    linked: dict[str, list[tuple[int, str]]] = {}
    for i, tmp, name in written:
        maildir = os.fspath(jobs[i].maildir)
        new_dir = os.path.join(maildir, "new")
        try:
            final = _publish(new_dir, tmp, name)
        except OSError as e:
            if isinstance(e, FileNotFoundError):
                forget_maildir(maildir)  # new/ vanished: the retry recreates it
            errors[i] = e
            continue
        linked.setdefault(new_dir, []).append((i, final))
    for directory, entries in linked.items():
        if fsync:
            try:
                fsync_dir(directory)
            except OSError as e:
                for i, final in entries:
                    _unlink_quietly(final)
                    errors[i] = e
                continue
        announce(os.path.dirname(directory))  # wake IMAP IDLE (mailstore/notify.py)
    ended = clock()
    return [(started_at[i], ended, errors[i]) for i in range(len(jobs))]


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
