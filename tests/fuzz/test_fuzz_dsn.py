"""The DSN/bounce builder (qmgr.bounce.build_dsn) makes a parseable RFC 3464
report whatever the recipients, diagnostics and original content hold:
control characters and CRLFs in a remote server's reply never become header
fields, every recipient has its block, the third part carries the original.
"""

from __future__ import annotations

import email
import email.policy
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pigeon.qmgr.bounce import DsnRecipient, build_dsn
from pigeon.queue.model import Envelope, Recipient
from pigeon.testing.fakes import BytesContent

EXAMPLES = int(os.environ.get("PIGEON_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

nasty = st.text(max_size=120)  # CR, LF, NUL, non-ASCII, "--boundary"...
rcpt = st.builds(
    DsnRecipient,
    address=st.emails().map(str) | nasty,
    action=st.sampled_from(["failed", "delayed", "delivered", "relayed"]),
    status=st.sampled_from(["5.1.1", "4.4.1", "2.0.0", "5.7.1"]),
    diagnostic=nasty,
    remote_mta=nasty,
)
content = st.binary(max_size=2000).map(lambda b: b"Subject: x\r\n\r\n" + b)


@FUZZ
@given(
    st.lists(rcpt, min_size=1, max_size=5),
    content,
    st.sampled_from(["failure", "delay", "success", "relayed"]),
    st.emails().map(str) | nasty,
)
def test_dsn_parses_and_holds_every_recipient(tmp_path_factory, recipients, original, kind, sender):
    env = Envelope("0123456789ABCDE", sender, [Recipient("x@example.org")])
    raw = build_dsn(
        env,
        recipients,
        kind=kind,
        reporting_mta="mx.example.test",
        arrival_date=1e9,
        content=BytesContent(original),
        now=1e9 + 60,
    )
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    # No header injection: only the fields the builder writes.
    names = {k.lower() for k in msg.keys()}
    assert names <= {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "auto-submitted",
        "mime-version",
        "content-type",
    }, names
    parts = msg.get_payload()
    assert isinstance(parts, list) and len(parts) == 3, [p.get_content_type() for p in parts]
    status = parts[1]
    assert status.get_content_type() == "message/delivery-status"
    blocks = status.get_payload()
    assert len(blocks) == 1 + len(recipients)
    for block, r in zip(blocks[1:], recipients):
        assert block["Action"] == r.action
        assert block["Status"] == r.status
