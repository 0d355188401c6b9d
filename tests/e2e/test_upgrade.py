"""Upgrade from the previous release, end to end (docs/upgrade.md).

The data directory written by pigeon 0.1.0 itself (tests/fixtures/datadir-0.1.0,
made by tests/fixtures/make_datadir_0_1_0.py: queued, deferred and held
mail to local and remote recipients, two accounts) is copied to a scratch
directory and served by this pigeon: it logs one upgrade line per format,
delivers every message (local ones into the Maildirs, remote ones through a
DNS server on loopback to Postfix's smtp-sink), keeps the held ones until
`pigeon queue release`, lets the accounts log in with their passwords, and
opens the upgraded data again without a second upgrade. Data of a newer
format is refused by `pigeon serve`, `pigeon queue` and `pigeon user` with
one line and exit 73.
"""

from __future__ import annotations

import json
import smtplib
import sqlite3
import ssl
import subprocess

import pytest

from pigeon.testing.dnsserver import DnsServer
from pigeon.testing.live import PigeonProcess, free_port, maildir_messages, wait_for
from pigeon.testing.sink import SmtpSink

pytestmark = pytest.mark.e2e

#: The fixture's remote domains, routed to the sink on 127.0.0.2.
ZONES = {d: "@ MX 10 mx\nmx A 127.0.0.2\n" for d in ("remote.test", "far.test")}
UPGRADED = ("queue database", "queue/queue.db"), ("account store", "accounts.db")
UPGRADED += (("mailbox directory", "mailboxes"),)


def config(dns_port: int, sink_port: int) -> str:
    return (
        'relay_networks = ["127.0.0.0/8"]\n'
        '[domains."example.test"]\nmailboxes = ["alice", "bob", "carol", "relay", "sender"]\n'
        f'[delivery]\ndns_servers = ["127.0.0.1:{dns_port}"]\nremote_port = {sink_port}\n'
        "connect_timeout = 2.0\n"
        # The fixture's mail arrived when it was made: never expire or warn in a test.
        "[queue]\nrun_interval = 1.0\nmin_backoff = 1.0\nmax_backoff = 2.0\n"
        "delay_warning = 0\nmax_lifetime = 315360000\n"
        '[admin]\nmetrics_listen = ""\n'
    )


def pigeon_cmd(server: PigeonProcess, *argv: str) -> subprocess.CompletedProcess:
    """The command's result with its output as text."""
    done = server.command(*argv)
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


@pytest.fixture
def world(tmp_path, datadir_0_1_0):
    sink_port = free_port()
    with DnsServer(zones=ZONES) as dns, SmtpSink("127.0.0.2", sink_port) as sink:
        server = PigeonProcess(tmp_path / "w", config(dns.port, sink_port))
        manifest = datadir_0_1_0(server.data_dir)
        try:
            yield server, sink, manifest
        finally:
            server.stop()


def subjects(data_dir, address: str) -> list[str]:
    out = []
    for path in maildir_messages(data_dir, address):
        for line in path.read_bytes().split(b"\n"):
            if line.startswith(b"Subject: "):
                out.append(line[9:].decode())
                break
    return sorted(out)


def remote_rcpts(sink: SmtpSink) -> list[str]:
    found = []
    for dump in sink.messages():
        head = dump.partition(b"(smtp-sink)")[0]
        found += [
            line[len("X-Rcpt-Args: <") :].split(">")[0]
            for line in head.decode(errors="replace").splitlines()
            if line.startswith("X-Rcpt-Args: <")
        ]
    return sorted(found)


def queue_list(server: PigeonProcess) -> list[dict]:
    done = pigeon_cmd(server, "queue", "list", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["entries"]


def upgrade_lines(server: PigeonProcess) -> list[str]:
    log = server.log()
    return [
        line
        for what, path in UPGRADED
        for line in log.splitlines()
        if f"upgraded the {what} {server.data_dir / path} from format 0 to format 1 "
        "(pigeon 0.2.0)" in line
    ]


def login(server: PigeonProcess, name: str, password: str) -> None:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=20) as s:
        s.starttls(context=context)
        s.login(name, password)


