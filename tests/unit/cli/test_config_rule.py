"""One rule for which configuration every command uses (pigeon.cli._config).

-c FILE, else $PIGEON_CONFIG, else /etc/pigeon/pigeon.toml, else the
embedded defaults; never the current directory's pigeon.toml; commands
other than `serve` never invent a data directory.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pigeon.cli import _config, serve
from pigeon.cli import sendmail as S
from pigeon.cli.main import build_parser, main
from pigeon.queue.store import QueueStore


def write_config(path: Path, data_dir: Path, extra: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'data_dir = "{data_dir}"\nhostname = "mx.example.test"\n'
        '[domains."example.test"]\n[queue]\nfsync = false\n'
        '[admin]\nmetrics_listen = ""\n' + extra
    )
    return path


@pytest.fixture
def system_config(tmp_path, monkeypatch):
    """A system-wide configuration (standing in for /etc/pigeon/pigeon.toml) whose
    data_dir exists, as after the server's first start."""
    data = tmp_path / "var-lib-pigeon"
    data.mkdir()
    path = write_config(tmp_path / "etc-pigeon" / "pigeon.toml", data)
    monkeypatch.setattr(_config, "SYSTEM_CONFIG", path)
    return path


@pytest.fixture
def traversable_tmp():
    """A temporary directory other users can reach (pytest's are private to root)."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="pigeon-cli-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """Some other directory, with nothing of pigeon's in it."""
    d = tmp_path / "home-of-someone"
    d.mkdir()
    monkeypatch.chdir(d)
    return d


def queued(data_dir: Path) -> list:
    with QueueStore(data_dir / "queue", fsync=False) as store:
        return list(store.list())


def test_order_explicit_then_environment_then_system_file(tmp_path, system_config):
    env_file = tmp_path / "env.toml"
    assert _config.locate(Path("x.toml"), {"PIGEON_CONFIG": str(env_file)}).path == Path("x.toml")
    assert _config.locate(None, {"PIGEON_CONFIG": str(env_file)}).path == env_file
    assert _config.locate(None, {"PIGEON_CONFIG": ""}).path == system_config
    assert _config.locate(None, {}).path == system_config


def test_the_current_directory_is_never_searched(elsewhere):
    write_config(elsewhere / "pigeon.toml", elsewhere / "planted")
    assert _config.locate(None, {}).path is None


def test_sendmail_elsewhere_reaches_the_system_queue(system_config, elsewhere):
    msg = b"To: bob@example.test\nSubject: cron\n\nhello\n"
    assert S.run_argv(["-t", "-i"], stdin=io.BytesIO(msg)) == 0
    assert len(queued(system_config.parent.parent / "var-lib-pigeon")) == 1
    assert list(elsewhere.iterdir()) == []  # no stray ./pigeon-data


def test_sendmail_without_any_configuration_refuses_and_creates_nothing(elsewhere, capsys):
    msg = b"To: bob@example.test\nSubject: cron\n\nhello\n"
    assert S.run_argv(["-t", "-i"], stdin=io.BytesIO(msg)) == 78
    err = capsys.readouterr().err
    assert "-c FILE" in err and "PIGEON_CONFIG" in err and "/pigeon.toml" in err
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize(
    "argv", [["queue", "list"], ["status"], ["queue", "flush"], ["user", "list"]]
)
def test_admin_commands_without_configuration_refuse_with_78(argv, elsewhere, capsys):
    assert main(argv) == 78
    assert "-c FILE" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


def test_a_named_data_dir_that_does_not_exist_is_refused(tmp_path, elsewhere, capsys):
    cfg = write_config(tmp_path / "p.toml", tmp_path / "never-started")
    assert main(["queue", "-c", str(cfg), "list"]) == 78
    err = capsys.readouterr().err
    assert "never-started does not exist" in err and "pigeon serve" in err
    assert not (tmp_path / "never-started").exists()


def test_admin_commands_use_the_system_file(system_config, elsewhere, capsys):
    assert main(["queue", "list"]) == 0
    assert "Mail queue is empty" in capsys.readouterr().out
    assert main(["status"]) == 3  # not running, but the right data_dir
    assert str(system_config.parent.parent / "var-lib-pigeon") in capsys.readouterr().out


