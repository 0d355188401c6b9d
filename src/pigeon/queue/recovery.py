"""Recovery: making disk and database agree at start-up, after any crash.

Contract:
  * `recover(...)` (the store's `recover()`, queue/api.py) runs once at
    start-up, before the manager delivers: every tmp/ file of a spool not
    being received is deleted (never acknowledged); each msg/ file without
    a row is judged by the table below and deleted, rebuilt or
    quarantined; rows without a file go to 'corrupt'; 'active' rows
    claimed by this node (queue/state.py, "Claims": with one node, every
    'active' row) become 'incoming' again, due at once; claims of other
    nodes are kept. All database changes are ONE transaction on the FULL
    (fsync'ed) connection. `adopt_all` (`pigeon queue rebuild`): rebuild
    every file without a row whatever its store id.
  * Rule 2: a content file without a row whose preamble carries THIS
    database's store id was never acknowledged (its commit never finished,
    queue/commit.py Rule 1) or was being removed (queue/store.py Rule 4):
    delete it; so is every tmp/ file. Recovery runs with the committer
    paused (`Committer.paused()`: this process's batches and, through
    queue.lock, other processes'), so it never judges a file whose row is
    about to be inserted. Spools this process is still receiving are
    spared (`Spools.live()`: the tmp/ listing is taken before that
    snapshot, and a spool is live before its file exists); spools of other
    processes that spilled to tmp/ are not protected: recovery must still
    run before other processes receive.
  * Rule 5: content is never deleted because the database lost track of
    it. The database can lose track of files (queue.db deleted, truncated
    to 0 bytes, replaced by an older backup or an empty file). Every
    content file therefore carries its envelope and the store id of the
    database it was committed under (pigeon/msgfile.py); the store id is
    random, made when queue.db gets its schema (queue/dbfile.py), so a new
    or recreated database never shares it with older files. A file with
    another store id is ADOPTED: its row is rebuilt from the preamble
    ('incoming', due at once), one log line gives the count, and the
    file's store id is rewritten to this database's after the rows are
    durable (a crash in between leaves rows, never an adopted file that
    Rule 2 would take for a leftover). What cannot be rebuilt is
    quarantined: a 'corrupt' row, the file kept in msg/ (`pigeon queue
    list`, `show`, `delete` see it).
  * What a rebuild cannot know, it errs towards delivering: per-recipient
    status lives only in the database, so a rebuilt message goes to all
    its recipients again (some may get it twice, none zero times);
    attempts, the delay warning and hold are forgotten; received_at (hence
    the expiry) is kept. Captured mail (`Envelope.capture`, docs/capture.md)
    is rebuilt in 'capture', never due: it must not be delivered.
    `pigeon queue rebuild` (queue/rebuild.py) adopts
    every file without a row whatever its store id, for a queue.db
    restored from a backup, whose store id is the files' own.
  * `decide()` is the decision table; it only looks at what the file's
    preamble says (pigeon/msgfile.py) and at the database's store id:

      file (no row)                          normal start    pigeon queue rebuild
      ------------------------------------   -------------   --------------------
      empty, or cut inside its first line    DELETE          DELETE
      this database's store id               DELETE (Rule 2) as "other store id"
      other store id, envelope readable      ADOPT           ADOPT
      other store id, envelope damaged/null  QUARANTINE      QUARANTINE
      damaged first line, unknown version    QUARANTINE      QUARANTINE
      no preamble (older format)             QUARANTINE      QUARANTINE
      name is not a queue ID                 IGNORE          IGNORE

    A file WITH a row is always kept (KEEP): the row is the authority.
    A database that was missing or empty got a new store id when it was
    created (queue/dbfile.py), so every file is "other store id" then.
  * `judge_file()` reads one file's preamble and applies the table; for
    ADOPT it also builds the envelope: the one in the preamble, with `size`
    taken from the file, and `eight_bit` found by scanning the message when
    the preamble holds the draft written at spill time (FLAG_DRAFT). An
    envelope that does not load, or names another queue ID, turns ADOPT
    into QUARANTINE. It never deletes or changes anything itself.
  * Errors: a file that cannot be opened or read is IGNORE (left alone, with
    the reason), never DELETE. `recover()` raises StoreError when the
    database or a directory cannot be read or written; nothing is then
    half-changed in the database (files already judged DELETE are gone:
    they held nothing acknowledged).
"""

from __future__ import annotations

import concurrent.futures
import enum
import json
import logging
import os
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pigeon import msgfile
from pigeon.msgfile import Preamble, PreambleError, has_eight_bit, read_preamble
from pigeon.queue.api import RecoveryReport
from pigeon.queue.commit import INSERT_SQL, PARALLEL_MIN, Committer
from pigeon.queue.dbfile import Db, transaction
from pigeon.queue.files import ContentFiles
from pigeon.queue.health import store_error
from pigeon.queue.model import Envelope
from pigeon.queue.spool import Spools
from pigeon.queue.state import HOME_NODE
from pigeon.vocab.states import QueueState

