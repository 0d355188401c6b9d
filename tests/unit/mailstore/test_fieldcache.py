"""The `pigeon-cache` file (pigeon.mailstore.fieldcache): kept, reloaded, cut back when torn or
damaged, started again when unreadable or lost, compacted, and shared by two processes."""

from __future__ import annotations

import logging
import os

from pigeon.mailstore import fieldcache
from pigeon.mailstore.fieldcache import FILENAME, FieldCache


def records(n: int, start: int = 0) -> list[tuple[str, bytes, bytes]]:
    return [
        (f"{i}.M1P1.host", b'(NIL "s%d" NIL)' % i, b"Subject: s%d\r\n" % i)
        for i in range(start, start + n)
    ]


def live(n: int) -> set[str]:
    return {base for base, _, _ in records(n)}


def test_records_are_kept_and_read_back_by_a_new_process(tmp_path):
    cache = FieldCache(str(tmp_path), set())
    assert cache.get("0.M1P1.host") is None
    cache.put_many(records(5))
    assert cache.get("3.M1P1.host") == (b'(NIL "s3" NIL)', b"Subject: s3\r\n")
    again = FieldCache(str(tmp_path), live(5))
    assert len(again) == 5
    assert again.get_many(["4.M1P1.host", "x"]) == [(b'(NIL "s4" NIL)', b"Subject: s4\r\n"), None]
    # bases not live at load (expunged while no process ran) are not indexed
    assert len(FieldCache(str(tmp_path), live(2))) == 2


def test_a_torn_last_record_is_cut_silently_and_a_bad_one_with_a_warning(tmp_path, caplog):
    FieldCache(str(tmp_path), set()).put_many(records(3))
    path = tmp_path / FILENAME
    good = path.read_bytes()
    path.write_bytes(good + b"+9.M1P1.host 40 3\n(NIL")  # a crash during an append
    with caplog.at_level(logging.WARNING, logger="pigeon"):
        cache = FieldCache(str(tmp_path), live(3))
    assert len(cache) == 3 and path.read_bytes() == good and not caplog.records
    path.write_bytes(good + b"garbage here\n" + good[len(b"pigeon-cache 1\n") :])
    with caplog.at_level(logging.WARNING, logger="pigeon"):
        cache = FieldCache(str(tmp_path), live(3))
    assert len(cache) == 3 and path.read_bytes() == good
    assert "bad record" in caplog.text
    cache.put_many(records(1, start=7))  # appends after the cut
    assert FieldCache(str(tmp_path), live(8)).get("7.M1P1.host") is not None


def test_a_file_that_is_no_cache_is_started_again(tmp_path, caplog):
    (tmp_path / FILENAME).write_bytes(b"\x00\xffnot a cache at all\n")
    with caplog.at_level(logging.WARNING, logger="pigeon"):
        cache = FieldCache(str(tmp_path), live(3))
    assert len(cache) == 0 and "not a cache file" in caplog.text
    cache.put_many(records(3))
    assert len(FieldCache(str(tmp_path), live(3))) == 3


def test_a_lost_file_is_started_again_and_an_unwritable_one_only_costs_time(tmp_path):
    cache = FieldCache(str(tmp_path), set())
    cache.put_many(records(2))
    os.unlink(tmp_path / FILENAME)
    cache.put_many(records(2, start=5))
    assert cache.get("5.M1P1.host") == (b'(NIL "s5" NIL)', b"Subject: s5\r\n")
    assert len(FieldCache(str(tmp_path), live(10))) == 2
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / FILENAME).mkdir()  # cannot be read or replaced as a file
    cache = FieldCache(str(blocked), set())
    cache.put_many(records(2))
    assert cache.get("0.M1P1.host") is None


def test_expunged_records_are_compacted_away(tmp_path, monkeypatch):
    monkeypatch.setattr(fieldcache, "COMPACT_MIN", 4)
    cache = FieldCache(str(tmp_path), set())
    cache.put_many(records(10))
    size = (tmp_path / FILENAME).stat().st_size
    cache.forget([f"{i}.M1P1.host" for i in range(6)])
    assert (tmp_path / FILENAME).stat().st_size < size / 2
    assert cache.get("7.M1P1.host") == (b'(NIL "s7" NIL)', b"Subject: s7\r\n")
    assert cache.get("1.M1P1.host") is None
    assert len(FieldCache(str(tmp_path), live(10))) == 4


def test_two_processes_appending_keep_every_offset_true(tmp_path):
    one = FieldCache(str(tmp_path), set())
    two = FieldCache(str(tmp_path), set())
    for n in range(4):  # turns: each append follows one by the other
        one.put_many(records(2, start=10 * n))
        two.put_many(records(2, start=10 * n + 5))
    for cache in (one, two, FieldCache(str(tmp_path), _All())):
        for base, env, fields in records(2, 30) + records(2, 35) + records(2, 0):
            assert cache.get(base) in (None, (env, fields))
    assert two.get("30.M1P1.host") == (b'(NIL "s30" NIL)', b"Subject: s30\r\n")
    assert two.get("0.M1P1.host") == (b'(NIL "s0" NIL)', b"Subject: s0\r\n")


class _All(frozenset):
    def __contains__(self, item: object) -> bool:
        return True
