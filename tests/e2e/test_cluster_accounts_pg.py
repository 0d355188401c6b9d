"""Accounts shared by two `pigeon serve` nodes on one PostgreSQL database
(issue 17; docs/cluster-status.md, "The directory").

`pigeon user add` run with node A's configuration writes the shared
`pigeon_accounts` table; node B, started before the account existed,
accepts that user's AUTH on its submission port (STARTTLS first, as
elsewhere: tests/e2e/test_auth_smtplib.py), and neither node keeps an
accounts.db (or an abuse.db) of its own. The HTTP API's tokens are shared the
same way (`pigeon token add` on A, accepted by B's API).
"""

from __future__ import annotations

import smtplib

import pytest
from secure_helpers import insecure_context

pytestmark = pytest.mark.e2e

USER = "carol@example.test"
PASSWORD = "correct horse battery staple"


def node_config(dsn: str, node: str) -> str:
    return (
        '[domains."example.test"]\nmailboxes = ["carol", "dave"]\n'
        f'[queue]\nstore = "{dsn}"\nnode = "{node}"\n'
    )


def login(port: int, password: str) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.starttls(context=insecure_context())
        try:
            return s.login(USER, password)[0]
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code


def test_a_user_added_on_one_node_logs_in_on_the_other(pigeon_factory, postgres):
    from pigeon.cli.main import main

    dsn = postgres.dsn(postgres.new_database())
    assert main(["db", "migrate", "--store", dsn]) == 0
    a = pigeon_factory(node_config(dsn, "node-a"))
    b = pigeon_factory(node_config(dsn, "node-b"))
    assert login(b.submission_port, PASSWORD) == 535  # no such user yet

    done = a.command("user", "add", USER, "--password-stdin", stdin=PASSWORD.encode() + b"\n")
    assert done.returncode == 0, done.stderr
    assert login(b.submission_port, PASSWORD) == 235, b.log()
    assert login(b.submission_port, "wrong password") == 535
    listed = b.command("user", "list", text=True)
    assert listed.returncode == 0 and USER in listed.stdout, listed.stderr

    assert a.command("user", "del", USER).returncode == 0
    assert login(b.submission_port, PASSWORD) == 535, "a deleted user still logs in"
    for node in (a, b):  # the accounts and the abuse counters are the database's
        assert not (node.data_dir / "accounts.db").exists(), node.data_dir
        assert not (node.data_dir / "abuse.db").exists(), node.data_dir
    import psycopg

    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pigeon_accounts").fetchone()[0] == 0


def test_an_api_token_added_on_one_node_works_on_the_other(pigeon_factory, postgres):
    """`pigeon token add` with node A's configuration: node B's HTTP API
    accepts the token (curl, as a user would), and refuses it once `pigeon
    token remove` ran on A; neither node has an api-tokens.json."""
    from test_http_api import curl

    from pigeon.cli.main import main
    from pigeon.testing.live import wait_for
    from pigeon.web.sharedtokens import REFRESH

    dsn = postgres.dsn(postgres.new_database())
    assert main(["db", "migrate", "--store", dsn]) == 0
    a = pigeon_factory(node_config(dsn, "node-a"))
    b = pigeon_factory(node_config(dsn, "node-b"))
    url = b.api_url("/api/queue")

    done = a.command("token", "add", "ops", "--scope", "read", text=True)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert wait_for(lambda: curl(url, token=token)[0] == 200, timeout=5 * REFRESH + 5), b.log()
    listed = b.command("token", "list", text=True)
    assert listed.stdout.startswith("ops\tread\t"), listed.stderr

    assert a.command("token", "remove", "ops").returncode == 0
    assert wait_for(lambda: curl(url, token=token)[0] == 401, timeout=5 * REFRESH + 5), b.log()
    for node in (a, b):
        assert not (node.data_dir / "api-tokens.json").exists(), node.data_dir
