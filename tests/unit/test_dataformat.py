"""Format versions (pigeon/dataformat.py): the one rule every open follows,
the SQLite stamp and migrations, stamp files, and the release table."""

from __future__ import annotations

import sqlite3
import tomllib
from pathlib import Path

import pytest

import pigeon
from pigeon.auth.accounts import ACCOUNTS
from pigeon.dataformat import (
    RELEASES,
    Format,
    FormatError,
    Migration,
    immediate,
    migrate_sqlite,
    read_sqlite,
    read_stamp,
    release_formats,
    write_stamp,
)
from pigeon.mailstore.layout import MAILBOXES
from pigeon.queue.schema import QUEUE

ROOT = Path(__file__).resolve().parents[2]
THING = Format("thing", "thing store", current=3, oldest_readable=2)


def test_the_release_is_0_2_0_everywhere():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == pigeon.__version__ == "0.2.0"


def test_this_release_writes_the_current_version_of_every_format():
    assert RELEASES[pigeon.__version__] == {f.name: f.current for f in (QUEUE, ACCOUNTS, MAILBOXES)}
    # Every format this release knows had a version in every release before.
    for formats in RELEASES.values():
        assert set(formats) == {"queue", "accounts", "mailboxes"}


def test_an_unknown_release_names_the_known_ones():
    with pytest.raises(KeyError) as ei:
        release_formats("9.9")
    assert "0.1.0" in str(ei.value) and "0.2.0" in str(ei.value)


def test_the_current_format_is_used_by_anyone():
    assert THING.decide(3, owner=True, path="/x") == "current"
    assert THING.decide(3, owner=False, path="/x") == "current"


def test_an_older_format_is_upgraded_by_the_owner_and_used_as_is_by_others():
    assert THING.decide(2, owner=True, path="/x") == "upgrade"
    assert THING.decide(0, owner=True, path="/x") == "upgrade"
    assert THING.decide(2, owner=False, path="/x") == "older"


def test_a_format_too_old_to_use_without_upgrade_says_to_start_the_server():
    with pytest.raises(FormatError) as ei:
        THING.decide(1, owner=False, path="/data/thing.db")
    text = str(ei.value)
    assert "/data/thing.db" in text and "format 1" in text and "pigeon serve" in text
    assert "\n" not in text


def test_a_newer_format_is_refused_in_one_line_naming_file_versions_and_release():
    for owner in (True, False):
        with pytest.raises(FormatError) as ei:
            THING.decide(4, owner=owner, path="/data/thing.db", written_by="0.7.1")
        text = str(ei.value)
        assert "\n" not in text
        assert "thing store /data/thing.db has format 4 (written by pigeon 0.7.1)" in text
        assert f"this is pigeon {pigeon.__version__}, which knows formats up to 3" in text
        assert "run pigeon 0.7.1 or newer" in text


def test_a_newer_format_without_its_writer_still_says_what_to_do():
    with pytest.raises(FormatError) as ei:
        THING.decide(9, owner=True, path="/data/thing.db")
    assert "a newer pigeon" in str(ei.value) and "run the newer pigeon" in str(ei.value)


def _db(tmp_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    conn.execute("CREATE TABLE rows (x)")
    return conn


STEPS = {
    0: Migration(
        up=lambda c: c.execute("ALTER TABLE rows ADD COLUMN y DEFAULT 0"),
        down=lambda c: c.execute("ALTER TABLE rows DROP COLUMN y"),
    ),
    1: Migration(
        up=lambda c: c.execute("CREATE TABLE extra (z)"),
        down=lambda c: c.execute("DROP TABLE extra"),
    ),
}


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_no_stamp_is_format_0():
    conn = sqlite3.connect(":memory:")
    assert read_sqlite(conn) == (0, "")


def test_migrations_run_up_and_down_and_stamp_the_version(tmp_path):
    conn = _db(tmp_path)
    with immediate(conn):
        migrate_sqlite(conn, STEPS, 0, 2)
    assert read_sqlite(conn) == (2, pigeon.__version__)
    assert {"rows", "extra", "meta"} <= _tables(conn)
    assert dict(conn.execute("SELECT key, value FROM meta")) == {
        "format": "2",
        "written_by": pigeon.__version__,
    }
    with immediate(conn):
        migrate_sqlite(conn, STEPS, 2, 0)
    assert read_sqlite(conn) == (0, "")
    assert "extra" not in _tables(conn)
    assert [r[1] for r in conn.execute("PRAGMA table_info(rows)")] == ["x"]
    assert list(conn.execute("SELECT * FROM meta")) == []


def test_a_failed_step_leaves_the_version_and_the_tables_as_they_were(tmp_path):
    conn = _db(tmp_path)

    def broken(c: sqlite3.Connection) -> None:
        c.execute("CREATE TABLE half (z)")
        raise RuntimeError("step failed half-way")

    with pytest.raises(RuntimeError), immediate(conn):
        migrate_sqlite(conn, {**STEPS, 1: Migration(up=broken, down=broken)}, 0, 2)
    assert read_sqlite(conn) == (0, "")
    assert _tables(conn) == {"rows"}


def test_a_stamp_file_is_written_whole_and_read_back(tmp_path):
    path = tmp_path / ".pigeon-format"
    assert read_stamp(path, THING) is None
    write_stamp(path, THING, 3)
    assert path.read_text() == f"pigeon thing format 3 written-by {pigeon.__version__}\n"
    assert read_stamp(path, THING) == (3, pigeon.__version__)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir()] == [".pigeon-format"]  # no temporary left


@pytest.mark.parametrize(
    "text", ["", "garbage\n", "pigeon other format 1 written-by 0.2.0\n", "\xff\n"]
)
def test_a_damaged_stamp_is_refused_never_guessed(tmp_path, text):
    path = tmp_path / ".pigeon-format"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(FormatError) as ei:
        read_stamp(path, THING)
    assert str(path) in str(ei.value) and "\n" not in str(ei.value)
