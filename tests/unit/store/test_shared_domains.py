"""The domains and aliases a cluster shares (issue 17, item 1): the merge
rules (pigeon/config/shared.py), the tables over the session's throw-away
PostgreSQL (pigeon/store/pg/domains.py, migration 0004_domains.sql), the
merge a node does at start and reload (store/factory.py) and the commands
`pigeon domain` / `pigeon alias` (pigeon/cli/domain.py, alias.py)."""

from __future__ import annotations

import json

import pytest

from pigeon.cli.main import main
from pigeon.config.load import ConfigError, load_config
from pigeon.config.shared import check_alias, check_domain, merge_shared


def _config(tmp_path, text: str):
    path = tmp_path / "pigeon.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n' + text)
    return path, load_config(path)


# --- the merge rules (pure) -------------------------------------------------------------


def test_the_file_and_the_database_add_up_and_the_file_wins(tmp_path):
    _, config = _config(
        tmp_path,
        '[domains."example.test"]\nmailboxes = ["alice"]\n'
        '[aliases]\n"info@example.test" = "alice@example.test"\n',
    )
    merged, warnings = merge_shared(
        config,
        ["example.test", "example.org"],
        {
            "info@example.test": ("bob@example.net",),  # the file's entry wins
            "sales@example.org": ("alice@example.test",),
            "@example.org": ("alice@example.test",),
            "@elsewhere.example": ("alice@example.test",),  # not local: unused
            "BAD": ("x",),  # a row written by hand: unused
        },
    )
    assert merged.domains["example.test"].mailboxes == frozenset({"alice"})  # the file's table
    assert merged.domains["example.org"].mailboxes is None  # any local part
    assert merged.aliases["info@example.test"] == ("alice@example.test",)
    assert merged.aliases["sales@example.org"] == ("alice@example.test",)
    assert merged.aliases["@example.org"] == ("alice@example.test",)
    assert "@elsewhere.example" not in merged.aliases
    assert len(warnings) == 3, warnings
    assert any("'info@example.test'" in w and "file" in w for w in warnings)
    assert any("'@elsewhere.example'" in w and "not a local domain" in w for w in warnings)
    assert any("'BAD'" in w for w in warnings)
    assert merged.shared_directory[0] == ("example.org", "example.test")


def test_entries_are_checked_as_the_configuration_file_s():
    assert check_domain(" Example.ORG ") == "example.org"
    assert check_alias("Info@Example.ORG", ["Bob@Example.NET"]) == (
        "info@example.org",
        ("Bob@example.net",),
    )
    for bad in ("exa mple.org", "-x.org", ""):
        with pytest.raises(ConfigError, match="not a valid domain name"):
            check_domain(bad)
    with pytest.raises(ConfigError, match="full address"):
        check_alias("info", ["bob@example.net"])
    with pytest.raises(ConfigError, match="at least one target"):
        check_alias("info@example.org", [])
    with pytest.raises(ConfigError, match="full address"):
        check_alias("info@example.org", ["bob"])


# --- the tables ---------------------------------------------------------------------------


@pytest.fixture
def dsn(postgres):
    dsn = postgres.dsn(postgres.new_database())
    assert main(["db", "migrate", "--store", dsn]) == 0
    return dsn


def test_changes_read_back_and_are_announced_once(dsn):
    import psycopg

    from pigeon.store.pg.domains import PgDomains

    tables = PgDomains(dsn)
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN pigeon_admin")
        assert tables.add_domain("example.org") is True
        assert tables.add_domain("example.org") is False  # no change: no announcement
        assert tables.add_alias("info@example.org", ["a@example.test", "b@example.test"])
        assert tables.add_alias("info@example.org", ["b@example.test", "c@example.test"])
        assert not tables.add_alias("info@example.org", ["a@example.test"])
        assert tables.read() == (
            ["example.org"],
            {"info@example.org": ("a@example.test", "b@example.test", "c@example.test")},
        )
        assert tables.remove_alias("info@example.org", ["b@example.test"])
        assert not tables.remove_alias("info@example.org", ["zz@example.test"])
        assert tables.read()[1] == {"info@example.org": ("a@example.test", "c@example.test")}
        assert tables.remove_alias("info@example.org", ["a@example.test", "c@example.test"])
        assert tables.read()[1] == {}  # the last target took the alias with it
        assert not tables.remove_alias("info@example.org")
        assert tables.remove_domain("example.org") and not tables.remove_domain("example.org")
        got = [json.loads(n.payload) for n in listener.notifies(timeout=1.0, stop_after=6)]
    assert [m["op"] for m in got] == ["directory"] * 6, got


def test_a_database_without_the_tables_is_refused(postgres):
    from pigeon.store.pg.domains import PgDomains
    from pigeon.vocab.errors import StoreError

    with pytest.raises(StoreError, match="pigeon db migrate"):
        PgDomains(postgres.dsn(postgres.new_database())).read()


