"""The queue's format version (queue/schema.py): the owner upgrades the queue
of pigeon 0.1.0 in place (tests/fixtures/datadir-0.1.0), others use it as it
is, every open refuses a newer one, and an upgrade cut short by a crash
leaves a queue that still opens."""

from __future__ import annotations

import hashlib
import io
import logging
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pigeon
from pigeon.dataformat import read_sqlite
from pigeon.msgfile import MAGIC, PreambleError, encode, read_preamble
from pigeon.queue.schema import QUEUE, QueueFormatError
from pigeon.queue.store import QueueStore
from pigeon.vocab.errors import StoreError

UPGRADE_LINE = "upgraded the queue database {} from format 0 to format 1 (pigeon 0.2.0)"


@pytest.fixture
def old_queue(tmp_path, datadir_0_1_0) -> tuple[Path, dict]:
    manifest = datadir_0_1_0(tmp_path / "data")
    return tmp_path / "data" / "queue", manifest


def version(root: Path) -> tuple[int, str]:
    conn = sqlite3.connect(root / "queue.db")
    try:
        return read_sqlite(conn)
    finally:
        conn.close()


def rows(root: Path) -> list[tuple]:
    conn = sqlite3.connect(root / "queue.db")
    try:
        return conn.execute("SELECT * FROM queue ORDER BY queue_id").fetchall()
    finally:
        conn.close()


def upgrade_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "upgraded the queue" in r.getMessage()]


def test_the_owner_upgrades_the_queue_of_0_1_0_in_place_with_one_log_line(old_queue, caplog):
    root, manifest = old_queue
    assert version(root) == (0, "")
    before = rows(root)
    caplog.set_level(logging.INFO, logger="pigeon.queue")
    store = QueueStore(root)
    store.open(owner=True)
    try:
        assert store.db_state is not None and store.db_state.upgraded_from == 0
        states = {e.queue_id: e.state for e in store.list()}
        assert states == {m["queue_id"]: m["state"] for m in manifest["messages"]}
    finally:
        store.close()
    assert upgrade_lines(caplog) == [UPGRADE_LINE.format(root / "queue.db")]
    assert version(root) == (1, pigeon.__version__)
    assert rows(root) == before  # the rows are the rows of 0.1.0
    caplog.clear()
    store = QueueStore(root)
    store.open(owner=True)  # upgraded once: never again
    store.close()
    assert store.db_state is not None and store.db_state.upgraded_from is None
    assert upgrade_lines(caplog) == []


def test_others_use_the_queue_of_0_1_0_as_it_is(old_queue, caplog):
    root, manifest = old_queue
    caplog.set_level(logging.INFO, logger="pigeon.queue")
    store = QueueStore(root)
    store.open()  # sendmail, a worker, `pigeon queue list` while pigeon is stopped
    try:
        assert len(store.list()) == len(manifest["messages"])
        for m in manifest["messages"]:
            with store.content(m["queue_id"]).open() as fh:
                assert f"Subject: {m['subject']}".encode() in fh.read()
    finally:
        store.close()
    assert version(root) == (0, "") and upgrade_lines(caplog) == []


def test_a_new_queue_is_made_in_the_current_format(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pigeon.queue")
    store = QueueStore(tmp_path / "queue")
    store.open(owner=True)
    store.close()
    assert version(tmp_path / "queue") == (QUEUE.current, pigeon.__version__)
    assert upgrade_lines(caplog) == []


def _make_newer(root: Path, found: int = 2, written_by: str = "0.9.0") -> None:
    conn = sqlite3.connect(root / "queue.db")
    conn.execute(f"PRAGMA user_version = {found}")
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('written_by', ?)", (written_by,))
    conn.commit()
    conn.close()


@pytest.mark.parametrize("owner", [True, False])
def test_a_newer_queue_is_refused_in_one_line_and_left_untouched(old_queue, owner):
    root, _ = old_queue
    _make_newer(root)
    digest = hashlib.sha256((root / "queue.db").read_bytes()).hexdigest()
    with pytest.raises(QueueFormatError) as ei:
        QueueStore(root).open(owner=owner)
    assert isinstance(ei.value, StoreError)  # every caller's handling applies: exit 73
    text = str(ei.value)
    assert "\n" not in text
    assert f"queue database {root / 'queue.db'} has format 2 (written by pigeon 0.9.0)" in text
    assert "which knows formats up to 1" in text and "run pigeon 0.9.0 or newer" in text
    assert hashlib.sha256((root / "queue.db").read_bytes()).hexdigest() == digest
    assert version(root) == (2, "0.9.0")


CRASH = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from pigeon.dataformat import Migration, migrate_sqlite
    from pigeon.queue.dbfile import connect, transaction

    def half_way(conn):
        conn.execute("CREATE TABLE half (x)")
        conn.execute("UPDATE queue SET state = 'half'")

    conn = connect(Path(sys.argv[1]) / "queue.db", synchronous="FULL")
    with transaction(conn, "upgrade"):
        migrate_sqlite(conn, {0: Migration(up=half_way, down=half_way)}, 0, 1)
        os._exit(9)  # the process dies: every step done, the version stamped, no COMMIT
    """
)


def test_a_crash_mid_upgrade_leaves_a_queue_that_opens_and_is_upgraded_again(old_queue, caplog):
    root, manifest = old_queue
    before = rows(root)
    done = subprocess.run([sys.executable, "-c", CRASH, str(root)], capture_output=True)
    assert done.returncode == 9, done.stderr
    assert version(root) == (0, "") and rows(root) == before
    caplog.set_level(logging.INFO, logger="pigeon.queue")
    store = QueueStore(root)
    store.open(owner=True)
    try:
        assert len(store.list()) == len(manifest["messages"])
    finally:
        store.close()
    assert upgrade_lines(caplog) == [UPGRADE_LINE.format(root / "queue.db")]
    conn = sqlite3.connect(root / "queue.db")
    assert conn.execute("SELECT name FROM sqlite_master WHERE name='half'").fetchone() is None
    conn.close()


def test_a_content_file_of_a_newer_preamble_is_refused_as_written_by_a_newer_pigeon():
    data = encode("0" * 32, b"{}") + b"Subject: x\r\n\r\nbody\r\n"
    newer = MAGIC + b"v2" + data[len(MAGIC) + 2 :]
    with pytest.raises(PreambleError) as ei:
        read_preamble(io.BytesIO(newer))
    assert "v2 is newer than this pigeon's (v1)" in ei.value.reason
    assert "newer pigeon" in ei.value.reason


def test_a_successor_upgrades_the_queue_once_it_takes_ownership(old_queue, caplog):
    """`pigeon restart` into a newer release: the new process opens the store
    as a non-owner (the old one still owns it), then takes it over and
    upgrades it then, as a fresh owner's open() would (app/restart.py)."""
    root, _ = old_queue
    caplog.set_level(logging.INFO, logger="pigeon.queue")
    store = QueueStore(root)
    store.open(owner=False)
    try:
        assert version(root) == (0, "")  # not the owner yet: left as it is
        store.take_ownership()
        assert store.db_state is not None and store.db_state.upgraded_from == 0
    finally:
        store.close()
    assert upgrade_lines(caplog) == [UPGRADE_LINE.format(root / "queue.db")]
    assert version(root) == (1, pigeon.__version__)