__all__ = ["Action", "Verdict", "decide", "judge_file", "recover", "QUEUE_ID"]

log = logging.getLogger("pigeon.queue")

#: What may be a queue ID (the operator commands accept the same).
QUEUE_ID = re.compile(r"[0-9A-Z]{4,64}")


class Action(str, enum.Enum):
    KEEP = "keep"  # it has a row: nothing to do
    DELETE = "delete"  # never acknowledged, already removed, or no message in it
    ADOPT = "adopt"  # the database lost track of it: rebuild its row
    QUARANTINE = "quarantine"  # cannot be rebuilt, must not be deleted: a 'corrupt' row
    IGNORE = "ignore"  # not a queue file (or unreadable): left alone


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    reason: str
    envelope: Envelope | None = None  # ADOPT: the rebuilt envelope


def decide(
    *,
    has_row: bool,
    preamble: Preamble | None,
    error: PreambleError | None,
    db_store_id: str,
    adopt_all: bool,
) -> tuple[Action, str]:
    """The decision table of the contract (`error`: read_preamble raised it)."""
    if has_row:
        return Action.KEEP, "has a row"
    if error is not None:
        if error.fragment:
            return Action.DELETE, f"holds no message ({error.reason})"
        return Action.QUARANTINE, f"unreadable preamble: {error.reason}"
    if preamble is None:
        return Action.QUARANTINE, "older format, without an envelope"
    if preamble.store_id == db_store_id and not adopt_all:
        return Action.DELETE, "committed under this database without a row: never acknowledged"
    if preamble.envelope_error:
        return Action.QUARANTINE, f"unreadable envelope: {preamble.envelope_error}"
    if preamble.envelope is None:
        return Action.QUARANTINE, "written without an envelope"
    return Action.ADOPT, "the database had lost track of it"


def judge_file(path: Path, *, db_store_id: str, adopt_all: bool = False) -> Verdict:
    """Read the preamble of `path` (a msg/ file without a row) and decide."""
    if not QUEUE_ID.fullmatch(path.name):
        return Verdict(Action.IGNORE, "not a queue ID")
    try:
        with open(path, "rb") as fh:
            try:
                preamble, error = read_preamble(fh), None
            except PreambleError as exc:
                preamble, error = None, exc
            action, reason = decide(
                has_row=False,
                preamble=preamble,
                error=error,
                db_store_id=db_store_id,
                adopt_all=adopt_all,
            )
            if action is not Action.ADOPT:
                return Verdict(action, reason)
            assert preamble is not None and preamble.envelope is not None
            return _adopt(path, fh, preamble, preamble.envelope)
    except OSError as exc:
        return Verdict(Action.IGNORE, f"cannot read it: {exc.strerror or exc}")


