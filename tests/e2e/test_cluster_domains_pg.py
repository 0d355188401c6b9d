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
