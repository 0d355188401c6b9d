"""TLS on the listeners: openssl s_client, STARTTLS injection, garbage, bad certificates, SIGHUP."""

from __future__ import annotations

import datetime
import signal
import smtplib
import socket
import subprocess
import sys

import pytest
from secure_helpers import CONFIG, insecure_context

from pigeon.net.tls import generate_self_signed
from pigeon.testing.live import PigeonProcess, recv_reply, require_tool, wait_for

pytestmark = pytest.mark.e2e


def _cert(directory, name: str, **kw):
    cert, key = directory / f"{name}-cert.pem", directory / f"{name}-key.pem"
    generate_self_signed(cert, key, name, **kw)
    return cert, key


def _tls_config(cert, key) -> str:
    return f'[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n'


def test_self_signed_certificate_is_made_and_logged(pigeon_factory):
    proc = pigeon_factory(CONFIG)
    assert (proc.data_dir / "tls" / "selfsigned-cert.pem").exists()
    assert wait_for(
        lambda: "generated a self-signed certificate for pigeon.test" in proc.log(), timeout=10
    ), proc.log()


def test_openssl_s_client_sees_the_configured_certificate(pigeon_factory, tmp_path):
    openssl = require_tool("openssl")
    cert, key = _cert(tmp_path, "mail.custom.test")
    proc = pigeon_factory(CONFIG + _tls_config(cert, key))
    for port, extra in (
        (proc.port, ["-starttls", "smtp"]),
        (proc.submission_port, ["-starttls", "smtp"]),
        (proc.submissions_port, []),
    ):
        out = subprocess.run(
            [
                openssl,
                "s_client",
                "-connect",
                f"127.0.0.1:{port}",
                *extra,
                "-servername",
                "mail.custom.test",
            ],
            input=b"QUIT\r\n",
            capture_output=True,
            timeout=20,
        )
        text = out.stdout.decode(errors="replace")
        assert "CN = mail.custom.test" in text or "CN=mail.custom.test" in text, text[:2000]
        assert "Protocol  : TLSv1.3" in text or "TLSv1.3" in text


def test_starttls_injection_is_not_answered_in_tls(pigeon_factory):
    proc = pigeon_factory(CONFIG)
    with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as raw:
        assert recv_reply(raw).startswith(b"220")
        raw.sendall(b"EHLO client.example\r\n")
        assert b"STARTTLS" in recv_reply(raw)
        raw.sendall(b"STARTTLS\r\nRSET\r\n")  # one packet
        assert recv_reply(raw) == b"220 2.0.0 Ready to start TLS\r\n"
        tls = insecure_context().wrap_socket(raw, server_hostname="pigeon.test")
        tls.settimeout(1.0)
        with pytest.raises((socket.timeout, TimeoutError)):
            data = tls.recv(1024)  # a 250 for RSET would arrive here
            pytest.fail(f"server answered the injected command in TLS: {data!r}")
        tls.settimeout(10)
        tls.sendall(b"EHLO client.example\r\n")
        reply = recv_reply(tls)
        assert reply.startswith(b"250-pigeon.test") and b"STARTTLS" not in reply
        tls.sendall(b"STARTTLS\r\n")
        assert recv_reply(tls) == b"503 5.5.1 Error: TLS already active\r\n"
    assert wait_for(lambda: "octets pipelined after STARTTLS were discarded" in proc.log())


@pytest.mark.parametrize("role", ["submissions", "starttls"])
def test_garbage_instead_of_a_handshake_closes_cleanly(pigeon_factory, role):
    proc = pigeon_factory(CONFIG)
    port = proc.submissions_port if role == "submissions" else proc.port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        if role == "starttls":
            assert recv_reply(s).startswith(b"220")
            s.sendall(b"EHLO x\r\n")
            recv_reply(s)
            s.sendall(b"STARTTLS\r\n")
            assert recv_reply(s).startswith(b"220 2.0.0")
        s.sendall(b"EHLO this is not a TLS client hello\r\n" * 4)
        s.settimeout(10)
        data = b""
        try:
            while chunk := s.recv(4096):
                data += chunk
        except ConnectionResetError:
            pass
        assert not data.startswith(b"220") and b"250" not in data
    assert wait_for(lambda: "TLS handshake failed with [127.0.0.1]" in proc.log())
    # the server is still fine
    with smtplib.SMTP("127.0.0.1", proc.port, timeout=10) as s:
        assert s.noop()[0] == 250