def test_a_node_merges_the_database_and_sees_when_it_changed(dsn, tmp_path):
    from pigeon.store.factory import shared_directory_changed, with_shared_directory
    from pigeon.store.pg.domains import PgDomains

    _, config = _config(tmp_path, f'[queue]\nstore = "{dsn}"\n')
    PgDomains(dsn).add_domain("example.org")
    merged, warnings = with_shared_directory(config)
    assert "example.org" in merged.domains and "localhost" in merged.domains and not warnings
    assert not shared_directory_changed(merged)
    PgDomains(dsn).add_alias("info@example.org", ["postmaster@localhost"])
    assert shared_directory_changed(merged)
    again, _ = with_shared_directory(config)
    assert again.aliases == {"info@example.org": ("postmaster@localhost",)}
    assert not shared_directory_changed(again)


# --- the commands -------------------------------------------------------------------------


def test_the_commands_change_the_shared_tables(dsn, tmp_path, capsys):
    path, _ = _config(
        tmp_path,
        f'[queue]\nstore = "{dsn}"\n[aliases]\n"root@localhost" = "postmaster@localhost"\n',
    )
    c = ["-c", str(path)]
    assert main(["domain", "add", "Example.ORG", *c]) == 0
    assert main(["alias", "add", "info@example.org", "postmaster@localhost", *c]) == 0
    assert main(["alias", "add", "@example.org", "postmaster@localhost", *c]) == 0
    capsys.readouterr()
    assert main(["domain", "list", *c]) == 0
    assert capsys.readouterr().out.splitlines() == ["example.org\tshared", "localhost\tfile"]
    assert main(["alias", "list", *c]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "@example.org\tpostmaster@localhost\tshared",
        "info@example.org\tpostmaster@localhost\tshared",
        "root@localhost\tpostmaster@localhost\tfile",
    ]
    assert main(["alias", "remove", "info@example.org", *c]) == 0
    assert main(["alias", "remove", "info@example.org", *c]) == 1
    assert main(["domain", "remove", "example.org", *c]) == 0
    assert main(["domain", "remove", "example.org", *c]) == 1
    assert "not a shared domain" in capsys.readouterr().err


def test_the_commands_say_what_is_wrong(dsn, postgres, tmp_path, capsys):
    path, _ = _config(tmp_path, f'[queue]\nstore = "{dsn}"\n')
    c = ["-c", str(path)]
    assert main(["domain", "add", "exa mple.org", *c]) == 65
    assert "not a valid domain name" in capsys.readouterr().err
    assert main(["alias", "add", "info@example.org", "bob", *c]) == 65
    assert "full address" in capsys.readouterr().err
    assert main(["alias", "add", "info@example.org", *c]) == 64
    assert main(["alias", "add", "@example.org", "postmaster@localhost", *c]) == 65
    assert "pigeon domain add example.org" in capsys.readouterr().err

    embedded, _ = _config(tmp_path, "")
    assert main(["domain", "add", "example.org", "-c", str(embedded)]) == 64
    assert "[domains]" in capsys.readouterr().err
    assert main(["alias", "list", "-c", str(embedded)]) == 64
    assert "[aliases]" in capsys.readouterr().err

    old = tmp_path / "old.toml"
    old.write_text(f'[queue]\nstore = "{postgres.dsn(postgres.new_database())}"\n')
    assert main(["domain", "list", "-c", str(old)]) == 69
    assert "pigeon db migrate" in capsys.readouterr().err


def test_a_node_reloads_on_an_announced_change_and_catches_up_on_one_it_missed(dsn, tmp_path):
    """app/clusterwake.py: the change made before the node listened is found
    by the check once it listens; the next is announced (NOTIFY). `reload`
    stands in for Lifecycle.reload's part that matters here: merge anew."""
    import asyncio

    from pigeon.app.clusterwake import directory_refresh, wake_on_new_mail
    from pigeon.store.factory import with_shared_directory
    from pigeon.store.pg.domains import PgDomains
    from pigeon.store.pg.store import PgQueueStore

    _, file_config = _config(tmp_path, f'[queue]\nstore = "{dsn}"\n')
    running = [with_shared_directory(file_config)[0]]
    seen: list[tuple[set[str], set[str]]] = []

    async def scenario(store) -> None:
        reloaded, stop = asyncio.Event(), asyncio.Event()

        async def reload() -> None:
            running[0] = with_shared_directory(file_config)[0]
            seen.append((set(running[0].domains), set(running[0].aliases)))
            reloaded.set()

        refresh = directory_refresh(lambda: running[0], reload)
        await asyncio.to_thread(PgDomains(dsn).add_domain, "example.org")  # not listening yet
        task = asyncio.create_task(wake_on_new_mail(store, lambda: None, stop, None, refresh))
        await asyncio.wait_for(reloaded.wait(), 30)
        reloaded.clear()
        await asyncio.to_thread(
            PgDomains(dsn).add_alias, "info@example.org", ["postmaster@localhost"]
        )
        await asyncio.wait_for(reloaded.wait(), 30)
        stop.set()
        await asyncio.wait_for(task, 30)

    with PgQueueStore(dsn, node="node-b") as store:
        asyncio.run(scenario(store))
    assert seen == [
        ({"localhost", "example.org"}, set()),
        ({"localhost", "example.org"}, {"info@example.org"}),
    ]
