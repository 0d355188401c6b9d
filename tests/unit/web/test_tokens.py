"""The API token store (pigeon.web.tokens): hashes only, 0600, atomic, seen live."""

from __future__ import annotations

import json
import os
import stat

import pytest

from pigeon.web.tokens import (
    TokenError,
    TokenStore,
    TokenUsage,
    digest,
    has_scope,
    parse_scopes,
)


def test_add_prints_a_token_and_stores_only_its_hash(tmp_path):
    store = TokenStore.in_data_dir(tmp_path)
    token = store.add("ci", ("send",), 1000.0)
    assert token.startswith("pgn_") and len(token) > 40
    raw = store.path.read_text()
    assert token not in raw
    data = json.loads(raw)
    assert data["tokens"] == [
        {"name": "ci", "scopes": ["send"], "created": 1000.0, "sha256": digest(token)}
    ]
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert not store.path.with_name(store.path.name + ".tmp").exists()


def test_authenticate_finds_the_token_and_nothing_else(tmp_path):
    store = TokenStore.in_data_dir(tmp_path)
    a = store.add("a", ("read",), 1.0)
    b = store.add("b", ("admin", "send"), 2.0)
    assert store.authenticate(a).name == "a"
    info = store.authenticate(b)
    assert info.name == "b" and info.scopes == ("send", "admin")
    assert store.authenticate(a + "x") is None
    assert store.authenticate("") is None


def test_changes_are_seen_without_a_restart(tmp_path):
    server = TokenStore.in_data_dir(tmp_path)
    cli = TokenStore.in_data_dir(tmp_path)
    assert server.authenticate("pgn_nothing") is None  # no file yet
    token = cli.add("late", ("read",), 1.0)
    assert server.authenticate(token).name == "late"
    cli.remove("late")
    assert server.authenticate(token) is None


def test_a_damaged_file_authenticates_nobody(tmp_path, caplog):
    store = TokenStore.in_data_dir(tmp_path)
    token = store.add("a", ("read",), 1.0)
    store.path.write_text("{not json")
    assert store.authenticate(token) is None
    assert "no API token is accepted" in caplog.text
    with pytest.raises(TokenError):
        store.list()


def test_names_scopes_and_duplicates(tmp_path):
    store = TokenStore.in_data_dir(tmp_path)
    with pytest.raises(TokenUsage):
        store.add("bad name", ("read",), 1.0)
    with pytest.raises(TokenUsage):
        store.add("x" * 65, ("read",), 1.0)
    store.add("one", ("read",), 1.0)
    with pytest.raises(TokenError, match="exists"):
        store.add("one", ("send",), 2.0)
    with pytest.raises(TokenError, match="no such token"):
        store.remove("two")
    assert [t.name for t in store.list()] == ["one"]


def test_parse_scopes():
    assert parse_scopes("admin, send") == ("send", "admin")
    with pytest.raises(TokenUsage, match="unknown scope"):
        parse_scopes("read,root")
    with pytest.raises(TokenUsage):
        parse_scopes(" , ")


def test_admin_includes_read_only(tmp_path):
    store = TokenStore.in_data_dir(tmp_path)
    store.add("ops", ("admin",), 1.0)
    (info,) = store.list()
    assert has_scope(info, "admin") and has_scope(info, "read")
    assert not has_scope(info, "send")


def test_a_token_limited_to_a_tenant(tmp_path):
    store = TokenStore.in_data_dir(tmp_path)
    token = store.add("team-a", ("read", "admin"), 5.0, tenant="Team-A@Example.test")
    info = store.authenticate(token)
    assert info.tenant == "team-a@example.test"
    assert json.loads(store.path.read_text())["tokens"][0]["tenant"] == "team-a@example.test"
    assert store.authenticate(store.add("all", ("read",), 6.0)).tenant is None
    with pytest.raises(TokenUsage, match="tenant"):
        store.add("bad", ("read",), 7.0, tenant="two words")


def test_a_token_bound_to_an_account(tmp_path):
    store = TokenStore.in_data_dir(tmp_path)
    token = store.add("shop", ("send",), 5.0, account="Shop@Example.test")
    info = store.authenticate(token)
    assert info.account == "shop@example.test"  # as `pigeon user` writes the name
    assert json.loads(store.path.read_text())["tokens"][0]["account"] == "shop@example.test"
    assert store.authenticate(store.add("admin", ("send",), 6.0)).account is None
    with pytest.raises(TokenUsage, match="account"):
        store.add("bad", ("send",), 7.0, account="two words")
