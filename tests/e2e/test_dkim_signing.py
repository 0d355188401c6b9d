"""DKIM signing end to end, as a new user sets it up (docs/mail-auth.md).

`pigeon dkim keygen example.test` makes the keys; the records it prints are
published in a zone served by a real DNS server on loopback; mail our users
send (submission with AUTH, a relay_networks client, local `sendmail`) is
delivered with two DKIM-Signature fields that OpenDKIM (Debian's, run as a
separate process) verifies against the published records: rsa-sha256 and
ed25519-sha256 both pass, a tampered copy fails. Mail from strangers to a
local mailbox is not signed. Our bounces, from MAILER-DAEMON@<hostname>,
are signed with the keys of the hostname's parent domain.
"""

from __future__ import annotations

import json
import smtplib
import stat
import subprocess

import pytest
from dkim_helpers import opendkim_verifier, opendkim_verify, published_txt, zone_records
from secure_helpers import PASSWORD, USER, add_user, insecure_context

from pigeon.testing.dnsserver import DnsServer
from pigeon.testing.live import PigeonProcess, maildir_messages, require_tool, wait_for

pytestmark = pytest.mark.e2e

MESSAGE = (
    "From: Alice <alice@example.test>\r\n"
    "To: bob@example.test\r\n"
    "Subject: signed by pigeon\r\n"
    "Date: Sun, 06 Dec 2026 07:00:00 +0000\r\n"
    "Message-ID: <signed.1@example.test>\r\n"
    "\r\n"
    "Hello Bob,\r\n"
    "this message is signed twice.\r\n"
)
NAMES = ["202612-rsa._domainkey.example.test", "202612-ed25519._domainkey.example.test"]


_STARTED: list[PigeonProcess] = []


@pytest.fixture(autouse=True)
def _stop_servers():
    """Every server `_server` started is stopped when its test ends, passed or not."""
    yield
    while _STARTED:
        _STARTED.pop().stop()


def _server(tmp_path, top: str = "") -> tuple[PigeonProcess, str]:
    """A server whose keys `pigeon dkim keygen` made before it started; the keygen output.
    `top`: top-level keys."""
    proc = PigeonProcess(
        tmp_path / "p",
        top + '[domains."example.test"]\nmailboxes = ["alice", "bob"]\n'
        f'[dkim]\nkey_dir = "{tmp_path / "dkim"}"\n',
    )
    made = proc.command("dkim", "keygen", "example.test", "--selector", "202612", text=True)
    assert made.returncode == 0, made.stderr
    _STARTED.append(proc)
    return proc.start(), made.stdout


def _delivered(server: PigeonProcess, address: str = "bob@example.test") -> bytes:
    found = wait_for(lambda: maildir_messages(server.data_dir, address), 30)
    assert found, server.log()
    return found[0].read_bytes()


def _verify(tmp_path, message: bytes, keygen_output: str) -> str:
    """OpenDKIM's verdict on `message`, with the keys as the loopback DNS serves them."""
    with DnsServer(zones={"example.test": zone_records(keygen_output)}) as dns_server:
        keys = published_txt(dns_server.port, NAMES)
    return opendkim_verify(tmp_path / "opendkim", message, keys)


def _both_pass(verdict: str) -> bool:
    return (
        "dkim=pass (2048-bit key) header.d=example.test" in verdict
        and "header.a=rsa-sha256 header.s=202612-rsa" in verdict
        and "header.a=ed25519-sha256 header.s=202612-ed25519" in verdict
        and verdict.count("dkim=pass") == 2
    )


def test_keygen_writes_private_keys_and_prints_both_records(tmp_path):
    proc = PigeonProcess(tmp_path / "p", f'[dkim]\nkey_dir = "{tmp_path / "dkim"}"\n')
    made = proc.command("dkim", "keygen", "example.test", text=True)
    assert made.returncode == 0, made.stderr
    directory = tmp_path / "dkim" / "example.test"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "dkim").stat().st_mode) == 0o700
    keys = sorted(directory.iterdir())
    assert len(keys) == 2 and all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys)
    assert "._domainkey.example.test. IN TXT" in made.stdout
    assert '"v=DKIM1; k=rsa; p=' in made.stdout and '"v=DKIM1; k=ed25519; p=' in made.stdout
    # The same selector again is refused: a key is never overwritten.
    selector = keys[0].name.split("-")[0]
    again = proc.command("dkim", "keygen", "example.test", "--selector", selector, text=True)
    assert again.returncode == 73 and "exists" in again.stderr


