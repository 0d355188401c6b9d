"""setup_logging and the two line formats (text, JSON Lines)."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from pigeon.config import ConfigError
from pigeon.config.schema import LogConfig
from pigeon.obs.logsetup import JsonFormatter, TextFormatter, flush_logs, setup_logging
from pigeon.obs.maillog import MailLog

TEXT_LINE = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z pigeon\[\d+\] (\w+) ([\w.]+): (.*)\Z"
)


# Every test here may call setup_logging(): put the loggers back afterwards.
pytestmark = pytest.mark.usefixtures("restore_logging")


def record(msg: str = "hello %s", args: tuple = ("world",), **extra) -> logging.LogRecord:
    rec = logging.LogRecord("pigeon.net", logging.WARNING, __file__, 1, msg, args, None)
    rec.created = 1795972801.123  # 2026-11-29T17:20:01.123Z
    rec.msecs = 123.0
    rec.process = 4242
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_text_format():
    assert (
        TextFormatter().format(record())
        == "2026-11-29T17:20:01.123Z pigeon[4242] WARNING pigeon.net: hello world"
    )


def test_text_format_escapes_control_characters():
    line = TextFormatter().format(record("peer said %r and %s", ("x", "a\r\nfake line\x00\t")))
    assert line.endswith("peer said 'x' and a\\r\\nfake line\\x00\\t")
    assert "\n" not in line
    c1 = TextFormatter().format(record("helo %s", ("\x9b31mred\x85",)))
    assert c1.endswith("helo \\x9b31mred\\x85")


def test_text_format_indents_tracebacks():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = record("failed", ())
        rec.exc_info = sys.exc_info()
    lines = TextFormatter().format(rec).splitlines()
    assert lines[0].endswith("pigeon.net: failed")
    assert all(line.startswith("  ") for line in lines[1:])
    assert lines[-1] == "  ValueError: boom"


def test_json_format():
    obj = json.loads(JsonFormatter().format(record()))
    assert obj == {
        "ts": "2026-11-29T17:20:01.123Z",
        "level": "warning",
        "logger": "pigeon.net",
        "pid": 4242,
        "msg": "hello world",
    }


def test_json_format_structured_fields():
    rec = record(
        "4F2A: from=<>",
        (),
        queue_id="4F2A",
        detail="queued",
        fields={
            "from": "",
            "size": 12,
            "delay": 0.123456,
            "relay": None,
            "msg": "clash",
            "path": object.__new__(type("P", (), {"__str__": lambda self: "/x"})),
        },
    )
    obj = json.loads(JsonFormatter().format(rec))
    assert obj["msg"] == "4F2A: from=<>"
    assert obj["msg_"] == "clash"
    assert obj["queue_id"] == "4F2A" and obj["detail"] == "queued"
    assert (
        obj["from"] == ""
        and obj["size"] == 12
        and obj["delay"] == 0.123456
        and obj["relay"] is None
    )
    assert obj["path"] == "/x"


def test_json_format_exception():
    try:
        raise KeyError("k")
    except KeyError:
        import sys

        rec = record("failed", ())
        rec.exc_info = sys.exc_info()
    obj = json.loads(JsonFormatter().format(rec))
    assert obj["exc"].startswith("Traceback") and "KeyError" in obj["exc"]


def test_setup_text_to_stream():
    out = io.StringIO()
    setup_logging(LogConfig(format="text", level="info"), stream=out)
    logging.getLogger("pigeon.queue").debug("hidden")
    logging.getLogger("pigeon.queue").info("shown %d", 1)
    MailLog().log("Q1", {"from": "a@b.test", "size": 10}, "queued")
    lines = out.getvalue().splitlines()
    assert [TEXT_LINE.match(line).groups() for line in lines] == [
        ("INFO", "pigeon.queue", "shown 1"),
        ("INFO", "pigeon.mail", "Q1: from=<a@b.test>, size=10 (queued)"),
    ]


def test_setup_json_to_stream_with_maillog_fields():
    out = io.StringIO()
    setup_logging(LogConfig(format="json", level="debug"), stream=out)
    logging.getLogger("pigeon.queue").debug("d")
    MailLog().log("Q1", {"to": "b@c.test", "status": "sent", "delay": 1.5}, "250 ok")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["level"] == "debug" and first["msg"] == "d"
    assert second["queue_id"] == "Q1" and second["to"] == "b@c.test" and second["status"] == "sent"
    assert second["delay"] == 1.5 and second["detail"] == "250 ok"
    assert second["msg"] == "Q1: to=<b@c.test>, status=sent, delay=1.50 (250 ok)"


def test_setup_again_replaces_the_handler():
    first, second = io.StringIO(), io.StringIO()
    setup_logging(LogConfig(), stream=first)
    setup_logging(LogConfig(), stream=second)
    logging.getLogger("pigeon").warning("once")
    assert first.getvalue() == "" and second.getvalue().count("once") == 1
    assert sum(h.get_name() == "pigeon" for h in logging.getLogger("pigeon").handlers) == 1


def test_does_not_propagate_to_root_and_takes_asyncio_warnings():
    out = io.StringIO()
    setup_logging(LogConfig(), stream=out)
    assert logging.getLogger("pigeon").propagate is False
    logging.getLogger("asyncio").info("noise")
    logging.getLogger("asyncio").error("Task exception was never retrieved")
    assert "noise" not in out.getvalue()
    assert "ERROR asyncio: Task exception was never retrieved" in out.getvalue()


def test_log_file(tmp_path):
    path = tmp_path / "pigeon.log"
    setup_logging(LogConfig(format="json", file=path))
    logging.getLogger("pigeon").info("to the file")
    flush_logs()  # written by a background thread
    assert json.loads(path.read_text())["msg"] == "to the file"


def test_background_writer_batches_and_keeps_order_and_level(tmp_path):
    path = tmp_path / "pigeon.log"
    setup_logging(LogConfig(level="info", file=path))
    log = logging.getLogger("pigeon.test")
    for i in range(500):
        log.info("line %d", i)
    log.debug("below the level")
    flush_logs()
    lines = path.read_text().splitlines()
    assert [line.rsplit(" ", 1)[1] for line in lines] == [str(i) for i in range(500)]
    assert "below the level" not in path.read_text()
    log.info("after a flush")  # the writer still runs after flush()
    flush_logs()
    assert path.read_text().splitlines()[-1].endswith("after a flush")


def test_log_file_that_cannot_be_opened(tmp_path):
    with pytest.raises(ConfigError) as info:
        setup_logging(LogConfig(file=tmp_path / "no" / "such" / "dir.log"))
    assert info.value.key == "log.file"
    assert "cannot open" in info.value.message and "No such file or directory" in info.value.message


def test_syslog_over_udp_to_a_loopback_listener():
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    port = sock.getsockname()[1]
    try:
        setup_logging(LogConfig(syslog=f"127.0.0.1:{port}"), stream=io.StringIO())
        logging.getLogger("pigeon.mail").info("ABC123: to=<a@b>, status=sent\r\nforged")
        datagram = sock.recv(4096)
    finally:
        sock.close()
        setup_logging(LogConfig(), stream=io.StringIO())
    # <22> = facility mail (2) * 8 + severity info (6), RFC 3164/5424 PRI.
    assert datagram.startswith(b"<22>pigeon[")
    assert b"pigeon.mail: ABC123: to=<a@b>, status=sent\\r\\nforged" in datagram


def test_syslog_bad_target_names_the_key():
    with pytest.raises(ConfigError) as info:
        setup_logging(LogConfig(syslog="nonsense"), stream=io.StringIO())
    assert info.value.key == "log.syslog"


class FullDisk(io.StringIO):
    """A log stream on a disk that is full while `full` is set."""

    full = False

    def write(self, text: str) -> int:
        if self.full:
            import errno

            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(text)


def test_a_full_disk_under_the_log_says_so_once_each_way_without_a_traceback(capsys):
    out = FullDisk()
    # The background writer is pigeon's way of logging (a stream alone is for tests).
    setup_logging(LogConfig(format="text", level="info"), stream=out, background=True)
    log = logging.getLogger("pigeon.queue")
    out.full = True
    for i in range(3):
        log.info("while full %d", i)
        flush_logs()
    out.full = False
    log.info("after")
    flush_logs()
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "pigeon: cannot write the log: No space left on device; trying again with each new line",
        "pigeon: the log is written again (3 lines met the failing disk)",
    ]
    assert "Traceback" not in err and out.getvalue().rstrip().endswith("after")
