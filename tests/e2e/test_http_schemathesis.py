"""schemathesis against the OpenAPI document of a running pigeon (issue 15, docs/api.md).

A real pigeon on its own ports and data directory, a token with every
scope (`pigeon token add`), a little mail in a local mailbox (whose
address and message ids are given to schemathesis as a dictionary, so
half the mailbox cases reach a real message) and a message deferred in
the queue; then schemathesis's command line (`st
run`) reads /api/openapi.json from that pigeon and sends what it
generates from it (valid and invalid requests) to every operation, with
the checks:

  * not_a_server_error: no 5xx, for any input;
  * response_schema_conformance: every response matches the schema the
    document gives for its status (problems included);
  * status_code_conformance: every status is one the document lists.

Bounded: at most MAX_EXAMPLES cases per operation, a fixed seed (a
failure can be replayed; `PIGEON_SCHEMATHESIS_SEED` picks another), a
timeout per request and one for the whole run.

The destructive operations are included: they act on this test pigeon
only. POST /api/send may queue mail to whatever addresses are generated,
so every remote next hop is a closed loopback port (`relay_host`) and
DNS goes to a closed loopback port too: nothing leaves the machine.
DELETE of a mailbox message and the queue actions (delete, bounce) act
on this pigeon's own mail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import smtplib
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest
import test_http_api as api

from pigeon.testing.live import free_port, maildir_messages, wait_for

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = 50
#: The whole run's bound (seconds): a few minutes on 2 slow cores.
RUN_TIMEOUT = 420
CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance"


def st_command() -> list[str]:
    """`st` of the test extras (pyproject.toml), next to this Python."""
    exe = Path(sys.executable).with_name("st")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("st")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("schemathesis (`st`) is not installed: pip install -e '.[test]'")
        pytest.skip("schemathesis (`st`) is not installed: pip install -e '.[test]'")
    return [found]


MESSAGES = "/api/mailboxes/alice@localhost/messages"


def mail(n: int) -> EmailMessage:
    """A message for alice with text, HTML and an attachment."""
    msg = EmailMessage()
    msg["From"] = "a@localhost"
    msg["To"] = "alice@localhost"
    msg["Subject"] = f"kept {n}"
    msg.set_content(f"hello {n}\n")
    msg.add_alternative(f"<p>hello {n}</p>", subtype="html")
    msg.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="a.pdf")
    return msg


@pytest.fixture
def server(pigeon_factory):
    closed = free_port()  # nothing listens here
    return pigeon_factory(
        'relay_networks = ["127.0.0.0/8"]\n[domains."localhost"]\n'
        "[queue]\nrun_interval = 1.0\nmin_backoff = 3600\nmax_backoff = 7200\n"
        f'[delivery]\nrelay_host = "[127.0.0.1]:{closed}"\n'
        f'dns_servers = ["127.0.0.1:{closed}"]\ndns_timeout = 1.0\nconnect_timeout = 1.0\n'
        '[admin]\nmetrics_listen = ""\n'
    )


def test_schemathesis_finds_no_5xx_and_no_schema_mismatch(server, tmp_path):
    st = st_command()
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as s:
        for n in range(3):
            s.send_message(mail(n))
        s.sendmail("a@localhost", ["someone@far.test"], b"Subject: deferred\r\n\r\nhi\r\n")
    assert wait_for(lambda: len(maildir_messages(server.data_dir, "alice@localhost")) == 3)
    everything = api.token(server, "schemathesis", "send,read,admin")
    listed = api.curl(server.api_url(MESSAGES), token=everything)[2]
    ids = [m["id"] for m in json.loads(listed)["messages"]]
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        # Half the mailbox cases name a real mailbox and message (random ones
        # would only ever meet 404): schemathesis's dictionaries.
        f"[dictionaries]\naddresses = {{ values = {json.dumps(['alice@localhost'])} }}\n"
        f"ids = {{ values = {json.dumps(ids)} }}\n"
        "[parameters]\n"
        '"path.address" = { dictionary = "addresses", probability = 0.5 }\n'
        '"path.id" = { dictionary = "ids", probability = 0.5 }\n'
    )
    seed = os.environ.get("PIGEON_SCHEMATHESIS_SEED", "15")
    done = subprocess.run(
        [
            *st,
            "--config-file",
            str(config),
            "run",
            server.api_url("/api/openapi.json"),
            "--checks",
            CHECKS,
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            seed,
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--generation-database",
            "none",
            "--header",
            f"Authorization: Bearer {everything}",
            "--no-color",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path / "report"),
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-5000:] + server.log()[-5000:]
    # The run tested every operation it selected, and selected them all.
    selected = re.search(r"Selected: (\d+)/(\d+)", done.stdout)
    tested = re.search(r"Tested: (\d+)", done.stdout)
    assert selected and tested, done.stdout[-5000:]
    assert selected[1] == selected[2] == tested[1], done.stdout[-5000:]
    assert int(tested[1]) >= 12  # health, ready, the document, queue, send, mailboxes
    assert "Traceback" not in server.log()
