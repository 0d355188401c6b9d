"""pigeon log ID: the history of one message in text and JSON logs, reports followed."""

from __future__ import annotations

import json
import logging

import pytest

from pigeon.obs.history import message_history
from pigeon.obs.logsetup import JsonFormatter, TextFormatter
from pigeon.obs.maillog import MailLog


def write_log(path, formatter):
    handler = logging.FileHandler(path)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test.history.{id(path)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    ml = MailLog(logger)
    ml.log("AAAA1111", {"from": "a@x.test", "size": 10, "nrcpt": 1}, "queued")
    ml.log("BBBB2222", {"from": "other@x.test"}, "queued")
    ml.log(
        "AAAA1111",
        {"to": "u@y.test", "relay": "none", "dsn": "5.1.1", "status": "bounced"},
        "no such user",
    )
    ml.log("AAAA1111", {}, "sender non-delivery notification: CCCC3333")
    ml.log("AAAA1111", {"status": "removed"})
    ml.log("CCCC3333", {"to": "a@x.test", "relay": "local", "status": "sent"}, "delivered")
    logger.warning("queue_id=AAAA1111: something odd")
    handler.close()


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()], ids=["text", "json"])
def test_history_follows_the_bounce(tmp_path, formatter):
    path = tmp_path / "pigeon.log"
    write_log(path, formatter)
    lines = message_history(path, "AAAA1111")
    assert len(lines) == 6
    assert "BBBB2222" not in "".join(lines)
    assert "CCCC3333" in lines[-2] and "delivered" in lines[-2]
    assert "something odd" in lines[-1]
    if isinstance(formatter, JsonFormatter):
        assert json.loads(lines[0])["queue_id"] == "AAAA1111"


def test_rotated_file_is_read_first_and_ids_are_checked(tmp_path):
    path = tmp_path / "p.log"
    (tmp_path / "p.log.1").write_text("old AAAA1111: queued\n")
    path.write_text("new AAAA1111: removed\n  continuation line\nAAAA11112 not this\n")
    assert message_history(path, "AAAA1111") == [
        "old AAAA1111: queued",
        "new AAAA1111: removed\n  continuation line",
    ]
    with pytest.raises(ValueError):
        message_history(path, "a b")
    assert message_history(tmp_path / "missing.log", "AAAA1111") == []
