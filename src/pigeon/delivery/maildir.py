"""Local delivery into Maildir folders (the Maildir spec, Dovecot-compatible).

Contract:
  * `deliver_to_maildir()` either leaves exactly one complete message in
    `<maildir>/new/` and returns its path, or raises `OSError` and leaves
    nothing in `new/` (a stray file in `tmp/` at worst, which MUAs and Dovecot
    ignore and clean up after 36 hours, as the Maildir spec describes).
  * The message is durable when the function returns (fsync of the file, then
    of `new/`; of each directory we had to create, its parent too), so the
    queue manager may mark the recipient delivered and drop its copy.
  * The content is streamed in chunks; a message is never held whole in memory.
  * This module never touches the queue; it reads the content file it is given
    (with pigeon.msgfile.open_message, which skips the queue file's preamble).

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
followed by LF is left as is (the SMTP side rejects bare CR anyway). Dovecot's
`,S=<size>` is the size of the file as stored (LF), and `,W=<size>` the
"virtual" size with CRLF line endings, which Dovecot uses for quota and IMAP
RFC822.SIZE without reading the file.

File names: `<seconds>.M<usec>P<pid>Q<counter>.<host>,S=<size>,W=<vsize>`
(the Maildir spec's unique-name recipe as Dovecot and Postfix use it; `/` and
`:` in the host name are written as `\\057` and `\\072`, as the spec says).

Mailbox paths: `<mailbox_root>/<domain>/<local>/`, see `maildir_path()`.

Directories: `ensure_maildir()` remembers, process-wide, the Maildirs it has
made sure of, so a delivery to a known mailbox costs no mkdir()/stat() calls.
If such a directory vanished meanwhile (an administrator removed the
mailbox), the delivery fails with ENOENT on tmp/ or new/; it then forgets
the directory, creates it again and retries once.

Failure modes: any OSError (ENOSPC, EACCES, EIO) propagates to the caller,
which records a temporary failure and retries later; `failure_status(err)`
gives its RFC 3463 status. A full or failing disk is always transient
(never a bounce): ENOSPC is 4.3.1 "mail system full", EDQUOT (the mailbox's
quota) 4.2.2 "mailbox full", EIO, EROFS and EFBIG 4.3.0; the first and the
last three are faults of our storage, retried after the queue manager's
short storage back-off, EDQUOT waits the ordinary backoff like any other
deferral (the user has to make room).
"""

from __future__ import annotations

import concurrent.futures
import errno
import functools
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pigeon.fsutil import fsync_dir
from pigeon.msgfile import open_message

CHUNK = 64 * 1024
T = TypeVar("T")
_counter = itertools.count(1)
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._+-")

#: Maildirs whose tmp/ new/ cur/ exist (made durable by us or found): see the
#: module doc. A plain set is thread-safe enough here (single add/discard/in
#: operations under the GIL); the bound only caps memory on huge sites.
_KNOWN_MAILDIRS: set[str] = set()
_KNOWN_MAX = 100_000


_STORAGE_ERRNOS = frozenset({errno.EIO, errno.EROFS, errno.EFBIG})
_EDQUOT = getattr(errno, "EDQUOT", -1)


def failure_status(err: OSError) -> tuple[str, str, bool]:
    """(RFC 3463 status, reason, fault of our storage?) for a failed delivery
    (module doc, failure modes)."""
    reason = err.strerror or str(err) or type(err).__name__
    if err.errno == errno.ENOSPC:
        return "4.3.1", f"mail system full: {reason}", True  # X.3.1
    if err.errno == _EDQUOT:
        return "4.2.2", f"mailbox full: {reason}", False  # X.2.2
    return "4.3.0", reason, err.errno in _STORAGE_ERRNOS


def safe_component(text: str) -> str:
    """Make `text` one safe path component: lowercased, and every character
    outside [a-z0-9._+-] (including each UTF-8 octet of non-ASCII text)
    percent-encoded as %XX. A leading "." is encoded too, so the result can be
    neither hidden, nor "." / "..", nor contain "/". Empty input: ValueError.
    """
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
    """The Maildir of `local@domain`: `<mailbox_root>/<domain>/<local>/`.

    Both parts go through `safe_component()`: local parts are case-folded
    (pigeon treats local mailboxes case-insensitively, like most MTAs despite
    RFC 5321 §2.4 allowing case-sensitivity) and e.g. "a/b" becomes "a%2Fb",
    ".." becomes "%2E.".
    """
    return Path(mailbox_root) / safe_component(domain) / safe_component(local)


