"""SIGHUP reloads the configuration without dropping sessions; a broken file
is rejected with a log line and the running configuration stays in force."""
from __future__ import annotations

import signal
import smtplib
import socket

import pytest

from pigeon.testing.live import free_port, recv_reply, wait_for

pytestmark = pytest.mark.e2e


def rewrite(server, extra: str) -> None:
    text = server.config_path.read_text()
    base = text.split("# --- test part ---")[0]
    server.config_path.write_text(base + "# --- test part ---\n" + extra)


def hup_and_wait(server, marker: str, count_before: int) -> None:
    server.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: server.log().count(marker) > count_before, timeout=15), server.log()


def rcpt_code(port: int, rcpt: str) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("c.example")
        s.mail("a@example.org")
        return s.rcpt(rcpt)[0]


def test_reload_applies_changes_and_keeps_sessions(pigeon_factory):
    server = pigeon_factory('# --- test part ---\n[domains."localhost"]\n')
    assert rcpt_code(server.port, "x@new.test") == 554          # not ours yet: relay denied

    # A session opened before the reload finishes after it.
    held = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    recv_reply(held)
    held.sendall(b"EHLO held.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<h@localhost>\r\n")
    recv_reply(held)

    extra_port = free_port()
    rewrite(server, '[domains."localhost"]\n[domains."new.test"]\nmailboxes = ["x"]\n'
                    '[limits]\nmessage_size = 123456\n')
    text = server.config_path.read_text().replace(
        f'listen = ["127.0.0.1:{server.port}"]',
        f'listen = ["127.0.0.1:{server.port}", "127.0.0.1:{extra_port}"]')
    server.config_path.write_text(text)
    hup_and_wait(server, "reload: applied", server.log().count("reload: applied"))
    log = server.log()
    assert "domains" in log and "limits.message_size" in log and "listen" in log

    assert rcpt_code(server.port, "x@new.test") == 250
    assert rcpt_code(server.port, "y@new.test") == 550
    assert rcpt_code(extra_port, "x@new.test") == 250         # the new listener
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as s:
        s.ehlo("c.example")
        assert int(s.esmtp_features["size"]) == 123456

    held.sendall(b"DATA\r\n")
    assert b"354" in recv_reply(held)
    held.sendall(b"Subject: across a reload\r\n\r\nstill here\r\n.\r\n")
    assert b"250 2.0.0 Ok: queued as" in recv_reply(held)
    held.close()


def test_broken_file_keeps_the_running_configuration(pigeon_factory):
    server = pigeon_factory('# --- test part ---\n[domains."localhost"]\n[domains."kept.test"]\n')
    assert rcpt_code(server.port, "a@kept.test") == 250
    rewrite(server, '[limits]\nmesage_size = 10\n')
    hup_and_wait(server, "reload rejected", 0)
    assert "limits.mesage_size" in server.log()
    assert server.proc.poll() is None
    assert rcpt_code(server.port, "a@kept.test") == 250          # old config in force
    # And a later good file is taken again.
    rewrite(server, '[domains."localhost"]\n')
    hup_and_wait(server, "reload: applied", 0)
    assert rcpt_code(server.port, "a@kept.test") == 554