def test_serve_finds_its_configuration_by_the_same_rule(system_config, elsewhere, restore_logging):
    seen = []
    args = build_parser().parse_args(["serve"])
    assert serve.run(args, app_run=lambda config: seen.append(config) or 0) == 0
    assert seen[0].data_dir == system_config.parent.parent / "var-lib-pigeon"
    assert seen[0].hostname == "mx.example.test"


def test_serve_honours_pigeon_config(tmp_path, elsewhere, monkeypatch):
    path = write_config(tmp_path / "env.toml", tmp_path / "env-data")
    monkeypatch.setenv("PIGEON_CONFIG", str(path))
    assert (
        serve.build_config(build_parser().parse_args(["serve"])).data_dir == tmp_path / "env-data"
    )


def test_quick_start_still_works_where_its_data_is(elsewhere, capsys):
    (elsewhere / "pigeon-data").mkdir()  # `make serve` ran here
    if os.geteuid() == 0:
        assert main(["queue", "list"]) == 78  # but root never uses the cwd's data
    else:
        assert main(["queue", "list"]) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="the rule for root")
def test_root_never_reads_a_planted_configuration(elsewhere, tmp_path, capsys):
    planted = tmp_path / "attacker"
    planted.mkdir()
    write_config(elsewhere / "pigeon.toml", planted)
    (elsewhere / "pigeon-data").mkdir()
    assert S.run_argv(["root@example.test"], stdin=io.BytesIO(b"secret\n")) == 78
    assert list(planted.iterdir()) == [] and list((elsewhere / "pigeon-data").iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="the rule for root")
def test_root_refuses_a_relative_data_dir(tmp_path, elsewhere, capsys):
    cfg = write_config(tmp_path / "p.toml", Path("rel-data"))
    (elsewhere / "rel-data").mkdir()
    assert main(["queue", "-c", str(cfg), "list"]) == 78
    assert "relative" in capsys.readouterr().err


def test_sendmail_files_are_private_whatever_the_umask(system_config, elsewhere):
    data = system_config.parent.parent / "var-lib-pigeon"
    code = (
        "import io, os, sys; os.umask(0o022); from pigeon.cli import _config, sendmail; "
        f"_config.SYSTEM_CONFIG = __import__('pathlib').Path({str(system_config)!r}); "
        "sys.exit(sendmail.run_argv(['bob@example.test'], stdin=io.BytesIO(b'hi\\n')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=elsewhere,
        capture_output=True,
        env={k: v for k, v in os.environ.items() if k != "PIGEON_CONFIG"},
    )
    assert done.returncode == 0, done.stderr
    for path in [data / "queue", *(data / "queue").rglob("*")]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own files as another user")
def test_root_acts_as_the_owner_of_data_dir(traversable_tmp):
    import pwd

    nobody = pwd.getpwnam("nobody")
    tmp_path = traversable_tmp
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, nobody.pw_uid, nobody.pw_gid)
    cfg = write_config(tmp_path / "p.toml", data)
    for argv, stdin in (
        (
            ["user", "-c", str(cfg), "add", "alice@example.test", "--password-stdin"],
            b"correct horse battery\n",
        ),
        (["sendmail", "-C", str(cfg), "bob@example.test"], b"hi\n"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "pigeon", *argv], input=stdin, capture_output=True
        )
        assert done.returncode == 0, done.stderr
    created = [p for p in data.rglob("*")]
    assert created and all(p.stat().st_uid == nobody.pw_uid for p in created), [
        (p, p.stat().st_uid) for p in created if p.stat().st_uid != nobody.pw_uid
    ]


def test_serve_with_another_file_warns_that_the_commands_will_not_find_it(
    system_config, tmp_path, monkeypatch, restore_logging
):
    other = write_config(tmp_path / "other.toml", tmp_path / "other-data")
    assert _config.elsewhere_warning(None) is None
    assert _config.elsewhere_warning(system_config) is None
    text = _config.elsewhere_warning(other)
    assert f"-c {other}" in text and str(system_config) in text

    warned = []

    class Recorder:
        def warning(self, fmt, *args):
            warned.append(fmt % args)

    monkeypatch.setattr(serve, "log", Recorder())
    assert (
        serve.run(build_parser().parse_args(["serve", "-c", str(other)]), app_run=lambda config: 0)
        == 0
    )
    assert warned == [text]
