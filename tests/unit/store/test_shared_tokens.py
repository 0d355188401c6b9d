"""The HTTP API's tokens shared through PostgreSQL (web/sharedtokens.py over
store/pg/tokens.py, migration 0005_tokens.sql), with the rules of the file
store (web/tokens.py) checked on both: the same calls, the same answers."""

from __future__ import annotations

import time

import pytest

from pigeon.testing.postgres import PostgresCluster
from pigeon.web import sharedtokens
from pigeon.web.tokens import TokenError, TokenStore, TokenUsage


@pytest.fixture
def dsn(postgres: PostgresCluster) -> str:
    from pigeon.cli.main import main

    url = postgres.dsn(postgres.new_database())
    assert main(["db", "migrate", "--store", url]) == 0
    return url


@pytest.fixture(params=["file", "postgresql"])
def stores(request, tmp_path):
    """Two views of one token set: two objects on one file or one database."""
    if request.param == "file":
        path = tmp_path / "api-tokens.json"
        return TokenStore(path), TokenStore(path)
    url = request.getfixturevalue("dsn")
    return sharedtokens.SharedTokenStore(url), sharedtokens.SharedTokenStore(url)


def test_the_same_rules_on_both_stores(stores):
    one, other = stores
    token = one.add("app", ("read", "send"), 1000.0, tenant="Acme", account="Carol@Example.Test")
    assert token.startswith("pgn_")
    [info] = other.list()
    assert (info.name, info.scopes, info.created) == ("app", ("send", "read"), 1000.0)
    assert (info.tenant, info.account) == ("acme", "carol@example.test")
    assert token not in repr(other.list()), "the token itself is never stored"
    with pytest.raises(TokenError, match="exists"):
        other.add("app", ("read",), 1001.0)
    with pytest.raises(TokenUsage):
        other.add("bad name", ("read",), 1001.0)
    second = other.add("ops", ("admin",), 1002.0)
    assert [t.name for t in one.list()] == ["app", "ops"]

    deadline = time.monotonic() + 10
    while one.authenticate(second) is None:  # the shared store's server view: within REFRESH
        assert time.monotonic() < deadline, "a token added on one node never authenticated"
        time.sleep(0.1)
    assert one.authenticate(token).name == "app"
    assert one.authenticate("pgn_" + "x" * 43) is None

    other.remove("app")
    with pytest.raises(TokenError, match="no such token"):
        one.remove("app")
    while one.authenticate(token) is not None:
        assert time.monotonic() < deadline, "a removed token still authenticates"
        time.sleep(0.1)
    assert [t.name for t in one.list()] == ["ops"]


def test_an_unreachable_database_is_an_error_for_the_cli_and_nobody_for_the_server(
    dsn, monkeypatch
):
    store = sharedtokens.SharedTokenStore(dsn)
    token = store.add("app", ("read",), 1000.0)
    assert store.authenticate(token) is not None
    # Rows not read for STALE seconds authenticate nobody (a revoked token
    # must not outlive its removal for long): the refresh thread made to fail.
    monkeypatch.setattr(sharedtokens, "STALE", 0.5)
    store.rows.dsn = "postgresql://pigeon@127.0.0.1:1/none?connect_timeout=1"
    deadline = time.monotonic() + 15
    while store.authenticate(token) is not None:
        assert time.monotonic() < deadline, "stale rows still authenticate"
        time.sleep(0.1)
    for call in (store.list, lambda: store.add("x", ("read",), 1.0), lambda: store.remove("app")):
        with pytest.raises(TokenError, match="cannot"):
            call()
    store.rows.dsn = dsn  # the database back: the token counts again
    while store.authenticate(token) is None:
        assert time.monotonic() < deadline, "the tokens never came back"
        time.sleep(0.1)
