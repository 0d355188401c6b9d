"""SmtpAgent against real peers: Postfix's smtp-sink and a private Postfix instance."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from pigeon.delivery.api import DeliveryRecipient, DeliveryRequest, Outcome
from pigeon.delivery.smtp import Candidate, SmtpAgent
from pigeon.proto.client import ClientConfig
from pigeon.proto.params import MailParams, RcptParams
from pigeon.testing.live import free_port, require_tool, wait_for
from pigeon.testing.postfix import PostfixUnavailable, PrivatePostfix, wait_banner
from pigeon.vocab import Nexthop

pytestmark = pytest.mark.e2e

# Lines starting with dots (the first one too), a lone dot line, and a body
# bigger than one 64 KiB chunk so stuffing crosses chunk boundaries.
CONTENT = (
    b".first line starts with a dot\r\nSubject: dots\r\n\r\n.\r\n..\r\nmiddle\r\n"
    + b"".join(b".%06d " % i + b"x" * 60 + b"\r\n" for i in range(2000))
    + b"end\r\n"
)


class OneResolver:
    def __init__(self, port: int) -> None:
        self.port = port

    async def candidates(self, nexthop: Nexthop) -> list[Candidate]:
        return [Candidate("peer.test", "127.0.0.1", self.port, 0)]


def make_request(tmp_path: Path, rcpts, content=CONTENT, domain="dest.test") -> DeliveryRequest:
    path = tmp_path / "content.eml"
    path.write_bytes(content)
    return DeliveryRequest(
        queue_id="Q1",
        sender="sender@src.test",
        params=MailParams(ret="HDRS", envid="env-1"),
        recipients=tuple(
            DeliveryRecipient(r, RcptParams(("FAILURE",), ("rfc822", r))) for r in rcpts
        ),
        content=path,
        size=len(content),
        eight_bit=False,
        smtputf8=False,
        nexthop=Nexthop("smtp", domain),
    )


async def deliver(port: int, req: DeliveryRequest, config: ClientConfig | None = None):
    agent = SmtpAgent(config or ClientConfig(), OneResolver(port), own_hostname="pigeon.test")
    try:
        return await agent.deliver(req)
    finally:
        await agent.aclose()


@pytest.mark.parametrize("chunking", [True, False])
def test_smtp_sink_receives_content_intact(tmp_path, chunking):
    sink = require_tool("smtp-sink")
    port = free_port()
    # smtp-sink runs as nobody (it refuses root): the dump directory must be
    # reachable for it, which pytest's 0700 tmp_path is not.
    dump = Path(tempfile.mkdtemp(prefix="pigeon-sink-"))
    os.chmod(dump, 0o777)
    cmd = [sink]
    if os.geteuid() == 0:
        cmd += ["-u", "nobody"]
    cmd += ["-d", f"{dump}/%M.", f"127.0.0.1:{port}", "10"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_banner(port, 10), "smtp-sink did not start"
        res = asyncio.run(
            deliver(
                port,
                make_request(tmp_path, ["a@dest.test", "b@dest.test"]),
                ClientConfig(chunking=chunking),
            )
        )
        assert [r.outcome for r in res] == [Outcome.DELIVERED] * 2, res
        files = wait_for(lambda: [p for p in dump.iterdir() if p.stat().st_size > 1000])
        assert files, "smtp-sink wrote no dump"
        time.sleep(0.2)
        data = files[0].read_bytes()
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(dump, ignore_errors=True)
    # The dump: smtp-sink headers, its 3-line Received:, then the message as received.
    head, sep, body = data.partition(b"(smtp-sink)")
    assert sep, data[:300]
    body = body.split(b"\n", 2)[2]  # rest of the Received: header
    lf = CONTENT.replace(b"\r\n", b"\n")
    assert body.replace(b"\r\n", b"\n").rstrip(b"\n") == lf.rstrip(b"\n")
    assert b"X-Rcpt-Args: <a@dest.test>" in head and b"X-Rcpt-Args: <b@dest.test>" in head


@pytest.fixture
def postfix(tmp_path):
    require_tool("postfix")
    openssl = require_tool("openssl")
    tls = tmp_path / "tls"
    tls.mkdir()
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=postfix.dest.test",
            "-keyout",
            str(tls / "key.pem"),
            "-out",
            str(tls / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    os.chmod(tls / "key.pem", 0o644)
    settings = {
        "mydestination": "dest.test",
        "local_recipient_maps": "inline:{alice=ok, bob=ok}",
        "smtpd_tls_security_level": "may",
        "smtpd_tls_cert_file": str(tls / "cert.pem"),
        "smtpd_tls_key_file": str(tls / "key.pem"),
        "smtpd_tls_received_header": "yes",
        "smtpd_tls_loglevel": "1",
    }
    # The postfix user must reach the spool: not under pytest's 0700 tmp_path.
    work = Path(tempfile.mkdtemp(prefix="pigeon-postfix-"))
    pf = PrivatePostfix(work, settings=settings, hostname="postfix.dest.test", domain="dest.test")
    try:
        pf.start()
    except PostfixUnavailable as exc:
        pf.stop()
        shutil.rmtree(work, ignore_errors=True)
        if os.environ.get("CI") == "true":
            pytest.fail(f"private Postfix unavailable in CI: {exc}")
        pytest.skip(str(exc))
    try:
        yield pf
    finally:
        pf.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_postfix_accepts_over_starttls_with_dsn_and_rejects_unknown(tmp_path, postfix):
    req = make_request(tmp_path, ["alice@dest.test", "nobody@dest.test", "bob@dest.test"])
    res = asyncio.run(deliver(postfix.port, req))
    by = {r.address: r for r in res}
    assert by["alice@dest.test"].outcome is Outcome.DELIVERED
    assert by["alice@dest.test"].action == "delivered"  # Postfix offers DSN
    assert by["alice@dest.test"].remote_mta == f"peer.test[127.0.0.1]:{postfix.port}"
    assert by["bob@dest.test"].outcome is Outcome.DELIVERED
    # Not checked under delivery.tls = "may": "encrypted TLSv1.x CIPHER" (not "verified").
    assert by["alice@dest.test"].tls.startswith("encrypted TLSv1")
    bad = by["nobody@dest.test"]
    assert bad.outcome is Outcome.BOUNCED and bad.status == "5.1.1" and bad.action == "failed"
    assert bad.diagnostic.startswith("550 5.1.1 <nobody@dest.test>: Recipient address rejected")
    assert wait_for(lambda: postfix.maillog_text().count("status=sent") >= 2, 20), (
        postfix.log_tail()
    )
    log = postfix.maillog_text()
    assert "STARTTLS" in log or "TLS connection established" in log, postfix.log_tail(30)
    # Postfix answers 555 to parameters it does not take: RET/ENVID/NOTIFY/ORCPT
    # were accepted since the message went through (its log does not show them).


def test_postfix_plaintext_when_tls_is_off(tmp_path, postfix):
    req = make_request(tmp_path, ["alice@dest.test"], content=b"Subject: x\r\n\r\nplain\r\n")
    res = asyncio.run(deliver(postfix.port, req, ClientConfig(tls="none")))
    assert res[0].outcome is Outcome.DELIVERED
    assert wait_for(lambda: "status=sent" in postfix.maillog_text(), 20)


def test_postfix_verify_fails_on_self_signed_certificate(tmp_path, postfix):
    req = make_request(tmp_path, ["alice@dest.test"], content=b"Subject: x\r\n\r\nv\r\n")
    res = asyncio.run(deliver(postfix.port, req, ClientConfig(tls="verify")))
    assert res[0].outcome is Outcome.DEFERRED and res[0].status == "4.7.5"
    assert "Cannot start TLS" in res[0].diagnostic


def test_postfix_takes_a_quoted_sender_with_special_characters(tmp_path, postfix):
    """proto/client.py Rule 6: a sender our server accepted ('"a>b"@...')
    goes out re-quoted, and Postfix takes it (it would have deferred forever)."""
    req = make_request(tmp_path, ["alice@dest.test"])
    req = dataclasses.replace(req, sender='"a>b c"@src.test')
    res = asyncio.run(deliver(postfix.port, req))
    assert [r.outcome for r in res] == [Outcome.DELIVERED], res
    assert wait_for(lambda: 'from=<"a>b c"@src.test>' in postfix.maillog_text(), 20), (
        postfix.log_tail()
    )