@functools.cache
def _hostname() -> str:
    # Read once per process, as Dovecot and Postfix do: one uname() less per file.
    return socket.gethostname().replace("/", "\\057").replace(":", "\\072")


def _unique_base() -> str:
    now = time.time()
    sec = int(now)
    usec = int((now - sec) * 1_000_000)
    return f"{sec}.M{usec}P{os.getpid()}Q{next(_counter)}.{_hostname()}"


def ensure_maildir(maildir: Path, *, fsync: bool = True) -> None:
    """Create `maildir` and its tmp/ new/ cur/ (mode 0700) if missing.

    Directories we create are made durable (fsync of their parent), otherwise
    a crash could lose the directory holding a message we reported delivered.
    A Maildir this process already made sure of is not looked at again
    (module doc: `deliver_to_maildir` handles one that vanished).
    """
    key = os.fspath(maildir)
    if key in _KNOWN_MAILDIRS:
        return
    created: list[Path] = []
    missing = []
    p = Path(maildir)
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
            created.append(d)
        except FileExistsError:
            pass
    for sub in ("tmp", "new", "cur"):
        try:
            (maildir / sub).mkdir(mode=0o700)
            created.append(maildir / sub)
        except FileExistsError:
            pass
    if fsync:
        for parent in {d.parent for d in created}:
            fsync_dir(parent)
    if len(_KNOWN_MAILDIRS) >= _KNOWN_MAX:
        _KNOWN_MAILDIRS.clear()
    _KNOWN_MAILDIRS.add(key)


def forget_maildir(maildir: Path) -> None:
    """Make the next `ensure_maildir(maildir)` look at the disk again."""
    _KNOWN_MAILDIRS.discard(os.fspath(maildir))


def copy_crlf_to_lf(src, dst, chunk_size: int = CHUNK) -> tuple[int, int]:
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


def deliver_to_maildir(
    maildir: Path,
    source: Path,
    return_path: str,
    *,
    fsync: bool = True,
    delivered_to: str | None = None,
) -> Path:
    """Deliver the content file `source` into `maildir`; return the new file's path.

    `return_path` is the envelope sender ("" for the null reverse-path).
    One message at a time; the queue manager uses `deliver_batch`.
    """
    maildir = Path(maildir)
    return _in_maildir(
        maildir, fsync, lambda: _deliver_once(maildir, source, return_path, fsync, delivered_to)
    )


def _in_maildir(maildir: Path, fsync: bool, attempt: Callable[[], T]) -> T:
    """Run `attempt` with `maildir` made sure of; if the Maildir (or its
    tmp/ or new/) vanished since we last made sure of it, create it again
    and retry once (module doc)."""
    ensure_maildir(maildir, fsync=fsync)
    try:
        return attempt()
    except FileNotFoundError:
        if (maildir / "tmp").is_dir() and (maildir / "new").is_dir():
            raise  # not our directories: e.g. the source is gone
    forget_maildir(maildir)
    ensure_maildir(maildir, fsync=fsync)
    return attempt()


def _deliver_once(
    maildir: Path, source: Path, return_path: str, fsync: bool, delivered_to: str | None
) -> Path:
    tmp_path, name = _write_tmp(maildir, source, return_path, delivered_to, fsync=fsync)
    final = _publish(maildir, tmp_path, name)
    if fsync:
        try:
            fsync_dir(maildir / "new")
        except BaseException:
            _unlink_quietly(final)
            raise
    return final


def _write_tmp(
    maildir: Path,
    source: Path,
    return_path: str,
    delivered_to: str | None,
    *,
    fsync: bool,
    original_to: str | None = None,
) -> tuple[Path, str]:
    """Write `tmp/<unique>` (fsynced if `fsync`); return it and its name in new/."""
    base = _unique_base()
    tmp_path = maildir / "tmp" / base
    header = f"Return-Path: <{return_path}>\n"
    if original_to:
        header += f"X-Original-To: {original_to}\n"
    if delivered_to:
        header += f"Delivered-To: {delivered_to}\n"
    head = header.encode("utf-8")
    try:
        # Explicit buffering: the default one asks isatty() (an ioctl) per file.
        # The source is read in CHUNK reads anyway, so it needs no buffer.
        # open_message: the queue file begins with its preamble (pigeon/msgfile.py).
        src, _ = open_message(source, buffering=0)
        with src, open(tmp_path, "xb", buffering=CHUNK) as dst:
            os.fchmod(dst.fileno(), 0o600)
            dst.write(head)
            size, lines = copy_crlf_to_lf(src, dst)
            size += len(head)
            lines += head.count(b"\n")
            dst.flush()
            if fsync:
                os.fsync(dst.fileno())
    except BaseException:
        _unlink_quietly(tmp_path)  # leave nothing half-done: the caller retries
        raise
    return tmp_path, f"{base},S={size},W={size + lines}"


