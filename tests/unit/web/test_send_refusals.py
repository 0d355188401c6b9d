"""A receive stage's refusal of POST /api/send as an HTTP problem (web/send_route.py)."""

from __future__ import annotations

import json

import pytest

from pigeon.net.apisession import Refused
from pigeon.proto import reply as R
from pigeon.web.problem import problem_response
from pigeon.web.send_route import _refused, refusal_status


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (R.SENDER_NOT_OWNED, 403),  # 553 5.7.1
        (R.FROM_NOT_OWNED, 403),
        (R.reply(554, "5.7.1", "Relay access denied"), 403),
        (R.reply(552, "5.3.4", "too big"), 413),
        (R.reply(550, "5.1.1", "user unknown"), 422),
        (R.TEXT_LINE_TOO_LONG, 422),
        (R.reply(450, "4.7.1", "too much mail from user alice"), 429),
        (R.reply(421, "4.7.0", "too many connections"), 429),
        (R.reply(451, "4.3.0", "check failed"), 503),
        (R.TOO_MANY_RECIPIENTS, 503),  # 452 4.5.3: fewer at a time
    ],
)
def test_refusal_status(reply, status):
    assert refusal_status(reply) == status


def test_the_problem_carries_the_smtp_reply():
    problem = _refused(Refused("MAIL", R.SENDER_NOT_OWNED, "carol@example.test"))
    response = problem_response(problem.status, problem.detail, **problem.extra)
    doc = json.loads(response.body)
    assert doc["status"] == 403 and doc["stage"] == "MAIL"
    assert (doc["smtp_code"], doc["enhanced_code"]) == (553, "5.7.1")
    assert doc["address"] == "carol@example.test"
    assert doc["detail"].endswith("553 5.7.1 " + " ".join(R.SENDER_NOT_OWNED.lines))
    assert "Retry-After" not in problem.headers
    later = _refused(Refused("MAIL", R.reply(450, "4.7.1", "too much mail")))
    assert later.status == 429 and later.headers["Retry-After"].isdigit()
    assert "address" not in later.extra
