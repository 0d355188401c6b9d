"""`pigeon check-config` reads the DKIM keys as start-up does."""

from __future__ import annotations

from pigeon.cli.main import main
from pigeon.signing.keys import generate


def test_a_configured_selector_without_keys_is_a_problem_naming_key_and_file(tmp_path, capsys):
    generate(tmp_path / "dkim", "example.test", "s1")
    path = tmp_path / "pigeon.toml"
    path.write_text(f'data_dir = "{tmp_path}"\n[dkim.domains."example.test"]\nselector = "s2"\n')
    assert main(["check-config", str(path)]) == 78
    err = capsys.readouterr().err
    assert f'{path}:3: dkim.domains."example.test".selector: cannot read' in err
    assert str(tmp_path / "dkim" / "example.test" / "s2-rsa.key") in err


def test_readable_keys_pass(tmp_path, capsys):
    generate(tmp_path / "dkim", "example.test", "s1")
    path = tmp_path / "pigeon.toml"
    path.write_text(f'data_dir = "{tmp_path}"\n')
    assert main(["check-config", str(path)]) == 0
    assert f"signing with the keys in {tmp_path / 'dkim'}" in capsys.readouterr().out
