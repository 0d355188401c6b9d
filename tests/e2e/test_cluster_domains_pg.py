"""Domains and aliases shared by two `pigeon serve` nodes on one PostgreSQL
database (issue 17, item 1; docs/cluster.md, "Accounts, domains and aliases").

`pigeon domain add` and `pigeon alias add`, run with node A's configuration,
write the shared tables and announce the change; node B, started before
and configured without that domain, then accepts mail for the alias
(refused before: relaying denied) and delivers it to the target's Maildir,
without a restart or a `pigeon reload`.
"""

from __future__ import annotations

import smtplib

import pytest

from pigeon.testing.live import maildir_messages, wait_for

pytestmark = pytest.mark.e2e

ALIAS, TARGET = "info@example.org", "carol@example.test"


def node_config(dsn: str, node: str) -> str:
    return (
        '[domains."example.test"]\nmailboxes = ["carol"]\n'
        f'[queue]\nstore = "{dsn}"\nnode = "{node}"\n'
        '[admin]\nmetrics_listen = ""\n'
    )


def rcpt(port: int) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.test")
        s.mail("sender@client.test")
        return s.rcpt(ALIAS)[0]


def test_an_alias_added_with_one_node_s_configuration_works_on_the_other(pigeon_factory, postgres):
    from pigeon.cli.main import main

    dsn = postgres.dsn(postgres.new_database())
    assert main(["db", "migrate", "--store", dsn]) == 0
    a = pigeon_factory(node_config(dsn, "node-a"))
    b = pigeon_factory(node_config(dsn, "node-b"))
    assert rcpt(b.port) >= 500  # example.org is no domain of B's: relaying denied

    for argv in (("domain", "add", "example.org"), ("alias", "add", ALIAS, TARGET)):
        done = a.command(*argv, text=True)
        assert done.returncode == 0, done.stderr
    assert wait_for(lambda: rcpt(b.port) == 250, timeout=20.0, interval=0.2), b.log()

    with smtplib.SMTP("127.0.0.1", b.port, timeout=10) as s:
        refused = s.sendmail(
            "sender@client.test", [ALIAS], b"Subject: shared alias\r\n\r\nhello\r\n"
        )
    assert refused == {}
    got = wait_for(lambda: maildir_messages(b.data_dir, TARGET), timeout=20.0)
    assert len(got) == 1 and b"shared alias" in got[0].read_bytes(), b.log()
    assert "shared domains and aliases changed" in b.log()
    listed = b.command("alias", "list", text=True)
    assert listed.stdout.splitlines() == [f"{ALIAS}\t{TARGET}\tshared"], listed.stderr


def test_check_config_shows_the_shared_domains_and_aliases(tmp_path, postgres, capsys):
    """`pigeon check-config` with a shared store lists what a node would
    serve: the file's domains and aliases plus the database's, the ones
    only the database adds marked; an unreachable database is a warning."""
    from pigeon.cli.main import main

    dsn = postgres.dsn(postgres.new_database())
    assert main(["db", "migrate", "--store", dsn]) == 0
    config = tmp_path / "pigeon.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        + node_config(dsn, "node-a")
        + '[aliases]\n"postmaster@example.test" = "carol@example.test"\n'
    )
    run = ["--config", str(config)]
    assert main(["domain", "add", "example.org", *run]) == 0
    assert main(["alias", "add", ALIAS, TARGET, *run]) == 0
    capsys.readouterr()

    assert main(["check-config", str(config)]) == 0
    out = capsys.readouterr().out
    domains = next(line for line in out.splitlines() if line.strip().startswith("domains:"))
    assert "example.org (any mailbox, shared)" in domains, out
    assert "example.test (1 mailbox)" in domains, out
    aliases = next(line for line in out.splitlines() if line.strip().startswith("aliases:"))
    assert aliases.split(":", 1)[1].strip() == "2 (1 shared)", out

    # The database gone: still ok (the file is valid), the file's entries, a warning.
    config.write_text(
        config.read_text().replace(dsn, "postgresql://pigeon@127.0.0.1:1/none?connect_timeout=2")
    )
    assert main(["check-config", str(config)]) == 0
    got = capsys.readouterr()
    assert "shared domains and aliases could not be read" in got.err, got.err
    assert "example.org" not in got.out
