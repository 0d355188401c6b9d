"""SIGHUP and `pigeon reload` reload the configuration without dropping
sessions; a broken file is rejected (a log line, and for `pigeon reload` every
problem printed and exit 78) and the running configuration stays in force.
The PID file makes `kill -HUP $(cat ...)` work."""

from __future__ import annotations

import signal
import smtplib
import socket
import stat
import subprocess
import sys

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
    assert rcpt_code(server.port, "x@new.test") == 554  # not ours yet: relay denied

    # A session opened before the reload finishes after it.
    held = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    recv_reply(held)
    held.sendall(b"EHLO held.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<h@localhost>\r\n")
    recv_reply(held)

    extra_port = free_port()
    rewrite(
        server,
        '[domains."localhost"]\n[domains."new.test"]\nmailboxes = ["x"]\n'
        "[limits]\nmessage_size = 123456\n",
    )
    text = server.config_path.read_text().replace(
        f'listen = ["127.0.0.1:{server.port}"]',
        f'listen = ["127.0.0.1:{server.port}", "127.0.0.1:{extra_port}"]',
    )
    server.config_path.write_text(text)
    hup_and_wait(server, "reload: applied", server.log().count("reload: applied"))
    log = server.log()
    assert "domains" in log and "limits.message_size" in log and "listen" in log

    assert rcpt_code(server.port, "x@new.test") == 250
    assert rcpt_code(server.port, "y@new.test") == 550
    assert rcpt_code(extra_port, "x@new.test") == 250  # the new listener
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
    rewrite(server, "[limits]\nmesage_size = 10\n")
    hup_and_wait(server, "reload rejected", 0)
    assert "limits.mesage_size" in server.log()
    assert server.proc.poll() is None
    assert rcpt_code(server.port, "a@kept.test") == 250  # old config in force
    # And a later good file is taken again.
    rewrite(server, '[domains."localhost"]\n')
    hup_and_wait(server, "reload: applied", 0)
    assert rcpt_code(server.port, "a@kept.test") == 554


# --- `pigeon reload`: the outcome and the exit status, through the control socket -----------


def pigeon_reload(server) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pigeon", "reload", "-c", str(server.config_path)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_pigeon_reload_applies_and_says_what(pigeon_factory):
    server = pigeon_factory('# --- test part ---\n[domains."localhost"]\n')
    rewrite(server, '[domains."localhost"]\n[domains."new.test"]\n[limits]\nmessage_size = 4321\n')
    done = pigeon_reload(server)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "reload: applied domains, limits.message_size\n"
    assert rcpt_code(server.port, "x@new.test") == 250  # in force when the command returns
    done = pigeon_reload(server)
    assert (done.returncode, done.stdout) == (0, "reload: configuration unchanged\n")
    rewrite(
        server,
        '[domains."localhost"]\n[domains."new.test"]\n[limits]\nmessage_size = 4321\n'
        "[queue]\nrun_interval = 30\n",
    )
    done = pigeon_reload(server)
    assert (done.returncode, done.stdout) == (
        0,
        "reload: queue.run_interval take effect at the next restart\n",
    )


def test_pigeon_reload_refused_prints_every_error_and_exits_78(pigeon_factory):
    server = pigeon_factory('# --- test part ---\n[domains."localhost"]\n[domains."kept.test"]\n')
    rewrite(server, '[limits]\nmesage_size = 10\n[smtp]\npipelining = "yes"\n')
    first = server.config_path.read_text().splitlines().index("mesage_size = 10") + 1
    done = pigeon_reload(server)
    assert done.returncode == 78, done.stdout + done.stderr
    assert done.stdout == ""
    path = server.config_path
    assert done.stderr.splitlines() == [
        "pigeon: reload refused, the running configuration stays in force:",
        f'pigeon: {path}:{first}: limits.mesage_size: unknown key (did you mean "message_size"?)',
        f'pigeon: {path}:{first + 2}: smtp.pipelining: must be true or false, got "yes"',
    ]
    assert server.proc.poll() is None
    assert rcpt_code(server.port, "a@kept.test") == 250  # the old configuration stays


