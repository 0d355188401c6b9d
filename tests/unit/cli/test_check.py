"""`pigeon check-config FILE`: "ok" and a summary, or the error and 78."""

from __future__ import annotations

from pigeon.cli.main import main


def test_ok_with_summary(tmp_path, capsys):
    path = tmp_path / "p.toml"
    path.write_text(
        'hostname = "mx.example.test"\nlisten = ["0.0.0.0:25", "[::]:25"]\n'
        'relay_networks = ["192.0.2.0/24"]\n'
        '[domains."example.test"]\nmailboxes = ["alice", "bob"]\n[domains."one.test"]\n'
        'mailboxes = ["x"]\n[domains."localhost"]\n'
        '[aliases]\n"info@example.test" = "alice@example.test"\n'
    )
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"ok: {path}"
    body = "\n".join(out[1:])
    assert "hostname:       mx.example.test" in body
    assert "listen:         0.0.0.0:25, [::]:25" in body
    assert (
        "domains:        example.test (2 mailboxes), localhost (any mailbox), one.test (1 mailbox)"
        in body
    )
    assert "relay networks: 192.0.2.0/24" in body
    assert "aliases:        1" in body


def test_error_exits_78(tmp_path, capsys):
    path = tmp_path / "p.toml"
    path.write_text('listen = ["127.0.0.1:99999"]\n')
    assert main(["check-config", str(path)]) == 78
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        captured.err
        == f'pigeon: {path}:1: listen: "127.0.0.1:99999": the port must be between 1 and 65535, got 99999\n'
    )


def test_missing_file_exits_78(tmp_path, capsys):
    assert main(["check-config", str(tmp_path / "none.toml")]) == 78
    assert "cannot read file" in capsys.readouterr().err


def test_without_file_and_none_found_is_a_config_error(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr("pigeon.cli._config.SYSTEM_CONFIG", tmp_path / "absent.toml")
    monkeypatch.delenv("PIGEON_CONFIG", raising=False)
    assert main(["check-config"]) == 78


def test_every_error_with_its_line_in_one_run(tmp_path, capsys):
    path = tmp_path / "p.toml"
    path.write_text(
        'hostname = "mx.example.test"\n'
        'listen = ["127.0.0.1:99999"]\n'
        "[limits]\n"
        "mesage_size = 1\n"
        "[smtp]\n"
        'pipelining = "yes"\n'
    )
    assert main(["check-config", str(path)]) == 78
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f'pigeon: {path}:2: listen: "127.0.0.1:99999": the port must be between 1 and 65535, got 99999',
        f'pigeon: {path}:4: limits.mesage_size: unknown key (did you mean "message_size"?)',
        f'pigeon: {path}:6: smtp.pipelining: must be true or false, got "yes"',
    ]


def test_a_broken_certificate_is_reported_with_the_other_errors(tmp_path, capsys):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("not a certificate\n")
    key.write_text("not a key\n")
    path = tmp_path / "p.toml"
    path.write_text(f'[limits]\nrecipients = 0\n[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n')
    assert main(["check-config", str(path)]) == 78
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"pigeon: {path}:2: limits.recipients: must be a positive integer, got 0"
    assert lines[1].startswith(f"pigeon: {path}:4: tls.cert_file: {cert}: not a PEM certificate")
    assert len(lines) == 2


def test_open_relay_is_a_warning(tmp_path, capsys):
    path = tmp_path / "p.toml"
    path.write_text(
        'hostname = "mx.example.test"\nlisten = ["0.0.0.0:25"]\nrelay_networks = ["0.0.0.0/0"]\n'
    )
    assert main(["check-config", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"ok: {path}\n")
    assert captured.err == (
        f"pigeon: {path}:3: warning: relay_networks: 0.0.0.0/0 lets every IPv4 "
        "address relay: pigeon is an OPEN RELAY (anyone may send mail anywhere "
        "through it); list only your own networks\n"
    )


def test_public_listener_with_relay_networks_is_a_warning(tmp_path, capsys):
    path = tmp_path / "p.toml"
    path.write_text('listen = ["[::]:25"]\nrelay_networks = ["2001:db8::/32"]\n')
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().err == (
        f"pigeon: {path}:2: warning: relay_networks: every client in 2001:db8::/32 may relay (send "
        "to any domain) through the public listener [::]:25: make sure these networks are yours\n"
    )


def test_summary_covers_every_listener_tls_transports_and_metrics(tmp_path, capsys):
    path = tmp_path / "p.toml"
    path.write_text(
        'hostname = "mx.example.test"\ndata_dir = "/srv/pigeon"\n'
        'submission_listen = ["0.0.0.0:587"]\nsubmissions_listen = []\n'
        '[tls]\nmin_version = "TLSv1.3"\n'
        '[transports]\n"example.org" = "smtp:[mail.example.org]:587"\n'
        '".example.org" = "lmtp:unix:/run/dovecot/lmtp"\n'
        '[delivery]\nrelay_host = "[smarthost.example.net]:587"\n'
        '[admin]\nmetrics_listen = "127.0.0.1:9100"\n'
        '[[milters]]\nname = "opendkim"\nsocket = "unix:/run/opendkim/opendkim.sock"\n'
        '[[milters]]\nname = "rspamd"\nsocket = "inet:127.0.0.1:11332"\n'
    )
    assert main(["check-config", str(path)]) == 0
    body = capsys.readouterr().out
    assert "  submission:     0.0.0.0:587 (STARTTLS, then AUTH)\n" in body
    assert "  submissions:    off\n" in body
    assert (
        "  tls:            self-signed certificate (made at start-up in /srv/pigeon/tls); "
        "TLSv1.3 or later; STARTTLS offered on listen\n"
    ) in body
    assert (
        "  transports:     .example.org -> lmtp:unix:/run/dovecot/lmtp, "
        "example.org -> smtp:[mail.example.org]:587\n"
    ) in body
    assert (
        "  milters:        opendkim (unix:/run/opendkim/opendkim.sock), "
        "rspamd (inet:127.0.0.1:11332)\n"
    ) in body
    assert "  relay host:     smtp:[smarthost.example.net]:587\n" in body
    assert "  plugins:        none\n" in body
    assert "  metrics:        http://127.0.0.1:9100/metrics\n" in body
    assert "  control socket: /srv/pigeon/control.sock\n" in body