def _publish(maildir: Path, tmp_path: Path, name: str) -> Path:
    """Move a complete, synced tmp/ file into new/ under `name`; return its path."""
    final = maildir / "new" / name
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


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
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


def _sync_all(paths: list[Path]) -> list[OSError | None]:
    global _fsync_pool

    def one(path: Path) -> OSError | None:
        try:
            _fsync_path(path)
        except OSError as e:
            return e
        return None

    if len(paths) <= 1:
        return [one(p) for p in paths]
    with _pool_lock:
        if _fsync_pool is None:
            _fsync_pool = concurrent.futures.ThreadPoolExecutor(
                FSYNC_THREADS, thread_name_prefix="pigeon-maildir-fsync"
            )
    first, rest = paths[0], paths[1:]
    futures = [_fsync_pool.submit(one, p) for p in rest]
    return [one(first)] + [f.result() for f in futures]


@dataclass(frozen=True, slots=True)
class MaildirJob:
    """One message for one Maildir (see `deliver_batch`)."""

    maildir: Path
    source: Path
    return_path: str
    delivered_to: str | None = None
    original_to: str | None = None  # the recipient before alias expansion, if different


def deliver_batch(
    jobs: list[MaildirJob], *, fsync: bool = True, clock: Callable[[], float] = time.time
) -> list[tuple[float, float, OSError | None]]:
    """Deliver every job: write all tmp/ files, fsync them in parallel, link
    them into new/, then fsync each distinct `new/` directory ONCE.

    Per job: (started, ended, the OSError or None). A job is done only when
    its file and its directory entry are on disk, and a file appears in
    new/ only once it is complete and synced (Maildir: new/ holds whole
    messages). If a directory's fsync fails, the files just linked there
    are removed again and their jobs fail with that error (the caller
    defers and retries them).
    """
    started_at = [clock()] * len(jobs)
    errors: list[OSError | None] = [None] * len(jobs)
    written: list[tuple[int, Path, str]] = []
    for i, job in enumerate(jobs):
        started_at[i] = clock()
        try:
            written.append((i, *_write_tmp_ensured(job, fsync=fsync)))
        except OSError as e:
            errors[i] = e
    if fsync:
        synced = _sync_all([tmp for _, tmp, _ in written])
        for (i, tmp, _), err in zip(written, synced):
            if err is not None:
                errors[i] = err
                _unlink_quietly(tmp)
        written = [w for w, err in zip(written, synced) if err is None]
    linked: dict[Path, list[tuple[int, Path]]] = {}
    for i, tmp, name in written:
        maildir = Path(jobs[i].maildir)
        try:
            final = _publish(maildir, tmp, name)
        except OSError as e:
            if isinstance(e, FileNotFoundError):
                forget_maildir(maildir)  # new/ vanished: the retry recreates it
            errors[i] = e
            continue
        linked.setdefault(maildir / "new", []).append((i, final))
    if fsync:
        for directory, entries in linked.items():
            try:
                fsync_dir(directory)
            except OSError as e:
                for i, final in entries:
                    _unlink_quietly(final)
                    errors[i] = e
    ended = clock()
    return [(started_at[i], ended, errors[i]) for i in range(len(jobs))]


def _write_tmp_ensured(job: MaildirJob, *, fsync: bool) -> tuple[Path, str]:
    """`_write_tmp` (not synced yet: `deliver_batch` syncs the batch) into a
    Maildir made sure of."""
    maildir = Path(job.maildir)
    return _in_maildir(
        maildir,
        fsync,
        lambda: _write_tmp(
            maildir,
            job.source,
            job.return_path,
            job.delivered_to,
            fsync=False,
            original_to=job.original_to,
        ),
    )


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