def test_submission_mail_is_signed_rsa_and_ed25519_and_opendkim_verifies_both(tmp_path):
    server, keygen = _server(tmp_path)
    add_user(server, USER, PASSWORD)
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30) as client:
        client.starttls(context=insecure_context())
        client.login(USER, PASSWORD)
        client.sendmail(USER, ["bob@example.test"], MESSAGE)
    delivered = _delivered(server)
    head = delivered.split(b"\n\n", 1)[0]
    assert head.count(b"DKIM-Signature: ") == 2, head
    assert b"c=relaxed/relaxed" in head
    # From oversigned: listed once more than the message has it (RFC 6376 §8.15).
    h_tag = head.split(b"h=", 1)[1].split(b";", 1)[0].replace(b"\n", b"").replace(b" ", b"")
    assert h_tag.split(b":").count(b"from") == 2, h_tag
    verdict = _verify(tmp_path, delivered, keygen)
    assert _both_pass(verdict), verdict
    # The signatures cover the content: a changed body or header fails, both of them.
    for tampered in (
        delivered.replace(b"signed twice", b"signed thrice"),
        delivered.replace(b"Subject: signed by pigeon", b"Subject: signed by eve"),
    ):
        bad = _verify(tmp_path, tampered, keygen)
        assert bad.count("dkim=fail") == 2 and "dkim=pass" not in bad, bad


def test_relay_networks_client_mail_is_signed(tmp_path):
    server, keygen = _server(tmp_path, 'relay_networks = ["127.0.0.0/8"]\n')
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        client.sendmail("alice@example.test", ["bob@example.test"], MESSAGE)
    assert _both_pass(_verify(tmp_path, _delivered(server), keygen))


def test_mail_from_the_internet_to_a_local_mailbox_is_not_signed(tmp_path):
    server, _ = _server(tmp_path)  # no relay_networks: 127.0.0.1 is a stranger
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        client.sendmail("alice@example.test", ["bob@example.test"], MESSAGE)
    assert b"DKIM-Signature" not in _delivered(server)


def test_local_sendmail_mail_is_signed(tmp_path):
    server, keygen = _server(tmp_path)
    sent = server.command("sendmail", "-t", stdin=MESSAGE.replace("\r\n", "\n").encode())
    assert sent.returncode == 0, sent.stderr
    assert _both_pass(_verify(tmp_path, _delivered(server), keygen))


def test_http_api_mail_is_signed(tmp_path):
    # POST /api/send queues as local submission does, signing included (docs/api.md).
    server, keygen = _server(tmp_path)
    made = server.command("token", "add", "app", "--scope", "send", text=True)
    assert made.returncode == 0, made.stderr
    body = json.dumps({"raw": MESSAGE, "to": ["bob@example.test"]})
    sent = subprocess.run(
        [require_tool("curl"), "-sS", "--max-time", "20", "-w", "%{http_code}",
         "-H", f"Authorization: Bearer {made.stdout.strip()}",
         "-H", "Content-Type: application/json", "--data-binary", "@-",
         server.api_url("/api/send")],
        input=body.encode(), capture_output=True, timeout=30,
    )  # fmt: skip
    assert sent.stdout.endswith(b"202"), sent.stdout + sent.stderr
    assert _both_pass(_verify(tmp_path, _delivered(server), keygen))


def test_local_sendmail_smtp_session_is_signed(tmp_path):
    # sendmail -bs: an SMTP session on stdin, written to the queue by root itself.
    server, keygen = _server(tmp_path)
    session = (
        "EHLO localhost\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\n"
        f"DATA\r\n{MESSAGE}.\r\nQUIT\r\n"
    )
    sent = server.command("sendmail", "-bs", stdin=session.encode())
    assert sent.returncode == 0 and b"250 2.0.0" in sent.stdout, sent.stdout + sent.stderr
    assert _both_pass(_verify(tmp_path, _delivered(server), keygen))