def _adopt(path: Path, fh: BinaryIO, preamble: Preamble, data: dict[str, Any]) -> Verdict:
    try:
        env = Envelope.from_dict(data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return Verdict(Action.QUARANTINE, f"envelope does not load: {exc!r}")
    if env.queue_id != path.name:
        return Verdict(Action.QUARANTINE, f"envelope is for queue ID {env.queue_id!r}")
    fh.seek(0, 2)
    env.size = max(fh.tell() - preamble.offset, 0)
    if preamble.draft:
        fh.seek(preamble.offset)
        env.eight_bit = has_eight_bit(fh)
    return Verdict(Action.ADOPT, "the database had lost track of it", env)


# --- the procedure ---------------------------------------------------------------------


@dataclass(slots=True)
class _Plan:
    """What one recovery found, before its transaction."""

    report: RecoveryReport
    adopted: list[Verdict]
    quarantine: list[tuple[str, str]]


def recover(
    *,
    committer: Committer,
    manager_db: Db,
    files: ContentFiles,
    spools: Spools,
    store_id: str,
    node: str,
    fsync: bool,
    adopt_all: bool = False,
) -> RecoveryReport:
    """See the contract. Blocking; the queue manager's (or rebuild's) thread."""
    try:
        with committer.paused() as conn:
            rep = _remove_tmp_debris(spools)
            with manager_db.lock:  # this process's manager and queries wait
                plan = _judge(conn, files, rep, store_id=store_id, node=node, adopt_all=adopt_all)
                _apply(conn, plan)
            # Only now, with the rows durable: the adopted files become files
            # of this database (a crash before this leaves rows, which win).
            _claim_files(files, rep.rebuilt, store_id, fsync, committer.pool)
    except OSError as exc:
        raise store_error("queue recovery", exc) from exc
    _log(plan, files)
    return rep


def _remove_tmp_debris(spools: Spools) -> RecoveryReport:
    rep = RecoveryReport()
    names = [entry.name for entry in os.scandir(spools.directory)]
    live = spools.live()  # after the listing: a spool is live before its file exists
    for name in names:
        if name not in live:
            _unlink_quietly(spools.directory / name)
            rep.tmp_removed.append(name)
    return rep


def _judge(
    conn: sqlite3.Connection,
    files: ContentFiles,
    rep: RecoveryReport,
    *,
    store_id: str,
    node: str,
    adopt_all: bool,
) -> _Plan:
    try:
        rows: dict[str, str] = dict(conn.execute("SELECT queue_id, state FROM queue").fetchall())
        claims: dict[str, str] = dict(conn.execute("SELECT queue_id, node FROM claims").fetchall())
    except sqlite3.Error as exc:
        raise store_error("queue recovery", exc) from exc
    present = files.names()
    plan = _Plan(rep, [], [])
    for name in sorted(present - rows.keys()):
        path = Path(files.path(name))
        verdict = judge_file(path, db_store_id=store_id, adopt_all=adopt_all)
        if verdict.action is Action.DELETE:
            _unlink_quietly(path)  # Rule 2: never acknowledged
            rep.orphans_removed.append(name)
        elif verdict.action is Action.ADOPT:
            plan.adopted.append(verdict)
        elif verdict.action is Action.QUARANTINE:
            plan.quarantine.append((name, verdict.reason))
        else:
            log.warning("queue recovery: %s: %s; left alone", path, verdict.reason)
            rep.ignored.append(name)
    for qid in sorted(rows.keys() - present):
        if rows[qid] != QueueState.CORRUPT:
            rep.missing_content.append(qid)
    rep.reactivated = sorted(
        qid
        for qid, state in rows.items()
        if state == QueueState.ACTIVE and claims.get(qid, HOME_NODE) == node
    )
    rep.rebuilt = [v.envelope.queue_id for v in plan.adopted if v.envelope is not None]
    rep.quarantined = [qid for qid, _ in plan.quarantine]
    rep.queued = len(rows) + len(plan.adopted) + len(plan.quarantine)
    return plan


def _apply(conn: sqlite3.Connection, plan: _Plan) -> None:
    """The plan's changes in ONE transaction on the FULL (fsync'ed)
    connection: the committer's, free while it is paused."""
    rep, now = plan.report, time.time()
    new_rows = [
        (
            v.envelope.queue_id,
            # captured mail stays captured (docs/capture.md); the rest is due
            (QueueState.CAPTURE if v.envelope.capture else QueueState.INCOMING).value,
            v.envelope.received_at or now,
            json.dumps(v.envelope.to_dict(), separators=(",", ":")),
        )
        for v in plan.adopted
        if v.envelope is not None
    ]
    new_rows += [
        (qid, QueueState.CORRUPT.value, now, json.dumps({"queue_id": qid, "quarantined": reason}))
        for qid, reason in plan.quarantine
    ]
    with transaction(conn, "recover") as db:
        db.executemany(
            "UPDATE queue SET state='corrupt' WHERE queue_id=?",
            [(q,) for q in rep.missing_content],
        )
        db.executemany(
            "UPDATE queue SET state='incoming' WHERE queue_id=? AND state='active'",
            [(q,) for q in rep.reactivated],
        )
        db.executemany(INSERT_SQL, new_rows)
        # Claims count only while their entry is 'active' (queue/state.py).
        db.execute(
            "DELETE FROM claims WHERE queue_id NOT IN "
            "(SELECT queue_id FROM queue WHERE state='active')"
        )


def _claim_files(
    files: ContentFiles,
    queue_ids: list[str],
    store_id: str,
    fsync: bool,
    pool: concurrent.futures.ThreadPoolExecutor | None,
) -> None:
    """Write this database's store id into the preamble of adopted files
    (in parallel: each is one pwrite and one fsync). A file that cannot
    be rewritten keeps its row; it is only logged."""

    def claim(qid: str) -> None:
        try:
            msgfile.rewrite_store_id(files.path(qid), store_id, fsync=fsync)
        except OSError as e:
            log.error("queue_id=%s: cannot record the store id in its file: %s", qid, e)

    if pool is None or len(queue_ids) < PARALLEL_MIN:
        for qid in queue_ids:
            claim(qid)
    else:
        list(pool.map(claim, queue_ids))


def _log(plan: _Plan, files: ContentFiles) -> None:
    rep = plan.report
    if rep.orphans_removed or rep.missing_content or rep.tmp_removed:
        log.warning(
            "queue recovery: tmp_removed=%d orphans_removed=%d corrupt=%s",
            len(rep.tmp_removed),
            len(rep.orphans_removed),
            rep.missing_content,
        )
    for qid in rep.missing_content:
        log.error("queue_id=%s: content file missing, moved to corrupt", qid)
    for qid, reason in plan.quarantine:
        log.error(
            "queue_id=%s: content file without a queue row: %s; quarantined as corrupt "
            "(the file stays in %s)",
            qid,
            reason,
            files.directory,
        )
    if rep.rebuilt:
        log.warning(
            "queue rebuilt %d message(s) from their files: the queue database had "
            "lost track of them (recipients delivered before may get a second copy)",
            len(rep.rebuilt),
        )


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
