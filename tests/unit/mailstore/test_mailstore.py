"""pigeon.mailstore: Maildir paths, directories, unique names and flags."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pigeon.mailstore import (
    arrival_key,
    ensure_maildir,
    forget_maildir,
    maildir_path,
    parse_info,
    safe_component,
    sized_name,
    unique_base,
    with_flags,
)
from pigeon.mailstore import maildir as layout


@pytest.mark.parametrize(
    "raw, safe",
    [
        ("Alice", "alice"),
        ("a.b+tag", "a.b+tag"),
        ("..", "%2E."),
        (".hidden", "%2Ehidden"),
        ("a/b", "a%2Fb"),
        ("x y", "x%20y"),
        ("é", "%C3%A9"),
        ("100%", "100%25"),
    ],
)
def test_safe_component(raw, safe):
    assert safe_component(raw) == safe


def test_safe_component_rejects_empty():
    with pytest.raises(ValueError):
        safe_component("")


def test_maildir_path(tmp_path):
    assert maildir_path(tmp_path, "Bob", "Example.TEST") == tmp_path / "example.test" / "bob"
    p = maildir_path(tmp_path, "../../etc", "example.test")
    assert p.parent == tmp_path / "example.test" and "/" not in p.name


def test_routing_and_delivery_share_the_paths():
    """routing/resolve.py takes the Maildir from here, not from the delivery layer."""
    from pigeon.routing import resolve

    assert resolve.maildir_path is maildir_path


def test_unique_names_with_sizes():
    bases = {unique_base() for _ in range(100)}
    assert len(bases) == 100
    for base in bases:
        m = re.fullmatch(r"(\d+)\.M(\d+)P(\d+)Q(\d+)\.([^/:]+)", base)
        assert m and int(m.group(3)) == os.getpid()
    assert sized_name("1.M2P3Q4.host", 10, 12) == "1.M2P3Q4.host,S=10,W=12"


def test_arrival_order_compares_the_time_as_numbers():
    # The microseconds are not zero-padded: a string sort put Q9 before Q5 and
    # gave later mail lower UIDs (tests/e2e/test_imap_clients.py, concurrency).
    names = [
        "1796553870.M128859P22937Q9.vm,S=573",
        "1796553870.M21960P22937Q5.vm,S=573",
        "1796553869.M907191P22937Q4.vm",
        "1796553870.M21960P22937Q6.vm",
        "1796553871.12345_1.other-mda",
    ]
    assert sorted(names, key=arrival_key) == [
        "1796553869.M907191P22937Q4.vm",
        "1796553870.M21960P22937Q5.vm,S=573",
        "1796553870.M21960P22937Q6.vm",
        "1796553870.M128859P22937Q9.vm,S=573",
        "1796553871.12345_1.other-mda",
    ]
    assert arrival_key("no-time-here")[:3] == (0, 0, 0)


def test_host_name_never_brings_a_slash_or_a_colon(monkeypatch):
    from pigeon.mailstore import names

    names._hostname.cache_clear()
    monkeypatch.setattr(names.socket, "gethostname", lambda: "a/b:c")
    try:
        assert unique_base().endswith(".a\\057b\\072c")
    finally:
        names._hostname.cache_clear()


@pytest.mark.parametrize(
    "name, base, flags",
    [
        ("1.M2P3Q4.host,S=10", "1.M2P3Q4.host,S=10", ""),
        ("1.M2P3Q4.host:2,", "1.M2P3Q4.host", ""),
        ("1.M2P3Q4.host:2,FS", "1.M2P3Q4.host", "FS"),
        ("1.M2P3Q4.host:1,xyz", "1.M2P3Q4.host", ""),  # an info of another version
    ],
)
def test_parse_info(name, base, flags):
    assert parse_info(name) == (base, flags)


def test_flags_are_stored_once_each_in_ascii_order():
    assert with_flags("1.M2.host,S=5", "SRSa") == "1.M2.host,S=5:2,RSa"
    assert with_flags("1.M2.host:2,S", "") == "1.M2.host:2,"
    assert with_flags("1.M2.host:2,S", "TF") == "1.M2.host:2,FT"
    with pytest.raises(ValueError):
        with_flags("x", "S:")


def test_ensure_maildir_creates_the_three_directories_private(tmp_path):
    box = tmp_path / "a" / "b"
    ensure_maildir(box, fsync=False)
    for sub in ("tmp", "new", "cur"):
        assert (box / sub).is_dir() and (box / sub).stat().st_mode & 0o777 == 0o700


def test_a_known_maildir_costs_no_mkdir_until_forgotten(tmp_path, monkeypatch):
    box = tmp_path / "box"
    ensure_maildir(box, fsync=False)
    made: list[Path] = []
    real = layout.Path.mkdir
    monkeypatch.setattr(layout.Path, "mkdir", lambda self, *a, **k: made.append(self))
    ensure_maildir(box, fsync=False)
    assert made == []
    forget_maildir(box)
    monkeypatch.setattr(layout.Path, "mkdir", real)
    (box / "cur").rmdir()
    ensure_maildir(box, fsync=False)
    assert (box / "cur").is_dir()


def test_maildir_exists_answers_from_memory_for_a_maildir_made_sure_of(tmp_path, monkeypatch):
    from pigeon.mailstore import ensure_maildir, forget_maildir, maildir_exists

    box = tmp_path / "example.test" / "alice"
    assert not maildir_exists(box)
    ensure_maildir(box, fsync=False)
    stats: list[str] = []
    real_isdir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda p: stats.append(p) or real_isdir(p))
    assert maildir_exists(box) and maildir_exists(str(box))
    assert stats == [], "a known Maildir still cost a stat()"
    forget_maildir(box)
    assert maildir_exists(box) and stats == [str(box)]
