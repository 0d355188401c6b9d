"""The durable outbox (webhooks/outbox.py): write, read, remove, caps, crash leftovers."""

from __future__ import annotations

import logging
import os

from pigeon.webhooks.outbox import STALE_TMP, Entry, Outbox, url_key

A, B = "http://a.test/hook", "https://b.test/hook"


def _entry(url=A, n=1, created=1700000000.5):
    return Entry(url, "delivered", f"evt_{n:032x}", created, b'{"id":"evt","x":"\xc3\xa9"}')


def _box(tmp_path):
    box = Outbox(tmp_path / "webhooks", fsync=True)
    box.prepare()
    return box


def test_write_read_remove(tmp_path):
    box = _box(tmp_path)
    entries = [_entry(A, 1), _entry(B, 2)]
    assert box.write(entries, {A: 10, B: 10}) == entries
    names = sorted(box.names())
    assert names == sorted(e.name for e in entries)
    assert all(
        n.startswith(url_key(e.url)) for n, e in zip(sorted(e.name for e in entries), entries)
    )
    assert {box.read(n) for n in names} == set(entries)
    assert oct(os.stat(box.ready / names[0]).st_mode & 0o777) == "0o600"
    assert list(box.tmp.iterdir()) == []
    box.remove(names[0])
    box.remove(names[0])  # gone already: nothing to do
    assert box.names() == names[1:]
    assert box.read(names[0]) is None


def test_cap_per_url(tmp_path):
    box = _box(tmp_path)
    assert len(box.write([_entry(A, n) for n in range(5)], {A: 3, B: 3})) == 3
    assert box.write([_entry(A, 9)], {A: 3, B: 3}) == []
    assert box.write([_entry(B, 10)], {A: 3, B: 3}) == [_entry(B, 10)]
    assert len(box.names()) == 4


def test_half_written_file_set_aside(tmp_path, caplog):
    box = _box(tmp_path)
    good = _entry(A, 1)
    box.write([good], {A: 10})
    whole = (box.ready / good.name).read_bytes()
    cut = "0" * 12 + "-00000000000000001-evt_cut.json"
    (box.ready / cut).write_bytes(whole[: len(whole) // 2])
    with caplog.at_level(logging.ERROR, "pigeon.webhooks"):
        assert box.read(cut) is None
    assert "is not a whole entry" in caplog.text
    assert (box.bad / cut).exists() and cut not in box.names()
    assert box.read(good.name) == good


def test_prepare_removes_stale_tmp_files_only(tmp_path):
    box = _box(tmp_path)
    old, new = box.tmp / "x.json.123", box.tmp / "y.json.456"
    old.write_bytes(b"{")
    new.write_bytes(b"{")
    past = 1_000_000.0
    os.utime(old, (past, past))
    box.prepare(now=past + STALE_TMP + 1)
    assert not old.exists()
    os.utime(new, (past + 10, past + 10))
    box.prepare(now=past + STALE_TMP + 1)
    assert new.exists()  # a worker may still be writing it


def test_names_sort_by_url_then_time():
    early, late = _entry(A, 1, created=100.0), _entry(A, 2, created=200.0)
    assert early.name < late.name
