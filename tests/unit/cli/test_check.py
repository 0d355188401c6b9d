"""`pigeon check-config FILE`: "ok" and a summary, or the error and 78."""
from __future__ import annotations

from pigeon.cli.main import main


def test_ok_with_summary(tmp_path, capsys):
    path = tmp_path / "p.toml"
    path.write_text('hostname = "mx.example.test"\nlisten = ["0.0.0.0:25", "[::]:25"]\n'
                    'relay_networks = ["192.0.2.0/24"]\n'
                    '[domains."example.test"]\nmailboxes = ["alice", "bob"]\n[domains."one.test"]\n'
                    'mailboxes = ["x"]\n[domains."localhost"]\n'
                    '[aliases]\n"info@example.test" = "alice@example.test"\n')
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"ok: {path}"
    body = "\n".join(out[1:])
    assert "hostname:       mx.example.test" in body
    assert "listen:         0.0.0.0:25, [::]:25" in body
    assert "domains:        example.test (2 mailboxes), localhost (any mailbox), one.test (1 mailbox)" in body
    assert "relay networks: 192.0.2.0/24" in body
    assert "aliases:        1" in body


def test_error_exits_78(tmp_path, capsys):
    path = tmp_path / "p.toml"
    path.write_text('listen = ["127.0.0.1:99999"]\n')
    assert main(["check-config", str(path)]) == 78
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f'pigeon: {path}: listen: "127.0.0.1:99999": the port must be between 1 and 65535, got 99999\n'


def test_missing_file_exits_78(tmp_path, capsys):
    assert main(["check-config", str(tmp_path / "none.toml")]) == 78
    assert "cannot read file" in capsys.readouterr().err


def test_without_file_and_none_found_is_a_config_error(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr("pigeon.cli._config.SYSTEM_CONFIG", tmp_path / "absent.toml")
    monkeypatch.delenv("PIGEON_CONFIG", raising=False)
    assert main(["check-config"]) == 78
