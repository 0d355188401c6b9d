"""Judging a content file that has no queue row: delete, rebuild or quarantine.

Contract:
  * `decide()` is the decision table (the reasoning is in queue/store.py,
    "Recovery"); it only looks at what the file's preamble says
    (pigeon/msgfile.py) and at the database's store id:

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
    the reason), never DELETE.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path

from pigeon.msgfile import Preamble, PreambleError, has_eight_bit, read_preamble
from pigeon.queue.model import Envelope

__all__ = ["Action", "Verdict", "decide", "judge_file", "QUEUE_ID"]

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


def _adopt(path: Path, fh, preamble: Preamble, data: dict) -> Verdict:
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