def test_unreadable_key_refuses_the_start_naming_the_file(tmp_path):
    proc = PigeonProcess(
        tmp_path / "p",
        f'[dkim]\nkey_dir = "{tmp_path / "dkim"}"\n'
        '[dkim.domains."example.test"]\nselector = "202612"\n',
    )
    made = proc.command("dkim", "keygen", "example.test", "--selector", "202612")
    assert made.returncode == 0, made.stderr
    key = tmp_path / "dkim" / "example.test" / "202612-ed25519.key"
    key.write_text("not a key\n")
    with pytest.raises(RuntimeError) as refused:
        proc.start()
    assert "exited with 78" in str(refused.value)
    assert f'dkim.domains."example.test".selector: {key} is not an Ed25519 seed' in str(
        refused.value
    )


EDITING_PLUGIN = """\
from pigeon.api import HeaderEdit, HeaderField, Verdict


class Plugin:
    def end_of_data(self, session, message):
        return Verdict(
            headers=(HeaderField("Reply-To", "team@example.test"),),
            header_edits=(HeaderEdit("change", "Subject", "[checked] signed by pigeon", 1),),
        )
"""


def test_signature_covers_the_edits_of_plugins_made_before_it(tmp_path):
    # Signing is the last step at the end of the data (net/signmail.py): a
    # plugin's changed Subject and its Reply-To put on top are signed as stored.
    (tmp_path / "edit.py").write_text(EDITING_PLUGIN)
    server, keygen = _server(tmp_path)
    plugin = f'[[plugins]]\npath = "{tmp_path / "edit.py"}"\n'
    server.stop()
    server.config_path.write_text(server.config_path.read_text() + plugin)
    server.start()
    add_user(server, USER, PASSWORD)
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30) as client:
        client.starttls(context=insecure_context())
        client.login(USER, PASSWORD)
        client.sendmail(USER, ["bob@example.test"], MESSAGE)
    delivered = _delivered(server)
    head = delivered.split(b"\n\n", 1)[0]
    assert b"Subject: [checked] signed by pigeon" in head and b"Reply-To: team@" in head
    h_tag = head.split(b"h=", 1)[1].split(b";", 1)[0].replace(b"\n", b"").replace(b" ", b"")
    assert b"reply-to" in h_tag.split(b":"), h_tag
    assert _both_pass(_verify(tmp_path, delivered, keygen))


def _submit_and_read(server: PigeonProcess, address: str) -> bytes:
    before = len(maildir_messages(server.data_dir, address))
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30) as client:
        client.starttls(context=insecure_context())
        client.login(USER, PASSWORD)
        client.sendmail(USER, [address], MESSAGE)
    found = wait_for(lambda: maildir_messages(server.data_dir, address)[before:], 30)
    assert found, server.log()
    return found[0].read_bytes()


def test_rotation_pin_keygen_publish_switch_by_reload(tmp_path):
    # docs/mail-auth.md "Key rotation": the selector pinned, a new pair made,
    # nothing changes until the configuration names it and pigeon reloads.
    pinned = '[dkim.domains."example.test"]\nselector = "202612"\n'
    server, _ = _server(tmp_path)
    server.config_path.write_text(server.config_path.read_text() + pinned)
    assert server.command("reload").returncode == 0
    add_user(server, USER, PASSWORD)
    made = server.command("dkim", "keygen", "example.test", "--selector", "202706", text=True)
    assert made.returncode == 0, made.stderr
    assert "pigeon signs with selector 202612 until" in made.stdout
    assert server.command("reload").returncode == 0
    assert b"s=202612-rsa;" in _submit_and_read(server, "bob@example.test")
    server.config_path.write_text(server.config_path.read_text().replace("202612", "202706"))
    assert server.command("reload").returncode == 0
    rotated = _submit_and_read(server, "bob@example.test")
    assert b"s=202706-rsa;" in rotated and b"s=202706-ed25519;" in rotated
    assert b"s=202612" not in rotated
    # A selector without keys refuses the reload; the running one stays.
    server.config_path.write_text(server.config_path.read_text().replace("202706", "209901"))
    refused = server.command("reload", text=True)
    assert refused.returncode != 0 and "209901" in refused.stdout + refused.stderr
    assert b"s=202706-rsa;" in _submit_and_read(server, "bob@example.test")


