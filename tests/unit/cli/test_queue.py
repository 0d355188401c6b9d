"""pigeon queue / status / log on the command line, with and without a running server."""

from __future__ import annotations

import json

import pytest

from pigeon.cli._control import Progress
from pigeon.cli.main import main
from pigeon.testing.admin_backend import Backend


@pytest.fixture
def server(tmp_path):
    b = Backend(tmp_path)
    yield b
    b.close()


def args(b, *rest):
    return ["--data-dir", str(b.config.data_dir), *rest]


def test_list_show_hold_release_via_the_running_server(server, capsys):
    q = server.commit("a@example.org", sender="alice@example.test")
    assert main(["queue", *args(server, "list")]) == 0
    out = capsys.readouterr().out
    assert q in out and "alice@example.test" in out and "a@example.org" in out
    assert main(["queue", *args(server, "hold", q)]) == 0
    assert capsys.readouterr().out.strip() == "held 1"
    assert main(["queue", *args(server, "list", "--state", "hold", "--json")]) == 0
    assert [e["id"] for e in json.loads(capsys.readouterr().out)["entries"]] == [q]
    assert main(["queue", *args(server, "release", "--all")]) == 0
    assert capsys.readouterr().out.startswith("released 1")
    assert main(["queue", *args(server, "show", q)]) == 0
    out = capsys.readouterr().out
    assert f"Queue ID:   {q}" in out and "Subject: test" in out
    assert main(["queue", *args(server, "show", "0000NOPE")]) == 65
    assert main(["status", *args(server)]) == 0
    assert "pigeon is running" in capsys.readouterr().out


def test_usage_errors(server, capsys):
    assert main(["queue", *args(server, "hold")]) == 64
    assert main(["queue", *args(server, "hold", "--all", "X1234")]) == 64
    assert main(["queue", *args(server, "list", "--older-than", "soon")]) == 64


def test_without_server_reads_work_and_actions_fail(tmp_path, capsys):
    (tmp_path / "stopped").mkdir()  # a data_dir whose server is not running
    data = ["--data-dir", str(tmp_path / "stopped")]
    assert main(["queue", *data, "list"]) == 0
    out = capsys.readouterr()
    assert "Mail queue is empty" in out.out and "not running" in out.err
    assert main(["queue", *data, "flush"]) == 69
    assert main(["status", *data]) == 3


def test_progress_bar_only_on_a_tty():
    import io

    s = io.StringIO()
    bar = Progress("hold", 4, s, enabled=True)
    bar.advance(2)
    assert s.getvalue().endswith("] 2/4") and "#" in s.getvalue()
    quiet = io.StringIO()
    Progress("hold", 4, quiet).advance(4)  # StringIO is not a TTY
    assert quiet.getvalue() == ""


def test_log_command(tmp_path, capsys):
    log = tmp_path / "pigeon.log"
    log.write_text(
        "t pigeon.mail: ABCD1234: from=<a@b> (queued)\nt other line\n"
        "t pigeon.mail: ABCD1234: removed\n"
    )
    assert main(["log", "--log-file", str(log), "ABCD1234"]) == 0
    assert capsys.readouterr().out.count("ABCD1234") == 2
    assert main(["log", "--log-file", str(log), "ZZZZ9999"]) == 1
    assert main(["log", "--log-file", str(tmp_path / "none"), "ABCD1234"]) == 66
    assert main(["log", "--data-dir", str(tmp_path), "ABCD1234"]) == 66  # log.file unset


def test_common_options_after_the_action(server, capsys):
    q = server.commit("a@example.org")
    d = str(server.config.data_dir)
    assert main(["queue", "list", "--data-dir", d]) == 0
    assert q in capsys.readouterr().out
    assert main(["queue", "hold", q, "--data-dir", d]) == 0
    assert main(["queue", "show", q, "--data-dir", d]) == 0
    assert "State:      hold" in capsys.readouterr().out
    assert main(["queue", "release", "--all", "--data-dir", d]) == 0
    assert main(["queue", "flush", "--data-dir", d]) == 0


def test_unknown_ids_exit_65_and_the_others_are_acted_on(server, capsys):
    q = server.commit("a@example.org")
    d = ["--data-dir", str(server.config.data_dir)]
    assert main(["queue", *d, "hold", q, "0000NOPE"]) == 65
    out = capsys.readouterr()
    assert out.out.startswith("held 1; 1 skipped") and "not in the queue: 0000NOPE" in out.err
    assert main(["queue", *d, "delete", "0000NOPE"]) == 65
    assert main(["queue", *d, "hold", q]) == 0  # known but already held: skipped, 0
    assert main(["queue", *d, "delete", q]) == 0


def test_rebuild_is_refused_for_a_shared_store(tmp_path, capsys):
    """A PostgreSQL queue has no local files to rebuild from (cli/_rebuild.py)."""
    (tmp_path / "data" / "queue").mkdir(parents=True)
    cfg = tmp_path / "p.toml"
    cfg.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        '[queue]\nstore = "postgresql://pigeon@127.0.0.1:1/pigeon"\nnode = "a"\n'
    )
    assert main(["queue", "rebuild", "-c", str(cfg)]) == 78
    err = capsys.readouterr().err
    assert "queue.store is a shared PostgreSQL database" in err
    assert not (tmp_path / "data" / "queue" / "queue.db").exists()
