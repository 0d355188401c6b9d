"""The history of one message, read back from the log file (`pigeon log ID`).

Contract:
  * `message_history(path, queue_id)` returns, oldest first, every log line
    that concerns `queue_id`: its mail-log lines ("ID: from=<...> (queued)",
    "ID: to=<...>, status=deferred (...)", "ID: removed") and any other
    line naming it (e.g. "queue_id=ID: ..." warnings). A report it produced
    ("ID: sender non-delivery notification: NEWID") is followed: NEWID's
    lines are included too, so the bounce's own fate is part of the story.
  * Both log formats (obs.logsetup) are understood: a JSON line matches on
    its "queue_id" key or on the id inside "msg"; a text line matches on the
    id as a whole word. Traceback continuation lines (indented) belong to the
    line before them.
  * The rotated file `<path>.1` (logrotate's default name) is read before
    `path` when it exists; compressed generations are not read.
  * Streams the files line by line: memory stays bounded by the number of
    matching lines, however big the log. Missing files give `[]`;
    unreadable ones raise OSError for the caller to report.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["message_history", "log_files", "REPORT_RE"]

#: "<ID>: sender non-delivery notification: <NEWID>" and its siblings (qmgr/notify.py).
REPORT_RE = re.compile(r"notification: ([0-9A-Z]{6,32})\b")
_ID_RE = re.compile(r"^[0-9A-Za-z]{4,64}$")


def log_files(path: Path) -> list[Path]:
    """The files to read, oldest first: `path.1` (if any), then `path`."""
    path = Path(path)
    return [p for p in (path.with_name(path.name + ".1"), path) if p.is_file()]


def _records(files: Iterable[Path]) -> Iterator[str]:
    """Whole records: a line plus its indented continuation lines."""
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as fh:
            record: str | None = None
            for line in fh:
                line = line.rstrip("\n")
                if line.startswith("  ") and record is not None:
                    record += "\n" + line
                    continue
                if record is not None:
                    yield record
                record = line
            if record is not None:
                yield record


def _mentions(record: str, ids: set[str], pattern: re.Pattern) -> bool:
    if record.startswith("{"):
        try:
            obj = json.loads(record)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            if obj.get("queue_id") in ids:
                return True
            return bool(pattern.search(str(obj.get("msg", ""))))
    return bool(pattern.search(record))


def _pattern(ids: set[str]) -> re.Pattern:
    return re.compile(r"\b(?:" + "|".join(re.escape(i) for i in sorted(ids)) + r")\b")


def message_history(path: Path, queue_id: str, *, follow_reports: bool = True) -> list[str]:
    """The log records about `queue_id` (and the reports it caused), oldest first."""
    if not _ID_RE.match(queue_id):
        raise ValueError(f"not a queue id: {queue_id!r}")
    files = log_files(path)
    ids = {queue_id}
    # Reports are logged after their original's lines, so one pass that adds
    # ids as they appear finds them; the set is tiny (one id per report).
    out: list[str] = []
    pattern = _pattern(ids)
    for record in _records(files):
        if not _mentions(record, ids, pattern):
            continue
        out.append(record)
        if follow_reports:
            text = record
            if record.startswith("{"):
                try:
                    text = str(json.loads(record).get("msg", record))
                except (ValueError, AttributeError):
                    pass
            for new_id in REPORT_RE.findall(text):
                if new_id not in ids:
                    ids.add(new_id)
                    pattern = _pattern(ids)
    return out