def test_mail_sent_through_submission_arrives_at_a_second_pigeon_with_dkim_pass(
    tmp_path, pigeon_factory
):
    # The "Done when": keygen, the printed records published, mail
    # submitted to pigeon A arrives at pigeon B, whose OpenDKIM milter
    # (verifying, its own process) writes dkim=pass for both signatures.
    sender = PigeonProcess(
        tmp_path / "a",
        '[domains."example.test"]\nmailboxes = ["alice", "bob"]\n'
        f'[dkim]\nkey_dir = "{tmp_path / "dkim"}"\n',
    )
    made = sender.command("dkim", "keygen", "example.test", "--selector", "202612", text=True)
    assert made.returncode == 0, made.stderr
    with DnsServer(zones={"example.test": zone_records(made.stdout)}) as dns_server:
        keys = published_txt(dns_server.port, NAMES)
    with opendkim_verifier(tmp_path / "opendkim", keys, "receiver.test") as verifier:
        receiver = pigeon_factory(
            '[domains."elsewhere.test"]\nmailboxes = ["carol"]\n'
            f'[[milters]]\nname = "opendkim"\nsocket = "{verifier.socket}"\n',
            hostname="receiver.test",
        )
        route = f'[transports]\n"elsewhere.test" = "smtp:[127.0.0.1]:{receiver.port}"\n'
        sender.config_path.write_text(sender.config_path.read_text() + route)
        with sender.start():
            add_user(sender, USER, PASSWORD)
            with smtplib.SMTP("127.0.0.1", sender.submission_port, timeout=30) as client:
                client.starttls(context=insecure_context())
                client.login(USER, PASSWORD)
                client.sendmail(USER, ["carol@elsewhere.test"], MESSAGE)
            arrived = _delivered(receiver, "carol@elsewhere.test")
    head = arrived.split(b"\n\n", 1)[0].decode()
    assert "Authentication-Results: receiver.test;" in head, head
    assert _both_pass(head.replace("\n\t", " ").replace("\n ", " ")), head


def test_a_bounce_from_mailer_daemon_is_signed_with_the_parent_domains_keys(tmp_path):
    """mail.example.test has no keys; example.test has: the bounce of a message
    to a domain that does not exist (NXDOMAIN from our DNS server) reaches the
    local sender signed with d=example.test, and OpenDKIM verifies it."""
    with DnsServer(zones={"example.test": "@ MX 10 mail.example.test.\n"}) as dns:
        proc = PigeonProcess(
            tmp_path / "p",
            'relay_networks = ["127.0.0.0/8"]\n'
            '[domains."example.test"]\nmailboxes = ["alice", "bob"]\n'
            f'[dkim]\nkey_dir = "{tmp_path / "dkim"}"\n'
            f'[delivery]\ndns_servers = ["127.0.0.1:{dns.port}"]\n',
            hostname="mail.example.test",
        )
        made = proc.command("dkim", "keygen", "example.test", "--selector", "202612", text=True)
        assert made.returncode == 0, made.stderr
        _STARTED.append(proc)
        server = proc.start()
        with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
            client.sendmail("alice@example.test", ["someone@nowhere.test"], MESSAGE)
        bounce = _delivered(server, "alice@example.test")
    head = bounce.split(b"\n\n", 1)[0]
    assert b"From: Mail Delivery System <MAILER-DAEMON@mail.example.test>" in head, head
    assert head.count(b"DKIM-Signature: ") == 2 and b"d=example.test" in head, head
    assert _both_pass(_verify(tmp_path, bounce, made.stdout))
