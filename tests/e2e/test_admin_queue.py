"""Run it like Postfix, end to end: sendmail, pigeon queue, status, log, metrics.

A real pigeon in a subprocess; the commands are run as an operator would,
as subprocesses sharing its configuration file (hence its data_dir and
control socket). The peer for "down.test" is a closed loopback port until
the test starts Postfix's smtp-sink on it.
"""

from __future__ import annotations

import json
import smtplib
import subprocess
import urllib.request

import pytest

from pigeon.testing.live import free_port, maildir_messages, wait_for

pytestmark = pytest.mark.e2e


def pigeon_cmd(server, *argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """`pigeon ARGV...` with the server's configuration (via $PIGEON_CONFIG)."""
    return server.command(*argv, stdin=stdin)


def base_config(extra: str = "", metrics: str = "") -> str:
    return (
        f'relay_networks = ["127.0.0.0/8"]\n'
        f'[domains."localhost"]\n'
        f"[queue]\nrun_interval = 1.0\nmin_backoff = 3600\nmax_backoff = 7200\n"
        f"[delivery]\nconnect_timeout = 2.0\n"
        f'[admin]\nmetrics_listen = "{metrics}"\n' + extra
    )


def test_sendmail_t_i_queues_and_delivers(pigeon_factory):
    server = pigeon_factory(base_config())
    msg = (
        b"To: Bob <bob@localhost>\nBcc: carol@localhost\nSubject: from cron\n\n"
        b"line one\n.\nline after a lone dot\n"
    )
    done = pigeon_cmd(server, "sendmail", "-t", "-i", "-f", "cron@localhost", stdin=msg)
    assert done.returncode == 0, done.stderr
    bob = wait_for(lambda: maildir_messages(server.data_dir, "bob@localhost"), timeout=20)
    carol = wait_for(lambda: maildir_messages(server.data_dir, "carol@localhost"), timeout=20)
    assert bob and carol, server.log()
    data = bob[0].read_bytes()
    assert b"Return-Path: <cron@localhost>" in data
    assert b"Bcc" not in data and b"carol" not in data
    assert b"line one\n.\nline after a lone dot\n" in data
    assert b"Received: from local user" in data and b"Message-ID: <" in data


def test_deferred_listed_with_reason_then_hold_release_flush(pigeon_factory, tmp_path):
    port = free_port()  # nothing listens here until the sink starts
    server = pigeon_factory(base_config(f'[transports]\n"down.test" = "smtp:[127.0.0.1]:{port}"\n'))
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as s:
        s.sendmail("sender@localhost", ["user@down.test"], b"Subject: later\r\n\r\nhi\r\n")
    assert wait_for(lambda: "status=deferred" in server.log(), timeout=20), server.log()

    listed = pigeon_cmd(server, "queue", "list")
    assert listed.returncode == 0, listed.stderr
    out = listed.stdout.decode()
    assert "deferred" in out and "user@down.test" in out and "refused" in out.lower()

    # The unreachable hop is probed again every run_interval (1 s here), and
    # each probe makes the entry 'active' for a moment: a listing or a hold
    # that lands in that moment sees it active (the hold is then applied
    # when the attempt ends: "held 0; 1 being delivered, held when ..."), so
    # both are asked again until they land between two probes.
    def deferred_entry() -> dict | None:
        got = json.loads(pigeon_cmd(server, "queue", "list", "--json").stdout)["entries"]
        return got[0] if len(got) == 1 and got[0]["state"] == "deferred" else None

    entry = wait_for(deferred_entry, timeout=20)
    assert entry is not None
    qid = entry["id"]
    assert entry["state"] == "deferred" and entry["reason"].startswith("4.")

    hold = pigeon_cmd(server, "queue", "hold", qid).stdout.decode()
    assert hold.startswith("held 1") or hold.startswith("held 0; 1 being delivered"), hold

    def held_ids() -> list[str] | None:
        got = json.loads(pigeon_cmd(server, "queue", "list", "--state", "hold", "--json").stdout)
        return [e["id"] for e in got["entries"]] or None

    assert wait_for(held_ids, timeout=20) == [qid]
    assert pigeon_cmd(server, "queue", "release", "--all").returncode == 0

    from pigeon.testing.sink import SmtpSink

    with SmtpSink("127.0.0.1", port) as sink:
        # Released mail is due at once; flush also covers a retry already scheduled.
        flushed = pigeon_cmd(server, "queue", "flush", "down.test")
        assert flushed.returncode == 0, flushed.stderr
        got = wait_for(sink.messages, timeout=30)
        assert got and b"<user@down.test>" in got[0], server.log()
    assert wait_for(
        lambda: json.loads(pigeon_cmd(server, "queue", "list", "--json").stdout)["entries"] == [],
        timeout=10,
    )
    history = pigeon_cmd(server, "log", "--log-file", str(server.log_path), qid)
    text = history.stdout.decode()
    assert "status=deferred" in text and "on hold by administrator" in text
    assert "status=sent" in text and "removed" in text


def test_delete_and_bounce(pigeon_factory):
    port = free_port()
    server = pigeon_factory(base_config(f'[transports]\n"down.test" = "smtp:[127.0.0.1]:{port}"\n'))
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as s:
        for n in range(2):
            s.sendmail(
                "sender@localhost", ["user@down.test"], f"Subject: m{n}\r\n\r\nhi\r\n".encode()
            )
    assert wait_for(lambda: server.log().count("status=deferred") >= 2, timeout=20), server.log()
    first, second = [
        e["id"] for e in json.loads(pigeon_cmd(server, "queue", "list", "--json").stdout)["entries"]
    ]
    assert pigeon_cmd(server, "queue", "delete", first).stdout.decode().startswith("deleted 1")
    assert pigeon_cmd(server, "queue", "bounce", second).stdout.decode().startswith("bounced 1")
    reports = wait_for(lambda: maildir_messages(server.data_dir, "sender@localhost"), timeout=20)
    assert len(reports) == 1 and b"administrator" in reports[0].read_bytes()
    shown = pigeon_cmd(server, "queue", "show", first)
    assert shown.returncode == 65 and b"no such message" in shown.stderr


def test_status_and_metrics_scraped(pigeon_factory):
    from prometheus_client.parser import text_string_to_metric_families

    mport = free_port()
    server = pigeon_factory(base_config(metrics=f"127.0.0.1:{mport}"))
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as s:
        s.sendmail(
            "a@localhost",
            ["b@localhost"],
            b"Subject: m\r\n\r\n" + b"\r\n".join([b"y" * 70] * 40) + b"\r\n",
        )
    assert wait_for(lambda: maildir_messages(server.data_dir, "b@localhost"), timeout=20)
    status = pigeon_cmd(server, "status")
    assert status.returncode == 0 and b"pigeon is running" in status.stdout

    def scrape():
        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as r:
            return r.read().decode()

    samples = {}
    for fam in text_string_to_metric_families(scrape()):
        for smp in fam.samples:
            samples[(smp.name, tuple(sorted(smp.labels.items())))] = smp.value
    assert ("pigeon_queue_messages", (("state", "incoming"),)) in samples
    assert (
        samples.get(
            ("pigeon_recipients_total", (("destination", "local"), ("outcome", "delivered")))
        )
        == 1
    )
    curl = (
        subprocess.run(
            ["curl", "-sf", f"http://127.0.0.1:{mport}/metrics"], capture_output=True, timeout=10
        )
        if _has("curl")
        else None
    )
    if curl is not None:
        assert curl.returncode == 0 and b"pigeon_start_time_seconds" in curl.stdout


def _has(tool: str) -> bool:
    import shutil

    return shutil.which(tool) is not None
