"""The pigeon command line: parser, registry, help, version, usage errors."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import pigeon
from pigeon.cli.main import COMMANDS, build_parser, main


def test_every_registered_command_has_help_and_a_runner():
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        assert module.HELP and module.DESCRIPTION, name
        assert callable(module.add_arguments) and callable(module.run), name


def test_the_three_first_commands_are_registered():
    assert {"serve", "check-config", "version"} <= set(COMMANDS)


def test_version(capsys):
    assert main(["version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"pigeon {pigeon.__version__} (")


def test_dash_dash_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith(f"pigeon {pigeon.__version__}")


def test_no_command_prints_help_and_exits_64(capsys):
    assert main([]) == 64
    assert "commands:" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["frobnicate"]) == 64
    assert "invalid choice" in capsys.readouterr().err


def test_bad_option_is_a_usage_error(capsys):
    assert main(["serve", "--no-such-flag"]) == 64


@pytest.mark.parametrize(
    "argv", [["--help"], ["serve", "--help"], ["check-config", "--help"], ["version", "--help"]]
)
def test_help_exits_0(argv, capsys):
    assert main(argv) == 0
    assert "usage: pigeon" in capsys.readouterr().out


def test_serve_help_documents_replacement_and_examples(capsys):
    main(["serve", "--help"])
    out = capsys.readouterr().out
    for flag in (
        "--config",
        "--listen",
        "--domain",
        "--data-dir",
        "--relay-network",
        "--hostname",
        "--log-format",
        "--log-level",
    ):
        assert flag in out
    assert "REPLACE" in out and "examples:" in out and "127.0.0.1:2525" in out


def test_parser_builds_without_importing_the_server():
    code = (
        "import sys; from pigeon.cli.main import build_parser; build_parser(); "
        "sys.exit(1 if 'pigeon.app' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_python_dash_m_pigeon_runs_main():
    done = subprocess.run(
        [sys.executable, "-m", "pigeon", "version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.startswith("pigeon ")


def test_build_parser_parses_serve_flags():
    args = build_parser().parse_args(
        ["serve", "--listen", "a:1", "--listen", "b:2", "--domain", "x.test"]
    )
    assert args.listen == ["a:1", "b:2"] and args.domain == ["x.test"] and args.config is None