def _serve_fails(tmp_path, config_text: str) -> tuple[int, str]:
    proc = PigeonProcess(tmp_path / "bad", CONFIG + config_text)
    out = subprocess.run(
        [sys.executable, "-m", "pigeon", "serve", "--config", str(proc.config_path)],
        capture_output=True,
        timeout=60,
        cwd=proc.workdir,
    )
    return out.returncode, out.stderr.decode(errors="replace") + out.stdout.decode(errors="replace")


def test_expired_certificate_is_refused_at_start_up(tmp_path):
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    cert, key = _cert(tmp_path, "old.example.test", now=past, days=30)
    status, output = _serve_fails(tmp_path, _tls_config(cert, key))
    assert status == 78
    assert f"{cert}: the certificate expired on 2020-01-31" in output


def test_mismatched_and_unreadable_files_are_named(tmp_path):
    cert, _ = _cert(tmp_path, "a.example.test")
    _, other_key = _cert(tmp_path, "b.example.test")
    status, output = _serve_fails(tmp_path, _tls_config(cert, other_key))
    assert status == 78 and f"{other_key}: the private key does not match the certificate" in output
    missing = tmp_path / "missing.pem"
    status, output = _serve_fails(tmp_path, _tls_config(missing, other_key))
    assert status == 78 and f"{missing}: cannot read the certificate" in output
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    status, output = _serve_fails(tmp_path, _tls_config(garbage, other_key))
    assert status == 78 and f"{garbage}: not a PEM certificate" in output


def _peer_cn(port: int) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.starttls(context=insecure_context())
        der = s.sock.getpeercert(binary_form=True)
    from cryptography import x509

    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def test_sighup_reloads_the_certificate_without_dropping_sessions(pigeon_factory, tmp_path):
    cert, key = _cert(tmp_path, "first.example.test")
    proc = pigeon_factory(CONFIG + _tls_config(cert, key))
    assert _peer_cn(proc.port) == "CN=first.example.test"
    live = smtplib.SMTP("127.0.0.1", proc.port, timeout=10)
    live.starttls(context=insecure_context())
    live.ehlo("client.example")
    generate_self_signed(cert, key, "second.example.test")
    proc.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "TLS certificate reloaded" in proc.log())
    assert _peer_cn(proc.port) == "CN=second.example.test"
    assert live.noop()[0] == 250  # the old session goes on
    live.quit()
    cert.write_text("broken\n")  # a bad reload keeps the old one
    proc.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "TLS reload failed, keeping the previous certificate" in proc.log())
    assert _peer_cn(proc.port) == "CN=second.example.test"


def test_implicit_tls_handshakes_are_reliable(pigeon_factory):
    # The ClientHello may already sit in the plaintext reader when the driver
    # starts the handshake (uvloop reads right after connection_made); it is
    # replayed into the TLS layer. Many quick connections exercise that path.
    proc = pigeon_factory(CONFIG)
    for _ in range(25):
        with smtplib.SMTP_SSL(
            "127.0.0.1", proc.submissions_port, timeout=10, context=insecure_context()
        ) as s:
            assert s.noop()[0] == 250


def test_check_config_checks_the_certificate_too(tmp_path):
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    cert, key = _cert(tmp_path, "old.example.test", now=past, days=30)
    proc = PigeonProcess(tmp_path / "check", CONFIG + _tls_config(cert, key))
    out = subprocess.run(
        [sys.executable, "-m", "pigeon", "check-config", str(proc.config_path)],
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 78
    assert f"{cert}: the certificate expired on 2020-01-31" in out.stderr.decode()