def test_the_data_of_0_1_0_is_upgraded_and_every_message_delivered(world):
    server, sink, manifest = world
    by_subject = {m["subject"]: m for m in manifest["messages"]}
    assert {m["state"] for m in manifest["messages"]} == {"incoming", "deferred", "hold"}
    server.start()
    # The log is written by a thread of its own: wait for the line that
    # follows the start-up ("pigeon ready"), then count.
    assert wait_for(lambda: server.log().count("pigeon ready") == 1), server.log()
    assert len(upgrade_lines(server)) == 3, server.log()
    # Deferred mail waits for its next attempt, set by 0.1.0 an hour after it
    # tried: an operator who wants it now flushes, as with Postfix.
    assert pigeon_cmd(server, "queue", "flush").returncode == 0

    def delivered() -> bool:
        return (
            subjects(server.data_dir, "alice@example.test") == ["deferred, remote", "queued, big"]
            and subjects(server.data_dir, "bob@example.test") == ["queued, local"]
            and subjects(server.data_dir, "carol@example.test") == ["deferred, local"]
            and remote_rcpts(sink) == ["big@far.test", "dest@far.test", "user@remote.test"]
        )

    assert wait_for(delivered, timeout=60), (
        subjects(server.data_dir, "alice@example.test"),
        remote_rcpts(sink),
        server.log(),
    )
    # alice had "deferred, remote" from 0.1.0 already: not a second copy.
    assert by_subject["deferred, remote"]["recipients"]["alice@example.test"] == "delivered"
    big = next(
        p
        for p in maildir_messages(server.data_dir, "alice@example.test")
        if b"queued, big" in p.read_bytes()
    )
    assert big.read_bytes().count(b"0123456789abcdef\n") == 150 * 1024 // 18
    # The envelope's DSN parameters survived the upgrade (RFC 3461 §4, §5).
    dump = next(d for d in sink.messages() if b"<user@remote.test>" in d)
    assert b"ENVID=fixture-deferred-remote" in dump and b"RET=HDRS" in dump
    # The held mail waits for the operator, as it did under 0.1.0.
    held = {e["id"]: e["state"] for e in queue_list(server)}
    assert held == {
        by_subject["held, local"]["queue_id"]: "hold",
        by_subject["held, remote"]["queue_id"]: "hold",
    }
    done = pigeon_cmd(server, "queue", "release", "--all")
    assert done.returncode == 0, done.stderr
    assert wait_for(
        lambda: (
            subjects(server.data_dir, "carol@example.test") == ["deferred, local", "held, local"]
            and "held@remote.test" in remote_rcpts(sink)
            and queue_list(server) == []
        ),
        timeout=60,
    ), (queue_list(server), server.log())
    # The accounts log in with the passwords they were given under 0.1.0.
    for account in manifest["accounts"]:
        login(server, account["name"], account["password"])
        with pytest.raises(smtplib.SMTPAuthenticationError):
            login(server, account["name"], account["password"] + "-wrong")
    assert server.stop() == 0
    # Upgraded once: the next start opens it as it is.
    server.start()
    assert wait_for(lambda: server.log().count("pigeon ready") == 2), server.log()
    assert len(upgrade_lines(server)) == 3
    shown = pigeon_cmd(server, "data", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    assert {f["name"]: f["state"] for f in json.loads(shown.stdout)["formats"]} == {
        "queue": "current",
        "accounts": "current",
        "mailboxes": "current",
    }


def _newer(path) -> None:
    """`path` as pigeon 9.0.0 would leave it, with format 9."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 9")
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('written_by', '9.0.0')")
    conn.commit()
    conn.close()


def refusals(text: str) -> list[str]:
    return [line for line in text.splitlines() if "has format 9 (written by pigeon 9.0.0)" in line]


@pytest.mark.parametrize(
    "part, command",
    [
        ("queue/queue.db", ["queue", "list"]),
        ("accounts.db", ["user", "list"]),
        ("mailboxes/.pigeon-format", None),  # only `pigeon serve` opens the mailbox tree
    ],
)
@pytest.mark.parametrize("workers", [1, 2])
def test_data_of_a_newer_format_is_refused_in_one_line(
    tmp_path, datadir_0_1_0, part, command, workers
):
    server = PigeonProcess(tmp_path / "w", f"workers = {workers}\n")
    datadir_0_1_0(server.data_dir)
    path = server.data_dir / part
    if part.endswith(".pigeon-format"):
        path.write_text("pigeon mailboxes format 9 written-by 9.0.0\n")
    else:
        _newer(path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError):  # it exits instead of listening
        server.start(timeout=30)
    assert server.proc is not None and server.proc.returncode == 73
    log = server.log()
    assert "Traceback" not in log
    (line,) = refusals(log)
    assert str(path.parent if part.startswith("mailboxes") else path) in line
    assert "this is pigeon 0.2.0, which knows formats up to 1" in line
    assert "run pigeon 9.0.0 or newer" in line
    assert path.read_bytes() == before  # nothing written into it
    if command is None:
        return
    done = pigeon_cmd(server, *command)
    assert done.returncode == 73 and "Traceback" not in done.stderr
    assert len(refusals(done.stderr)) == 1, done.stderr
