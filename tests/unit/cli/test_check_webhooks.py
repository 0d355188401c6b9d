"""`pigeon check-config` reads the webhooks' secret files as start-up does."""

from __future__ import annotations

from pigeon.cli.main import main


def _config(tmp_path, secret_file):
    path = tmp_path / "pigeon.toml"
    path.write_text(
        f'data_dir = "{tmp_path}"\n\n[[webhooks]]\nurl = "https://hooks.example.test/p"\n'
        f'secret_file = "{secret_file}"\n'
    )
    return path


def test_a_missing_secret_file_is_a_problem_naming_the_key(tmp_path, capsys):
    path = _config(tmp_path, tmp_path / "nowhere.secret")
    assert main(["check-config", str(path)]) == 78
    err = capsys.readouterr().err
    assert f"{path}:5: webhooks[0].secret_file: cannot read {tmp_path / 'nowhere.secret'}" in err


def test_a_readable_secret_file_passes(tmp_path, capsys):
    (tmp_path / "hook.secret").write_text("s3cret\n")
    path = _config(tmp_path, tmp_path / "hook.secret")
    assert main(["check-config", str(path)]) == 0
    assert "https://hooks.example.test/p" in capsys.readouterr().out