def test_pigeon_reload_when_not_running_exits_69(tmp_path):
    config = tmp_path / "p.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    done = subprocess.run(
        [sys.executable, "-m", "pigeon", "reload", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 69
    assert done.stderr.startswith(
        f"pigeon: pigeon is not running (no answer on {tmp_path / 'data'}/control.sock"
    )


def test_pigeon_reload_reaches_the_workers(pigeon_factory):
    server = pigeon_factory('workers = 2\n# --- test part ---\n[domains."localhost"]\n')
    server.config_path.write_text(
        server.config_path.read_text().replace(
            '# --- test part ---\n[domains."localhost"]\n',
            '# --- test part ---\n[domains."localhost"]\n[domains."w.test"]\n',
        )
    )
    done = pigeon_reload(server)
    assert (done.returncode, done.stdout) == (0, "reload: applied domains\n"), done.stderr
    # The kernel spreads connections over both processes: every one must know w.test.
    # (The worker reloads on the SIGHUP it was sent: wait until its log says so.)
    assert wait_for(lambda: server.log().count("reload: applied domains") >= 2, timeout=15)
    assert [rcpt_code(server.port, "x@w.test") for _ in range(8)] == [250] * 8


# --- the PID file -----------------------------------------------------------------------------


def test_pid_file_is_written_and_removed(pigeon_factory):
    server = pigeon_factory('# --- test part ---\n[domains."localhost"]\n')
    pid_file = server.data_dir / "pigeon.pid"
    # Written after the listeners are bound, which is what start() waits for.
    mine = f"{server.proc.pid}\n"
    assert wait_for(lambda: pid_file.exists() and pid_file.read_text() == mine)
    assert stat.S_IMODE(pid_file.stat().st_mode) == 0o644
    # The README's example: kill -HUP $(cat .../pigeon.pid)
    rewrite(server, '[domains."localhost"]\n[domains."hup.test"]\n')
    subprocess.run(["sh", "-c", f'kill -HUP "$(cat {pid_file})"'], check=True, timeout=10)
    assert wait_for(lambda: "reload: applied domains" in server.log(), timeout=15)
    assert server.stop() == 0
    assert not pid_file.exists()


def test_a_stale_pid_file_is_replaced(pigeon_factory, tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    with subprocess.Popen(["sleep", "60"]) as alive_not_pigeon:
        try:
            for stale in (dead.pid, alive_not_pigeon.pid):
                pid_file = tmp_path / "run" / f"stale-{stale}.pid"
                pid_file.parent.mkdir(exist_ok=True)
                pid_file.write_text(f"{stale}\n")
                server = pigeon_factory(
                    f'[admin]\npid_file = "{pid_file}"\n[domains."localhost"]\n'
                )
                # Written after the listeners are bound, which is what start() waits for.
                mine = f"{server.proc.pid}\n"
                assert wait_for(lambda: pid_file.read_text() == mine), pid_file.read_text()
                line = (
                    f"replacing the stale PID file {pid_file} (pid {stale} is not a running pigeon)"
                )
                assert wait_for(lambda: line in server.log()), server.log()  # written in batches
                server.stop()
        finally:
            alive_not_pigeon.kill()


def test_a_pid_file_held_by_a_running_pigeon_is_refused(pigeon_factory, tmp_path):
    pid_file = tmp_path / "shared.pid"
    first = pigeon_factory(f'[admin]\npid_file = "{pid_file}"\nmetrics_listen = ""\n')
    config = tmp_path / "second.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "second"}"\nlisten = ["127.0.0.1:{free_port()}"]\n'
        "submission_listen = []\nsubmissions_listen = []\n"
        "imap = { listen = [], tls_listen = [] }\n"
        f'[admin]\npid_file = "{pid_file}"\nmetrics_listen = ""\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "pigeon", "serve", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 69
    assert (
        f"admin.pid_file: {pid_file}: pigeon (pid {first.proc.pid}) is already running with "
        "this PID file"
    ) in done.stderr
    assert pid_file.read_text() == f"{first.proc.pid}\n"  # untouched


def test_broken_certificate_files_refuse_the_reload(pigeon_factory, tmp_path):
    from pigeon.net.tls import generate_self_signed

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    generate_self_signed(cert, key, "pigeon.test")
    server = pigeon_factory(
        f'[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n'
        '# --- test part ---\n[domains."localhost"]\n'
    )
    cert.write_text("renewal went wrong\n")
    rewrite(server, '[domains."localhost"]\n[domains."new.test"]\n')
    done = pigeon_reload(server)
    assert done.returncode == 78, done.stdout + done.stderr
    assert done.stderr.splitlines()[1].startswith(f"pigeon: {cert}: not a PEM certificate")
    assert rcpt_code(server.port, "x@new.test") == 554  # nothing applied
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as s:
        s.starttls()  # the old certificate serves on
        assert s.ehlo("c.example")[0] == 250
