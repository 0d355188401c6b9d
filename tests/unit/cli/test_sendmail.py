"""sendmail compatibility: flags, queueing into the store, -bs, exit codes."""

from __future__ import annotations

import io
import os

import pytest

from pigeon.cli import sendmail as S
from pigeon.cli.main import main
from pigeon.queue.store import QueueStore
from pigeon.testing.storage import content_bytes


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / "pigeon.toml"
    path.write_text(
        f'data_dir = "{tmp_path / "data"}"\nhostname = "mx.example.test"\n'
        '[domains."example.test"]\n[queue]\nfsync = false\n'
        '[admin]\nmetrics_listen = ""\n'
    )
    (tmp_path / "data").mkdir()  # sendmail never creates data_dir: the server did
    return path


def queued(cfg):
    with QueueStore(cfg.parent / "data" / "queue", fsync=False) as store:
        return [(e.envelope, content_bytes(store, e.queue_id)) for e in store.list()]


def test_parse_flags():
    o = S.parse(
        [
            "-t",
            "-oi",
            "-fme@x.test",
            "-F",
            "Me",
            "-oem",
            "-B",
            "8BITMIME",
            "-v",
            "-C/etc/p.toml",
            "bob@x.test",
            "--",
            "-odd@x.test",
        ]
    )
    assert o.extract and o.ignore_dots and o.sender == "me@x.test" and o.fullname == "Me"
    assert str(o.config) == "/etc/p.toml" and o.recipients == ["bob@x.test", "-odd@x.test"]
    assert S.parse(["-bs"]).mode == "smtp" and S.parse(["-q30m"]).mode == "flush"
    assert S.parse(["-bp"]).mode == "list"
    with pytest.raises(S.UsageError):
        S.parse(["-Z"])
    with pytest.raises(S.UsageError):
        S.parse(["-f"])


def test_dot_ends_input_unless_i():
    data = b"a\n.\nb\n"
    assert S.read_message(io.BytesIO(data), ignore_dots=False) == b"a\n"
    assert S.read_message(io.BytesIO(data), ignore_dots=True) == data


def test_t_i_queues_locally(cfg):
    msg = b"To: bob@example.test\nBcc: carol@example.org\nSubject: cron\n\nhello\n.\nend\n"
    assert (
        S.run_argv(["-C", str(cfg), "-t", "-i", "-f", "cron@example.test"], stdin=io.BytesIO(msg))
        == 0
    )
    ((env, data),) = queued(cfg)
    assert env.sender == "cron@example.test"
    assert [r.address for r in env.recipients] == ["bob@example.test", "carol@example.org"]
    assert b"Bcc" not in data and data.endswith(b"hello\r\n.\r\nend\r\n")


def test_pigeon_sendmail_passes_flags_through(cfg, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"Subject: x\n\nhi\n")))
    assert main(["sendmail", "-C", str(cfg), "-oi", "-f<>", "bob@example.test"]) == 0
    ((env, _),) = queued(cfg)
    assert env.sender == "" and env.recipients[0].address == "bob@example.test"


def test_exit_codes(cfg, tmp_path, capsys):
    assert S.run_argv(["-C", str(cfg), "-t"], stdin=io.BytesIO(b"Subject: x\n\n")) == 64
    assert S.run_argv(["-C", str(cfg), "a b@@c"], stdin=io.BytesIO(b"x\n")) == 67
    bad = tmp_path / "bad.toml"
    bad.write_text("nonsense = 1\n")
    assert S.run_argv(["-C", str(bad), "x@y.test"], stdin=io.BytesIO(b"x\n")) == 78
    assert S.run_argv(["-bd"]) == 64
    err = capsys.readouterr().err
    assert err.count("sendmail: ") == 4


def test_config_from_environment(cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("PIGEON_CONFIG", str(cfg))
    monkeypatch.chdir(tmp_path)
    assert S.run_argv(["bob@example.test"], stdin=io.BytesIO(b"hi\n")) == 0
    assert len(queued(cfg)) == 1


def test_bs_speaks_smtp_on_stdio(cfg, monkeypatch):
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    out_file = os.fdopen(out_w, "w")
    monkeypatch.setattr("sys.stdout", out_file)
    script = (
        b"EHLO localhost\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.org>\r\n"
        b"DATA\r\nSubject: bs\r\n\r\nhi\r\n.\r\nQUIT\r\n"
    )
    os.write(in_w, script)
    os.close(in_w)
    with os.fdopen(in_r, "rb") as stdin:
        assert S.run_argv(["-C", str(cfg), "-bs"], stdin=stdin) == 0
    out_file.close()
    with os.fdopen(out_r, "rb") as out:
        transcript = out.read()
    assert transcript.startswith(b"220 mx.example.test")
    assert b"250 2.0.0 Ok: queued as " in transcript
    assert b"\r\n221 " in transcript
    ((env, data),) = queued(cfg)
    assert env.sender == "a@example.test" and data.startswith(b"Received: from local user")
